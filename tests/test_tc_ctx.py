"""TC direct-action programs: __sk_buff field reads and writes, TC_ACT_* verdicts, packet metadata.

Every case runs in the reference interpreter, in both simulators (the compiled image) and, where
bpf() works, in the kernel (BPF_PROG_TEST_RUN with a __sk_buff ctx_in carrying mark, priority and
cb); r0, the packet and the metadata handed back must agree.
"""

from __future__ import annotations

import pytest

from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.result import PacketIn
from nfpjit.testing import compare_results

# (name, body) — r1 is the __sk_buff; the body ends with r0 set (exit is appended)
CASES = [
    ("len", "ldxw %r0, [%r1+0]"),
    ("len_narrow", "ldxh %r0, [%r1+0]"),
    ("len_narrow_hi", "ldxh %r0, [%r1+2]"),
    ("pkt_type", "ldxw %r0, [%r1+4]"),
    ("mark_read", "ldxw %r0, [%r1+8]"),
    ("mark_write", "mov %r2, 0x12345\nstxw [%r1+8], %r2\nldxw %r0, [%r1+8]"),
    ("mark_narrow_read", "ldxb %r0, [%r1+9]"),
    ("queue_mapping", "ldxw %r0, [%r1+12]"),
    ("queue_mapping_write", "mov %r2, 0x1234\nstxw [%r1+12], %r2\nldxw %r0, [%r1+12]"),
    ("queue_mapping_wide", "mov %r2, 0x12345\nstxw [%r1+12], %r2\nldxw %r0, [%r1+12]"),
    ("queue_mapping_ffff", "mov %r2, 0xffff\nstxw [%r1+12], %r2\nldxw %r0, [%r1+12]"),
    ("queue_mapping_imm", "stw [%r1+12], 0x20\nldxw %r0, [%r1+12]"),
    ("protocol", "ldxw %r0, [%r1+16]"),
    ("vlan_present", "ldxw %r0, [%r1+20]"),
    ("vlan_tci", "ldxw %r0, [%r1+24]"),
    ("vlan_proto", "ldxw %r0, [%r1+28]"),
    ("priority", "ldxw %r0, [%r1+32]"),
    ("priority_write", "mov %r2, 6\nstxw [%r1+32], %r2\nldxw %r0, [%r1+32]"),
    ("priority_narrow", "ldxb %r0, [%r1+33]"),
    ("ingress_ifindex", "ldxw %r0, [%r1+36]"),
    ("ifindex", "ldxw %r0, [%r1+40]"),
    ("tc_index", "mov %r2, 0x12345\nstxw [%r1+44], %r2\nldxw %r0, [%r1+44]"),
    ("cb0", "ldxw %r0, [%r1+48]"),
    ("cb4", "ldxw %r0, [%r1+64]"),
    ("cb_write", "mov %r2, 77\nstxw [%r1+52], %r2\nldxw %r0, [%r1+52]"),
    ("cb_byte_write", "mov %r2, 77\nstxb [%r1+53], %r2\nldxw %r0, [%r1+52]"),
    ("cb_half_write", "mov %r2, 0x1234\nstxh [%r1+50], %r2\nldxw %r0, [%r1+48]"),
    ("cb_dw_write", "lddw %r2, 0x1122334455667788\nstxdw [%r1+48], %r2\nldxw %r0, [%r1+52]"),
    ("cb_dw_read", "mov %r2, 0x11223344\nstxw [%r1+52], %r2\nldxdw %r0, [%r1+48]\nrsh %r0, 32"),
    ("cb_byte_read", "ldxb %r0, [%r1+57]"),
    ("hash", "ldxw %r0, [%r1+68]"),
    ("tc_classid", "mov %r2, 0x12345\nstxw [%r1+72], %r2\nldxw %r0, [%r1+72]"),
    ("tc_classid_read", "ldxw %r0, [%r1+72]"),
    ("napi_id", "ldxw %r0, [%r1+84]"),
    ("all_writes", "stw [%r1+8], 1\nstw [%r1+32], 2\nstw [%r1+44], 3\nstw [%r1+72], 4\nstw [%r1+12], 5\n"
                   "stw [%r1+48], 6\nstw [%r1+64], 7\nmov %r0, 0"),
]

# cases the kernel's verifier refuses (and the interpreter with it)
REFUSED = [
    ("mark_half_write", "mov %r2, 0x7777\nstxh [%r1+8], %r2\nmov %r0, 0"),
    ("cb_dw_unaligned", "lddw %r2, 0x1122334455667788\nstxdw [%r1+52], %r2\nmov %r0, 0"),
]

FRAMES = [
    bytes(60),
    bytes.fromhex("ffffffffffff0200000000010800") + bytes.fromhex("4500002e0000400040117ccf0a0000010a000002")
    + bytes.fromhex("3039003500120000") + bytes(18),
]


@pytest.fixture(scope="module")
def kernel():
    from nfpjit.kernel import kernel_available, run_in_kernel

    ok, why = kernel_available()
    if not ok:
        pytest.skip(why)
    return run_in_kernel


@pytest.fixture(scope="module")
def kernel_refuses():
    from nfpjit.kernel import KernelRejected, kernel_available, load_in_kernel

    ok, why = kernel_available()
    if not ok:
        pytest.skip(why)

    def refuses(prog) -> bool:
        try:
            load_in_kernel(prog).close()
        except KernelRejected:
            return True
        return False

    return refuses


def tc(body: str):
    return assemble(".type tc\n.license GPL\n" + body + "\nexit\n")


def packets():
    for frame in FRAMES:
        yield PacketIn(frame)
        yield PacketIn(frame, mark=0xA5A5_0001, priority=7, cb=(1, 2, 3, 0xFFFF_FFFF, 5))


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_interp_against_kernel(name, body, kernel):
    prog = tc(body)
    for pin in packets():
        want = kernel(prog, pin)
        got = run(prog, pin)
        assert not compare_results(want, got), (name, pin, compare_results(want, got))


@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_like_the_kernel(name, body, kernel_refuses):
    prog = tc(body)
    assert kernel_refuses(prog)
    assert run(prog, PacketIn(bytes(60))).fault is not None


def _engines():
    from nfpjit.isa.sim import compiled

    yield "interp"
    if compiled.available():
        yield "compiled"


@pytest.mark.parametrize("opt", [0, 2])
@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_simulators_against_interpreter(name, body, opt):
    from nfpjit.driver import compile, simulate_image, to_run_result

    prog = tc(body)
    image = compile(prog, opt_level=opt).image
    for pin in [*packets(), PacketIn(FRAMES[1], ingress_ifindex=5, hash=0x1234_5678), PacketIn(FRAMES[1], hash=None)]:
        want = run(prog, pin)
        for engine in _engines():
            sim = simulate_image(image, pin, engine=engine)
            got = to_run_result(sim)
            assert got.skb is not None and sim.meta is not None
            # the verdict is r0's low word (the NIC's halt action; -O1 and up drop the dead high word)
            assert not compare_results(want, got), (name, engine, pin, compare_results(want, got))
            assert sim.action == want.r0 & 0xFFFF_FFFF and want.skb == got.skb

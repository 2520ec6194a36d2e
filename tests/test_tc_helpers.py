"""TC packet helpers on the NIC: bpf_skb_load_bytes / bpf_skb_store_bytes / bpf_l3_csum_replace /
bpf_l4_csum_replace as firmware routines.

Each program runs at -O0 and -O2 in both simulators and is compared with the reference interpreter
(r0, packet, maps, the __sk_buff metadata) and, where ``bpf()`` works, with the kernel's
BPF_PROG_TEST_RUN for sched_cls: the return codes for offsets, lengths and flags out of range, the
bytes copied, and the incremental checksum arithmetic of every field size and flag.
"""

from __future__ import annotations

import random
import struct

import pytest

import nfpjit
from nfpjit.bits import csum_fold, csum_partial
from nfpjit.driver import compile as jit_compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.result import PacketIn
from nfpjit.offload import load_profile
from nfpjit.testing import compare_results

LEVELS = (0, 2)


def _engines():
    from nfpjit.isa.sim import compiled

    yield "interp"
    if compiled.available():
        yield "compiled"


def _ip_checksum(header: bytes) -> int:
    return csum_fold(csum_partial(header, 0))


def _udp_frame(payload_len: int = 18, sport: int = 12345, dport: int = 53, udp_csum: bool = True) -> bytes:
    """Ethernet + IPv4 + UDP with correct checksums (the UDP one 0 when ``udp_csum`` is False)."""
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    payload = bytes((i * 7 + 3) & 0xFF for i in range(payload_len))
    udp_len = 8 + payload_len
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0x1234, 0x4000, 64, 17, 0, src, dst))
    ip[10:12] = _ip_checksum(bytes(ip)).to_bytes(2, "little")
    udp = bytearray(struct.pack("!HHHH", sport, dport, udp_len, 0) + payload)
    if udp_csum:
        pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
        value = _ip_checksum(pseudo + bytes(udp))
        udp[6:8] = (value or 0xFFFF).to_bytes(2, "little")
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(ip) + bytes(udp)


SIZES = (14, 33, 60, 65, 128, 1500, 15, 64, 100, 200)


def _frames(n: int, seed: int = 5) -> list[bytes]:
    """``n`` random frames of the sizes around the cases' offsets, then three IPv4/UDP frames."""
    rng = random.Random(seed)
    out = [bytes(rng.randrange(256) for _ in range(SIZES[i % len(SIZES)] + rng.randrange(4))) for i in range(n)]
    return out + [_udp_frame(), _udp_frame(udp_csum=False), _udp_frame(40, sport=0xFFFF, dport=0)]


def _packets(frames):
    for frame in frames:
        yield PacketIn(frame)
    yield PacketIn(frames[-1], hash=None, mark=3)


def _agree(program, frames, *, routine: str):
    """Every packet, level and engine gives the interpreter's result (r0, packet, maps, metadata)."""
    images = {level: jit_compile(program, opt_level=level).image for level in LEVELS}
    calls = {}
    for pin in _packets(frames):
        want = run(program, pin)
        assert want.fault is None, want.fault
        for level, image in images.items():
            for engine in _engines():
                sim = simulate_image(image, pin, engine=engine)
                got = to_run_result(sim)
                diffs = compare_results(want, got)
                assert not diffs, (f"-O{level}", engine, len(pin.data), diffs)
                assert want.skb == got.skb, (f"-O{level}", engine, want.skb, got.skb)
                calls[level, engine] = calls.get((level, engine), 0) + sim.routine_calls.get(routine, 0)
    assert all(calls.values()), (routine, calls)


@pytest.fixture(scope="module")
def kernel():
    from nfpjit.kernel import kernel_available, run_in_kernel

    ok, why = kernel_available()
    if not ok:
        pytest.skip(why)
    return run_in_kernel


def _kernel_agrees(run_in_kernel, program, frames):
    images = {level: jit_compile(program, opt_level=level).image for level in LEVELS}
    for frame in frames:
        pin = PacketIn(frame)
        want = run_in_kernel(program, pin)
        mine = run(program, pin)
        assert not compare_results(want, mine), ("interpreter", len(frame), compare_results(want, mine))
        for level, image in images.items():
            got = to_run_result(simulate_image(image, pin))
            assert not compare_results(want, got), (level, len(frame), compare_results(want, got))


# -- skb_load_bytes --------------------------------------------------------------------------------

# the return code goes to out[1], the 24 loaded (or zeroed) stack bytes to out[0]; the verdict says
# whether the helper succeeded (TC_ACT_OK 0 / TC_ACT_SHOT 2)
LOAD = """.type tc
.license GPL
.map out array key=4 value=24 entries=2
    mov r6, r1
    stdw [r10-8], -1
    stdw [r10-16], -1
    stdw [r10-24], -1
    mov r1, r6
    mov r2, {offset}
    mov r3, r10
    add r3, -24
    mov r4, {length}
    call skb_load_bytes
    stxw [r10-28], r0
    mov r7, r0
    stw [r10-32], 0
    lddw r1, map:out
    mov r2, r10
    add r2, -32
    mov r3, r10
    add r3, -24
    mov r4, 0
    call map_update_elem
    stw [r10-32], 1
    lddw r1, map:out
    mov r2, r10
    add r2, -32
    mov r3, r10
    add r3, -28
    mov r4, 0
    call map_update_elem
    mov r0, 0
    jeq r7, 0, out
    mov r0, 2
out:
    exit
"""

_slow = pytest.mark.slow
LOAD_CASES = [(0, 24), (3, 7), (60, 4), pytest.param(0, 1, marks=_slow), pytest.param(12, 2, marks=_slow),
              pytest.param(50, 10, marks=_slow), (0xFFFF, 1), (0x10000, 4), pytest.param(100, 24, marks=_slow),
              pytest.param(-1, 4, marks=_slow)]


@pytest.mark.parametrize("offset,length", LOAD_CASES)
def test_load_bytes(offset, length):
    program = assemble(LOAD.format(offset=offset, length=length))
    assert nfpjit.check(program).ok, nfpjit.check(program).codes
    _agree(program, _frames(6), routine="fw_skb_load_bytes")


def test_load_bytes_return_codes_and_zeroing():
    """-EFAULT past the end or above 0xffff with the buffer zeroed (the kernel's err_clear), 0 otherwise."""
    for offset, length, frame_len, want in ((0x10000, 4, 60, -14), (4, 24, 20, -14), (4, 16, 20, 0)):
        program = assemble(LOAD.format(offset=offset, length=length))
        image = jit_compile(program, opt_level=2).image
        frame = bytes(range(1, frame_len + 1))
        for engine in _engines():
            sim = simulate_image(image, frame, engine=engine)
            code = int.from_bytes(sim.maps["out"][(1).to_bytes(4, "little")][:4], "little", signed=True)
            buf = sim.maps["out"][(0).to_bytes(4, "little")]
            assert code == want, (offset, length, engine)
            assert buf[:length] == (frame[offset:offset + length] if want == 0 else bytes(length)), engine


# -- skb_store_bytes -------------------------------------------------------------------------------

STORE = """.type tc
.license GPL
.map vals array key=4 value=16 entries=1
    mov r6, r1
    stw [r10-16], 0x44332211
    stw [r10-12], 0x88776655
    stw [r10-8], 0xccbbaa99
    stw [r10-4], 0x00ffeedd
    stw [r10-20], 0
    lddw r1, map:vals
    mov r2, r10
    add r2, -20
    call map_lookup_elem
    jeq r0, 0, fail
    mov r8, r0
    ldxdw r1, [r10-16]
    xor r1, -1
    stxdw [r8+0], r1
    ldxdw r1, [r10-8]
    stxdw [r8+8], r1
    mov r1, r6
    mov r2, {offset}
    mov r3, {buf}
    mov r4, {length}
    lddw r5, {flags}
    call skb_store_bytes
    mov r7, r0
    ldxw r0, [r6+68]
    stxw [r6+48], r0
    stxw [r6+52], r7
    mov r0, 0
    jeq r7, 0, out
    mov r0, 2
out:
    exit
fail:
    mov r0, 1
    exit
"""


def _store(buf: str, offset: int, length: int, flags: int):
    src = STORE.replace("mov r3, {buf}", "mov r3, r10\n    add r3, -16" if buf == "stack" else "mov r3, r8")
    return assemble(src.format(offset=offset, length=length, flags=flags))


@pytest.mark.parametrize("buf,offset,length", [
    ("stack", 0, 16), ("map", 5, 3), ("stack", 58, 2), ("map", 0xFFFF, 1),
    *(pytest.param(buf, offset, length, marks=_slow) for buf in ("stack", "map")
      for offset, length in ((0, 16), (5, 3), (14, 16), (40, 16), (58, 2), (0xFFFF, 1), (-2, 4))),
])
def test_store_bytes(buf, offset, length):
    program = _store(buf, offset, length, 0)
    assert nfpjit.check(program).ok
    _agree(program, _frames(6), routine="fw_skb_store_bytes")


@pytest.mark.parametrize("flags", [1, 3, 4, pytest.param(2, marks=_slow), pytest.param(0x100000000, marks=_slow)])
def test_store_bytes_flags(flags):
    """BPF_F_RECOMPUTE_CSUM changes nothing the NIC keeps, BPF_F_INVALIDATE_HASH zeroes skb->hash (the
    program copies it to cb[0]: the firmware's receive hash of the last packet), others are -EINVAL."""
    program = _store("stack", 14, 16, flags)
    _agree(program, _frames(4), routine="fw_skb_store_bytes")


def test_invalidate_hash_clears_the_receive_hash():
    program = _store("stack", 14, 16, 2)
    frame = _udp_frame()
    pin = PacketIn(frame, hash=None)
    assert pin.skb_hash() != 0
    kept = run(_store("stack", 14, 16, 0), pin)
    assert kept.skb["cb[0]"] == pin.skb_hash()
    for engine in _engines():
        got = to_run_result(simulate_image(jit_compile(program, opt_level=2).image, pin, engine=engine))
        assert got.skb["cb[0]"] == 0 and got.skb["cb[1]"] == 0, engine


# -- l3_csum_replace / l4_csum_replace -------------------------------------------------------------

# from/to: R3/R4 as given (an lddw each); the return code goes to cb[1]
CSUM = """.type tc
.license GPL
    mov r6, r1
    mov r1, r6
    mov r2, {offset}
    lddw r3, {frm}
    lddw r4, {to}
    lddw r5, {flags}
    call {helper}
    stxw [r6+52], r0
    mov r0, 0
    exit
"""

F_PSEUDO, F_MANGLED_0, F_ENFORCE, F_IPV6 = 16, 32, 64, 128
CSUM_CASES = [
    # (offset, from, to, flags)
    (24, 0x1234, 0xABCD, 2),
    (24, 0x0100000A, 0x0200000A, 4),
    (24, 0, 0x12345678, 0),
    (24, 1, 0x12345678, 0),          # size 0 with from != 0: -EINVAL
    (24, 0xFFFF, 0, 2),
    (24, 0xFFFF_FFFF_0000_1111, 0x2222, 2),
    (24, 0x1234, 0xABCD, 1),         # size 1: -EINVAL
    (24, 0x1234, 0xABCD, 8),
    (25, 0x1234, 0xABCD, 2),         # odd offset: -EFAULT
    (0x10000, 0x1234, 0xABCD, 2),
    (58, 0x1234, 0xABCD, 2),
    (62, 0x1234, 0xABCD, 2),
    (-2, 0x1234, 0xABCD, 2),
]
#: the UDP checksum field of _udp_frame() as a little-endian load reads it: replacing from 0 to it makes
#: the checksum 0, which BPF_F_MARK_MANGLED_0 writes as 0xffff
_UDP_SUM = int.from_bytes(_udp_frame()[40:42], "little")
L4_CASES = [
    (40, 0, _UDP_SUM, 2 | F_MANGLED_0),
    (40, 0, 0xFFFF, 2),
    (40, 0x3039, 0x1F90, 2 | F_PSEUDO),
    (40, 0x0100000A, 0x0900000A, 4 | F_PSEUDO),
    (40, 0x3039, 0x1F90, 2 | F_MANGLED_0),
    (40, 0x3039, 0x3039 ^ 0xFFFF, 2 | F_MANGLED_0),
    (40, 0x3039, 0x1F90, 2 | F_MANGLED_0 | F_ENFORCE),
    (40, 0x3039, 0x1F90, 1 | F_MANGLED_0),       # a zero field with MANGLED_0 returns before the size check
    (40, 0, 0x1234, F_IPV6 | F_PSEUDO),
    (40, 0x3039, 0x1F90, 0x100),                 # unknown flag: -EINVAL
    (40, 0x3039, 0x1F90, 2 | F_PSEUDO | (1 << 40)),
]


def _csum_sequence(cases, helper: str):
    """One program making every call of ``cases`` in turn on the same packet (each sees the fields the
    calls before it wrote), the return codes' low words into out[0] (4 bytes each)."""
    n = 4 * len(cases)
    lines = [".type tc", ".license GPL", f".map out array key=4 value={n} entries=1", "    mov r6, r1"]
    for i, (offset, frm, to, flags) in enumerate(cases):
        lines += ["    mov r1, r6", f"    mov r2, {offset}", f"    lddw r3, {frm}", f"    lddw r4, {to}",
                  f"    lddw r5, {flags}", f"    call {helper}", f"    stxw [r10-{n - 4 * i}], r0"]
    lines += [f"    stw [r10-{n + 4}], 0", "    lddw r1, map:out", "    mov r2, r10", f"    add r2, -{n + 4}",
              "    mov r3, r10", f"    add r3, -{n}", "    mov r4, 0", "    call map_update_elem", "    mov r0, 0",
              "    exit"]
    return assemble("\n".join(lines) + "\n")


@pytest.mark.parametrize("helper", ["l3_csum_replace", "l4_csum_replace"])
def test_csum_replace(helper):
    program = _csum_sequence(CSUM_CASES, helper)
    assert nfpjit.check(program).ok
    _agree(program, _frames(10), routine=f"fw_{helper}")


def test_l4_csum_replace_flags():
    program = _csum_sequence(L4_CASES, "l4_csum_replace")
    _agree(program, _frames(6), routine="fw_l4_csum_replace")


@pytest.mark.slow
@pytest.mark.parametrize("offset,frm,to,flags", CSUM_CASES + L4_CASES)
@pytest.mark.parametrize("helper", ["l3_csum_replace", "l4_csum_replace"])
def test_csum_replace_one_call(helper, offset, frm, to, flags):
    program = assemble(CSUM.format(offset=offset, frm=frm, to=to, flags=flags, helper=helper))
    _agree(program, _frames(12), routine=f"fw_{helper}")


def test_l4_mangled_zero_checks_no_size_on_a_zero_field():
    """The kernel returns 0 for a zero field under BPF_F_MARK_MANGLED_0 before it looks at the size
    (the interpreter used to refuse the size first: -EINVAL)."""
    program = assemble(CSUM.format(offset=40, frm=1, to=2, flags=1 | F_MANGLED_0, helper="l4_csum_replace"))
    zero = _udp_frame(udp_csum=False)
    assert run(program, PacketIn(zero)).skb["cb[1]"] == 0
    assert run(program, PacketIn(_udp_frame())).skb["cb[1]"] == (-22) & 0xFFFF_FFFF


# -- a NAT-style rewrite: the checksums stay valid ------------------------------------------------

# the UDP destination port becomes 8080 and the destination address 10.0.0.9, both checksums updated
# incrementally (l4 with the pseudo-header flag for the address); the program reads through
# skb_load_bytes and writes through skb_store_bytes
NAT = """.type tc
.license GPL
    mov r6, r1
    mov r1, r6
    mov r2, 30
    mov r3, r10
    add r3, -8
    mov r4, 8
    call skb_load_bytes
    jne r0, 0, pass
    ldxw r7, [r10-8]
    ldxh r8, [r10-2]
    stw [r10-16], 0x0900000a
    mov r1, r6
    mov r2, 24
    mov r3, r7
    ldxw r4, [r10-16]
    mov r5, 4
    call l3_csum_replace
    mov r1, r6
    mov r2, 40
    mov r3, r7
    ldxw r4, [r10-16]
    mov r5, 0x34
    call l4_csum_replace
    mov r1, r6
    mov r2, 30
    mov r3, r10
    add r3, -16
    mov r4, 4
    mov r5, 0
    call skb_store_bytes
    sth [r10-16], 0x901f
    mov r1, r6
    mov r2, 40
    mov r3, r8
    ldxh r4, [r10-16]
    mov r5, 0x22
    call l4_csum_replace
    mov r1, r6
    mov r2, 36
    mov r3, r10
    add r3, -16
    mov r4, 2
    mov r5, 2
    call skb_store_bytes
pass:
    mov r0, 0
    exit
"""


def _checksums_valid(frame: bytes) -> bool:
    ip, udp = frame[14:34], frame[34:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    udp_ok = udp[6:8] == b"\0\0" or _ip_checksum(pseudo + udp) == 0
    return _ip_checksum(ip) == 0 and udp_ok


def test_nat_rewrite_keeps_checksums_valid():
    program = assemble(NAT)
    _agree(program, _frames(4), routine="fw_l4_csum_replace")
    for frame in (_udp_frame(), _udp_frame(40, sport=0xFFFF, dport=0), _udp_frame(udp_csum=False)):
        assert _checksums_valid(frame)
        for engine in _engines():
            got = simulate_image(jit_compile(program, opt_level=2).image, frame, engine=engine).packet
            assert got[30:34] == bytes([10, 0, 0, 9]) and got[36:38] == (8080).to_bytes(2, "big"), engine
            assert _checksums_valid(got), (engine, got.hex())


# -- profiles ------------------------------------------------------------------------------------

def test_tc_helpers_refused_by_nfp_kernel():
    kernel = load_profile("nfp-kernel")
    for src in (LOAD.format(offset=0, length=4), NAT):
        assert "unsupported-helper" in nfpjit.check(assemble(src), profile=kernel).codes
    assert nfpjit.check(assemble(NAT), profile=load_profile("permissive")).ok


# -- the kernel ----------------------------------------------------------------------------------

@pytest.mark.parametrize("offset,length", [(0, 24), (3, 7), (50, 10), (0x10000, 4), (-1, 4)])
def test_load_bytes_agrees_with_the_kernel(kernel, offset, length):
    _kernel_agrees(kernel, assemble(LOAD.format(offset=offset, length=length)), _frames(8))


@pytest.mark.parametrize("buf,offset,length,flags", [("stack", 14, 16, 0), ("map", 5, 3, 1), ("stack", 58, 2, 2),
                                                     ("map", 0xFFFF, 1, 0), ("stack", 0, 4, 4)])
def test_store_bytes_agrees_with_the_kernel(kernel, buf, offset, length, flags):
    _kernel_agrees(kernel, _store(buf, offset, length, flags), _frames(8))


@pytest.mark.parametrize("offset,frm,to,flags", CSUM_CASES)
@pytest.mark.parametrize("helper", ["l3_csum_replace", "l4_csum_replace"])
def test_csum_replace_agrees_with_the_kernel(kernel, helper, offset, frm, to, flags):
    program = assemble(CSUM.format(offset=offset, frm=frm, to=to, flags=flags, helper=helper))
    _kernel_agrees(kernel, program, _frames(4))


@pytest.mark.parametrize("offset,frm,to,flags", L4_CASES)
def test_l4_flags_agree_with_the_kernel(kernel, offset, frm, to, flags):
    program = assemble(CSUM.format(offset=offset, frm=frm, to=to, flags=flags, helper="l4_csum_replace"))
    _kernel_agrees(kernel, program, _frames(4))


@pytest.mark.parametrize("helper", ["l3_csum_replace", "l4_csum_replace"])
def test_csum_sequences_agree_with_the_kernel(kernel, helper):
    _kernel_agrees(kernel, _csum_sequence(CSUM_CASES, helper), _frames(6))
    if helper == "l4_csum_replace":
        _kernel_agrees(kernel, _csum_sequence(L4_CASES, helper), _frames(6))


def test_nat_agrees_with_the_kernel(kernel):
    _kernel_agrees(kernel, assemble(NAT), _frames(4))


# -- the corpus program tc_nat_port ----------------------------------------------------------------

def _tcp_frame(saddr_last: int, dport: int, *, truncate: int | None = None, frag: int = 0x4000) -> bytes:
    """Ethernet + IPv4 + TCP (20-byte header, 6 payload bytes) with correct checksums."""
    src, dst = bytes([192, 168, 7, saddr_last]), bytes([10, 0, 0, 2])
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000 + saddr_last, dport, 1, 0, 0x50, 0x18, 512, 0, 0) + b"abcdef")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 7, frag, 64, 6, 0, src, dst))
    ip[10:12] = _ip_checksum(bytes(ip)).to_bytes(2, "little")
    tcp[16:18] = _ip_checksum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + bytes(tcp)).to_bytes(2, "little")
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(ip) + bytes(tcp)
    return frame[:truncate] if truncate else frame


def _nat_frames() -> list[bytes]:
    out = [_tcp_frame(n, 8080) for n in range(4)] + [_tcp_frame(9, 8081), _tcp_frame(5, 8080, frag=0x2000),
                                                    _tcp_frame(6, 8080, truncate=40)]
    for udp_csum in (True, False):
        frame = bytearray(_udp_frame(udp_csum=udp_csum))
        frame[36:38] = (8080).to_bytes(2, "big")      # the UDP checksum no longer matches: the helpers keep the error
        out.append(bytes(frame))
    return out + [_udp_frame(), bytes(60)]


def _nat_program():
    from conftest import CORPUS

    return nfpjit.load(CORPUS / "tc_nat_port.o")


def test_corpus_nat_rewrites_on_the_nic():
    program = _nat_program()
    _agree(program, _nat_frames(), routine="fw_l4_csum_replace")
    image = jit_compile(program, opt_level=2).image
    for n in range(4):
        got = simulate_image(image, _tcp_frame(n, 8080)).packet
        assert got[30:34] == bytes([10, 1, 0, 2 + n]) and got[36:38] == (80).to_bytes(2, "big")
        ip, tcp = got[14:34], got[34:]
        assert _ip_checksum(ip) == 0
        assert _ip_checksum(ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp)) + tcp) == 0


def test_corpus_nat_agrees_with_the_kernel(kernel):
    _kernel_agrees(kernel, _nat_program(), _nat_frames())

"""Helpers: packet adjustment bounds, csum_diff, printk, redirects, randomness, clock, byte access.

Bounds come from the kernel's rules written out here (256 B headroom with a
40-byte struct xdp_frame reserved in front, 14-byte minimum frame, 32-byte
metadata limit); checksums from a separately written ones'-complement sum
over 16-bit words.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.bits import csum_diff_value
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.context import XDP_FRAME_SIZE, XDP_PACKET_HEADROOM
from nfpjit.ebpf.interp import run, run_raw
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn

EINVAL, EACCES, EFAULT, ENOENT = 22, 13, 14, 2
M64 = (1 << 64) - 1


def asm(text: str):
    return assemble(text, filename="test")


def neg(e: int) -> int:
    return (-e) & M64


def adjust(helper: int, delta: int, tc: bool = False):
    return asm(f"{'.type tc' if tc else ''}\nmov r2, {delta}\ncall {helper}\nexit")


# -- xdp_adjust_head / tail / meta -----------------------------------------------------------

@pytest.mark.parametrize("length", [14, 60, 200])
def test_adjust_head_bounds(length):
    lowest = XDP_FRAME_SIZE - XDP_PACKET_HEADROOM          # may grow into the headroom down to xdp_frame
    highest = length - 14                                   # must leave an Ethernet header
    frame = bytes(range(length))
    for delta, ok in [(lowest, True), (lowest - 1, False), (highest, True), (highest + 1, False), (0, True)]:
        res = run(adjust(44, delta), frame)
        assert res.fault is None
        assert res.r0 == (0 if ok else neg(EINVAL)), delta
        if ok:
            want = bytes(-delta) + frame if delta < 0 else frame[delta:]
            assert res.packet == want
        else:
            assert res.packet == frame


def test_adjust_tail_bounds():
    frame = bytes(range(100))
    assert run(adjust(65, 256), frame).packet == frame + bytes(256)
    assert run(adjust(65, 257), frame).r0 == neg(EINVAL)
    assert run(adjust(65, -86), frame).packet == frame[:14]
    assert run(adjust(65, -87), frame).r0 == neg(EINVAL)
    res = run(adjust(65, 10), frame, tailroom=8)
    assert res.r0 == neg(EINVAL) and res.packet == frame


@pytest.mark.parametrize("delta,err", [(-4, 0), (-32, 0), (-36, 0), (-216, 0), (-220, EINVAL), (-6, EACCES),
                                       (4, EINVAL), (0, 0)])
def test_adjust_meta(delta, err):
    assert run(adjust(54, delta), bytes(60)).r0 == (neg(err) if err else 0)


def test_metadata_area_is_addressable_and_moves_with_head():
    prog = asm("""
        mov r6, r1
        mov r2, -8
        call 54
        ldxw r2, [r6+8]
        ldxw r3, [r6+0]
        mov r4, r2
        add r4, 8
        jgt r4, r3, bad
        stdw [r2+0], 0x1234
        mov r1, r6
        mov r2, 4
        call 44
        ldxw r2, [r6+8]
        ldxdw r0, [r2+0]
        exit
    bad:
        mov r0, 99
        exit
    """)
    res = run(prog, bytes(range(60)))
    assert res.fault is None and res.r0 == 0x1234
    # The output starts at data_meta, as BPF_PROG_TEST_RUN's does.
    assert res.packet == (0x1234).to_bytes(8, "little") + bytes(range(4, 60))


def test_access_after_shrink_faults():
    prog = asm("mov r6, r1\nldxw r7, [r6+0]\nmov r2, -40\ncall 65\nldxb r0, [r7+30]\nexit")
    res = run(prog, bytes(60))
    assert res.fault is not None and res.fault.pc == 4 and "out-of-bounds" in res.fault.reason


def test_adjust_helpers_need_xdp():
    res = run(adjust(44, 0, tc=True), bytes(60))
    assert res.fault is not None and "XDP" in res.fault.reason


# -- csum_diff ---------------------------------------------------------------------------------

def ones_sum16(data: bytes) -> int:
    """RFC 1071 end-around-carry sum of little-endian 16-bit words."""
    total = 0
    for (w,) in struct.iter_unpack("<H", data):
        total += w
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def fold16(x: int) -> int:
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def csum_prog(from_len: int, to_len: int, seed: int):
    return asm(f"""
        mov r1, r10
        add r1, -512
        mov r2, {from_len}
        mov r3, r10
        add r3, -256
        mov r4, {to_len}
        mov r5, {seed}
        call 28
        exit
    """)


def _csum_run(frm: bytes, to: bytes, seed: int):
    # Stage the buffers in raw memory and copy them onto the stack with ldx/stx.
    lines = []
    for i in range(0, len(frm), 4):
        lines += [f"ldxw r3, [r1+{i}]", f"stxw [r10-{512 - i}], r3"]
    for i in range(0, len(to), 4):
        lines += [f"ldxw r3, [r1+{len(frm) + i}]", f"stxw [r10-{256 - i}], r3"]
    prog = asm("\n".join(lines) + "\n" + "\n".join(str_ for str_ in [
        "mov r1, r10", "add r1, -512", f"mov r2, {len(frm)}", "mov r3, r10", "add r3, -256",
        f"mov r4, {len(to)}", f"lddw r5, {seed}", "call 28", "exit"]))
    return run_raw(prog, frm + to)


@settings(max_examples=60)
@given(st.integers(0, 16).map(lambda n: 4 * n), st.integers(0, 16).map(lambda n: 4 * n), st.data())
def test_csum_diff_against_ones_complement(nf, nt, data):
    frm = data.draw(st.binary(min_size=nf, max_size=nf))
    to = data.draw(st.binary(min_size=nt, max_size=nt))
    seed = data.draw(st.integers(0, 0xFFFF_FFFF))
    res = _csum_run(frm, to, seed)
    assert res.fault is None
    got = res.r0
    assert got <= 0xFFFF   # folded to 16 bits (Linux >= 6.12)
    # In 16-bit ones'-complement arithmetic (mod 0xffff) the result is seed + to - from.
    seed_bytes = seed.to_bytes(4, "little")
    want = (ones_sum16(to + seed_bytes) - ones_sum16(frm)) % 0xFFFF
    assert got % 0xFFFF == want


@settings(max_examples=60)
@given(st.integers(0, 40), st.integers(0, 40), st.data())
def test_csum_diff_takes_any_size(nf, nt, data):
    """The kernel measured (6.18, BPF_PROG_TEST_RUN) refuses no size: a tail of 1..3 bytes is a word padded
    with zeros (tests/test_jit_helpers_ext2.py compares odd sizes with the kernel)."""
    frm = data.draw(st.binary(min_size=nf, max_size=nf))
    to = data.draw(st.binary(min_size=nt, max_size=nt))
    seed = data.draw(st.integers(0, 0xFFFF_FFFF))
    got = csum_diff_value(frm, to, seed)
    assert got <= 0xFFFF
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    want = (ones_sum16(pad(to) + seed.to_bytes(4, "little")) - ones_sum16(pad(frm))) % 0xFFFF
    assert got % 0xFFFF == want


def test_csum_diff_sizes_above_512_bytes():
    res = run_raw(csum_prog(264, 252, 0))
    # zeroed stack: 0 - 0 in ones' complement is the negative zero 0xffff (csum_sub), not -EINVAL
    assert res.fault is None and res.r0 == csum_diff_value(bytes(264), bytes(252), 0) == 0xFFFF


def test_csum_diff_updates_ipv4_checksum():
    # Changing the TTL: fold(~old_csum + diff) must equal a fresh header checksum.
    hdr = bytearray(bytes.fromhex("450000540000400040010000c0a80001c0a800c7"))
    def csum(h):
        return (~ones_sum16_be(h)) & 0xFFFF
    def ones_sum16_be(h):
        t = sum(struct.unpack("!10H", bytes(h)))
        while t >> 16:
            t = (t & 0xFFFF) + (t >> 16)
        return t
    hdr[10:12] = csum(hdr).to_bytes(2, "big")
    old_word, new_hdr = bytes(hdr[8:12]), bytearray(hdr)
    new_hdr[8] = 63
    new_hdr[10:12] = b"\0\0"
    res = _csum_run(old_word[:2] + b"\0\0", bytes(new_hdr[8:10]) + b"\0\0", 0)
    diff = res.r0
    old_check = int.from_bytes(hdr[10:12], "little")
    total = fold16((~old_check & 0xFFFF) + diff)
    new_check = (~total) & 0xFFFF
    new_hdr[10:12] = new_check.to_bytes(2, "little")
    assert ones_sum16_be(new_hdr) == 0xFFFF


# -- trace_printk, perf output -----------------------------------------------------------------------

def _printk_prog(fmt: bytes, r3: int, r4: int, r5: int):
    lines = []
    for i in range(0, len(fmt), 4):
        chunk = fmt[i : i + 4].ljust(4, b"\0")
        lines.append(f"stw [r10-{64 - i}], {int.from_bytes(chunk, 'little')}")
    return asm("\n".join(lines) + f"""
        mov r1, r10
        add r1, -64
        mov r2, {len(fmt)}
        mov r3, {r3}
        mov r4, {r4}
        mov r5, {r5}
        call 6
        exit
    """)


def test_trace_printk_formats():
    res = run_raw(_printk_prog(b"v=%d u=%u x=%x!\0", -5, -5, 255))
    assert res.fault is None
    assert res.trace_output == ["v=-5 u=4294967291 x=ff!"] and res.r0 == len("v=-5 u=4294967291 x=ff!")
    res = run_raw(_printk_prog(b"%ld %lx %%\0", -5, -1, 0))
    assert res.trace_output == ["-5 ffffffffffffffff %"]


def test_trace_printk_rejects_bad_formats():
    for fmt in (b"%d %d %d %d\0", b"%q\0", b"no nul"):
        res = run_raw(_printk_prog(fmt, 1, 2, 3))
        assert res.fault is None and res.r0 == neg(EINVAL) and res.trace_output == [], fmt


def test_trace_printk_with_two_args_only():
    prog = asm("stw [r10-8], 0x216968\nmov r1, r10\nadd r1, -8\nmov r2, 4\ncall 6\nexit")
    res = run_raw(prog)
    assert res.fault is None and res.trace_output == ["hi!"] and res.r0 == 3


def test_perf_event_output_captures_sample_and_packet_prefix():
    prog = asm("""
        .map events perf_event_array key=4 value=4 entries=1
        lddw r7, 0x0807060504030201
        stxdw [r10-8], r7
        lddw r2, map:events
        lddw r3, 0x300000000
        mov r4, r10
        add r4, -8
        mov r5, 8
        call 25
        exit
    """)
    # No perf event in the slot (what a test run has): -ENOENT, as the kernel returns, and no sample.
    res = run(prog, b"\xaa\xbb\xcc\xdd" + bytes(20))
    assert res.fault is None and res.r0 == neg(ENOENT) and res.perf_output == []
    # An event attached to the slot (user space stored a perf event fd): the sample is captured.
    store = MapStore.from_program(prog)
    store.by_name("events").values[0][:] = (7).to_bytes(4, "little")
    res = run(prog, b"\xaa\xbb\xcc\xdd" + bytes(20), maps=store)
    assert res.fault is None and res.r0 == 0
    assert res.perf_output == [bytes(range(1, 9)) + b"\xaa\xbb\xcc"]


# -- redirects ----------------------------------------------------------------------------------------

def test_redirect_xdp_and_tc():
    res = run(asm("mov r1, 9\nmov r2, 0\ncall 23\nexit"), bytes(60))
    assert res.r0 == 4 and res.redirect == 9
    assert run(asm("mov r1, 9\nmov r2, 1\ncall 23\nexit"), bytes(60)).r0 == 0   # XDP: flags -> ABORTED
    res = run(asm(".type tc\nmov r1, 9\nmov r2, 1\ncall 23\nexit"), bytes(60))
    assert res.r0 == 7 and res.redirect == 9                                       # BPF_F_INGRESS ok in TC
    assert run(asm(".type tc\nmov r1, 9\nmov r2, 2\ncall 23\nexit"), bytes(60)).r0 == 2


@pytest.mark.parametrize("key,flags,want,target", [(1, 0, 4, 1), (2, 0, 0, None), (2, 2, 2, None), (3, 1, 1, None)])
def test_redirect_map_devmap(key, flags, want, target):
    prog = asm(f"""
        .map tx devmap key=4 value=4 entries=3
        lddw r1, map:tx
        mov r2, {key}
        mov r3, {flags}
        call 51
        exit
    """)
    store = MapStore.from_program(prog)
    store.by_name("tx").update((1).to_bytes(4, "little"), (7).to_bytes(4, "little"))
    res = run(prog, bytes(60), maps=store)
    assert res.fault is None and res.r0 == want and res.redirect == target


# -- randomness, clock, cpu ---------------------------------------------------------------------------

RAND = asm("call 7\nmov r6, r0\ncall 7\nlsh r0, 32\nor r0, r6\nexit")


def test_prandom_reproducible_per_seed():
    a, b, c = run_raw(RAND, seed=1).r0, run_raw(RAND, seed=1).r0, run_raw(RAND, seed=2).r0
    assert a == b and a != c
    assert a & 0xFFFF_FFFF != a >> 32


def test_ktime_steps_and_cpu_id():
    prog = asm("call 5\nmov r6, r0\ncall 5\nsub r0, r6\nmov r7, r0\ncall 8\nadd r0, r7\nexit")
    assert run_raw(prog, clock_ns=10**9, clock_step_ns=250).r0 == 250
    assert run_raw(prog).r0 == 0


# -- packet byte helpers ------------------------------------------------------------------------------

def test_xdp_load_and_store_bytes():
    prog = asm("""
        mov r6, r1
        mov r2, 2
        mov r3, r10
        add r3, -8
        mov r4, 4
        call 189
        mov r1, r6
        mov r2, 10
        mov r3, r10
        add r3, -8
        mov r4, 4
        call 190
        mov r1, r6
        mov r2, 57
        mov r3, r10
        add r3, -8
        mov r4, 4
        call 189
        exit
    """)
    frame = bytes(range(60))
    res = run(prog, frame)
    assert res.fault is None and res.r0 == neg(EINVAL)
    assert res.packet == frame[:10] + frame[2:6] + frame[14:]


def test_skb_load_and_store_bytes():
    prog = asm("""
        .type tc
        mov r6, r1
        mov r2, 0
        mov r3, r10
        add r3, -8
        mov r4, 6
        call 26
        mov r1, r6
        mov r2, 6
        mov r3, r10
        add r3, -8
        mov r4, 6
        mov r5, 0
        call 9
        mov r7, r0
        mov r1, r6
        mov r2, 58
        mov r3, r10
        add r3, -8
        mov r4, 6
        call 26
        lsh r0, 8
        or r0, r7
        exit
    """)
    frame = bytes(range(60))
    res = run(prog, frame)
    assert res.fault is None
    assert res.r0 == ((neg(EFAULT) << 8) | 0) & M64
    assert res.packet == frame[:6] + frame[:6] + frame[12:]
    bad_flags = asm(".type tc\nmov r2, 0\nmov r3, r10\nadd r3, -8\nmov r4, 1\nmov r5, 8\ncall 9\nexit")
    assert run(bad_flags, frame).r0 == neg(EINVAL)


def test_helper_memory_argument_is_bounds_checked():
    prog = asm("mov r1, r10\nmov r2, 8\nmov r3, 1\nmov r4, 2\nmov r5, 3\ncall 6\nexit")
    res = run_raw(prog)
    assert res.fault is not None and res.fault.pc == 5 and "stack" in res.fault.reason


def test_packet_in_ifindex_reaches_redirect():
    prog = asm("ldxw r1, [r1+12]\nadd r1, 1\nmov r2, 0\ncall 23\nexit")
    assert run(prog, PacketIn(bytes(60), ingress_ifindex=4)).redirect == 5


# -- differential against the Linux kernel (BPF_PROG_TEST_RUN) ---------------------------------------

def _kernel():
    kernel = pytest.importorskip("nfpjit.kernel")
    ok, why = kernel.kernel_available()
    if not ok:
        pytest.skip(why)
    return kernel


def _same(kernel, prog, frame, **kw):
    want = kernel.run_in_kernel(prog, frame)
    got = run(prog, frame, tailroom=None, **kw)
    assert got.fault is None, got.fault
    assert (got.r0 & 0xFFFF_FFFF, got.packet) == (want.r0, want.packet)
    return got


@pytest.mark.kernel
@pytest.mark.parametrize("helper,deltas", [
    (44, [-217, -216, -100, -1, 0, 1, 45, 46, 47]),
    (65, [-47, -46, -1, 0, 1, 256, 3460, 3461]),
    (54, [-220, -216, -36, -8, -6, -4, 0, 4]),
])
def test_adjust_helpers_agree_with_kernel(helper, deltas):
    kernel = _kernel()
    for delta in deltas:
        _same(kernel, adjust(helper, delta), bytes(range(60)))


@pytest.mark.kernel
def test_meta_then_head_agrees_with_kernel():
    kernel = _kernel()
    prog = asm("""
        mov r6, r1
        mov r2, -8
        call 54
        ldxw r2, [r6+8]
        ldxw r3, [r6+0]
        mov r4, r2
        add r4, 8
        jgt r4, r3, out
        lddw r5, 0x1122334455667788
        stxdw [r2+0], r5
        mov r1, r6
        mov r2, -4
        call 44
    out:
        mov r0, 2
        exit
    """)
    _same(kernel, prog, bytes(range(60)))


@pytest.mark.kernel
@settings(max_examples=25)
@given(st.integers(0, 8).map(lambda n: 4 * n), st.integers(0, 8).map(lambda n: 4 * n), st.data())
def test_csum_diff_agrees_with_kernel(nf, nt, data):
    kernel = _kernel()
    frm = data.draw(st.binary(min_size=nf, max_size=nf))
    to = data.draw(st.binary(min_size=nt, max_size=nt))
    seed = data.draw(st.integers(0, 0xFFFF_FFFF))
    # The same computation as an XDP program reading both buffers from the packet.
    lines = ["mov r6, r1", "ldxw r7, [r6+0]", "ldxw r8, [r6+4]", "mov r2, r7", f"add r2, {nf + nt + 14}",
             "mov r0, 0", "jgt r2, r8, out"]
    for i in range(0, nf, 4):
        lines += [f"ldxw r3, [r7+{14 + i}]", f"stxw [r10-{128 - i}], r3"]
    for i in range(0, nt, 4):
        lines += [f"ldxw r3, [r7+{14 + nf + i}]", f"stxw [r10-{64 - i}], r3"]
    lines += ["mov r1, r10", "add r1, -128", f"mov r2, {nf}", "mov r3, r10", "add r3, -64", f"mov r4, {nt}",
              f"mov r5, {seed}", "call 28", "out:", "exit"]
    _same(kernel, asm("\n".join(lines)), bytes(14) + frm + to + bytes(8))


@pytest.mark.kernel
def test_byte_helpers_and_ld_abs_agree_with_kernel():
    kernel = _kernel()
    frame = bytes(range(64))
    for offset in (0, 10, 56, 60, 61):
        xdp = asm(f"""
            stdw [r10-8], 0
            mov r6, r1
            mov r2, {offset}
            mov r3, r10
            add r3, -8
            mov r4, 4
            call 189
            mov r7, r0
            mov r1, r6
            mov r2, 2
            mov r3, r10
            add r3, -8
            mov r4, 4
            call 190
            mov r0, r7
            exit
        """)
        _same(kernel, xdp, frame)
        tc = asm(f"""
            .type tc
            stdw [r10-8], 0
            mov r6, r1
            mov r2, {offset}
            mov r3, r10
            add r3, -8
            mov r4, 4
            call 26
            mov r7, r0
            mov r1, r6
            mov r2, 2
            mov r3, r10
            add r3, -8
            mov r4, 4
            mov r5, 0
            call 9
            add r0, r7
            exit
        """)
        _same(kernel, tc, PacketIn(frame, ingress_ifindex=0))
    for offset in (0, 12, 60, 61, 64, -1, -0x100000, -0x100000 + 2, -0x100000 + 48, -0x100000 + 50,
                   -0x200000, -0x200000 + 12, -0x100001, -0x1FF000, -0x200001):
        ldabs = asm(f".type tc\nmov r6, r1\nldabsw {offset}\nexit")
        _same(kernel, ldabs, PacketIn(frame, ingress_ifindex=0))
        ldind = asm(f".type tc\nmov r6, r1\nmov r7, {offset}\nldindh r7, 2\nexit")
        _same(kernel, ldind, PacketIn(frame, ingress_ifindex=0))


@pytest.mark.kernel
def test_printk_return_value_agrees_with_kernel():
    kernel = _kernel()
    for fmt in (b"v=%d u=%u x=%x!\0", b"%ld %lx %%\0", b"plain\0", b"%d %d %d %d\0"):
        prog = _printk_prog(fmt, -5, -1, 255)
        want = kernel.run_in_kernel(prog, bytes(60)).r0
        assert run(prog, bytes(60)).r0 & 0xFFFF_FFFF == want, fmt


# -- bpf_loop ---------------------------------------------------------------------------------------

def _loop_prog(n: int, stop: int, flags: int = 0):
    return asm(f"""
        stdw [r10-8], 0
        mov r6, 1000
        mov r1, {n}
        lddw r2, func(cb)
        mov r3, r10
        add r3, -8
        mov r4, {flags}
        call 181
        ldxdw r1, [r10-8]
        lsh r0, 16
        add r0, r1
        add r0, r6
        exit
    cb:
        ldxdw r3, [r2+0]
        add r3, r1
        add r3, 1
        stxdw [r2+0], r3
        mov r6, 5
        mov r0, 0
        jlt r1, {stop}, keep
        mov r0, 1
    keep:
        exit
    """)


@pytest.mark.parametrize("n,stop", [(0, 9), (1, 9), (5, 100), (10, 3), (10, 0)])
def test_bpf_loop_against_python(n, stop):
    # Python model of bpf_loop: iterations until the callback returns 1, summing i + 1.
    iterations, total = 0, 0
    for i in range(n):
        iterations += 1
        total += i + 1
        if not i < stop:
            break
    res = run_raw(_loop_prog(n, stop))
    assert res.fault is None, res.fault
    assert res.r0 == (iterations << 16) + total + 1000   # the caller's r6 survives the callbacks
    # 13 in the caller; 8 per callback run, 9 when it takes the stop branch.
    assert res.insns == 13 + iterations * 8 + sum(1 for i in range(iterations) if not i < stop)


def test_bpf_loop_errors_and_callback_faults():
    assert run_raw(_loop_prog(5, 9, flags=1)).r0 == ((neg(EINVAL) << 16) + 1000) & M64
    # -E2BIG as the kernel's inlined bpf_loop returns it: a 32-bit value, zero-extended
    assert run_raw(_loop_prog(1 << 24, 9)).r0 == ((((neg(7) & 0xFFFFFFFF)) << 16) + 1000) & M64
    prog = asm("mov r1, 3\nlddw r2, func(cb)\nmov r3, 0\nmov r4, 0\ncall 181\nexit\ncb:\nldxdw r0, [r2+0]\nexit")
    res = run_raw(prog)
    assert res.fault is not None and res.fault.pc == 7 and "NULL" in res.fault.reason
    res = run_raw(asm("mov r1, 3\nmov r2, 0\nmov r3, 0\nmov r4, 0\ncall 181\nexit"))
    assert res.fault is not None and "function pointer" in res.fault.reason


def test_bpf_loop_counts_against_the_budget():
    res = run_raw(_loop_prog(1000, 10**6), budget=500)
    assert res.fault is not None and "budget" in res.fault.reason and res.insns == 500


# -- l3/l4_csum_replace ---------------------------------------------------------------------------------

def _ipv4_frame(ttl: int = 64) -> bytearray:
    hdr = bytearray(bytes.fromhex("45000054abcd400000010000c0a80001c0a800c7"))
    hdr[8] = ttl
    total = sum(struct.unpack("!10H", bytes(hdr)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    hdr[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    return bytearray(b"\x00" * 12 + b"\x08\x00") + hdr + bytearray(26)


def _header_ok(frame: bytes) -> bool:
    total = sum(struct.unpack("!10H", frame[14:34]))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


@pytest.mark.parametrize("size", [2, 4])
def test_l3_csum_replace_keeps_ipv4_header_valid(size):
    # Rewrite the TTL/protocol word (2 bytes) or the source address (4 bytes) and patch the checksum.
    frame = _ipv4_frame()
    if size == 2:
        off, old = 22, bytes(frame[22:24])
        new = bytes([17, old[1]])
    else:
        off, old, new = 26, bytes(frame[26:30]), bytes([10, 1, 2, 3])
    prog = asm(f"""
        .type tc
        mov r6, r1
        lddw r3, {int.from_bytes(old, 'little')}
        lddw r4, {int.from_bytes(new, 'little')}
        mov r2, 24
        mov r5, {size}
        call 10
        mov r7, r0
        mov r1, r6
        mov r2, {off}
        mov r3, r10
        add r3, -8
        lddw r4, {int.from_bytes(new, 'little')}
        stxdw [r10-8], r4
        mov r4, {size}
        mov r5, 0
        call 9
        add r0, r7
        exit
    """)
    res = run(prog, bytes(frame))
    assert res.fault is None and res.r0 == 0
    assert res.packet[off : off + size] == new and _header_ok(res.packet)


def test_csum_replace_errors_and_mangled_zero():
    frame = bytes(_ipv4_frame())
    call = lambda helper, off, flags, frm=0, to=0: asm(  # noqa: E731
        f".type tc\nlddw r3, {frm}\nlddw r4, {to}\nmov r2, {off}\nmov r5, {flags}\ncall {helper}\nexit")
    assert run(call(10, 25, 2), frame).r0 == neg(EFAULT)         # odd offset
    assert run(call(10, 24, 3), frame).r0 == neg(EINVAL)         # field size 3
    assert run(call(10, 24, 0, frm=1), frame).r0 == neg(EINVAL)  # by-diff needs from == 0
    assert run(call(10, 24, 1 << 5), frame).r0 == neg(EINVAL)    # l4 flags are not l3 flags
    zero = bytearray(frame)
    zero[40:42] = b"\0\0"                                         # a UDP checksum of 0 means "none"
    res = run(call(11, 40, 2 | (1 << 5), frm=0, to=0x1234), bytes(zero))
    assert res.r0 == 0 and res.packet[40:42] == b"\0\0"
    # Forcing: 0 becomes ~0x1234 = 0xedcb; a result of exactly 0 would be written as 0xffff.
    res = run(call(11, 40, 2 | (1 << 5) | (1 << 6), frm=0, to=0x1234), bytes(zero))
    assert res.r0 == 0 and int.from_bytes(res.packet[40:42], "little") == 0xEDCB


@pytest.mark.kernel
def test_csum_replace_agrees_with_kernel():
    import random

    kernel = _kernel()
    rng = random.Random(11)
    compared = 0
    for helper in (10, 11):
        for _ in range(40):
            flags = rng.choice([0, 2, 4, 2 | 32, 4 | 16, 32, 2 | 32 | 64, 3])
            offset = rng.choice([24, 40, 41, 62, 20])
            frm = rng.choice([0, rng.randrange(1 << 16), rng.randrange(1 << 32), 0xFFFF])
            to = rng.choice([0, rng.randrange(1 << 16), rng.randrange(1 << 32), 0xFFFF])
            frame = bytearray(rng.randbytes(64))
            frame[12:14] = b"\x08\x00"
            if rng.random() < 0.3:
                frame[40:42] = b"\0\0"
            prog = asm(f".type tc\nlddw r3, {frm}\nlddw r4, {to}\nmov r2, {offset}\nmov r5, {flags}\ncall {helper}\nexit")
            pkt = PacketIn(bytes(frame), ingress_ifindex=0)
            try:
                want = kernel.run_in_kernel(prog, pkt)
            except kernel.KernelError:
                continue
            got = run(prog, pkt)
            assert (got.r0 & 0xFFFF_FFFF, got.packet) == (want.r0, want.packet), (helper, flags, offset, frm, to)
            compared += 1
    assert compared >= 40


@pytest.mark.kernel
def test_redirect_map_agrees_with_kernel():
    kernel = _kernel()
    slot1 = [((1).to_bytes(4, "little"), (1).to_bytes(4, "little"))]   # slot 1 -> lo (ifindex 1)
    for key, flags in [(1, 0), (2, 0), (2, 2), (3, 1), (9, 3), (1, 8), (1, 32)]:
        prog = asm(f".map tx devmap key=4 value=4 entries=4\nlddw r1, map:tx\nmov r2, {key}\nmov r3, {flags}\n"
                   "call 51\nexit")
        with kernel.KernelProgram(prog, maps_in={"tx": slot1}) as kp:
            want = kp.run(bytes(60)).r0
        store = MapStore.from_program(prog)
        store.by_name("tx").update(*slot1[0])
        assert run(prog, bytes(60), maps=store).r0 == want, (key, flags)


def test_for_each_map_elem_visits_entries_until_stopped():
    prog = asm("""
        .map h hash key=4 value=8 entries=8
        stdw [r10-8], 0
        lddw r1, map:h
        lddw r2, func(cb)
        mov r3, r10
        add r3, -8
        mov r4, 0
        call 164
        ldxdw r1, [r10-8]
        lsh r0, 32
        or r0, r1
        exit
    cb:
        ldxw r5, [r2+0]
        ldxdw r6, [r3+0]
        add r6, r5
        stxdw [r3+0], r6
        ldxdw r7, [r4+0]
        add r7, r6
        stxdw [r4+0], r7
        mov r0, 0
        jne r5, 3, go
        mov r0, 1
    go:
        exit
    """)
    store = MapStore.from_program(prog)
    entries = [(5, 100), (3, 10), (7, 1000)]
    for k, v in entries:
        store.by_name("h").update(k.to_bytes(4, "little"), v.to_bytes(8, "little"))
    res = run(prog, bytes(60), maps=store)
    assert res.fault is None
    # Python model: visit in insertion order, value += key, ctx += new value, stop after key 3.
    visited, total = 0, 0
    for k, v in entries:
        visited += 1
        total += v + k
        if k == 3:
            break
    assert res.r0 == (visited << 32) | total
    after = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in res.maps["h"].items()}
    assert after == {5: 105, 3: 13, 7: 1000}

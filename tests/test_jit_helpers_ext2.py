"""bpf_xdp_load_bytes / bpf_xdp_store_bytes / bpf_csum_diff on the NIC (firmware routines).

Each program runs at -O0, -O1 and -O2 in both simulators and is compared with the reference
interpreter and, where ``bpf()`` works, with the kernel's BPF_PROG_TEST_RUN: the return codes for
offsets and lengths out of range, the bytes copied into the stack, a map value and the packet, and
csum_diff's exact arithmetic (push, pull and diff paths, odd sizes refused).
"""

from __future__ import annotations

import random

import pytest

import nfpjit
from nfpjit.driver import compile as jit_compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.result import PacketIn
from nfpjit.offload import load_profile
from nfpjit.testing import compare_results

from xdp_cases import needs_kernel

LEVELS = (0, 1, 2)
ENGINES = ("interp", "compiled")


def _frames(n: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [14, 15, 33, 60, 64, 65, 100, 128, 200, 1500]
    return [bytes(rng.randrange(256) for _ in range(sizes[i % len(sizes)] + rng.randrange(4))) for i in range(n)]


def _images(program):
    return {level: jit_compile(program, opt_level=level).image for level in LEVELS}


def _agree(program, frames, *, routine: str | None = None):
    """Every frame, image and engine gives the interpreter's result (action, r0, packet, maps)."""
    images = _images(program)
    for frame in frames:
        want = run(program, frame)
        assert want.fault is None, want.fault
        for level, image in images.items():
            for engine in ENGINES:
                sim = simulate_image(image, frame, engine=engine)
                got = to_run_result(sim)
                diffs = compare_results(want, got)
                assert not diffs, (f"-O{level}", engine, len(frame), diffs)
                if routine is not None:
                    assert sim.routine_calls.get(routine, 0) >= 1, (level, engine, sim.routine_calls)
    return images


def _kernel_agrees(program, frames):
    from nfpjit.kernel import KernelProgram

    images = _images(program)
    with KernelProgram(program) as kp:
        for frame in frames:
            want = kp.run(PacketIn(frame))
            for level, image in images.items():
                got = to_run_result(simulate_image(image, frame))
                assert not compare_results(want, got, maps=False), (level, len(frame), want.r0, got.r0)


# -- xdp_load_bytes / xdp_store_bytes ---------------------------------------------------------------

# R0 = the helper's return (low 32 bits as the verdict's source: 0 -> XDP_ABORTED ... so we map it),
# the loaded words are stored into the map and the return code too; the packet is unchanged
LOAD_STACK = """.type xdp
.map out array key=4 value=24 entries=2
    mov r6, r1
    stdw [r10-8], 0
    stdw [r10-16], 0
    stdw [r10-24], 0
    mov r2, {offset}
    mov r3, r10
    add r3, -24
    mov r4, {length}
    call xdp_load_bytes
    stxw [r10-28], r0
    mov r7, r0
    mov r1, 0
    stxw [r10-32], r1
    lddw r1, map:out
    mov r2, r10
    add r2, -32
    mov r3, r10
    add r3, -24
    mov r4, 0
    call map_update_elem
    mov r1, 1
    stxw [r10-32], r1
    lddw r1, map:out
    mov r2, r10
    add r2, -32
    mov r3, r10
    add r3, -28
    mov r4, 0
    call map_update_elem
    mov r0, 2
    jeq r7, 0, out
    mov r0, 1
out:
    exit
"""


@pytest.mark.parametrize("offset,length", [(0, 1), (0, 24), (3, 7), (12, 2), (50, 10), (60, 4),
                                           (0x10000, 4), (100, 24)])
def test_load_bytes_into_the_stack(offset, length):
    program = assemble(LOAD_STACK.format(offset=offset, length=length))
    assert nfpjit.check(program).ok
    _agree(program, _frames(20), routine="fw_xdp_load_bytes")


def test_load_bytes_return_codes():
    """-EFAULT above 0xffff (bpf_xdp_pointer), -EINVAL past the end, 0 otherwise (the interpreter's)."""
    for offset, length, frame_len, want in ((0x10000, 4, 60, -14), (4, 24, 20, -22), (4, 16, 20, 0)):
        program = assemble(LOAD_STACK.format(offset=offset, length=length))
        image = jit_compile(program, opt_level=2).image
        for engine in ENGINES:
            sim = simulate_image(image, bytes(range(frame_len)), engine=engine)
            code = int.from_bytes(sim.maps["out"][(1).to_bytes(4, "little")][:4], "little", signed=True)
            assert code == want, (offset, length, engine)


STORE = """.type xdp
.map vals array key=4 value=16 entries=1
    mov r6, r1
    stdw [r10-8], 0
    stdw [r10-16], 0
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
    stxdw [r8+0], r1
    ldxdw r1, [r10-8]
    xor r1, -1
    stxdw [r8+8], r1
    mov r1, r6
    mov r2, {offset}
    mov r3, {buf}
    mov r4, {length}
    call xdp_store_bytes
    jne r0, 0, fail
    mov r0, 3
    exit
fail:
    mov r0, 1
    exit
"""


@pytest.mark.parametrize("buf", ["r10", "r8"])
@pytest.mark.parametrize("offset,length", [(0, 16), (5, 3), (14, 16), (40, 16), (58, 2), (0xffff, 1)])
def test_store_bytes_from_stack_and_map_value(buf, offset, length):
    src = STORE.replace("mov r3, {buf}", "mov r3, r10\n    add r3, -16" if buf == "r10" else "mov r3, r8")
    program = assemble(src.format(offset=offset, length=length))
    assert nfpjit.check(program).ok
    _agree(program, _frames(20), routine="fw_xdp_store_bytes")


LOAD_TO_MAP = """.type xdp
.map vals array key=4 value=32 entries=1
    mov r6, r1
    stw [r10-4], 0
    lddw r1, map:vals
    mov r2, r10
    add r2, -4
    call map_lookup_elem
    jeq r0, 0, out
    mov r3, r0
    add r3, {dst}
    mov r1, r6
    mov r2, {offset}
    mov r4, {length}
    call xdp_load_bytes
    mov r0, 2
out:
    exit
"""


@pytest.mark.parametrize("dst,offset,length", [(0, 0, 32), (4, 6, 6), (3, 20, 9), (0, 70, 8)])
def test_load_bytes_into_a_map_value(dst, offset, length):
    program = assemble(LOAD_TO_MAP.format(dst=dst, offset=offset, length=length))
    assert nfpjit.check(program).ok
    _agree(program, _frames(20), routine="fw_xdp_load_bytes")


def test_byte_helpers_refused_by_nfp_kernel():
    kernel = load_profile("nfp-kernel")
    for src in (LOAD_STACK.format(offset=0, length=4), _csum("stack8", 8, "stack16", 8),
                STORE.replace("{buf}", "r8").format(offset=0, length=4)):
        assert "unsupported-helper" in nfpjit.check(assemble(src), profile=kernel).codes


@needs_kernel
@pytest.mark.parametrize("offset,length", [(0, 24), (3, 7), (50, 10), (0x10000, 4)])
def test_load_bytes_agrees_with_the_kernel(offset, length):
    _kernel_agrees(assemble(LOAD_STACK.format(offset=offset, length=length)), _frames(12))


@needs_kernel
@pytest.mark.parametrize("buf", ["r10", "r8"])
@pytest.mark.parametrize("offset,length", [(5, 3), (40, 16), (0xffff, 1)])
def test_store_bytes_agrees_with_the_kernel(buf, offset, length):
    src = STORE.replace("mov r3, {buf}", "mov r3, r10\n    add r3, -16" if buf == "r10" else "mov r3, r8")
    _kernel_agrees(assemble(src.format(offset=offset, length=length)), _frames(12))


# -- csum_diff -----------------------------------------------------------------------------------------

# from = 8 packet-derived bytes on the stack (or NULL), to = 8 more (or the packet itself); the folded
# result goes into the packet's first 4 bytes so that the whole value is compared
CSUM = """.type xdp
    mov r6, r1
    ldxw r7, [r6+0]
    ldxw r8, [r6+4]
    mov r1, r7
    add r1, 40
    mov r0, 1
    jgt r1, r8, out
    ldxdw r1, [r7+8]
    stxdw [r10-8], r1
    ldxdw r1, [r7+16]
    stxdw [r10-16], r1
    ldxdw r1, [r7+24]
    stxdw [r10-24], r1
    mov r1, {frm}
    mov r2, {from_size}
    mov r3, {to}
    mov r4, {to_size}
    ldxw r5, [r7+{seed_at}]
    call csum_diff
    stxw [r7+0], r0
    rsh r0, 32
    stxw [r7+4], r0
    mov r0, 3
out:
    exit
"""


def _csum(frm: str, from_size: int, to: str, to_size: int, seed_at: int = 32) -> str:
    regs = {"stack8": "r10\n    add r1, -8", "stack24": "r10\n    add r1, -24", "null": "0"}
    src = CSUM.replace("mov r1, {frm}", "mov r1, " + regs[frm])
    to_text = {"stack16": "r10\n    add r3, -16", "stack24": "r10\n    add r3, -24", "packet": "r7", "null": "0"}[to]
    src = src.replace("mov r3, {to}", "mov r3, " + to_text)
    return src.format(from_size=from_size, to_size=to_size, seed_at=seed_at)


# sizes that are no multiple of 4: the kernel measured (6.18) sums them with a zero-padded tail
CSUM_CASES = [("stack8", 8, "stack16", 8), ("null", 0, "stack24", 24), ("stack24", 24, "null", 0),
              ("stack8", 4, "packet", 40), ("stack8", 8, "stack16", 6), ("stack24", 24, "packet", 40),
              ("null", 0, "null", 0), ("stack8", 0, "stack16", 0), ("stack8", 5, "null", 0),
              ("null", 0, "packet", 37), ("stack8", 1, "stack16", 3)]


@pytest.mark.parametrize("case", CSUM_CASES)
def test_csum_diff_matches_the_interpreter(case):
    program = assemble(_csum(*case))
    assert nfpjit.check(program).ok
    frames = [f for f in _frames(30, seed=5) if len(f) >= 40] + [bytes([0xff] * 64), bytes(64)]
    _agree(program, frames, routine="fw_csum_diff")


def test_csum_diff_value_reaches_the_packet():
    """The folded sum of a known buffer, as the simulators store it (not only equal to the interpreter)."""
    from nfpjit.bits import csum_diff_value

    frame = bytes(range(1, 65))
    image = jit_compile(assemble(_csum("null", 0, "packet", 37)), opt_level=2).image
    want = csum_diff_value(b"", frame[:37], int.from_bytes(frame[32:36], "little"))
    for engine in ENGINES:
        sim = simulate_image(image, frame, engine=engine)
        assert int.from_bytes(sim.packet[:8], "little") == want != 0, engine


@needs_kernel
@pytest.mark.parametrize("case", CSUM_CASES)
def test_csum_diff_agrees_with_the_kernel(case):
    frames = [f for f in _frames(20, seed=5) if len(f) >= 40] + [bytes([0xff] * 64), bytes(64)]
    _kernel_agrees(assemble(_csum(*case)), frames)

"""Division and modulo by a register of unknown value: the firmware's ``fw_divide`` routine.

The operands come from the packet, so the analysis knows nothing about them and the lowering must
call the routine (32 and 64 bits, unsigned and signed, div and mod).  The quotient or remainder is
written back into the packet (all 64 bits are compared) and returned (the verdict's low word).
Every case runs at -O0, -O1 and -O2 in both simulators against the reference interpreter and,
where ``bpf()`` works, against the kernel (BPF_PROG_TEST_RUN).
"""

from __future__ import annotations

import struct

import pytest

from nfpjit.bits import MASK64
from nfpjit.driver import compile as jit_compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.isa.sim import CYCLES
from nfpjit.isa.sim.firmware import DIV_MOD, DIV_SIGNED, DIV_WIDE, Routine, divide_value
from nfpjit.testing import compare_results

from xdp_cases import needs_kernel

OPS = ["div", "mod", "sdiv", "smod", "div32", "mod32", "sdiv32", "smod32"]
VALUES = [0, 1, 2, 3, 7, 100, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x123456789ABCDEF0,
          0x7FFFFFFFFFFFFFFF, 0x8000000000000000, MASK64, MASK64 - 6, 0xFFFFFFFF80000000, 0xFFFFFFFF00000001]
PAIRS = [(a, b) for a in VALUES for b in VALUES[::2]] + [(a, b) for a in VALUES[1::3] for b in VALUES[1::2]]


def _program(op: str):
    return assemble(f""".type xdp
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 16
        mov r0, 1
        jgt r4, r3, out
        ldxdw r5, [r2+0]
        ldxdw r6, [r2+8]
        {op} r5, r6
        stxdw [r2+0], r5
        mov r0, r5
        and r0, 3
    out:
        exit
    """)


def _frame(a: int, b: int) -> bytes:
    return struct.pack("<QQ", a & MASK64, b & MASK64) + bytes(range(44))


@pytest.fixture(scope="module", params=OPS)
def case(request):
    program = _program(request.param)
    images = {level: jit_compile(program, opt_level=level).image for level in (0, 1, 2)}
    return request.param, program, images


def test_the_routine_is_called(case):
    op, program, images = case
    for level, image in images.items():
        sim = simulate_image(image, _frame(100, 7))
        assert sim.routine_calls.get(Routine.DIVIDE.symbol) == 1, (op, level, sim.routine_calls)


@pytest.mark.parametrize("engine", ["interp", "compiled"])
def test_agrees_with_the_interpreter(case, engine):
    op, program, images = case
    for a, b in PAIRS:
        frame = _frame(a, b)
        want = run(program, frame)
        assert want.fault is None
        for level, image in images.items():
            got = to_run_result(simulate_image(image, frame, engine=engine))
            diffs = compare_results(want, got)
            assert not diffs, (op, hex(a), hex(b), f"-O{level}", engine, diffs)


def test_cycles_grow_with_the_quotient(case):
    op, _, images = case
    wide = "32" not in op
    step = CYCLES["fw_divide_step64" if wide else "fw_divide_step32"]
    image = images[0]
    small = simulate_image(image, _frame(5, 3))          # bitlen 3 - bitlen 2 + 1 = 2 quotient bits
    large = simulate_image(image, _frame(0x7FFFFFFF, 1))  # 31 quotient bits
    by_zero = simulate_image(image, _frame(0x7FFFFFFF, 0))
    assert large.cycles - small.cycles == 29 * step
    assert small.cycles - by_zero.cycles == 2 * step
    for engine_result in (simulate_image(image, _frame(0x7FFFFFFF, 1), engine="compiled"),):
        assert engine_result.cycles == large.cycles


def test_divide_value_follows_ebpf_rules():
    m = MASK64
    # x / 0 = 0, x % 0 = x (32-bit: the low word), INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0
    assert divide_value(5, 9, 0, 0, DIV_WIDE) == (0, 0)
    assert divide_value(5, 9, 0, 0, DIV_WIDE | DIV_MOD)[0] == 9 << 32 | 5
    assert divide_value(0xFFFFFFFB, 9, 0, 0, DIV_SIGNED | DIV_MOD)[0] == 0xFFFFFFFB
    assert divide_value(0, 0x80000000, m & 0xFFFFFFFF, m >> 32, DIV_WIDE | DIV_SIGNED)[0] == 1 << 63
    assert divide_value(0, 0x80000000, m & 0xFFFFFFFF, m >> 32, DIV_WIDE | DIV_SIGNED | DIV_MOD)[0] == 0
    assert divide_value(0x80000000, 0, 0xFFFFFFFF, 0, DIV_SIGNED)[0] == 0x80000000
    assert divide_value((-7) & 0xFFFFFFFF, 0, 2, 0, DIV_SIGNED)[0] == (-3) & 0xFFFFFFFF
    assert divide_value((-7) & 0xFFFFFFFF, 0, 2, 0, DIV_SIGNED | DIV_MOD)[0] == (-1) & 0xFFFFFFFF
    assert divide_value(7, 0, (-2) & 0xFFFFFFFF, 0, DIV_SIGNED | DIV_MOD)[0] == 1
    assert divide_value(1000, 0, 3, 0, 0) == (333, 9)       # bitlen 10 - bitlen 2 + 1


@needs_kernel
def test_agrees_with_the_kernel(case):
    from nfpjit.ebpf.result import PacketIn
    from nfpjit.kernel import KernelProgram

    op, program, images = case
    with KernelProgram(program) as kp:
        for a, b in PAIRS[::3]:
            frame = _frame(a, b)
            want = kp.run(PacketIn(frame))
            for level, image in images.items():
                got = to_run_result(simulate_image(image, frame))
                diffs = compare_results(want, got, maps=False)
                assert not diffs, (op, hex(a), hex(b), f"-O{level}", diffs)

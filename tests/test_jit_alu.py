"""The JIT's ALU, ld_imm64, jump and exit lowering, run in the NFP simulator against the reference interpreter.

Each case is a small eBPF program that loads edge values (0, 1, -1, powers of
two, 2**31, 2**32 - 1, 2**63, INT_MIN ...) into registers, does one operation
and returns the result in r0.  The interpreter's r0 is the oracle; the
simulator must agree on all 64 bits and on the XDP action.  Most cases lower
with an analysis that knows nothing ("opaque": every instruction reachable,
no ranges), so that constant registers do not let the lowering skip the code
under test; the cases that depend on analysis facts (16x16 multiplies,
64-bit division, -O1 shift ranges) use the real analysis.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.analysis import analyze
from nfpjit.bits import MASK32, MASK64, s32
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.errors import UnsupportedError
from nfpjit.isa.image import Image
from nfpjit.isa.sim import simulate
from nfpjit.isa.table import MulStep, Op
from nfpjit.jit import lower

OPAQUE = SimpleNamespace(facts={}, cfg=None)
PACKET = bytes(range(64))

V64 = [0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 255, 256, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
       0x100000000, 0x123456789ABCDEF0, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, MASK64, MASK64 - 1,
       0xFFFFFFFF80000000, 0xFFFFFFFF00000000, 0x00000001FFFFFFFF]
IMM = [0, 1, 2, 7, 31, 32, 33, 63, 255, 256, 0xFFFF, 0x10000, 0x7FFFFFFF, -1, -2, -255, -256, -0x80000000, 0x1234567]


def _h(v: int) -> str:
    return hex(v & MASK64)


def check(text: str, *, analysis=OPAQUE, opt_level: int = 0, mprog_check=None) -> int:
    """Lower, simulate and compare with the interpreter; returns the simulator's r0."""
    program = assemble(text)
    want = run(program, PACKET)
    assert want.fault is None, want.fault
    if analysis == "real":
        analysis = analyze(program)
    mprog = lower(program, analysis, opt_level=opt_level)
    if mprog_check is not None:
        mprog_check(mprog)
    asm = mprog.assemble()
    got = simulate(Image(code=asm.words), PACKET)
    assert got.fault is None, (got.fault, text, mprog.listing())
    # at -O1 the high word of R0 at exit is not kept: the XDP verdict is the low word
    bits = MASK64 if opt_level == 0 else MASK32
    assert got.r0 & bits == want.r0 & bits, f"r0 {got.r0:#x} != interpreter {want.r0:#x}\n{text}\n{mprog.listing()}"
    ret = want.r0 & MASK32
    assert got.action == (ret if ret <= 4 else 0)
    return got.r0


def binop(op: str, a: int, b: int, **kw) -> int:
    return check(f"lddw r1, {_h(a)}\nlddw r2, {_h(b)}\n{op} r1, r2\nmov r0, r1\nexit\n", **kw)


def immop(op: str, a: int, k: int, **kw) -> int:
    return check(f"lddw r1, {_h(a)}\n{op} r1, {k}\nmov r0, r1\nexit\n", **kw)


ALU_OPS = ["add", "sub", "or", "and", "xor", "mov", "lsh", "rsh", "arsh", "mul"]


@pytest.mark.parametrize("op", ALU_OPS + [o + "32" for o in ALU_OPS])
def test_register_operands_on_edge_values(op):
    for a in V64:
        for b in V64[::2]:
            binop(op, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("op", ALU_OPS + [o + "32" for o in ALU_OPS])
def test_register_operands_all_edge_pairs(op):
    for a in V64:
        for b in V64:
            binop(op, a, b)


@pytest.mark.parametrize("op", ALU_OPS + [o + "32" for o in ALU_OPS])
def test_immediate_operands_on_edge_values(op):
    for a in V64[::2]:
        for k in IMM:
            immop(op, a, k)


@pytest.mark.parametrize("op", ["neg", "neg32", "le16", "le32", "le64", "be16", "be32", "be64",
                                "bswap16", "bswap32", "bswap64"])
def test_unary_on_edge_values(op):
    for a in V64:
        check(f"lddw r3, {_h(a)}\n{op} r3\nmov r0, r3\nexit\n")


@pytest.mark.parametrize("op", ["movsx864", "movsx1664", "movsx3264", "movsx832", "movsx1632"])
def test_sign_extending_moves(op):
    for a in V64 + [0x80, 0x7F, 0xFF80, 0x8000, 0x17F]:
        check(f"lddw r4, {_h(a)}\n{op} r5, r4\nmov r0, r5\nexit\n")


def test_same_register_both_operands():
    for op in ALU_OPS + [o + "32" for o in ALU_OPS]:
        for a in V64[::3]:
            check(f"lddw r6, {_h(a)}\n{op} r6, r6\nmov r0, r6\nexit\n")


def test_r0_as_destination_and_source():
    for a in V64[::3]:
        for b in V64[::3]:
            check(f"lddw r0, {_h(a)}\nlddw r9, {_h(b)}\nadd r0, r9\nmul r9, r0\nsub r0, r9\nexit\n")


@pytest.mark.parametrize("op", ["lsh", "rsh", "arsh"])
def test_64_bit_shift_by_register_every_amount(op):
    for a in (0x8000000000000001, 0x123456789ABCDEF0, MASK64, 1):
        for n in list(range(0, 66)) + [127, 0xFFFFFFFF, 0x100000020]:
            binop(op, a, n)


@pytest.mark.parametrize("opt_level", [0, 1])
def test_shift_by_register_with_known_range(opt_level):
    # the amount is masked to a known range, so -O1 may drop one side of the bit-5 branch
    for a in (0x8000000000000001, MASK64):
        for n, mask in ((5, 31), (40, 63), (36, 0x2F)):
            text = (f"lddw r1, {_h(a)}\nlddw r2, {n}\nand r2, {mask}\nor r2, {32 if n >= 32 else 0}\n"
                    "lsh r1, r2\nrsh r1, r2\narsh r1, r2\nmov r0, r1\nrsh r1, 32\nxor r0, r1\nexit\n")
            check(text, analysis="real", opt_level=opt_level)


DIVISORS = [0, 1, 2, 3, 5, 7, 10, 16, 100, 255, 256, 641, 1000, 65535, 65537, 0x7FFFFFFF, -1, -2, -3, -7, -16,
            -1000, -0x80000000]
DIVIDENDS32 = [0, 1, 2, 3, 6, 7, 99, 100, 101, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF,
               0xFFFFFFFE, 0xFFFFFF9C, 0x12345678, 0x100000007]


@pytest.mark.parametrize("op", ["div32", "mod32", "sdiv32", "smod32"])
def test_32_bit_division_by_constants(op):
    for k in DIVISORS:
        for a in DIVIDENDS32:
            immop(op, a, k)


@pytest.mark.parametrize("op", ["div", "mod", "sdiv", "smod"])
def test_64_bit_division_of_32_bit_values(op):
    # the dividend is a constant below 2**32, which the analysis knows: the 32-bit path applies
    # (a constant divisor of 0 is a verifier error, so the analysis marks the rest unreachable)
    for k in DIVISORS[1:]:
        for a in DIVIDENDS32:
            if a <= MASK32:
                immop(op, a, k, analysis="real")


@pytest.mark.parametrize("op", ["div", "mod", "sdiv", "smod"])
def test_64_bit_division_of_wide_values_by_constants(op):
    # nothing known about the dividend: the 64-step shift-subtract loop (or a shift/mask for 2**k)
    for k in DIVISORS[1::2] + [-0x80000000, 1, 2]:
        for a in V64[::2] + [1 << 40, (1 << 63) + 12345]:
            immop(op, a, k)


@pytest.mark.parametrize("op", ["div", "mod", "sdiv", "smod"])
def test_64_bit_division_by_wide_constant_registers(op):
    # 64-bit divisors only reach the JIT as registers the analysis proves constant
    for k in ((1 << 63) + 5, 1 << 63, (1 << 40) + 3, MASK64, 1 << 33, (1 << 62) - 1, 0x80000001):
        for a in (MASK64, (1 << 63) + 7, 1 << 63, (1 << 40) + 77, 12345):
            binop(op, a, k, analysis="real")


@pytest.mark.parametrize("op", ["div32", "mod32", "sdiv32", "smod32", "div", "mod", "sdiv", "smod"])
def test_division_by_a_register_the_analysis_proves_constant(op):
    for k in (3, 7, 16, 1000, -7, -16):
        for a in (0, 1, 100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
            check(f"lddw r1, {_h(a)}\nlddw r2, {_h(k)}\n{op} r1, r2\nmov r0, r1\nexit\n", analysis="real")


def test_division_by_an_unknown_register_calls_the_firmware():
    # the values are in tests/test_jit_divmod.py; here: the lowering calls fw_divide, and the real
    # card's profile still refuses the program
    import nfpjit

    program = assemble("mov r1, 100\nmov r2, r1\ndiv r1, r2\nmov r0, r1\nexit\n")
    relocs = [m.reloc.symbol for m in lower(program, OPAQUE).instructions() if m.reloc is not None]
    assert relocs == ["fw_divide"]
    divide = assemble(".type xdp\ncall get_prandom_u32\nmov r2, r0\nmov r0, 100\ndiv r0, r2\nexit\n")
    assert nfpjit.check(divide).ok
    assert nfpjit.check(divide, profile="nfp-kernel").codes == {"div-by-variable"}


def _uses_mode(mode):
    def check_mode(mprog):
        steps = [m.instr.mul for m in mprog.instructions() if m.instr.op == Op.MUL_STEP]
        assert steps and all(s == mode for s in steps), steps
    return check_mode


def test_multiply_uses_16x16_when_the_analysis_bounds_both_operands():
    for a, b in ((0xFFFF, 0xFFFF), (3, 0x1234), (0, 0xFFFF)):
        binop("mul32", a, b, analysis="real", mprog_check=_uses_mode(MulStep.M16X16))
        binop("mul", a, b, analysis="real", mprog_check=_uses_mode(MulStep.M16X16))
    binop("mul32", 0x10000, 0xFFFF, analysis="real", mprog_check=_uses_mode(MulStep.M32X32))


JMPS = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle"]
CMP_VALUES = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x100000001, 0x7FFFFFFFFFFFFFFF,
              0x8000000000000000, MASK64, MASK64 - 1, 0xFFFFFFFF00000000, 0x00000001FFFFFFFF]


def jump_case(op: str, a: int, b) -> int:
    operand = b if isinstance(b, str) else "r2"
    setup = f"lddw r2, {_h(b)}\n" if not isinstance(b, str) else ""
    text = f"lddw r1, {_h(a)}\n{setup}mov r0, 1\n{op} r1, {operand}, +1\nmov r0, 2\nexit\n"
    return check(text)


@pytest.mark.parametrize("op", JMPS + [o + "32" for o in JMPS])
def test_conditional_jumps_register(op):
    for a in CMP_VALUES:
        for b in CMP_VALUES:
            jump_case(op, a, b)


@pytest.mark.parametrize("op", JMPS + [o + "32" for o in JMPS])
def test_conditional_jumps_immediate(op):
    for a in CMP_VALUES[::2]:
        for k in IMM:
            jump_case(op, a, str(k))
    for a in CMP_VALUES[1::2]:
        for k in IMM[::3]:
            jump_case(op, a, str(k))


def test_unconditional_jumps_and_gotol():
    check("mov r0, 1\nja +1\nmov r0, 3\ngotol +1\nmov r0, 4\nexit\n")
    check("mov r0, 0\nja fwd\nback:\nadd r0, 1\nexit\nfwd:\nadd r0, 2\nja back\n")


def test_loop_runs_in_the_simulator():
    check("mov r0, 0\nmov r1, 10\nloop:\nadd r0, r1\nsub r1, 1\njne r1, 0, loop\nexit\n")


@pytest.mark.parametrize("action", [0, 1, 2, 3, 4, 5, 6, 0xFFFFFFFF, 0x100000002, -1])
def test_exit_actions(action):
    # out-of-range actions halt with XDP_ABORTED; r0 keeps the program's value
    r0 = check(f"lddw r0, {_h(action)}\nexit\n")
    assert r0 == action & MASK64


@settings(max_examples=150)
@given(st.sampled_from(ALU_OPS + [o + "32" for o in ALU_OPS] + ["jsgt", "jlt", "jsle32", "jge"]),
       st.integers(0, MASK64), st.integers(0, MASK64))
def test_random_values(op, a, b):
    if op.startswith("j"):
        jump_case(op, a, b)
    else:
        binop(op, a, b)


@settings(max_examples=100)
@given(st.sampled_from(["div32", "mod32", "sdiv32", "smod32"]), st.integers(0, MASK32),
       st.integers(-(1 << 31), (1 << 31) - 1))
def test_random_division_by_constants(op, a, k):
    immop(op, a, k)


def test_ld_imm64_constants():
    for v in V64:
        r0 = check(f"lddw r0, {_h(v)}\nexit\n")
        assert r0 == v
    assert s32(-1) == -1


_SEQ_OPS = ALU_OPS + [o + "32" for o in ALU_OPS] + ["neg", "neg32", "be16", "be32", "be64", "le16", "le32",
                                                     "bswap64", "movsx864", "movsx1632", "movsx3264"]
_DIVS = ["div", "mod", "sdiv", "smod", "div32", "mod32", "sdiv32", "smod32"]


@st.composite
def alu_sequences(draw):
    """Straight-line programs: random 64-bit values in r0-r9, random ALU ops, all registers folded into r0."""
    lines = [f"lddw r{r}, {_h(draw(st.sampled_from(V64) | st.integers(0, MASK64)))}" for r in range(10)]
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(_SEQ_OPS + _DIVS))
        d = draw(st.integers(0, 9))
        if op in _DIVS:
            lines.append(f"{op} r{d}, {draw(st.sampled_from(DIVISORS))}")
        elif op.startswith(("neg", "be", "le", "bswap")):
            lines.append(f"{op} r{d}")
        elif op.startswith("movsx"):
            lines.append(f"{op} r{d}, r{draw(st.integers(0, 9))}")
        elif draw(st.booleans()):
            lines.append(f"{op} r{d}, r{draw(st.integers(0, 9))}")
        else:
            lines.append(f"{op} r{d}, {draw(st.sampled_from(IMM))}")
    for r in range(1, 10):
        # r0 = r0 * 31 + rK is a bijection in each register: a wrong bit anywhere changes r0
        lines += ["mul r0, 31", f"add r0, r{r}"]
    return "\n".join(lines + ["exit"]) + "\n"


@settings(max_examples=60)
@given(alu_sequences())
def test_random_alu_sequences(text):
    check(text)


@pytest.mark.slow
@settings(max_examples=5000)
@given(alu_sequences())
def test_random_alu_sequences_many(text):
    check(text)

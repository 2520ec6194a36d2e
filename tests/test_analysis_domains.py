"""Soundness of the known-bits (tnum) and range (Scalar) domains.

Every property draws concrete numbers, builds a random abstract value that
contains each of them, applies an operation to both, and checks that the
concrete result lies inside the abstract result.  The concrete side is
computed independently with nfpjit.bits (eBPF's wrap-around and division
rules), so an unsound transfer function makes these tests fail.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.analysis.scalar import Bounds, Scalar, refine_scalar, scalar_branch
from nfpjit.analysis.tnum import Tnum
from nfpjit.bits import (MASK32, MASK64, bswap, s32, s64, sdiv, sext, smod, trunc, u32, udiv, umod)
from nfpjit.ebpf.opcodes import AluOp, JmpOp

EXAMPLES = settings(max_examples=60, deadline=None)

interesting = st.one_of(
    st.integers(0, MASK64),
    st.integers(0, 300),
    st.integers(0, MASK32),
    st.sampled_from([0, 1, 2, 31, 32, 63, 64, MASK32, 1 << 31, 1 << 63, MASK64, MASK64 - 1, (1 << 63) - 1]),
    st.integers(-300, -1).map(lambda v: v & MASK64),
)


@st.composite
def tnum_with_member(draw, bits=64):
    x = draw(interesting) & trunc(-1, bits)
    mask = draw(st.one_of(st.just(0), st.integers(0, trunc(-1, bits)), st.integers(0, 0xFF)))
    return Tnum(x & ~mask, mask), x


@st.composite
def bounds_with_member(draw, bits=64):
    t, x = draw(tnum_with_member(bits))
    top = trunc(-1, bits)
    umin = draw(st.one_of(st.just(0), st.integers(0, x)))
    umax = draw(st.one_of(st.just(top), st.integers(x, top)))
    sx = sext(x, bits)
    smin = draw(st.one_of(st.just(-(1 << (bits - 1))), st.integers(-(1 << (bits - 1)), sx)))
    smax = draw(st.one_of(st.just((1 << (bits - 1)) - 1), st.integers(sx, (1 << (bits - 1)) - 1)))
    b = Bounds(bits, t, umin, umax, smin, smax).tighten()
    assert b is not None and b.contains(x), "tighten lost a member"
    return b, x


@st.composite
def scalar_with_member(draw):
    full, x = draw(bounds_with_member(64))
    # the low word's own bounds: random, but containing x's low word
    t32, _ = Tnum(x & MASK32 & ~0, 0), None
    lo = x & MASK32
    mask32 = draw(st.one_of(st.just(MASK32), st.integers(0, MASK32)))
    umin = draw(st.one_of(st.just(0), st.integers(0, lo)))
    umax = draw(st.one_of(st.just(MASK32), st.integers(lo, MASK32)))
    low = Bounds(32, Tnum(lo & ~mask32, mask32), umin, umax, -(1 << 31), (1 << 31) - 1)
    s = Scalar.make(full, low)
    assert s is not None and s.contains(x), "Scalar.make lost a member"
    return s, x


# -- tnum --------------------------------------------------------------------------

TNUM_BINOPS = {
    "add": (Tnum.add, lambda a, b: (a + b) & MASK64),
    "sub": (Tnum.sub, lambda a, b: (a - b) & MASK64),
    "mul": (Tnum.mul, lambda a, b: (a * b) & MASK64),
    "and": (Tnum.and_, lambda a, b: a & b),
    "or": (Tnum.or_, lambda a, b: a | b),
    "xor": (Tnum.xor, lambda a, b: a ^ b),
}


@pytest.mark.parametrize("name", sorted(TNUM_BINOPS))
@EXAMPLES
@given(a=tnum_with_member(), b=tnum_with_member())
def test_tnum_binop_sound(name, a, b):
    (ta, x), (tb, y) = a, b
    abstract, concrete = TNUM_BINOPS[name]
    assert abstract(ta, tb).contains(concrete(x, y))


@EXAMPLES
@given(a=tnum_with_member(), k=st.integers(0, 63))
def test_tnum_shifts_and_neg_sound(a, k):
    t, x = a
    assert t.lshift(k).contains((x << k) & MASK64)
    assert t.rshift(k).contains(x >> k)
    assert t.arshift(k).contains(trunc(s64(x) >> k, 64))
    assert t.neg().contains(-x & MASK64)
    t32 = t.subreg()
    assert t32.arshift(k % 32, 32).contains(trunc(s32(x) >> (k % 32), 32))
    for bits in (16, 32, 64):
        assert t.cast(bits // 8).bswap(bits).contains(bswap(x, bits))


@EXAMPLES
@given(a=tnum_with_member(), b=tnum_with_member())
def test_tnum_union_intersect(a, b):
    (ta, x), (tb, y) = a, b
    u = ta.union(tb)
    assert u.contains(x) and u.contains(y)
    assert u.includes(ta) and u.includes(tb)
    inter = ta.intersect(Tnum.const(x))
    assert inter == Tnum.const(x)
    both = ta.intersect(tb)
    if tb.contains(x):
        assert both is not None and both.contains(x)


@EXAMPLES
@given(lo=st.integers(0, MASK64), hi=st.integers(0, MASK64), pick=st.integers(0, MASK64))
def test_tnum_range(lo, hi, pick):
    lo, hi = min(lo, hi), max(lo, hi)
    t = Tnum.range(lo, hi)
    for v in (lo, hi, lo + pick % (hi - lo + 1)):
        assert t.contains(v)


def test_tnum_examples_by_hand():
    # 0b1x0 + 1 = 0b1x1: the unknown bit cannot carry into the known ones
    assert Tnum(0b100, 0b010).add(Tnum.const(1)) == Tnum(0b101, 0b010)
    # x & 0xff has all bits above 7 known zero
    assert Tnum.unknown().and_(Tnum.const(0xFF)) == Tnum(0, 0xFF)
    assert Tnum.range(0, 7) == Tnum(0, 7)
    assert Tnum.const(6).mul(Tnum.const(7)) == Tnum.const(42)


# -- scalar arithmetic ---------------------------------------------------------------

def concrete_alu(op: AluOp, x: int, y: int, wide: bool, signed: bool) -> int:
    bits = 64 if wide else 32
    x, y = trunc(x, bits), trunc(y, bits)
    if op == AluOp.ADD:
        r = x + y
    elif op == AluOp.SUB:
        r = x - y
    elif op == AluOp.MUL:
        r = x * y
    elif op == AluOp.AND:
        r = x & y
    elif op == AluOp.OR:
        r = x | y
    elif op == AluOp.XOR:
        r = x ^ y
    elif op == AluOp.LSH:
        r = x << (y & (bits - 1))
    elif op == AluOp.RSH:
        r = x >> (y & (bits - 1))
    elif op == AluOp.ARSH:
        r = sext(x, bits) >> (y & (bits - 1))
    elif op == AluOp.DIV:
        r = sdiv(x, y, bits) if signed else udiv(x, y, bits)
    elif op == AluOp.MOD:
        r = smod(x, y, bits) if signed else umod(x, y, bits)
    elif op == AluOp.MOV:
        r = y
    else:
        raise AssertionError(op)
    return trunc(r, bits)  # a 32-bit result is zero-extended


ALU_OPS = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.LSH, AluOp.RSH,
           AluOp.ARSH, AluOp.DIV, AluOp.MOD, AluOp.MOV]


@pytest.mark.parametrize("op", ALU_OPS, ids=lambda o: o.name)
@pytest.mark.parametrize("wide", [True, False], ids=["alu64", "alu32"])
@EXAMPLES
@given(a=scalar_with_member(), b=scalar_with_member(), signed=st.booleans())
def test_scalar_alu_sound(op, wide, a, b, signed):
    (sa, x), (sb, y) = a, b
    if op not in (AluOp.DIV, AluOp.MOD):
        signed = False
    result = sa.alu(op, sb, wide=wide, signed=signed)
    want = concrete_alu(op, x, y, wide, signed)
    assert result.contains(want), f"{op.name} {x:#x} {y:#x} = {want:#x} not in {result}"


@EXAMPLES
@given(a=scalar_with_member(), wide=st.booleans())
def test_scalar_unary_sound(a, wide):
    s, x = a
    if wide:
        assert s.neg(wide=True).contains(-x & MASK64)
    else:
        assert s.neg(wide=False).contains(-x & MASK32)
    for bits in (16, 32, 64):
        assert s.swap(bits, to_be=True).contains(bswap(x, bits))
        assert s.swap(bits, to_be=False).contains(trunc(x, bits))
    for n in (1, 2, 4, 8):
        assert s.truncate(n).contains(trunc(x, 8 * n))
    for bits in (8, 16, 32):
        assert s.sign_extend(bits, wide=True).contains(trunc(sext(x, bits), 64))
        assert s.sign_extend(bits, wide=False).contains(trunc(sext(x, bits), 32))


def test_scalar_examples_by_hand():
    byte = Scalar.unknown().truncate(1)
    assert (byte.umin, byte.umax) == (0, 255)
    shifted = byte.alu(AluOp.LSH, Scalar.const(2), wide=True)
    assert (shifted.umin, shifted.umax) == (0, 1020) and shifted.tnum == Tnum(0, 0x3FC)
    masked = Scalar.unknown().alu(AluOp.AND, Scalar.const(60), wide=True)
    assert (masked.umin, masked.umax) == (0, 60)
    # a 32-bit op zero-extends: the high word is known zero
    assert Scalar.unknown().alu(AluOp.ADD, Scalar.const(1), wide=False).hi32_zero


# -- branches ---------------------------------------------------------------------------

def concrete_cmp(op: JmpOp, x: int, y: int, wide: bool) -> bool:
    bits = 64 if wide else 32
    x, y = trunc(x, bits), trunc(y, bits)
    sx, sy = sext(x, bits), sext(y, bits)
    return {
        JmpOp.JEQ: x == y, JmpOp.JNE: x != y, JmpOp.JGT: x > y, JmpOp.JGE: x >= y, JmpOp.JLT: x < y,
        JmpOp.JLE: x <= y, JmpOp.JSGT: sx > sy, JmpOp.JSGE: sx >= sy, JmpOp.JSLT: sx < sy,
        JmpOp.JSLE: sx <= sy, JmpOp.JSET: bool(x & y),
    }[op]


CMP_OPS = [JmpOp.JEQ, JmpOp.JNE, JmpOp.JGT, JmpOp.JGE, JmpOp.JLT, JmpOp.JLE, JmpOp.JSGT, JmpOp.JSGE,
           JmpOp.JSLT, JmpOp.JSLE, JmpOp.JSET]


@pytest.mark.parametrize("op", CMP_OPS, ids=lambda o: o.name)
@EXAMPLES
@given(a=scalar_with_member(), b=scalar_with_member(), wide=st.booleans(), same=st.booleans())
def test_branch_refinement_sound(op, a, b, wide, same):
    (sa, x), (sb, y) = a, b
    if same:  # make equality and near-equality likely
        sb, y = sa, x
    outcome = concrete_cmp(op, x, y, wide)
    refined = refine_scalar(op, sa, sb, outcome, wide=wide)
    assert refined is not None, "the outcome that happened was called impossible"
    ra, rb = refined
    assert ra.contains(x) and rb.contains(y)
    decided = scalar_branch(op, sa, sb, wide=wide)
    assert decided is None or decided == outcome


def test_branch_refinement_by_hand():
    byte = Scalar.unknown().truncate(1)
    taken = refine_scalar(JmpOp.JGT, byte, Scalar.const(10), True, wide=True)[0]
    assert (taken.umin, taken.umax) == (11, 255)
    not_taken = refine_scalar(JmpOp.JGT, byte, Scalar.const(10), False, wide=True)[0]
    assert (not_taken.umin, not_taken.umax) == (0, 10)
    assert scalar_branch(JmpOp.JGT, byte, Scalar.const(300), wide=True) is False
    assert scalar_branch(JmpOp.JLT, byte, Scalar.const(300), wide=True) is True
    # JMP32 looks only at the low word: 0x1_0000_0005 == 5 as 32-bit
    assert scalar_branch(JmpOp.JEQ, Scalar.const(0x1_0000_0005), Scalar.const(5), wide=False) is True
    assert scalar_branch(JmpOp.JEQ, Scalar.const(0x1_0000_0005), Scalar.const(5), wide=True) is False

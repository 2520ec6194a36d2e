"""The scalar domain: known bits plus unsigned/signed ranges of the 64-bit value and of its low 32 bits.

A :class:`Scalar` is the kernel verifier's view of a number: a :class:`Tnum`,
``umin..umax``/``smin..smax`` for the whole register and
``u32min..u32max``/``s32min..s32max`` for its low word.  All constraints hold
at once; :meth:`Scalar.make` tightens each from the others (the kernel's
"bounds sync") and returns None when they are contradictory, which is how a
branch is found to be impossible.

Arithmetic follows eBPF: 64-bit ops wrap at 64 bits; 32-bit ops work on the
low words and zero-extend.  Every operation is sound (the concrete result of
members of the operands is a member of the result); the property tests in
tests/test_analysis_domains.py check this with random members.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.analysis.tnum import Tnum
from functools import lru_cache

from nfpjit.bits import MASK32, MASK64, bswap, s32, s64, sdiv, sext, smod, trunc, u32, udiv, umod
from nfpjit.ebpf.opcodes import AluOp, JmpOp

S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class Bounds:
    """Ranges and known bits of a ``bits``-wide value (64 for a register, 32 for its low word)."""

    bits: int
    tnum: Tnum
    umin: int
    umax: int
    smin: int
    smax: int

    @staticmethod
    def unknown(bits: int) -> "Bounds":
        return _UNKNOWN[bits]

    @staticmethod
    def const(v: int, bits: int) -> "Bounds":
        v = trunc(v, bits)
        return Bounds(bits, Tnum.const(v), v, v, sext(v, bits), sext(v, bits))

    @staticmethod
    def urange(lo: int, hi: int, bits: int) -> "Bounds":
        b = Bounds.unknown(bits)
        return Bounds(bits, b.tnum, lo, hi, b.smin, b.smax).tighten() or b

    @staticmethod
    def srange(lo: int, hi: int, bits: int) -> "Bounds":
        b = Bounds.unknown(bits)
        return Bounds(bits, b.tnum, b.umin, b.umax, lo, hi).tighten() or b

    def contains(self, x: int) -> bool:
        u = trunc(x, self.bits)
        s = sext(x, self.bits)
        return self.tnum.contains(u) and self.umin <= u <= self.umax and self.smin <= s <= self.smax

    @property
    def is_const(self) -> bool:
        return self.umin == self.umax

    def tighten(self) -> "Bounds | None":
        """Make every constraint as tight as the others allow; None when empty."""
        bits = self.bits
        top = 1 << (bits - 1)
        tn, umin, umax, smin, smax = self.tnum, self.umin, self.umax, self.smin, self.smax
        for _ in range(3):
            # known bits -> ranges
            umin = max(umin, tn.umin)
            umax = min(umax, tn.umax)
            if tn.mask & top:
                smin = max(smin, sext(tn.value | top, bits))
                smax = min(smax, sext(tn.value | (tn.mask & ~top), bits))
            else:
                smin = max(smin, sext(tn.value, bits))
                smax = min(smax, sext(tn.value | tn.mask, bits))
            # unsigned <-> signed when a range does not cross the sign boundary
            if umax < top or umin >= top:
                smin = max(smin, sext(umin, bits))
                smax = min(smax, sext(umax, bits))
            if smin >= 0 or smax < 0:
                umin = max(umin, trunc(smin, bits))
                umax = min(umax, trunc(smax, bits))
            if umin > umax or smin > smax:
                return None
            # ranges -> known bits
            new = tn.intersect(Tnum.range(umin, umax))
            if new is None:
                return None
            if smin >= 0 or smax < 0:
                new = new.intersect(Tnum.range(trunc(smin, bits), trunc(smax, bits)))
                if new is None:
                    return None
            if new == tn:
                break
            tn = new
        return Bounds(bits, tn, umin, umax, smin, smax)

    def union(self, o: "Bounds") -> "Bounds":
        return Bounds(self.bits, self.tnum.union(o.tnum), min(self.umin, o.umin), max(self.umax, o.umax),
                      min(self.smin, o.smin), max(self.smax, o.smax))

    def includes(self, o: "Bounds") -> bool:
        return (self.tnum.includes(o.tnum) and self.umin <= o.umin and o.umax <= self.umax
                and self.smin <= o.smin and o.smax <= self.smax)


_UNKNOWN = {b: Bounds(b, Tnum.unknown(b), 0, trunc(-1, b), -(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (32, 64)}


# -- arithmetic on one width ------------------------------------------------------

def _wrap_range(lo: int, hi: int, bits: int, signed: bool) -> tuple[int, int] | None:
    """``[lo, hi]`` if it fits the width without wrapping, else None (unknown)."""
    if signed:
        if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return lo, hi
        return None
    if 0 <= lo and hi <= trunc(-1, bits):
        return lo, hi
    return None


def _from(bits: int, tn: Tnum, u: tuple[int, int] | None, s: tuple[int, int] | None) -> Bounds:
    full = Bounds.unknown(bits)
    umin, umax = u if u else (full.umin, full.umax)
    smin, smax = s if s else (full.smin, full.smax)
    tn = tn.cast(bits // 8)
    b = Bounds(bits, tn, umin, umax, smin, smax).tighten()
    if b is None:  # cannot happen for sound inputs; stay safe
        return Bounds(bits, tn, full.umin, full.umax, full.smin, full.smax)
    return b


def bounds_alu(op: AluOp, a: Bounds, b: Bounds, *, signed_div: bool = False) -> Bounds:
    """``a op b`` on one width (shifts mask the amount to the width, as eBPF does)."""
    bits = a.bits
    m = trunc(-1, bits)
    if op == AluOp.ADD:
        return _from(bits, a.tnum.add(b.tnum), _wrap_range(a.umin + b.umin, a.umax + b.umax, bits, False),
                     _wrap_range(a.smin + b.smin, a.smax + b.smax, bits, True))
    if op == AluOp.SUB:
        return _from(bits, a.tnum.sub(b.tnum), _wrap_range(a.umin - b.umax, a.umax - b.umin, bits, False),
                     _wrap_range(a.smin - b.smax, a.smax - b.smin, bits, True))
    if op == AluOp.MUL:
        u = _wrap_range(a.umin * b.umin, a.umax * b.umax, bits, False)
        cands = [a.smin * b.smin, a.smin * b.smax, a.smax * b.smin, a.smax * b.smax]
        s = _wrap_range(min(cands), max(cands), bits, True)
        return _from(bits, a.tnum.mul(b.tnum), u, s)
    if op == AluOp.AND:
        tn = a.tnum.and_(b.tnum)
        s = (0, min(a.smax, b.smax)) if a.smin >= 0 or b.smin >= 0 else None
        if s and a.smin < 0:
            s = (0, b.smax)
        elif s and b.smin < 0:
            s = (0, a.smax)
        return _from(bits, tn, (tn.umin, min(a.umax, b.umax, tn.umax)), s)
    if op == AluOp.OR:
        tn = a.tnum.or_(b.tnum)
        s = (max(a.smin, b.smin), min(tn.umax, (1 << (bits - 1)) - 1)) if a.smin >= 0 and b.smin >= 0 else None
        return _from(bits, tn, (max(a.umin, b.umin, tn.umin), tn.umax), s)
    if op == AluOp.XOR:
        return _from(bits, a.tnum.xor(b.tnum), None, None)
    if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
        lo, hi = b.umin, b.umax
        if hi - lo > bits or hi >= bits:
            lo, hi = 0, bits - 1  # the amount is masked to the width: any shift is possible
            if b.tnum.mask & (bits - 1) == 0 and b.umin == b.umax:
                lo = hi = b.umin & (bits - 1)
        out = None
        for k in range(lo, hi + 1):
            if hi - lo == bits - 1 or b.tnum.contains(k) or b.tnum.subreg().contains(k):
                r = _shift(op, a, k)
                out = r if out is None else out.union(r)
        return out if out is not None else Bounds.unknown(bits)
    if op == AluOp.DIV:
        if signed_div:
            if b.is_const and b.umin not in (0,) and a.is_const:
                from nfpjit.bits import sdiv
                return Bounds.const(sdiv(a.umin, b.umin, bits), bits)
            return Bounds.unknown(bits)
        if b.umin > 0:
            return _from(bits, Tnum.unknown(bits), (a.umin // b.umax, a.umax // b.umin), None)
        return _from(bits, Tnum.unknown(bits), (0, a.umax), None)
    if op == AluOp.MOD:
        if signed_div:
            if b.is_const and b.umin != 0 and a.is_const:
                from nfpjit.bits import smod
                return Bounds.const(smod(a.umin, b.umin, bits), bits)
            return Bounds.unknown(bits)
        if b.umin > 0:
            if a.umax < b.umin:
                return a
            return _from(bits, Tnum.unknown(bits), (0, min(a.umax, b.umax - 1)), None)
        return _from(bits, Tnum.unknown(bits), (0, max(a.umax, b.umax - 1 if b.umax else 0)), None)
    if op == AluOp.MOV:
        return b
    raise ValueError(op)


def _shift(op: AluOp, a: Bounds, k: int) -> Bounds:
    bits = a.bits
    m = trunc(-1, bits)
    if op == AluOp.LSH:
        u = (a.umin << k, a.umax << k) if (a.umax << k) <= m else None
        return _from(bits, a.tnum.lshift(k).cast(bits // 8), u, None)
    if op == AluOp.RSH:
        return _from(bits, a.tnum.rshift(k), (a.umin >> k, a.umax >> k), None)
    return _from(bits, a.tnum.arshift(k, bits), None, (a.smin >> k, a.smax >> k))


def bounds_neg(a: Bounds) -> Bounds:
    bits = a.bits
    s = _wrap_range(-a.smax, -a.smin, bits, True)
    return _from(bits, a.tnum.neg().cast(bits // 8), None, s)


# -- the register view -------------------------------------------------------------

@lru_cache(maxsize=4096)
def _const(v: int) -> "Scalar":
    return Scalar(Bounds.const(v, 64), Bounds.const(v & MASK32, 32))


def _fold(op: AluOp, x: int, y: int, wide: bool, signed: bool) -> int:
    """Concrete eBPF arithmetic (constant folding); 32-bit results are zero-extended."""
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
        raise ValueError(op)
    return trunc(r, bits)


def _fit_low(lo: int, hi: int, l32min: int, l32max: int) -> tuple[int, int]:
    """Move ``[lo, hi]`` inwards to the nearest numbers whose low word lies in ``[l32min, l32max]``.

    Works for unsigned and (Python, negative) signed bounds alike: the high part is
    ``v & ~0xffffffff`` in both.  The result may be empty (lo > hi).
    """
    base = lo & ~MASK32
    low = lo & MASK32
    if low < l32min:
        lo = base + l32min
    elif low > l32max:
        lo = base + (1 << 32) + l32min
    base = hi & ~MASK32
    low = hi & MASK32
    if low > l32max:
        hi = base + l32max
    elif low < l32min:
        hi = base - (1 << 32) + l32max
    return lo, hi



@dataclass(frozen=True, slots=True)
class Scalar:
    """A 64-bit register's number: full-width bounds and the bounds of its low word."""

    full: Bounds
    low: Bounds

    @staticmethod
    def make(full: Bounds, low: Bounds) -> "Scalar | None":
        """Combine and tighten; None if no 64-bit number satisfies both."""
        for _ in range(3):
            f = full.tighten()
            lo = low.tighten()
            if f is None or lo is None:
                return None
            # full -> low word
            tl = f.tnum.subreg().intersect(lo.tnum)
            if tl is None:
                return None
            lu = (lo.umin, lo.umax)
            ls = (lo.smin, lo.smax)
            if f.umin >> 32 == f.umax >> 32:
                lu = (max(lu[0], f.umin & MASK32), min(lu[1], f.umax & MASK32))
            if f.smin >> 32 == f.smax >> 32:
                if u32(f.smin) <= u32(f.smax):
                    lu = (max(lu[0], u32(f.smin)), min(lu[1], u32(f.smax)))
                if s32(f.smin) <= s32(f.smax):
                    ls = (max(ls[0], s32(f.smin)), min(ls[1], s32(f.smax)))
            if f.umin >> 32 == f.umax >> 32 and s32(f.umin) <= s32(f.umax):
                ls = (max(ls[0], s32(f.umin)), min(ls[1], s32(f.umax)))
            if lu[0] > lu[1] or ls[0] > ls[1]:
                return None
            lo2 = Bounds(32, tl, lu[0], lu[1], ls[0], ls[1]).tighten()
            if lo2 is None:
                return None
            # low word -> full
            tf = f.tnum.with_subreg(lo2.tnum)
            umin, umax = _fit_low(f.umin, f.umax, lo2.umin, lo2.umax)
            smin, smax = _fit_low(f.smin, f.smax, lo2.umin, lo2.umax)
            if umin > umax or smin > smax:
                return None
            f2 = Bounds(64, tf, umin, umax, smin, smax)
            if f2 == full and lo2 == low:
                break
            full, low = f2, lo2
        f = full.tighten()
        lo = low.tighten()
        if f is None or lo is None:
            return None
        return Scalar(f, lo)

    @staticmethod
    def unknown() -> "Scalar":
        return _UNKNOWN_SCALAR

    @staticmethod
    def const(v: int) -> "Scalar":
        return _const(v & MASK64)

    @staticmethod
    def from_low(low: Bounds) -> "Scalar":
        """The zero extension of a 32-bit value (what every 32-bit ALU op produces)."""
        full = Bounds(64, Tnum(low.tnum.value, low.tnum.mask), low.umin, low.umax, low.umin, low.umax)
        return Scalar.make(full, low) or Scalar(full, low)

    @staticmethod
    def urange(lo: int, hi: int) -> "Scalar":
        return Scalar.make(Bounds.urange(lo, hi, 64), Bounds.unknown(32)) or Scalar.unknown()

    # -- queries -------------------------------------------------------------
    @property
    def tnum(self) -> Tnum:
        return self.full.tnum

    @property
    def is_const(self) -> bool:
        return self.full.tnum.is_const

    @property
    def value(self) -> int | None:
        return self.full.tnum.value if self.full.tnum.is_const else None

    @property
    def umin(self) -> int:
        return self.full.umin

    @property
    def umax(self) -> int:
        return self.full.umax

    @property
    def smin(self) -> int:
        return self.full.smin

    @property
    def smax(self) -> int:
        return self.full.smax

    @property
    def hi32_zero(self) -> bool:
        return self.full.umax <= MASK32

    def contains(self, x: int) -> bool:
        return self.full.contains(x) and self.low.contains(x & MASK32)

    def union(self, o: "Scalar") -> "Scalar":
        return Scalar(self.full.union(o.full), self.low.union(o.low))

    def includes(self, o: "Scalar") -> bool:
        return self.full.includes(o.full) and self.low.includes(o.low)

    def __str__(self) -> str:
        if self.is_const:
            return f"{self.value:#x}"
        f = self.full
        parts = []
        if f.umin or f.umax != MASK64:
            parts.append(f"umin={f.umin},umax={f.umax}")
        if f.smin != S64_MIN or f.smax != S64_MAX:
            parts.append(f"smin={f.smin},smax={f.smax}")
        if f.tnum.mask != MASK64:
            parts.append(f"var_off={f.tnum}")
        return "scalar(" + ",".join(parts) + ")"

    # -- arithmetic ----------------------------------------------------------
    def alu(self, op: AluOp, other: "Scalar", *, wide: bool, signed: bool = False) -> "Scalar":
        """``self op other`` as an ALU64 (``wide``) or ALU32 instruction."""
        if self.full.tnum.mask == 0 and other.full.tnum.mask == 0:
            return Scalar.const(_fold(op, self.full.tnum.value, other.full.tnum.value, wide, signed))
        if not wide:
            return Scalar.from_low(bounds_alu(op, self.low, other.low, signed_div=signed))
        full = bounds_alu(op, self.full, other.full, signed_div=signed)
        if op in (AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.MOV):
            low = bounds_alu(op, self.low, other.low)
        elif op == AluOp.LSH and other.full.umax < 32:
            low = bounds_alu(op, self.low, other.low)
        else:
            low = Bounds.unknown(32)
        return Scalar.make(full, low) or Scalar(full, Bounds.unknown(32))

    def neg(self, *, wide: bool) -> "Scalar":
        if not wide:
            return Scalar.from_low(bounds_neg(self.low))
        return Scalar.make(bounds_neg(self.full), bounds_neg(self.low)) or Scalar.unknown()

    def swap(self, bits: int, to_be: bool) -> "Scalar":
        """END/BSWAP: truncate to ``bits`` and, for big endian (this is a little-endian target), reverse bytes."""
        if bits == 64 and not to_be:
            return self
        tn = self.full.tnum.cast(bits // 8)
        if to_be:
            tn = tn.bswap(bits)
        full = Bounds(64, tn, 0, MASK64, S64_MIN, S64_MAX)
        return Scalar.make(full, Bounds.unknown(32)) or Scalar.unknown()

    def sign_extend(self, from_bits: int, *, wide: bool) -> "Scalar":
        """MOVSX / sign-extending load of the low ``from_bits`` bits (result zero-extended if 32-bit)."""
        src = self.truncate(from_bits // 8).full
        top = 1 << (from_bits - 1)
        low_mask = top * 2 - 1
        if src.tnum.mask & top:
            tn = Tnum(src.tnum.value, src.tnum.mask | (MASK64 & ~low_mask))
        else:
            tn = Tnum(trunc(sext(src.tnum.value, from_bits), 64), src.tnum.mask)
        if src.umax < top:
            lo, hi = src.umin, src.umax
        elif src.umin >= top:
            lo, hi = sext(src.umin, from_bits), sext(src.umax, from_bits)
        else:
            lo, hi = -top, top - 1
        full = Bounds(64, tn, 0, MASK64, lo, hi)
        r = Scalar.make(full, Bounds.unknown(32)) or Scalar.unknown()
        if not wide:
            return Scalar.from_low(r.low)
        return r

    def truncate(self, nbytes: int) -> "Scalar":
        """The low ``nbytes`` bytes, zero-extended (a narrow load of a known value)."""
        if nbytes == 8:
            return self
        tn = self.full.tnum.cast(nbytes)
        hi = trunc(-1, nbytes * 8)
        u = (self.full.umin, self.full.umax) if self.full.umax <= hi else (0, hi)
        full = Bounds(64, tn, u[0], u[1], 0, hi)
        return Scalar.make(full, Bounds.unknown(32)) or Scalar.unknown()


_UNKNOWN_SCALAR = Scalar(Bounds.unknown(64), Bounds.unknown(32))


# -- conditional jumps ---------------------------------------------------------------

NEGATE = {
    JmpOp.JEQ: JmpOp.JNE, JmpOp.JNE: JmpOp.JEQ, JmpOp.JGT: JmpOp.JLE, JmpOp.JLE: JmpOp.JGT,
    JmpOp.JGE: JmpOp.JLT, JmpOp.JLT: JmpOp.JGE, JmpOp.JSGT: JmpOp.JSLE, JmpOp.JSLE: JmpOp.JSGT,
    JmpOp.JSGE: JmpOp.JSLT, JmpOp.JSLT: JmpOp.JSGE,
}
SWAP = {
    JmpOp.JEQ: JmpOp.JEQ, JmpOp.JNE: JmpOp.JNE, JmpOp.JGT: JmpOp.JLT, JmpOp.JLT: JmpOp.JGT,
    JmpOp.JGE: JmpOp.JLE, JmpOp.JLE: JmpOp.JGE, JmpOp.JSGT: JmpOp.JSLT, JmpOp.JSLT: JmpOp.JSGT,
    JmpOp.JSGE: JmpOp.JSLE, JmpOp.JSLE: JmpOp.JSGE,
}


def _mk(a: Bounds, umin=None, umax=None, smin=None, smax=None, tnum=None) -> Bounds | None:
    b = Bounds(a.bits, a.tnum if tnum is None else tnum,
               a.umin if umin is None else max(a.umin, umin), a.umax if umax is None else min(a.umax, umax),
               a.smin if smin is None else max(a.smin, smin), a.smax if smax is None else min(a.smax, smax))
    if b.umin > b.umax or b.smin > b.smax:
        return None
    return b.tighten()


def refine_bounds(op: JmpOp, a: Bounds, b: Bounds, taken: bool) -> tuple[Bounds, Bounds] | None:
    """Both operands narrowed by knowing whether ``a op b`` is ``taken``; None if impossible."""
    if not taken:
        if op == JmpOp.JSET:
            # a & b == 0: where b's bit is known one, a's bit is zero
            ones = b.tnum.value
            if a.tnum.value & ones:
                return None
            tn = Tnum(a.tnum.value, a.tnum.mask & ~ones)
            na = _mk(a, tnum=tn)
            return None if na is None else (na, b)
        op = NEGATE[op]
    if op == JmpOp.JSET:
        if not (a.tnum.umax & b.tnum.umax):
            return None
        if b.tnum.is_const and b.tnum.value and b.tnum.value & (b.tnum.value - 1) == 0:
            bitv = b.tnum.value
            if not (a.tnum.umax & bitv):
                return None
            tn = Tnum(a.tnum.value | bitv, a.tnum.mask & ~bitv)
            na = _mk(a, tnum=tn)
            return None if na is None else (na, b)
        return a, b
    if op == JmpOp.JEQ:
        tn = a.tnum.intersect(b.tnum)
        if tn is None:
            return None
        na = _mk(a, b.umin, b.umax, b.smin, b.smax, tn)
        if na is None:
            return None
        return na, na
    if op == JmpOp.JNE:
        na, nb = a, b
        if b.is_const:
            na = _ne_const(a, b.umin)
        if a.is_const:
            nb = _ne_const(b, a.umin)
        if na is None or nb is None:
            return None
        return na, nb
    if op in (JmpOp.JLT, JmpOp.JLE, JmpOp.JSLT, JmpOp.JSLE):
        r = refine_bounds(SWAP[op], b, a, True)
        return None if r is None else (r[1], r[0])
    strict = 1 if op in (JmpOp.JGT, JmpOp.JSGT) else 0
    if op in (JmpOp.JGT, JmpOp.JGE):
        na = _mk(a, umin=b.umin + strict)
        nb = _mk(b, umax=a.umax - strict)
    else:
        na = _mk(a, smin=b.smin + strict)
        nb = _mk(b, smax=a.smax - strict)
    if na is None or nb is None:
        return None
    return na, nb


def _ne_const(a: Bounds, c: int) -> Bounds | None:
    if a.is_const:
        return None if a.umin == c else a
    umin, umax, smin, smax = a.umin, a.umax, a.smin, a.smax
    sc = sext(c, a.bits)
    if umin == c:
        umin += 1
    if umax == c:
        umax -= 1
    if smin == sc:
        smin += 1
    if smax == sc:
        smax -= 1
    if umin > umax or smin > smax:
        return None
    return Bounds(a.bits, a.tnum, umin, umax, smin, smax).tighten()


def branch_outcome(op: JmpOp, a: Bounds, b: Bounds) -> bool | None:
    """True/False when ``a op b`` is decided by the bounds, None when both outcomes are possible."""
    t = refine_bounds(op, a, b, True) is not None
    f = refine_bounds(op, a, b, False) is not None
    if t and not f:
        return True
    if f and not t:
        return False
    if not t and not f:
        return None  # contradictory inputs: treat as undecided
    return None


def refine_scalar(op: JmpOp, a: Scalar, b: Scalar, taken: bool, *, wide: bool) -> tuple[Scalar, Scalar] | None:
    """JMP (``wide``) or JMP32 refinement of two scalars; None when the outcome is impossible."""
    if wide:
        r = refine_bounds(op, a.full, b.full, taken)
        if r is None:
            return None
        na, nb = Scalar.make(r[0], a.low), Scalar.make(r[1], b.low)
    else:
        r = refine_bounds(op, a.low, b.low, taken)
        if r is None:
            return None
        na, nb = Scalar.make(a.full, r[0]), Scalar.make(b.full, r[1])
    if na is None or nb is None:
        return None
    return na, nb


def scalar_branch(op: JmpOp, a: Scalar, b: Scalar, *, wide: bool) -> bool | None:
    t = refine_scalar(op, a, b, True, wide=wide) is not None
    f = refine_scalar(op, a, b, False, wide=wide) is not None
    if t != f:
        return t
    return None


__all__ = ["Bounds", "Scalar", "bounds_alu", "bounds_neg", "refine_bounds", "refine_scalar",
           "branch_outcome", "scalar_branch", "NEGATE", "SWAP"]

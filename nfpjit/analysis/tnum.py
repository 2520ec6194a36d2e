"""Tristate numbers ("tnums"): per-bit knowledge of a 64-bit value, as the kernel verifier keeps it.

A :class:`Tnum` ``(value, mask)`` stands for every number ``x`` with
``x & ~mask == value``: bits set in ``mask`` are unknown, the others are known
and equal to the bits of ``value``.  The operations here follow the algebra of
the kernel's kernel/bpf/tnum.c (written afresh): each result contains every
concrete result obtainable from members of the operands, wrapping at 64 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.bits import MASK32, MASK64, bswap, sext, trunc


@dataclass(frozen=True, slots=True)
class Tnum:
    value: int
    mask: int

    def __post_init__(self):
        if self.value & self.mask:
            raise ValueError("tnum value and mask overlap")

    # -- constructors -------------------------------------------------------
    @staticmethod
    def const(v: int) -> "Tnum":
        return Tnum(v & MASK64, 0)

    @staticmethod
    def unknown(bits: int = 64) -> "Tnum":
        return Tnum(0, trunc(-1, bits))

    @staticmethod
    def range(lo: int, hi: int) -> "Tnum":
        """The smallest tnum holding every number in ``[lo, hi]`` (unsigned, lo <= hi)."""
        chi = lo ^ hi
        bits = chi.bit_length()
        if bits > 63:
            return Tnum.unknown()
        delta = (1 << bits) - 1
        return Tnum(lo & ~delta & MASK64, delta)

    # -- queries ------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return self.mask == 0

    @property
    def umin(self) -> int:
        return self.value

    @property
    def umax(self) -> int:
        return self.value | self.mask

    def contains(self, x: int) -> bool:
        return (x & MASK64) & ~self.mask == self.value

    def includes(self, other: "Tnum") -> bool:
        """Whether every member of ``other`` is a member of ``self``."""
        if other.mask & ~self.mask:
            return False
        return other.value & ~self.mask == self.value

    def is_aligned(self, size: int) -> bool:
        return not ((self.value | self.mask) & (size - 1))

    # -- arithmetic ---------------------------------------------------------
    def add(self, b: "Tnum") -> "Tnum":
        sm = self.mask + b.mask
        sv = self.value + b.value
        sigma = sm + sv
        chi = sigma ^ sv
        mu = (chi | self.mask | b.mask) & MASK64
        return Tnum(sv & ~mu & MASK64, mu)

    def sub(self, b: "Tnum") -> "Tnum":
        dv = (self.value - b.value) & MASK64
        alpha = (dv + self.mask) & MASK64
        beta = (dv - b.mask) & MASK64
        chi = alpha ^ beta
        mu = chi | self.mask | b.mask
        return Tnum(dv & ~mu & MASK64, mu & MASK64)

    def neg(self) -> "Tnum":
        return Tnum.const(0).sub(self)

    def and_(self, b: "Tnum") -> "Tnum":
        alpha = self.value | self.mask
        beta = b.value | b.mask
        v = self.value & b.value
        return Tnum(v, alpha & beta & ~v)

    def or_(self, b: "Tnum") -> "Tnum":
        v = self.value | b.value
        mu = self.mask | b.mask
        return Tnum(v, mu & ~v)

    def xor(self, b: "Tnum") -> "Tnum":
        v = self.value ^ b.value
        mu = self.mask | b.mask
        return Tnum(v & ~mu, mu)

    def lshift(self, k: int) -> "Tnum":
        return Tnum((self.value << k) & MASK64, (self.mask << k) & MASK64)

    def rshift(self, k: int) -> "Tnum":
        return Tnum(self.value >> k, self.mask >> k)

    def arshift(self, k: int, bits: int = 64) -> "Tnum":
        """Arithmetic shift right of the low ``bits`` bits; the result is truncated to ``bits``."""
        v = sext(self.value, bits) >> k
        m = sext(self.mask, bits) >> k
        return Tnum(trunc(v, bits), trunc(m, bits))

    def mul(self, b: "Tnum") -> "Tnum":
        """Shift-and-add over the bits of ``self``, as tnum_mul does (a sound over-approximation)."""
        a = self
        acc_v = (a.value * b.value) & MASK64
        acc_m = Tnum(0, 0)
        while a.value or a.mask:
            if a.value & 1:
                acc_m = acc_m.add(Tnum(0, b.mask))
            elif a.mask & 1:
                acc_m = acc_m.add(Tnum(0, (b.value | b.mask) & MASK64))
            a = a.rshift(1)
            b = b.lshift(1)
        return Tnum.const(acc_v).add(acc_m)

    def intersect(self, b: "Tnum") -> "Tnum | None":
        """Members of both (None when they disagree on a known bit)."""
        if (self.value ^ b.value) & ~self.mask & ~b.mask:
            return None
        v = self.value | b.value
        mu = self.mask & b.mask
        return Tnum(v & ~mu, mu)

    def union(self, b: "Tnum") -> "Tnum":
        """The smallest tnum holding the members of both (used to join paths)."""
        mu = self.mask | b.mask | (self.value ^ b.value)
        return Tnum(self.value & ~mu, mu)

    # -- widths -------------------------------------------------------------
    def subreg(self) -> "Tnum":
        """The low 32 bits."""
        return Tnum(self.value & MASK32, self.mask & MASK32)

    def clear_subreg(self) -> "Tnum":
        return Tnum(self.value & ~MASK32 & MASK64, self.mask & ~MASK32 & MASK64)

    def with_subreg(self, low: "Tnum") -> "Tnum":
        hi = self.clear_subreg()
        return Tnum(hi.value | (low.value & MASK32), hi.mask | (low.mask & MASK32))

    def cast(self, nbytes: int) -> "Tnum":
        bits = nbytes * 8
        return Tnum(trunc(self.value, bits), trunc(self.mask, bits))

    def bswap(self, bits: int) -> "Tnum":
        """Byte reversal of the low ``bits`` bits: bytes move, knowledge moves with them."""
        return Tnum(bswap(self.value, bits), bswap(self.mask, bits))

    def __str__(self) -> str:
        if self.is_const:
            return f"{self.value:#x}"
        return f"(0x{self.value:x}; 0x{self.mask:x})"


__all__ = ["Tnum"]

"""ALU lowering choices that are switches of their own (read by ``nfpjit/jit/lower_alu.py``).

``mul-const`` — a multiply by a constant whose bits allow it becomes at most two shift/add
instructions instead of the multiplier's start, steps and result (6 instructions for 32x32)::

    w1 *= 7                 mul_start a2, 7 / 4 x mul_step 32x32 / mul_last ab2       (-O1)
                            alu_shf ab22, --, mov, b2, shl 3 / sub ab2, a22, b2      (mul-const)
    w1 *= 3                 alu_shf ab2, a2, add, b2, shl 1                          (mul-const)

Handled: 0, powers of two, ``(2**a + 1) << b`` and ``2**a - 1`` (the low 32 bits of the
product, so ALU32 and the 32-bit form of ALU64 that ``subreg`` picks); other constants keep
the multiplier (16x16 when the analysis bounds both operands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nfpjit.passes.manager import Pass


@dataclass(frozen=True)
class MulConst(Pass):
    name: ClassVar[str] = "mul-const"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "multiplies by constants of at most two set bits (or 2**a - 1) as shifts and adds"

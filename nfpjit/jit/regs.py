"""Where eBPF registers live on the NFP, and the JIT's scratch registers.

eBPF register Rn (n = 0..9) is the GPR pair 2n (low word) and 2n+1 (high
word), the pairing the firmware routines' calling convention uses too.  The
JIT writes every GPR it owns through the both-banks destination ``ab<n>``, so
a value can be read from bank A or bank B, whichever port the two-source rule
leaves free.  R10 lives in no register: it is the stack base plus the frame
offset, materialised where it is used.

GPR numbers 20 and 21 are reserved for the memory lowering (stack/frame
base); 22..29 and 31 are scratch, valid only within the lowering of one eBPF
instruction; 30 holds return addresses (firmware calls, BPF-to-BPF calls).
"""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.errors import UnsupportedError
from nfpjit.isa.operands import Bank, Gpr, GprBoth

N_EBPF_GPRS = 10            # R0..R9 have registers; R10 does not
RESERVED_GPRS = (20, 21)
SCRATCH_GPRS = (22, 23, 24, 25, 26, 27, 28, 29, 31)
RETURN_ADDRESS_GPR = 30


@dataclass(frozen=True, slots=True)
class G:
    """GPR number ``n`` holding the same value in both banks: read as ``a<n>`` or ``b<n>``, written as ``ab<n>``."""

    n: int

    @property
    def a(self) -> Gpr:
        return Gpr(Bank.A, self.n)

    @property
    def b(self) -> Gpr:
        return Gpr(Bank.B, self.n)

    @property
    def both(self) -> GprBoth:
        return GprBoth(self.n)

    def bank(self, bank: Bank) -> Gpr:
        return Gpr(bank, self.n)

    def __str__(self) -> str:
        return f"g{self.n}"


def lo(reg: int) -> G:
    """Low word of eBPF register ``reg`` (0..9)."""
    _check(reg)
    return G(2 * reg)


def hi(reg: int) -> G:
    """High word of eBPF register ``reg`` (0..9)."""
    _check(reg)
    return G(2 * reg + 1)


def _check(reg: int) -> None:
    if not 0 <= reg < N_EBPF_GPRS:
        raise UnsupportedError(f"eBPF register r{reg} has no NFP register",
                               hint="r10 is the frame pointer: materialise it from the stack base")


class ScratchPool:
    """Scratch GPRs handed out within one eBPF instruction's lowering; :meth:`reset` frees them all."""

    def __init__(self, gprs: tuple[int, ...] = SCRATCH_GPRS):
        self._all = gprs
        self._next = 0

    def take(self) -> G:
        if self._next >= len(self._all):
            raise UnsupportedError(f"the lowering of one instruction needs more than {len(self._all)} scratch "
                                   "registers", hint="this is a bug in the JIT")
        g = G(self._all[self._next])
        self._next += 1
        return g

    def reset(self) -> None:
        self._next = 0

    @property
    def in_use(self) -> int:
        return self._next


__all__ = ["G", "lo", "hi", "ScratchPool", "N_EBPF_GPRS", "RESERVED_GPRS", "SCRATCH_GPRS", "RETURN_ADDRESS_GPR"]

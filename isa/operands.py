"""NFP-32 operands as typed values, their 10-bit operand codes, and the ISA's error classes.

Every register-like operand an instruction can name (a GPR of bank A or B, a
transfer register, a next-neighbour register, a local-memory word through an
LM index pointer, a small immediate, or "no destination") is a frozen
dataclass here.  Each has exactly one 10-bit *operand code*; the same code
space is used by every operand field of every instruction, so the table only
has to say which operand kinds a field accepts.

Operand code map (10 bits)::

    00 iiii iiii       Imm(i), i = 0..255                (sources only)
    01 000 nnnnn       Gpr(Bank.A, n)
    01 001 nnnnn       Gpr(Bank.B, n)
    01 010 nnnnn       Xfer(XferSide.IN, n)              (sources only)
    01 011 nnnnn       Xfer(XferSide.OUT, n)             (destinations only)
    01 100 nnnnn       NN(n)
    01 101 nnnnn       GprBoth(n): a<n> and b<n> together (destinations only)
    01 110 00000       XferIndex: $in[T_INDEX], the read transfer register the T_INDEX CSR names (sources only)
    10 0 pp i oooo     LMem(pointer=pp, offset=oooo, postinc=i); postinc needs offset 0
    11 1111 1111       NoDest (discarded result / absent operand)
    anything else      reserved: the decoder rejects it
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Union

from nfpjit.errors import AsmError, NfpjitError

# -- errors -------------------------------------------------------------------


class IsaError(NfpjitError):
    """Base class of every NFP-32 ISA error (encoding, decoding, assembling)."""


class IllegalInstruction(IsaError):
    """A 64-bit word that is not a valid NFP-32 instruction (unknown opcode, reserved bits set ...)."""


class IllegalOperands(IsaError):
    """An instruction whose operands or fields break an encoding rule (bank clash, range, kind)."""


class IsaAsmError(IsaError, AsmError):
    """NFP-32 assembly source that does not parse (syntax, unknown mnemonic, undefined label)."""


# -- operand kinds ---------------------------------------------------------------

N_GPR = 32          # per bank
N_XFER = 32         # per side
N_NN = 32
N_LM_POINTERS = 4
MAX_LM_OFFSET = 15
MAX_ALU_IMM = 255   # the largest immediate an operand field can hold


class Bank(IntEnum):
    """General-purpose register bank; each ALU source port reads one bank."""

    A = 0
    B = 1


class XferSide(IntEnum):
    """Transfer registers: IN is filled by memory reads, OUT is sent by memory writes."""

    IN = 0
    OUT = 1


class OperandKind(IntEnum):
    """What an operand field holds; the two-source rule forbids two sources of one kind."""

    IMM = 0
    GPR_A = 1
    GPR_B = 2
    XFER_IN = 3
    XFER_OUT = 4
    NN = 5
    LMEM = 6
    NONE = 7
    GPR_BOTH = 8


def _check_index(what: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise IllegalOperands(f"{what} index {value!r} out of range 0..{limit - 1}")


@dataclass(frozen=True, slots=True)
class Gpr:
    """General-purpose register ``a<n>`` or ``b<n>``."""

    bank: Bank
    index: int

    def __post_init__(self) -> None:
        if not isinstance(self.bank, Bank):
            raise IllegalOperands(f"GPR bank must be Bank.A or Bank.B, not {self.bank!r}")
        _check_index("GPR", self.index, N_GPR)

    @property
    def kind(self) -> OperandKind:
        return OperandKind.GPR_A if self.bank == Bank.A else OperandKind.GPR_B

    def __str__(self) -> str:
        return f"{self.bank.name.lower()}{self.index}"


@dataclass(frozen=True, slots=True)
class GprBoth:
    """Destination ``ab<n>``: one write that lands in both ``a<n>`` and ``b<n>`` (never a source).

    Keeping a value in both banks lets any later instruction read it from
    whichever port the two-source rule leaves free.  Partial writes (``immed``
    with ``width=lo|hi``, ``ld_field`` without ``clear``) merge into each
    bank's own old value.
    """

    index: int

    def __post_init__(self) -> None:
        _check_index("GPR", self.index, N_GPR)

    @property
    def kind(self) -> OperandKind:
        return OperandKind.GPR_BOTH

    @property
    def banks(self) -> tuple[Gpr, Gpr]:
        """The two registers written: ``(a<n>, b<n>)``."""
        return Gpr(Bank.A, self.index), Gpr(Bank.B, self.index)

    def __str__(self) -> str:
        return f"ab{self.index}"


@dataclass(frozen=True, slots=True)
class Xfer:
    """Transfer register ``$in<n>`` (read side) or ``$out<n>`` (write side)."""

    side: XferSide
    index: int

    def __post_init__(self) -> None:
        if not isinstance(self.side, XferSide):
            raise IllegalOperands(f"transfer side must be XferSide.IN or XferSide.OUT, not {self.side!r}")
        _check_index("transfer register", self.index, N_XFER)

    @property
    def kind(self) -> OperandKind:
        return OperandKind.XFER_IN if self.side == XferSide.IN else OperandKind.XFER_OUT

    def __str__(self) -> str:
        return f"${self.side.name.lower()}{self.index}"


@dataclass(frozen=True, slots=True)
class XferIndex:
    """``*$index``: the read transfer register ``$in<T_INDEX & 31>`` (the T_INDEX CSR picks it at run time).

    A write of T_INDEX takes 3 cycles to reach the operand: a read sooner waits for it.
    """

    @property
    def kind(self) -> OperandKind:
        return OperandKind.XFER_IN

    def __str__(self) -> str:
        return "*$index"


@dataclass(frozen=True, slots=True)
class NN:
    """Next-neighbour register ``n<n>``."""

    index: int

    def __post_init__(self) -> None:
        _check_index("next-neighbour register", self.index, N_NN)

    @property
    def kind(self) -> OperandKind:
        return OperandKind.NN

    def __str__(self) -> str:
        return f"n{self.index}"


@dataclass(frozen=True, slots=True)
class LMem:
    """Local-memory word at ``ACTIVE_LM_ADDR_<pointer>`` + 4*offset, optionally post-incremented by 4."""

    pointer: int
    offset: int = 0
    postinc: bool = False

    def __post_init__(self) -> None:
        _check_index("LM index pointer", self.pointer, N_LM_POINTERS)
        _check_index("LM offset", self.offset, MAX_LM_OFFSET + 1)
        if not isinstance(self.postinc, bool):
            raise IllegalOperands(f"LM postinc must be a bool, not {self.postinc!r}")
        if self.postinc and self.offset:
            raise IllegalOperands(
                "LM operand cannot have both an offset and post-increment",
                hint="use *l$indexN[k] or *l$indexN++",
            )

    @property
    def kind(self) -> OperandKind:
        return OperandKind.LMEM

    def __str__(self) -> str:
        if self.postinc:
            return f"*l$index{self.pointer}++"
        if self.offset:
            return f"*l$index{self.pointer}[{self.offset}]"
        return f"*l$index{self.pointer}"


@dataclass(frozen=True, slots=True)
class Imm:
    """Small source immediate 0..255 (larger constants need IMMED)."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not 0 <= self.value <= MAX_ALU_IMM:
            raise IllegalOperands(
                f"immediate operand {self.value!r} out of range 0..{MAX_ALU_IMM}",
                hint="load larger constants into a register with immed",
            )

    @property
    def kind(self) -> OperandKind:
        return OperandKind.IMM

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True, slots=True)
class NoDest:
    """No destination: the result is discarded (compare-only forms); printed ``--``."""

    @property
    def kind(self) -> OperandKind:
        return OperandKind.NONE

    def __str__(self) -> str:
        return "--"


Operand = Union[Gpr, GprBoth, Xfer, XferIndex, NN, LMem, Imm, NoDest]
OPERAND_TYPES = (Gpr, GprBoth, Xfer, XferIndex, NN, LMem, Imm, NoDest)

#: kinds an instruction may read / write
SOURCE_KINDS = frozenset({OperandKind.IMM, OperandKind.GPR_A, OperandKind.GPR_B,
                          OperandKind.XFER_IN, OperandKind.NN, OperandKind.LMEM})
REGISTER_SOURCE_KINDS = SOURCE_KINDS - {OperandKind.IMM}
DEST_KINDS = frozenset({OperandKind.GPR_A, OperandKind.GPR_B, OperandKind.GPR_BOTH, OperandKind.XFER_OUT,
                        OperandKind.NN, OperandKind.LMEM, OperandKind.NONE})
GPR_KINDS = frozenset({OperandKind.GPR_A, OperandKind.GPR_B})

NONE_CODE = 0x3FF
_KIND_CODE_BASE = {OperandKind.GPR_A: 0x100, OperandKind.GPR_B: 0x120, OperandKind.XFER_IN: 0x140,
                   OperandKind.XFER_OUT: 0x160, OperandKind.NN: 0x180, OperandKind.GPR_BOTH: 0x1A0}
_LM_BASE = 0x200
XFER_INDEX_CODE = 0x1C0


def operand_code(operand: Operand) -> int:
    """The 10-bit operand code of ``operand`` (see the module docstring)."""
    if isinstance(operand, Imm):
        return operand.value
    if isinstance(operand, (Gpr, GprBoth, Xfer, NN)):
        return _KIND_CODE_BASE[operand.kind] | operand.index
    if isinstance(operand, LMem):
        return _LM_BASE | operand.pointer << 5 | int(operand.postinc) << 4 | operand.offset
    if isinstance(operand, XferIndex):
        return XFER_INDEX_CODE
    if isinstance(operand, NoDest):
        return NONE_CODE
    raise IllegalOperands(f"not an NFP-32 operand: {operand!r}")


def operand_from_code(code: int) -> Operand:
    """The operand a 10-bit code names; reserved codes raise :class:`IllegalInstruction`."""
    if not 0 <= code <= NONE_CODE:
        raise IllegalInstruction(f"operand code {code:#x} wider than 10 bits")
    if code < 0x100:
        return Imm(code)
    if code < 0x1C0:
        group, index = (code >> 5) & 7, code & 31
        return (Gpr(Bank.A, index), Gpr(Bank.B, index), Xfer(XferSide.IN, index),
                Xfer(XferSide.OUT, index), NN(index), GprBoth(index))[group]
    if _LM_BASE <= code < _LM_BASE + 0x80:
        pointer, postinc, offset = (code >> 5) & 3, bool(code >> 4 & 1), code & 15
        if postinc and offset:
            raise IllegalInstruction(f"operand code {code:#05x}: LM post-increment with an offset is reserved")
        return LMem(pointer, offset, postinc)
    if code == XFER_INDEX_CODE:
        return XferIndex()
    if code == NONE_CODE:
        return NoDest()
    raise IllegalInstruction(f"operand code {code:#05x} is reserved")


def kind_of(operand: Operand | None) -> OperandKind:
    """The kind of an operand; an absent operand (None) counts as NONE."""
    if operand is None:
        return OperandKind.NONE
    if not isinstance(operand, OPERAND_TYPES):
        raise IllegalOperands(f"not an NFP-32 operand: {operand!r}")
    return operand.kind


KIND_NAMES = {
    OperandKind.IMM: "immediate",
    OperandKind.GPR_A: "A-bank GPR",
    OperandKind.GPR_B: "B-bank GPR",
    OperandKind.XFER_IN: "read transfer register ($in)",
    OperandKind.XFER_OUT: "write transfer register ($out)",
    OperandKind.NN: "next-neighbour register",
    OperandKind.LMEM: "local-memory operand",
    OperandKind.NONE: "no operand (--)",
    OperandKind.GPR_BOTH: "both-bank GPR (ab<n>)",
}


def describe_kinds(kinds) -> str:
    return ", ".join(KIND_NAMES[k] for k in sorted(kinds))

"""NFP-32: the NFP-like 32-bit SmartNIC instruction set that nfpjit compiles to (installed as ``nfpjit.isa``).

API summary (names are stable; the manual isa/README.md is generated from the table):

* ``nfpjit.isa.table``  the one declarative definition.
    ``Op`` (IntEnum, one per instruction), ``TABLE`` (tuple of ``Entry``),
    ``BY_OP[op]``/``BY_MNEMONIC[name]`` -> ``Entry`` (mnemonic, format, fields
    with (lsb, width), operand kinds per role, syntax, ``latency``
    (``LatencyClass``), ``max_defer``, ``alu`` (``AluOp``), one-line
    ``semantics``), field enums ``AluOp``, ``ShiftKind``, ``Cond``, ``Width``,
    ``MulStep``, ``Memory``, ``Csr``, ``AtomicCmd``, and the value type
    ``Instruction(op, dest=None, a=None, b=None, alu=None, shift=None,
    amount=0, indirect=False, mask=0, clear=False, imm=0, byte=0,
    invert=False, width=None, mul=None, cond=None, target=0, defer=0, bit=0,
    mem=None, xfer=None, count=0, signal=0, ctx_swap=False, csr=None, atomic=None)``.
* ``nfpjit.isa.operands``  ``Gpr(Bank.A, 3)``, ``Xfer(XferSide.IN, 2)``,
    ``NN(5)``, ``LMem(pointer, offset=0, postinc=False)``, ``Imm(0..255)``,
    ``NoDest()``; errors ``IsaError`` > ``IllegalInstruction``,
    ``IllegalOperands``, ``IsaAsmError``.
* ``nfpjit.isa.encoding``  ``encode(instr) -> int``, ``decode(word) ->
    Instruction``, ``check(instr)``, ``legalise(a, b) -> (port_a, port_b, swap)``,
    ``load_const(dest, value) -> tuple[Instruction, ...]`` (1 or 2 IMMEDs).
* ``nfpjit.isa.asm``  ``assemble(text, filename="<input>") -> AsmResult``,
    ``parse(line) -> Instruction``, ``assemble_image(text, filename) -> bytes``.
* ``nfpjit.isa.disasm``  ``format_instruction(instr) -> str`` (alias
    ``format``), ``disassemble(words, symbols=None) -> str``.

Examples::

    from nfpjit.isa import Instruction, Op, Gpr, Bank, Imm, encode, decode
    w = encode(Instruction(Op.ADD, dest=Gpr(Bank.A, 0), a=Gpr(Bank.B, 1), b=Imm(4)))
    assert decode(w) == Instruction(Op.ADD, Gpr(Bank.A, 0), Gpr(Bank.B, 1), Imm(4))
    str(decode(w))   # 'add a0, b1, 4'
"""

from .operands import (
    NN,
    Bank,
    Gpr,
    GprBoth,
    IllegalInstruction,
    IllegalOperands,
    Imm,
    IsaAsmError,
    IsaError,
    LMem,
    NoDest,
    Operand,
    OperandKind,
    Xfer,
    XferIndex,
    XferSide,
)
from .table import (
    BY_MNEMONIC,
    BY_OP,
    TABLE,
    AluOp,
    AtomicCmd,
    Cond,
    Csr,
    Entry,
    Format,
    Instruction,
    LatencyClass,
    Memory,
    MulStep,
    Op,
    ShiftKind,
    Width,
)
from .encoding import check, decode, encode, legalise, load_const
from .disasm import disassemble, format_instruction
from .asm import AsmResult, assemble, parse

__all__ = [
    "NN", "Bank", "Gpr", "GprBoth", "IllegalInstruction", "IllegalOperands", "Imm", "IsaAsmError", "IsaError", "LMem",
    "NoDest", "Operand", "OperandKind", "Xfer", "XferIndex", "XferSide",
    "BY_MNEMONIC", "BY_OP", "TABLE", "AluOp", "AtomicCmd", "Cond", "Csr", "Entry", "Format", "Instruction", "LatencyClass",
    "Memory", "MulStep", "Op", "ShiftKind", "Width",
    "check", "decode", "encode", "legalise", "load_const", "disassemble", "format_instruction", "AsmResult", "assemble", "parse",
]

"""The machine-level program the lowering produces: NFP-32 instructions with labels and eBPF positions.

An :class:`MInstr` is either a label definition (takes no code space) or one
:class:`~nfpjit.isa.table.Instruction`, optionally with a symbolic branch
target (a label, resolved into the instruction's ``target`` field when the
program is assembled) and a relocation (a map table id or a firmware routine
address the loader patches in).  Every instruction remembers the eBPF pc it
was lowered from, which becomes the image's line table.

:class:`MFunction` is the code of one eBPF function; :class:`MProgram` the
functions in layout order (the entry function first).  Both have ``size()``
(the number of NFP instructions), which is what NFP passes measure.
:meth:`MProgram.assemble` lays the functions out, resolves labels and encodes
every instruction into an :class:`Assembled`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from nfpjit.errors import UnsupportedError
from nfpjit.isa.disasm import format_instruction
from nfpjit.isa.encoding import encode
from nfpjit.isa.image import Relocation, RelocKind, Symbol, SymbolKind
from nfpjit.isa.operands import IllegalOperands
from nfpjit.isa.sim.firmware import MAX_PROGRAM_WORDS
from nfpjit.isa.table import Instruction, Op

_TARGET_OPS = frozenset({Op.BR, Op.BR_BSET, Op.BR_BCLR, Op.LOAD_ADDR})


class MirError(UnsupportedError):
    """A machine program that cannot be assembled (undefined label, unencodable instruction, too long)."""


@dataclass(frozen=True)
class MReloc:
    """A load-time patch of an instruction: ``kind`` MAP_ID (immed imm) or ROUTINE_ADDR (br/load_addr target)."""

    kind: RelocKind
    symbol: str
    addend: int = 0


@dataclass(frozen=True)
class MInstr:
    """One machine instruction, or a label definition when ``instr`` is None."""

    instr: Instruction | None = None
    label: str | None = None          # the label this entry defines (instr is None)
    target: str | None = None         # label whose address goes into instr.target
    pc: int | None = None             # eBPF pc this instruction was lowered from
    reloc: MReloc | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        if (self.instr is None) == (self.label is None):
            raise ValueError("an MInstr is either an instruction or a label definition")
        if self.target is not None and (self.instr is None or self.instr.op not in _TARGET_OPS):
            raise ValueError(f"only br, br_bset, br_bclr and load_addr take a label target, not {self.instr}")

    @property
    def is_label(self) -> bool:
        return self.instr is None

    def __str__(self) -> str:
        if self.instr is None:
            return f"{self.label}:"
        labels = {self.instr.target: self.target} if self.target is not None else None
        text = format_instruction(self.instr, labels)
        if self.reloc is not None:
            text += f"    ; reloc {self.reloc.kind.name.lower()} {self.reloc.symbol}"
        elif self.comment:
            text += f"    ; {self.comment}"
        return text


@dataclass
class MFunction:
    """The machine code of one eBPF function (entry point or BPF-to-BPF callee)."""

    name: str
    start_pc: int
    body: list[MInstr] = field(default_factory=list)

    def size(self) -> int:
        return sum(1 for m in self.body if m.instr is not None)

    def labels(self) -> list[str]:
        return [m.label for m in self.body if m.label is not None]


@dataclass(frozen=True)
class Assembled:
    """An encoded machine program.

    ``line_pcs`` pairs every code address that came from an eBPF instruction
    with that instruction's pc (slot index), in address order.
    """

    words: tuple[int, ...]
    instructions: tuple[Instruction, ...]
    line_pcs: tuple[tuple[int, int], ...]
    relocations: tuple[Relocation, ...]
    symbols: tuple[Symbol, ...]
    labels: dict[str, int]


@dataclass
class MProgram:
    """Functions in layout order; ``functions[0]`` is the entry point (code address 0).

    ``stack_size``: LM bytes the lowering's static frame layout uses (the image's stack size).
    """

    name: str = ""
    functions: list[MFunction] = field(default_factory=list)
    stack_size: int = 0
    #: what nfp-level passes may know besides the code (nfpjit.passes.PassContext: program, analysis)
    context: object = field(default=None, compare=False, repr=False)

    def size(self) -> int:
        return sum(f.size() for f in self.functions)

    def verify(self) -> None:
        """The IR invariants every pass must keep; raises :class:`MirError` naming the first broken one.

        Labels are defined once and every branch target is defined; the defer slots of a branch
        hold plain instructions (no label between a branch and its last slot, no branch, halt
        or second defer); then the program must assemble (operands encodable, code fits).
        """
        for f in self.functions:
            pending = 0       # defer slots still to come after the last branch
            for m in f.body:
                if m.is_label:
                    if pending:
                        raise MirError(f"label {m.label!r} inside the defer slots of a branch",
                                       where=f"function {f.name}")
                    continue
                entry_branch = m.instr.op in (Op.BR, Op.BR_BSET, Op.BR_BCLR, Op.RTN, Op.HALT)
                if pending:
                    if entry_branch:
                        raise MirError(f"{m} sits in the defer slot of a branch", where=f"function {f.name}, "
                                       f"eBPF pc {m.pc}")
                    pending -= 1
                if entry_branch:
                    pending = m.instr.defer
            if pending:
                raise MirError("the last branch's defer slots run past the end of the function",
                               where=f"function {f.name}")
        self.assemble()

    def entries(self):
        """Every MInstr in layout order."""
        for f in self.functions:
            yield from f.body

    def instructions(self) -> list[MInstr]:
        return [m for m in self.entries() if m.instr is not None]

    def listing(self) -> str:
        """Readable text: labels at the margin, instructions indented, one per line."""
        lines = []
        for f in self.functions:
            lines.append(f"; function {f.name} (eBPF pc {f.start_pc})")
            for m in f.body:
                lines.append(str(m) if m.is_label else f"    {m}")
        return "\n".join(lines) + "\n"

    def assemble(self) -> Assembled:
        """Lay out, resolve labels, encode.  Raises :class:`MirError` for a bad machine program."""
        labels: dict[str, int] = {}
        address = 0
        starts = []
        for f in self.functions:
            starts.append(address)
            for m in f.body:
                if m.label is not None:
                    if m.label in labels:
                        raise MirError(f"label {m.label!r} defined twice", where=f"function {f.name}")
                    labels[m.label] = address
                else:
                    address += 1
        if address > MAX_PROGRAM_WORDS:
            raise MirError(f"the program needs {address} NFP instructions; the code store holds "
                           f"{MAX_PROGRAM_WORDS}", hint="split the program or compile with -O2")
        words, instrs, line_pcs, relocs = [], [], [], []
        for f in self.functions:
            for m in f.body:
                if m.instr is None:
                    continue
                instr = m.instr
                here = len(words)
                if m.target is not None:
                    if m.target not in labels:
                        raise MirError(f"branch to undefined label {m.target!r}", where=f"function {f.name}, "
                                       f"eBPF pc {m.pc}")
                    instr = dataclasses.replace(instr, target=labels[m.target])
                try:
                    words.append(encode(instr))
                except IllegalOperands as exc:
                    raise MirError(f"cannot encode {instr}: {exc.message}", where=f"function {f.name}, eBPF pc "
                                   f"{m.pc}", hint="this is a bug in the lowering") from None
                instrs.append(instr)
                if m.pc is not None:
                    line_pcs.append((here, m.pc))
                if m.reloc is not None:
                    relocs.append(Relocation(here, m.reloc.kind, m.reloc.symbol, m.reloc.addend))
        symbols = [Symbol(f.name, SymbolKind.SUBPROG, start, f.size()) for f, start in zip(self.functions, starts)]
        seen = set()
        for r in relocs:
            if r.symbol not in seen:
                seen.add(r.symbol)
                kind = SymbolKind.MAP if r.kind == RelocKind.MAP_ID else SymbolKind.ROUTINE
                symbols.append(Symbol(r.symbol, kind))
        return Assembled(tuple(words), tuple(instrs), tuple(line_pcs), tuple(relocs), tuple(symbols), labels)


__all__ = ["Assembled", "MFunction", "MInstr", "MProgram", "MReloc", "MirError"]

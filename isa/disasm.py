"""NFP-32 disassembler: instructions and words to assembly text that re-assembles to the same words.

The text of an instruction follows its table entry's syntax: ``mnemonic[.suffix]``,
the positional slots in order, then keyword slots that differ from their
default (``name=value``, or a bare ``name`` for a true flag).  Branch and
``load_addr`` targets print as labels when a symbol or generated label exists
for the address, else as numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .encoding import decode
from .operands import IllegalInstruction
from .table import BY_OP, FieldKind, Instruction, enum_text

TARGET_OPS_FIELD = "target"


def _slot_text(instr: Instruction, slot: str, labels: Mapping[int, str] | None, imm_text: str | None = None) -> str:
    entry = BY_OP[instr.op]
    if slot in ("dest", "a", "b"):
        value = getattr(instr, slot)
        return "--" if value is None else str(value)
    if slot == "shift":
        amount = "indirect" if instr.indirect else str(instr.amount)
        return f"{enum_text(instr.shift)} {amount}"
    if slot == "amount":
        return "indirect" if entry.field("indirect") is not None and instr.indirect else str(instr.amount)
    if slot == "count":
        return "indirect" if instr.count == 0 else str(instr.count)
    if slot == "mask":
        return f"0b{instr.mask:04b}"
    if slot == "imm":
        return imm_text if imm_text is not None else f"{instr.imm:#x}"
    if slot == "target":
        if labels and instr.target in labels:
            return labels[instr.target]
        return str(instr.target)
    if slot == "xfer":
        return str(instr.xfer)
    value = getattr(instr, slot)
    f = entry.field(slot)
    if f is not None and f.kind == FieldKind.ENUM:
        return enum_text(value)
    return str(value)


def format_instruction(instr: Instruction, labels: Mapping[int, str] | None = None, *,
                       imm_text: str | None = None) -> str:
    """One line of assembly for ``instr``; ``labels`` maps code addresses to names for targets.

    ``imm_text`` replaces the printed ``imm`` (e.g. ``map(counters)`` for a relocated map id).
    """
    entry = BY_OP[instr.op]
    head = entry.mnemonic
    if entry.suffix:
        head += "." + enum_text(getattr(instr, entry.suffix))
    parts = [_slot_text(instr, slot, labels, imm_text) for slot in entry.syntax]
    for name in entry.keywords:
        f = entry.field(name)
        value = getattr(instr, name)
        if f.kind == FieldKind.BOOL:
            if value:
                parts.append(name)
        elif value != (f.default if f.default is not None else f.lo if f.kind == FieldKind.UINT else 0):
            parts.append(f"{name}={_slot_text(instr, name, labels)}")
    return f"{head} {', '.join(parts)}" if parts else head


format = format_instruction  # the name the API summary promises; shadows the builtin only here


def branch_targets(instrs: Iterable[Instruction]) -> set[int]:
    """Code addresses that branches and load_addr refer to."""
    return {i.target for i in instrs if BY_OP[i.op].field(TARGET_OPS_FIELD) is not None}


def disassemble(words: Iterable[int], symbols: Mapping[int, str] | None = None, *, listing: bool = False,
                imm_texts: Mapping[int, str] | None = None, comments: Mapping[int, str] | None = None) -> str:
    """Assembly text for a sequence of code words.

    Every branch target inside the code gets a label (the name from ``symbols``,
    else ``L<address>``).  With ``listing`` each line ends in a comment with
    the address and the word.  ``imm_texts`` maps addresses to replacement
    immediate text (see :func:`format_instruction`); ``comments`` maps
    addresses to a comment line printed above the instruction.  Invalid words
    raise :class:`IllegalInstruction` naming their index.
    """
    words = list(words)
    instrs = []
    for index, word in enumerate(words):
        try:
            instrs.append(decode(word))
        except IllegalInstruction as exc:
            raise IllegalInstruction(exc.message, where=f"code word {index}", hint=exc.hint) from None
    labels: dict[int, str] = {}
    for addr in sorted(branch_targets(instrs) | set(symbols or ())):
        if addr < len(words):
            labels[addr] = (symbols or {}).get(addr) or f"L{addr}"
    lines = []
    for addr, (word, instr) in enumerate(zip(words, instrs)):
        if addr in labels:
            lines.append(f"{labels[addr]}:")
        if comments and addr in comments:
            lines.append(f"    ; {comments[addr]}")
        text = "    " + format_instruction(instr, labels, imm_text=(imm_texts or {}).get(addr))
        if listing:
            text = f"{text:<48} ; {addr:04x}: {word:016x}"
        lines.append(text)
    return "\n".join(lines) + ("\n" if lines else "")

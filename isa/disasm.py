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
from .table import BY_OP, FieldKind, Instruction, enum_text, format_instruction

TARGET_OPS_FIELD = "target"


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

"""Encoder and decoder between :class:`~nfpjit.isa.table.Instruction` values and 64-bit words.

Both walk the field list of the instruction's table entry, so adding an
instruction to the table is enough to encode and decode it.  The rules:

* :func:`check` validates an instruction against its entry (operand kinds,
  field ranges, the two-source rule, entry-specific constraints) and raises
  :class:`IllegalOperands` with a hint.
* :func:`legalise` places the logical sources ``a`` and ``b`` on the two
  physical ports.  Port A reads bank A, port B reads bank B; transfer, NN,
  local-memory and immediate sources have one read path each and may sit on
  either port.  When ``a`` is a B-bank GPR or ``b`` an A-bank GPR the ports
  are swapped and the swap bit set; two sources of one kind are illegal.
* :func:`decode` rejects unknown opcodes, set reserved bits, reserved operand
  codes, out-of-range fields, illegal operand combinations and non-canonical
  words (for instance a swap bit set where no swap is needed), so that
  ``encode(decode(w)) == w`` for every word it accepts.
"""

from __future__ import annotations

from nfpjit.bits import MASK32, MASK64

from .operands import (
    KIND_NAMES,
    NONE_CODE,
    IllegalInstruction,
    IllegalOperands,
    NoDest,
    Operand,
    OperandKind,
    Xfer,
    describe_kinds,
    kind_of,
    operand_code,
    operand_from_code,
)
from .table import (
    BY_OP,
    enum_text,
    INSTRUCTION_DEFAULTS,
    READ_ONLY_CSRS,
    UNARY_ALU_OPS,
    Entry,
    FieldKind,
    Instruction,
    Op,
    Width,
)

_TWO_SOURCE_HINTS = {
    OperandKind.GPR_A: "an ALU reads one A-bank and one B-bank register; copy one source to the B bank first",
    OperandKind.GPR_B: "an ALU reads one A-bank and one B-bank register; copy one source to the A bank first",
    OperandKind.IMM: "fold the two constants, or load one into a register with immed",
    OperandKind.XFER_IN: "copy one transfer register to a GPR first",
    OperandKind.NN: "copy one next-neighbour register to a GPR first",
    OperandKind.LMEM: "copy one local-memory word to a GPR first",
}


def legalise(a: Operand | None, b: Operand | None) -> tuple[Operand | None, Operand | None, bool]:
    """Place logical sources on the ports: returns ``(port_a, port_b, swap)``.

    Raises :class:`IllegalOperands` when the two sources are of the same kind.
    """
    ka, kb = kind_of(a), kind_of(b)
    if ka == kb and ka != OperandKind.NONE:
        raise IllegalOperands(
            f"two sources of one kind ({KIND_NAMES[ka]}): {a}, {b}", hint=_TWO_SOURCE_HINTS.get(ka)
        )
    swap = ka == OperandKind.GPR_B or kb == OperandKind.GPR_A
    pa, pb = (b, a) if swap else (a, b)
    if kind_of(pa) == OperandKind.GPR_B or kind_of(pb) == OperandKind.GPR_A:
        raise IllegalOperands(f"sources {a}, {b} cannot be placed on the A and B ports")
    return pa, pb, swap


def entry_attrs(entry: Entry) -> frozenset[str]:
    """Instruction attributes an entry defines."""
    names = {f.name for f in entry.fields if f.kind not in (FieldKind.OPCODE, FieldKind.PORT_A,
                                                               FieldKind.PORT_B, FieldKind.SWAP)}
    for role, kinds in (("dest", entry.dest_kinds), ("a", entry.a_kinds), ("b", entry.b_kinds)):
        if kinds is not None:
            names.add(role)
    return frozenset(names)


def _fail(entry: Entry, message: str, hint: str | None = None) -> IllegalOperands:
    return IllegalOperands(f"{entry.mnemonic}: {message}", hint=hint)


def _check_operand(entry: Entry, role: str, value, kinds) -> None:
    if role == "dest" and value is None:
        raise _fail(entry, "needs a destination", hint="write -- (NoDest()) to discard the result")
    try:
        kind = kind_of(value)
    except IllegalOperands as exc:
        raise _fail(entry, f"{role}: {exc.message}") from None
    if kind not in kinds:
        if kind == OperandKind.NONE and value is None:
            raise _fail(entry, f"needs operand {role}")
        if kind == OperandKind.NONE:
            raise _fail(entry, "dest cannot be -- (the result must be written somewhere)")
        allowed = describe_kinds(kinds - {OperandKind.NONE}) or "nothing"
        raise _fail(entry, f"{role} cannot be {value} ({KIND_NAMES[kind]})", hint=f"{role} may be: {allowed}")


def check(instr: Instruction) -> None:
    """Raise :class:`IllegalOperands` unless ``instr`` is encodable."""
    if not isinstance(instr, Instruction):
        raise IllegalOperands(f"not an NFP-32 Instruction: {instr!r}")
    entry = BY_OP[instr.op]
    attrs = entry_attrs(entry)
    for name, default in INSTRUCTION_DEFAULTS.items():
        if name not in attrs and getattr(instr, name) != default:
            raise _fail(entry, f"has no {name} field (got {getattr(instr, name)!r})")
    for role, kinds in (("dest", entry.dest_kinds), ("a", entry.a_kinds), ("b", entry.b_kinds)):
        if kinds is not None:
            _check_operand(entry, role, getattr(instr, role), kinds)
    for f in entry.fields:
        value = getattr(instr, f.name, None)
        if f.kind in (FieldKind.UINT, FieldKind.TARGET):
            if isinstance(value, bool) or not isinstance(value, int) or not f.lo <= value <= f.max_value:
                raise _fail(entry, f"{f.name} {value!r} out of range {f.lo}..{f.max_value}")
        elif f.kind == FieldKind.BOOL:
            if not isinstance(value, bool):
                raise _fail(entry, f"{f.name} must be True or False, not {value!r}")
        elif f.kind == FieldKind.ENUM:
            if not isinstance(value, f.enum):
                raise _fail(entry, f"{f.name} must be a {f.enum.__name__}, not {value!r}")
        elif f.kind == FieldKind.XFER:
            if not isinstance(value, Xfer) or value.side != entry.xfer_side:
                side = entry.xfer_side.name.lower()
                raise _fail(entry, f"xfer must be a ${side} transfer register, not {value}",
                            hint="reads fill $in registers, writes and atomics send $out registers")
    # entry-specific rules
    if entry.field("alu") is not None:
        unary = instr.alu in UNARY_ALU_OPS
        if unary and instr.a is not None:
            raise _fail(entry, f"a must be --: {instr.alu.name.lower()} takes one source")
        if not unary and instr.a is None:
            raise _fail(entry, f"needs operand a: {instr.alu.name.lower()} takes two sources")
    if entry.field("indirect") is not None and instr.indirect and instr.amount:
        raise _fail(entry, "amount must be 0 for an indirect shift (the amount comes from prev)")
    if entry.fixed_count is not None and instr.count != entry.fixed_count:
        raise _fail(entry, f"count must be {entry.fixed_count} (the command moves exactly that many words)")
    if entry.xfer_side is not None and instr.count and instr.xfer.index + instr.count > 32:
        raise _fail(entry, f"xfer registers {instr.xfer.index}..{instr.xfer.index + instr.count - 1} "
                           "run past the last one (31)")
    if instr.op == Op.CSR_WR and instr.csr in READ_ONLY_CSRS:
        raise _fail(entry, f"csr {enum_text(instr.csr)} is read-only")
    if entry.ported:
        try:
            legalise(instr.a, instr.b)
        except IllegalOperands as exc:
            raise _fail(entry, exc.message, exc.hint) from None


def _code(operand: Operand | None) -> int:
    return NONE_CODE if operand is None else operand_code(operand)


def encode(instr: Instruction) -> int:
    """The 64-bit word of ``instr``; raises :class:`IllegalOperands` if it breaks a rule."""
    check(instr)
    entry = BY_OP[instr.op]
    pa = pb = None
    swap = False
    if entry.ported:
        pa, pb, swap = legalise(instr.a, instr.b)
    word = 0
    for f in entry.fields:
        k = f.kind
        if k == FieldKind.OPCODE:
            raw = int(instr.op)
        elif k in (FieldKind.DEST, FieldKind.A, FieldKind.B):
            raw = _code(getattr(instr, f.name))
        elif k == FieldKind.PORT_A:
            raw = _code(pa)
        elif k == FieldKind.PORT_B:
            raw = _code(pb)
        elif k == FieldKind.SWAP:
            raw = int(swap)
        elif k == FieldKind.XFER:
            raw = instr.xfer.index
        else:
            raw = int(getattr(instr, f.name))
        word |= raw << f.lsb
    return word


def _bad(word: int, message: str) -> IllegalInstruction:
    return IllegalInstruction(f"word {word:#018x}: {message}")


def decode(word: int) -> Instruction:
    """The instruction a 64-bit word encodes; raises :class:`IllegalInstruction` for invalid words."""
    if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= MASK64:
        raise IllegalInstruction(f"not a 64-bit instruction word: {word!r}")
    try:
        op = Op(word >> 56)
    except ValueError:
        raise _bad(word, f"unknown opcode {word >> 56:#04x}") from None
    entry = BY_OP[op]
    reserved = word & ~entry.used_mask & MASK64
    if reserved:
        raise _bad(word, f"reserved bits set for {entry.mnemonic}: {reserved:#x}")
    values: dict[str, object] = {}
    ports: dict[FieldKind, int] = {}
    for f in entry.fields:
        raw = (word >> f.lsb) & ((1 << f.width) - 1)
        k = f.kind
        try:
            if k == FieldKind.OPCODE:
                continue
            if k in (FieldKind.PORT_A, FieldKind.PORT_B, FieldKind.SWAP):
                ports[k] = raw
            elif k == FieldKind.DEST:
                values["dest"] = operand_from_code(raw)
            elif k in (FieldKind.A, FieldKind.B):
                values[f.name] = None if raw == NONE_CODE else operand_from_code(raw)
            elif k in (FieldKind.UINT, FieldKind.TARGET):
                if not f.lo <= raw <= f.max_value:
                    raise _bad(word, f"{entry.mnemonic}: {f.name} {raw} out of range {f.lo}..{f.max_value}")
                values[f.name] = raw
            elif k == FieldKind.BOOL:
                values[f.name] = bool(raw)
            elif k == FieldKind.ENUM:
                try:
                    values[f.name] = f.enum(raw)
                except ValueError:
                    raise _bad(word, f"{entry.mnemonic}: {f.name} {raw} is reserved") from None
            elif k == FieldKind.XFER:
                values["xfer"] = Xfer(entry.xfer_side, raw)
        except IllegalInstruction as exc:
            if exc.message.startswith("word "):
                raise
            raise _bad(word, f"{entry.mnemonic}: {f.name}: {exc.message}") from None
    if ports:
        try:
            pa = None if ports[FieldKind.PORT_A] == NONE_CODE else operand_from_code(ports[FieldKind.PORT_A])
            pb = None if ports[FieldKind.PORT_B] == NONE_CODE else operand_from_code(ports[FieldKind.PORT_B])
        except IllegalInstruction as exc:
            raise _bad(word, f"{entry.mnemonic}: {exc.message}") from None
        a, b = (pb, pa) if ports[FieldKind.SWAP] else (pa, pb)
        if entry.a_kinds is not None:
            values["a"] = a
        elif a is not None:
            raise _bad(word, f"{entry.mnemonic}: has no a operand")
        values["b"] = b
    try:
        instr = Instruction(op, **values)
        if encode(instr) != word:
            raise _bad(word, f"{entry.mnemonic}: non-canonical encoding (should be {encode(instr):#018x})")
    except IllegalOperands as exc:
        raise _bad(word, exc.message) from None
    return instr


def load_const(dest: Operand, value: int) -> tuple[Instruction, ...]:
    """The shortest IMMED sequence (one or two instructions) that sets ``dest`` to a 32-bit ``value``.

    ``value`` may be given signed (-2**31..-1) or unsigned.  One instruction
    when the value, or its complement, is a 16-bit value shifted by 0, 1 or 2
    bytes; otherwise the low half as a whole word, then the high half
    (``width=hi``, which keeps the low half: ``dest`` must be readable).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 31) <= value <= MASK32:
        raise IllegalOperands(f"constant {value!r} does not fit 32 bits")
    value &= MASK32
    for invert in (False, True):
        v = ~value & MASK32 if invert else value
        for byte in (0, 1, 2):
            if v & ~(0xFFFF << 8 * byte) == 0:
                return (Instruction(Op.IMMED, dest=dest, imm=v >> 8 * byte, byte=byte, invert=invert),)
    return (Instruction(Op.IMMED, dest=dest, imm=value & 0xFFFF),
            Instruction(Op.IMMED, dest=dest, imm=value >> 16, byte=2, width=Width.HI))


def decode_words(words) -> list[Instruction]:
    """Decode a sequence of words; errors name the failing index."""
    out = []
    for index, word in enumerate(words):
        try:
            out.append(decode(word))
        except IllegalInstruction as exc:
            raise IllegalInstruction(exc.message, where=f"word {index}", hint=exc.hint) from None
    return out


def encode_all(instrs) -> tuple[int, ...]:
    """Encode a sequence of instructions; errors name the failing index."""
    out = []
    for index, instr in enumerate(instrs):
        try:
            out.append(encode(instr))
        except IllegalOperands as exc:
            raise IllegalOperands(exc.message, where=f"instruction {index}", hint=exc.hint) from None
    return tuple(out)


__all__ = ["check", "decode", "decode_words", "encode", "encode_all", "entry_attrs", "legalise", "load_const", "NoDest"]

"""Round trips for every NFP-32 table entry: decode(encode(i)) == i and assemble(disassemble(w)) == w.

Instructions are generated per entry from the table's own description of
legal operands and fields, so a new entry is covered without touching this
file.  The independent check here is the word-level one: encode() must
produce a word the decoder, the text printer and the parser all agree on,
and fixed words hand-built from the documented layout must match.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nfpjit.isa import (
    NN,
    TABLE,
    Bank,
    Gpr,
    GprBoth,
    IllegalOperands,
    Imm,
    Instruction,
    LMem,
    NoDest,
    Op,
    OperandKind,
    Xfer,
    XferSide,
    check,
    decode,
    encode,
)
from nfpjit.isa.asm import assemble, parse
from nfpjit.isa.disasm import disassemble, format_instruction
from nfpjit.isa.table import BY_OP, FieldKind, UNARY_ALU_OPS

# -- strategies -------------------------------------------------------------------

_OPERAND_BY_KIND = {
    OperandKind.IMM: st.builds(Imm, st.integers(0, 255)),
    OperandKind.GPR_A: st.builds(Gpr, st.just(Bank.A), st.integers(0, 31)),
    OperandKind.GPR_B: st.builds(Gpr, st.just(Bank.B), st.integers(0, 31)),
    OperandKind.XFER_IN: st.builds(Xfer, st.just(XferSide.IN), st.integers(0, 31)),
    OperandKind.XFER_OUT: st.builds(Xfer, st.just(XferSide.OUT), st.integers(0, 31)),
    OperandKind.NN: st.builds(NN, st.integers(0, 31)),
    OperandKind.GPR_BOTH: st.builds(GprBoth, st.integers(0, 31)),
    OperandKind.LMEM: st.one_of(
        st.builds(LMem, st.integers(0, 3), st.integers(0, 15), st.just(False)),
        st.builds(LMem, st.integers(0, 3), st.just(0), st.just(True)),
    ),
    OperandKind.NONE: st.just(None),
}


def operand_of(kinds, role: str):
    kinds = sorted(kinds)
    strategies = []
    for k in kinds:
        if k == OperandKind.NONE and role == "dest":
            strategies.append(st.just(NoDest()))
        else:
            strategies.append(_OPERAND_BY_KIND[k])
    return st.one_of(*strategies)


def _field_value(f, entry):
    if f.kind in (FieldKind.UINT, FieldKind.TARGET):
        return st.integers(f.lo, f.max_value)
    if f.kind == FieldKind.BOOL:
        return st.booleans()
    if f.kind == FieldKind.ENUM:
        return st.sampled_from(list(f.enum))
    if f.kind == FieldKind.XFER:
        return st.builds(Xfer, st.just(entry.xfer_side), st.integers(0, 31))
    return None


@st.composite
def instruction_for(draw, entry):
    values = {}
    for role in ("dest", "a", "b"):
        kinds = getattr(entry, f"{role}_kinds")
        if kinds is not None:
            values[role] = draw(operand_of(kinds, role))
    for f in entry.fields:
        strategy = _field_value(f, entry)
        if strategy is not None:
            values[f.name] = draw(strategy)
    # steer the draws towards the entry-specific rules instead of rejecting most of them
    if "alu" in values:
        if values["alu"] in UNARY_ALU_OPS:
            values["a"] = None
        elif values.get("a") is None:
            values["a"] = draw(operand_of(entry.a_kinds - {OperandKind.NONE}, "a"))
    if values.get("indirect"):
        values["amount"] = 0
    if entry.fixed_count is not None:
        values["count"] = entry.fixed_count
    if "xfer" in values and values.get("count"):
        values["xfer"] = Xfer(entry.xfer_side, min(values["xfer"].index, 32 - values["count"]))
    instr = Instruction(entry.op, **values)
    try:
        check(instr)
    except IllegalOperands:
        assume(False)  # e.g. two sources of one kind: covered by test_isa_operands
    return instr


ENTRIES = [pytest.param(e, id=e.mnemonic) for e in TABLE]
any_instruction = st.sampled_from([e.op for e in TABLE]).flatmap(lambda op: instruction_for(BY_OP[op]))


# -- properties -------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
@settings(max_examples=60)
@given(data=st.data())
def test_decode_encode_roundtrip(entry, data):
    instr = data.draw(instruction_for(entry))
    word = encode(instr)
    assert 0 <= word < 1 << 64
    assert word >> 56 == entry.op
    assert word & ~entry.used_mask == 0
    assert decode(word) == instr


@pytest.mark.parametrize("entry", ENTRIES)
@settings(max_examples=40)
@given(data=st.data())
def test_text_roundtrip(entry, data):
    instr = data.draw(instruction_for(entry))
    text = format_instruction(instr)
    assert parse(text) == instr
    assert assemble(text + "\n").words == (encode(instr),)


@settings(max_examples=60)
@given(st.lists(any_instruction, min_size=1, max_size=40))
def test_program_disassembles_and_reassembles(instrs):
    n = len(instrs)
    # keep branch targets inside the program so the disassembler turns them into labels
    instrs = [dataclasses.replace(i, target=i.target % n) if i.entry.field("target") else i for i in instrs]
    words = [encode(i) for i in instrs]
    text = disassemble(words)
    assert assemble(text).words == tuple(words)
    assert assemble(disassemble(words, listing=True)).words == tuple(words)


@settings(max_examples=300)
@given(st.integers(0, (1 << 64) - 1))
def test_random_words_decode_or_are_rejected(word):
    from nfpjit.isa import IllegalInstruction

    try:
        instr = decode(word)
    except IllegalInstruction:
        return
    assert encode(instr) == word


@settings(max_examples=300)
@given(st.sampled_from([e.op for e in TABLE]), st.integers(0, (1 << 56) - 1))
def test_words_with_valid_opcode_decode_canonically_or_are_rejected(op, low):
    """Random bodies under a real opcode: whatever decodes must re-encode to the very same word."""
    from nfpjit.isa import IllegalInstruction

    entry = BY_OP[op]
    word = int(op) << 56 | (low & entry.used_mask)
    try:
        instr = decode(word)
    except IllegalInstruction:
        return
    assert encode(instr) == word
    assert assemble(format_instruction(instr)).words == (word,)


# -- fixed words built by hand from the documented layout ---------------------------


def test_hand_built_words():
    # add a0, b1, 4: a is a B GPR, so the ports swap: port A holds the immediate, port B holds b1
    add = (0x08 << 56) | (0x100 << 46) | (0x004 << 36) | (0x121 << 26) | (1 << 25)
    assert encode(parse("add a0, b1, 4")) == add
    assert decode(add) == Instruction(Op.ADD, Gpr(Bank.A, 0), Gpr(Bank.B, 1), Imm(4))
    # add a0, a1, b2: no swap
    assert encode(parse("add a0, a1, b2")) == (0x08 << 56) | (0x100 << 46) | (0x101 << 36) | (0x122 << 26)
    # br.ne 0x123, defer=2
    assert encode(parse("br.ne 0x123, defer=2")) == (0x30 << 56) | (1 << 52) | (2 << 50) | 0x123
    # immed b7, 0xbeef, byte=1, invert, width=hi
    assert encode(parse("immed b7, 0xbeef, byte=1, invert, width=hi")) == (
        (0x20 << 56) | (0x127 << 46) | (0xBEEF << 16) | (1 << 14) | (1 << 13) | (2 << 11))
    # mov --, *l$index2++ : dest NoDest = 0x3ff, absent a = 0x3ff on port A, LM code 0x200|2<<5|1<<4
    assert encode(parse("mov --, *l$index2++")) == (0x11 << 56) | (0x3FF << 46) | (0x3FF << 36) | (0x250 << 26)
    # mem_write.emem $out4, a1, b2, 2, signal=3
    assert encode(parse("mem_write.emem $out4, a1, b2, 2, signal=3")) == (
        (0x39 << 56) | (1 << 54) | (4 << 48) | (2 << 44) | (0x101 << 34) | (0x122 << 24) | (3 << 19))


def test_nop_is_the_zero_word():
    assert decode(0) == Instruction(Op.NOP)
    assert encode(Instruction(Op.NOP)) == 0


def test_every_entry_has_a_roundtrip_strategy():
    # a table entry with a field kind the strategy does not know would silently be generated without it
    for entry in TABLE:
        for f in entry.fields:
            assert f.kind in (FieldKind.OPCODE, FieldKind.DEST, FieldKind.A, FieldKind.B, FieldKind.PORT_A,
                              FieldKind.PORT_B, FieldKind.SWAP) or _field_value(f, entry) is not None

"""Consistency of the NFP-32 table itself, and the generated manual being current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.isa import TABLE, AluOp, Op, OperandKind
from nfpjit.isa.table import (
    BY_MNEMONIC,
    BY_OP,
    CODE_ADDR_BITS,
    COND_TESTS,
    CSR_DOCS,
    MUL_STEPS_NEEDED,
    Cond,
    Csr,
    FieldKind,
    Instruction,
    MulStep,
)

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = [pytest.param(e, id=e.mnemonic) for e in TABLE]


def test_one_entry_per_opcode_and_mnemonic():
    assert sorted(e.op for e in TABLE) == sorted(Op)
    assert len({e.mnemonic for e in TABLE}) == len(TABLE)
    assert set(BY_OP) == set(Op) and set(BY_MNEMONIC) == {e.mnemonic for e in TABLE}


@pytest.mark.parametrize("entry", ENTRIES)
def test_fields_fit_and_do_not_overlap(entry):
    seen = 0
    names = set()
    for f in entry.fields:
        assert 0 <= f.lsb and f.lsb + f.width <= 64, f.name
        assert not seen & f.mask, f"{entry.mnemonic}: {f.name} overlaps"
        seen |= f.mask
        assert f.name not in names
        names.add(f.name)
        assert f.max_value < 1 << f.width, f"{entry.mnemonic}: {f.name} range exceeds its width"
        if f.kind in (FieldKind.DEST, FieldKind.A, FieldKind.B, FieldKind.PORT_A, FieldKind.PORT_B):
            assert f.width == 10
        if f.kind == FieldKind.TARGET:
            assert f.width == CODE_ADDR_BITS
        if f.kind == FieldKind.ENUM:
            assert max(f.enum) < 1 << f.width
    opcode = entry.fields[0]
    assert (opcode.kind, opcode.lsb, opcode.width) == (FieldKind.OPCODE, 56, 8)


@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_is_self_consistent(entry):
    assert entry.semantics and "\n" not in entry.semantics
    # the syntax names only things the entry has
    roles = {r for r in ("dest", "a", "b") if getattr(entry, f"{r}_kinds") is not None}
    field_names = {f.name for f in entry.fields}
    for slot in entry.syntax:
        assert slot in roles or slot in field_names or slot == "shift", slot
    for name in entry.keywords:
        f = entry.field(name)
        assert f is not None and f.kind in (FieldKind.UINT, FieldKind.BOOL, FieldKind.ENUM)
    if entry.suffix:
        assert entry.field(entry.suffix).kind == FieldKind.ENUM
    # every value field is reachable from the text, else the disassembler could not print it
    text_fields = set(entry.syntax) | set(entry.keywords) | ({entry.suffix} if entry.suffix else set())
    if "shift" in entry.syntax:
        text_fields |= {"amount", "indirect"}
    if "amount" in entry.syntax:
        text_fields.add("indirect")
    for f in entry.fields:
        if f.kind not in (FieldKind.OPCODE, FieldKind.PORT_A, FieldKind.PORT_B, FieldKind.SWAP,
                          FieldKind.DEST, FieldKind.A, FieldKind.B):
            assert f.name in text_fields, f"{entry.mnemonic}: {f.name} has no assembly syntax"
    for role in roles:
        if getattr(entry, f"{role}_kinds") != {OperandKind.NONE}:  # a role that can only be absent has no text
            assert role in entry.syntax
    # defer limits are the field's range
    defer = entry.field("defer")
    assert entry.max_defer == (defer.max_value if defer else 0)
    # ported entries have both roles; the pair of ports and a swap bit
    if entry.ported:
        assert entry.a_kinds is not None and entry.b_kinds is not None
        assert entry.field("swap") is not None and entry.field("port_b") is not None
    # destinations are writable, sources readable
    if entry.dest_kinds:
        assert not entry.dest_kinds & {OperandKind.IMM, OperandKind.XFER_IN}
    for kinds in (entry.a_kinds, entry.b_kinds):
        if kinds:
            assert OperandKind.XFER_OUT not in kinds


@pytest.mark.parametrize("entry", ENTRIES)
def test_side_effect_flags_agree_with_the_semantics_line(entry):
    sem = entry.semantics
    assert entry.sets_cc == (("CC =" in sem or "CC and prev as" in sem or "Z, N set" in sem) and "untouched" not in sem)
    assert entry.sets_prev == ("prev =" in sem or "CC and prev as" in sem)
    assert entry.reads_prev == ("prev &" in sem)
    assert entry.reads_cc == (entry.op in (Op.ADDC, Op.SUBC, Op.ALU_SHF, Op.BR))
    assert entry.is_branch == (entry.max_defer > 0)


def test_branch_defer_slots_match_the_hardware_model():
    assert BY_OP[Op.BR].max_defer == 2 and BY_OP[Op.BR_BSET].max_defer == 2 and BY_OP[Op.RTN].max_defer == 3


def test_every_alu_op_has_an_alu_entry():
    assert {e.alu for e in TABLE if e.alu is not None} == set(AluOp)
    shf = BY_OP[Op.ALU_SHF].field("alu")
    assert shf.enum is AluOp


def test_enum_docs_complete():
    assert set(COND_TESTS) == set(Cond)
    assert set(CSR_DOCS) == set(Csr)
    assert set(MUL_STEPS_NEEDED) == set(MulStep)


def test_immed_width_default_filled():
    from nfpjit.isa import Gpr, Bank, Width

    assert Instruction(Op.IMMED, dest=Gpr(Bank.A, 0), imm=1).width == Width.WORD
    assert Instruction(Op.ADD).width is None


def _immed_oracle(old: int, instr) -> int:
    """IMMED as its semantics line states it, written out independently of the encoder."""
    x = instr.imm << 8 * instr.byte
    if instr.invert:
        x = ~x & 0xFFFFFFFF
    return {0: x, 1: (old & 0xFFFF0000) | (x & 0xFFFF), 2: (x & 0xFFFF0000) | (old & 0xFFFF)}[int(instr.width)]


def _one_immed_possible(c: int) -> bool:
    return any(((imm << 8 * byte) ^ (0xFFFFFFFF if inv else 0)) & 0xFFFFFFFF == c
               for imm in {c & 0xFFFF, (c >> 8) & 0xFFFF, c >> 16, ~c & 0xFFFF, (~c >> 8) & 0xFFFF, (~c >> 16) & 0xFFFF}
               for byte in (0, 1, 2) for inv in (False, True))


@settings(max_examples=300)
@given(st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(-(1 << 31), -1),
                 st.builds(lambda v, s: (v << s) & 0xFFFFFFFF, st.integers(0, 0xFFFF), st.sampled_from([0, 8, 16])),
                 st.builds(lambda v, s: ~(v << s) & 0xFFFFFFFF, st.integers(0, 0xFFFF), st.sampled_from([0, 8, 16]))))
def test_load_const_takes_at_most_two_immed(c):
    from nfpjit.isa import Bank, Gpr, encode, load_const

    want = c & 0xFFFFFFFF
    seq = load_const(Gpr(Bank.A, 1), c)
    assert 1 <= len(seq) <= 2
    assert len(seq) == (1 if _one_immed_possible(want) else 2)
    value = 0xDEADBEEF
    for instr in seq:
        encode(instr)
        value = _immed_oracle(value, instr)
    assert value == want


def test_load_const_rejects_wide_values():
    from nfpjit.isa import Bank, Gpr, IllegalOperands, load_const

    for bad in (1 << 32, -(1 << 31) - 1, True, "1"):
        with pytest.raises(IllegalOperands):
            load_const(Gpr(Bank.A, 1), bad)


def test_manual_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_isa_manual.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_manual_mentions_every_instruction():
    text = (ROOT / "isa" / "README.md").read_text()
    for e in TABLE:
        assert f"#### `{e.mnemonic}`" in text
        assert e.semantics.replace("|", "\\|") in text

"""The both-banks destination ``ab<n>``: encoding, assembly round trip, rejection as a source, simulation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.isa import Bank, Gpr, GprBoth, Imm, Instruction, Op, decode, encode
from nfpjit.isa.asm import assemble, parse
from nfpjit.isa.disasm import format_instruction
from nfpjit.isa.operands import IllegalOperands, OperandKind, operand_code, operand_from_code
from nfpjit.isa.sim import simulate
from nfpjit.isa.table import AluOp, ShiftKind, Width


def test_codes_follow_the_documented_group():
    for n in range(32):
        code = operand_code(GprBoth(n))
        assert code >> 5 == 0b01101 and code & 31 == n
        assert operand_from_code(code) == GprBoth(n)
    assert GprBoth(7).kind == OperandKind.GPR_BOTH
    assert GprBoth(7).banks == (Gpr(Bank.A, 7), Gpr(Bank.B, 7))
    with pytest.raises(IllegalOperands):
        GprBoth(32)


@settings(max_examples=100)
@given(st.integers(0, 31), st.integers(0, 31), st.integers(0, 255))
def test_alu_into_both_round_trips(n, src, imm):
    ins = Instruction(Op.ADD, dest=GprBoth(n), a=Gpr(Bank.B, src), b=Imm(imm))
    assert decode(encode(ins)) == ins
    text = format_instruction(ins)
    assert text.startswith(f"add ab{n},")
    assert parse(text) == ins


@pytest.mark.parametrize("text", ["add a0, ab1, 3", "mov a0, ab1", "br_bset ab1, 3, 0", "halt ab0"])
def test_both_banks_is_not_a_source(text):
    with pytest.raises(IllegalOperands, match="ab1|ab0|both-bank"):
        parse(text)


def test_simulated_write_lands_in_both_banks_in_one_cycle():
    # write ab3 once, then read a3 and b3 on the two ports of one add: 2*v proves both copies exist
    prog = [
        Instruction(Op.IMMED, dest=GprBoth(3), imm=0x1234),
        Instruction(Op.ADD, dest=Gpr(Bank.A, 0), a=Gpr(Bank.A, 3), b=Gpr(Bank.B, 3)),
        Instruction(Op.HALT, b=Imm(2)),
    ]
    one = simulate(prog, b"")
    assert one.fault is None and one.r0 & 0xFFFFFFFF == 2 * 0x1234
    two_writes = simulate([Instruction(Op.IMMED, dest=Gpr(Bank.A, 3), imm=0x1234),
                           Instruction(Op.IMMED, dest=Gpr(Bank.B, 3), imm=0x1234), *prog[1:]], b"")
    assert one.insns == two_writes.insns - 1 and one.cycles < two_writes.cycles


def test_partial_writes_merge_into_each_bank():
    # a5 and b5 start different; immed width=hi and ld_field without clear keep each bank's own low bits
    prog = assemble("""
        immed a5, 0x1111
        immed b5, 0x2222
        immed ab5, 0xabcd, byte=2, width=hi
        mov a0, a5
        mov a1, b5
        halt 2
    """)
    res = simulate(prog, b"")
    assert res.fault is None
    assert res.r0 & 0xFFFFFFFF == 0xABCD1111 and res.r0 >> 32 == 0xABCD2222
    prog = assemble("""
        immed a5, 0x1111
        immed b5, 0x2222
        immed a6, 0x7788
        ld_field ab5, 0b0010, a6, 0
        mov a0, a5
        mov a1, b5
        halt 2
    """)
    res = simulate(prog, b"")
    assert res.r0 & 0xFFFFFFFF == 0x7711 and res.r0 >> 32 == 0x7722


def test_alu_shf_and_dbl_shf_accept_both():
    ins = Instruction(Op.ALU_SHF, dest=GprBoth(4), a=None, b=Gpr(Bank.A, 1), alu=AluOp.MOV,
                      shift=ShiftKind.SHL, amount=3)
    assert decode(encode(ins)) == ins
    ins = Instruction(Op.DBL_SHF, dest=GprBoth(4), a=Gpr(Bank.A, 1), b=Gpr(Bank.B, 2), amount=3)
    assert decode(encode(ins)) == ins
    ins = Instruction(Op.IMMED, dest=GprBoth(9), imm=5, width=Width.LO)
    assert decode(encode(ins)) == ins

"""``const-fold``: golden before/after listings, branch decisions, and the differential check."""

from __future__ import annotations

import pytest

from nfpjit.isa.operands import Bank, Gpr, GprBoth, Imm, NoDest
from nfpjit.isa.table import Cond, Instruction, Op
from nfpjit.jit.mir import MFunction, MInstr, MProgram
from nfpjit.passes.const_fold import ConstFold, branch_outcome
from nfpjit.passes.dce import Dce

from test_pass_machine import differential_case, golden_case

CASES = {
    # R2 = R10 - 2 for a helper's key: immed + sub -> one immed
    "const_fold_frame_pointer": (
        """.type xdp
.map counts hash key=2 value=8 entries=4
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    ldxb r3, [r1+12]
    mov r2, r10
    add r2, -2
    stxh [r10-2], r3
    lddw r1, map:counts
    call 1
out:
    mov r0, 2
    exit
""",
        "copy-prop,dce",
        ["immed ab4, 0x", "reloc routine_addr fw_map_lookup"],
        ["sub ab4, a4, 2"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, before, checks, forbidden = CASES[name]
    golden_case(golden, name, source, before, "const-fold", checks, forbidden)


def test_branches_on_known_flags_are_decided():
    a2 = Gpr(Bank.A, 2)
    body = [
        MInstr(Instruction(Op.IMMED, dest=GprBoth(2), imm=5)),
        MInstr(Instruction(Op.SUB, dest=NoDest(), a=a2, b=Imm(5))),
        MInstr(Instruction(Op.BR, cond=Cond.NE), target="other"),     # never taken: 5 - 5 == 0
        MInstr(Instruction(Op.BR_BSET, a=a2, bit=2), target="yes"),   # always taken: bit 2 of 5
        MInstr(Instruction(Op.HALT, b=Imm(1))),
        MInstr(label="other"),
        MInstr(Instruction(Op.HALT, b=Imm(2))),
        MInstr(label="yes"),
        MInstr(Instruction(Op.HALT, b=Imm(3))),
    ]
    prog = MProgram("p", [MFunction("f", 0, body)])
    assert ConstFold().run(prog)
    ops = [(m.instr.op, m.instr.cond) for m in prog.entries() if m.instr is not None and m.instr.entry.is_branch]
    assert ops == [(Op.BR, Cond.ALWAYS)]
    Dce().run(prog)
    assert [m.instr.op for m in prog.entries() if m.instr is not None] == [Op.HALT]
    assert prog.functions[0].body[-1].instr.b == Imm(3)


def test_branch_outcome_needs_known_inputs():
    assert branch_outcome(Instruction(Op.BR, cond=Cond.EQ), {}) is None
    assert branch_outcome(Instruction(Op.BR_BCLR, a=Gpr(Bank.A, 3), bit=0), {3: (1, 0)}) is True


def test_differential_generated():
    differential_case("const-fold", examples=25, seed=13)


@pytest.mark.slow
def test_differential_corpus():
    differential_case("const-fold", examples=0, corpus=True)

"""``dce``: golden before/after listings and the differential check (-O2 with and without it)."""

from __future__ import annotations

import pytest

from nfpjit.isa.operands import Bank, Gpr, GprBoth, Imm, LMem, NoDest
from nfpjit.isa.table import Cond, Csr, Instruction, Op
from nfpjit.jit.mir import MFunction, MInstr, MProgram
from nfpjit.passes.dce import Dce

from test_pass_machine import differential_case, golden_case

CASES = {
    # a copy copy-prop made dead and a jump to the next instruction (the packet pointers' high words,
    # the case the name recalls, the lowering's zext-elim no longer emits; dce would remove them)
    "dce_dead_high_words": (
        """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    ldxb r0, [r1+12]
    ja next
next:
    and r0, 3
    exit
out:
    mov r0, 1
    exit
""",
        "copy-prop",
        ["csr_rd ab4, pkt_addr", "add ab4, a4, b22", "csr_rd ab2, pkt_addr", "add ab6, a2, 14", "br.hi L",
         "and ab0, a0, 3"],
        ["immed ab5", "immed ab3", "mov ab6, b2", "br.always"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, before, checks, forbidden = CASES[name]
    golden_case(golden, name, source, before, "dce", checks, forbidden)


def _prog(*entries):
    return MProgram("p", [MFunction("f", 0, list(entries))])


def test_unreachable_code_idle_nops_and_jump_threading():
    g = Gpr(Bank.A, 2)
    prog = _prog(
        MInstr(Instruction(Op.BR, cond=Cond.EQ), target="hop"),
        MInstr(Instruction(Op.NOP)),                                  # idle
        MInstr(Instruction(Op.IMMED, dest=GprBoth(0), imm=1)),
        MInstr(Instruction(Op.BR, cond=Cond.ALWAYS), target="end"),
        MInstr(Instruction(Op.IMMED, dest=GprBoth(0), imm=7)),        # unreachable
        MInstr(label="hop"),
        MInstr(Instruction(Op.BR, cond=Cond.ALWAYS), target="end"),   # br.eq goes straight to end
        MInstr(label="end"),
        MInstr(Instruction(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_0, b=Imm(64))),
        MInstr(Instruction(Op.NOP)),
        MInstr(Instruction(Op.NOP)),
        MInstr(Instruction(Op.NOP)),                                  # the LM pointer needs these
        MInstr(Instruction(Op.MOV, dest=GprBoth(4), b=LMem(0, 1))),
        MInstr(Instruction(Op.MOV, dest=NoDest(), b=g)),              # dead: flags read by nobody
        MInstr(Instruction(Op.HALT, b=Gpr(Bank.B, 4))),
    )
    assert Dce().run(prog)
    ops = [m.instr.op for m in prog.entries() if m.instr is not None]
    assert ops == [Op.BR, Op.IMMED, Op.CSR_WR, Op.NOP, Op.NOP, Op.NOP, Op.MOV, Op.HALT], prog.listing()
    assert prog.functions[0].body[0].target == "end"
    prog.verify()
    assert not Dce().run(prog)


def test_differential_generated():
    differential_case("dce", examples=25, seed=11)


@pytest.mark.slow
def test_differential_corpus():
    differential_case("dce", examples=0, corpus=True)

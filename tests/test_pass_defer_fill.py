"""``defer-fill``: golden before/after listings (in address order), the scheduler's rules, differential checks."""

from __future__ import annotations

import pytest

from nfpjit.isa.operands import Bank, Gpr, GprBoth, Imm, LMem, NoDest
from nfpjit.isa.table import Cond, Csr, Instruction, Op
from nfpjit.jit.mir import MFunction, MInstr, MProgram
from nfpjit.passes.defer_fill import DeferFill
from nfpjit.passes.pipelines import MACHINE

from test_pass_machine import differential_case, golden_case

BEFORE = MACHINE.replace(",defer-fill", "")

CASES = {
    # the key store's LM pointer write moves up; the wait for the packet cache's early fill and the
    # byte read from it fill the pointer's wait; the map id goes
    # into the call's second defer slot (the load_addr of the return address stays the last)
    "defer_fill_lm_wait": (
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
        ["csr_wr active_lm_addr_0, 78", "ctx_wait 1", "mov ab23, *l$index0[8]",
         "br.always 0, defer=2    ; reloc routine_addr fw_map_lookup", "reloc map_id counts", "load_addr a30"],
        ["nop"],
    ),
    # an unconditional jump takes the stack store before it into its defer slot
    "defer_fill_slots": (
        """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    ldxb r4, [r1+12]
    jeq r4, 1, one
    mov r0, 2
    mov r5, 7
    stxw [r10-4], r5
    ja done
one:
    mov r0, 1
done:
    exit
out:
    mov r0, 1
    exit
""",
        ["br.always L{t}, defer=1", "mov *l$index0[8], 7"],
        [],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, checks, forbidden = CASES[name]
    golden_case(golden, name, source, BEFORE, "defer-fill", checks, forbidden, order=True)


def test_never_moves_a_pointer_write_or_a_flag_the_branch_reads():
    a2, b3 = Gpr(Bank.A, 2), Gpr(Bank.B, 3)
    body = [
        MInstr(Instruction(Op.IMMED, dest=GprBoth(4), imm=1)),           # independent: may go into a slot
        MInstr(Instruction(Op.SUB, dest=NoDest(), a=a2, b=b3)),         # sets the flags br.eq reads
        MInstr(Instruction(Op.BR, cond=Cond.EQ), target="x"),
        MInstr(Instruction(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_1, b=Imm(64))),
        MInstr(Instruction(Op.NOP)), MInstr(Instruction(Op.NOP)), MInstr(Instruction(Op.NOP)),
        MInstr(Instruction(Op.MOV, dest=GprBoth(6), b=LMem(1, 0))),
        MInstr(label="x"),
        MInstr(Instruction(Op.HALT, b=Gpr(Bank.B, 4))),
    ]
    prog = MProgram("p", [MFunction("f", 0, body)])
    DeferFill().run(prog)
    prog.verify()
    instrs = [m.instr for m in prog.entries() if m.instr is not None]
    ops = [i.op for i in instrs]
    br = ops.index(Op.BR)
    assert ops.index(Op.SUB) < br
    wr, use = ops.index(Op.CSR_WR), ops.index(Op.MOV)
    assert use - wr >= 4                                    # three instructions between write and use
    assert instrs[br].defer <= 2


def test_differential_generated():
    differential_case("defer-fill", examples=25, seed=19)


@pytest.mark.slow
def test_differential_corpus():
    differential_case("defer-fill", examples=0, corpus=True)


def test_bpf_to_bpf_calls_fill_their_slots():
    """A BPF-to-BPF call's branch takes the instructions before it into its slots; the result still agrees."""
    from nfpjit.driver import compile
    from nfpjit.ebpf.asm import assemble

    from test_jit_differential import CRAFTED, differential

    program = assemble(""".type xdp
    mov r6, 5
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 2
    jgt r3, r2, out
    ldxb r1, [r1+0]
    call twice
    add r0, r6
    exit
out:
    mov r0, 1
    exit
twice:
    mov r0, r1
    add r0, r1
    exit
""")
    result = compile(program, profile="permissive", verify_each=True)
    mprog = result.mprogram
    callee_labels = set(mprog.functions[1].labels())
    calls = [m for m in mprog.functions[0].body if m.instr is not None and m.target in callee_labels]
    assert calls and calls[0].instr.defer >= 1, mprog.listing()
    assert not differential(program, result.image, CRAFTED[:20])

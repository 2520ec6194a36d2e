"""The simulator's adjust_head firmware routine keeps the headroom limits the kernel (and the interpreter) have."""

from __future__ import annotations

import pytest

from nfpjit.bits import MASK32, MASK64
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.isa import Bank, Cond, Gpr, Imm, Instruction, Op
from nfpjit.isa.encoding import load_const
from nfpjit.isa.sim import simulate
from nfpjit.isa.sim.firmware import Routine

PACKET = bytes(range(60))


@pytest.mark.parametrize("delta", [-256, -217, -216, -215, -40, -1, 0, 1, 45, 46, 47, 60])
def test_adjust_head_limits_match_the_interpreter(delta):
    want = run(assemble(f"mov r2, {delta}\ncall 44\nexit\n"), PACKET)
    code = [*load_const(Gpr(Bank.A, 4), delta & MASK32),
            Instruction(Op.BR, cond=Cond.ALWAYS, target=int(Routine.ADJUST_HEAD), defer=1),
            Instruction(Op.LOAD_ADDR, dest=Gpr(Bank.A, 30), target=0),
            Instruction(Op.HALT, b=Imm(2))]
    code[-2] = Instruction(Op.LOAD_ADDR, dest=Gpr(Bank.A, 30), target=len(code) - 1)
    got = simulate(code, PACKET)
    assert got.fault is None
    assert got.r0 == want.r0 & MASK64
    assert got.packet == want.packet

"""The Emitter: appends NFP-32 instructions to a machine function, with the JIT's idioms.

Handlers speak in values, not ports: a source is a :class:`~nfpjit.jit.regs.G`
(a GPR kept in both banks), a Python ``int`` (a 32-bit constant) or an
explicit ISA operand (``Xfer``, ``LMem``, a one-bank ``Gpr`` ...).  The
Emitter places the two sources of an ALU instruction on the A and B ports
(the two-source rule), turns constants over 255 into ``immed`` loads into
scratch registers, and writes every ``G`` destination through ``ab<n>`` so
that both banks stay equal.  A destination of None discards the result
(``--``, for compares).

Calling the Emitter with an :class:`~nfpjit.isa.table.Instruction` appends it
as is, tagged with the eBPF pc being lowered.
"""

from __future__ import annotations

from typing import Union

from nfpjit.bits import MASK32
from nfpjit.isa.encoding import load_const
from nfpjit.isa.operands import MAX_ALU_IMM, Gpr, GprBoth, Imm, NoDest, Operand, OperandKind, kind_of
from nfpjit.isa.table import AluOp, Cond, Instruction, MulStep, MUL_STEPS_NEEDED, Op, ShiftKind

from .mir import MInstr, MReloc
from .regs import G, ScratchPool

Src = Union[G, int, Operand]
Dest = Union[G, Operand, None]

_ALU_OPS = {AluOp.ADD: Op.ADD, AluOp.ADDC: Op.ADDC, AluOp.SUB: Op.SUB, AluOp.SUBC: Op.SUBC, AluOp.AND: Op.AND,
            AluOp.OR: Op.OR, AluOp.XOR: Op.XOR, AluOp.ANDNOT: Op.ANDNOT, AluOp.NOT: Op.NOT, AluOp.MOV: Op.MOV}
_UNARY = (AluOp.NOT, AluOp.MOV)


def dest_operand(dest: Dest) -> Operand:
    if dest is None:
        return NoDest()
    if isinstance(dest, G):
        return dest.both
    return dest


class Emitter:
    """Appends :class:`MInstr` entries to ``body`` (the current function), tagged with ``pc``."""

    def __init__(self, scratch: ScratchPool | None = None):
        self.body: list[MInstr] = []
        self.pc: int | None = None
        self.scratch = scratch or ScratchPool()
        self._labels = 0

    # -- raw ----------------------------------------------------------------------

    def __call__(self, instr: Instruction | MInstr, *, target: str | None = None, reloc: MReloc | None = None,
                 comment: str = "") -> None:
        if isinstance(instr, MInstr):
            self.body.append(instr)
        else:
            self.body.append(MInstr(instr, target=target, pc=self.pc, reloc=reloc, comment=comment))

    def label(self, name: str) -> None:
        self.body.append(MInstr(label=name))

    def new_label(self, hint: str = "l") -> str:
        """A label name unique in the program (``.<hint><n>``; eBPF pc labels are ``L<pc>``)."""
        self._labels += 1
        return f".{hint}{self._labels}"

    # -- operands -----------------------------------------------------------------

    def tmp(self) -> G:
        return self.scratch.take()

    def reg(self, value: Src) -> G:
        """``value`` in a GPR pair: a G as is, a constant or other operand copied into a scratch register."""
        if isinstance(value, G):
            return value
        t = self.tmp()
        self.mov(t, value)
        return t

    def const(self, dest: Dest, value: int) -> None:
        """dest = 32-bit constant (one or two immed)."""
        value &= MASK32
        for ins in load_const(dest_operand(dest), value):
            self(ins)

    def _operand(self, value: Src) -> Operand | G:
        if isinstance(value, bool):
            raise TypeError("a boolean is not an operand")
        if isinstance(value, int):
            value &= MASK32
            if value <= MAX_ALU_IMM:
                return Imm(value)
            return self.reg(value)
        return value

    def sources(self, a: Src | None, b: Src) -> tuple[Operand | None, Operand]:
        """Logical sources (a, b) as operands that satisfy the two-source rule."""
        oa = None if a is None else self._operand(a)
        ob = self._operand(b)
        if oa is None:
            return None, ob.b if isinstance(ob, G) else ob
        if isinstance(oa, G) and isinstance(ob, G):
            return oa.a, ob.b
        if isinstance(oa, G):
            return (oa.b if kind_of(ob) == OperandKind.GPR_A else oa.a), ob
        if isinstance(ob, G):
            return oa, (ob.a if kind_of(oa) == OperandKind.GPR_B else ob.b)
        if kind_of(oa) == kind_of(ob):
            # two constants, two transfer registers ...: copy a into a register first
            g = self.reg(oa)
            return (g.b if kind_of(ob) == OperandKind.GPR_A else g.a), ob
        return oa, ob

    # -- ALU ------------------------------------------------------------------------

    def alu(self, op: AluOp, dest: Dest, a: Src | None, b: Src) -> None:
        """dest = a <op> b (unary ops ignore a); sets the condition codes and prev."""
        if op in _UNARY:
            a = None
        pa, pb = self.sources(a, b)
        self(Instruction(_ALU_OPS[op], dest=dest_operand(dest), a=pa, b=pb))

    def mov(self, dest: Dest, src: Src) -> None:
        """dest = src; a constant becomes immed (which leaves the condition codes and prev alone)."""
        if isinstance(src, int) and not isinstance(src, bool):
            if dest is None:
                self.alu(AluOp.MOV, None, None, src)
            else:
                self.const(dest, src)
            return
        if isinstance(src, G) and isinstance(dest, G) and src == dest:
            return
        self.alu(AluOp.MOV, dest, None, src)

    def shf(self, dest: Dest, src: Src, shift: ShiftKind, amount: int | None, op: AluOp = AluOp.MOV,
            a: Src | None = None) -> None:
        """dest = a <op> shift(src, amount); amount None = indirect (prev & 31)."""
        if op in _UNARY:
            a = None
        pa, pb = self.sources(a, src)
        if isinstance(pb, Imm):
            # the shifted operand must be a register: load the constant
            g = self.reg(pb.value)
            pb = g.a if kind_of(pa) == OperandKind.GPR_B else g.b
        self(Instruction(Op.ALU_SHF, dest=dest_operand(dest), a=pa, b=pb, alu=op, shift=shift,
                         amount=0 if amount is None else amount, indirect=amount is None))

    def dbl_shf(self, dest: Dest, high: Src, low: Src, amount: int | None) -> None:
        """dest = low32((high:low) >> amount); amount None = indirect (prev & 31)."""
        pa, pb = self.sources(high, low)
        self(Instruction(Op.DBL_SHF, dest=dest_operand(dest), a=pa, b=pb,
                         amount=0 if amount is None else amount, indirect=amount is None))

    def set_prev(self, value: Src) -> None:
        """prev = value (for an indirect shift amount), result discarded."""
        self.alu(AluOp.MOV, None, None, value)

    def ld_field(self, dest: G | Gpr | GprBoth, mask: int, src: Src, amount: int, clear: bool = False) -> None:
        """Bytes of dest selected by mask = bytes of rotr(src, amount); others kept (or zeroed with clear)."""
        _, pb = self.sources(None, src)
        self(Instruction(Op.LD_FIELD, dest=dest_operand(dest), b=pb, mask=mask, amount=amount, clear=clear))

    # -- multiply ------------------------------------------------------------------------

    def mul(self, x: Src, y: Src, mode: MulStep = MulStep.M32X32) -> None:
        """Start the product x * y and run its steps; read it with :meth:`mul_lo` / :meth:`mul_hi`."""
        pa, pb = self.sources(x, y)
        self(Instruction(Op.MUL_START, a=pa, b=pb))
        for _ in range(MUL_STEPS_NEEDED[mode]):
            self(Instruction(Op.MUL_STEP, mul=mode))

    def mul_lo(self, dest: Dest) -> None:
        self(Instruction(Op.MUL_LAST, dest=dest_operand(dest)))

    def mul_hi(self, dest: Dest) -> None:
        self(Instruction(Op.MUL_LAST2, dest=dest_operand(dest)))

    # -- control ----------------------------------------------------------------------

    def br(self, cond: Cond, label: str, defer: int = 0) -> None:
        self(Instruction(Op.BR, cond=cond, defer=defer), target=label)

    def jump(self, label: str) -> None:
        self.br(Cond.ALWAYS, label)

    def br_bit(self, set_: bool, src: G | Operand, bit: int, label: str) -> None:
        operand = src.a if isinstance(src, G) else src
        self(Instruction(Op.BR_BSET if set_ else Op.BR_BCLR, a=operand, bit=bit), target=label)

    def halt(self, src: Src) -> None:
        _, pb = self.sources(None, src)
        self(Instruction(Op.HALT, b=pb))

    def nop(self) -> None:
        self(Instruction(Op.NOP))


__all__ = ["Emitter", "Src", "Dest", "dest_operand"]

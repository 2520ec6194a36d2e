"""``atomic-imm``: an atomic add of a small constant becomes a posted command with the addend inside it.

``lock *(u64 *)(r0 + 0) += 1`` (``__sync_fetch_and_add`` whose result nobody reads) is lowered
as a ``mem_add64`` that takes its addend from two transfer registers, and a command that reads
transfer registers must be waited for (``ctx_swap``, an EMEM round trip of about 250 cycles)
before the registers may be written again.  When the addend is a constant that fits 16 bits,
``mem_addi64``/``mem_addi32`` carry it in the command word itself: nothing is left to protect, so
the command is posted (neither ``ctx_swap`` nor a signal) and the program goes on at once — as the
kernel's NFP JIT does with its ``add_imm`` command for additions it can prove 16-bit::

    immed $out1, 0x0                                (nothing: dce drops the dead $out writes)
    mov $out0, 1                              ->
    mem_add64.emem $out0, a1, b0, 2, ctx_swap       mem_addi64.emem a1, b0, 0x1

The memory unit applies posted commands in the order they arrive, so the program's own later
accesses to the same word, the host's map reads and the next packet's lookup all see the sum.
Only adds whose addend is known on every path to the command (a constant in the transfer
registers, from ``immed``/``mov`` of a known value in the same block) and whose command is
otherwise plain (no signal) are rewritten; ``fetch`` forms return the old value and keep their
transfer registers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.bits import MASK32
from nfpjit.isa.operands import Xfer, XferSide
from nfpjit.isa.table import Instruction, Op, Width
from nfpjit.passes.manager import Pass

from . import machine as M

_POSTED = {Op.MEM_ADD32: (Op.MEM_ADDI32, 1), Op.MEM_ADD64: (Op.MEM_ADDI64, 2)}
IMM_MAX = 0xFFFF


def _written_value(ins: Instruction, state: dict) -> int | None:
    """The 32-bit value an ``immed``/``mov`` writes, when known."""
    if ins.op == Op.IMMED:
        if ins.width != Width.WORD:
            return None
        v = ins.imm << 8 * ins.byte
        return (~v if ins.invert else v) & MASK32
    if ins.op == Op.MOV:
        return M.operand_value(state, ins.b)
    return None


@dataclass(frozen=True)
class AtomicImm(Pass):
    """Posted ``mem_addi32/64`` for atomic adds of constants up to 0xffff."""

    name: ClassVar[str] = "atomic-imm"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "atomic adds of small constants as posted commands with the addend inside (no wait)"

    def run(self, unit) -> bool:
        changed = False
        for fa in M.analyses(unit):
            fn, cfg = fa.fn, fa.cfg
            body = cfg.body
            edits = {}
            for blk in cfg.blocks:
                state = fa.bits[blk.index]
                if state is None:
                    continue
                state = dict(state)
                out: dict[int, int | None] = {}      # $out register -> value written in this block
                for i in blk.idx:
                    m = body[i]
                    ins = m.instr
                    new = self._posted(ins, out) if m.reloc is None else None
                    if new is not None:
                        edits[i] = replace(m, instr=new)
                    du = M.def_use(ins)
                    if ins.dest.__class__ is Xfer and ins.dest.side == XferSide.OUT:
                        out[ins.dest.index] = _written_value(ins, state)
                    elif du.defs >> M.XOUT0 & 0xFFFFFFFF:
                        for k in range(32):
                            if du.defs >> (M.XOUT0 + k) & 1:
                                out[k] = None
                    M.step(state, m, du)
            changed |= M.apply_edits(fn, edits)
        return changed

    @staticmethod
    def _posted(ins: Instruction, out: dict) -> Instruction | None:
        target = _POSTED.get(ins.op)
        if target is None or ins.signal:
            return None
        op, words = target
        first = ins.xfer.index
        values = [out.get(first + k) for k in range(words)]
        if any(v is None for v in values):
            return None
        addend = sum(v << 32 * k for k, v in enumerate(values))
        if addend > IMM_MAX:
            return None
        return Instruction(op, mem=ins.mem, a=ins.a, b=ins.b, imm=addend)

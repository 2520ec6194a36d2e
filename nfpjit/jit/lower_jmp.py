"""Lowering of eBPF jumps (JMP and JMP32, every condition, ja and gotol) and of the program's exit.

Comparisons become ``sub`` (or ``and`` for jset) with the result discarded
and a conditional ``br`` on the condition codes: ``sub`` sets C = no borrow,
so unsigned a >= b is ``hs`` and a < b is ``lo``; signed comparisons read
N and V.  64-bit comparisons subtract the low words and then the high words
with the borrow (``subc``); that leaves N, V and C right for the whole 64-bit
difference but Z only for the high words, so a > b and a <= b are computed
as b < a and b >= a (against a constant k: as a >= k + 1 and a < k + 1),
and equality compares both XORs.  Subtracting a small negative constant is
an add of its magnitude, which sets C, N and V the same way.

With the ``subreg`` pass, a 64-bit compare whose operands' high words are proven equal is one
32-bit ``sub`` (signed conditions become unsigned: equal high words leave the order to the low
words) or, for ``jset``, one ``and``; a NULL check of a map lookup result is one
``br_bclr``/``br_bset`` on a bit of the value's high word (its EMEM table bits, never 0).

Exit from the entry function ends the program with ``halt``: for XDP the
action is R0's low word, and a value above XDP_REDIRECT (4) halts with
XDP_ABORTED (0) as the real NFP does (at -O1 and above the check is left out
where the analysis proves R0 in range); R0 itself stays in a1:a0, so the
simulator still reports the program's return value (raw-context programs,
analysed with ``raw_context``, halt with R0's low word unchecked).  Exit from a
BPF-to-BPF callee is a return, lowered by ``lower_call`` (its
``lower_return(ctx, pc, insn)``).
"""

from __future__ import annotations

from nfpjit.bits import MASK32, MASK64, u64
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import InsnClass, JmpOp, ProgType, Source, XdpAction
from nfpjit.isa.table import AluOp, Cond

from .lower import LowerCtx
from .regs import hi, lo

_MAX_XDP_ACTION = max(XdpAction)

# condition on the flags of (dst - src), and whether the operands must be swapped for 64-bit compares
_UNSIGNED = {JmpOp.JGE: Cond.HS, JmpOp.JLT: Cond.LO, JmpOp.JGT: Cond.HI, JmpOp.JLE: Cond.LS}
_SIGNED = {JmpOp.JSGE: Cond.GE, JmpOp.JSLT: Cond.LT, JmpOp.JSGT: Cond.GT, JmpOp.JSLE: Cond.LE}
# 64-bit: Z is not valid for the whole difference; a > b == b < a, a <= b == b >= a
_SWAPPED_64 = {JmpOp.JGT: Cond.LO, JmpOp.JLE: Cond.HS, JmpOp.JSGT: Cond.LT, JmpOp.JSLE: Cond.GE}


def _operands(insn: Insn, wide: bool):
    """(lo, hi) of the second operand: G registers or constants (hi None for 32-bit compares)."""
    if insn.source == Source.X:
        return lo(insn.src), (hi(insn.src) if wide else None)
    k = u64(insn.imm) if wide else insn.imm & MASK32
    return k & MASK32, (k >> 32 if wide else None)


def _cond_jump(ctx: LowerCtx, pc: int, insn: Insn) -> None:
    e = ctx.emit
    wide = insn.cls == InsnClass.JMP
    op = insn.jmp_op
    target = ctx.label_for(insn.jump_target(pc))
    facts = ctx.facts
    if ctx.enabled("branch-fold") and facts is not None and facts.branch_taken is not None:
        if facts.branch_taken:
            e.jump(target)
        return
    dlo, dhi = lo(insn.dst), hi(insn.dst)
    slo, shi = _operands(insn, wide)
    plan = ctx.plan("subreg") if ctx.enabled("subreg") else None
    if wide and plan is not None and pc in plan.jmp:
        _cmp32_of_64(ctx, op, dlo, slo, target)
        return
    if wide and plan is not None and pc in plan.null_bit:
        # a lookup result is NULL exactly when this bit of its high word (the table's bits 39..32) is clear
        e.br_bit(op == JmpOp.JNE, dhi, plan.null_bit[pc], target)
        return
    if not wide:
        if op == JmpOp.JSET:
            e.alu(AluOp.AND, None, dlo, slo)
            e.br(Cond.NE, target)
        elif op in (JmpOp.JEQ, JmpOp.JNE):
            e.alu(AluOp.SUB, None, dlo, slo)
            e.br(Cond.EQ if op == JmpOp.JEQ else Cond.NE, target)
        else:
            e.alu(AluOp.SUB, None, dlo, slo)
            e.br(_UNSIGNED.get(op) or _SIGNED[op], target)
        return
    if op in (JmpOp.JEQ, JmpOp.JNE, JmpOp.JSET) and isinstance(shi, int) and shi in (0, MASK32):
        # a sign-extended immediate: its high word is 0 or all ones, which needs no XOR/AND of its own
        cond = Cond.EQ if op == JmpOp.JEQ else Cond.NE
        if op == JmpOp.JSET and shi == 0:
            e.alu(AluOp.AND, None, dlo, slo)
        elif op == JmpOp.JSET:
            t = ctx.tmp()
            e.alu(AluOp.AND, t, dlo, slo)
            e.alu(AluOp.OR, None, t, dhi)
        elif shi == 0 and slo == 0:
            e.alu(AluOp.OR, None, dlo, dhi)
        else:
            t = ctx.tmp()
            e.alu(AluOp.XOR, t, dlo, slo)
            if shi == 0:
                e.alu(AluOp.OR, None, t, dhi)
            else:
                t2 = ctx.tmp()
                e.alu(AluOp.NOT, t2, None, dhi)        # dhi ^ 0xffffffff
                e.alu(AluOp.OR, None, t, t2)
        e.br(cond, target)
        return
    if op in (JmpOp.JEQ, JmpOp.JNE, JmpOp.JSET):
        combine = AluOp.AND if op == JmpOp.JSET else AluOp.XOR
        t1, t2 = ctx.tmp(), ctx.tmp()
        e.alu(combine, t1, dlo, slo)
        e.alu(combine, t2, dhi, shi)
        e.alu(AluOp.OR, None, t1, t2)
        e.br(Cond.EQ if op == JmpOp.JEQ else Cond.NE, target)
        return
    if op in _SWAPPED_64 and isinstance(slo, int):
        # against a constant: d > k is d >= k + 1 and d <= k is d < k + 1, which need no operand swap
        k = (shi << 32) | slo
        top = MASK64 if op in (JmpOp.JGT, JmpOp.JLE) else (1 << 63) - 1
        if k == top:                                 # d > max never holds, d <= max always does
            if op in (JmpOp.JLE, JmpOp.JSLE):
                e.jump(target)
            return
        op = {JmpOp.JGT: JmpOp.JGE, JmpOp.JLE: JmpOp.JLT, JmpOp.JSGT: JmpOp.JSGE, JmpOp.JSLE: JmpOp.JSLT}[op]
        k = (k + 1) & MASK64
        slo, shi = k & MASK32, k >> 32
    if op in _SWAPPED_64:
        e.alu(AluOp.SUB, None, slo, dlo)
        e.alu(AluOp.SUBC, None, shi, dhi)
        e.br(_SWAPPED_64[op], target)
        return
    if isinstance(slo, int) and shi == MASK32 and 0 < (1 << 32) - slo <= 0xFF:
        # d - k for k = -m (m small): d + m sets C, N and V exactly as the subtraction would
        e.alu(AluOp.ADD, None, dlo, (1 << 32) - slo)
        e.alu(AluOp.ADDC, None, dhi, 0)
    else:
        e.alu(AluOp.SUB, None, dlo, slo)
        e.alu(AluOp.SUBC, None, dhi, shi)
    e.br(_UNSIGNED.get(op) or _SIGNED[op], target)


#: a signed 64-bit compare of two values with the same high word is the unsigned compare of their low words
_SIGNED_AS_UNSIGNED = {JmpOp.JSGE: Cond.HS, JmpOp.JSLT: Cond.LO, JmpOp.JSGT: Cond.HI, JmpOp.JSLE: Cond.LS}


def _cmp32_of_64(ctx: LowerCtx, op: JmpOp, dlo, slo, target: str) -> None:
    """A 64-bit compare ``subreg`` proved decided by the low words (equal high words; jset: one is 0)."""
    e = ctx.emit
    if op == JmpOp.JSET:
        e.alu(AluOp.AND, None, dlo, slo)
        e.br(Cond.NE, target)
        return
    if op in (JmpOp.JEQ, JmpOp.JNE):
        cond = Cond.EQ if op == JmpOp.JEQ else Cond.NE
    else:
        cond = _UNSIGNED.get(op) or _SIGNED_AS_UNSIGNED[op]
    if isinstance(slo, int) and slo > 0xFF and 0 < (-slo) & MASK32 <= 0xFF:
        # d - k for k = -m (m small): d + m sets Z and C as the subtraction would (k != 0)
        e.alu(AluOp.ADD, None, dlo, (-slo) & MASK32)
    else:
        e.alu(AluOp.SUB, None, dlo, slo)
    e.br(cond, target)


def _ja(ctx: LowerCtx, pc: int, insn: Insn) -> None:
    ctx.emit.jump(ctx.label_for(insn.jump_target(pc)))


def _abort_label(ctx: LowerCtx) -> str:
    return f".xdp_aborted_{ctx.function.name}"


def _action_in_range(ctx: LowerCtx) -> bool:
    """At -O1+: the analysis proves R0's low word is a valid XDP action here, so no abort check is needed."""
    f = ctx.facts
    if not ctx.enabled("exit-range") or f is None or not f.regs:
        return False
    st = f.regs[0]
    return getattr(st.kind, "name", "") == "SCALAR" and st.var.low.umax <= _MAX_XDP_ACTION


def _action_out_of_range(ctx: LowerCtx) -> bool:
    """``exit-range``: R0's low word is proven above XDP_REDIRECT, so the exit always aborts."""
    f = ctx.facts
    if not ctx.enabled("exit-range") or f is None or not f.regs:
        return False
    st = f.regs[0]
    return getattr(st.kind, "name", "") == "SCALAR" and st.var.low.umin > _MAX_XDP_ACTION


def _exit(ctx: LowerCtx, pc: int, insn: Insn) -> None:
    if not ctx.is_entry:
        from . import lower_call  # noqa: PLC0415 - JIT-mem's module; absent until it exists

        ret = getattr(lower_call, "lower_return", None)
        if ret is None:
            raise ctx.unsupported("exit from a BPF-to-BPF callee is not lowered yet")
        ret(ctx, pc, insn)
        return
    e = ctx.emit
    r0 = lo(0)
    raw = getattr(ctx.analysis, "raw_context", False)  # raw-context programs return all of r0 (a1:a0)
    if ctx.prog_type == ProgType.XDP and not raw and _action_out_of_range(ctx):
        e.halt(int(XdpAction.ABORTED))              # R0 (a1:a0) keeps the program's value
        return
    if ctx.prog_type == ProgType.XDP and not raw and not _action_in_range(ctx):
        state = ctx.state.setdefault("lower_jmp", {})
        state[ctx.function.name] = True
        e.alu(AluOp.SUB, None, r0, _MAX_XDP_ACTION)
        e.br(Cond.HI, _abort_label(ctx))
    e.halt(r0)


def EPILOGUE(ctx: LowerCtx) -> None:  # noqa: N802 - the hook name lower.py looks for
    """The shared XDP_ABORTED stub of a function that has an XDP exit."""
    if ctx.state.get("lower_jmp", {}).get(ctx.function.name):
        ctx.emit.label(_abort_label(ctx))
        ctx.emit.halt(int(XdpAction.ABORTED))


HANDLERS = {}
for _cls in (InsnClass.JMP, InsnClass.JMP32):
    for _op in JmpOp:
        if _op in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT):
            continue
        for _src in Source:
            HANDLERS[_cls | _op | _src] = _cond_jump
HANDLERS[InsnClass.JMP | JmpOp.JA] = _ja
HANDLERS[InsnClass.JMP32 | JmpOp.JA] = _ja          # gotol: the offset is in imm (Insn.jump_target knows)
HANDLERS[InsnClass.JMP | JmpOp.EXIT] = _exit

__all__ = ["HANDLERS", "EPILOGUE"]



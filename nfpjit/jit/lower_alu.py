"""Lowering of eBPF ALU and ALU64 instructions and of ld_imm64 constants.

32-bit operations work on the low word and then zero the high word (skipped
at -O1 and above when the analysis says the high word is never read).
64-bit add/sub chain the carry (``add``/``addc``, ``sub``/``subc``); logic
ops work per word.  64-bit shifts by a constant use the funnel shift
``dbl_shf``; shifts by a register take the amount from ``prev`` (indirect
shifts) and branch on bit 5 of the amount between the "< 32" and ">= 32"
forms (at -O1 and above the analysis' range of the amount may decide the
branch statically).  Multiplies use the multiplier steps: 16x16 when both
operands are known to fit 16 bits, else 32x32, and a 64-bit product from
three 32x32 partial products.  Division and modulo by a constant use a shift
or mask for powers of two and reciprocal multiplication (Granlund and
Montgomery's round-up method with a 33-bit multiplier) otherwise; signed
forms divide the magnitudes and fix the sign.  A 64-bit dividend the
analysis cannot bound to 32 bits is divided by a 64-step shift-subtract
loop.  Division and modulo by a register of unknown value (32 or 64 bits,
signed or unsigned) call the firmware's ``fw_divide`` routine, whose cost
grows with the quotient's bits; a register the analysis proves constant is
divided as a constant.  Byte swaps are two
``ld_field`` rotates per word (a 16-bit swap in place: no scratch copy).

With the ``subreg`` pass (``nfpjit.passes.subreg``) an ALU64 operation its plan proves
decidable on the low words is done in 32 bits, and its high word is written only where the
pass's refined liveness says it is read (one ``immed`` of the known value, or nothing when it
is dead or already that value); a result no half of which is read is not computed at all.
``mul-const`` (``nfpjit.passes.alu_lowering``) turns multiplies by suitable constants into
shifts and adds.  :func:`hi32_live_out` / :func:`half_live_out` give other lowering modules
the same liveness.
"""

from __future__ import annotations

from nfpjit.bits import MASK32, s32, s64, u64
from nfpjit.ebpf.insn import LD_IMM64_CODE, Insn
from nfpjit.ebpf.opcodes import AluOp as EAlu, InsnClass, PseudoSrc, Source
from nfpjit.isa.table import AluOp, Cond, MulStep, ShiftKind

from .lower import LowerCtx
from .regs import G, hi, lo

# -- helpers ----------------------------------------------------------------------------


def _src(insn: Insn, wide: bool):
    """(lo, hi) of the source operand: G registers or 32-bit constants (hi None for ALU32)."""
    if insn.source == Source.X:
        return lo(insn.src), (hi(insn.src) if wide else None)
    k = u64(insn.imm) if wide else insn.imm & MASK32
    return k & MASK32, (k >> 32 if wide else None)


def subreg_plan(ctx: LowerCtx):
    """The ``subreg`` pass's plan (``nfpjit.passes.subreg.SubregPlan``), or None when the pass is off."""
    return ctx.plan("subreg") if ctx.enabled("subreg") else None


def hi32_live_out(ctx: LowerCtx, reg: int) -> bool:
    """May the high word of ``reg`` written by the current instruction be read later?

    With ``subreg`` this is its refined liveness (what the code it makes really reads, never more
    than the analysis' liveness); without it the analysis' ``hi32_live_out``.  Other lowering
    modules may ask it too before writing a high word.
    """
    plan = subreg_plan(ctx)
    if plan is not None:
        return plan.hi_live_out(ctx.pc, reg)
    f = ctx.facts
    return f is None or f.hi32_live_out


def half_live_out(ctx: LowerCtx, pc: int, reg: int, half: int) -> bool:
    """May half ``half`` (``nfpjit.analysis.LO``/``HI``) of ``reg`` be read after ``pc``?

    The ``subreg`` liveness when the pass is on (never more than the analysis' liveness), else the
    analysis' own: e.g. for the halves of R6..R9 a BPF-to-BPF call saves.
    """
    plan = subreg_plan(ctx)
    if plan is not None:
        return bool(plan.live_out.get(pc, 0) & (1 << (2 * reg + half)))
    return ctx.analysis.liveness.is_live_out(pc, reg, half)


def _hi_dead(ctx: LowerCtx, insn: Insn) -> bool:
    """A 64-bit result's high word need not be written: nobody reads it (``zext-elim`` or ``subreg``)."""
    plan = subreg_plan(ctx)
    if plan is not None and not plan.hi_live_out(ctx.pc, insn.dst):
        return True
    f = ctx.facts
    return ctx.enabled("zext-elim") and f is not None and not f.hi32_live_out


def _zext(ctx: LowerCtx, insn: Insn) -> None:
    """The high word of a 32-bit result is zero (with ``zext-elim``: written only when it is read)."""
    if not (ctx.enabled("zext-elim") and not hi32_live_out(ctx, insn.dst)):
        ctx.emit.const(hi(insn.dst), 0)


def _scalar_umax(ctx: LowerCtx, reg: int, low: bool) -> int | None:
    """Unsigned upper bound of register ``reg`` (its low word or all 64 bits) before this instruction."""
    f = ctx.facts
    if f is None or not f.regs:
        return None
    st = f.regs[reg]
    if getattr(st.kind, "name", "") != "SCALAR":
        return None
    return (st.var.low if low else st.var.full).umax


def _fits(ctx: LowerCtx, value, reg: int | None, limit: int, low: bool) -> bool:
    """Is the operand (constant, or register ``reg``) known to be <= limit?"""
    if isinstance(value, int):
        return value <= limit
    umax = _scalar_umax(ctx, reg, low)
    return umax is not None and umax <= limit


def _amount_range(ctx: LowerCtx, insn: Insn) -> tuple[int, int] | None:
    f = ctx.facts
    if not ctx.enabled("shift-range") or f is None or f.src_range is None:
        return None
    return f.src_range


# -- 32-bit ------------------------------------------------------------------------------

_LOGIC = {EAlu.AND: AluOp.AND, EAlu.OR: AluOp.OR, EAlu.XOR: AluOp.XOR}
_SHIFTS = {EAlu.LSH: ShiftKind.SHL, EAlu.RSH: ShiftKind.SHR, EAlu.ARSH: ShiftKind.ASR}


def _add_sub32(ctx: LowerCtx, op: EAlu, d: G, s) -> None:
    alu = AluOp.ADD if op == EAlu.ADD else AluOp.SUB
    if isinstance(s, int) and s > 0xFF and (-s) & MASK32 <= 0xFF:
        alu, s = (AluOp.SUB if alu == AluOp.ADD else AluOp.ADD), (-s) & MASK32
    ctx.emit.alu(alu, d, d, s)


def _sext_into(ctx: LowerCtx, d: G, s, bits: int) -> None:
    """d = sign extension of the low ``bits`` of s, as a 32-bit word."""
    e = ctx.emit
    if bits == 32:
        e.mov(d, s)
        return
    e.shf(d, s, ShiftKind.SHL, 32 - bits)
    e.shf(d, d, ShiftKind.ASR, 32 - bits)


def _bswap32(ctx: LowerCtx, d: G, s: G) -> None:
    """d = byte-reversed s; d may equal s only through a scratch copy, which this does itself."""
    e = ctx.emit
    t = ctx.tmp() if d == s else d
    e.ld_field(t, 0b1010, s, 8, clear=True)
    e.ld_field(t, 0b0101, s, 24)
    if t != d:
        e.mov(d, t)


def _mul_by_shifts(ctx: LowerCtx, d: G, k: int) -> bool:
    """``mul-const``: d *= k (mod 2**32) with at most two shift/add instructions, when k allows it."""
    e = ctx.emit
    k &= MASK32
    if k == 0:
        e.const(d, 0)
        return True
    if k & (k - 1) == 0:                               # 2**a
        if k > 1:
            e.shf(d, d, ShiftKind.SHL, k.bit_length() - 1)
        return True
    low = (k & -k).bit_length() - 1                    # k = (2**a + 1) << b: d + (d << a), then << b
    rest = k >> low
    if (rest - 1) & (rest - 2) == 0 and rest > 2:
        a = (rest - 1).bit_length() - 1
        e.shf(d, d, ShiftKind.SHL, a, op=AluOp.ADD, a=d)
        if low:
            e.shf(d, d, ShiftKind.SHL, low)
        return True
    if k == MASK32:                                    # -1: 0 - d
        e.alu(AluOp.SUB, d, 0, d)
        return True
    if (k + 1) & k == 0:                               # 2**a - 1: (d << a) - d
        t = ctx.tmp()
        e.shf(t, d, ShiftKind.SHL, k.bit_length())
        e.alu(AluOp.SUB, d, t, d)
        return True
    return False


def _mul32(ctx: LowerCtx, insn: Insn) -> None:
    e = ctx.emit
    d = lo(insn.dst)
    s, _ = _src(insn, False)
    k = s if isinstance(s, int) else (ctx.facts.src_const if ctx.facts is not None else None)
    if k is not None and ctx.enabled("mul-const") and _mul_by_shifts(ctx, d, k):
        return
    small = _fits(ctx, d, insn.dst, 0xFFFF, True) and _fits(ctx, s, insn.src, 0xFFFF, True)
    e.mul(d, s, MulStep.M16X16 if small else MulStep.M32X32)
    e.mul_lo(d)


def _udiv32_const(ctx: LowerCtx, q: G, x: G, d: int) -> None:
    """q = x / d (unsigned 32-bit, d a constant >= 1); q may equal x."""
    e = ctx.emit
    d &= MASK32
    if d == 1:
        e.mov(q, x)
    elif d & (d - 1) == 0:
        e.shf(q, x, ShiftKind.SHR, d.bit_length() - 1)
    elif d >> 31:
        # the quotient is 0 or 1: the carry of x - d
        k = e.reg(d)
        e.alu(AluOp.SUB, None, x, k)
        e.const(k, 0)
        e.alu(AluOp.ADDC, q, k, 0)
    else:
        l = (d - 1).bit_length()
        m = ((1 << 32) * ((1 << l) - d)) // d + 1
        t1, t2 = ctx.tmp(), ctx.tmp()
        e.mul(x, m, MulStep.M32X32)
        e.mul_hi(t1)                                   # t1 = (m * x) >> 32
        e.alu(AluOp.SUB, t2, x, t1)                    # x - t1 (never negative)
        e.shf(t2, t2, ShiftKind.SHR, 1, op=AluOp.ADD, a=t1)   # t1 + ((x - t1) >> 1)
        e.shf(q, t2, ShiftKind.SHR, l - 1)


def _umod32_const(ctx: LowerCtx, r: G, x: G, d: int) -> None:
    """r = x % d (unsigned, d >= 1); r may equal x."""
    e = ctx.emit
    d &= MASK32
    if d == 1:
        e.const(r, 0)
    elif d & (d - 1) == 0:
        e.alu(AluOp.AND, r, x, d - 1)
    else:
        q = ctx.tmp()
        _udiv32_const(ctx, q, x, d)
        e.mul(q, d, MulStep.M32X32)
        e.mul_lo(q)
        e.alu(AluOp.SUB, r, x, q)


def _div32(ctx: LowerCtx, out: G, x: G, d: int, *, mod: bool, signed: bool) -> None:
    """out = x (/ or %) d for a 32-bit constant d, with eBPF's rules for zero."""
    e = ctx.emit
    d &= MASK32
    if d == 0:
        if mod:
            e.mov(out, x)
        else:
            e.const(out, 0)
        return
    if not signed:
        (_umod32_const if mod else _udiv32_const)(ctx, out, x, d)
        return
    dabs = abs(s32(d))
    sign, t = ctx.tmp(), ctx.tmp()
    e.shf(sign, x, ShiftKind.ASR, 31)          # 0 or -1
    e.alu(AluOp.XOR, t, x, sign)
    e.alu(AluOp.SUB, t, t, sign)               # |x| (INT_MIN stays 0x80000000)
    (_umod32_const if mod else _udiv32_const)(ctx, t, t, dabs)
    if not mod and s32(d) < 0:
        e.alu(AluOp.NOT, sign, None, sign)     # the quotient's sign flips for a negative divisor
    e.alu(AluOp.XOR, t, t, sign)
    e.alu(AluOp.SUB, out, t, sign)


def _divisor(ctx: LowerCtx, insn: Insn) -> int | None:
    """The constant divisor: the immediate (sign-extended to 64 bits), or a register the analysis proves
    constant; None for a register of unknown value (the firmware's divide routine)."""
    if insn.source == Source.K:
        return u64(insn.imm)
    f = ctx.facts
    if f is None or f.src_const is None:
        return None
    return u64(f.src_const)


def _div_routine(ctx: LowerCtx, insn: Insn, *, wide: bool) -> None:
    """dst = dst (/ or %) src by the firmware's ``fw_divide`` (divisor not a known constant).

    The operands go to the routine's scratch argument registers (a22..a26) and the result comes
    back in g22/g23, so no eBPF register is disturbed; the routine's cost grows with the quotient's
    bits (isa/sim/cycles.py).  A 32-bit operation passes the low words only; its result's high word
    is zeroed like every ALU32 result.
    """
    from nfpjit.isa.sim.firmware import DIV_ARGS, DIV_MOD, DIV_SIGNED, DIV_WIDE, Routine  # noqa: PLC0415

    from .lower_call import call_routine  # noqa: PLC0415 - lower_call imports this module

    e = ctx.emit
    nl, nh, dl, dh, mode = (G(r.index) for r in DIV_ARGS)
    e.mov(nl, lo(insn.dst))
    e.mov(dl, lo(insn.src))
    if wide:
        e.mov(nh, hi(insn.dst))
        e.mov(dh, hi(insn.src))
    e.const(mode, (DIV_MOD if insn.alu_op == EAlu.MOD else 0) | (DIV_SIGNED if insn.off == 1 else 0)
            | (DIV_WIDE if wide else 0))
    call_routine(ctx, ctx.pc, Routine.DIVIDE)
    e.mov(lo(insn.dst), nl)
    if wide:
        if not _hi_dead(ctx, insn):
            e.mov(hi(insn.dst), nh)
    else:
        _zext(ctx, insn)


def _unread(ctx: LowerCtx, insn: Insn) -> bool:
    """``subreg``: no half of the result is ever read, so it is not computed (ALU ops have no side effects)."""
    plan = subreg_plan(ctx)
    return plan is not None and plan.dead(ctx.pc, insn.dst)


def _alu32(ctx: LowerCtx, pc: int, insn: Insn) -> None:
    e = ctx.emit
    if _unread(ctx, insn):
        return
    plan = subreg_plan(ctx)
    folded = plan.alu.get(pc) if plan is not None else None
    if folded is not None and folded.lo is not None and insn.alu_op != EAlu.END:
        if plan.lo_live_out(pc, insn.dst):
            e.const(lo(insn.dst), folded.lo)           # both operands known: the folded result
        _zext(ctx, insn)
        return
    op = insn.alu_op
    d = lo(insn.dst)
    if op == EAlu.MOV:
        if insn.source == Source.X and insn.off:
            _sext_into(ctx, d, lo(insn.src), insn.off)
        else:
            e.mov(d, _src(insn, False)[0])
    elif op in (EAlu.ADD, EAlu.SUB):
        _add_sub32(ctx, op, d, _src(insn, False)[0])
    elif op in _LOGIC:
        e.alu(_LOGIC[op], d, d, _src(insn, False)[0])
    elif op == EAlu.NEG:
        e.alu(AluOp.SUB, d, 0, d)
    elif op in _SHIFTS:
        if insn.source == Source.K:
            n = insn.imm & 31
            if n:
                e.shf(d, d, _SHIFTS[op], n)
        else:
            e.set_prev(lo(insn.src))
            e.shf(d, d, _SHIFTS[op], None)
    elif op == EAlu.MUL:
        _mul32(ctx, insn)
    elif op in (EAlu.DIV, EAlu.MOD):
        k = _divisor(ctx, insn)
        if k is None:
            _div_routine(ctx, insn, wide=False)
            return
        _div32(ctx, d, d, k & MASK32, mod=op == EAlu.MOD, signed=insn.off == 1)
    elif op == EAlu.END:
        _end(ctx, insn)
        return
    else:  # pragma: no cover - the table only holds the ops above
        raise ctx.unsupported(f"ALU32 operation {op.name}")
    _zext(ctx, insn)


def _end(ctx: LowerCtx, insn: Insn) -> None:
    """END (to-LE: truncate; to-BE and ALU64 bswap: byte swap) of 16, 32 or 64 bits."""
    e = ctx.emit
    dl, dh = lo(insn.dst), hi(insn.dst)
    width = insn.imm
    swap = insn.cls == InsnClass.ALU64 or insn.source == Source.X
    if width not in (16, 32, 64):
        raise ctx.unsupported(f"byte swap width {width}")
    if not swap:
        if width == 16:
            e.ld_field(dl, 0b0011, dl, 0, clear=True)
        if width < 64:
            _zext(ctx, insn)
        return
    if width == 16:
        # in place: byte 2 = byte 0, then bytes 1..0 = bytes 2..1 (= old bytes 0, 1), the rest cleared
        e.ld_field(dl, 0b0100, dl, 16)
        e.ld_field(dl, 0b0011, dl, 8, clear=True)
        _zext(ctx, insn)
    elif width == 32:
        _bswap32(ctx, dl, dl)
        _zext(ctx, insn)
    else:
        t = ctx.tmp()
        _bswap32(ctx, t, dl)
        _bswap32(ctx, dl, dh)
        e.mov(dh, t)


# -- 64-bit ------------------------------------------------------------------------------


def _const_hi_logic(ctx: LowerCtx, op: AluOp, d: G, k: int) -> None:
    """d = d <op> k for a constant high word: 0 and all-ones need at most one instruction."""
    e = ctx.emit
    if k == 0:
        if op == AluOp.AND:
            e.const(d, 0)
        return
    if k == MASK32:
        if op == AluOp.OR:
            e.const(d, MASK32)
        elif op == AluOp.XOR:
            e.alu(AluOp.NOT, d, None, d)
        return
    e.alu(op, d, d, k)


def _mov64(ctx: LowerCtx, insn: Insn) -> None:
    e = ctx.emit
    dl, dh = lo(insn.dst), hi(insn.dst)
    hi_dead = _hi_dead(ctx, insn)
    if insn.source == Source.K:
        k = u64(insn.imm)
        e.const(dl, k & MASK32)
        if not hi_dead:
            e.const(dh, k >> 32)
        return
    if insn.src == 10 and insn.off == 0:
        # R10 lives in no register: the frame pointer is a per-function constant (JIT-mem's stack layout)
        from . import lower_mem  # noqa: PLC0415

        e.const(dl, lower_mem.frame_pointer(ctx))
        if not hi_dead:
            e.const(dh, 0)
        return
    sl, sh = lo(insn.src), hi(insn.src)
    if insn.off == 0:
        plan = subreg_plan(ctx)
        if plan is None or plan.lo_live_out(ctx.pc, insn.dst):
            e.mov(dl, sl)
        if not hi_dead:
            e.mov(dh, sh)
        return
    _sext_into(ctx, dl, sl, insn.off)
    if not hi_dead:
        e.shf(dh, dl, ShiftKind.ASR, 31)


def _shift64_const(ctx: LowerCtx, kind: EAlu, dl: G, dh: G, n: int, hi_dead: bool = False) -> None:
    """64-bit shift by a constant; ``hi_dead``: the result's high word is never read (rsh/arsh leave it)."""
    e = ctx.emit
    if n == 0:
        return
    if hi_dead and kind != EAlu.LSH:
        if n < 32:
            e.dbl_shf(dl, dh, dl, n)
        elif n > 32:
            e.shf(dl, dh, ShiftKind.SHR if kind == EAlu.RSH else ShiftKind.ASR, n - 32)
        else:
            e.mov(dl, dh)
        return
    if kind == EAlu.LSH:
        if n < 32:
            e.dbl_shf(dh, dh, dl, 32 - n)            # (hi << n) | (lo >> (32 - n))
            e.shf(dl, dl, ShiftKind.SHL, n)
        else:
            if n > 32:
                e.shf(dh, dl, ShiftKind.SHL, n - 32)
            else:
                e.mov(dh, dl)
            e.const(dl, 0)
    elif kind == EAlu.RSH:
        if n < 32:
            e.dbl_shf(dl, dh, dl, n)
            e.shf(dh, dh, ShiftKind.SHR, n)
        else:
            if n > 32:
                e.shf(dl, dh, ShiftKind.SHR, n - 32)
            else:
                e.mov(dl, dh)
            e.const(dh, 0)
    else:
        if n < 32:
            e.dbl_shf(dl, dh, dl, n)
            e.shf(dh, dh, ShiftKind.ASR, n)
        else:
            if n > 32:
                e.shf(dl, dh, ShiftKind.ASR, n - 32)
            else:
                e.mov(dl, dh)
            e.shf(dh, dh, ShiftKind.ASR, 31)


def _shift64_reg(ctx: LowerCtx, kind: EAlu, dl: G, dh: G, s: G, amount_range) -> None:
    """64-bit shift by the low 6 bits of register s, chosen at run time on bit 5."""
    e = ctx.emit
    t = ctx.tmp()
    small = big = True
    if amount_range is not None:
        lo_n, hi_n = amount_range
        if hi_n < 32:
            big = False
        elif lo_n >= 32 and hi_n < 64:
            small = False
    t2 = None
    if kind == EAlu.LSH and small:
        t2 = ctx.tmp()
        e.shf(t2, dl, ShiftKind.SHR, 1)               # lo >> 1, before prev is set to the amount
    e.alu(AluOp.AND, t, s, 63)                        # t = n; prev = n
    big_label = done = None
    if small and big:
        big_label, done = ctx.new_label("shift_big"), ctx.new_label("shift_done")
        e.br_bit(True, t, 5, big_label)
    if small:
        if kind == EAlu.LSH:
            t1 = ctx.tmp()
            e.shf(t1, dh, ShiftKind.SHL, None)        # hi << n
            e.alu(AluOp.NOT, None, None, t)           # prev & 31 = 31 - n
            e.shf(t2, t2, ShiftKind.SHR, None)        # lo >> (32 - n), 0 for n = 0
            e.alu(AluOp.OR, dh, t1, t2)
            e.set_prev(t)
            e.shf(dl, dl, ShiftKind.SHL, None)
        else:
            e.dbl_shf(dl, dh, dl, None)               # low32((hi:lo) >> n)
            e.set_prev(t)
            e.shf(dh, dh, ShiftKind.SHR if kind == EAlu.RSH else ShiftKind.ASR, None)
        if big:
            e.jump(done)
    if big:
        if big_label:
            e.label(big_label)
        else:
            e.set_prev(t)
        if kind == EAlu.LSH:
            e.shf(dh, dl, ShiftKind.SHL, None)        # lo << (n - 32)
            e.const(dl, 0)
        elif kind == EAlu.RSH:
            e.shf(dl, dh, ShiftKind.SHR, None)
            e.const(dh, 0)
        else:
            e.shf(dl, dh, ShiftKind.ASR, None)
            e.shf(dh, dh, ShiftKind.ASR, 31)
    if done:
        e.label(done)


def _mul64(ctx: LowerCtx, insn: Insn) -> None:
    e = ctx.emit
    dl, dh = lo(insn.dst), hi(insn.dst)
    sl, sh = _src(insn, True)
    src_reg = insn.src if insn.source == Source.X else None
    d_narrow = _fits(ctx, dl, insn.dst, MASK32, False)
    s_narrow = sh == 0 or (src_reg is not None and _fits(ctx, sl, src_reg, MASK32, False))
    cross = ctx.tmp()
    have_cross = False
    if not s_narrow:
        e.mul(dl, sh, MulStep.M32X32)                 # lo(d) * hi(s)
        e.mul_lo(cross)
        have_cross = True
    if not d_narrow:
        e.mul(dh, sl, MulStep.M32X32)                 # hi(d) * lo(s)
        if have_cross:
            t = ctx.tmp()
            e.mul_lo(t)
            e.alu(AluOp.ADD, cross, cross, t)
        else:
            e.mul_lo(cross)
            have_cross = True
    small = _fits(ctx, dl, insn.dst, 0xFFFF, False) and (
        sl <= 0xFFFF and sh == 0 if isinstance(sl, int) else _fits(ctx, sl, src_reg, 0xFFFF, False))
    e.mul(dl, sl, MulStep.M16X16 if small else MulStep.M32X32)
    e.mul_lo(dl)
    if have_cross:
        t = ctx.tmp()
        e.mul_hi(t)
        e.alu(AluOp.ADD, dh, t, cross)
    else:
        e.mul_hi(dh)


def _udiv64_loop(ctx: LowerCtx, ql: G, qh: G, d: int) -> tuple[G, G]:
    """(ql:qh) = (ql:qh) / d by restoring shift-subtract division (64 steps); returns the remainder's (lo, hi).

    ``d`` is a constant, 2 <= d <= 2**63, so the partial remainder (< 2d) never needs a 65th bit.
    """
    e = ctx.emit
    kl, kh = d & MASK32, d >> 32
    kl = e.reg(kl) if kl > 0xFF else kl
    kh = e.reg(kh) if kh > 0xFF else kh
    rl, rh, t1, t2, cnt = ctx.tmp(), ctx.tmp(), ctx.tmp(), ctx.tmp(), ctx.tmp()
    e.const(rl, 0)
    e.const(rh, 0)
    e.const(cnt, 64)
    loop, skip = ctx.new_label("div_loop"), ctx.new_label("div_skip")
    e.label(loop)
    e.alu(AluOp.ADD, ql, ql, ql)                 # (r:q) <<= 1 through the carry chain
    e.alu(AluOp.ADDC, qh, qh, qh)
    e.alu(AluOp.ADDC, rl, rl, rl)
    e.alu(AluOp.ADDC, rh, rh, rh)
    e.alu(AluOp.SUB, t1, rl, kl)                 # r - d; C = no borrow = r >= d
    e.alu(AluOp.SUBC, t2, rh, kh)
    e.br(Cond.LO, skip)
    e.mov(rl, t1)
    e.mov(rh, t2)
    e.alu(AluOp.OR, ql, ql, 1)
    e.label(skip)
    e.alu(AluOp.SUB, cnt, cnt, 1)
    e.br(Cond.NE, loop)
    return rl, rh


def _neg64_if(ctx: LowerCtx, xl: G, xh: G, mask: G) -> None:
    """x = (x ^ mask) - mask: negates x when mask is all ones, keeps it when mask is 0."""
    e = ctx.emit
    e.alu(AluOp.XOR, xl, xl, mask)
    e.alu(AluOp.XOR, xh, xh, mask)
    e.alu(AluOp.SUB, xl, xl, mask)
    e.alu(AluOp.SUBC, xh, xh, mask)


def _div64_wide(ctx: LowerCtx, dl: G, dh: G, d: int, *, mod: bool, signed: bool) -> None:
    """64-bit (signed or unsigned) division/modulo of any dividend by a nonzero constant ``d``."""
    e = ctx.emit
    if not signed and d > 1 << 63:
        # the quotient is 0 or 1
        kl, kh = e.reg(d & MASK32), e.reg(d >> 32)
        if mod:
            t1, t2 = ctx.tmp(), ctx.tmp()
            skip = ctx.new_label("div_skip")
            e.alu(AluOp.SUB, t1, dl, kl)
            e.alu(AluOp.SUBC, t2, dh, kh)
            e.br(Cond.LO, skip)
            e.mov(dl, t1)
            e.mov(dh, t2)
            e.label(skip)
        else:
            e.alu(AluOp.SUB, None, dl, kl)
            e.alu(AluOp.SUBC, None, dh, kh)
            e.const(dh, 0)                       # immed leaves the carry alone
            e.const(kl, 0)
            e.alu(AluOp.ADDC, dl, kl, 0)
        return
    if not signed and d & (d - 1) == 0:
        n = d.bit_length() - 1
        if mod:
            mask = d - 1
            if mask & MASK32 != MASK32:
                e.alu(AluOp.AND, dl, dl, mask & MASK32)
            if mask >> 32:
                e.alu(AluOp.AND, dh, dh, mask >> 32)
            else:
                e.const(dh, 0)
        else:
            _shift64_const(ctx, EAlu.RSH, dl, dh, n)
        return
    sign = None
    negative = d < 0
    if signed:
        sign = ctx.tmp()
        e.shf(sign, dh, ShiftKind.ASR, 31)
        _neg64_if(ctx, dl, dh, sign)             # |x|; INT64_MIN stays 2**63, as unsigned
        d = abs(d)
    if d == 1:
        if mod:
            e.const(dl, 0)
            e.const(dh, 0)
    else:
        if d & (d - 1) == 0 and not mod:
            _shift64_const(ctx, EAlu.RSH, dl, dh, d.bit_length() - 1)
            rl = rh = None
        else:
            rl, rh = _udiv64_loop(ctx, dl, dh, d)
        if mod:
            e.mov(dl, rl)
            e.mov(dh, rh)
    if signed:
        if not mod and negative:
            e.alu(AluOp.NOT, sign, None, sign)
        _neg64_if(ctx, dl, dh, sign)


def _div64(ctx: LowerCtx, insn: Insn) -> None:
    """64-bit division/modulo by a constant (32-bit arithmetic when the dividend fits 32 bits)."""
    e = ctx.emit
    dl, dh = lo(insn.dst), hi(insn.dst)
    mod = insn.alu_op == EAlu.MOD
    signed = insn.off == 1
    d = _divisor(ctx, insn)
    if d is None:
        _div_routine(ctx, insn, wide=True)
        return
    d = s64(d) if signed else d
    f = ctx.facts
    st = f.regs[insn.dst] if f is not None and f.regs else None
    narrow = st is not None and getattr(st.kind, "name", "") == "SCALAR" and st.var.full.umax <= MASK32
    if d == 0:
        if not mod:
            e.const(dl, 0)
            e.const(dh, 0)
        return
    if not narrow:
        _div64_wide(ctx, dl, dh, d, mod=mod, signed=signed)
        return
    if not signed:
        if d > MASK32:                               # x < 2**32 <= d
            if not mod:
                e.const(dl, 0)
            e.const(dh, 0)
            return
        _div32(ctx, dl, dl, d, mod=mod, signed=False)
        e.const(dh, 0)
        return
    # signed, dividend non-negative and < 2**32: divide by |d|, negate the quotient for d < 0
    if abs(d) > MASK32:
        if not mod:
            e.const(dl, 0)
        e.const(dh, 0)
        return
    _div32(ctx, dl, dl, abs(d), mod=mod, signed=False)
    e.const(dh, 0)
    if not mod and d < 0:
        e.alu(AluOp.SUB, dl, 0, dl)
        e.alu(AluOp.SUBC, dh, 0, dh)


def _alu64_low(ctx: LowerCtx, insn: Insn, narrow) -> None:
    """The low word of an ALU64 result that ``subreg`` proved computable from the low words alone."""
    e = ctx.emit
    op = insn.alu_op
    d = lo(insn.dst)
    if narrow.lo is not None:                        # both operands known: the folded result
        e.const(d, narrow.lo)
        return
    if narrow.from_hi:                               # rsh/arsh by 32..63: the old high word, shifted
        n = (insn.imm & 63) - 32
        kind = ShiftKind.SHR if op == EAlu.RSH else ShiftKind.ASR
        if n:
            e.shf(d, hi(insn.dst), kind, n)
        else:
            e.mov(d, hi(insn.dst))
        return
    s = _src(insn, False)[0] if not (insn.source == Source.X and insn.src == 10) else None
    if op == EAlu.MOV:
        if s is None:
            from . import lower_mem  # noqa: PLC0415

            e.const(d, lower_mem.frame_pointer(ctx))
        else:
            e.mov(d, s)
    elif op in (EAlu.ADD, EAlu.SUB):
        _add_sub32(ctx, op, d, s)
    elif op in _LOGIC:
        e.alu(_LOGIC[op], d, d, s)
    elif op == EAlu.NEG:
        e.alu(AluOp.SUB, d, 0, d)
    elif op in _SHIFTS:
        # rsh/arsh only get here for a value whose high word is 0: both are the logical shift of the low word
        kind = ShiftKind.SHL if op == EAlu.LSH else ShiftKind.SHR
        if insn.source == Source.K:
            n = insn.imm & 63
            if n >= 32:
                e.const(d, 0)
            elif n:
                e.shf(d, d, kind, n)
        else:
            e.set_prev(lo(insn.src))                 # the amount is proven < 32
            e.shf(d, d, kind, None)
    elif op == EAlu.MUL:
        _mul32(ctx, insn)
    else:  # pragma: no cover - subreg plans only the ops above
        raise ctx.unsupported(f"subreg: no 32-bit form of ALU64 {op.name}")


def _alu64(ctx: LowerCtx, pc: int, insn: Insn) -> None:
    e = ctx.emit
    op = insn.alu_op
    dl, dh = lo(insn.dst), hi(insn.dst)
    plan = subreg_plan(ctx)
    if plan is not None and plan.dead(pc, insn.dst):
        return
    narrow = plan.narrow_alu(pc, insn.dst) if plan is not None else None
    if narrow is not None:
        if plan.lo_live_out(pc, insn.dst):
            _alu64_low(ctx, insn, narrow)
        if not narrow.keep and plan.hi_live_out(pc, insn.dst):
            e.const(dh, narrow.hi)                   # known (narrow_alu returns unknown ones only when dead)
        return
    if op == EAlu.MOV:
        _mov64(ctx, insn)
    elif op in (EAlu.ADD, EAlu.SUB):
        sl, sh = _src(insn, True)
        first, carry = (AluOp.ADD, AluOp.ADDC) if op == EAlu.ADD else (AluOp.SUB, AluOp.SUBC)
        if insn.source == Source.K and insn.imm < 0 and -insn.imm <= 0xFF:
            # d + (-k) == d - k: both immediates fit the operand field
            first, carry = (AluOp.SUB, AluOp.SUBC) if op == EAlu.ADD else (AluOp.ADD, AluOp.ADDC)
            sl, sh = -insn.imm, 0
        e.alu(first, dl, dl, sl)
        if not _hi_dead(ctx, insn):
            e.alu(carry, dh, dh, sh)
    elif op in _LOGIC:
        sl, sh = _src(insn, True)
        e.alu(_LOGIC[op], dl, dl, sl)
        if _hi_dead(ctx, insn):
            pass
        elif isinstance(sh, int):
            _const_hi_logic(ctx, _LOGIC[op], dh, sh)
        else:
            e.alu(_LOGIC[op], dh, dh, sh)
    elif op == EAlu.NEG:
        e.alu(AluOp.SUB, dl, 0, dl)
        e.alu(AluOp.SUBC, dh, 0, dh)
    elif op in _SHIFTS:
        if insn.source == Source.K:
            _shift64_const(ctx, op, dl, dh, insn.imm & 63, hi_dead=plan is not None and _hi_dead(ctx, insn))
        else:
            _shift64_reg(ctx, op, dl, dh, lo(insn.src), _amount_range(ctx, insn))
    elif op == EAlu.MUL:
        _mul64(ctx, insn)
    elif op in (EAlu.DIV, EAlu.MOD):
        _div64(ctx, insn)
    elif op == EAlu.END:
        _end(ctx, insn)
    else:  # pragma: no cover
        raise ctx.unsupported(f"ALU64 operation {op.name}")


# -- ld_imm64 -------------------------------------------------------------------------------


def _ld_imm64(ctx: LowerCtx, pc: int, insn: Insn) -> None:
    if insn.src == PseudoSrc.IMM64:
        value = insn.imm64
        plan = subreg_plan(ctx)
        if plan is None or plan.lo_live_out(pc, insn.dst):
            ctx.emit.const(lo(insn.dst), value & MASK32)
        if not _hi_dead(ctx, insn):
            ctx.emit.const(hi(insn.dst), value >> 32)
        return
    from . import lower_mem  # noqa: PLC0415 - JIT-mem's module lowers map references

    handler = getattr(lower_mem, "lower_ld_imm64", None)
    if handler is None:
        raise ctx.unsupported(f"ld_imm64 with pseudo source {insn.src} is not lowered yet")
    handler(ctx, pc, insn)


# -- the table --------------------------------------------------------------------------------

HANDLERS = {}
for _cls, _fn in ((InsnClass.ALU, _alu32), (InsnClass.ALU64, _alu64)):
    for _op in EAlu:
        for _srck in Source:
            if _op == EAlu.NEG and _srck == Source.X:
                continue
            if _op == EAlu.END and _cls == InsnClass.ALU64 and _srck == Source.X:
                continue
            HANDLERS[_cls | _op | _srck] = _fn
HANDLERS[LD_IMM64_CODE] = _ld_imm64

__all__ = ["HANDLERS"]

"""Lowering of eBPF calls: helper calls to firmware routines and BPF-to-BPF calls.

Helpers.  The firmware routines' ABI (``nfpjit.isa.sim.firmware``) matches the
register mapping, so R1..R5 are already where the routine reads them: R1's
low word is the map table id (``ld_imm64`` of a map loads it with a MAP_ID
relocation), R2/R3 point at the key/value, R4 holds the update flags, R2 the
adjust_head/tail delta.  Stack pointers *are* local-memory byte addresses, so
a key or value on the stack is passed as is; a key or value in a map value or
the packet is first copied to a bounce area in LM.  The call is a ``br`` to
the routine (ROUTINE_ADDR relocation) with ``load_addr a30, back`` in its
defer slot; the routine leaves R0 in both banks.

BPF-to-BPF calls.  Every function has a static LM region
(:func:`nfpjit.jit.lower_mem.stack_layout`: eBPF cannot recurse): a return
address slot, a save area and its stack.  A call saves the caller's R6..R9
in the caller's save area, writes the return address into the callee's
return slot, and branches to the callee; the callee's ``exit`` returns with
``rtn`` through that slot (:func:`lower_return`); the caller then
restores R6..R9.  R1..R5 and R0 need no moves: caller and callee use the same
registers.
"""

from __future__ import annotations

from nfpjit.analysis import HI, LO, RegKind
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import CallKind, Helper, InsnClass, JmpOp, ProgType
from nfpjit.errors import UnsupportedError
from nfpjit.isa.image import RelocKind
from nfpjit.isa.encoding import load_const
from nfpjit.isa.operands import NN, Bank, Gpr, GprBoth, LMem, NoDest
from nfpjit.isa.sim.firmware import ARG_PTR_KINDS, ARG_REDIRECT_KIND, PTR_CTM, PTR_EMEM, PTR_LM, PTR_NONE, REDIRECT_TC
from nfpjit.isa.sim.firmware import REDIRECT_XDP, RETURN_ADDRESS_REG, Routine
from nfpjit.isa.table import AluOp, Cond, Csr, Instruction, Op, ShiftKind

from . import lower_mem as lm
from .lower_alu import half_live_out
from .mir import MReloc

#: LM index pointer the call sequences use (pointer 0 belongs to stack loads/stores)
LM_CALL_POINTER = 1
#: eBPF registers a BPF-to-BPF call preserves for the caller
CALLEE_SAVED = (6, 7, 8, 9)

#: helpers with a firmware routine; adjust_head has a fast path for a constant delta
HELPER_ROUTINES = {
    Helper.map_lookup_elem: Routine.MAP_LOOKUP,
    Helper.map_update_elem: Routine.MAP_UPDATE,
    Helper.map_delete_elem: Routine.MAP_DELETE,
    Helper.get_prandom_u32: Routine.GET_PRANDOM,
    Helper.xdp_adjust_head: Routine.ADJUST_HEAD,
    Helper.xdp_adjust_tail: Routine.ADJUST_TAIL,
    Helper.redirect: Routine.REDIRECT,
    Helper.xdp_load_bytes: Routine.XDP_LOAD_BYTES,
    Helper.xdp_store_bytes: Routine.XDP_STORE_BYTES,
    Helper.csum_diff: Routine.CSUM_DIFF,
    Helper.skb_load_bytes: Routine.SKB_LOAD_BYTES,
    Helper.skb_store_bytes: Routine.SKB_STORE_BYTES,
    Helper.l3_csum_replace: Routine.L3_CSUM_REPLACE,
    Helper.l4_csum_replace: Routine.L4_CSUM_REPLACE,
}

#: the byte routines' pointer arguments, in the order of their kind fields in ARG_PTR_KINDS
_PTR_ARGS = {
    Helper.xdp_load_bytes: (3,),
    Helper.xdp_store_bytes: (3,),
    Helper.csum_diff: (1, 3),
    Helper.skb_load_bytes: (3,),
    Helper.skb_store_bytes: (3,),
}
_PTR_KIND = {RegKind.STACK: PTR_LM, RegKind.MAP_VALUE: PTR_EMEM, RegKind.PACKET: PTR_CTM}

#: (argument register, "key" or "value") pointers the routine reads from LM
_LM_ARGS = {
    Helper.map_lookup_elem: ((2, "key"),),
    Helper.map_update_elem: ((2, "key"), (3, "value")),
    Helper.map_delete_elem: ((2, "key"),),
}


def _ktime(ctx, pc: int, insn: Insn) -> None:
    """R0 = the NIC's timestamp counter (one tick per cycle: the simulator's cycle count, ns at 1 GHz).

    The high word is read second: a carry between the two reads would need 2**32 cycles of run.
    """
    ctx.emit(Instruction(Op.CSR_RD, dest=lm.lo_ab(0), csr=Csr.TIMESTAMP_LO))
    ctx.emit(Instruction(Op.CSR_RD, dest=lm.hi_ab(0), csr=Csr.TIMESTAMP_HI))


def _processor_id(ctx, pc: int, insn: Insn) -> None:
    """R0 = 0: a program runs on one NIC thread, which is CPU 0 (as in the interpreter and one test run)."""
    ctx.emit(Instruction(Op.IMMED, dest=lm.lo_ab(0), imm=0))
    ctx.emit(Instruction(Op.IMMED, dest=lm.hi_ab(0), imm=0))


#: helpers lowered to a few instructions instead of a firmware call
INLINE_HELPERS = {
    Helper.ktime_get_ns: _ktime,
    Helper.ktime_get_boot_ns: _ktime,
    Helper.get_smp_processor_id: _processor_id,
}


def supported_helpers() -> frozenset[int]:
    """Helper ids the lowering turns into firmware calls or inline code."""
    return frozenset(int(h) for h in (*HELPER_ROUTINES, *INLINE_HELPERS, Helper.loop))


def lower_call(ctx, pc: int, insn: Insn) -> None:
    """``call``: a helper (firmware routine) or a BPF-to-BPF call."""
    if insn.src == CallKind.HELPER:
        lower_helper_call(ctx, pc, insn)
    elif insn.src == CallKind.LOCAL:
        lower_local_call(ctx, pc, insn)
    else:
        raise UnsupportedError("kfunc calls have no NFP equivalent", where=ctx.where(pc),
                               hint="offloaded programs may call map helpers, get_prandom_u32 and "
                                    "xdp_adjust_head/tail")


def _facts(ctx, pc: int):
    facts = ctx.facts_at(pc)
    if facts is None:
        raise UnsupportedError("call the analysis has no facts for", where=ctx.where(pc))
    return facts


def lower_helper_call(ctx, pc: int, insn: Insn) -> None:
    try:
        helper = Helper(insn.imm)
    except ValueError:
        helper = None
    if helper == Helper.loop:
        lower_loop(ctx, pc, insn)
        return
    inline = INLINE_HELPERS.get(helper)
    if inline is not None:
        inline(ctx, pc, insn)
        return
    routine = HELPER_ROUTINES.get(helper)
    if routine is None:
        name = helper.name if helper is not None else f"#{insn.imm}"
        raise UnsupportedError(f"helper {name} has no NIC firmware routine", where=ctx.where(pc),
                               hint="offloaded programs may call map lookup/update/delete, get_prandom_u32 "
                                    "and xdp_adjust_head/tail")
    facts = _facts(ctx, pc)
    if helper == Helper.xdp_adjust_head:
        delta = facts.regs[2]
        if delta.kind == RegKind.SCALAR and delta.var is not None and delta.var.is_const:
            routine = Routine.ADJUST_HEAD_FAST
    if helper == Helper.map_lookup_elem and _cached_lookup(ctx, pc):
        return
    for reg, what in _LM_ARGS.get(helper, ()):
        _lm_argument(ctx, pc, facts, reg, what, helper)
    if helper == Helper.redirect:
        # R3 is no argument of bpf_redirect (and dead after any call): it tells the routine the verdicts
        kind = REDIRECT_TC if ctx.prog_type in (ProgType.SCHED_CLS, ProgType.SCHED_ACT) else REDIRECT_XDP
        ctx.emit(Instruction(Op.IMMED, dest=GprBoth(ARG_REDIRECT_KIND.index), imm=kind))
    if helper in _PTR_ARGS:
        _pointer_kinds(ctx, pc, facts, helper)
    call_routine(ctx, pc, routine)
    if helper == Helper.map_lookup_elem:
        _save_lookup(ctx, pc)


def _pointer_kinds(ctx, pc: int, facts, helper: Helper) -> None:
    """Tell a byte routine which memory each pointer argument is in (the analysis knows it statically)."""
    kinds = 0
    for i, reg in enumerate(_PTR_ARGS[helper]):
        st = facts.regs[reg]
        if st.kind == RegKind.SCALAR:
            kind = PTR_NONE           # csum_diff's NULL with a size of 0
        elif st.kind in _PTR_KIND:
            kind = _PTR_KIND[st.kind]
        else:
            raise UnsupportedError(f"{helper.name} buffer in a {st.kind.name.lower()} pointer (R{reg})",
                                   where=ctx.where(pc), hint="pass a buffer on the stack, in a map value or in the packet")
        kinds |= kind << 2 * i
    ctx.emit(Instruction(Op.IMMED, dest=GprBoth(ARG_PTR_KINDS.index), imm=kinds))


def call_routine(ctx, pc: int, routine: Routine) -> None:
    """``br`` to a firmware routine with the return address loaded in the defer slot."""
    back = ctx.new_label(f"ret{pc}_")
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS, defer=1), reloc=MReloc(RelocKind.ROUTINE_ADDR, routine.symbol))
    ctx.emit(Instruction(Op.LOAD_ADDR, dest=RETURN_ADDRESS_REG), target=back)
    ctx.emit.label(back)


# -- map-cache (passes/map_cache.py): lookups lowered without the firmware call -----------------------


def _map_cache_plan(ctx):
    return ctx.plan("map-cache") if ctx.enabled("map-cache") else None


def _cached_lookup(ctx, pc: int) -> bool:
    """Lower the lookup at ``pc`` as the map-cache plan says; False: make the call."""
    plan = _map_cache_plan(ctx)
    how = plan.lookups.get(pc) if plan is not None else None
    if how is None:
        return False
    from nfpjit.passes.map_cache import Direct, Inline, Reuse, nn_slot, slot_size

    if isinstance(how, Direct):
        # the value's EMEM address: map i's table at bits 39..32 = 0x10 + i, slot key * round8(value size)
        if how.index is None:
            lo, hi = 0, 0
        else:
            lo = how.index * slot_size(ctx.program.maps[how.map].value_size)
            hi = lm.map_table_hi(how.map)
        lm.emit_all(ctx, load_const(lm.lo_ab(0), lo))
        lm.emit_all(ctx, load_const(lm.hi_ab(0), hi))
        return True
    if isinstance(how, Reuse):
        n_lo, n_hi = nn_slot(how.slot)
        ctx.emit(lm.mov(lm.lo_ab(0), NN(n_lo)))
        ctx.emit(lm.mov(lm.hi_ab(0), NN(n_hi)))
        return True
    if isinstance(how, Inline):
        _inline_array_lookup(ctx, pc, how.map)
        _save_lookup(ctx, pc)
        return True
    return False


def _inline_array_lookup(ctx, pc: int, index: int) -> None:
    """R0 = key < max_entries ? table + key * slot : NULL, the u32 key read from LM at R2."""
    from nfpjit.passes.map_cache import slot_size

    mdef = ctx.program.maps[index]
    stride = slot_size(mdef.value_size)
    key = LMem(LM_CALL_POINTER, 0)
    done = ctx.new_label(f"mc{pc}_")
    ctx.emit(Instruction(Op.CSR_WR, b=lm.lo_b(2), csr=Csr(Csr.ACTIVE_LM_ADDR_0 + LM_CALL_POINTER)))
    # NULL first: these fill the LM pointer's 3-cycle wait
    ctx.emit(Instruction(Op.IMMED, dest=lm.lo_ab(0), imm=0))
    ctx.emit(Instruction(Op.IMMED, dest=lm.hi_ab(0), imm=0))
    ctx.emit(lm.nop())
    limit = lm.offset_operand(ctx, mdef.max_entries)
    ctx.emit(lm.alu(Op.SUB, NoDest(), key, limit))
    ctx.emit(Instruction(Op.BR, cond=Cond.HS), target=done)
    # key * stride: one shift (and add) per set bit of the slot size
    bits = [b for b in range(stride.bit_length()) if stride >> b & 1]
    ctx.emit(lm.shf(lm.lo_ab(0), key, ShiftKind.SHL, bits[0]))
    for b in bits[1:]:
        ctx.emit(Instruction(Op.ALU_SHF, dest=lm.lo_ab(0), a=lm.lo_a(0), b=key, alu=AluOp.ADD,
                             shift=ShiftKind.SHL, amount=b))
    lm.emit_all(ctx, load_const(lm.hi_ab(0), lm.map_table_hi(index)))
    ctx.emit.label(done)


def _save_lookup(ctx, pc: int) -> None:
    """Keep the result of a lookup a later one reuses in its next-neighbour register pair."""
    plan = _map_cache_plan(ctx)
    slot = plan.saves.get(pc) if plan is not None else None
    if slot is None:
        return
    from nfpjit.passes.map_cache import nn_slot

    n_lo, n_hi = nn_slot(slot)
    ctx.emit(lm.mov(NN(n_lo), lm.lo_b(0)))
    ctx.emit(lm.mov(NN(n_hi), lm.hi_b(0)))


def _lm_argument(ctx, pc: int, facts, reg: int, what: str, helper: Helper) -> None:
    """Make R<reg> an LM byte address of the key/value: as is on the stack, copied from elsewhere."""
    st = facts.regs[reg]
    if st.kind == RegKind.STACK:
        return
    if st.kind in (RegKind.MAP_VALUE, RegKind.PACKET):
        _copy_to_lm(ctx, pc, facts, reg, what)
        return
    raise UnsupportedError(f"{helper.name} {what} in a {st.kind.name.lower()} pointer (R{reg})",
                           where=ctx.where(pc), hint="keep keys and values on the stack")


def _copy_to_lm(ctx, pc: int, facts, reg: int, what: str) -> None:
    """Copy the map's key/value size bytes at R<reg> (EMEM or CTM) to the LM bounce area; R<reg> = its address."""
    mdef = ctx.program.maps[facts.regs[1].map]
    size = mdef.key_size if what == "key" else mdef.value_size
    words = (size + 3) // 4
    if words > 16:
        raise UnsupportedError(f"a {size}-byte map {what} outside the stack is too large to copy",
                               where=ctx.where(pc), hint="copy it to the stack first")
    layout = lm.layout_of(ctx)
    area = layout.bounce_key if what == "key" else layout.bounce_value
    st = facts.regs[reg]
    kind = st.kind
    if kind == RegKind.MAP_VALUE:
        # whole words are copied: they must stay inside the source value's 8-byte-rounded slot
        slot = (max(ctx.program.maps[st.map].value_size, 1) + 7) & ~7
        hi = st.off + (st.var.full.umax if st.var is not None else 0)
        if hi + 4 * words > slot:
            raise UnsupportedError(f"the {size}-byte map {what} ends too close to the end of its map value to be "
                                   "copied in whole words", where=ctx.where(pc), hint="copy it to the stack first")
    s = lm.scratch(ctx)
    done = 0
    while done < words:
        n = min(8, words - done)
        if kind == RegKind.PACKET:
            memory, a, b = lm.Memory.CTM, lm.lo_a(reg), lm.offset_operand(ctx, 4 * done)
        elif done == 0:
            memory, a, b = lm.Memory.EMEM, lm.hi_a(reg), lm.lo_b(reg)
        else:
            lm.add_const(ctx, s, lm.lo_a(reg), 4 * done)
            memory, a, b = lm.Memory.EMEM, lm.hi_a(reg), Gpr(Bank.B, s)
        ctx.emit(lm.command(Op.MEM_READ, memory, lm.IN0, a, b, n))
        lm.set_lm_pointer(ctx, LM_CALL_POINTER, area + 4 * done)
        for i in range(n):
            ctx.emit(lm.mov(LMem(LM_CALL_POINTER, i), lm.Xfer(lm.XferSide.IN, i)))
        done += n
    lm.emit_all(ctx, lm.load_const(lm.lo_ab(reg), area))
    lm.zero_hi(ctx, reg)


# -- bpf_loop --------------------------------------------------------------------------------

#: bpf_loop's limit on nr_loops (larger: -E2BIG) and its errors
BPF_MAX_LOOPS = 1 << 23
_EINVAL, _E2BIG = 22, 7


def _saved_regs(ctx, pc: int):
    """(save-area word, register, half) of the caller's R6..R9 a call at ``pc`` must keep: every half at
    -O0, from -O1 the halves read after the call."""
    return [(2 * i + half, r, half) for i, r in enumerate(CALLEE_SAVED) for half in (LO, HI)
            if not ctx.enabled("save-live") or half_live_out(ctx, pc, r, half)]


def _set_r0(ctx, value: int) -> None:
    lm.emit_all(ctx, load_const(lm.lo_ab(0), value & 0xFFFFFFFF))
    lm.emit_all(ctx, load_const(lm.hi_ab(0), value >> 32 & 0xFFFFFFFF))


def lower_loop(ctx, pc: int, insn: Insn) -> None:
    """bpf_loop(nr_loops, callback, ctx, flags) as a loop in NFP code around a BPF-to-BPF call.

    The kernel's rules: flags != 0 gives -EINVAL, nr_loops (u32) above 1 << 23 gives -E2BIG (zero-extended
    from 32 bits, as the verifier's inlined bpf_loop returns it); otherwise
    ``callback(i, ctx)`` for i = 0 .. nr_loops - 1 until one returns non-zero; R0 = the iterations run.
    The callback (known statically: the analysis' FUNC fact for R2) is called like a BPF-to-BPF callee;
    index, count and context live in the caller's loop area (LM), R6..R9 are saved around the loop.
    """
    facts = _facts(ctx, pc)
    fn = facts.regs[2]
    if fn.kind != RegKind.FUNC:
        raise UnsupportedError("bpf_loop callback that is not a known function", where=ctx.where(pc),
                               hint="pass the callback's name directly as bpf_loop's second argument")
    layout = lm.layout_of(ctx)
    caller = layout.frame_at(pc)
    callee = layout.frames.get(fn.off)
    if callee is None or not caller.loop_area:
        raise UnsupportedError(f"bpf_loop callback at pc {fn.off}, which starts no function", where=ctx.where(pc))
    s = lm.scratch(ctx)
    einval, e2big, head, back = (ctx.new_label(f"{n}{pc}_") for n in ("loopinval", "loopbig", "loop", "loopret"))
    stop, finished, restore, done = (ctx.new_label(f"{n}{pc}_") for n in ("loopstop", "loopend", "looprest", "loopdone"))
    i_, n_, c_lo, c_hi = (LMem(LM_CALL_POINTER, k) for k in range(4))
    # flags (64-bit) must be 0; nr_loops (its low word) at most 1 << 23
    ctx.emit(lm.alu(Op.OR, NoDest(), lm.lo_a(4), lm.hi_b(4)))
    ctx.emit(Instruction(Op.BR, cond=Cond.NE), target=einval)
    lm.emit_all(ctx, load_const(GprBoth(s), BPF_MAX_LOOPS + 1))
    ctx.emit(lm.alu(Op.SUB, NoDest(), lm.lo_a(1), Gpr(Bank.B, s)))
    ctx.emit(Instruction(Op.BR, cond=Cond.HS), target=e2big)
    # the loop's state: index 0, count, the callback's context
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.loop_slot)
    ctx.emit(Instruction(Op.IMMED, dest=GprBoth(s), imm=0))
    ctx.emit(lm.mov(i_, Gpr(Bank.B, s)))
    ctx.emit(lm.mov(n_, lm.lo_b(1)))
    ctx.emit(lm.mov(c_lo, lm.lo_b(3)))
    ctx.emit(lm.mov(c_hi, lm.hi_b(3)))
    saved = _saved_regs(ctx, pc)
    if saved:
        lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.save_slot)
    for word, r, half in saved:
        ctx.emit(lm.mov(LMem(LM_CALL_POINTER, word), (lm.lo_b, lm.hi_b)[half](r)))
    # head: i < count?  R1 = i, R2 = context, call the callback
    ctx.emit.label(head)
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.loop_slot)
    ctx.emit(lm.mov(lm.lo_ab(1), i_))
    ctx.emit(lm.alu(Op.SUB, NoDest(), lm.lo_a(1), n_))
    ctx.emit(Instruction(Op.BR, cond=Cond.HS), target=finished)
    ctx.emit(Instruction(Op.IMMED, dest=lm.hi_ab(1), imm=0))
    ctx.emit(lm.mov(lm.lo_ab(2), c_lo))
    ctx.emit(lm.mov(lm.hi_ab(2), c_hi))
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, callee.return_slot)
    ctx.emit(Instruction(Op.LOAD_ADDR, dest=GprBoth(s)), target=back)
    ctx.emit(lm.mov(LMem(LM_CALL_POINTER, 0), Gpr(Bank.B, s)))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=ctx.label_for(callee.start))
    ctx.emit.label(back)
    lm.forget_lm_pointer(ctx)
    # a non-zero return stops the loop: R0 = i + 1; else i += 1 and around again.  The verifier keeps a
    # callback's return in [0, 1], so its high word is 0 and may not even be computed (subreg)
    ctx.emit(lm.alu(Op.OR, NoDest(), lm.lo_a(0), lm.offset_operand(ctx, 0)))
    ctx.emit(Instruction(Op.BR, cond=Cond.NE), target=stop)
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.loop_slot)
    ctx.emit(lm.mov(GprBoth(s), i_))
    ctx.emit(lm.alu(Op.ADD, i_, Gpr(Bank.A, s), lm.offset_operand(ctx, 1)))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=head)
    ctx.emit.label(stop)
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.loop_slot)
    ctx.emit(lm.mov(GprBoth(s), i_))
    ctx.emit(lm.alu(Op.ADD, lm.lo_ab(0), Gpr(Bank.A, s), lm.offset_operand(ctx, 1)))
    ctx.emit(Instruction(Op.IMMED, dest=lm.hi_ab(0), imm=0))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=restore)
    ctx.emit.label(finished)
    ctx.emit(lm.mov(lm.lo_ab(0), n_))             # LM pointer 1 still at the loop area (head set it)
    ctx.emit(Instruction(Op.IMMED, dest=lm.hi_ab(0), imm=0))
    ctx.emit.label(restore)
    if saved:
        lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.save_slot)
    for word, r, half in saved:
        ctx.emit(lm.mov((lm.lo_ab, lm.hi_ab)[half](r), LMem(LM_CALL_POINTER, word)))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=done)
    ctx.emit.label(einval)
    _set_r0(ctx, -_EINVAL)
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=done)
    ctx.emit.label(e2big)
    _set_r0(ctx, -_E2BIG & 0xFFFFFFFF)      # the kernel's inlined bpf_loop: a 32-bit move (flags is 0 here)
    ctx.emit.label(done)
    lm.forget_lm_pointer(ctx)


# -- BPF-to-BPF calls -----------------------------------------------------------------------


def lower_local_call(ctx, pc: int, insn: Insn) -> None:
    layout = lm.layout_of(ctx)
    caller = layout.frame_at(pc)
    target = insn.jump_target(pc)
    callee = layout.frames.get(target)
    if callee is None:
        raise UnsupportedError(f"call to pc {target}, which starts no function", where=ctx.where(pc))
    s = lm.scratch(ctx)
    back = ctx.new_label(f"ret{pc}_")
    # save R6..R9 of the caller: every half at -O0, from -O1 the halves read after the call
    saved = _saved_regs(ctx, pc)
    if saved:
        lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.save_slot)
    for word, r, half in saved:
        ctx.emit(lm.mov(LMem(LM_CALL_POINTER, word), (lm.lo_b, lm.hi_b)[half](r)))
    # the callee returns through its return slot
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, callee.return_slot)
    ctx.emit(Instruction(Op.LOAD_ADDR, dest=GprBoth(s)), target=back)
    ctx.emit(lm.mov(LMem(LM_CALL_POINTER, 0), Gpr(Bank.B, s)))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=ctx.label_for(target))
    ctx.emit.label(back)
    lm.forget_lm_pointer(ctx)       # the callee's stack accesses moved LM pointer 0
    if saved:
        lm.set_lm_pointer(ctx, LM_CALL_POINTER, caller.save_slot)
    for word, r, half in saved:
        ctx.emit(lm.mov((lm.lo_ab, lm.hi_ab)[half](r), LMem(LM_CALL_POINTER, word)))


def lower_return(ctx, pc: int, insn: Insn) -> None:
    """``exit`` of a BPF-to-BPF callee: return through the function's return slot (R0 stays in place)."""
    frame = lm.layout_of(ctx).frame_at(pc)
    lm.set_lm_pointer(ctx, LM_CALL_POINTER, frame.return_slot)
    ctx.emit(Instruction(Op.RTN, a=LMem(LM_CALL_POINTER, 0)))


#: eBPF opcode byte -> handler, merged into nfpjit.jit.lower's table
HANDLERS = {int(InsnClass.JMP | JmpOp.CALL): lower_call}

__all__ = ["HANDLERS", "lower_call", "lower_helper_call", "lower_local_call", "lower_return", "call_routine",
           "supported_helpers", "HELPER_ROUTINES", "LM_CALL_POINTER", "CALLEE_SAVED"]

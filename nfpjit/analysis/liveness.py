"""Register liveness per 32-bit half: which register halves an instruction reads, writes, and which are live.

The NFP is a 32-bit machine: every eBPF register is a pair of words, so the
useful question is not "is R3 live" but "is the high word of R3 ever read
again".  A 32-bit ALU op, a JMP32 compare and a narrow store read only low
halves; a 32-bit ALU op still writes the high half (zero-extension), and the
lowering may skip that write when :meth:`Liveness.hi32_live_out` says nobody
reads it.  Liveness is computed per function, backwards over the CFG;
a local call reads the argument halves its callee reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.analysis.cfg import CFG, insn_successors
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AluOp, AtomicOp, Helper, InsnClass, JmpOp, Mode, Size, Source
from nfpjit.ebpf.program import Program

LO = 0
HI = 1


def bit(reg: int, half: int) -> int:
    return 1 << (2 * reg + half)


def both(reg: int) -> int:
    return bit(reg, LO) | bit(reg, HI)


ARGS = [0, both(1), both(1) | both(2), both(1) | both(2) | both(3),
        both(1) | both(2) | both(3) | both(4), both(1) | both(2) | both(3) | both(4) | both(5)]
CALLER_SAVED = ARGS[5]

# Number of arguments of the helpers XDP/TC programs use (include/uapi/linux/bpf.h).
HELPER_ARITY: dict[int, int] = {
    Helper.map_lookup_elem: 2, Helper.map_update_elem: 4, Helper.map_delete_elem: 2,
    Helper.ktime_get_ns: 0, Helper.ktime_get_boot_ns: 0, Helper.ktime_get_coarse_ns: 0,
    Helper.ktime_get_tai_ns: 0, Helper.trace_printk: 5, Helper.get_prandom_u32: 0,
    Helper.get_smp_processor_id: 0, Helper.get_numa_node_id: 0, Helper.tail_call: 3,
    Helper.redirect: 2, Helper.redirect_map: 3, Helper.perf_event_output: 5,
    Helper.xdp_adjust_head: 2, Helper.xdp_adjust_tail: 2, Helper.xdp_adjust_meta: 2,
    Helper.csum_diff: 5, Helper.fib_lookup: 4, Helper.xdp_get_buff_len: 1,
    Helper.xdp_load_bytes: 4, Helper.xdp_store_bytes: 4, Helper.skb_load_bytes: 4,
    Helper.skb_store_bytes: 5, Helper.l3_csum_replace: 5, Helper.l4_csum_replace: 5,
    Helper.skb_change_tail: 3, Helper.skb_change_head: 3, Helper.skb_pull_data: 2,
    Helper.skb_adjust_room: 4, Helper.clone_redirect: 3, Helper.skb_vlan_push: 3,
    Helper.skb_vlan_pop: 1, Helper.get_hash_recalc: 1, Helper.csum_update: 2,
    Helper.set_hash_invalid: 1, Helper.set_hash: 2, Helper.skb_change_proto: 3,
    Helper.skb_change_type: 2, Helper.get_cgroup_classid: 1, Helper.get_route_realm: 1,
    Helper.skb_load_bytes_relative: 5, Helper.loop: 4, Helper.for_each_map_elem: 4,
    Helper.get_smp_processor_id: 0, Helper.check_mtu: 5, Helper.map_push_elem: 3, Helper.map_pop_elem: 2,
    Helper.map_peek_elem: 2, Helper.ringbuf_output: 4, Helper.ringbuf_reserve: 3, Helper.ringbuf_submit: 2,
    Helper.ringbuf_discard: 2, Helper.ringbuf_query: 2,
}


def helper_args(helper_id: int) -> int:
    """Registers read by helper ``helper_id``: a bit set (R1..Rn, both halves); unknown helpers read R1-R5."""
    return ARGS[HELPER_ARITY.get(helper_id, 5)]


@dataclass(frozen=True)
class UseDef:
    """Halves an instruction reads (``use``), writes (``define``), and leaves undefined (``kill``)."""

    use: int
    define: int
    kill: int = 0


def _alu_reads_src_lo_only(insn: Insn) -> bool:
    return insn.alu_op == AluOp.MOV and insn.off == 32


def use_def(insn: Insn, *, callee_args: int | None = None, main_exit: bool = True) -> UseDef:
    """Register-half reads and writes of one instruction.

    ``callee_args``: for a local call, the argument halves the callee reads (R1-R5 if None).
    ``main_exit``: an exit of the entry function reads only R0's low half (XDP/TC
    verdicts are 32-bit); a callee's exit returns all of R0.
    """
    cls = insn.cls
    fp = 0
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        wide = cls == InsnClass.ALU64
        half = both if wide else (lambda r: bit(r, LO))
        op = insn.alu_op
        if op == AluOp.END:
            src = bit(insn.dst, LO) if insn.imm in (16, 32) else both(insn.dst)
            return UseDef(src, both(insn.dst))
        use = 0
        if op != AluOp.MOV:
            use |= half(insn.dst)
        if insn.source == Source.X and op != AluOp.NEG:
            if op == AluOp.MOV and insn.off in (8, 16, 32):
                use |= bit(insn.src, LO)
            elif op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
                # the shift amount is masked to 5/6 bits: only its low word matters
                use |= bit(insn.src, LO)
            else:
                use |= half(insn.src)
        return UseDef(use, both(insn.dst))
    if cls in (InsnClass.JMP, InsnClass.JMP32):
        op = insn.jmp_op
        if op == JmpOp.EXIT:
            return UseDef(bit(0, LO) if main_exit else both(0), 0)
        if op == JmpOp.CALL:
            if insn.is_helper_call:
                args = helper_args(insn.imm)
            else:
                args = CALLER_SAVED if callee_args is None else callee_args
            return UseDef(args, both(0), CALLER_SAVED)
        if op == JmpOp.JA:
            return UseDef(0, 0)
        half = both if cls == InsnClass.JMP else (lambda r: bit(r, LO))
        use = half(insn.dst)
        if insn.source == Source.X:
            use |= half(insn.src)
        return UseDef(use, 0)
    if cls == InsnClass.LD:
        if insn.is_ld_imm64:
            return UseDef(0, both(insn.dst))
        use = both(6)
        if insn.mode == Mode.IND:
            use |= bit(insn.src, LO)
        return UseDef(use, both(0), CALLER_SAVED)
    if cls == InsnClass.LDX:
        return UseDef(both(insn.src) | fp, both(insn.dst))
    if cls == InsnClass.ST:
        return UseDef(both(insn.dst), 0)
    # STX
    val = both(insn.src) if insn.size == Size.DW else bit(insn.src, LO)
    use = both(insn.dst) | val
    if insn.mode == Mode.ATOMIC:
        aop = insn.imm & 0xFFFFFFFF
        define = 0
        if aop == AtomicOp.CMPXCHG:
            use |= both(0) if insn.size == Size.DW else bit(0, LO)
            define = both(0)
        elif aop & AtomicOp.FETCH_ADD:
            define = both(insn.src)
        return UseDef(use, define)
    return UseDef(use, 0)


def halves(mask: int) -> frozenset[tuple[int, int]]:
    """A bit set as ``{(reg, half), ...}``."""
    return frozenset((i // 2, i % 2) for i in range(22) if mask >> i & 1)


def solve_function(program, fn, transfer) -> tuple[dict[int, int], dict[int, int]]:
    """Backward liveness over one function's instructions to the fixed point: (live_in, live_out) per pc.

    ``transfer[pc](live_out) -> live_in`` for every instruction pc of ``fn``; successors outside the
    function (calls, exits) contribute nothing: the transfer of the instruction accounts for them.
    """
    pcs = [pc for pc in program.pcs if fn.start <= pc < fn.end]
    succ = {pc: [t for t in insn_successors(program.at(pc), pc) if fn.start <= t < fn.end
                 and t in program.index_at_pc] for pc in pcs}
    live_in = {pc: 0 for pc in pcs}
    live_out = {pc: 0 for pc in pcs}
    changed = True
    while changed:
        changed = False
        for pc in reversed(pcs):
            out = 0
            for t in succ[pc]:
                out |= live_in[t]
            new_in = transfer[pc](out)
            if out != live_out[pc] or new_in != live_in[pc]:
                live_out[pc], live_in[pc] = out, new_in
                changed = True
    return live_in, live_out


class Liveness:
    """Live register halves before and after every instruction (bit sets; see :func:`bit`)."""

    def __init__(self, program: Program, cfg: CFG, *, full_r0: bool = False):
        self.program = program
        self.cfg = cfg
        self.full_r0 = full_r0  # the entry's exit returns all 64 bits of R0 (raw-context programs)
        self.live_in: dict[int, int] = {}
        self.live_out: dict[int, int] = {}
        self._solve()

    def _solve(self) -> None:
        program, cfg = self.program, self.cfg
        entry_args: dict[int, int] = {fn.start: CALLER_SAVED for fn in cfg.functions}
        # Callee argument use feeds callers: iterate the per-function solutions to a fixpoint.
        for _ in range(len(cfg.functions) + 1):
            changed = False
            for fn in cfg.functions:
                self._solve_function(fn, entry_args)
                args = self.live_in.get(fn.start, 0) & CALLER_SAVED
                if fn.start != 0 and entry_args.get(fn.start) != args:
                    entry_args[fn.start] = args
                    changed = True
            if not changed:
                break
        self._entry_args = entry_args

    def _solve_function(self, fn, entry_args: dict[int, int]) -> None:
        program = self.program
        transfer = {}
        for pc in range(fn.start, fn.end):
            if pc not in program.index_at_pc:
                continue
            insn = program.at(pc)
            callee = insn.jump_target(pc) if insn.is_local_call else None
            u = use_def(insn, callee_args=entry_args.get(callee) if callee is not None else None,
                        main_exit=fn.start == 0 and not self.full_r0)
            transfer[pc] = lambda out, u=u: u.use | (out & ~(u.define | u.kill))
        live_in, live_out = solve_function(program, fn, transfer)
        self.live_in.update(live_in)
        self.live_out.update(live_out)

    def is_live_out(self, pc: int, reg: int, half: int = LO) -> bool:
        return bool(self.live_out.get(pc, 0) & bit(reg, half))

    def hi32_live_out(self, pc: int, reg: int) -> bool:
        """Whether the high word of ``reg`` written at ``pc`` may be read later."""
        return self.is_live_out(pc, reg, HI)

    def live_regs_in(self, pc: int) -> frozenset[int]:
        """Registers with at least one live half before ``pc``."""
        m = self.live_in.get(pc, 0)
        return frozenset(r for r in range(11) if m & both(r))

    def callee_args(self, start_pc: int) -> int:
        return self._entry_args.get(start_pc, CALLER_SAVED)

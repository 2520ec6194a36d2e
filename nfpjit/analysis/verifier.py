"""Abstract interpretation of an eBPF program over all paths, in the manner of the kernel verifier.

The verifier walks every path from the entry, depth first, with an abstract
:class:`~nfpjit.analysis.state.State`.  A conditional jump whose outcome the
state decides follows one side only; otherwise both sides are explored with
the condition applied (ranges narrowed, a NULL check turning a lookup result
into a map value or zero, a comparison with ``data_end`` proving packet
bytes).  At block starts a state already covered by one explored before is
pruned; one covered by a state still being explored on the same path means a
loop that can never make progress, and too many trips round one loop on a path
mean no provable bound: both are reported as unbounded loops.  Each problem
ends its path; the others go on, so one run reports every distinct problem.

What the walk learns is kept per instruction as :class:`InsnFacts` (register
states joined over all paths, memory accesses, high-word facts, constants,
branch outcomes), which is what the lowering to NFP-32 consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nfpjit.analysis.cfg import CFG
from nfpjit.analysis.helpers import Arg, Ret, helper_name, helper_signature, map_helper_compatible
from nfpjit.analysis.liveness import CALLER_SAVED, HI, LO, Liveness, bit, both
from nfpjit.analysis.scalar import Bounds, Scalar, refine_scalar, scalar_branch, SWAP, NEGATE
from nfpjit.analysis.state import (
    EMPTY_SLOT, Byte, Frame, RegKind, RegState, Slot, State, join_regs, regs_safe, slots_safe,
)
from nfpjit.bits import MASK32, MASK64, sext, trunc
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import (
    AluOp, AtomicOp, Helper, InsnClass, JmpOp, MapType, Mode, ProgType, PseudoSrc, Size, Source,
)
from nfpjit.ebpf.program import Program

MAX_STACK = 512
MAX_CALL_FRAMES = 8
MAX_PACKET_OFF = 0xFFFF
MAX_VAR_OFF = 1 << 29
BPF_F_RDONLY_PROG = 1 << 7
CONST_KEY_MAPS = (MapType.ARRAY, MapType.PERCPU_ARRAY)

K = RegKind


@dataclass(frozen=True)
class VerifierProblem:
    """One reason the program is unsafe: where, a stable ``code`` and a kernel-like message."""

    pc: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"insn {self.pc}: {self.message}"


@dataclass(frozen=True)
class MemAccess:
    """A load or store: the pointer's kind, the map (by name) if any, byte offsets from the object's start.

    For the stack, offsets are relative to the frame pointer of ``frame`` (negative);
    for packets, to ``data``; for map values, to the value's start; for the context, to its start.
    """

    kind: RegKind
    map: str | None
    offset: tuple[int, int]
    size: int
    write: bool
    frame: int | None = None


@dataclass(frozen=True)
class InsnFacts:
    """What holds before (and for the destination, after) one reachable instruction, over all paths."""

    pc: int
    reachable: bool
    regs: tuple[RegState, ...]                      # R0-R10 before the instruction (current frame)
    mem: MemAccess | None = None                    # loads, stores, atomics
    dst_hi32_zero: bool | None = None               # destination's high word known zero afterwards
    hi32_live_out: bool = True                      # destination's high word may be read afterwards
    src_const: int | None = None                    # constant second operand (imm or known register)
    src_range: tuple[int, int] | None = None        # unsigned range of the second operand
    branch_taken: bool | None = None                # conditional jump: always (True) / never (False)
    live_in: int = 0                                # live register halves (see liveness.bit)
    live_out: int = 0

    def reg(self, n: int) -> RegState:
        return self.regs[n]


class _Node:
    """A stored state's exploration bookkeeping: done once every path through it has ended."""

    __slots__ = ("parent", "pending", "done", "pc")

    def __init__(self, parent: "_Node | None", pc: int):
        self.parent = parent
        self.pending = 1
        self.done = False
        self.pc = pc


class _PathEnd(Exception):
    """Internal: the current path stops (after a problem was recorded)."""


@dataclass
class _Acc:
    """Per-instruction facts being joined."""

    regs: list[RegState]
    mem: MemAccess | None = None
    mem_conflict: bool = False
    hi_zero: bool | None = None
    src_const: int | None = None
    src_const_conflict: bool = False
    src_range: tuple[int, int] | None = None
    taken: set = field(default_factory=set)


XDP_CTX = {0: K.PACKET, 4: K.PACKET_END, 8: K.PACKET_META, 12: K.SCALAR, 16: K.SCALAR, 20: K.SCALAR}
XDP_CTX_SIZE = 24
SKB_CTX_PTRS = {76: K.PACKET, 80: K.PACKET_END, 140: K.PACKET_META}
SKB_CTX_READ = set(range(0, 76, 4)) | {84, 160, 164, 176}
SKB_CTX_WRITE = {8, 12, 32, 44, 48, 52, 56, 60, 64, 72}
SKB_CTX_SIZE = 192
#: raw-context mode: bytes past R1 an access may reach without a bounds check (the engine checks at run time)
RAW_CONTEXT_RANGE = MAX_PACKET_OFF


class Verifier:
    def __init__(self, program: Program, cfg: CFG, liveness: Liveness, *,
                 max_insns: int = 1_000_000, max_loop_iterations: int = 4096, allow_uninit_stack: bool = False,
                 raw_context: bool = False):
        self.p = program
        self.raw_context = raw_context
        self.allow_uninit_stack = allow_uninit_stack
        self.cfg = cfg
        self.live = liveness
        self.max_insns = max_insns
        self.max_loop_iterations = max_loop_iterations
        self.problems: list[VerifierProblem] = []
        self._problem_keys: set[tuple[int, str]] = set()
        self.acc: dict[int, _Acc] = {}
        self.visited: dict[int, list[tuple[State, _Node]]] = {}
        self.open_at: dict[int, int] = {}
        self.prune_points = set(cfg.blocks)
        self.processed = 0
        self.next_id = 0
        self.stack_use: dict[int, int] = {}  # function start pc -> deepest byte used
        self.pc: int = 0
        self.is_tc = program.prog_type in (ProgType.SCHED_CLS, ProgType.SCHED_ACT)
        # The maps a RegState.map may name: the program's, then the inner-map template of each
        # map-in-map (what a NULL-checked lookup in the outer map points to).
        self.maps = list(program.maps)
        self.inner_of: dict[int, int] = {}
        for i, m in enumerate(program.maps):
            if m.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) and m.inner is not None:
                self.inner_of[i] = len(self.maps)
                self.maps.append(m.inner)
        # bpf_loop call sites: a callback returns to its call, which may call it again, so they are
        # prune points where a state covered by one still being explored is a fixpoint, not a loop
        self.callback_sites = {pc for pc, insn in program.slots()
                               if insn.is_helper_call and insn.imm in (Helper.loop, Helper.for_each_map_elem)}
        self.prune_points |= self.callback_sites
        self.function_starts = {fn.start for fn in cfg.functions}

    # -- problems ------------------------------------------------------------
    def fail(self, code: str, message: str, pc: int | None = None):
        pc = self.pc if pc is None else pc
        key = (pc, code)
        if key not in self._problem_keys:
            self._problem_keys.add(key)
            self.problems.append(VerifierProblem(pc, code, message))
        raise _PathEnd()

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- driver ----------------------------------------------------------------
    def run(self) -> None:
        entry = self.initial_state()
        root = _Node(None, -1)
        work: list[tuple[int, State, _Node, int]] = [(0, entry, root, -1)]
        while work:
            pc, st, node, prev = work.pop()
            node = self.walk(pc, st, node, prev, work)
            self.finish(node)
            if self.processed > self.max_insns:
                self.problems.append(VerifierProblem(
                    self.pc, "too_complex", f"BPF program is too large. Processed {self.processed} insn"))
                break

    def finish(self, node: _Node) -> None:
        n: _Node | None = node
        while n is not None:
            n.pending -= 1
            if n.pending > 0:
                return
            n.done = True
            if n.pc >= 0:
                self.open_at[n.pc] -= 1
            n = n.parent

    def initial_state(self) -> State:
        regs = [RegState() for _ in range(11)]
        regs[1] = RegState(K.CTX)
        if self.raw_context:
            # uBPF/bpf_conformance convention: registers start at zero, R1 points at a memory block whose
            # length (R2) is known only at run time; accesses through it are checked by the engine
            regs = [RegState.const(0) for _ in range(11)]
            regs[1] = RegState(K.PACKET, range=RAW_CONTEXT_RANGE)
            regs[2] = RegState.scalar(Scalar.unknown().truncate(4))
        regs[10] = RegState(K.STACK, frame=0)
        return State([Frame(regs, {}, -1, 0, 0)])

    def walk(self, pc: int, st: State, node: _Node, prev: int, work) -> _Node:
        """Follow one path until it ends; returns the last bookkeeping node of the path."""
        while True:
            self.pc = pc
            self.processed += 1
            if self.processed > self.max_insns:
                return node
            if pc not in self.p.index_at_pc:
                self.problems.append(VerifierProblem(prev, "jump_out_of_range",
                                                     f"jump out of range from insn {prev} to {pc}"))
                return node
            if pc in self.prune_points and prev >= 0:
                verdict = self.check_visited(pc, st, prev)
                if verdict == "prune":
                    self.record(pc, st)
                    return node
                if verdict == "loop":
                    return node
                new = _Node(node, pc)
                self.open_at[pc] = self.open_at.get(pc, 0) + 1
                self.visited.setdefault(pc, []).append((st.copy(), new))
                node = new
            self.record(pc, st)
            insn = self.p.at(pc)
            try:
                succs = self.step(insn, pc, st)
            except _PathEnd:
                return node
            if not succs:
                return node
            for extra_pc, extra_state in succs[1:]:
                node.pending += 1
                work.append((extra_pc, extra_state, node, pc))
            prev = pc
            pc, st = succs[0]

    def check_visited(self, pc: int, st: State, prev: int) -> str | None:
        entries = self.visited.get(pc)
        if not entries:
            return None
        for old, onode in reversed(entries[-64:]):
            if self.states_safe(old, st, pc):
                # covered by a state still being explored: on this very path (depth first), so a loop,
                # unless the path went through a callback's return since (bpf_loop bounds those trips)
                if onode.done or pc in self.callback_sites or old.callback_returns != st.callback_returns:
                    return "prune"
                self.loop_problem(pc, prev, "infinite loop")
                return "loop"
        if self.open_at.get(pc, 0) >= self.max_loop_iterations:
            self.loop_problem(pc, prev, "no provable bound")
            return "loop"
        return None

    def loop_problem(self, pc: int, prev: int, why: str) -> None:
        key = (prev, "unbounded_loop")
        if key not in self._problem_keys:
            self._problem_keys.add(key)
            self.problems.append(VerifierProblem(prev, "unbounded_loop", f"back-edge from insn {prev} to {pc} ({why})"))

    def states_safe(self, old: State, new: State, pc: int) -> bool:
        if len(old.frames) != len(new.frames):
            return False
        ids: dict[int, int] = {}
        for depth, (fo, fn) in enumerate(zip(old.frames, new.frames)):
            if fo.callsite != fn.callsite:
                return False
            if depth == len(old.frames) - 1:
                live = self.live.live_in.get(pc, MASK64)
            elif old.frames[depth + 1].callsite in self.callback_sites:
                # a callback returns to its bpf_loop call, which reads its arguments again
                live = self.live.live_in.get(old.frames[depth + 1].callsite, MASK64)
            else:
                ret = old.frames[depth + 1].callsite
                nxt = ret + self.p.at(ret).width
                live = self.live.live_in.get(nxt, MASK64) & ~CALLER_SAVED & ~both(0)
            for r in range(10):
                if not live & both(r):
                    continue
                if not regs_safe(fo.regs[r], fn.regs[r], ids):
                    return False
            for k, so in fo.stack.items():
                if not slots_safe(so, fn.stack.get(k, EMPTY_SLOT), ids):
                    return False
        if len(old.refs) != len(new.refs):
            return False
        for rid in old.refs:  # the same references, tied to the same registers
            mapped = ids.get(rid, rid if rid in new.refs else None)
            if mapped is None or mapped not in new.refs:
                return False
        return True

    # -- facts -----------------------------------------------------------------
    def record(self, pc: int, st: State) -> None:
        regs = st.cur.regs
        acc = self.acc.get(pc)
        if acc is None:
            self.acc[pc] = _Acc(list(regs))
            return
        a = acc.regs
        for i in range(11):
            if a[i] is not regs[i] and a[i] != regs[i]:
                a[i] = join_regs(a[i], regs[i])

    def note_mem(self, access: MemAccess) -> None:
        acc = self.acc[self.pc]
        if acc.mem is None and not acc.mem_conflict:
            acc.mem = access
        elif acc.mem is not None and acc.mem != access:
            old = acc.mem
            if (old.kind, old.map, old.size, old.frame) == (access.kind, access.map, access.size, access.frame):
                acc.mem = replace(old, offset=(min(old.offset[0], access.offset[0]),
                                               max(old.offset[1], access.offset[1])),
                                  write=old.write or access.write)
            else:
                acc.mem = MemAccess(K.MIXED, None, (min(old.offset[0], access.offset[0]),
                                                    max(old.offset[1], access.offset[1])), max(old.size, access.size),
                                    old.write or access.write)

    def note_src(self, s: Scalar) -> None:
        acc = self.acc[self.pc]
        v = s.value
        if acc.src_range is None:
            acc.src_const = v
            acc.src_range = (s.umin, s.umax)
            return
        if acc.src_const != v:
            acc.src_const = None
            acc.src_const_conflict = True
        acc.src_range = (min(acc.src_range[0], s.umin), max(acc.src_range[1], s.umax))

    def note_dst(self, reg: RegState) -> None:
        acc = self.acc[self.pc]
        zero = reg.kind == K.SCALAR and reg.var.hi32_zero
        acc.hi_zero = zero if acc.hi_zero is None else (acc.hi_zero and zero)

    # -- registers ---------------------------------------------------------------
    def read(self, st: State, r: int) -> RegState:
        reg = st.cur.regs[r]
        if reg.kind == K.NOT_INIT:
            self.fail("uninit_reg", f"R{r} !read_ok")
        return reg

    def write(self, st: State, r: int, reg: RegState) -> None:
        if r == 10:
            self.fail("frame_write", "frame pointer is read only")
        st.cur.regs[r] = reg

    # -- one instruction ------------------------------------------------------------
    def step(self, insn: Insn, pc: int, st: State) -> list[tuple[int, State]]:
        cls = insn.cls
        nxt = pc + insn.width
        if cls in (InsnClass.ALU, InsnClass.ALU64):
            self.alu(insn, st)
            self.note_dst(st.cur.regs[insn.dst])
            return [(nxt, st)]
        if cls == InsnClass.LD:
            if insn.is_ld_imm64:
                self.write(st, insn.dst, self.ld_imm64(insn))
            else:
                self.ld_abs(insn, st)
            self.note_dst(st.cur.regs[insn.dst if insn.is_ld_imm64 else 0])
            return [(nxt, st)]
        if cls == InsnClass.LDX:
            ptr = self.read(st, insn.src)
            nbytes = insn.size.nbytes
            val = self.mem_access(st, insn.src, ptr, insn.off, nbytes, write=False)
            if insn.mode == Mode.MEMSX:
                val = RegState.scalar(val.var.sign_extend(nbytes * 8, wide=True)) if val.is_scalar else RegState.unknown()
            self.write(st, insn.dst, val)
            self.note_dst(val)
            return [(nxt, st)]
        if cls == InsnClass.ST:
            ptr = self.read(st, insn.dst)
            self.mem_access(st, insn.dst, ptr, insn.off, insn.size.nbytes, write=True,
                            value=RegState.const(trunc(insn.imm, 64)))
            return [(nxt, st)]
        if cls == InsnClass.STX:
            if insn.mode == Mode.ATOMIC:
                self.atomic(insn, st)
                return [(nxt, st)]
            ptr = self.read(st, insn.dst)
            val = self.read(st, insn.src)
            self.mem_access(st, insn.dst, ptr, insn.off, insn.size.nbytes, write=True, value=val)
            return [(nxt, st)]
        # jumps
        op = insn.jmp_op
        if op == JmpOp.EXIT:
            return self.exit(st)
        if op == JmpOp.CALL:
            if insn.is_local_call:
                return self.local_call(insn, pc, st)
            if insn.src != 0:
                self.fail("unsupported", "kfunc calls are not supported")
            callback = self.helper_call(insn, pc, st)
            self.note_dst(st.cur.regs[0])
            return [(nxt, st)] + callback
        if op == JmpOp.JA:
            return [(insn.jump_target(pc), st)]
        return self.cond_jump(insn, pc, st)

    # -- ALU -------------------------------------------------------------------------
    def alu(self, insn: Insn, st: State) -> None:
        wide = insn.cls == InsnClass.ALU64
        op = insn.alu_op
        d = insn.dst
        if op == AluOp.END:
            reg = self.read(st, d)
            if reg.kind != K.SCALAR:  # a privileged loader may: the result is a number
                reg = RegState.unknown()
            to_be = insn.source == Source.X or wide
            self.write(st, d, RegState.scalar(reg.var.swap(insn.imm, to_be)))
            return
        if op == AluOp.NEG:
            reg = self.read(st, d)
            if reg.kind != K.SCALAR:
                reg = RegState.unknown()
            self.write(st, d, RegState.scalar(reg.var.neg(wide=wide)))
            return
        if insn.source == Source.X:
            src = self.read(st, insn.src)
        else:
            imm = trunc(insn.imm, 64) if wide else trunc(insn.imm, 32)
            src = RegState.const(imm)
        if src.kind == K.SCALAR:
            self.note_src(src.var)
        if op == AluOp.MOV:
            if insn.source == Source.X and insn.off:
                if src.kind != K.SCALAR:
                    src = RegState.unknown()
                self.write(st, d, RegState.scalar(src.var.sign_extend(insn.off, wide=wide)))
            elif wide:
                if src.kind == K.SCALAR and insn.source == Source.X and not src.var.is_const:
                    # copies share an id so that a later bounds check on one narrows the other
                    if not src.id:
                        src = replace(src, id=self.new_id())
                        st.cur.regs[insn.src] = src
                self.write(st, d, src)
            elif src.kind == K.SCALAR:
                self.write(st, d, RegState.scalar(Scalar.from_low(src.var.low)))
            else:
                self.write(st, d, RegState.scalar(Scalar.from_low(Bounds.unknown(32))))
            return
        dst = self.read(st, d)
        if op in (AluOp.DIV, AluOp.MOD) and insn.source == Source.K and insn.imm == 0:
            self.fail("div_by_zero", "div by zero")
        if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH) and insn.source == Source.K:
            if not 0 <= insn.imm < (64 if wide else 32):
                self.fail("invalid_shift", f"invalid shift {insn.imm}")
        if dst.kind == K.SCALAR and src.kind == K.SCALAR:
            if op in (AluOp.DIV, AluOp.MOD):
                # The kernel does not track quotients or remainders (not even of constants); neither do we, so that what
                # we accept is what it accepts (Scalar.alu could do better).
                result = Scalar.unknown() if wide else Scalar.from_low(Bounds.unknown(32))
                self.write(st, d, RegState.scalar(result))
                return
            result = RegState.scalar(dst.var.alu(op, src.var, wide=wide))
            if dst.id and wide and op in (AluOp.ADD, AluOp.SUB) and insn.source == Source.K:
                # still a copy plus a known delta: later checks narrow every copy (the kernel
                # links "r2 = r1 + const" the same way)
                delta = dst.off + (insn.imm if op == AluOp.ADD else -insn.imm)
                if abs(delta) < (1 << 31):
                    result = replace(result, id=dst.id, off=delta)
            self.write(st, d, result)
            return
        self.pointer_alu(insn, st, dst, src, wide)

    def pointer_alu(self, insn: Insn, st: State, dst: RegState, src: RegState, wide: bool) -> None:
        op, d = insn.alu_op, insn.dst
        if dst.kind.is_pointer and src.kind.is_pointer:
            if op == AluOp.SUB:
                # privileged loaders may subtract pointers; the result is a number
                if wide and dst.kind == src.kind == K.PACKET and dst.id == src.id and dst.var == src.var:
                    self.write(st, d, RegState.const(trunc(dst.off - src.off, 64)))
                elif wide:
                    self.write(st, d, RegState.unknown())
                else:
                    self.write(st, d, RegState.scalar(Scalar.from_low(Bounds.unknown(32))))
                return
            self.fail("ptr_arith", f"R{d} pointer {op.name.lower()} pointer prohibited")
        if not wide:
            if op == AluOp.SUB:
                # a privileged loader may do this: the result is a meaningless number
                self.write(st, d, RegState.scalar(Scalar.from_low(Bounds.unknown(32))))
                return
            self.fail("ptr_arith", f"R{d} 32-bit pointer arithmetic prohibited")
        if op not in (AluOp.ADD, AluOp.SUB):
            self.fail("ptr_arith", f"R{d} bitwise operator {op.name.lower()} on pointer prohibited")
        if dst.kind.is_pointer:
            ptr, scalar = dst, src.var
        else:
            if op == AluOp.SUB:
                self.fail("ptr_arith", f"R{d} tried to subtract pointer from scalar")
            ptr, scalar = src, dst.var
        if ptr.kind in (K.MAP_VALUE_OR_NULL, K.PACKET_END, K.MAP_PTR, K.RINGBUF_MEM_OR_NULL, K.FUNC):
            what = ptr.kind.kernel_name
            extra = ", null-check it first" if ptr.kind in (K.MAP_VALUE_OR_NULL, K.RINGBUF_MEM_OR_NULL) else ""
            self.fail("ptr_arith", f"R{d} pointer arithmetic on {what} prohibited{extra}")
        if op == AluOp.SUB and ptr.kind == K.STACK:
            self.fail("ptr_arith", f"R{d} subtraction from stack pointer prohibited")
        if scalar.is_const:
            c = sext(scalar.value, 64)
            off = ptr.off + c if op == AluOp.ADD else ptr.off - c
            if abs(off) >= MAX_VAR_OFF:
                self.fail("ptr_arith", f"R{d} pointer offset {off} is not allowed")
            self.write(st, d, replace(ptr, off=off))
            return
        name = ptr.kind.kernel_name
        self.sane_offset(scalar, name)
        var = ptr.var.alu(op, scalar, wide=True)
        self.sane_offset(var, name)
        new = replace(ptr, var=var)
        if ptr.kind in (K.PACKET, K.PACKET_META):
            new = replace(new, id=self.new_id(), range=0)
        self.write(st, d, new)

    def sane_offset(self, v: Scalar, name: str) -> None:
        """The kernel's limits on a pointer's variable offset (only its minimum is bounded here;
        each access checks the maximum against the object)."""
        if v.is_const:
            if abs(sext(v.value, 64)) >= MAX_VAR_OFF:
                self.fail("ptr_arith", f"math between {name} pointer and {sext(v.value, 64)} is not allowed")
            return
        if v.smin == -(1 << 63):
            self.fail("ptr_arith", f"math between {name} pointer and register with unbounded min value is not allowed")
        if abs(v.smin) >= MAX_VAR_OFF:
            self.fail("ptr_arith", f"value {v.smin} makes {name} pointer be out of bounds")

    def ld_imm64(self, insn: Insn) -> RegState:
        src = insn.src
        if src == PseudoSrc.IMM64:
            return RegState.const(insn.imm64)
        if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX, PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE):
            idx = insn.imm
            if not 0 <= idx < len(self.p.maps):
                self.fail("invalid_map", f"fd {idx} is not pointing to valid bpf_map")
            if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
                if insn.imm2:
                    self.fail("invalid_map", "unrecognized bpf_ld_imm64 insn")
                return RegState(K.MAP_PTR, map=idx)
            off = trunc(insn.imm2, 32)
            m = self.maps[idx]
            if m.type != MapType.ARRAY or m.max_entries != 1:
                self.fail("invalid_map", "no direct value access support for this map type")
            if off >= self.maps[idx].value_size:
                self.fail("invalid_map", f"invalid access to map value pointer, value_size={self.maps[idx].value_size} off={off}")
            return RegState(K.MAP_VALUE, off=off, map=idx)
        if src == PseudoSrc.FUNC:
            target = self.pc + 1 + insn.imm
            if target not in self.function_starts:
                self.fail("invalid_func", f"function pointer to insn {target} is not a subprogram start")
            return RegState(K.FUNC, off=target)
        self.fail("unsupported", f"ld_imm64 with pseudo source {src} is not supported")

    def ld_abs(self, insn: Insn, st: State) -> None:
        if not self.is_tc:
            self.fail("ld_abs", "BPF_LD_[ABS|IND] instructions not allowed for this program type")
        if st.refs:
            self.fail("ref_leak", "BPF_LD_[ABS|IND] would lead to reference leak")
        ctx = self.read(st, 6)
        if ctx.kind != K.CTX:
            self.fail("ld_abs", "at the time of BPF_LD_ABS|IND R6 != pointer to skb")
        if insn.mode == Mode.IND:
            if self.read(st, insn.src).kind != K.SCALAR:
                self.fail("ptr_arith", f"R{insn.src} pointer used as ld_ind offset")
        for r in range(1, 6):
            st.cur.regs[r] = RegState()
        st.cur.regs[0] = RegState.scalar(Scalar.unknown().truncate(insn.size.nbytes))

    # -- memory ---------------------------------------------------------------------
    def mem_access(self, st: State, regno: int, ptr: RegState, insn_off: int, size: int, *, write: bool,
                   value: RegState | None = None) -> RegState:
        kind = ptr.kind
        if kind == K.STACK:
            return self.stack_access(st, regno, ptr, insn_off, size, write, value)
        if kind in (K.PACKET, K.PACKET_META):
            lo, hi = self.packet_check(regno, ptr, insn_off, size)
            self.note_mem(MemAccess(kind, None, (lo, hi), size, write))
            return RegState.scalar(Scalar.unknown().truncate(size))
        if kind == K.MAP_VALUE:
            m = self.maps[ptr.map]
            if write and m.flags & BPF_F_RDONLY_PROG:
                self.fail("map_readonly", "write into map forbidden")
            lo, hi = self.map_check(regno, ptr, insn_off, size)
            self.note_mem(MemAccess(kind, m.name, (lo, hi), size, write))
            if not write and lo == hi and m.initial is not None and m.flags & BPF_F_RDONLY_PROG \
                    and lo + size <= len(m.initial):
                return RegState.const(int.from_bytes(m.initial[lo:lo + size], "little"))
            return RegState.scalar(Scalar.unknown().truncate(size))
        if kind == K.CTX:
            return self.ctx_access(regno, ptr, insn_off, size, write)
        if kind == K.MAP_KEY:
            if write:
                self.fail("map_key_write", f"write to change key R{regno} not allowed")
            lo, hi = self.key_check(regno, ptr, insn_off, size)
            self.note_mem(MemAccess(kind, self.maps[ptr.map].name, (lo, hi), size, write))
            return RegState.scalar(Scalar.unknown().truncate(size))
        if kind == K.RINGBUF_MEM:
            lo, hi = self.mem_check(regno, ptr, insn_off, size)
            self.note_mem(MemAccess(kind, self.maps[ptr.map].name, (lo, hi), size, write))
            return RegState.scalar(Scalar.unknown().truncate(size))
        if kind == K.MAP_PTR and not write and ptr.off + insn_off >= 0 and ptr.var.is_const:
            # privileged programs may read fields of the map object (the NIC cannot)
            self.note_mem(MemAccess(kind, self.maps[ptr.map].name, (ptr.off + insn_off,) * 2, size, False))
            return RegState.scalar(Scalar.unknown().truncate(size))
        if kind in (K.MAP_VALUE_OR_NULL, K.RINGBUF_MEM_OR_NULL):
            self.fail("null_deref", f"R{regno} invalid mem access '{kind.kernel_name}'")
        self.fail("invalid_mem_access", f"R{regno} invalid mem access '{kind.kernel_name}'")

    def packet_check(self, regno: int, ptr: RegState, insn_off: int, size: int) -> tuple[int, int]:
        if ptr.var.smin < 0:
            self.fail("negative_offset", f"R{regno} min value is negative, either use unsigned index or do a "
                      "if (index >=0) check.")
        off = ptr.off + insn_off
        if off < 0 or off + size > ptr.range:
            self.fail("packet_oob", f"invalid access to packet, off={off} size={size}, "
                      f"R{regno}(id={ptr.id},off={ptr.off},r={ptr.range})")
        return off + ptr.var.umin, off + ptr.var.umax

    def map_check(self, regno: int, ptr: RegState, insn_off: int, size: int) -> tuple[int, int]:
        vs = self.maps[ptr.map].value_size
        off = ptr.off + insn_off
        lo, hi = off + ptr.var.smin, off + ptr.var.smax
        if ptr.var.smin < 0 and not ptr.var.is_const:
            self.fail("negative_offset", f"R{regno} min value is negative, either use unsigned index or do a "
                      "if (index >=0) check.")
        if lo < 0 or hi + size > vs:
            self.fail("map_value_oob", f"invalid access to map value, value_size={vs} off={hi if lo >= 0 else lo} "
                      f"size={size}")
        return lo, hi

    def key_check(self, regno: int, ptr: RegState, insn_off: int, size: int) -> tuple[int, int]:
        """A read of ``size`` bytes of a map key (a bpf_for_each_map_elem callback's second argument)."""
        ks = self.maps[ptr.map].key_size
        off = ptr.off + insn_off
        lo, hi = off + ptr.var.smin, off + ptr.var.smax
        if ptr.var.smin < 0 and not ptr.var.is_const:
            self.fail("negative_offset", f"R{regno} min value is negative, either use unsigned index or do a "
                      "if (index >=0) check.")
        if lo < 0 or hi + size > ks:
            self.fail("map_key_oob", f"invalid access to map key, key_size={ks} off={hi if lo >= 0 else lo} "
                      f"size={size}")
        return lo, hi

    def mem_check(self, regno: int, ptr: RegState, insn_off: int, size: int) -> tuple[int, int]:
        """An access to ``size`` bytes of a ring buffer record (``ptr.range`` bytes long)."""
        off = ptr.off + insn_off
        lo, hi = off + ptr.var.smin, off + ptr.var.smax
        if ptr.var.smin < 0 and not ptr.var.is_const:
            self.fail("negative_offset", f"R{regno} min value is negative, either use unsigned index or do a "
                      "if (index >=0) check.")
        if lo < 0 or hi + size > ptr.range:
            self.fail("mem_oob", f"invalid access to memory, mem_size={ptr.range} off={hi if lo >= 0 else lo} "
                      f"size={size}")
        return lo, hi

    def ctx_access(self, regno: int, ptr: RegState, insn_off: int, size: int, write: bool) -> RegState:
        if ptr.off or not ptr.var.is_const or ptr.var.value:
            self.fail("ctx_modified", f"dereference of modified ctx ptr R{regno} off={ptr.off} disallowed")
        off = insn_off
        bad = f"invalid bpf_context access off={off} size={size}"
        if self.is_tc:
            if off in SKB_CTX_PTRS:
                if write or size != 4:
                    self.fail("ctx_access", bad)
                kind = SKB_CTX_PTRS[off]
            else:
                base = off & ~3
                ok = (base in SKB_CTX_WRITE) if write else (base in SKB_CTX_READ or base in SKB_CTX_WRITE)
                cb_dw = size == 8 and 48 <= off and off + 8 <= 68    # cb[] is one area: aligned dw access too
                if not ok or off % size or (size > 4 and not cb_dw) or (off + size > base + 4 and not cb_dw):
                    self.fail("ctx_access", bad)
                if write and size != 4 and not 48 <= base < 68:  # only cb[] takes narrow stores
                    self.fail("ctx_access", bad)
                kind = K.SCALAR
        else:
            if write or off < 0 or off + size > XDP_CTX_SIZE or size != 4 or off % 4:
                self.fail("ctx_access", bad)
            kind = XDP_CTX[off]
        self.note_mem(MemAccess(K.CTX, None, (off, off), size, write))
        if kind == K.SCALAR:
            return RegState.scalar(Scalar.unknown().truncate(size))
        if kind == K.PACKET_END:
            return RegState(K.PACKET_END)
        return RegState(kind, id=0)

    def stack_access(self, st: State, regno: int, ptr: RegState, insn_off: int, size: int, write: bool,
                     value: RegState | None) -> RegState:
        if not ptr.var.is_const:
            return self.var_stack_access(st, ptr, insn_off, size, write)
        off = ptr.off + insn_off + sext(ptr.var.value, 64)
        if off < -MAX_STACK or off + size > 0 or off >= 0:
            self.fail("invalid_stack", f"invalid stack off={off} size={size}")
        if off % size:
            self.fail("misaligned_stack", f"misaligned stack access off (0x0; 0x0)+{ptr.off}+{insn_off} size {size}")
        frame = st.frames[ptr.frame]
        fstart = frame.function_start
        self.stack_use[fstart] = max(self.stack_use.get(fstart, 0), -off)
        self.note_mem(MemAccess(K.STACK, None, (off, off), size, write, ptr.frame))
        slot_idx = (-off - 1) // 8
        byte0 = off + 8 * (slot_idx + 1)  # byte index inside the slot, lowest address first
        slot = frame.stack.get(slot_idx, EMPTY_SLOT)
        if write:
            if size == 8:
                frame.stack[slot_idx] = Slot.spilled(value)
                return value
            if value.kind.is_pointer:
                self.fail("invalid_spill", "invalid size of register spill")
            const = value.var.value if value.kind == K.SCALAR else None
            if const is not None and trunc(const, size * 8) == 0:
                kind = Byte.ZERO
            else:
                kind = Byte.MISC
            # Like the kernel, a narrow constant is remembered only when stored at the start of a
            # slot (a partial spill); any other store into the slot forgets it.
            vals = [None] * 8
            if slot.spill is not None:
                if slot.spill.kind == K.SCALAR and slot.spill.var.is_const and slot.spill.var.value == 0:
                    old = [Byte.ZERO] * 8
                else:
                    old = [Byte.MISC] * 8
            else:
                old = list(slot.bytes)
                if slot.vals is not None:  # a partial spill being overwritten: its bytes become some number
                    old = [Byte.MISC if v is not None else b for b, v in zip(old, slot.vals)]
            for i in range(byte0, byte0 + size):
                old[i] = kind
                vals[i] = None if const is None or byte0 else (const >> (8 * (i - byte0))) & 0xFF
            frame.stack[slot_idx] = Slot(tuple(old), None, tuple(vals) if any(v is not None for v in vals) else None)
            return value
        # read
        if slot.spill is not None:
            if size == 8:
                return slot.spill
            if slot.spill.kind != K.SCALAR:
                self.fail("invalid_fill", "invalid size of register fill")
            if slot.spill.var.is_const:
                return RegState.const(trunc(slot.spill.var.value >> (8 * byte0), size * 8))
            return RegState.scalar(Scalar.unknown().truncate(size))
        got = slot.bytes[byte0:byte0 + size]
        if any(b == Byte.INVALID for b in got) and not self.allow_uninit_stack:
            self.fail("uninit_stack", f"invalid read from stack off {off}+0 size {size}")
        known = [slot.byte_value(i) for i in range(byte0, byte0 + size)]
        if all(v is not None for v in known):
            return RegState.const(int.from_bytes(bytes(known), "little"))
        return RegState.scalar(Scalar.unknown().truncate(size))

    def var_stack_access(self, st: State, ptr: RegState, insn_off: int, size: int, write: bool) -> RegState:
        """A stack access at a variable offset: every byte it may touch must be in the frame (and,
        for a read, initialised); the value read is some number, a write makes the bytes numbers."""
        lo = ptr.off + insn_off + ptr.var.smin
        hi = ptr.off + insn_off + ptr.var.smax
        if lo < -MAX_STACK or hi + size > 0:
            self.fail("var_stack_access", f"invalid variable-offset stack access off={ptr.off + insn_off} "
                      f"var=[{ptr.var.smin},{ptr.var.smax}] size={size}")
        frame = st.frames[ptr.frame]
        self.stack_use[frame.function_start] = max(self.stack_use.get(frame.function_start, 0), -lo)
        self.note_mem(MemAccess(K.STACK, None, (lo, hi), size, write, ptr.frame))
        for b in range(lo, hi + size):
            k = (-b - 1) // 8
            i = b + 8 * (k + 1)
            slot = frame.stack.get(k, EMPTY_SLOT)
            if write:
                new = [Byte.MISC] * 8 if slot.spill is not None else list(slot.bytes)
                new[i] = Byte.MISC
                frame.stack[k] = Slot(tuple(new))
            elif slot.spill is None and slot.bytes[i] == Byte.INVALID and not self.allow_uninit_stack:
                self.fail("uninit_stack", f"invalid variable-offset read from stack off {b} size {size}")
        return RegState.scalar(Scalar.unknown().truncate(size))

    def stack_const(self, st: State, reg: RegState, n: int) -> int | None:
        """The ``n``-byte little-endian number at a fixed stack address, when every byte is known."""
        if reg.kind != K.STACK or not reg.var.is_const:
            return None
        off = reg.off + sext(reg.var.value, 64)
        if off < -MAX_STACK or off + n > 0:
            return None
        frame = st.frames[reg.frame]
        k0 = (-off - 1) // 8
        slot = frame.stack.get(k0, EMPTY_SLOT)
        if off + 8 * (k0 + 1) == 0 and slot.vals is not None and sum(v is not None for v in slot.vals) == n:
            return int.from_bytes(bytes(slot.vals[:n]), "little")  # a spilled constant of the key's size
        out = []
        for b in range(off, off + n):
            k = (-b - 1) // 8
            sl = frame.stack.get(k, EMPTY_SLOT)
            v = 0 if sl.spill is None and sl.bytes[b + 8 * (k + 1)] == Byte.ZERO else None
            if v is None:
                return None
            out.append(v)
        return int.from_bytes(bytes(out), "little")

    def atomic(self, insn: Insn, st: State) -> None:
        ptr = self.read(st, insn.dst)
        val = self.read(st, insn.src)
        aop = insn.imm & 0xFFFFFFFF
        if ptr.kind not in (K.STACK, K.MAP_VALUE):
            self.fail("atomic_ptr", f"BPF_ATOMIC stores into R{insn.dst} {ptr.kind.kernel_name} is not allowed")
        n = insn.size.nbytes
        if aop == AtomicOp.CMPXCHG:
            self.read(st, 0)
        # As the kernel checks it: the load (its result lands in the fetch register at once),
        # then the store through the destination register as it is now.
        self.mem_access(st, insn.dst, ptr, insn.off, n, write=False)
        result = RegState.scalar(Scalar.unknown().truncate(n))
        if aop == AtomicOp.CMPXCHG:
            st.cur.regs[0] = result
        elif aop & 1:
            self.write(st, insn.src, result)
        ptr = st.cur.regs[insn.dst]
        if ptr.kind not in (K.STACK, K.MAP_VALUE):
            self.fail("atomic_ptr", f"BPF_ATOMIC stores into R{insn.dst} {ptr.kind.kernel_name} is not allowed")
        self.mem_access(st, insn.dst, ptr, insn.off, n, write=True, value=RegState.unknown())

    # -- calls ------------------------------------------------------------------------
    def helper_call(self, insn: Insn, pc: int, st: State) -> list[tuple[int, State]]:
        """Check a helper call and apply it to ``st``; returns the extra paths it starts (a callback)."""
        sig = helper_signature(insn.imm, self.p.prog_type)
        if sig is None:
            if helper_name(insn.imm) == "unknown":
                self.fail("unknown_helper", f"invalid func unknown#{insn.imm}")
            self.fail("unknown_helper", f"unknown func {helper_name(insn.imm)}#{insn.imm}")
        regs = st.cur.regs
        map_idx = None
        key_reg = regs[2]
        alloc_size = 0
        released = None
        callback = None
        for i, arg in enumerate(sig.args):
            r = i + 1
            reg = self.read(st, r)
            if arg == Arg.ANY:
                continue
            if arg == Arg.ALLOC_SIZE:
                if reg.kind != K.SCALAR or not reg.var.is_const:
                    self.fail("arg_type", f"R{r} is not a known constant'")
                alloc_size = reg.var.value
                continue
            if arg == Arg.FUNC:
                if reg.kind != K.FUNC:
                    self.fail("arg_type", f"R{r} type={reg.kind.kernel_name} expected=func")
                callback = reg.off
                continue
            if arg == Arg.STACK_OR_NULL:
                if reg.kind == K.SCALAR and reg.var.value == 0:
                    continue
                if reg.kind != K.STACK:
                    self.fail("arg_type", f"R{r} type={reg.kind.kernel_name} expected=fp")
                continue
            if arg == Arg.U32_MEM:
                # MEM_ALIGNED: checked strictly (NET_IP_ALIGN for packets) whatever the architecture
                off = reg.off + (sext(reg.var.value, 64) if reg.var.is_const else 0)
                if reg.var.is_const and (off + (2 if reg.kind in (K.PACKET, K.PACKET_META) else 0)) % 4:
                    what = "stack" if reg.kind == K.STACK else reg.kind.kernel_name
                    self.fail("misaligned_stack" if reg.kind == K.STACK else "misaligned_access",
                              f"misaligned {what} access off {off} size 4")
                self.mem_arg(st, r, reg, 4, write=False, what=arg.value)
                self.mem_arg(st, r, reg, 4, write=True, what=arg.value)
                continue
            if arg == Arg.RINGBUF_MEM:
                if reg.kind != K.RINGBUF_MEM:
                    self.fail("arg_type", f"R{r} type={reg.kind.kernel_name} expected=ringbuf_mem")
                if reg.off or not reg.var.is_const or reg.var.value:
                    self.fail("arg_type", f"R{r} must have zero offset when passed to release func or trusted "
                              "arg to kfunc")
                if reg.id not in st.refs:
                    self.fail("arg_type", f"R{r} must be referenced when passed to release function")
                released = reg.id
                continue
            if arg == Arg.CTX:
                if reg.kind != K.CTX:
                    self.fail("arg_type", f"R{r} type={reg.kind.kernel_name} expected=ctx")
                if reg.off or not reg.var.is_const or reg.var.value:
                    self.fail("ctx_modified", f"dereference of modified ctx ptr R{r} off={reg.off} disallowed")
            elif arg == Arg.MAP:
                if reg.kind != K.MAP_PTR:
                    self.fail("arg_type", f"R{r} type={reg.kind.kernel_name} expected=map_ptr")
                map_idx = reg.map
                mtype = self.maps[map_idx].type
                if not map_helper_compatible(mtype, insn.imm):
                    self.fail("map_helper", f"cannot pass map_type {int(mtype)} into func "
                              f"{helper_name(insn.imm)}#{insn.imm}")
            elif arg in (Arg.KEY, Arg.VALUE, Arg.VALUE_W):
                m = self.maps[map_idx]
                n = m.key_size if arg == Arg.KEY else m.value_size
                self.mem_arg(st, r, reg, n, write=arg == Arg.VALUE_W, what=arg.value)
            elif arg in (Arg.MEM, Arg.MEM_OR_NULL, Arg.MEM_W):
                size_reg = self.read(st, r + 1)
                if size_reg.kind != K.SCALAR:
                    self.fail("arg_type", f"R{r + 1} type={size_reg.kind.kernel_name} expected=scalar")
                nullable = arg == Arg.MEM_OR_NULL
                zero_ok = sig.args[i + 1] == Arg.SIZE_OR_ZERO
                if size_reg.var.umax >= MAX_VAR_OFF or size_reg.var.smin < 0:
                    self.fail("arg_type", f"R{r + 1} unbounded memory access, use 'var &= const' or "
                              "'if (var < const)'")
                if size_reg.var.umin == 0 and not zero_ok:
                    self.fail("arg_type", f"R{r + 1} invalid zero-sized read")
                if nullable and reg.kind == K.SCALAR and reg.var.value == 0:
                    continue
                if size_reg.var.umax:
                    self.mem_arg(st, r, reg, size_reg.var.umax, write=arg == Arg.MEM_W, what="mem")
        if insn.imm == Helper.tail_call and st.refs:
            self.fail("ref_leak", "tail_call would lead to reference leak")
        extra: list[tuple[int, State]] = []
        if callback is not None:
            # the callback runs in a frame of its own, any number of times: explore it from a copy of
            # the state before the call (its exit comes back to the call), and go on after the call
            if len(st.frames) >= MAX_CALL_FRAMES:
                self.fail("call_depth", f"the call stack of {len(st.frames) + 1} frames is too deep")
            cb = st.copy()
            cregs = [RegState() for _ in range(11)]
            if insn.imm == Helper.for_each_map_elem:  # callback(map, &key, &value, ctx)
                cregs[1] = RegState(K.MAP_PTR, map=map_idx)
                cregs[2] = RegState(K.MAP_KEY, map=map_idx)
                cregs[3] = RegState(K.MAP_VALUE, map=map_idx)
                cregs[4] = regs[3]
            else:  # bpf_loop: callback(index, ctx)
                cregs[1] = RegState.unknown()
                cregs[2] = regs[3]
            cregs[10] = RegState(K.STACK, frame=len(cb.frames))
            cb.frames.append(Frame(cregs, {}, pc, len(cb.frames), callback))
            extra.append((callback, cb))
        if released is not None:
            del st.refs[released]
            rid = released
            # every copy of the record becomes a number (a privileged loader's invalidated pointer)
            st.map_regs(lambda x: RegState.unknown()
                        if x.kind in (K.RINGBUF_MEM, K.RINGBUF_MEM_OR_NULL) and x.id == rid else x)
        if sig.changes_packet:
            st.map_regs(lambda x: RegState.unknown() if x.kind in (K.PACKET, K.PACKET_END, K.PACKET_META) else x)
        for r in range(1, 6):
            regs[r] = RegState()
        if sig.ret == Ret.RINGBUF_MEM_OR_NULL:
            rid = self.new_id()
            st.refs[rid] = pc
            regs[0] = RegState(K.RINGBUF_MEM_OR_NULL, map=map_idx, id=rid, range=alloc_size)
        elif sig.ret == Ret.MAP_VALUE_OR_NULL:
            m = self.maps[map_idx]
            key = self.stack_const(st, key_reg, m.key_size) if m.type in CONST_KEY_MAPS else None
            if key is not None and key < m.max_entries:
                # an array slot that exists: the kernel drops the NULL case
                regs[0] = RegState(K.MAP_VALUE, map=map_idx)
            else:
                regs[0] = RegState(K.MAP_VALUE_OR_NULL, map=map_idx, id=self.new_id())
        elif sig.ret == Ret.U32:
            regs[0] = RegState.scalar(Scalar.urange(0, MASK32))
        else:
            regs[0] = RegState.unknown()
        return extra

    def mem_arg(self, st: State, r: int, reg: RegState, n: int, *, write: bool, what: str) -> None:
        if reg.kind == K.STACK:
            if not reg.var.is_const:
                self.fail("var_stack_access", f"R{r} variable stack access to helper memory")
            off = reg.off + sext(reg.var.value, 64)
            if off < -MAX_STACK or off + n > 0:
                self.fail("invalid_stack", f"invalid indirect access to stack R{r} off={off} size={n}")
            frame = st.frames[reg.frame]
            self.stack_use[frame.function_start] = max(self.stack_use.get(frame.function_start, 0), -off)
            for b in range(off, off + n):
                k = (-b - 1) // 8
                i = b + 8 * (k + 1)
                slot = frame.stack.get(k, EMPTY_SLOT)
                if write:
                    if slot.spill is not None:
                        slot = Slot((Byte.MISC,) * 8)
                    new = list(slot.bytes)
                    new[i] = Byte.MISC
                    vals = list(slot.vals) if slot.vals is not None else [None] * 8
                    vals[i] = None
                    frame.stack[k] = Slot(tuple(new), None, tuple(vals) if any(v is not None for v in vals) else None)
                elif slot.spill is None and slot.bytes[i] == Byte.INVALID and not self.allow_uninit_stack:
                    self.fail("uninit_stack", f"invalid indirect read from stack R{r} off {off}+{b - off} size {n}")
            return
        if reg.kind in (K.PACKET, K.PACKET_META):
            self.packet_check(r, reg, 0, n)
            return
        if reg.kind == K.MAP_VALUE:
            self.map_check(r, reg, 0, n)
            return
        if reg.kind == K.RINGBUF_MEM:
            self.mem_check(r, reg, 0, n)
            return
        if reg.kind == K.MAP_KEY:
            if write:
                self.fail("map_key_write", f"write to change key R{r} not allowed")
            self.key_check(r, reg, 0, n)
            return
        if reg.kind in (K.MAP_VALUE_OR_NULL, K.RINGBUF_MEM_OR_NULL):
            self.fail("null_deref", f"R{r} type={reg.kind.kernel_name} expected=fp, pkt, pkt_meta, map_value")
        self.fail("arg_type", f"R{r} type={reg.kind.kernel_name} expected=fp, pkt, pkt_meta, map_value")

    def local_call(self, insn: Insn, pc: int, st: State) -> list[tuple[int, State]]:
        if len(st.frames) >= MAX_CALL_FRAMES:
            self.fail("call_depth", f"the call stack of {len(st.frames) + 1} frames is too deep")
        target = insn.jump_target(pc)
        if target not in self.p.index_at_pc:
            self.fail("jump_out_of_range", f"jump out of range from insn {pc} to {target}")
        caller = st.cur
        args = self.live.callee_args(target)
        regs = [RegState() for _ in range(11)]
        for r in range(1, 6):
            if args & both(r):
                regs[r] = caller.regs[r]
        regs[10] = RegState(K.STACK, frame=len(st.frames))
        st.frames.append(Frame(regs, {}, pc, len(st.frames), target))
        return [(target, st)]

    def exit(self, st: State) -> list[tuple[int, State]]:
        r0 = self.read(st, 0)
        if len(st.frames) == 1:
            if st.refs:
                rid, at = min(st.refs.items())
                self.fail("ref_leak", f"Unreleased reference id={rid} alloc_insn={at}")
            if r0.kind != K.SCALAR:
                self.fail("return_pointer", "R0 leaks addr as return value")
            return []
        if st.cur.callsite in self.callback_sites:
            if r0.kind != K.SCALAR:
                self.fail("callback_return", "R0 not a scalar value")
            if r0.var.smin < 0 or r0.var.smax > 1:
                self.fail("callback_return", f"At callback return the register R0 has smin={r0.var.smin} "
                          f"smax={r0.var.smax} should have been in [0, 1]")
            callee = st.frames.pop()
            st.callback_returns += 1
            self.widen(st, callee.callsite)
            return [(callee.callsite, st)]  # back to the call: it may call the callback again
        if r0.kind == K.STACK and r0.frame == len(st.frames) - 1:
            self.fail("return_pointer", "cannot return stack pointer to the caller")
        callee = st.frames.pop()
        caller = st.cur
        for r in range(1, 6):
            caller.regs[r] = RegState()
        caller.regs[0] = r0
        call = callee.callsite
        return [(call + 1, st)]

    def widen(self, st: State, callsite: int) -> None:
        """The kernel's widen_imprecise_scalars at a callback's return: every number (register or
        spill, any frame) that differs from the state the loop was entered with becomes unknown, so
        that a callback counting in its context converges.  The kernel spares the scalars it tracks
        as precise; we track no precision and widen them all (see docs/analysis.md)."""
        prev = None
        for old, onode in reversed(self.visited.get(callsite, [])):
            if not onode.done and len(old.frames) == len(st.frames) and \
                    all(fo.callsite == fn.callsite for fo, fn in zip(old.frames, st.frames)):
                prev = old
                break
        if prev is None:
            return

        def wide(o: RegState, n: RegState) -> RegState:
            if o.kind == n.kind == K.SCALAR and o.var != n.var:
                return RegState.unknown()
            return n
        for fo, fn in zip(prev.frames, st.frames):
            fn.regs[:] = [wide(o, n) for o, n in zip(fo.regs, fn.regs)]
            for k, sn in list(fn.stack.items()):
                so = fo.stack.get(k)
                if so is not None and so.spill is not None and sn.spill is not None:
                    w = wide(so.spill, sn.spill)
                    if w is not sn.spill:
                        fn.stack[k] = Slot.spilled(w)

    # -- conditional jumps ----------------------------------------------------------------
    def cond_jump(self, insn: Insn, pc: int, st: State) -> list[tuple[int, State]]:
        op = insn.jmp_op
        wide = insn.cls == InsnClass.JMP
        target = insn.jump_target(pc)
        nxt = pc + 1
        a = self.read(st, insn.dst)
        if insn.source == Source.X:
            b = self.read(st, insn.src)
        else:
            b = RegState.const(trunc(insn.imm, 64) if wide else trunc(insn.imm, 32))
        if b.kind == K.SCALAR:
            self.note_src(b.var)
        outcomes = self.branch_states(op, a, b, insn, st, wide)
        # outcomes: list of (taken: bool, state)
        acc = self.acc[pc]
        taken_set = {t for t, _ in outcomes}
        acc.taken |= taken_set
        result = []
        for taken, s in outcomes:
            result.append((target if taken else nxt, s))
        if target == nxt and len(result) == 2:
            result = result[:1]
        return result

    def branch_states(self, op: JmpOp, a: RegState, b: RegState, insn: Insn, st: State, wide: bool):
        d, s = insn.dst, (insn.src if insn.source == Source.X else None)
        if a.kind == K.SCALAR and b.kind == K.SCALAR:
            out = []
            for taken in (True, False):
                r = refine_scalar(op, a.var, b.var, taken, wide=wide)
                if r is None:
                    continue
                ns = st.copy()
                self.narrow(ns, d, a, r[0])
                if s is not None:
                    self.narrow(ns, s, b, r[1])
                out.append((taken, ns))
            return out
        # NULL checks: pointer vs 0
        if op in (JmpOp.JEQ, JmpOp.JNE) and wide:
            ptr, other = (a, b) if a.kind.is_pointer else (b, a)
            if other.kind == K.SCALAR and other.var.value == 0 and ptr.kind.is_pointer:
                if ptr.kind in (K.MAP_VALUE_OR_NULL, K.RINGBUF_MEM_OR_NULL):
                    eq, ne = st.copy(), st
                    self.mark_null(eq, ptr.id, null=True)
                    self.mark_null(ne, ptr.id, null=False)
                    return [(op == JmpOp.JEQ, eq), (op != JmpOp.JEQ, ne)]
                return [(op == JmpOp.JNE, st)]
        # packet bounds checks
        pair = self.packet_pair(a, b)
        if pair is not None and wide:
            return self.packet_branch(op, a, b, st)
        if a.kind == K.MAP_VALUE_OR_NULL or b.kind == K.MAP_VALUE_OR_NULL:
            pass
        return [(True, st.copy()), (False, st)]

    def narrow(self, st: State, regno: int, old: RegState, var: Scalar) -> None:
        """Give register ``regno`` (and every copy sharing its id) the narrowed value ``var``."""
        if old.id:
            rid, base = old.id, old.off

            def fix(r: RegState) -> RegState:
                if r.kind != K.SCALAR or r.id != rid:
                    return r
                if r.off == base:
                    return replace(r, var=var)
                return replace(r, var=var.alu(AluOp.ADD, Scalar.const(r.off - base), wide=True))
            st.map_regs(fix)
        else:
            st.cur.regs[regno] = RegState.scalar(var)

    def mark_null(self, st: State, rid: int, *, null: bool) -> None:
        inner_of = self.inner_of

        def fix(r: RegState) -> RegState:
            if r.kind == K.MAP_VALUE_OR_NULL and r.id == rid:
                if null:
                    return RegState.const(0)
                if r.map in inner_of:  # a map-in-map lookup gives the inner map
                    return RegState(K.MAP_PTR, map=inner_of[r.map])
                return replace(r, kind=K.MAP_VALUE, id=0)
            if r.kind == K.RINGBUF_MEM_OR_NULL and r.id == rid:
                # the record keeps its id: it names the reference to release
                return RegState.const(0) if null else replace(r, kind=K.RINGBUF_MEM)
            return r
        st.map_regs(fix)
        if null:
            st.refs.pop(rid, None)  # no record, nothing to release

    @staticmethod
    def packet_pair(a: RegState, b: RegState) -> bool | None:
        kinds = (a.kind, b.kind)
        if kinds in ((K.PACKET, K.PACKET_END), (K.PACKET_END, K.PACKET), (K.PACKET_META, K.PACKET),
                     (K.PACKET, K.PACKET_META)):
            return True
        return None

    def packet_branch(self, op: JmpOp, a: RegState, b: RegState, st: State):
        """``pkt' op end``: the side where pkt' <= end proves the bytes before pkt' readable."""
        if op not in (JmpOp.JGT, JmpOp.JGE, JmpOp.JLT, JmpOp.JLE):
            return [(True, st.copy()), (False, st)]
        # normalise to "ptr OP limit" with ptr the lower-kind pointer (pkt vs end, meta vs pkt)
        lower = K.PACKET if K.PACKET_END in (a.kind, b.kind) else K.PACKET_META
        if a.kind == lower:
            ptr, o = a, op
        else:
            ptr, o = b, SWAP[op]
        # o is one of GT/GE/LT/LE with ptr on the left
        # safe side: ptr <= limit (range off) or ptr < limit (range off+1)
        if o == JmpOp.JGT:
            safe_taken, extra = False, 0   # fall-through: ptr <= limit
        elif o == JmpOp.JGE:
            safe_taken, extra = False, 1   # fall-through: ptr < limit
        elif o == JmpOp.JLT:
            safe_taken, extra = True, 1
        else:
            safe_taken, extra = True, 0
        if ptr.var.smin < 0 or ptr.off < 0 or (ptr.off == 0 and extra):
            # "pkt < end" proves nothing the kernel would use
            return [(True, st.copy()), (False, st)]
        new_range = ptr.off + extra
        safe = st.copy()
        other = st

        def grow(r: RegState) -> RegState:
            if r.kind == ptr.kind and r.id == ptr.id and r.var == ptr.var and r.range < new_range:
                return replace(r, range=new_range)
            return r
        safe.map_regs(grow)
        return [(safe_taken, safe), (not safe_taken, other)]


def finalize(v: Verifier, program: Program, cfg: CFG, live: Liveness) -> tuple[dict[int, InsnFacts], dict[str, int]]:
    facts: dict[int, InsnFacts] = {}
    for pc, insn in program.slots():
        acc = v.acc.get(pc)
        live_in = live.live_in.get(pc, 0)
        live_out = live.live_out.get(pc, 0)
        dst = insn.dst
        if insn.is_call or (insn.cls == InsnClass.LD and not insn.is_ld_imm64):
            dst = 0
        writes_dst = insn.is_alu or insn.cls == InsnClass.LDX or insn.cls == InsnClass.LD or insn.is_call
        hi_live = bool(live_out & bit(dst, HI)) if writes_dst else False
        if acc is None:
            facts[pc] = InsnFacts(pc, False, tuple(RegState() for _ in range(11)), hi32_live_out=hi_live,
                                  live_in=live_in, live_out=live_out)
            continue
        # A register with no live half is never read again: paths pruned earlier may have left
        # any value in it, so the joined value would not be a fact.  Report it as NOT_INIT.
        regs = tuple(r if live_in & both(i) or i == 10 else RegState() for i, r in enumerate(acc.regs))
        taken = None
        if insn.is_conditional and len(acc.taken) == 1:
            taken = next(iter(acc.taken))
        facts[pc] = InsnFacts(
            pc, True, regs, acc.mem, acc.hi_zero if writes_dst else None, hi_live,
            acc.src_const if not acc.src_const_conflict else None, acc.src_range, taken, live_in, live_out)
    depth: dict[str, int] = {}
    for fn in cfg.functions:
        used = v.stack_use.get(fn.start, 0)
        depth[fn.name] = (used + 7) // 8 * 8
    return facts, depth

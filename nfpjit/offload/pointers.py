"""A small pointer-provenance tracker: which memory each load, store and helper argument touches.

The offload checks need to know whether a store goes to the context, the
stack, the packet or a map value, and at which constant offset.  The full
analysis (``nfpjit.analysis``) computes this and more; when none is given
(``nfpjit check --no-analysis``), or past a point where it stopped a path,
:func:`track` answers with a deliberately simple abstract interpretation:
every register holds one :class:`Val` (a pointer kind with a constant
offset, or a scalar that is a known constant or one of a few), states are
joined at branch targets, and a kind that differs between paths becomes
unknown.  Bounds checks are not followed, so packet offsets are only known
where the program adds constants to ``data``.  :class:`Tracked` is the shape
every check reads, whichever source filled it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from nfpjit.bits import u32, u64
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AluOp, AtomicOp, CallKind, Helper, InsnClass, JmpOp, Mode, ProgType, PseudoSrc
from nfpjit.ebpf.program import Program


class Kind(IntEnum):
    SCALAR = 0
    CTX = 1
    STACK = 2
    PACKET = 3
    PACKET_END = 4
    MAP_PTR = 5  # the map itself (ld_imm64 map fd): only passed to helpers
    MAP_VALUE = 6


@dataclass(frozen=True)
class Val:
    """A register's abstract value.  ``off`` is the constant offset (or a scalar's value), None when unknown."""

    kind: Kind
    off: int | None = None
    map: int | None = None  # index into Program.maps for MAP_PTR / MAP_VALUE
    choices: frozenset[int] | None = None  # a scalar that is one of a few constants (paths joined)

    def possible_values(self) -> frozenset[int] | None:
        """The constants a scalar may hold, None when unknown."""
        if self.kind != Kind.SCALAR:
            return None
        if self.off is not None:
            return frozenset({self.off})
        return self.choices


TOP = None  # nothing known (joined different kinds, or clobbered)
UNKNOWN_SCALAR = Val(Kind.SCALAR)


class AccessKind(IntEnum):
    LOAD = 0
    STORE = 1
    ATOMIC = 2


@dataclass(frozen=True)
class MemAccess:
    """One memory instruction: what its base register points to and the byte range it touches."""

    pc: int
    kind: AccessKind
    base: Val | None  # None: could not tell
    offset: int | None  # base offset + insn offset; None when the base offset is unknown
    size: int
    offset_range: tuple[int, int] | None = None  # (lowest, highest) start offset over all paths, when bounded


@dataclass(frozen=True)
class CallSite:
    pc: int
    helper: int
    args: tuple  # Val | None for r1..r5


@dataclass(frozen=True)
class DivSite:
    pc: int
    divisor: Val | None  # the source register's value (register-source division only)


@dataclass
class Tracked:
    accesses: list[MemAccess] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)
    divisions: list[DivSite] = field(default_factory=list)
    exits: list[tuple[int, Val | None]] = field(default_factory=list)  # (pc, r0) at each reachable exit
    mixed_pointers: list[int] = field(default_factory=list)  # accesses whose pointer kind differs between paths
    # 64-bit MUL/DIV/MOD: (pc, largest unsigned value of dst, of src); None where no bound is known
    wide_operands: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    reachable: set[int] = field(default_factory=set)


# Context layouts: offset -> what a 4-byte load of it yields.
_XDP_CTX = {0: Kind.PACKET, 4: Kind.PACKET_END}
_SKB_CTX = {76: Kind.PACKET, 80: Kind.PACKET_END}


_MAX_CHOICES = 8


def _join_val(a, b):
    if a == b:
        return a
    if a is not None and b is not None and a.kind == b.kind == Kind.SCALAR:
        va, vb = a.possible_values(), b.possible_values()
        if va is not None and vb is not None and len(va | vb) <= _MAX_CHOICES:
            return Val(Kind.SCALAR, choices=va | vb)
        return UNKNOWN_SCALAR
    if a is None or b is None or a.kind != b.kind or a.map != b.map:
        return TOP
    return Val(a.kind, None, a.map)


@dataclass(frozen=True)
class _State:
    regs: tuple
    spills: tuple  # sorted ((stack offset, Val), ...)

    def join(self, other: "_State") -> "_State":
        regs = tuple(_join_val(a, b) for a, b in zip(self.regs, other.regs))
        mine, theirs = dict(self.spills), dict(other.spills)
        spills = []
        for off in sorted(mine.keys() & theirs.keys()):
            v = _join_val(mine[off], theirs[off])
            if v is not None:
                spills.append((off, v))
        return _State(regs, tuple(spills))


def _alu_const(op: AluOp, a: int, b: int, bits: int) -> int | None:
    m = (1 << bits) - 1
    a, b = a & m, b & m
    if op == AluOp.ADD:
        return (a + b) & m
    if op == AluOp.SUB:
        return (a - b) & m
    if op == AluOp.MUL:
        return (a * b) & m
    if op == AluOp.OR:
        return a | b
    if op == AluOp.AND:
        return a & b
    if op == AluOp.XOR:
        return a ^ b
    if op == AluOp.LSH:
        return (a << (b % bits)) & m
    if op == AluOp.RSH:
        return a >> (b % bits)
    if op == AluOp.MOV:
        return b
    return None


def _scalar_max(v) -> int | None:
    values = v.possible_values() if v is not None else None
    return max(values) if values else None


def _alu(insn: Insn, regs: list, tracked: Tracked | None, pc: int) -> None:
    op = insn.alu_op
    is64 = insn.cls == InsnClass.ALU64
    bits = 64 if is64 else 32
    dst = regs[insn.dst]
    if insn.source == 0:  # K
        src = Val(Kind.SCALAR, u64(insn.imm) if is64 else u32(insn.imm))
    else:
        src = regs[insn.src]
    if op in (AluOp.DIV, AluOp.MOD) and insn.source != 0 and tracked is not None:
        tracked.divisions.append(DivSite(pc, src))
    if op in (AluOp.MUL, AluOp.DIV, AluOp.MOD) and is64 and tracked is not None:
        tracked.wide_operands.append((pc, _scalar_max(dst), _scalar_max(src)))
    if op in (AluOp.END, AluOp.NEG, AluOp.ARSH, AluOp.DIV, AluOp.MOD):
        regs[insn.dst] = UNKNOWN_SCALAR
        return
    if op == AluOp.MOV:
        if insn.source != 0 and insn.off != 0:  # movsx
            regs[insn.dst] = UNKNOWN_SCALAR
        elif src is not None and src.kind == Kind.SCALAR:
            regs[insn.dst] = Val(Kind.SCALAR, None if src.off is None else src.off & ((1 << bits) - 1))
        else:
            regs[insn.dst] = src if is64 else UNKNOWN_SCALAR
        return
    if dst is None or src is None:
        regs[insn.dst] = TOP if (dst is None or dst.kind != Kind.SCALAR) else UNKNOWN_SCALAR
        return
    if dst.kind == Kind.SCALAR and src.kind == Kind.SCALAR:
        value = None
        if dst.off is not None and src.off is not None:
            value = _alu_const(op, dst.off, src.off, bits)
        regs[insn.dst] = Val(Kind.SCALAR, value)
        return
    if not is64:
        regs[insn.dst] = UNKNOWN_SCALAR
        return
    # pointer arithmetic: pointer +/- scalar keeps the kind
    if op in (AluOp.ADD, AluOp.SUB) and dst.kind != Kind.SCALAR and src.kind == Kind.SCALAR:
        delta = None if src.off is None else s64_of(src.off)
        if dst.off is None or delta is None:
            regs[insn.dst] = Val(dst.kind, None, dst.map)
        else:
            regs[insn.dst] = Val(dst.kind, dst.off + (delta if op == AluOp.ADD else -delta), dst.map)
        return
    if op == AluOp.ADD and dst.kind == Kind.SCALAR and src.kind != Kind.SCALAR:
        delta = None if dst.off is None else s64_of(dst.off)
        regs[insn.dst] = Val(src.kind, None if (src.off is None or delta is None) else src.off + delta, src.map)
        return
    regs[insn.dst] = UNKNOWN_SCALAR  # pointer - pointer, masks of pointers ...


def s64_of(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def _mem(base, insn_off: int):
    if base is None or base.off is None:
        return None
    return base.off + insn_off


def _step(program: Program, pc: int, insn: Insn, state: _State, tracked: Tracked | None):
    """Apply one instruction; return the state after it (successor handling is the caller's)."""
    regs = list(state.regs)
    spills = dict(state.spills)
    cls = insn.cls

    def record(kind, base, size):
        if tracked is not None:
            tracked.accesses.append(MemAccess(pc, kind, base, _mem(base, insn.off), size))

    def kill_spills(off, size):
        for o in list(spills):
            if o < off + size and off < o + 8:
                del spills[o]

    if insn.is_ld_imm64:
        if insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
            regs[insn.dst] = Val(Kind.MAP_PTR, 0, insn.imm)
        elif insn.src in (PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE):
            regs[insn.dst] = Val(Kind.MAP_VALUE, insn.imm2, insn.imm)
        elif insn.src == PseudoSrc.IMM64:
            regs[insn.dst] = Val(Kind.SCALAR, insn.imm64)
        else:
            regs[insn.dst] = UNKNOWN_SCALAR
    elif insn.is_alu:
        _alu(insn, regs, tracked, pc)
    elif cls == InsnClass.LD:  # ld_abs / ld_ind
        for r in range(6):
            regs[r] = UNKNOWN_SCALAR if r == 0 else TOP
    elif cls == InsnClass.LDX:
        base = regs[insn.src]
        size = insn.size.nbytes
        record(AccessKind.LOAD, base, size)
        at = _mem(base, insn.off)
        result = UNKNOWN_SCALAR
        if base is not None and base.kind == Kind.CTX and at is not None and size == 4 and insn.mode == Mode.MEM:
            layout = _XDP_CTX if program.prog_type == ProgType.XDP else _SKB_CTX
            if at in layout:
                result = Val(layout[at], 0)
        elif base is not None and base.kind == Kind.STACK and at is not None and size == 8 and at in spills:
            result = spills[at]
        regs[insn.dst] = result
    elif cls in (InsnClass.ST, InsnClass.STX):
        base = regs[insn.dst]
        size = insn.size.nbytes
        atomic = insn.mode == Mode.ATOMIC
        record(AccessKind.ATOMIC if atomic else AccessKind.STORE, base, size)
        at = _mem(base, insn.off)
        if base is not None and base.kind == Kind.STACK:
            if at is None:
                spills.clear()
            else:
                kill_spills(at, size)
                if cls == InsnClass.STX and size == 8 and not atomic:
                    v = regs[insn.src]
                    if v is not None:
                        spills[at] = v
        if atomic:
            op = u32(insn.imm)
            if op == AtomicOp.CMPXCHG:
                regs[0] = UNKNOWN_SCALAR
            elif op & 0x01:  # fetching forms write the old value to src
                regs[insn.src] = UNKNOWN_SCALAR
    elif insn.is_exit:
        if tracked is not None:
            tracked.exits.append((pc, regs[0]))
    elif insn.is_call:
        args = tuple(regs[1:6])
        if insn.src == CallKind.HELPER and tracked is not None:
            tracked.calls.append(CallSite(pc, insn.imm, args))
        result = UNKNOWN_SCALAR
        if insn.src == CallKind.HELPER and insn.imm == Helper.map_lookup_elem:
            m = args[0]
            if m is not None and m.kind == Kind.MAP_PTR:
                result = Val(Kind.MAP_VALUE, 0, m.map)
        for r in range(1, 6):
            regs[r] = TOP
        regs[0] = result
    return _State(tuple(regs), tuple(sorted(spills.items())))


def _entry_state(ctx: bool) -> _State:
    regs = [TOP] * 11
    if ctx:
        regs[1] = Val(Kind.CTX, 0)
    regs[10] = Val(Kind.STACK, 0)
    return _State(tuple(regs), ())


def track(program: Program) -> Tracked:
    """Run the tracker to a fixed point, then record every access, call and division once."""
    index = program.index_at_pc
    pcs = program.pcs
    states: dict[int, _State] = {}
    work: list[int] = []

    def push(pc: int, state: _State) -> None:
        if pc not in index:
            return
        old = states.get(pc)
        new = state if old is None else old.join(state)
        if new != old:
            states[pc] = new
            work.append(pc)

    if not program.insns:
        return Tracked()
    push(pcs[0], _entry_state(True))
    while work:
        pc = work.pop()
        insn = program.insns[index[pc]]
        state = states[pc]
        after = _step(program, pc, insn, state, None)
        for succ, st in _successors(pc, insn, state, after):
            push(succ, st)

    tracked = Tracked()
    for pc in pcs:
        if pc in states:
            tracked.reachable.add(pc)
            _step(program, pc, program.insns[index[pc]], states[pc], tracked)
    return tracked


def _successors(pc: int, insn: Insn, before: _State, after: _State):
    nxt = pc + insn.width
    if insn.is_exit:
        return []
    if insn.is_local_call:
        # the callee gets its own frame: arguments that point into ours are not followed
        regs = [TOP] * 11
        for r in range(1, 6):
            v = before.regs[r]
            regs[r] = v if v is None or v.kind != Kind.STACK else TOP
        regs[10] = Val(Kind.STACK, 0)
        callee = _State(tuple(regs), ())
        back = list(after.regs)
        back[0] = UNKNOWN_SCALAR
        return [(insn.jump_target(pc), callee), (nxt, _State(tuple(back), after.spills))]
    if insn.is_call:
        return [(nxt, after)]  # helpers return (a tail call returns too, when it fails)
    if insn.is_branch:
        target = insn.jump_target(pc)
        if insn.jmp_op == JmpOp.JA:
            return [(target, after)]
        return [(target, after), (nxt, after)]
    return [(nxt, after)]


__all__ = ["Kind", "Val", "AccessKind", "MemAccess", "CallSite", "DivSite", "Tracked", "track"]

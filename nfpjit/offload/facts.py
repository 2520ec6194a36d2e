"""Offload facts: the program analysis's path-sensitive register states in the report's terms.

The report reads pointer kinds, offsets and constants from exactly one source,
:func:`nfpjit.analysis.analyze` (null checks, packet ranges, pointers spilled
to the stack, callee frames, and registers whose kinds differ between paths,
``MIXED``, which the real NFP rejects as a pointer type that changes for one
instruction).  :func:`offload_analysis` runs it as the NIC's verifier would
see the program; :func:`tracked_from_analysis` turns its facts into the
:class:`Tracked` record every check reads.

Where the analysis stops a path at a verifier problem it still records the
registers *before* the faulting instruction, so the access there is described
from its base register; code reachable only past the problem has no facts and
gets no offload diagnostics (the ``verifier`` diagnostic already rejects it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

from nfpjit.analysis import RegKind
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, Mode, ProgType


class Kind(IntEnum):
    SCALAR = 0
    CTX = 1
    STACK = 2
    PACKET = 3
    PACKET_END = 4
    MAP_PTR = 5  # the map itself (ld_imm64 map fd): only passed to helpers
    MAP_VALUE = 6
    RINGBUF_RECORD = 7  # a record bpf_ringbuf_reserve returned (the ring buffer map is refused anyway)
    MAP_KEY = 8         # a bpf_for_each_map_elem callback's key (the helper is refused anyway)


@dataclass(frozen=True)
class Val:
    """A register's value.  ``off`` is the constant offset (or a scalar's value), None when it varies."""

    kind: Kind
    off: int | None = None
    map: int | None = None  # index into Program.maps for MAP_PTR / MAP_VALUE
    choices: frozenset[int] | None = None  # a scalar that is one of a few constants (over all paths)

    def possible_values(self) -> frozenset[int] | None:
        """The constants a scalar may hold, None when unknown."""
        if self.kind != Kind.SCALAR:
            return None
        if self.off is not None:
            return frozenset({self.off})
        return self.choices


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
    base: Val | None  # None: different kinds on different paths
    offset: int | None  # base offset + insn offset; None when it is not one constant
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
    """Everything the checks need to know about the reachable instructions."""

    accesses: list[MemAccess] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)
    divisions: list[DivSite] = field(default_factory=list)
    exits: list[tuple[int, Val | None]] = field(default_factory=list)  # (pc, r0) at each reachable exit
    mixed_pointers: list[int] = field(default_factory=list)  # accesses whose pointer kind differs between paths
    # 64-bit MUL/DIV/MOD: (pc, largest unsigned value of dst, of src); None where no bound is known
    wide_operands: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    reachable: set[int] = field(default_factory=set)


_MAX_CHOICES = 8

_KINDS = {
    RegKind.SCALAR: Kind.SCALAR, RegKind.CTX: Kind.CTX, RegKind.STACK: Kind.STACK,
    RegKind.PACKET: Kind.PACKET, RegKind.PACKET_META: Kind.PACKET, RegKind.PACKET_END: Kind.PACKET_END,
    RegKind.MAP_PTR: Kind.MAP_PTR, RegKind.MAP_VALUE: Kind.MAP_VALUE, RegKind.MAP_VALUE_OR_NULL: Kind.MAP_VALUE,
    RegKind.RINGBUF_MEM: Kind.RINGBUF_RECORD, RegKind.RINGBUF_MEM_OR_NULL: Kind.RINGBUF_RECORD,
    RegKind.MAP_KEY: Kind.MAP_KEY,
}

XDP_QUEUE_SELECT = 16  # offsetof(struct xdp_md, rx_queue_index)


def _scalar(var) -> Val:
    if var.is_const:
        return Val(Kind.SCALAR, var.value)
    lo, hi = var.umin, var.umax
    if hi - lo < _MAX_CHOICES:
        tn = var.tnum
        values = frozenset(v for v in range(lo, hi + 1) if v & ~tn.mask == tn.value)
        if values:
            return Val(Kind.SCALAR, choices=values)
    return UNKNOWN_SCALAR


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def _pointer_offset(state) -> int | None:
    """A pointer register's offset from its base when it is one constant, else None."""
    return state.off + _signed64(state.var.value) if state.var.is_const else None


def reg_val(state) -> Val | None:
    """One analysis RegState as a report Val (None: uninitialised, or different kinds on different paths)."""
    kind = _KINDS.get(state.kind)
    if kind is None:
        return None
    if kind == Kind.SCALAR:
        return _scalar(state.var)
    off = 0 if kind == Kind.PACKET_END else _pointer_offset(state)
    return Val(kind, off, state.map)


def _is_mem(insn: Insn) -> bool:
    return insn.cls in (InsnClass.LDX, InsnClass.ST, InsnClass.STX) and insn.code & 0xE0 in (
        Mode.MEM, Mode.MEMSX, Mode.ATOMIC)


def _access_kind(insn: Insn) -> AccessKind:
    if insn.cls in (InsnClass.LDX, InsnClass.LD):
        return AccessKind.LOAD
    return AccessKind.ATOMIC if insn.code & 0xE0 == Mode.ATOMIC else AccessKind.STORE


def _base_reg(insn: Insn) -> int:
    return insn.src if insn.cls == InsnClass.LDX else insn.dst


def _access(pc: int, insn: Insn, facts, map_index: dict) -> tuple[MemAccess | None, bool]:
    """The access at ``pc`` and whether its pointer kind differs between paths."""
    regs, mem = facts.regs, facts.mem
    if mem is None and not _is_mem(insn):
        return None, False
    access = _access_kind(insn)
    if mem is not None:
        # the base register's state says what is accessed (the access record of an atomic joins
        # its read and its write, which the analysis reports as MIXED)
        state = regs[_base_reg(insn)] if insn.cls != InsnClass.LD else None
        kind = _KINDS.get(state.kind) if state is not None else _KINDS.get(mem.kind)
        base = None if kind is None else Val(kind, 0, state.map if state is not None else map_index.get(mem.map))
        lo, hi = mem.offset
        return MemAccess(pc, access, base, lo if lo == hi else None, mem.size, (lo, hi)), kind is None
    # the analysis stopped this path here (a verifier problem) and recorded no access: the base
    # register's state before the instruction still says where it points
    state = regs[_base_reg(insn)]
    if state.kind == RegKind.NOT_INIT:
        return None, False
    if state.kind == RegKind.MIXED:
        return MemAccess(pc, access, None, None, insn.size.nbytes, None), True
    kind = _KINDS.get(state.kind)
    if kind is None:  # a kind the report does not model (a function address): nothing to say about it
        return MemAccess(pc, access, None, None, insn.size.nbytes, None), True
    off = _pointer_offset(state)
    off = None if off is None else off + insn.off
    return MemAccess(pc, access, Val(kind, 0, state.map), off, insn.size.nbytes,
                     None if off is None else (off, off)), False


def tracked_from_analysis(program, analysis) -> Tracked:
    """The report's view of every reachable instruction, from ``analysis.facts``."""
    map_index = {m.name: i for i, m in enumerate(program.maps)}  # the analysis names maps
    out = Tracked()
    for pc, insn in program.slots():
        facts = analysis.facts.get(pc)
        if facts is None or not facts.reachable:
            continue
        out.reachable.add(pc)
        regs = facts.regs
        acc, mixed = _access(pc, insn, facts, map_index)
        if acc is not None:
            out.accesses.append(acc)
        if mixed:
            out.mixed_pointers.append(pc)
        if insn.is_call:
            if insn.src == 0:
                out.calls.append(CallSite(pc, insn.imm, tuple(reg_val(regs[r]) for r in range(1, 6))))
        elif insn.is_exit:
            out.exits.append((pc, reg_val(regs[0])))
        elif insn.is_alu and insn.alu_op in (AluOp.MUL, AluOp.DIV, AluOp.MOD):
            if insn.alu_op != AluOp.MUL and insn.source:
                divisor = Val(Kind.SCALAR, facts.src_const) if facts.src_const is not None else UNKNOWN_SCALAR
                out.divisions.append(DivSite(pc, divisor))
            if insn.cls == InsnClass.ALU64:
                dst = regs[insn.dst]
                dst_max = dst.var.umax if dst.kind == RegKind.SCALAR else None
                src_max = facts.src_range[1] if facts.src_range is not None else None
                out.wide_operands.append((pc, dst_max, src_max))
    return out


def _queue_select_pcs(program, analysis) -> set[int]:
    """XDP stores of 4 bytes to ``xdp_md.rx_queue_index`` that the analysis refused (ctx_access)."""
    if program.prog_type != ProgType.XDP:
        return set()
    found = set()
    for problem in analysis.problems:
        if problem.code != "ctx_access" or problem.pc not in program.index_at_pc:
            continue
        insn = program.at(problem.pc)
        if insn.cls not in (InsnClass.ST, InsnClass.STX) or insn.code & 0xE0 != Mode.MEM or insn.size.nbytes != 4:
            continue
        base = analysis.facts[problem.pc].regs[insn.dst]
        if base.kind == RegKind.CTX and _pointer_offset(base) is not None \
                and _pointer_offset(base) + insn.off == XDP_QUEUE_SELECT:
            found.add(problem.pc)
    return found


@dataclass(frozen=True)
class OffloadAnalysis:
    """An analysis as the NIC's verifier sees the program, with the facts the report reads.

    ``problems`` and ``stack_depth`` are those of the analysis that covered the most code;
    ``queue_select`` holds the XDP queue-select stores the host verifier refuses and the NIC's
    allows (see :func:`offload_analysis`)."""

    analysis: object
    tracked: Tracked
    queue_select: frozenset[int] = frozenset()

    @property
    def problems(self):
        return self.analysis.problems

    @property
    def stack_depth(self):
        return self.analysis.stack_depth

    @property
    def cfg(self):
        return self.analysis.cfg


def offload_analysis(program, analysis=None, *, queue_select: bool = False) -> OffloadAnalysis:
    """Run (or take) the analysis of ``program`` and turn its facts into the report's terms.

    With ``queue_select`` (the profile lets XDP programs write ``rx_queue_index``), the stores
    to that field, which a host verifier refuses and so stop the analysis's paths, are analysed
    as the NIC's verifier does: the program is analysed again with each such store made a
    no-op for the analysis (a store changes no register), so the code after it has facts too.
    The stores themselves are described from the first analysis.
    """
    from nfpjit.analysis import analyze

    if analysis is None:
        analysis = analyze(program)
    tracked = tracked_from_analysis(program, analysis)
    qs = _queue_select_pcs(program, analysis) if queue_select else set()
    if not qs:
        return OffloadAnalysis(analysis, tracked)
    neutral = Insn(InsnClass.JMP | JmpOp.JA)  # ja +0: one slot, like the store it stands for
    insns = list(program.insns)
    for pc in qs:
        insns[program.index_at_pc[pc]] = neutral
    again = analyze(replace(program, insns=tuple(insns)),
                    raw_context=getattr(analysis, "raw_context", False))
    merged = tracked_from_analysis(program, again)
    stores = [a for a in tracked.accesses if a.pc in qs]
    merged.accesses = sorted([a for a in merged.accesses if a.pc not in qs] + stores, key=lambda a: a.pc)
    merged.reachable |= qs
    return OffloadAnalysis(again, merged, frozenset(qs))


__all__ = ["Kind", "Val", "UNKNOWN_SCALAR", "AccessKind", "MemAccess", "CallSite", "DivSite", "Tracked",
           "reg_val", "tracked_from_analysis", "offload_analysis", "OffloadAnalysis", "XDP_QUEUE_SELECT"]

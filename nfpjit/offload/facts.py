"""Offload facts from the full analysis: the verifier's path-sensitive register states in the report's terms.

:func:`tracked_from_analysis` turns an :class:`nfpjit.analysis.Analysis` into the
same :class:`~nfpjit.offload.pointers.Tracked` record the fallback tracker
produces, so every check reads one shape of data whichever source computed
it.  The analysis knows more than the tracker: null checks, packet ranges,
pointers spilled to the stack, callee frames, and registers whose kinds differ
between paths (``MIXED``), which the real NFP rejects as a pointer type that
changes for one instruction.
"""

from __future__ import annotations

from nfpjit.analysis import RegKind
from nfpjit.ebpf.opcodes import AluOp, InsnClass, Mode
from nfpjit.ebpf.program import Program
from nfpjit.offload.pointers import UNKNOWN_SCALAR, AccessKind, CallSite, DivSite, Kind, MemAccess, Tracked, Val

_MAX_CHOICES = 8


def _kind_map():
    return {
        RegKind.SCALAR: Kind.SCALAR, RegKind.CTX: Kind.CTX, RegKind.STACK: Kind.STACK,
        RegKind.PACKET: Kind.PACKET, RegKind.PACKET_META: Kind.PACKET, RegKind.PACKET_END: Kind.PACKET_END,
        RegKind.MAP_PTR: Kind.MAP_PTR, RegKind.MAP_VALUE: Kind.MAP_VALUE, RegKind.MAP_VALUE_OR_NULL: Kind.MAP_VALUE,
    }


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


def reg_val(state, kinds) -> Val | None:
    """One analysis RegState as a report Val (None: uninitialised, or different kinds on different paths)."""
    kind = kinds.get(state.kind)
    if kind is None:
        return None
    if kind == Kind.SCALAR:
        return _scalar(state.var)
    off = state.off + _signed64(state.var.value) if state.var.is_const else None
    if kind == Kind.PACKET_END:
        off = 0
    return Val(kind, off, state.map)


def tracked_from_analysis(program: Program, analysis) -> Tracked:
    kinds = _kind_map()
    map_index = {m.name: i for i, m in enumerate(program.maps)}  # MemAccess names its map
    out = Tracked()
    mixed: list[int] = []
    for pc, insn in program.slots():
        facts = analysis.facts.get(pc)
        if facts is None or not facts.reachable:
            continue
        out.reachable.add(pc)
        regs = facts.regs
        mem = facts.mem
        if mem is not None:
            if insn.cls in (InsnClass.LDX, InsnClass.LD):
                access = AccessKind.LOAD
            elif insn.mode == Mode.ATOMIC:
                access = AccessKind.ATOMIC
            else:
                access = AccessKind.STORE
            # the base register's state says what is accessed (the access record of an atomic joins
            # its read and its write, which the analysis reports as MIXED)
            base_reg = insn.src if insn.cls == InsnClass.LDX else insn.dst
            state = regs[base_reg] if insn.cls != InsnClass.LD else None
            kind = kinds.get(state.kind) if state is not None else kinds.get(mem.kind)
            if kind is None:
                mixed.append(pc)
                base = None
            else:
                base = Val(kind, 0, state.map if state is not None else map_index.get(mem.map))
            lo, hi = mem.offset
            out.accesses.append(MemAccess(pc, access, base, lo if lo == hi else None, mem.size, (lo, hi)))
        if insn.is_call:
            args = tuple(reg_val(regs[r], kinds) for r in range(1, 6))
            if insn.src == 0:
                out.calls.append(CallSite(pc, insn.imm, args))
        elif insn.is_exit:
            out.exits.append((pc, reg_val(regs[0], kinds)))
        elif insn.is_alu and insn.alu_op in (AluOp.MUL, AluOp.DIV, AluOp.MOD):
            if insn.alu_op != AluOp.MUL and insn.source:
                divisor = Val(Kind.SCALAR, facts.src_const) if facts.src_const is not None else UNKNOWN_SCALAR
                out.divisions.append(DivSite(pc, divisor))
            if insn.cls == InsnClass.ALU64:
                dst = regs[insn.dst]
                dst_max = dst.var.umax if dst.kind == RegKind.SCALAR else None
                src_max = facts.src_range[1] if facts.src_range is not None else None
                out.wide_operands.append((pc, dst_max, src_max))
    out.mixed_pointers.extend(mixed)
    return out


__all__ = ["tracked_from_analysis", "reg_val"]

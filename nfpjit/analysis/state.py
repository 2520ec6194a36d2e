"""Abstract machine state: what each register and stack slot may hold, per call frame.

A register is a :class:`RegState`: its :class:`RegKind` (scalar or one of the
pointer kinds the kernel distinguishes), a :class:`Scalar` for a number or for
a pointer's variable offset, a fixed offset, the map it points into, an ``id``
that ties copies together (a lookup result and its copies become non-NULL
together; packet pointers with one variable offset share a proven range) and,
for packet pointers, ``range``: how many bytes past the pointer's base were
proven to lie before ``data_end``.

The stack is kept per 8-byte slot (:class:`Slot`): either a spilled register
or per-byte knowledge (uninitialised, some number, zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

from nfpjit.analysis.scalar import Bounds, Scalar
from nfpjit.analysis.tnum import Tnum


class RegKind(IntEnum):
    NOT_INIT = 0
    SCALAR = 1
    CTX = 2
    PACKET = 3
    PACKET_END = 4
    PACKET_META = 5
    STACK = 6
    MAP_PTR = 7
    MAP_VALUE = 8
    MAP_VALUE_OR_NULL = 9
    MIXED = 10  # facts only: different kinds on different paths
    FUNC = 11                 # a subprogram's address (ld_imm64 func): a bpf_loop callback
    RINGBUF_MEM = 12          # a reserved ring buffer record (reference-tracked)
    RINGBUF_MEM_OR_NULL = 13  # a bpf_ringbuf_reserve result not yet checked
    MAP_KEY = 14              # a map's key, given to a bpf_for_each_map_elem callback (read-only)

    @property
    def kernel_name(self) -> str:
        return _KERNEL_NAMES[self]

    @property
    def is_pointer(self) -> bool:
        return self not in (RegKind.NOT_INIT, RegKind.SCALAR, RegKind.MIXED)


_KERNEL_NAMES = {
    RegKind.NOT_INIT: "?", RegKind.SCALAR: "scalar", RegKind.CTX: "ctx", RegKind.PACKET: "pkt",
    RegKind.PACKET_END: "pkt_end", RegKind.PACKET_META: "pkt_meta", RegKind.STACK: "fp",
    RegKind.MAP_PTR: "map_ptr", RegKind.MAP_VALUE: "map_value", RegKind.MAP_VALUE_OR_NULL: "map_value_or_null",
    RegKind.MIXED: "mixed", RegKind.FUNC: "func", RegKind.RINGBUF_MEM: "ringbuf_mem",
    RegKind.RINGBUF_MEM_OR_NULL: "ringbuf_mem_or_null", RegKind.MAP_KEY: "map_key",
}

ZERO = Scalar.const(0)


@dataclass(frozen=True, slots=True)
class RegState:
    """One register.  For pointers, ``var`` is the variable part of the offset and ``off`` the fixed part."""

    kind: RegKind = RegKind.NOT_INIT
    var: Scalar = ZERO
    off: int = 0
    map: int | None = None
    id: int = 0
    range: int = 0
    frame: int = 0

    @staticmethod
    def scalar(s: Scalar) -> "RegState":
        return RegState(RegKind.SCALAR, s)

    @staticmethod
    def unknown() -> "RegState":
        return RegState(RegKind.SCALAR, Scalar.unknown())

    @staticmethod
    def const(v: int) -> "RegState":
        return RegState(RegKind.SCALAR, Scalar.const(v))

    @property
    def is_scalar(self) -> bool:
        return self.kind == RegKind.SCALAR

    @property
    def const_value(self) -> int | None:
        return self.var.value if self.kind == RegKind.SCALAR else None

    @property
    def fixed_offset(self) -> bool:
        return self.var.is_const

    def describe(self, regno: int | None = None) -> str:
        k = self.kind
        if k == RegKind.SCALAR:
            return str(self.var)
        if k == RegKind.NOT_INIT:
            return "?"
        parts = []
        if self.id:
            parts.append(f"id={self.id}")
        parts.append(f"off={self.off}")
        if k == RegKind.PACKET:
            parts.append(f"r={self.range}")
        elif k in (RegKind.RINGBUF_MEM, RegKind.RINGBUF_MEM_OR_NULL):
            parts.append(f"sz={self.range}")
        if not self.var.is_const or self.var.value:
            parts.append(f"var={self.var}")
        return f"{k.kernel_name}({','.join(parts)})"


def regs_safe(old: RegState, new: RegState, ids: dict[int, int]) -> bool:
    """Whether everything ``new`` may be is covered by ``old`` (so exploring ``new`` is redundant)."""
    if old.kind == RegKind.NOT_INIT:
        return True
    if new.kind != old.kind:
        return False
    if old.kind == RegKind.SCALAR:
        if not old.var.includes(new.var):
            return False
        if old.id:  # old's copies were narrowed together: new's must be linked the same way
            if new.off != old.off:
                return False
            seen = ids.get(old.id)
            if seen is None:
                ids[old.id] = new.id
            elif seen != new.id or not new.id:
                return False
        return True
    if old.off != new.off or old.map != new.map or old.frame != new.frame:
        return False
    if not old.var.includes(new.var):
        return False
    if old.kind == RegKind.PACKET and old.range > new.range:
        return False
    if old.kind in (RegKind.RINGBUF_MEM, RegKind.RINGBUF_MEM_OR_NULL) and old.range != new.range:
        return False
    if old.id or new.id:
        seen = ids.get(old.id)
        if seen is None:
            ids[old.id] = new.id
        elif seen != new.id:
            return False
    return True


def join_regs(a: RegState, b: RegState) -> RegState:
    """The least register state covering both (used for the per-instruction facts)."""
    if a == b:
        return a
    if a.kind == RegKind.NOT_INIT:
        return b
    if b.kind == RegKind.NOT_INIT:
        return a
    if a.kind != b.kind or a.map != b.map or a.frame != b.frame:
        return RegState(RegKind.MIXED, Scalar.unknown())
    if a.kind == RegKind.SCALAR:
        return RegState(RegKind.SCALAR, a.var.union(b.var))
    if a.off == b.off:
        var = a.var.union(b.var)
        off = a.off
    else:
        lo = min(a.off, b.off)
        if a.var.is_const and b.var.is_const:
            var = Scalar.const(a.var.value + a.off - lo).union(Scalar.const(b.var.value + b.off - lo))
        else:
            var = _plus(a.var, a.off - lo).union(_plus(b.var, b.off - lo))
        off = lo
    return RegState(a.kind, var, off, a.map, a.id if a.id == b.id else 0, min(a.range, b.range), a.frame)


def _plus(v: Scalar, c: int) -> Scalar:
    """``v + c`` for a small ``c >= 0``, cheaply (facts only: the low word is left unknown)."""
    if c == 0:
        return v
    f = v.full
    full = Bounds.unknown(64)
    umin, umax = (f.umin + c, f.umax + c) if f.umax + c <= full.umax else (full.umin, full.umax)
    smin, smax = (f.smin + c, f.smax + c) if f.smax + c <= full.smax else (full.smin, full.smax)
    return Scalar(Bounds(64, f.tnum.add(Tnum.const(c)), umin, umax, smin, smax), Bounds.unknown(32))


class Byte(IntEnum):
    INVALID = 0
    MISC = 1
    ZERO = 2
    SPILL = 3


@dataclass(frozen=True, slots=True)
class Slot:
    """An 8-byte stack slot: a spilled register, or the state of each byte (lowest address first)."""

    bytes: tuple[Byte, ...]
    spill: RegState | None = None
    vals: tuple[int | None, ...] | None = None  # known byte values of MISC bytes (narrow constant stores)

    @staticmethod
    def spilled(reg: RegState) -> "Slot":
        return Slot((Byte.SPILL,) * 8, reg)

    def byte_value(self, i: int) -> int | None:
        """The value of byte ``i`` (lowest address first) when known."""
        if self.spill is not None:
            v = self.spill.var.value if self.spill.kind == RegKind.SCALAR else None
            return None if v is None else (v >> (8 * i)) & 0xFF
        if self.bytes[i] == Byte.ZERO:
            return 0
        return self.vals[i] if self.vals is not None else None


EMPTY_SLOT = Slot((Byte.INVALID,) * 8)


def slots_safe(old: Slot, new: Slot, ids: dict[int, int]) -> bool:
    if old.spill is not None:
        if new.spill is not None:
            return regs_safe(old.spill, new.spill, ids)
        if old.spill.kind == RegKind.SCALAR and all(b == Byte.ZERO for b in new.bytes):
            return old.spill.var.contains(0)
        if old.spill.kind == RegKind.SCALAR and old.spill.var.includes(Scalar.unknown()):
            return all(b != Byte.INVALID for b in new.bytes)
        return False
    for ob, i in zip(old.bytes, range(8)):
        nb = new.bytes[i]
        if ob == Byte.INVALID:
            continue
        if old.vals is not None and old.vals[i] is not None and new.byte_value(i) != old.vals[i]:
            return False
        if ob == Byte.ZERO:
            if nb == Byte.ZERO:
                continue
            if nb == Byte.SPILL and new.spill.kind == RegKind.SCALAR and new.spill.var.value == 0:
                continue
            return False
        # old MISC: any number will do, a pointer will not
        if nb == Byte.INVALID:
            return False
        if nb == Byte.SPILL and new.spill.kind != RegKind.SCALAR:
            return False
    return True


@dataclass
class Frame:
    """One call frame: registers, stack slots by index (slot k covers fp-8*(k+1) .. fp-8*k-1)."""

    regs: list[RegState]
    stack: dict[int, Slot]
    callsite: int  # pc of the call that made this frame; -1 for the entry
    number: int
    function_start: int

    def copy(self) -> "Frame":
        return Frame(list(self.regs), dict(self.stack), self.callsite, self.number, self.function_start)


@dataclass
class State:
    frames: list[Frame]
    #: references held (kernel acquire/release: ring buffer records): id -> pc of the acquiring call
    refs: dict[int, int] = field(default_factory=dict)
    #: callback returns on this path (a state covered by an open one from before a return is not a loop)
    callback_returns: int = 0

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    def copy(self) -> "State":
        return State([f.copy() for f in self.frames], dict(self.refs), self.callback_returns)

    def all_regs(self):
        """Yield (frame, index-or-slot, RegState, is_spill) for every register and spilled register."""
        for f in self.frames:
            for i, r in enumerate(f.regs):
                yield f, i, r, False
            for k, s in f.stack.items():
                if s.spill is not None:
                    yield f, k, s.spill, True

    def map_regs(self, fn) -> None:
        """Replace every register and spilled register ``r`` by ``fn(r)``."""
        for f in self.frames:
            f.regs[:] = [fn(r) for r in f.regs]  # in place: callers may hold the list
            for k, s in list(f.stack.items()):
                if s.spill is not None:
                    f.stack[k] = replace(s, spill=fn(s.spill))


__all__ = ["RegKind", "RegState", "Slot", "Byte", "Frame", "State", "EMPTY_SLOT", "regs_safe",
           "join_regs", "slots_safe"]

"""What a simulator run produces: :class:`SimResult`, its faults and its trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Mapping

from .cycles import Resource

# Map contents after a run: map name -> {key bytes: value bytes}.  Arrays list
# every index (as the kernel's dump does); hashes list the present entries.
MapState = dict[str, dict[bytes, bytes]]


class FaultKind(IntEnum):
    ILLEGAL_INSTRUCTION = 0   # undecodable word, pc outside the code, bad operand use, branch in a defer slot
    OUT_OF_BOUNDS = 1         # CTM/EMEM/IMEM/CLS access outside the memory or map table, bad CSR value
    WATCHDOG = 2              # cycle budget exceeded (or waiting for a signal nothing will raise)
    STACK_OVERFLOW = 3        # local-memory access outside LM (the eBPF stack lives there)
    LM_POINTER_TOO_SOON = 4   # LM index pointer used fewer than 3 cycles after its CSR was written


@dataclass(frozen=True)
class SimFault:
    """Why a run stopped abnormally; ``address`` is the NFP code address."""

    kind: FaultKind
    address: int
    message: str
    mem_address: int | None = None
    insn_index: int | None = None      # eBPF instruction index, from the image's line table
    source: str | None = None          # file:line:col, from the image's line table

    def to_json(self) -> dict:
        return {"kind": self.kind.name.lower(), "address": self.address, "message": self.message,
                "mem_address": self.mem_address, "insn_index": self.insn_index, "source": self.source}

    def __str__(self) -> str:
        text = f"nfp {self.address:#06x}: {self.kind.name.lower()}: {self.message}"
        if self.mem_address is not None:
            text += f" (address {self.mem_address:#x})"
        if self.insn_index is not None and self.insn_index >= 0:
            text += f" [eBPF insn {self.insn_index}]"
        if self.source:
            text += f" [{self.source}]"
        return text


@dataclass(frozen=True)
class Usage:
    """Accesses to and cycles spent in one resource."""

    accesses: int = 0
    cycles: int = 0


@dataclass(frozen=True)
class TraceEntry:
    """One executed instruction: where, what, what it changed, and the cycle count after it."""

    address: int
    text: str
    changes: tuple[tuple[str, int, int], ...]   # (location, old, new)
    cycles: int

    def __str__(self) -> str:
        ch = ", ".join(f"{n}: {o:#x} -> {v:#x}" for n, o, v in self.changes)
        return f"{self.address:04x}  {self.text:<40} ; cyc {self.cycles}" + (f"  {ch}" if ch else "")


@dataclass(frozen=True)
class SimResult:
    action: int                              # the halt operand (datapath action); 0 when faulted
    r0: int                                  # a1:a0, the eBPF R0 of the JIT's register mapping
    packet: bytes                            # packet after the run (adjust_head/tail applied)
    maps: MapState                           # map contents after the run
    insns: int                               # NFP instructions executed (firmware routines not included)
    cycles: int
    breakdown: Mapping[Resource, Usage]      # sums to ``cycles``
    fault: SimFault | None = None
    routine_calls: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    map_cache_hits: int = 0
    map_cache_misses: int = 0
    trace: tuple[TraceEntry, ...] | None = None
    redirect: int | None = None              # bpf_redirect's target ifindex, if the program called it

    def to_json(self) -> dict:
        """A JSON-ready dict (schema in docs/simulator.md); bytes are hex strings."""
        return {
            "action": self.action,
            "r0": self.r0,
            "packet": self.packet.hex(),
            "maps": {name: {k.hex(): v.hex() for k, v in entries.items()} for name, entries in self.maps.items()},
            "insns": self.insns,
            "cycles": self.cycles,
            "breakdown": {r.name.lower(): {"accesses": u.accesses, "cycles": u.cycles}
                          for r, u in self.breakdown.items()},
            "fault": self.fault.to_json() if self.fault else None,
            "routine_calls": dict(self.routine_calls),
            "map_cache": {"hits": self.map_cache_hits, "misses": self.map_cache_misses},
            "redirect": self.redirect,
            "trace": [{"address": t.address, "text": t.text, "cycles": t.cycles,
                       "changes": [{"location": n, "old": o, "new": v} for n, o, v in t.changes]}
                      for t in self.trace] if self.trace is not None else None,
        }

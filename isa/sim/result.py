"""What a simulator run produces: :class:`SimResult`, its faults and its trace."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
class PacketMeta:
    """Packet metadata around a TC program: what the firmware fills before it runs, and hands on after.

    The program reads and writes it through the packet-metadata CSRs (``Csr.PKT_*``; ``queue_mapping``
    is ``TX_QUEUE``).  As input, ``hash``, ``protocol`` and ``pkt_type`` left at None are computed
    by the firmware from the frame (:mod:`nfpjit.ethernet`: the Toeplitz receive hash,
    ``eth_type_trans``'s classification); every other field starts as given (0: nothing set).
    A result's ``meta`` has every field filled with its value after the run.
    """

    mark: int = 0
    priority: int = 0
    tc_index: int = 0
    tc_classid: int = 0
    hash: int | None = None
    protocol: int | None = None
    pkt_type: int | None = None
    ifindex: int | None = None
    cb: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    queue_mapping: int = 0

    def __post_init__(self):
        if len(self.cb) != 5:
            raise ValueError(f"cb has 5 words, not {len(self.cb)}")

    def filled(self, frame: bytes, ingress_ifindex: int = 1) -> "PacketMeta":
        """This metadata with what the firmware computes from ``frame`` filled in where it is None
        (``ifindex``: the ingress device, loopback's 1 when there is none)."""
        from nfpjit.ethernet import eth_protocol_and_type, rx_hash

        protocol, pkt_type = eth_protocol_and_type(frame)
        return replace(self, hash=rx_hash(frame) if self.hash is None else self.hash,
                       protocol=protocol if self.protocol is None else self.protocol,
                       pkt_type=pkt_type if self.pkt_type is None else self.pkt_type,
                       ifindex=(ingress_ifindex or 1) if self.ifindex is None else self.ifindex)

    def csr_values(self) -> tuple[int, ...]:
        """The values of ``PKT_META_CSRS`` in order (None fields must have been filled)."""
        return (self.mark, self.priority, self.tc_index, self.tc_classid, self.hash, self.protocol,
                self.pkt_type, self.ifindex, *self.cb)

    @classmethod
    def from_csr_values(cls, values, queue_mapping: int) -> "PacketMeta":
        v = [x & 0xFFFF_FFFF for x in values]
        return cls(*v[:8], cb=tuple(v[8:13]), queue_mapping=queue_mapping & 0xFFFF_FFFF)

    def to_json(self) -> dict:
        return {"mark": self.mark, "priority": self.priority, "tc_index": self.tc_index,
                "tc_classid": self.tc_classid, "hash": self.hash, "protocol": self.protocol,
                "pkt_type": self.pkt_type, "ifindex": self.ifindex, "cb": list(self.cb), "queue_mapping": self.queue_mapping}


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
    meta: PacketMeta | None = None           # TC images: the packet metadata after the run

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
            "meta": self.meta.to_json() if self.meta is not None else None,
            "trace": [{"address": t.address, "text": t.text, "cycles": t.cycles,
                       "changes": [{"location": n, "old": o, "new": v} for n, o, v in t.changes]}
                      for t in self.trace] if self.trace is not None else None,
        }

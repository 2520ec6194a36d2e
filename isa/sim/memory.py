"""The simulated memories: per-core local memory, the CTM packet buffer, EMEM map tables, scratch memories.

All memories are byte-addressed and little-endian (as the ISA table says).
An access outside a memory raises :class:`Trap`, which the machine turns into
a :class:`~nfpjit.isa.sim.result.SimFault` result; it never leaves the
simulator.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from dataclasses import dataclass

from .result import FaultKind

LM_SIZE = 4096                     # bytes of local memory per core; the eBPF stack lives here

CTM_BASE = 0x1000                  # CTM address of the packet buffer (0 stays invalid: null pointers fault)
CTM_BUFFER_SIZE = 8192             # packet buffer: headroom + packet + tailroom
HEADROOM = 256                     # the packet starts this far into the buffer
MAX_PACKET = CTM_BUFFER_SIZE - HEADROOM
ETH_HLEN = 14                      # adjust_head/tail keep at least an Ethernet header
FRAME_RESERVED = 40                # headroom bytes adjust_head may not reach (Linux keeps struct xdp_frame there)

EMEM_MAP_BASE = 0x10_0000_0000     # 40-bit EMEM address of map 0's table; map i at + i << 32
SCRATCH_SIZE = 0x1_0000            # IMEM and CLS: 64 KiB each at address 0


class Trap(Exception):
    """Internal: a fault detected while executing; caught by the machine's run loop."""

    def __init__(self, kind: FaultKind, message: str, mem_address: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.mem_address = mem_address


class Flat:
    """A flat memory of ``size`` bytes at ``base`` (LM, the CTM buffer, IMEM, CLS)."""

    def __init__(self, name: str, base: int, size: int, kind: FaultKind = FaultKind.OUT_OF_BOUNDS):
        self.name = name
        self.base = base
        self.data = bytearray(size)
        self.kind = kind

    def _offset(self, address: int, length: int) -> int:
        off = address - self.base
        if off < 0 or off + length > len(self.data):
            raise Trap(self.kind, f"{self.name} access of {length} bytes outside {self.name} "
                                  f"[{self.base:#x}, {self.base + len(self.data):#x})", address)
        return off

    def read(self, address: int, length: int) -> bytes:
        off = self._offset(address, length)
        return bytes(self.data[off:off + length])

    def write(self, address: int, data: bytes) -> None:
        off = self._offset(address, len(data))
        self.data[off:off + len(data)] = data


def _round8(n: int) -> int:
    return (n + 7) & ~7


class RawBlock(Flat):
    """The CTM buffer holding a raw memory block (uBPF-style runs) at ``start``, ``length`` bytes long.

    Commands move whole words, and the JIT reads or writes the word around a sub-word access (from
    the access or ending with it): a command must start inside the block and end at most at the
    block's length rounded up to 4 bytes, or 8 bytes into a shorter block (so a 1-byte access at
    offset 2 of a 4-byte block, read as bytes 2..5, is allowed).
    """

    def __init__(self, start: int, length: int):
        super().__init__("CTM", CTM_BASE, CTM_BUFFER_SIZE)
        self.start = start
        self.length = length

    def _offset(self, address: int, length: int) -> int:
        end = self.start + max((self.length + 3) & ~3, 8)
        if length and (not self.start <= address < self.start + self.length or address + length > end):
            raise Trap(FaultKind.OUT_OF_BOUNDS, f"CTM access of {length} bytes outside the {self.length}-byte "
                                                f"memory block at {self.start:#x}", address)
        return super()._offset(address, length)


@dataclass
class MapTable:
    """A HASH or ARRAY map held by the NIC firmware in EMEM: values at ``base + slot * stride``."""

    name: str
    is_hash: bool
    key_size: int
    value_size: int
    max_entries: int
    table_id: int
    base: int
    cpus: int = 0               # per-CPU map: one copy of every value per thread (0: an ordinary map)
    lru: bool = False           # LRU hash: a full table evicts the least recently used entry

    def __post_init__(self) -> None:
        self.stride = _round8(max(self.value_size, 1))
        self.values = bytearray(self.stride * self.max_entries * max(self.cpus, 1))
        self.slots: dict[bytes, int] = {}          # hash: key -> slot
        self.free = list(range(self.max_entries - 1, -1, -1))
        self.recency: OrderedDict[bytes, None] = OrderedDict()     # LRU: keys, least recently used first

    def _at(self, slot: int, cpu: int) -> int:
        """Offset of ``slot``'s value for ``cpu`` in ``values`` (per-CPU copies follow each other)."""
        return (cpu * self.max_entries + slot) * self.stride if self.cpus else slot * self.stride

    def _slot_of(self, key: bytes) -> int | None:
        if self.is_hash:
            return self.slots.get(key)
        index = int.from_bytes(key[:4], "little")
        return index if index < self.max_entries else None

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        """The EMEM address of the value for ``key`` (per-CPU maps: ``cpu``'s copy), or 0."""
        slot = self._slot_of(key)
        if slot is None:
            return 0
        if self.lru:
            self.recency.move_to_end(key)
        return self.base + self._at(slot, cpu)

    def value(self, slot: int, cpu: int = 0) -> bytes:
        at = self._at(slot, cpu)
        return bytes(self.values[at: at + self.value_size])

    def update(self, key: bytes, value: bytes, flags: int, cpu: int | None = None) -> int:
        """0 or a negative errno, with the kernel's rules for BPF_ANY/NOEXIST/EXIST.

        Per-CPU maps: a program's update (``cpu`` = its thread) writes that CPU's copy, and a new
        hash entry starts as zeros on the other CPUs, as in Linux; user space (``cpu`` None) writes
        every CPU's copy with the value (as the kernel oracle's update does).
        """
        if flags > 2:
            return -errno.EINVAL
        slot = self._slot_of(key)
        fresh = slot is None
        if not self.is_hash:
            if slot is None:
                return -errno.E2BIG
            if flags == 1:
                return -errno.EEXIST
        elif slot is None:
            if flags == 2:
                return -errno.ENOENT
            if not self.free:
                if not self.lru or not self.slots:
                    return -errno.E2BIG
                oldest, _ = self.recency.popitem(last=False)    # evict the least recently used entry
                self.free.append(self.slots.pop(oldest))
            slot = self.free.pop()
            self.slots[key] = slot
        elif flags == 1:
            return -errno.EEXIST
        if self.lru:
            self.recency[key] = None
            self.recency.move_to_end(key)
        if not self.cpus:
            self.values[slot * self.stride: slot * self.stride + self.value_size] = value
            return 0
        for c in range(self.cpus):
            at = self._at(slot, c)
            if cpu is None or c == cpu:
                self.values[at: at + self.value_size] = value
            elif fresh:
                self.values[at: at + self.value_size] = bytes(self.value_size)
        return 0

    def delete(self, key: bytes) -> int:
        if not self.is_hash:
            return -errno.EINVAL
        slot = self.slots.pop(key, None)
        if slot is None:
            return -errno.ENOENT
        self.recency.pop(key, None)
        self.free.append(slot)
        return 0

    def dump(self, cpu: int = 0) -> dict[bytes, bytes]:
        """Every entry (per-CPU maps: ``cpu``'s copy, as a lookup from user space shows one CPU)."""
        if self.lru:        # least recently used first: maps_in rebuilt from a dump keeps the recency
            return {k: self.value(self.slots[k], cpu) for k in self.recency}
        if self.is_hash:
            return {k: self.value(s, cpu) for k, s in sorted(self.slots.items(), key=lambda kv: kv[1])}
        return {i.to_bytes(4, "little"): self.value(i, cpu) for i in range(self.max_entries)}


class Emem:
    """External memory as far as programs see it: the map tables, each in its own 4 GiB window."""

    def __init__(self, tables: list[MapTable]):
        self.tables = tables

    def _locate(self, address: int, length: int) -> tuple[MapTable, int]:
        index = (address - EMEM_MAP_BASE) >> 32
        if address >= EMEM_MAP_BASE and index < len(self.tables):
            t = self.tables[index]
            off = address - t.base
            if off + length <= len(t.values):
                return t, off
        raise Trap(FaultKind.OUT_OF_BOUNDS, f"EMEM access of {length} bytes outside every map table", address)

    def read(self, address: int, length: int) -> bytes:
        t, off = self._locate(address, length)
        return bytes(t.values[off:off + length])

    def write(self, address: int, data: bytes) -> None:
        t, off = self._locate(address, len(data))
        t.values[off:off + len(data)] = data

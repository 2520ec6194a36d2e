"""eBPF maps with the kernel's semantics, for the reference interpreter.

Each map keeps its values in ``bytearray`` objects that never move while the
entry exists, so a pointer a program got from ``bpf_map_lookup_elem`` keeps
reading and writing the live value (as in the kernel).  Operations return 0 or
a negative errno exactly where the kernel does (``-EEXIST``, ``-ENOENT``,
``-E2BIG``, ``-EINVAL``, ``-ENOSPC``); they never raise on what a program can
pass.  Per-CPU maps model one CPU.  :class:`MapStore` holds the maps of one
program in ``Program.maps`` order and dumps them as a
:data:`~nfpjit.ebpf.result.MapState`.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import IntEnum

from nfpjit.errors import UnsupportedError, UsageError
from nfpjit.ebpf.opcodes import MapType, MapUpdateFlag
from nfpjit.ebpf.program import MapDef, Program
from nfpjit.ebpf.result import MapState


class Errno(IntEnum):
    """The errno values map operations and helpers return (negated)."""

    EPERM = 1
    ENOENT = 2
    E2BIG = 7
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    EINVAL = 22
    ENOSPC = 28
    EOPNOTSUPP = 95
    ENOTSUPP = 524


def _flags_ok(flags: int) -> bool:
    # The kernel accepts BPF_F_LOCK (4) on top of ANY/NOEXIST/EXIST only for spin-lock values.
    return 0 <= flags <= MapUpdateFlag.EXIST


class BpfMap:
    """Common interface: ``lookup`` returns the live value buffer or None."""

    def __init__(self, mapdef: MapDef):
        self.mapdef = mapdef

    @property
    def name(self) -> str:
        return self.mapdef.name

    @property
    def key_size(self) -> int:
        return self.mapdef.key_size

    @property
    def value_size(self) -> int:
        return self.mapdef.value_size

    def lookup(self, key: bytes) -> bytearray | None:
        raise NotImplementedError

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        raise NotImplementedError

    def delete(self, key: bytes) -> int:
        raise NotImplementedError

    def items(self) -> list[tuple[bytes, bytes]]:
        """Entries as the kernel's dump lists them, in iteration order."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.mapdef.type.kernel_name}>"


class ArrayMap(BpfMap):
    """Array-like maps: ARRAY, PERCPU_ARRAY (one CPU), PROG_ARRAY, DEVMAP, CPUMAP, XSKMAP.

    Every index exists from the start (zero-filled, or ``MapDef.initial`` for
    global data); keys are little-endian u32 indices.
    """

    def __init__(self, mapdef: MapDef):
        super().__init__(mapdef)
        vs = mapdef.value_size
        self.values = [bytearray(vs) for _ in range(mapdef.max_entries)]
        if mapdef.initial is not None and self.values:
            init = mapdef.initial[:vs]
            self.values[0][: len(init)] = init

    def _index(self, key: bytes) -> int:
        return int.from_bytes(bytes(key[:4]).ljust(4, b"\0"), "little")

    def lookup(self, key: bytes) -> bytearray | None:
        i = self._index(key)
        return self.values[i] if i < len(self.values) else None

    def present(self, key: bytes) -> bool:
        """Whether a redirect/tail-call slot holds something (non-zero value)."""
        v = self.lookup(key)
        return v is not None and any(v)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        if not _flags_ok(flags):
            return -Errno.EINVAL
        i = self._index(key)
        if i >= len(self.values):
            return -Errno.E2BIG
        if flags == MapUpdateFlag.NOEXIST:
            return -Errno.EEXIST
        self.values[i][:] = bytes(value[: self.value_size]).ljust(self.value_size, b"\0")
        return 0

    def delete(self, key: bytes) -> int:
        if self.mapdef.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            return -Errno.EINVAL
        # prog/dev/cpu/xsk arrays: deleting clears the slot.
        i = self._index(key)
        if i >= len(self.values):
            return -Errno.E2BIG if self.mapdef.type == MapType.PROG_ARRAY else -Errno.EINVAL
        self.values[i][:] = bytes(self.value_size)
        return 0

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(i.to_bytes(4, "little"), bytes(v)) for i, v in enumerate(self.values)]


class HashMap(BpfMap):
    """HASH, PERCPU_HASH (one CPU), DEVMAP_HASH and, with ``lru``, LRU_HASH/LRU_PERCPU_HASH.

    An update of an existing key writes the value in place, so earlier lookup
    pointers see the new value (the kernel's prealloc hash may instead recycle
    the element; programs must not rely on either).
    """

    def __init__(self, mapdef: MapDef, *, lru: bool = False):
        super().__init__(mapdef)
        self.lru = lru
        self.entries: OrderedDict[bytes, bytearray] = OrderedDict()

    def lookup(self, key: bytes) -> bytearray | None:
        key = bytes(key)
        v = self.entries.get(key)
        if v is not None and self.lru:
            self.entries.move_to_end(key)
        return v

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        if not _flags_ok(flags):
            return -Errno.EINVAL
        key = bytes(key)
        value = bytes(value[: self.value_size]).ljust(self.value_size, b"\0")
        old = self.entries.get(key)
        if old is not None:
            if flags == MapUpdateFlag.NOEXIST:
                return -Errno.EEXIST
            old[:] = value
            if self.lru:
                self.entries.move_to_end(key)
            return 0
        if flags == MapUpdateFlag.EXIST:
            return -Errno.ENOENT
        if len(self.entries) >= self.mapdef.max_entries:
            if not self.lru or not self.entries:
                return -Errno.E2BIG
            self.entries.popitem(last=False)  # least recently used
        self.entries[key] = bytearray(value)
        return 0

    def delete(self, key: bytes) -> int:
        if self.entries.pop(bytes(key), None) is None:
            return -Errno.ENOENT
        return 0

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, bytes(v)) for k, v in self.entries.items()]


class LpmTrieMap(BpfMap):
    """LPM_TRIE: key = u32 prefix length (host order) + data (network order); longest match wins."""

    def __init__(self, mapdef: MapDef):
        super().__init__(mapdef)
        self.max_prefixlen = (mapdef.key_size - 4) * 8
        # (prefixlen, masked data) -> (key as stored, value)
        self.nodes: dict[tuple[int, int], tuple[bytes, bytearray]] = {}

    def _split(self, key: bytes) -> tuple[int, int]:
        key = bytes(key).ljust(self.key_size, b"\0")
        plen = int.from_bytes(key[:4], "little")
        data = int.from_bytes(key[4 : self.key_size], "big")
        return plen, data

    def _masked(self, data: int, plen: int) -> int:
        drop = self.max_prefixlen - plen
        return (data >> drop) << drop if drop > 0 else data

    def lookup(self, key: bytes) -> bytearray | None:
        plen, data = self._split(key)
        plen = min(plen, self.max_prefixlen)
        for p in range(plen, -1, -1):
            hit = self.nodes.get((p, self._masked(data, p)))
            if hit is not None:
                return hit[1]
        return None

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        if not _flags_ok(flags):
            return -Errno.EINVAL
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return -Errno.EINVAL
        ident = (plen, self._masked(data, plen))
        value = bytes(value[: self.value_size]).ljust(self.value_size, b"\0")
        old = self.nodes.get(ident)
        if old is not None:
            if flags == MapUpdateFlag.NOEXIST:
                return -Errno.EEXIST
            old[1][:] = value
            self.nodes[ident] = (bytes(key[: self.key_size]), old[1])
            return 0
        if flags == MapUpdateFlag.EXIST:
            return -Errno.ENOENT
        if len(self.nodes) >= self.mapdef.max_entries:
            return -Errno.ENOSPC
        self.nodes[ident] = (bytes(key[: self.key_size]), bytearray(value))
        return 0

    def delete(self, key: bytes) -> int:
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return -Errno.EINVAL
        if self.nodes.pop((plen, self._masked(data, plen)), None) is None:
            return -Errno.ENOENT
        return 0

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, bytes(v)) for k, v in self.nodes.values()]


_ARRAY_TYPES = {MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.DEVMAP,
                MapType.CPUMAP, MapType.XSKMAP, MapType.PERF_EVENT_ARRAY}
_HASH_TYPES = {MapType.HASH, MapType.PERCPU_HASH, MapType.DEVMAP_HASH}
_LRU_TYPES = {MapType.LRU_HASH, MapType.LRU_PERCPU_HASH}


def create_map(mapdef: MapDef) -> BpfMap:
    """A fresh map for ``mapdef``; map types the interpreter does not model raise UnsupportedError."""
    if mapdef.key_size < 0 or mapdef.value_size < 0 or mapdef.max_entries < 0:
        raise UsageError(f"map {mapdef.name!r} has a negative size", where=mapdef.name)
    if mapdef.type in _ARRAY_TYPES:
        return ArrayMap(mapdef)
    if mapdef.type in _HASH_TYPES:
        return HashMap(mapdef)
    if mapdef.type in _LRU_TYPES:
        return HashMap(mapdef, lru=True)
    if mapdef.type == MapType.LPM_TRIE:
        if mapdef.key_size <= 4:
            raise UsageError(f"LPM trie {mapdef.name!r} needs a key of more than 4 bytes", where=mapdef.name)
        return LpmTrieMap(mapdef)
    raise UnsupportedError(f"map type {mapdef.type.kernel_name} is not modelled by the interpreter",
                           where=mapdef.name, hint="use array, hash, LRU, LPM trie, per-CPU or redirect maps")


# Maps whose contents a dump shows: the ones holding data user space can read back
# (prog arrays, devmaps, cpumaps, xskmaps and perf event arrays hold kernel objects).
DUMPED_MAP_TYPES = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH, MapType.PERCPU_HASH,
    MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE,
})


class MapStore:
    """The maps of one program, in ``Program.maps`` order, also reachable by name."""

    def __init__(self, maps: list[BpfMap] | tuple[BpfMap, ...] = ()):
        self.maps: list[BpfMap] = list(maps)

    @classmethod
    def from_program(cls, program: Program) -> "MapStore":
        return cls([create_map(m) for m in program.maps])

    def __getitem__(self, index: int) -> BpfMap:
        return self.maps[index]

    def __len__(self) -> int:
        return len(self.maps)

    def __iter__(self):
        return iter(self.maps)

    def get(self, name: str) -> BpfMap | None:
        for m in self.maps:
            if m.name == name:
                return m
        return None

    def by_name(self, name: str) -> BpfMap:
        m = self.get(name)
        if m is None:
            known = ", ".join(x.name for x in self.maps) or "none"
            raise UsageError(f"no map named {name!r}", hint=f"maps: {known}")
        return m

    def ensure(self, mapdef: MapDef) -> BpfMap:
        """The map called ``mapdef.name``, created if missing (tail-called programs share maps by name)."""
        m = self.get(mapdef.name)
        if m is None:
            m = create_map(mapdef)
            self.maps.append(m)
        return m

    def dump(self) -> MapState:
        """Contents of the data maps (see DUMPED_MAP_TYPES): arrays every index, others present entries."""
        return {m.name: dict(m.items()) for m in self.maps if m.mapdef.type in DUMPED_MAP_TYPES}


__all__ = ["DUMPED_MAP_TYPES", "Errno", "BpfMap", "ArrayMap", "HashMap", "LpmTrieMap", "MapStore", "create_map"]

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
    ENODEV = 19
    EAGAIN = 11
    EOVERFLOW = 75
    ENOTSOCK = 88
    EOPNOTSUPP = 95
    EAFNOSUPPORT = 97
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


class RedirectArrayMap(ArrayMap):
    """DEVMAP, CPUMAP, XSKMAP: a slot holds a device (ifindex), a CPU queue (qsize) or an AF_XDP socket.

    The value user space wrote is kept; an all-zero value is an empty slot, and a lookup of an
    empty slot (from the program or from user space) finds nothing, as in the kernel.  The test
    run has no AF_XDP sockets: XSKMAP slots stay empty unless a caller fills them on purpose.
    """

    def __init__(self, mapdef: MapDef):
        super().__init__(mapdef)
        self.bound: dict[int, int] = {}   # XSKMAP: slot -> queue id of a modelled bound socket

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        """User space's update: a devmap takes an ifindex (not checked against devices here), a cpumap a
        queue size for a possible CPU, an xskmap only an AF_XDP socket — which no run has (-ENOTSOCK)."""
        if not _flags_ok(flags):
            return -Errno.EINVAL
        i = self._index(key)
        if i >= len(self.values):
            return -Errno.E2BIG
        if flags == MapUpdateFlag.NOEXIST and any(self.values[i]):
            return -Errno.EEXIST
        if self.mapdef.type == MapType.XSKMAP:
            return -Errno.ENOTSOCK
        if self.mapdef.type == MapType.CPUMAP:
            if int.from_bytes(bytes(value[:4]).ljust(4, b"\0"), "little") > 16384:
                return -Errno.EOVERFLOW
            if i >= possible_cpus():
                return -Errno.ENODEV
        self.values[i][:] = bytes(value[: self.value_size]).ljust(self.value_size, b"\0")
        return 0

    def bind_socket(self, key: bytes, queue_id: int) -> None:
        """Model an AF_XDP socket bound to ``queue_id`` in an XSKMAP slot (lookups then see
        ``struct bpf_xdp_sock { u32 queue_id; }`` and redirects hit); the kernel's test run cannot have one."""
        i = self._index(key)
        self.values[i][:] = (queue_id + 1).to_bytes(4, "little")[: self.value_size].ljust(self.value_size, b"\0")
        self.bound[i] = queue_id

    def lookup(self, key: bytes) -> bytearray | None:
        v = super().lookup(key)
        if v is None or not any(v):
            return None
        if self.mapdef.type == MapType.XSKMAP:
            return bytearray(self.bound.get(self._index(key), 0).to_bytes(4, "little"))
        return v

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(i.to_bytes(4, "little"), bytes(v)) for i, v in enumerate(self.values) if any(v)]


def possible_cpus() -> int:
    """The kernel's nr_cpu_ids on this machine (cpumap keys name real CPUs)."""
    global _POSSIBLE
    if _POSSIBLE is None:
        import os

        try:
            text = open("/sys/devices/system/cpu/possible").read().strip()
            _POSSIBLE = max(int(part.split("-")[-1]) for part in text.split(",")) + 1
        except (OSError, ValueError):
            _POSSIBLE = os.cpu_count() or 1
    return _POSSIBLE


_POSSIBLE: int | None = None


class QueueStackMap(BpfMap):
    """QUEUE (FIFO) and STACK (LIFO): no keys, ``push``/``pop``/``peek`` as the kernel's queue_stack_maps.c.

    ``items()`` lists the elements in the order pops would return them, keyed by position (u32).
    """

    def __init__(self, mapdef: MapDef, *, stack: bool):
        super().__init__(mapdef)
        self.stack = stack
        self.elems: list[bytes] = []   # oldest first

    def push(self, value: bytes, flags: int = 0) -> int:
        if flags & MapUpdateFlag.NOEXIST or flags > MapUpdateFlag.EXIST:
            return -Errno.EINVAL
        value = bytes(value[: self.value_size]).ljust(self.value_size, b"\0")
        if len(self.elems) >= self.mapdef.max_entries:
            if flags != MapUpdateFlag.EXIST or not self.elems:
                return -Errno.E2BIG
            self.elems.pop(0)  # BPF_EXIST: overwrite the oldest element
        self.elems.append(value)
        return 0

    def peek(self) -> bytes | None:
        if not self.elems:
            return None
        return self.elems[-1] if self.stack else self.elems[0]

    def pop(self) -> bytes | None:
        if not self.elems:
            return None
        return self.elems.pop() if self.stack else self.elems.pop(0)

    def lookup(self, key: bytes) -> bytearray | None:
        got = self.peek()
        return None if got is None else bytearray(got)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        return self.push(value, flags)

    def delete(self, key: bytes) -> int:
        return -Errno.EINVAL

    def items(self) -> list[tuple[bytes, bytes]]:
        order = list(reversed(self.elems)) if self.stack else list(self.elems)
        return [(i.to_bytes(4, "little"), v) for i, v in enumerate(order)]


BPF_RINGBUF_HDR_SZ = 8
RINGBUF_MAX_RECORD_SZ = (1 << 28) - 1  # UINT_MAX / 4 in the kernel, far beyond any map here


class RingBufMap(BpfMap):
    """RINGBUF: records of ``round_up(size + 8, 8)`` bytes in a ring of ``max_entries`` bytes.

    Nobody consumes during a run (as in a test run with no reader), so the ring fills up: a
    reservation fails (NULL, or -EAGAIN for bpf_ringbuf_output) once ``producer - consumer``
    would reach the size (the kernel compares with ``size - 1``).  ``items()`` lists the submitted records in order, keyed by their
    position among them (u32); discarded records take space but are not listed.  ``consume()``
    empties the ring (a reader caught up).
    """

    def __init__(self, mapdef: MapDef):
        super().__init__(mapdef)
        self.size = mapdef.max_entries
        self.prod_pos = 0
        self.cons_pos = 0
        self.records: list[list] = []   # [data bytearray, state] with state "busy"/"done"/"discarded"

    def reserve(self, size: int) -> list | None:
        if size > RINGBUF_MAX_RECORD_SZ:
            return None
        length = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if length > self.size:
            return None
        if self.prod_pos + length - self.cons_pos > self.size - 1:   # the kernel's "> rb->mask"
            return None
        rec = [bytearray(size), "busy"]
        self.prod_pos += length
        self.records.append(rec)
        return rec

    def avail_data(self) -> int:
        return self.prod_pos - self.cons_pos

    def consume(self) -> None:
        self.cons_pos = self.prod_pos
        self.records = []

    def lookup(self, key: bytes) -> bytearray | None:
        return None

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        return -Errno.ENOTSUPP

    def delete(self, key: bytes) -> int:
        return -Errno.ENOTSUPP

    def items(self) -> list[tuple[bytes, bytes]]:
        done = [bytes(r[0]) for r in self.records if r[1] == "done"]
        return [(i.to_bytes(4, "little"), d) for i, d in enumerate(done)]


class MapOfMaps(BpfMap):
    """ARRAY_OF_MAPS and HASH_OF_MAPS: the values are maps built from the inner-map template.

    A lookup (from the program) gives the inner :class:`BpfMap` or None; user space stores
    maps with :meth:`set_inner`.  ``items()`` is empty: the inner maps are dumped on their own
    as ``outer[key hex]`` (see :meth:`MapStore.dump`).
    """

    def __init__(self, mapdef: MapDef):
        super().__init__(mapdef)
        if mapdef.inner is None:
            raise UsageError(f"map-in-map {mapdef.name!r} has no inner map definition", where=mapdef.name,
                             hint="declare __array(values, struct { ... }) in the outer map")
        self.is_array = mapdef.type == MapType.ARRAY_OF_MAPS
        self.slots: dict[bytes, BpfMap] = {}

    def _key(self, key: bytes) -> bytes:
        return bytes(key[: self.key_size]).ljust(self.key_size, b"\0")

    def inner_of(self, key: bytes) -> BpfMap | None:
        return self.slots.get(self._key(key))

    def compatible(self, inner: BpfMap) -> str | None:
        """Why ``inner`` cannot go into this map (the kernel's bpf_map_meta_equal), or None."""
        t, d = self.mapdef.inner, inner.mapdef
        if d.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.PROG_ARRAY):
            return f"a {d.type.kernel_name} cannot be an inner map"
        if (t.type, t.key_size, t.value_size, t.flags & ~BPF_F_INNER_MAP) != \
                (d.type, d.key_size, d.value_size, d.flags & ~BPF_F_INNER_MAP):
            return (f"inner map {d.name!r} ({d.type.kernel_name}, key {d.key_size}, value {d.value_size}) does not "
                    f"match the template ({t.type.kernel_name}, key {t.key_size}, value {t.value_size})")
        if t.type == MapType.ARRAY and not t.flags & BPF_F_INNER_MAP and t.max_entries != d.max_entries:
            return f"inner array {d.name!r} has {d.max_entries} entries, the template {t.max_entries}"
        return None

    def set_inner(self, key: bytes, inner: BpfMap | None, flags: int = 0) -> int:
        if not _flags_ok(flags):
            return -Errno.EINVAL
        key = self._key(key)
        if inner is None:
            return self.delete(key)
        if self.compatible(inner) is not None:
            return -Errno.EINVAL
        if self.is_array:
            i = int.from_bytes(key[:4].ljust(4, b"\0"), "little")
            if i >= self.mapdef.max_entries:
                return -Errno.E2BIG
            if flags == MapUpdateFlag.NOEXIST:
                return -Errno.EEXIST
        else:
            if key in self.slots and flags == MapUpdateFlag.NOEXIST:
                return -Errno.EEXIST
            if key not in self.slots and flags == MapUpdateFlag.EXIST:
                return -Errno.ENOENT
            if key not in self.slots and len(self.slots) >= self.mapdef.max_entries:
                return -Errno.E2BIG
        self.slots[key] = inner
        return 0

    def new_inner(self, name: str) -> BpfMap:
        """A fresh map made from the template (what user space creates to fill a slot)."""
        from dataclasses import replace

        return create_map(replace(self.mapdef.inner, name=name))

    def lookup(self, key: bytes) -> bytearray | None:
        return None  # not a value: the interpreter's helper asks inner_of()

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        return -Errno.EINVAL  # values are maps: use set_inner

    def delete(self, key: bytes) -> int:
        key = self._key(key)
        if self.is_array:
            i = int.from_bytes(key[:4].ljust(4, b"\0"), "little")
            if i >= self.mapdef.max_entries:
                return -Errno.E2BIG
            self.slots.pop(key, None)
            return 0
        if self.slots.pop(key, None) is None:
            return -Errno.ENOENT
        return 0

    def items(self) -> list[tuple[bytes, bytes]]:
        return []

    def inner_items(self) -> list[tuple[bytes, BpfMap]]:
        return sorted(self.slots.items())


BPF_F_INNER_MAP = 0x1000

_ARRAY_TYPES = {MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY}
_REDIRECT_TYPES = {MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP}
_HASH_TYPES = {MapType.HASH, MapType.PERCPU_HASH, MapType.DEVMAP_HASH}
_LRU_TYPES = {MapType.LRU_HASH, MapType.LRU_PERCPU_HASH}


def create_map(mapdef: MapDef) -> BpfMap:
    """A fresh map for ``mapdef``; map types the interpreter does not model raise UnsupportedError."""
    if mapdef.key_size < 0 or mapdef.value_size < 0 or mapdef.max_entries < 0:
        raise UsageError(f"map {mapdef.name!r} has a negative size", where=mapdef.name)
    if mapdef.type in _ARRAY_TYPES:
        return ArrayMap(mapdef)
    if mapdef.type in _REDIRECT_TYPES:
        return RedirectArrayMap(mapdef)
    if mapdef.type in (MapType.QUEUE, MapType.STACK):
        return QueueStackMap(mapdef, stack=mapdef.type == MapType.STACK)
    if mapdef.type == MapType.RINGBUF:
        if mapdef.max_entries <= 0 or mapdef.max_entries & (mapdef.max_entries - 1) or mapdef.max_entries % 4096:
            raise UsageError(f"ring buffer {mapdef.name!r} needs a power-of-2 size of at least a page, "
                             f"not {mapdef.max_entries}", where=mapdef.name)
        return RingBufMap(mapdef)
    if mapdef.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        return MapOfMaps(mapdef)
    if mapdef.type in _HASH_TYPES:
        return HashMap(mapdef)
    if mapdef.type in _LRU_TYPES:
        return HashMap(mapdef, lru=True)
    if mapdef.type == MapType.LPM_TRIE:
        if mapdef.key_size <= 4:
            raise UsageError(f"LPM trie {mapdef.name!r} needs a key of more than 4 bytes", where=mapdef.name)
        return LpmTrieMap(mapdef)
    raise UnsupportedError(f"map type {mapdef.type.kernel_name} is not modelled by the interpreter",
                           where=mapdef.name, hint="modelled: array, hash, LRU, LPM trie, per-CPU, prog array, devmap(_hash), cpumap, "
                                "xskmap, perf event array, queue, stack, ringbuf, array/hash of maps")


# Maps whose contents a dump shows: the ones holding data user space can read back
# (prog arrays, devmaps, cpumaps, xskmaps and perf event arrays hold kernel objects).
DUMPED_MAP_TYPES = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH, MapType.PERCPU_HASH,
    MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE,
    MapType.QUEUE, MapType.STACK, MapType.RINGBUF,
})


class MapStore:
    """The maps of one program, in ``Program.maps`` order, also reachable by name."""

    def __init__(self, maps: list[BpfMap] | tuple[BpfMap, ...] = ()):
        self.maps: list[BpfMap] = list(maps)
        self.hidden: dict[str, BpfMap] = {}   # inner maps only reachable through an outer map

    @classmethod
    def from_program(cls, program: Program) -> "MapStore":
        store = cls([create_map(m) for m in program.maps])
        store.fill_initial_slots()
        return store

    def fill_initial_slots(self) -> None:
        """Put the maps named in outer maps' ``__array(values, ...)`` initialisers into their slots."""
        for m in list(self.maps):
            if isinstance(m, MapOfMaps):
                for key, inner_def in m.mapdef.slots:
                    inner = self.get(inner_def.name) or self.hidden.get(inner_def.name)
                    if inner is None:
                        inner = create_map(inner_def)
                        self.hidden[inner_def.name] = inner
                    why = m.compatible(inner)
                    if why is not None:
                        raise UsageError(f"map {m.name!r}: {why}", where=m.name)
                    err = m.set_inner(key, inner)
                    if err:
                        raise UsageError(f"map {m.name!r}: slot {key.hex()} refuses {inner.name!r} (errno {-err})",
                                         where=m.name)

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

    def attach_perf_events(self, cpus: int = 1) -> None:
        """Put a perf event into slots 0..cpus-1 of every perf event array (as KernelProgram(perf_events=True)
        does with one BPF_OUTPUT event per CPU); the run is on CPU 0, so only slot 0 takes samples."""
        for m in self.maps:
            if m.mapdef.type == MapType.PERF_EVENT_ARRAY:
                for i in range(min(cpus, m.mapdef.max_entries)):
                    m.values[i][:4] = (i + 1).to_bytes(4, "little")

    def dump(self) -> MapState:
        """Contents of the data maps (see DUMPED_MAP_TYPES): arrays every index, others present entries."""
        out = {m.name: dict(m.items()) for m in self.maps if m.mapdef.type in DUMPED_MAP_TYPES}
        for m in self.maps:
            if isinstance(m, MapOfMaps):
                for key, inner in m.inner_items():
                    if inner.mapdef.type in DUMPED_MAP_TYPES:
                        out[f"{m.name}[{key.hex()}]"] = dict(inner.items())
        return out


__all__ = ["DUMPED_MAP_TYPES", "Errno", "BpfMap", "ArrayMap", "HashMap", "LpmTrieMap", "MapStore", "create_map",
           "RedirectArrayMap", "QueueStackMap", "RingBufMap", "MapOfMaps", "BPF_F_INNER_MAP"]

"""The host side of the NIC's map operations, with the nfp driver's small cache of recent replies.

:class:`MapClient` turns calls into control messages (:mod:`nfpjit.nic.cmsg`) and hands them to
a transport, a callable ``send(request) -> reply`` (the device's control socket, or
:func:`loopback` over an in-process :class:`~nfpjit.nic.tables.MapTables`).  Error replies
raise :class:`~nfpjit.nic.errors.OffloadError` with the errno the kernel returns for them.

The cache: like the kernel's nfp driver, the client keeps the replies of the last
:data:`CACHE_ENTRIES` successful reads (lookup, get-first, get-next) for :data:`CACHE_TTL_NS`
(250 us) and answers the same read of the same table from it while it is fresh.  Any update or
delete of a table drops that table's cached replies before it is sent, and a read that was in
flight while an update or delete of its table was is not cached (the driver's cache generation
and blockers).  Failed reads are not cached.  ``stats`` counts hits and misses.
"""

from __future__ import annotations

import errno as E
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from nfpjit.ebpf.opcodes import MapType, MapUpdateFlag
from nfpjit.nic import cmsg as C
from nfpjit.nic.errors import OffloadError

CACHE_ENTRIES = 4  # the nfp driver's NFP_BPF_MAP_CACHE_CNT
CACHE_TTL_NS = 250_000  # NFP_BPF_MAP_CACHE_TIME_NS: 250 us

Transport = Callable[[object], object]

FLAG_NAMES = {"any": MapUpdateFlag.ANY, "noexist": MapUpdateFlag.NOEXIST, "exist": MapUpdateFlag.EXIST}


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    invalidations: int = 0


def loopback(tables) -> Transport:
    """A transport over an in-process ``MapTables``, through the full encode/decode path."""

    def send(request):
        return C.decode_reply(tables.handle_bytes(C.encode(request)))

    return send


class MapClient:
    """Map operations on one NIC.  Tables are addressed by table id (see :meth:`find` for names)."""

    def __init__(self, send: Transport, *, clock: Callable[[], int] = time.monotonic_ns,
                 cache_entries: int = CACHE_ENTRIES, cache_ttl_ns: int = CACHE_TTL_NS):
        self.send = send
        self.clock = clock
        self.cache_entries = cache_entries
        self.cache_ttl_ns = cache_ttl_ns
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, tuple[int, bytes]] = OrderedDict()  # (tid, op, key) -> (expiry, result)
        self._gen: dict[int, int] = {}
        self._blockers: dict[int, int] = {}
        self._hits = self._misses = self._invalidations = 0

    # -- plumbing
    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._invalidations)

    def _call(self, request, expect: type, what: str):
        reply = self.send(request)
        if isinstance(reply, C.ErrorReply):
            raise OffloadError(reply.errno, reply.message or f"{what} failed: {os.strerror(reply.errno)}",
                               where=what)
        if not isinstance(reply, expect):
            raise OffloadError(E.EIO, f"{what}: the NIC answered with {type(reply).__name__}, "
                                      f"expected {expect.__name__}", where=what)
        return reply

    def _cached_read(self, tid: int, op: C.CmsgType, key: bytes, request, what: str, pick) -> bytes:
        ck = (tid, op, key)
        with self._lock:
            hit = self._cache.get(ck)
            if hit is not None and not self._blockers.get(tid) and self.clock() < hit[0]:
                self._cache.move_to_end(ck)
                self._hits += 1
                return hit[1]
            if hit is not None:
                del self._cache[ck]
            self._misses += 1
            gen = self._gen.get(tid, 0)
        result = pick(self._call(request, C.MapEntryReply, what))
        with self._lock:
            if self.cache_entries > 0 and not self._blockers.get(tid) and self._gen.get(tid, 0) == gen:
                self._cache[ck] = (self.clock() + self.cache_ttl_ns, result)
                self._cache.move_to_end(ck)
                while len(self._cache) > self.cache_entries:
                    self._cache.popitem(last=False)
        return result

    def _write(self, tid: int, request, what: str) -> None:
        with self._lock:
            self._blockers[tid] = self._blockers.get(tid, 0) + 1
            self._drop(tid)
        try:
            self._call(request, C.MapEntryReply, what)
        finally:
            with self._lock:
                self._blockers[tid] -= 1
                if not self._blockers[tid]:
                    del self._blockers[tid]
                self._gen[tid] = self._gen.get(tid, 0) + 1
                self._drop(tid)

    def _drop(self, tid: int) -> None:
        stale = [k for k in self._cache if k[0] == tid]
        for k in stale:
            del self._cache[k]
        self._invalidations += bool(stale)

    def invalidate(self, tid: int | None = None) -> None:
        """Forget cached replies (of one table, or all)."""
        with self._lock:
            if tid is None:
                self._invalidations += bool(self._cache)
                self._cache.clear()
            else:
                self._drop(tid)

    # -- tables
    def alloc(self, map_type: MapType, key_size: int, value_size: int, max_entries: int, map_flags: int = 0,
              name: str = "") -> int:
        """MAP_ALLOC: create a table on the NIC; returns its table id."""
        req = C.MapAlloc(map_type, key_size, value_size, max_entries, map_flags, name)
        return self._call(req, C.MapAllocReply, f"allocating map {name or ''}".rstrip()).tid

    def free(self, tid: int) -> None:
        self._call(C.MapFree(tid), C.MapFreeReply, f"freeing table {tid}")
        with self._lock:
            self._drop(tid)

    def tables(self) -> tuple[C.TableInfo, ...]:
        """MAP_LIST: every table on the NIC."""
        return self._call(C.MapList(), C.MapListReply, "listing maps").tables

    def find(self, name_or_id) -> C.TableInfo:
        """The table with this id (int or decimal string) or name (ENOENT when none, EINVAL when ambiguous)."""
        tables = self.tables()
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
            tid = int(name_or_id)
            for t in tables:
                if t.tid == tid:
                    return t
            raise OffloadError(E.ENOENT, f"no map with id {tid} on this NIC",
                               hint="`nfpjit map list --dev IFNAME` shows the maps")
        found = [t for t in tables if t.name == name_or_id]
        if not found:
            names = ", ".join(t.name or str(t.tid) for t in tables) or "none"
            raise OffloadError(E.ENOENT, f"no map named {name_or_id!r} on this NIC (maps: {names})")
        if len(found) > 1:
            raise OffloadError(E.EINVAL, f"{len(found)} maps are named {name_or_id!r}: use the id "
                                         f"({', '.join(str(t.tid) for t in found)})")
        return found[0]

    # -- entries
    def lookup(self, tid: int, key: bytes) -> bytes:
        """The value of ``key`` (OffloadError ENOENT when absent)."""
        key = bytes(key)
        return self._cached_read(tid, C.CmsgType.MAP_LOOKUP, key, C.MapLookup(tid, key),
                                 f"lookup in table {tid}", lambda r: r.value)

    def update(self, tid: int, key: bytes, value: bytes, flags: int | str = MapUpdateFlag.ANY) -> None:
        """Write ``key`` = ``value``; ``flags`` BPF_ANY/NOEXIST/EXIST (or "any"/"noexist"/"exist")."""
        if isinstance(flags, str):
            if flags.lower() not in FLAG_NAMES:
                raise OffloadError(E.EINVAL, f"unknown update flags {flags!r}: any, noexist or exist")
            flags = FLAG_NAMES[flags.lower()]
        self._write(tid, C.MapUpdate(tid, bytes(key), bytes(value), int(flags)), f"update of table {tid}")

    def delete(self, tid: int, key: bytes) -> None:
        self._write(tid, C.MapDelete(tid, bytes(key)), f"delete from table {tid}")

    def get_first(self, tid: int) -> bytes:
        """The first key (OffloadError ENOENT when the table is empty)."""
        return self._cached_read(tid, C.CmsgType.MAP_GETFIRST, b"", C.MapGetFirst(tid),
                                 f"get-first of table {tid}", lambda r: r.key)

    def get_next(self, tid: int, key: bytes | None) -> bytes:
        """The key after ``key`` (the first key when ``key`` is None or absent; ENOENT after the last)."""
        if key is None:
            return self.get_first(tid)
        key = bytes(key)
        return self._cached_read(tid, C.CmsgType.MAP_GETNEXT, key, C.MapGetNext(tid, key),
                                 f"get-next of table {tid}", lambda r: r.key)

    def keys(self, tid: int) -> list[bytes]:
        """Every key, by get-first/get-next (a key deleted meanwhile restarts the walk; duplicates dropped)."""
        info = next((t for t in self.tables() if t.tid == tid), None)
        if info is None:
            raise OffloadError(E.EBADFD, f"no table with id {tid} on this NIC")
        limit = 2 * info.max_entries + 16
        out: list[bytes] = []
        seen: set[bytes] = set()
        key = None
        for _ in range(limit):
            try:
                key = self.get_first(tid) if key is None else self.get_next(tid, key)
            except OffloadError as exc:
                if exc.errno == E.ENOENT:
                    return out
                raise
            if key not in seen:
                seen.add(key)
                out.append(key)
        raise OffloadError(E.EAGAIN, f"table {tid} changed too much to be walked ({limit} get-next calls)",
                           hint="retry, or stop traffic while dumping")

    def dump(self, tid: int) -> list[tuple[bytes, bytes]]:
        """Every (key, value), in the NIC's order; entries deleted during the walk are left out."""
        out = []
        for key in self.keys(tid):
            try:
                out.append((key, self.lookup(tid, key)))
            except OffloadError as exc:
                if exc.errno != E.ENOENT:
                    raise
        return out


__all__ = ["MapClient", "CacheStats", "loopback", "CACHE_ENTRIES", "CACHE_TTL_NS", "FLAG_NAMES"]

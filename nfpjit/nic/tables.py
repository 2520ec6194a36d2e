"""The NIC-side map tables: what the firmware keeps in EMEM, with the kernel's map semantics.

:class:`MapTables` holds the tables of one NIC by table id.  ``handle(request)`` answers every
MAP_* control message (:mod:`nfpjit.nic.cmsg`) and never raises: a bad request or an internal
error becomes an :class:`~nfpjit.nic.cmsg.ErrorReply` with the firmware return code whose errno
is the kernel's for the same operation on the same map:

=========================================  ======================
operation                                  errno (FwRet)
=========================================  ======================
unknown table id                           EBADFD (MAP_FD)
key/value length other than the table's    EINVAL (INVAL)
update flags other than ANY/NOEXIST/EXIST  EINVAL (INVAL)
update NOEXIST of a present key            EEXIST (EXIST)
update EXIST of a missing hash key         ENOENT (NOENT)
update of a new key in a full hash table   E2BIG  (TOOBIG)
array index out of range: update           E2BIG  (TOOBIG)
array index out of range: lookup           ENOENT (NOENT)
delete from an array                       EINVAL (INVAL)
lookup/delete of a missing hash key        ENOENT (NOENT)
get-first of an empty hash table           ENOENT (NOENT)
get-next after the last key                ENOENT (NOENT)
=========================================  ======================

get-next of a key that is not there returns the first key (hash) or index 0 (array index out
of range), as the kernel does.  Hash tables iterate in insertion order.  A failed operation
leaves the table as it was.  Table creation is checked as the kernel's generic offload code
and the nfp driver check it: HASH and ARRAY only (EINVAL), no map flags (EINVAL), at most
:data:`MAX_TABLES` tables and :data:`MAX_ELEMS` elements in all (ENOMEM), key and value within
the firmware element limit (ENOMEM, "elements don't fit in device constraints").

The simulator reads and writes the tables through :meth:`MapTables.contents` /
:meth:`MapTables.store` (``{key bytes: value bytes}``, the format ``driver.run_sim`` takes and
gives back).  ``MapTables.lock`` (re-entrant) serialises everything; a packet thread holds it
around snapshot -> run -> store so that no control-message update in between is lost (or
passes ``base=`` to :meth:`store` so that only what the run changed is written).
"""

from __future__ import annotations

import errno as E
import threading
from dataclasses import dataclass, replace

from nfpjit.ebpf.opcodes import MapType, MapUpdateFlag
from nfpjit.nic import cmsg as C
from nfpjit.nic.errors import OffloadError

MAX_TABLES = 128  # published firmware limit: up to 128 maps
MAX_ELEMS = 2 * 1024 * 1024  # and about 2M entries in all
SUPPORTED_TYPES = (MapType.HASH, MapType.ARRAY)


class _Fail(Exception):
    """An operation's failure: errno and message (turned into an ErrorReply)."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err
        self.message = message


@dataclass(frozen=True)
class TableDef:
    map_type: MapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    name: str = ""


class Table:
    """One table.  Hash: present entries, insertion-ordered, with a linked key list for O(1)
    get-next.  Array: every index exists; only written values are stored (the rest read as zeros)."""

    def __init__(self, tid: int, d: TableDef):
        self.tid = tid
        self.d = d
        self.values: dict[bytes, bytes] = {}
        self._next: dict[bytes, bytes | None] = {}
        self._prev: dict[bytes, bytes | None] = {}
        self._head: bytes | None = None
        self._tail: bytes | None = None
        self._zero = bytes(d.value_size)

    @property
    def is_array(self) -> bool:
        return self.d.map_type == MapType.ARRAY

    @property
    def count(self) -> int:
        return self.d.max_entries if self.is_array else len(self.values)

    def describe(self) -> str:
        name = f" {self.d.name!r}" if self.d.name else ""
        return f"table {self.tid}{name} ({self.d.map_type.kernel_name})"

    # -- helpers
    def _index(self, key: bytes) -> int:
        return int.from_bytes(key, "little")

    def _check_key(self, key: bytes) -> None:
        if len(key) != self.d.key_size:
            raise _Fail(E.EINVAL, f"{self.describe()} has {self.d.key_size}-byte keys, got {len(key)} bytes")

    def _check_value(self, value: bytes) -> None:
        if len(value) != self.d.value_size:
            raise _Fail(E.EINVAL, f"{self.describe()} has {self.d.value_size}-byte values, got {len(value)} bytes")

    def _link(self, key: bytes) -> None:
        self._prev[key] = self._tail
        self._next[key] = None
        if self._tail is None:
            self._head = key
        else:
            self._next[self._tail] = key
        self._tail = key

    def _unlink(self, key: bytes) -> None:
        p, n = self._prev.pop(key), self._next.pop(key)
        if p is None:
            self._head = n
        else:
            self._next[p] = n
        if n is None:
            self._tail = p
        else:
            self._prev[n] = p

    # -- operations (raise _Fail)
    def lookup(self, key: bytes) -> bytes:
        self._check_key(key)
        if self.is_array:
            if self._index(key) >= self.d.max_entries:
                raise _Fail(E.ENOENT, f"index {self._index(key)} is out of range for {self.describe()} "
                                      f"of {self.d.max_entries} entries")
            return self.values.get(key, self._zero)
        value = self.values.get(key)
        if value is None:
            raise _Fail(E.ENOENT, f"key {key.hex()} is not in {self.describe()}")
        return value

    def update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_key(key)
        self._check_value(value)
        if flags not in (MapUpdateFlag.ANY, MapUpdateFlag.NOEXIST, MapUpdateFlag.EXIST):
            raise _Fail(E.EINVAL, f"update flags {flags:#x}: only BPF_ANY (0), BPF_NOEXIST (1) and BPF_EXIST (2) "
                                  "are valid")
        if self.is_array:
            i = self._index(key)
            if i >= self.d.max_entries:
                raise _Fail(E.E2BIG, f"index {i} is out of range for {self.describe()} of {self.d.max_entries} "
                                     "entries")
            if flags == MapUpdateFlag.NOEXIST:
                raise _Fail(E.EEXIST, f"array entries always exist: BPF_NOEXIST cannot update {self.describe()}")
            if value == self._zero:
                self.values.pop(key, None)  # arrays keep only non-zero values
            else:
                self.values[key] = bytes(value)
            return
        present = key in self.values
        if present and flags == MapUpdateFlag.NOEXIST:
            raise _Fail(E.EEXIST, f"key {key.hex()} is already in {self.describe()} (BPF_NOEXIST)")
        if not present and flags == MapUpdateFlag.EXIST:
            raise _Fail(E.ENOENT, f"key {key.hex()} is not in {self.describe()} (BPF_EXIST)")
        if not present and len(self.values) >= self.d.max_entries:
            raise _Fail(E.E2BIG, f"{self.describe()} is full ({self.d.max_entries} entries)")
        self.values[key] = bytes(value)
        if not present:
            self._link(key)

    def delete(self, key: bytes) -> None:
        self._check_key(key)
        if self.is_array:
            raise _Fail(E.EINVAL, f"array entries cannot be deleted ({self.describe()}): write zeros instead")
        if key not in self.values:
            raise _Fail(E.ENOENT, f"key {key.hex()} is not in {self.describe()}")
        del self.values[key]
        self._unlink(key)

    def get_first(self) -> bytes:
        if self.is_array:
            return (0).to_bytes(self.d.key_size, "little")
        if self._head is None:
            raise _Fail(E.ENOENT, f"{self.describe()} is empty")
        return self._head

    def get_next(self, key: bytes) -> bytes:
        self._check_key(key)
        if self.is_array:
            i = self._index(key)
            if i >= self.d.max_entries:
                return self.get_first()
            if i == self.d.max_entries - 1:
                raise _Fail(E.ENOENT, f"index {i} is the last of {self.describe()}")
            return (i + 1).to_bytes(self.d.key_size, "little")
        if key not in self.values:
            return self.get_first()
        nxt = self._next[key]
        if nxt is None:
            raise _Fail(E.ENOENT, f"key {key.hex()} is the last of {self.describe()}")
        return nxt

    def keys(self) -> list[bytes]:
        if self.is_array:
            return [i.to_bytes(self.d.key_size, "little") for i in range(self.d.max_entries)]
        out, k = [], self._head
        while k is not None:
            out.append(k)
            k = self._next[k]
        return out

    def contents(self, *, sparse: bool = False) -> dict[bytes, bytes]:
        if not self.is_array:
            return {k: self.values[k] for k in self.keys()}
        if sparse:
            return {k: v for k, v in self.values.items() if v != self._zero}
        return {k: self.values.get(k, self._zero) for k in self.keys()}

    def info(self) -> C.TableInfo:
        d = self.d
        return C.TableInfo(self.tid, d.map_type, d.key_size, d.value_size, d.max_entries, d.map_flags, d.name,
                           self.count)


def _validate_def(d: TableDef) -> None:
    for what in ("key_size", "value_size", "max_entries", "map_flags"):
        v = getattr(d, what)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= C.U32:
            raise _Fail(E.EINVAL, f"{what.replace('_', ' ')} must be an unsigned 32-bit integer, not {v!r}")
    if not isinstance(d.name, str):
        raise _Fail(E.EINVAL, "a map name is a string")
    if d.map_type not in SUPPORTED_TYPES:
        try:
            name = MapType(d.map_type).kernel_name
        except ValueError:
            name = f"type {d.map_type!r}"
        raise _Fail(E.EINVAL, f"{name} maps cannot be offloaded: only hash and array")
    if d.map_flags:
        raise _Fail(E.EINVAL, f"map flags {d.map_flags:#x} are not supported by the NIC")
    if not d.key_size or not d.value_size or not d.max_entries:
        raise _Fail(E.EINVAL, "key size, value size and max entries must all be non-zero")
    if d.map_type == MapType.ARRAY and d.key_size != 4:
        raise _Fail(E.EINVAL, f"array keys are 4 bytes, not {d.key_size}")
    if not C.elem_fits(d.key_size, d.value_size):
        raise _Fail(E.ENOMEM, f"elements don't fit in device constraints: {d.key_size}-byte keys and "
                              f"{d.value_size}-byte values exceed the {C.MAX_ELEM_SIZE}-byte element limit "
                              "(key and value each rounded up to 8 bytes)")


def _safe_error(request, err: int, message: str) -> C.ErrorReply:
    try:
        return C.error_reply(request, err, message)
    except Exception:  # not even a message: answer as MAP_LIST, whose reply every client parses
        return C.ErrorReply(C.CmsgType.MAP_LIST, C.fw_ret_for_errno(err), str(message)[:1024], seq=0)


class MapTables:
    """All tables of one NIC, by table id (ids start at 1 and are not reused while the NIC lives)."""

    def __init__(self, *, max_tables: int = MAX_TABLES, max_elems: int = MAX_ELEMS):
        self.lock = threading.RLock()
        self.tables: dict[int, Table] = {}
        self.max_tables = max_tables
        self.max_elems = max_elems
        self._next_tid = 1

    # -- the Python side (raises OffloadError)
    def alloc(self, map_type, key_size: int, value_size: int, max_entries: int, map_flags: int = 0,
              name: str = "") -> int:
        """Create a table; returns its id."""
        return self._call(self._alloc, TableDef(map_type, key_size, value_size, max_entries, map_flags, name))

    def free(self, tid: int) -> None:
        self._call(self._free, tid)

    def _call(self, fn, *args):
        with self.lock:
            try:
                return fn(*args)
            except _Fail as exc:
                raise OffloadError(exc.errno, exc.message) from None

    def _alloc(self, d: TableDef) -> int:
        _validate_def(d)
        if len(self.tables) >= self.max_tables:
            raise _Fail(E.ENOMEM, f"too many maps for the device (at most {self.max_tables})")
        used = sum(t.d.max_entries for t in self.tables.values())
        if self.max_elems - used < d.max_entries:
            raise _Fail(E.ENOMEM, f"map with too many elements: {d.max_entries}, left: {self.max_elems - used}")
        tid = self._next_tid
        self._next_tid += 1
        self.tables[tid] = Table(tid, replace(d, map_type=MapType(d.map_type)))
        return tid

    def _free(self, tid: int) -> None:
        self._table(tid)
        del self.tables[tid]

    def _table(self, tid: int) -> Table:
        table = self.tables.get(tid)
        if table is None:
            raise _Fail(E.EBADFD, f"no table with id {tid} on this NIC")
        return table

    def table(self, tid: int) -> Table:
        """The table with id ``tid`` (OffloadError EBADFD when there is none)."""
        return self._call(self._table, tid)

    def contents(self, tid: int, *, sparse: bool = False) -> dict[bytes, bytes]:
        """``{key: value}`` of a table (arrays: every index; ``sparse``: only non-zero values)."""
        with self.lock:
            return self._call(self._table, tid).contents(sparse=sparse)

    def store(self, tid: int, mapping: dict[bytes, bytes], *, base: dict[bytes, bytes] | None = None) -> None:
        """Write a simulator run's map contents back.  Without ``base`` the table becomes ``mapping``
        (array indices not in it keep their values); with ``base`` (the contents the run started
        from) only entries the run changed, added or removed are applied, so updates made by
        control messages meanwhile survive.  All or nothing: a bad entry changes nothing."""
        with self.lock:
            table = self._call(self._table, tid)
            self._call(self._store, table, dict(mapping), base)

    def _store(self, table: Table, mapping: dict, base: dict | None) -> None:
        d = table.d
        for k, v in mapping.items():
            if not isinstance(k, (bytes, bytearray)) or not isinstance(v, (bytes, bytearray)):
                raise _Fail(E.EINVAL, f"{table.describe()}: keys and values are bytes")
            table._check_key(bytes(k))
            table._check_value(bytes(v))
            if table.is_array and table._index(bytes(k)) >= d.max_entries:
                raise _Fail(E.E2BIG, f"index {table._index(bytes(k))} is out of range for {table.describe()}")
        if base is None:
            changed = {bytes(k): bytes(v) for k, v in mapping.items()}
            removed = [] if table.is_array else [k for k in table.values if k not in changed]
        else:
            # arrays: an index missing from base (a sparse snapshot) started as zeros
            default = table._zero if table.is_array else None
            changed = {bytes(k): bytes(v) for k, v in mapping.items() if base.get(k, default) != v}
            removed = [] if table.is_array else [bytes(k) for k in base if k not in mapping]
        if not table.is_array:
            new = sum(1 for k in changed if k not in table.values) - sum(1 for k in removed if k in table.values)
            if len(table.values) + new > d.max_entries:
                raise _Fail(E.E2BIG, f"{table.describe()} would hold more than {d.max_entries} entries")
        for k in removed:
            if k in table.values:
                table.delete(k)
        for k, v in changed.items():
            if table.is_array:
                if v == table._zero:
                    table.values.pop(k, None)  # arrays keep only non-zero values
                else:
                    table.values[k] = v
            else:
                table.update(k, v, MapUpdateFlag.ANY)

    def snapshot(self, ids: dict[str, int]) -> dict[str, dict[bytes, bytes]]:
        """``{map name: contents}`` for the tables in ``ids`` (map name -> table id): ``maps_in``."""
        with self.lock:
            return {name: self.contents(tid) for name, tid in ids.items()}

    def commit(self, ids: dict[str, int], maps: dict[str, dict[bytes, bytes]],
               base: dict[str, dict[bytes, bytes]] | None = None) -> None:
        """Store a run's ``RunResult.maps`` back into the tables named in ``ids``."""
        with self.lock:
            for name, tid in ids.items():
                if name in maps:
                    self.store(tid, maps[name], base=None if base is None else base.get(name, {}))

    # -- control messages (never raise)
    def handle(self, request) -> C.Reply:
        """The reply to a MAP_* request; an error reply for anything that fails, never an exception."""
        try:
            with self.lock:
                return self._handle(request)
        except _Fail as exc:
            return _safe_error(request, exc.errno, exc.message)
        except Exception as exc:  # an internal error must not take the NIC down: report it
            return _safe_error(request, E.EIO, f"internal error: {type(exc).__name__}: {exc}")

    def handle_bytes(self, data: bytes) -> bytes:
        """Decode, handle and encode: the daemon's MAP_* path, for bytes in and bytes out."""
        try:
            request = C.decode_request(data)
        except C.CmsgError as exc:
            return C.error_reply_for(data, exc)
        reply = self.handle(request)
        try:
            return C.encode(reply)
        except C.CmsgError as exc:
            return C.encode(C.error_reply(request, E.EIO, f"reply does not encode: {exc}"))

    def _handle(self, req) -> C.Reply:
        seq = getattr(req, "seq", 0)
        if isinstance(req, C.MapAlloc):
            tid = self._alloc(TableDef(req.map_type, req.key_size, req.value_size, req.max_entries, req.map_flags,
                                       req.name))
            return C.MapAllocReply(tid, seq=seq)
        if isinstance(req, C.MapFree):
            self._free(req.tid)
            return C.MapFreeReply(seq=seq)
        if isinstance(req, C.MapList):
            return C.MapListReply(tuple(t.info() for t in self.tables.values()), seq=seq)
        if isinstance(req, (C.MapLookup, C.MapUpdate, C.MapDelete, C.MapGetFirst, C.MapGetNext)):
            table = self._table(req.tid)
            key = bytes(req.key)
            t = req.TYPE
            if isinstance(req, C.MapLookup):
                return C.MapEntryReply(t, value=table.lookup(key), seq=seq)
            if isinstance(req, C.MapUpdate):
                table.update(key, bytes(req.value), req.flags)
                return C.MapEntryReply(t, seq=seq)
            if isinstance(req, C.MapDelete):
                table.delete(key)
                return C.MapEntryReply(t, seq=seq)
            if isinstance(req, C.MapGetFirst):
                return C.MapEntryReply(t, key=table.get_first(), seq=seq)
            return C.MapEntryReply(t, key=table.get_next(key), seq=seq)
        raise _Fail(E.EOPNOTSUPP, f"{type(req).__name__} is not a map operation")


__all__ = ["MapTables", "Table", "TableDef", "MAX_TABLES", "MAX_ELEMS", "SUPPORTED_TYPES"]

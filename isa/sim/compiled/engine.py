"""Compile an image to native code once (cached by its code hash), then run packets natively.

:func:`simulate` is :func:`nfpjit.isa.sim.simulate` with the same arguments and results;
:func:`run_batch` runs a sequence of packets with maps (and, when given, the map cache) persisting,
the packet loop itself in native code; :class:`Session` keeps the native state (maps, cache) between
calls for callers that stream packets (the NIC daemon, ``nfpjit run --pcap``).

What the engine does not translate falls back to the interpreting simulator, and says why
(:attr:`Run.reason`): trace mode, an image the translator refuses (:func:`why_not`), or llvmlite
without a working JIT.  A run that jumps to a code address no ``load_addr`` names (a dynamic target
the translation has no block for) is handed to the interpreter mid-run with the complete machine
state, and continues there: never a wrong answer.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Sequence

from nfpjit.errors import UnsupportedError, UsageError

from ..cycles import DEFAULT_BUDGET, DEFAULT_MAP_CACHE_SIZE, Resource
from ..firmware import MapCache, Routine
from ..machine import Machine, _as_image, _decode_code, _relocate_here, simulate as interp_simulate
from ..memory import CTM_BASE, CTM_BUFFER_SIZE, HEADROOM, MAX_PACKET, RawBlock, Trap
from ..firmware import FIRMWARE_BASE
from ..result import PacketMeta, SimFault, SimResult, Usage
from ..memory import MapTable
from nfpjit.isa.image import ImageProgType
from nfpjit.isa.table import PKT_META_CSRS, Memory, MulStep
from . import runtime as rt
from .translate import Translation, Untranslatable, translate

_ROUTINES = list(Routine)
_BREAKDOWNS: dict = {}      # usage tuple -> the (immutable) breakdown mapping, shared by equal results
_CALLS: dict = {}
_RESOURCES = list(Resource)
_LOCK = threading.Lock()


# -- the JIT ------------------------------------------------------------------------------------------------

_TM = None
_AVAILABLE: bool | None = None
_WHY_UNAVAILABLE = ""


def _target_machine():
    """A new target machine: an execution engine owns (and frees) the one it is given."""
    global _TM
    import llvmlite.binding as llvm

    if _TM is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _TM = True
    return llvm.Target.from_default_triple().create_target_machine(opt=2, jit=True)


def available() -> bool:
    """Whether llvmlite's JIT works here (checked once by compiling and running a tiny function)."""
    global _AVAILABLE, _WHY_UNAVAILABLE
    if _AVAILABLE is None:
        try:
            import llvmlite.binding as llvm

            tm = _target_machine()
            mod = llvm.parse_assembly("define i64 @f(i64 %x) {\n  %y = add i64 %x, 1\n  ret i64 %y\n}\n")
            eng = llvm.create_mcjit_compiler(mod, tm)
            eng.finalize_object()
            fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(eng.get_function_address("f"))
            _AVAILABLE = fn(41) == 42
            _available_keep.append(eng)
        except Exception as exc:  # any failure means: no JIT here
            _AVAILABLE = False
            _WHY_UNAVAILABLE = f"llvmlite JIT unavailable: {exc}"
    return _AVAILABLE


_available_keep: list = []


@dataclass
class CompiledImage:
    """An image's native code: entry points, fault sites, and what compiling it cost."""

    key: str                       # SHA-256 over the translated inputs (code, entry, maps)
    translation: Translation
    engine: object                 # the llvmlite execution engine (kept alive)
    run_addr: int
    setup_addr: int
    batch_addr: int
    update_addr: int
    ncode: int
    translate_seconds: float
    compile_seconds: float

    @property
    def seconds(self) -> float:
        return self.translate_seconds + self.compile_seconds


_CACHE: dict[str, CompiledImage | str] = {}
MAX_CACHED_IMAGES = 64     # key -> compiled image, or the reason it is not translatable


def image_key(image) -> str:
    """What the translation depends on, hashed: code words, entry, stack size, map shapes."""
    h = hashlib.sha256()
    h.update(len(image.code).to_bytes(4, "little"))
    for w in image.code:
        h.update(w.to_bytes(8, "little"))
    md = image.metadata
    h.update(f"{md.entry}/{md.stack_size}/".encode())
    for m in image.maps:
        h.update(f"{int(m.type)}:{m.key_size}:{m.value_size}:{m.max_entries};".encode())
    return h.hexdigest()


_KEY_MEMO: dict = {}


def _key_of(image) -> str:
    memo = _KEY_MEMO.get(id(image))
    if memo is not None and memo[0] is image:
        return memo[1]
    key = image_key(image)
    if len(_KEY_MEMO) > 256:
        _KEY_MEMO.clear()
    _KEY_MEMO[id(image)] = (image, key)
    return key


def compile_image(image, *, raw_memory: bool = False) -> CompiledImage:
    """Translate and compile a relocated image (cached; ``raw_memory``: the uBPF-style raw block variant,
    with its CTM bounds); raises :class:`Untranslatable`."""
    key = _key_of(image) + ("/raw" if raw_memory else "")
    got = _CACHE.get(key)
    if isinstance(got, CompiledImage):
        return got
    if isinstance(got, str):
        raise Untranslatable(got)
    with _LOCK:
        got = _CACHE.get(key)
        if isinstance(got, CompiledImage):
            return got
        try:
            compiled = _compile(image, key, raw_memory)
        except Untranslatable as exc:
            _CACHE[key] = str(exc)
            raise
        if len(_CACHE) >= MAX_CACHED_IMAGES:
            _CACHE.pop(next(iter(_CACHE)))          # the oldest (sessions keep theirs alive)
        _CACHE[key] = compiled
        return compiled


def _compile(image, key: str, raw: bool) -> CompiledImage:
    import llvmlite.binding as llvm

    if not available():
        raise Untranslatable(_WHY_UNAVAILABLE or "llvmlite JIT unavailable")
    t0 = time.perf_counter()
    instrs = _decode_code(image.code)
    tr = translate(image, instrs, raw)
    text = str(tr.module)
    t1 = time.perf_counter()
    mod = llvm.parse_assembly(text)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pb = llvm.create_pass_builder(_target_machine(), pto)
    pb.getModulePassManager().run(mod, pb)
    eng = llvm.create_mcjit_compiler(mod, _target_machine())
    eng.finalize_object()
    t2 = time.perf_counter()
    return CompiledImage(key, tr, eng, eng.get_function_address("nfp_run"), eng.get_function_address("nfp_setup"),
                         eng.get_function_address("nfp_batch"), eng.get_function_address("rt_update"),
                         len(image.code), t1 - t0, t2 - t1)


_RUN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)
_SETUP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_BATCH = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


# -- native state -------------------------------------------------------------------------------------------


_RNG_INIT: dict[int, object] = {}


_RESULT_FIELDS = ("action", "r0", "packet", "maps", "insns", "cycles", "breakdown", "fault", "routine_calls",
                  "map_cache_hits", "map_cache_misses", "trace", "redirect", "meta")
_FAST_RESULT = (not hasattr(SimResult, "__slots__")
                and {f.name for f in dataclasses.fields(SimResult)} == set(_RESULT_FIELDS))


def _make_result(**fields) -> SimResult:
    """``SimResult(**fields)``; a frozen dataclass's __init__ costs ~3 us, filling its __dict__ ~0.4 us
    (used only while the fields are exactly these and the class has no slots)."""
    if not _FAST_RESULT:
        return SimResult(**fields)
    obj = object.__new__(SimResult)
    obj.__dict__.update(fields)
    return obj


def _redirect_of(value: int) -> int | None:
    return value & 0xFFFFFFFF if value >= 0 else None


class _Block:
    """One native batch of :meth:`Session.run_many`: its records and output packets, read by its LazyResults."""

    __slots__ = ("session", "recs", "out", "out_offsets", "size")

    def __init__(self, session, recs, out, out_offsets):
        self.session, self.recs, self.out, self.out_offsets = session, recs, out, out_offsets
        self.size = rt.R_SIZE

    def rec(self, k: int):
        return self.recs[k * self.size:(k + 1) * self.size]


class _Field:
    """A SimResult field of a LazyResult: computed from its record on first access, then kept in the instance."""

    def __init__(self, name: str, read):
        self.name, self.read = name, read

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        d = obj.__dict__
        value = d[self.name] = self.read(d["_b"], d["_k"])
        return value


def _read_packet(b: _Block, k: int) -> bytes:
    o = b.out_offsets[k]
    return ctypes.string_at(ctypes.addressof(b.out) + o, b.recs[k * b.size + rt.R_PKT_LEN]) if o >= 0 else b""


def _faulted(b: _Block, k: int) -> bool:
    return b.recs[k * b.size + rt.R_STATUS] == rt.STATUS_FAULT


def _slot(index: int, mask: int = -1):
    return lambda b, k: b.recs[k * b.size + index] & mask if mask != -1 else b.recs[k * b.size + index]


_LAZY_READERS = {
    "action": lambda b, k: 0 if _faulted(b, k) else b.recs[k * b.size + rt.R_ACTION] & 0xFFFFFFFF,
    "r0": _slot(rt.R_R0, 0xFFFF_FFFF_FFFF_FFFF),
    "packet": _read_packet,
    "insns": _slot(rt.R_INSNS),
    "cycles": _slot(rt.R_CYCLES),
    "breakdown": lambda b, k: Session._breakdown_of(b.rec(k)),
    "fault": lambda b, k: b.session._fault_of(b.rec(k)),
    "routine_calls": lambda b, k: Session._calls_of(b.rec(k)),
    "map_cache_hits": _slot(rt.R_HITS),
    "map_cache_misses": _slot(rt.R_MISSES),
    "trace": lambda b, k: None,
    "redirect": lambda b, k: _redirect_of(b.recs[k * b.size + rt.R_REDIRECT]),
    "meta": lambda b, k: None,          # TC sessions run packet by packet (eager results)
}


class LazyResult(SimResult):
    """A :class:`SimResult` of :meth:`Session.run_many` whose fields are read from the native record when first
    asked (``maps`` is set when it is made): the same values, equal (``==``) to the eager SimResult, pickled and
    copied as one.  Building a SimResult's fields per packet is what bounded the per-result path."""

    def __eq__(self, other):
        if not isinstance(other, SimResult):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _RESULT_FIELDS)

    __hash__ = SimResult.__hash__

    def __reduce__(self):
        return _plain_result, (tuple(getattr(self, f) for f in _RESULT_FIELDS),)


def _plain_result(values) -> SimResult:
    return _make_result(**dict(zip(_RESULT_FIELDS, values)))


for _name in _RESULT_FIELDS:
    if _name != "maps":
        setattr(LazyResult, _name, _Field(_name, _LAZY_READERS[_name]))
#: lazy results are used while the record readers cover exactly SimResult's fields (else run_many is eager)
_LAZY_RESULT = _FAST_RESULT and set(_LAZY_READERS) | {"maps"} == set(_RESULT_FIELDS)


def _rng_init(seed: int):
    got = _RNG_INIT.get(seed)
    if got is None:
        if len(_RNG_INIT) > 64:
            _RNG_INIT.clear()
        got = _RNG_INIT[seed] = rt.rng_initial_state(seed)
    return got


def _validated_tables(image, maps_in) -> list[MapTable]:
    """The interpreter's own map tables for ``maps_in`` (its checks, its errors, its slot allocation)."""
    probe = object.__new__(Machine)
    probe.image = image
    probe.ncpus = 1                 # one thread: a per-CPU map holds one copy (an ordinary table)
    Machine._build_maps(probe, maps_in or {})
    return probe.tables


def _fnv(key: bytes) -> int:
    h = 0x811C9DC5
    for byte in key:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


class _NeedsInterpreter(UnsupportedError):
    """This run is the interpreter's (e.g. a given map cache names an absent entry)."""

    def __init__(self, message: str):
        super().__init__(message, hint="run it with nfpjit.isa.sim.simulate, or give a MapCache of these maps")


class Session:
    """Native machine state for one image: memories, map tables, map cache; runs packets.

    Build one with :func:`session`; ``run(packet)`` is one :func:`simulate` with the maps (and a
    warm map cache when ``map_cache`` was given) persisting from run to run.  Not thread-safe.
    """

    def __init__(self, image, compiled: CompiledImage, *, maps_in=None, budget: int = DEFAULT_BUDGET,
                 map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, ingress_ifindex: int = 1,
                 rx_queue_index: int = 0, raw_memory: bool = False, map_cache: MapCache | None = None,
                 meta: PacketMeta | None = None):
        self.compiled = compiled
        self.raw_memory = raw_memory
        self.cache_capacity = map_cache.size if map_cache is not None else map_cache_size
        tables = _validated_tables(image, maps_in)
        self.ctx = (ctypes.c_int64 * rt.CTX_SIZE)()
        ctx = self.ctx
        self.state = (ctypes.c_int64 * (compiled.translation.nslots + 1))()
        ctx[rt.C_STATE] = ctypes.addressof(self.state)
        uses = compiled.translation.uses
        pad = 16
        self.lm = (ctypes.c_uint8 * (4096 + pad))()
        self.ctm = (ctypes.c_uint8 * (CTM_BUFFER_SIZE + pad))()
        self.imem = (ctypes.c_uint8 * ((0x1_0000 if Memory.IMEM in uses else 0) + pad))()
        self.cls = (ctypes.c_uint8 * ((0x1_0000 if Memory.CLS in uses else 0) + pad))()
        a = ctypes.addressof
        ctx[rt.C_LM], ctx[rt.C_CTM], ctx[rt.C_IMEM], ctx[rt.C_CLS] = a(self.lm), a(self.ctm), a(self.imem), a(self.cls)
        for mem in range(4):
            ctx[rt.C_DIRTY + 2 * mem] = rt.DIRTY_EMPTY
        self.tables = [rt.NativeTable(t.name, t.is_hash, t.key_size, t.value_size, t.max_entries, t.table_id)
                       for t in tables]
        self.desc = (ctypes.c_int64 * (rt.T_SIZE * max(1, len(self.tables))))()
        for i, t in enumerate(self.tables):
            t.fill(self.desc, rt.T_SIZE * i)
        ctx[rt.C_TABLES], ctx[rt.C_NTABLES] = a(self.desc), len(self.tables)
        ctx[rt.C_RAW] = int(raw_memory)
        self.rng_state = (ctypes.c_uint32 * 624)()
        ctx[rt.C_RNG_STATE], ctx[rt.C_RNG_IDX] = a(self.rng_state), -1
        self.cache_list = (ctypes.c_int64 * (self.cache_capacity + 1))()
        ctx[rt.C_CACHE_SIZE], ctx[rt.C_CACHE_LIST] = self.cache_capacity, a(self.cache_list)
        self._run = _RUN(compiled.run_addr)
        self._setup = _SETUP(compiled.setup_addr)
        self._batch = _BATCH(compiled.batch_addr)
        self.handoffs = 0
        self.last_handoffs: dict[int, SimResult] = {}
        #: after a run that deleted hash entries, renumber the slots as simulate(maps_in=<its maps>) would
        #: (False: keep the NIC's allocation, as a long-running device does; EMEM addresses then differ)
        self.compact = True
        self.configure(image, tables, budget=budget, map_cache_size=map_cache_size, seed=seed,
                       ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index, map_cache=map_cache,
                       meta=meta)

    def configure(self, image, tables, *, budget, map_cache_size, seed, ingress_ifindex, rx_queue_index,
                  map_cache, meta: PacketMeta | None = None) -> None:
        """Start over: run options, maps (the interpreter's validated MapTables), the map cache."""
        self.image = image
        self.options = dict(budget=budget, map_cache_size=map_cache_size, seed=seed,
                            ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index,
                            raw_memory=self.raw_memory)
        #: the packet metadata given for every run (its None fields are computed per packet)
        self.meta = meta if meta is not None else PacketMeta()
        self.is_tc = image.metadata.prog_type == ImageProgType.TC
        self.user_cache = map_cache
        ctx = self.ctx
        ctx[rt.C_BUDGET] = budget
        ctx[rt.C_RXQ] = rx_queue_index & 0xFFFFFFFF
        ctx[rt.C_IFINDEX] = ingress_ifindex & 0xFFFFFFFF
        self.rng_init = _rng_init(seed)
        ctx[rt.C_RNG_INIT] = ctypes.addressof(self.rng_init)
        ctx[rt.C_CACHE_COLD] = 0 if map_cache is not None else 1
        self._import_tables(tables)
        if map_cache is not None:
            self._import_cache(map_cache)
        self._maps = None          # the last dump (shared by results whose run left the maps alone)

    # -- tables and cache <-> the interpreter's objects ------------------------------------------------------

    def _import_tables(self, tables: Sequence[MapTable]) -> None:
        for nt, t in zip(self.tables, tables):
            ctypes.memmove(nt.values, bytes(t.values), len(t.values))
            if t.is_hash:
                ctypes.memset(nt.live, 0, len(nt.live))
                ctypes.memset(nt.index, 0xFF, ctypes.sizeof(nt.index))
                ks, mask = nt.key_size, nt.mask
                for key, slot in t.slots.items():
                    ctypes.memmove(ctypes.addressof(nt.keys) + slot * ks, key, ks)
                    nt.live[slot] = 1
                    h = _fnv(key)
                    nt.hashes[slot] = h
                    cell = h & mask
                    while nt.index[cell] >= 0:
                        cell = (cell + 1) & mask
                    nt.index[cell] = slot
                nt.free[:len(t.free)] = t.free
                self.desc[rt.T_SIZE * self.tables.index(nt) + rt.T_FREE_TOP] = len(t.free)
            ctypes.memset(nt.stamp, 0, ctypes.sizeof(nt.stamp))
        self.ctx[rt.C_CACHE_COUNT] = 0
        self._maps = None

    def _export_tables(self, tables: Sequence[MapTable]) -> None:
        """Write the native tables' state into the interpreter's MapTable objects."""
        for i, (nt, t) in enumerate(zip(self.tables, tables)):
            t.values[:] = bytes(nt.values)[:len(t.values)]
            if t.is_hash:
                live, keys, ks = bytes(nt.live), bytes(nt.keys), nt.key_size
                t.slots = {keys[s * ks:(s + 1) * ks]: s for s in range(nt.max_entries) if live[s]}
                top = self.desc[rt.T_SIZE * i + rt.T_FREE_TOP]
                t.free = [nt.free[k] for k in range(top)]

    def _slot_of(self, ti: int, key: bytes) -> int | None:
        nt = self.tables[ti]
        if not nt.is_hash:
            index = int.from_bytes(key[:4], "little")
            return index if index < nt.max_entries else None
        live, keys, ks = nt.live, bytes(nt.keys), nt.key_size
        for s in range(nt.max_entries):
            if live[s] and keys[s * ks:(s + 1) * ks] == key:
                return s
        return None

    def _import_cache(self, cache: MapCache) -> None:
        by_id = {t.table_id: i for i, t in enumerate(self.tables)}
        entries = list(cache.entries)
        if len(entries) > cache.size:
            raise _NeedsInterpreter("the map cache holds more entries than its size")
        for nt in self.tables:
            ctypes.memset(nt.stamp, 0, ctypes.sizeof(nt.stamp))
        for k, (tid, key) in enumerate(entries):
            ti = by_id.get(tid)
            slot = None if ti is None else self._slot_of(ti, key)
            if slot is None:
                raise _NeedsInterpreter("the map cache holds an entry the maps do not")
            self.tables[ti].stamp[slot] = k + 1
            self.cache_list[k] = ti << 32 | slot
        self.ctx[rt.C_CACHE_COUNT] = len(entries)
        self.ctx[rt.C_CACHE_CLOCK] = len(entries)

    def _export_cache(self, cache: MapCache, hits: int, misses: int) -> None:
        cache.entries = OrderedDict((k, None) for k in self._cache_entries())
        cache.hits += hits
        cache.misses += misses

    def set_packet_context(self, *, ingress_ifindex: int | None = None, rx_queue_index: int | None = None) -> None:
        """The ``ingress_ifindex``/``rx_queue`` CSRs of the next runs (a NIC daemon's per-port/queue values)."""
        if ingress_ifindex is not None:
            self.ctx[rt.C_IFINDEX] = ingress_ifindex & 0xFFFFFFFF
            self.options["ingress_ifindex"] = ingress_ifindex
        if rx_queue_index is not None:
            self.ctx[rt.C_RXQ] = rx_queue_index & 0xFFFFFFFF
            self.options["rx_queue_index"] = rx_queue_index

    # -- control plane (the NIC daemon's map commands) ---------------------------------------------------------

    def _table_index(self, name: str) -> int:
        for i, nt in enumerate(self.tables):
            if nt.name == name:
                return i
        raise UsageError(f"the image has no map {name!r}",
                         hint="image maps: " + ", ".join(t.name for t in self.tables) if self.tables else None)

    def _edit(self, name: str, fn):
        """Apply ``fn(MapTable)`` with the interpreter's semantics; the key leaves the map cache (as the
        firmware routines do)."""
        i = self._table_index(name)
        tables = _validated_tables(self.image, None)
        self._export_tables(tables)
        t = tables[i]
        result = fn(t)
        cached = list(self._cache_entries())
        self._import_tables(tables)
        self._restore_cache([e for e in cached if t.table_id != e[0] or e[1] in t.slots or not t.is_hash])
        return result

    def _cache_entries(self):
        """(table id, key) of the cache, least recently used first."""
        items = []
        for k in range(self.ctx[rt.C_CACHE_COUNT]):
            ent = self.cache_list[k]
            ti, slot = ent >> 32, ent & 0xFFFFFFFF
            nt = self.tables[ti]
            key = (bytes(nt.keys[slot * nt.key_size:(slot + 1) * nt.key_size]) if nt.is_hash
                   else slot.to_bytes(4, "little"))
            items.append((nt.stamp[slot], (nt.table_id, key)))
        return [k for _, k in sorted(items)]

    def _restore_cache(self, entries) -> None:
        c = MapCache(self.cache_capacity)
        c.entries = OrderedDict((e, None) for e in entries)
        self._import_cache(c)

    def map_lookup(self, name: str, key: bytes) -> bytes | None:
        """The value of ``key`` in map ``name`` (None: absent), as the maps are now."""
        i = self._table_index(name)
        return self.tables[i].dump(self.desc, rt.T_SIZE * i).get(bytes(key))

    def _compact(self) -> None:
        """Rebuild the tables from their dump, as ``simulate(maps_in=<previous result's maps>)`` does:
        after a delete, the present entries take slots 0..n-1 in slot order (EMEM addresses move)."""
        cached, snapshot = self._cache_entries(), self._maps
        self._import_tables(_validated_tables(self.image, self.maps()))
        self._restore_cache(cached)
        self._maps = snapshot          # same contents: results still share the last dump

    def map_update(self, name: str, key: bytes, value: bytes, flags: int = 0) -> int:
        """Update from the control plane: 0 or -errno (the kernel's rules, the interpreter's MapTable.update)."""
        i = self._table_index(name)
        nt = self.tables[i]
        key, value = bytes(key), bytes(value)
        if len(key) != nt.key_size or len(value) != nt.value_size:
            raise UsageError(f"map {name!r}: key/value must be {nt.key_size}/{nt.value_size} bytes")
        evicted = (nt.table_id, key)
        res = self._edit(name, lambda t: t.update(key, value, flags))
        self._restore_cache([e for e in self._cache_entries() if e != evicted])
        return res

    def map_delete(self, name: str, key: bytes) -> int:
        """Delete from the control plane: 0 or -errno."""
        i = self._table_index(name)
        evicted = (self.tables[i].table_id, bytes(key))
        res = self._edit(name, lambda t: t.delete(bytes(key)))
        self._restore_cache([e for e in self._cache_entries() if e != evicted])
        return res

    def reset_maps(self, maps_in) -> None:
        """Replace every map's contents with ``maps_in`` (name -> {key: value}; the interpreter's checks and
        errors) and empty the map cache: a control plane that lost track of what the session holds starts over."""
        self._import_tables(_validated_tables(self.image, maps_in))
        self._restore_cache([])

    def maps(self) -> dict[str, dict[bytes, bytes]]:
        """The maps now: name -> {key: value} (as ``SimResult.maps``)."""
        return {nt.name: nt.dump(self.desc, rt.T_SIZE * i) for i, nt in enumerate(self.tables)}

    # -- running ---------------------------------------------------------------------------------------------

    def _fault_of(self, rec) -> SimFault | None:
        """The fault of a native run's record (None: it halted)."""
        if rec[rt.R_STATUS] != rt.STATUS_FAULT:
            return None
        image, sites = self.image, self.compiled.translation.sites
        site = sites[rec[rt.R_FSITE]]
        pc = rec[rt.R_FPC]
        message = site.fmt(rec[rt.R_AUX0], rec[rt.R_AUX1])
        where = pc
        if pc >= FIRMWARE_BASE:
            caller = rec[rt.R_A30] & 0x3FFF
            message = f"in firmware routine at {pc:#x} (return address {caller:#x}): {message}"
            where = max(caller - 1, 0)
        entry = image.line_for(where) if where < self.compiled.ncode else None
        return SimFault(site.kind, pc, message, rec[rt.R_MEM] if site.has_mem else None,
                        entry.insn_index if entry else None, entry.source() if entry else None)

    @staticmethod
    def _breakdown_of(rec):
        """Resource -> Usage of a record (one shared read-only mapping per distinct usage)."""
        u = rt.R_USAGE
        ukey = tuple(rec[u:u + 2 * len(_RESOURCES)])
        breakdown = _BREAKDOWNS.get(ukey)
        if breakdown is None:
            if len(_BREAKDOWNS) > 4096:
                _BREAKDOWNS.clear()
            breakdown = _BREAKDOWNS[ukey] = MappingProxyType(
                {r: Usage(ukey[2 * i], ukey[2 * i + 1]) for i, r in enumerate(_RESOURCES)})
        return breakdown

    @staticmethod
    def _calls_of(rec):
        """Routine symbol -> calls of a record (shared read-only mappings)."""
        ckey = tuple(rec[rt.R_CALLS:rt.R_CALLS + len(_ROUTINES)])
        calls = _CALLS.get(ckey)
        if calls is None:
            if len(_CALLS) > 4096:
                _CALLS.clear()
            calls = _CALLS[ckey] = MappingProxyType({r.symbol: n for r, n in zip(_ROUTINES, ckey) if n})
        return calls

    def _result(self, rec, packet: bytes, maps=None) -> SimResult:
        """The SimResult of a native run's record (``rec``: sequence of R_SIZE ints)."""
        fault = self._fault_of(rec)
        if maps is None:
            if self._maps is None or rec[rt.R_DIRTY]:
                self._maps = self.maps()
            maps = self._maps
        return _make_result(
            action=rec[rt.R_ACTION] & 0xFFFFFFFF if fault is None else 0,
            r0=rec[rt.R_R0] & 0xFFFF_FFFF_FFFF_FFFF,
            packet=packet,
            maps=maps,
            insns=rec[rt.R_INSNS],
            cycles=rec[rt.R_CYCLES],
            breakdown=self._breakdown_of(rec),
            fault=fault,
            routine_calls=self._calls_of(rec),
            map_cache_hits=rec[rt.R_HITS],
            map_cache_misses=rec[rt.R_MISSES],
            trace=None,
            redirect=_redirect_of(rec[rt.R_REDIRECT]),
            meta=PacketMeta.from_csr_values(rec[rt.R_META:rt.R_META + rt.N_META], self._txq()) if self.is_tc else None,
        )

    def _txq(self) -> int:
        return self.state[self.compiled.translation.layout["txq"]] & 0xFFFFFFFF

    def _out_packet(self, addr: int, length: int, original_len: int) -> bytes:
        if not (CTM_BASE <= addr and addr + length <= CTM_BASE + CTM_BUFFER_SIZE):
            return b""
        if self.options["raw_memory"] and length:
            RawBlock(CTM_BASE + HEADROOM, original_len)._offset(addr, length)   # the interpreter's check (may raise)
        off = addr - CTM_BASE
        return ctypes.string_at(ctypes.addressof(self.ctm) + off, length)

    def run(self, packet: bytes) -> SimResult:
        """One packet (maps persist in the session)."""
        packet = _check_packet(packet)
        self._set_meta(packet)
        self._setup(ctypes.addressof(self.ctx), packet, len(packet))
        status = self._run(ctypes.addressof(self.ctx), ctypes.addressof(self.state))
        rec = self.ctx[rt.C_R:rt.C_R + rt.R_SIZE]
        if status == rt.STATUS_HANDOFF:
            return self._handoff(packet, rec)
        res = self._result(rec, self._out_packet(rec[rt.R_PKT_ADDR], rec[rt.R_PKT_LEN], len(packet)))
        if rec[rt.R_DIRTY] & rt.DIRTY_DELETED and self.compact:
            self._compact()
        if self.user_cache is not None:
            self._export_cache(self.user_cache, res.map_cache_hits, res.map_cache_misses)
        return res

    def _set_meta(self, packet: bytes) -> None:
        """The packet-metadata CSRs (and TX_QUEUE) the next run starts with: the firmware's fill for ``packet``."""
        meta = self.meta.filled(packet, self.options["ingress_ifindex"])
        for i, v in enumerate(meta.csr_values()):
            self.ctx[rt.C_META_IN + i] = v & 0xFFFFFFFF
        self.ctx[rt.C_META_IN + rt.N_META] = meta.queue_mapping & 0xFFFFFFFF

    def run_many(self, packets: Sequence[bytes], *, chunk: int = 4096) -> list[SimResult]:
        """Packets in order, the loop in native code; one SimResult each (maps as after its packet)."""
        out: list[SimResult] = []
        packets = [_check_packet(p) for p in packets]
        if self.is_tc:      # the firmware's metadata is per packet: one native run each
            return [self.run(p) for p in packets]
        # the native loop pauses after a packet that changed the maps (its snapshot; a compaction after deletes)
        self.ctx[rt.C_STOP_ON_DIRTY] = rt.DIRTY_CHANGED | rt.DIRTY_DELETED
        if self._maps is None:
            # the maps before the batch: packets ahead of the first one that changes them share this
            # snapshot (taken later, it would show that packet's changes)
            self._maps = self.maps()
        raw = self.options["raw_memory"]
        if not raw and _LAZY_RESULT:
            return self._run_many_lazy(packets, chunk)
        for c0 in range(0, len(packets), chunk):
            batch = packets[c0:c0 + chunk]
            n = len(batch)
            data, offs, lens = pack(batch)
            recs = (ctypes.c_int64 * (rt.R_SIZE * n))()
            cap = max(len(data), 1) + 8192 * 4
            obuf = ctypes.create_string_buffer(cap)
            ooffs = (ctypes.c_int64 * n)()
            k = 0
            while k < n:
                self.ctx[rt.C_OUT_USED] = 0
                done = self._batch(ctypes.addressof(self.ctx), n - k, data, ctypes.byref(offs, 8 * k),
                                   ctypes.byref(lens, 8 * k), ctypes.byref(recs, 8 * rt.R_SIZE * k), obuf,
                                   ctypes.byref(ooffs, 8 * k), cap)
                obase = ctypes.addressof(obuf)
                for j in range(k, k + done):
                    rec = recs[j * rt.R_SIZE:(j + 1) * rt.R_SIZE]
                    if rec[rt.R_STATUS] == rt.STATUS_HANDOFF:
                        # the native tables/cache hold this run's state so far: finish it in the interpreter
                        out.append(self._handoff(batch[j], rec, export_cache=False))
                        continue
                    o = ooffs[j]
                    if o >= 0:
                        if raw and rec[rt.R_PKT_LEN]:
                            RawBlock(CTM_BASE + HEADROOM, len(batch[j]))._offset(rec[rt.R_PKT_ADDR], rec[rt.R_PKT_LEN])
                        pkt = ctypes.string_at(obase + o, rec[rt.R_PKT_LEN])
                    else:
                        pkt = b""
                    out.append(self._result(rec, pkt))
                    if rec[rt.R_DIRTY] & rt.DIRTY_DELETED and self.compact:
                        self._compact()
                k += done
        if self.user_cache is not None:
            self._export_cache(self.user_cache, sum(r.map_cache_hits for r in out),
                               sum(r.map_cache_misses for r in out))
        return out

    def _run_many_lazy(self, packets: list[bytes], chunk: int) -> list[SimResult]:
        """:meth:`run_many` with results that read their fields from the native records when asked
        (:class:`LazyResult`): no Python work per packet but making the object."""
        out: list = []
        append = out.append
        new = object.__new__
        size = rt.R_SIZE
        ctx = self.ctx
        hits = misses = 0
        for c0 in range(0, len(packets), chunk):
            batch = packets[c0:c0 + chunk]
            n = len(batch)
            data, offs, lens = pack(batch)
            recs = (ctypes.c_int64 * (size * n))()
            cap = max(len(data), 1) + 8192 * 4
            obuf = ctypes.create_string_buffer(cap)
            ooffs = (ctypes.c_int64 * n)()
            block = _Block(self, recs, obuf, ooffs)
            col = memoryview(recs).cast("B").cast("q")
            k = 0
            ctx[rt.C_OUT_USED] = 0
            while k < n:
                if ctx[rt.C_OUT_USED] + 8192 > cap:      # results keep reading their packets: a new buffer
                    obuf = ctypes.create_string_buffer(cap)
                    block = _Block(self, recs, obuf, ooffs)
                    ctx[rt.C_OUT_USED] = 0
                used0 = ctx[rt.C_OUT_USED]
                if self._maps is None:                  # the maps before this call (a hand-off dropped them)
                    self._maps = self.maps()
                done = self._batch(ctypes.addressof(ctx), n - k, data, ctypes.byref(offs, 8 * k),
                                   ctypes.byref(lens, 8 * k), ctypes.byref(recs, 8 * size * k), obuf,
                                   ctypes.byref(ooffs, 8 * k), cap)
                if not done:
                    break
                lo, hi = k * size, (k + done) * size
                hits += sum(col[lo + rt.R_HITS:hi:size])
                misses += sum(col[lo + rt.R_MISSES:hi:size])
                last = k + done - 1
                if rt.STATUS_HANDOFF in col[lo + rt.R_STATUS:hi:size].tolist():
                    for j in range(k, k + done):   # rare: finish those in the interpreter, the rest eagerly
                        rec = recs[j * size:(j + 1) * size]
                        if rec[rt.R_STATUS] == rt.STATUS_HANDOFF:
                            res = self._handoff(batch[j], rec, export_cache=False)
                            hits += res.map_cache_hits - rec[rt.R_HITS]
                            misses += res.map_cache_misses - rec[rt.R_MISSES]
                            append(res)
                            continue
                        o = ooffs[j]
                        append(self._result(rec, ctypes.string_at(ctypes.addressof(obuf) + o, rec[rt.R_PKT_LEN])
                                            if o >= 0 else b""))
                        if rec[rt.R_DIRTY] & rt.DIRTY_DELETED and self.compact:
                            self._compact()
                    k += done
                    continue
                maps = self._maps
                dirty = col[last * size + rt.R_DIRTY]
                # the cheap fields from the record columns at once; breakdown, fault, routine_calls on access
                status = col[lo + rt.R_STATUS:hi:size].tolist()
                action = [0 if st == rt.STATUS_FAULT else a & 0xFFFFFFFF
                          for st, a in zip(status, col[lo + rt.R_ACTION:hi:size].tolist())]
                r0 = [v & 0xFFFF_FFFF_FFFF_FFFF for v in col[lo + rt.R_R0:hi:size].tolist()]
                redirect = [None if v < 0 else v & 0xFFFFFFFF for v in col[lo + rt.R_REDIRECT:hi:size].tolist()]
                whole = ctypes.string_at(ctypes.addressof(obuf) + used0, ctx[rt.C_OUT_USED] - used0)
                packet = [whole[o - used0:o - used0 + n_] if o >= 0 else b"" for o, n_ in
                          zip(ooffs[k:k + done], col[lo + rt.R_PKT_LEN:hi:size].tolist())]
                for j, a, r, p, i, c, h, m, rd in zip(range(k, k + done), action, r0, packet,
                                                      col[lo + rt.R_INSNS:hi:size].tolist(),
                                                      col[lo + rt.R_CYCLES:hi:size].tolist(),
                                                      col[lo + rt.R_HITS:hi:size].tolist(),
                                                      col[lo + rt.R_MISSES:hi:size].tolist(), redirect):
                    res = new(LazyResult)
                    res.__dict__.update({"_b": block, "_k": j, "maps": maps, "action": a, "r0": r, "packet": p,
                                         "insns": i, "cycles": c, "map_cache_hits": h, "map_cache_misses": m,
                                         "trace": None, "redirect": rd, "meta": None})
                    append(res)
                if dirty:                               # only a batch's last packet changes the maps
                    self._maps = self.maps()
                    res.__dict__["maps"] = self._maps
                if dirty & rt.DIRTY_DELETED and self.compact:
                    self._compact()
                k += done
        if self.user_cache is not None:
            self._export_cache(self.user_cache, hits, misses)
        return out

    def run_columns(self, data: bytes, offsets, lengths, *, out_capacity: int | None = None, records=None,
                    out=None):
        """The fast path for throughput: packets packed in ``data`` (``offsets``/``lengths``: ctypes
        ``c_int64`` arrays, see :func:`pack`), no SimResult objects.  Returns ``(count, records, out,
        out_offsets)``: ``R_SIZE`` int64 per packet (``runtime.R_*``: status, action, r0, cycles, insns,
        pkt_addr, pkt_len, fault site..., hits, misses, usage, calls) and the output packets packed in
        ``out`` (``out_offsets[k]`` = -1: no packet).  ``count`` < n when ``out`` filled up.  A run
        handed to the interpreter is finished here (its record is rewritten from its SimResult, fault
        site -1).  ``records``/``out``: buffers to reuse (ctypes int64 array of ``R_SIZE * n``, a
        ``create_string_buffer``)."""
        n = len(offsets)
        ctx = self.ctx
        if self.is_tc:
            return self._run_columns_tc(data, offsets, lengths, out_capacity, records, out)
        ctx[rt.C_STOP_ON_DIRTY] = rt.DIRTY_DELETED if self.compact else 0
        recs = records if records is not None else (ctypes.c_int64 * (rt.R_SIZE * n))()
        obuf = out if out is not None else ctypes.create_string_buffer(out_capacity or (len(data) + 8192 * 4))
        cap = ctypes.sizeof(obuf)
        ooffs = (ctypes.c_int64 * n)()
        ctx[rt.C_OUT_USED] = 0
        self.last_handoffs = {}
        k = 0
        pctx, obase = ctypes.addressof(ctx), ctypes.addressof(obuf)
        while k < n and ctx[rt.C_OUT_USED] + 8192 <= cap:
            done = self._batch(pctx, n - k, data, ctypes.byref(offsets, 8 * k), ctypes.byref(lengths, 8 * k),
                               ctypes.byref(recs, 8 * rt.R_SIZE * k), obase, ctypes.byref(ooffs, 8 * k), cap)
            k += done
            last = k - 1
            if done and recs[last * rt.R_SIZE + rt.R_STATUS] == rt.STATUS_HANDOFF:
                base = last * rt.R_SIZE
                packet = bytes(data[offsets[last]:offsets[last] + lengths[last]])
                res = self._handoff(packet, recs[base:base + rt.R_SIZE], export_cache=False)
                self.last_handoffs[last] = res
                self._write_record(recs, base, res)
                used = ctx[rt.C_OUT_USED]
                if used + len(res.packet) <= cap:
                    ctypes.memmove(obase + used, res.packet, len(res.packet))
                    ooffs[last] = used
                    ctx[rt.C_OUT_USED] = used + len(res.packet)
            elif done and self.compact and recs[last * rt.R_SIZE + rt.R_DIRTY] & rt.DIRTY_DELETED:
                self._compact()
            elif not done:
                break
        return k, recs, obuf, ooffs

    def _run_columns_tc(self, data, offsets, lengths, out_capacity, records, out):
        """run_columns for a TC image: the firmware's metadata is per packet, so one native run each."""
        n = len(offsets)
        recs = records if records is not None else (ctypes.c_int64 * (rt.R_SIZE * n))()
        obuf = out if out is not None else ctypes.create_string_buffer(out_capacity or (len(data) + 8192 * 4))
        cap, obase = ctypes.sizeof(obuf), ctypes.addressof(obuf)
        ooffs = (ctypes.c_int64 * n)()
        self.last_handoffs = {}
        used = k = 0
        while k < n and used + 8192 <= cap:
            res = self.run(bytes(data[offsets[k]:offsets[k] + lengths[k]]))
            self.last_handoffs[k] = res
            self._write_record(recs, k * rt.R_SIZE, res)
            ctypes.memmove(obase + used, res.packet, len(res.packet))
            ooffs[k] = used
            used += len(res.packet)
            k += 1
        return k, recs, obuf, ooffs

    def result_of(self, recs, k: int, out, out_offsets, *, maps: bool = False) -> SimResult:
        """The SimResult of packet ``k`` of the last :meth:`run_columns` call; its ``maps`` are the maps now
        with ``maps=True``, else empty (run_columns keeps no per-packet snapshots)."""
        got = self.last_handoffs.get(k)
        if got is not None:
            return got
        rec = recs[k * rt.R_SIZE:(k + 1) * rt.R_SIZE]
        o = out_offsets[k]
        packet = ctypes.string_at(ctypes.addressof(out) + o, rec[rt.R_PKT_LEN]) if o >= 0 else b""
        return self._result(rec, packet, maps=self.maps() if maps else {})

    @staticmethod
    def _write_record(recs, base: int, res: SimResult) -> None:
        f = res.fault
        vals = {rt.R_STATUS: rt.STATUS_FAULT if f else rt.STATUS_HALT, rt.R_ACTION: res.action,
                rt.R_R0: res.r0 - (1 << 64) if res.r0 >> 63 else res.r0, rt.R_CYCLES: res.cycles,
                rt.R_INSNS: res.insns, rt.R_PKT_LEN: len(res.packet), rt.R_HITS: res.map_cache_hits,
                rt.R_MISSES: res.map_cache_misses, rt.R_FSITE: -1, rt.R_FPC: f.address if f else 0,
                rt.R_REDIRECT: -1 if res.redirect is None else res.redirect}
        for i, r in enumerate(_RESOURCES):
            vals[rt.R_USAGE + 2 * i] = res.breakdown[r].accesses
            vals[rt.R_USAGE + 2 * i + 1] = res.breakdown[r].cycles
        for i, r in enumerate(_ROUTINES):
            vals[rt.R_CALLS + i] = res.routine_calls.get(r.symbol, 0)
        if res.meta is not None:
            for i, v in enumerate(res.meta.csr_values()):
                vals[rt.R_META + i] = v
        for slot, v in vals.items():
            recs[base + slot] = v

    # -- hand-off to the interpreter ---------------------------------------------------------------------------

    def _handoff(self, packet: bytes, rec, *, export_cache: bool = True) -> SimResult:
        """Finish a run the native code handed back (a jump to an address it has no block for)."""
        self.handoffs += 1
        ctx = self.ctx
        o = self.options
        image = dataclasses.replace(self.image, metadata=dataclasses.replace(self.image.metadata,
                                                                                entry=rec[rt.R_FPC]))
        cache = MapCache(self.ctx[rt.C_CACHE_SIZE])
        m = Machine(image, packet, maps_in=None, budget=o["budget"], map_cache_size=cache.size, seed=o["seed"],
                    trace=False, ingress_ifindex=o["ingress_ifindex"], rx_queue_index=o["rx_queue_index"],
                    raw_memory=o["raw_memory"], map_cache=cache, meta=self.meta)
        self._export_tables(m.tables)
        self._export_cache(cache, 0, 0)
        cache.hits, cache.misses = rec[rt.R_HITS], rec[rt.R_MISSES]
        m._cache_counts = (0, 0)
        u32 = lambda v: v & 0xFFFFFFFF  # noqa: E731
        lay, st = self.compiled.translation.layout, self.state

        def g(name):
            return st[lay[name]]

        m.gpr_a = [u32(g(f"a{i}")) for i in range(32)]
        m.gpr_b = [u32(g(f"b{i}")) for i in range(32)]
        m.nn = [u32(g(f"nn{i}")) for i in range(32)]
        words = lambda name: list((ctypes.c_uint32 * 32).from_address(ctypes.addressof(st) + 8 * lay[name]))  # noqa
        m.xin, m.xout = words("xin"), words("xout")
        m.z, m.n, m.c, m.v = (int(g(f) & 1) for f in "zncv")
        m.prev = u32(g("prev"))
        valid = g("mvalid") & 1
        m.mul_x = u32(g("mx")) if valid else None
        m.mul_y = u32(g("my")) if valid else None
        m.mul_acc = g("macc") & 0xFFFF_FFFF_FFFF_FFFF
        m.mul_steps = u32(g("msteps"))
        mode = ctypes.c_int32(g("mmode") & 0xFFFFFFFF).value
        m.mul_mode = MulStep(mode) if mode >= 0 else None
        m.lm_ptr = [u32(g(f"lmp{i}")) for i in range(4)]
        m.lm_ready = [g(f"lmr{i}") for i in range(4)]
        m.tx_queue = u32(g("txq"))
        m.meta = {c: u32(g(f"meta{i}")) for i, c in enumerate(PKT_META_CSRS)}
        m.signals = {i: (g(f"sigr{i}"), Resource(u32(g(f"sigres{i}")))) for i in range(16) if g(f"sig{i}") & 1}
        m.lm.data[:] = bytes(self.lm)[:4096]
        m.ctm.data[:] = bytes(self.ctm)[:CTM_BUFFER_SIZE]
        if Memory.IMEM in self.compiled.translation.uses:
            m.imem.data[:] = bytes(self.imem)[:0x1_0000]
        if Memory.CLS in self.compiled.translation.uses:
            m.cls.data[:] = bytes(self.cls)[:0x1_0000]
        m.pkt_addr, m.pkt_len = rec[rt.R_PKT_ADDR], rec[rt.R_PKT_LEN]
        if ctx[rt.C_RNG_IDX] >= 0:
            m.rng.setstate((3, tuple(self.rng_state) + (ctx[rt.C_RNG_IDX],), None))
        m.cycles, m.insns = rec[rt.R_CYCLES], rec[rt.R_INSNS]
        m.usage = {r: [rec[rt.R_USAGE + 2 * i], rec[rt.R_USAGE + 2 * i + 1]] for i, r in enumerate(_RESOURCES)}
        m.routine_calls = {r.symbol: rec[rt.R_CALLS + i] for i, r in enumerate(_ROUTINES) if rec[rt.R_CALLS + i]}
        m.redirect = rec[rt.R_REDIRECT] & 0xFFFFFFFF if rec[rt.R_REDIRECT] >= 0 else None
        fault = m.run()
        res = m.result(fault)
        # back to native: maps, cache; the interpreter wrote memories the dirty ranges do not cover
        self._import_tables(m.tables)
        self._import_cache(cache)
        for mem in range(4):
            ctx[rt.C_DIRTY + 2 * mem] = 0
            ctx[rt.C_DIRTY + 2 * mem + 1] = (4096, CTM_BUFFER_SIZE, len(self.imem) - 16, len(self.cls) - 16)[mem]
        ctx[rt.C_CACHE_HITS] += res.map_cache_hits - rec[rt.R_HITS]
        ctx[rt.C_CACHE_MISSES] += res.map_cache_misses - rec[rt.R_MISSES]
        if self.user_cache is not None and export_cache:
            self._export_cache(self.user_cache, res.map_cache_hits, res.map_cache_misses)
        self._maps = None
        if self.compact:
            self._compact()
        return dataclasses.replace(res, maps=self.maps())


def pack(packets: Sequence[bytes]):
    """``(data, offsets, lengths)`` for :meth:`Session.run_columns`: packets concatenated, ctypes int64 arrays."""
    n = len(packets)
    data = b"".join(packets)
    lens = (ctypes.c_int64 * n)(*map(len, packets))
    offs = (ctypes.c_int64 * n)()
    pos = 0
    for k in range(n):
        offs[k] = pos
        pos += lens[k]
    return data, offs, lens


def _check_packet(packet) -> bytes:
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        raise UsageError(f"packet must be bytes, not {type(packet).__name__}")
    packet = bytes(packet)
    if len(packet) > MAX_PACKET:
        raise UsageError(f"packet of {len(packet)} bytes exceeds the {MAX_PACKET}-byte packet buffer")
    return packet


# -- the public API ----------------------------------------------------------------------------------------------


_POOL: dict = {}        # (image key, raw, cache size) -> a Session to reuse (taken out while in use)


@dataclass(frozen=True)
class Run:
    """A :func:`run` result: the SimResult, which engine produced it, and why when not the compiled one."""

    result: SimResult
    engine: str                 # "compiled" or "interp"
    reason: str | None = None   # why the interpreter ran it (None when compiled)


def _prepare(image_or_program, budget, map_cache_size, map_cache):
    image = _as_image(image_or_program)
    if image.relocations:
        image = _relocate_here(image)
    if len(image.code) > FIRMWARE_BASE:
        raise UsageError(f"{len(image.code)} code words overlap the firmware region at {FIRMWARE_BASE:#x}")
    if budget < 0 or map_cache_size < 0:
        raise UsageError("budget and map_cache_size must not be negative")
    if map_cache is not None and not isinstance(map_cache, MapCache):
        raise UsageError(f"map_cache must be a MapCache, not {type(map_cache).__name__}",
                         hint="nfpjit.isa.sim.MapCache(size), the same object for every packet")
    return image


def why_not(image_or_program, *, raw_memory: bool = False) -> str | None:
    """Why the compiled engine would not run this image (None: it will)."""
    image = _prepare(image_or_program, 0, 0, None)
    try:
        compile_image(image, raw_memory=raw_memory)
    except Untranslatable as exc:
        return str(exc)
    return None


def session(image_or_program, *, maps_in=None, budget: int = DEFAULT_BUDGET,
            map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, ingress_ifindex: int = 1,
            rx_queue_index: int = 0, raw_memory: bool = False, map_cache: MapCache | None = None,
            meta: PacketMeta | None = None) -> Session:
    """A native :class:`Session` for an image (raises ``Untranslatable`` when it cannot be compiled)."""
    image = _prepare(image_or_program, budget, map_cache_size, map_cache)
    compiled = compile_image(image, raw_memory=raw_memory)
    return Session(image, compiled, maps_in=maps_in, budget=budget, map_cache_size=map_cache_size, seed=seed,
                   ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index, raw_memory=raw_memory,
                   map_cache=map_cache, meta=meta)


def run(image_or_program, packet: bytes, *, maps_in=None, budget: int = DEFAULT_BUDGET,
        map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, trace: bool = False, ingress_ifindex: int = 1,
        rx_queue_index: int = 0, raw_memory: bool = False, map_cache: MapCache | None = None,
        meta: PacketMeta | None = None) -> Run:
    """:func:`simulate`, also saying which engine ran and why."""
    if meta is not None and not isinstance(meta, PacketMeta):
        raise UsageError(f"meta must be a PacketMeta, not {type(meta).__name__}")
    kw = dict(maps_in=maps_in, budget=budget, map_cache_size=map_cache_size, seed=seed,
              ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index, raw_memory=raw_memory,
              map_cache=map_cache, meta=meta)
    reason = None
    if trace:
        reason = "trace mode runs in the interpreting simulator"
    else:
        image = _prepare(image_or_program, budget, map_cache_size, map_cache)
        try:
            compiled = compile_image(image, raw_memory=raw_memory)
        except Untranslatable as exc:
            reason = f"not translated: {exc}"
        else:
            _check_packet(packet)           # the interpreter checks the packet before the maps
            cache_size = map_cache.size if map_cache is not None else map_cache_size
            pool_key = (compiled.key, raw_memory, cache_size)
            s = _POOL.pop(pool_key, None)
            try:
                if s is None or s.compiled is not compiled:
                    s = Session(image, compiled, **kw)
                else:
                    s.configure(image, _validated_tables(image, maps_in), budget=budget,
                                map_cache_size=map_cache_size, seed=seed, ingress_ifindex=ingress_ifindex,
                                rx_queue_index=rx_queue_index, map_cache=map_cache, meta=meta)
                before = s.handoffs
                result = s.run(packet)
            except _NeedsInterpreter as exc:
                reason = str(exc)
                s = None
            else:
                if len(_POOL) > 32:
                    _POOL.clear()
                _POOL[pool_key] = s
                if s.handoffs != before:
                    return Run(result, "compiled", "finished in the interpreter after a hand-off (a jump to an "
                                                   "address no load_addr names, or a budget about to run out)")
                return Run(result, "compiled")
    return Run(interp_simulate(image_or_program, packet, trace=trace, **kw), "interp", reason)


def simulate(image_or_program, packet: bytes, *, maps_in=None, budget: int = DEFAULT_BUDGET,
             map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, trace: bool = False,
             ingress_ifindex: int = 1, rx_queue_index: int = 0, raw_memory: bool = False,
             map_cache: MapCache | None = None, meta: PacketMeta | None = None) -> SimResult:
    """Exactly :func:`nfpjit.isa.sim.simulate`, run natively (falls back to it where it must)."""
    return run(image_or_program, packet, maps_in=maps_in, budget=budget, map_cache_size=map_cache_size, seed=seed,
               trace=trace, ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index, raw_memory=raw_memory,
               map_cache=map_cache, meta=meta).result


def run_batch(image_or_program, packets: Iterable[bytes], maps_in=None, *, budget: int = DEFAULT_BUDGET,
              map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, ingress_ifindex: int = 1,
              rx_queue_index: int = 0, raw_memory: bool = False, map_cache: MapCache | None = None,
              trace: bool = False, meta: PacketMeta | None = None) -> list[SimResult]:
    """Run ``packets`` in order with the maps persisting: result *k* equals
    ``simulate(image, packets[k], maps_in=<maps after packet k-1>, map_cache=map_cache, ...)``.

    Without ``map_cache`` every packet starts with a cold cache of ``map_cache_size`` entries (as
    :func:`simulate` does); pass one :class:`MapCache` to keep it warm across packets (and get it back
    updated).  Results whose packet left the maps alone share the previous result's ``maps`` dict.
    """
    packets = list(packets)
    kw = dict(budget=budget, map_cache_size=map_cache_size, seed=seed, ingress_ifindex=ingress_ifindex,
              rx_queue_index=rx_queue_index, raw_memory=raw_memory, meta=meta)
    if not trace:
        image = _prepare(image_or_program, budget, map_cache_size, map_cache)
        try:
            compiled = compile_image(image, raw_memory=raw_memory)
            s = Session(image, compiled, maps_in=maps_in, map_cache=map_cache, **kw)
        except (Untranslatable, _NeedsInterpreter):
            pass
        else:
            return s.run_many(packets)
    out, state = [], maps_in
    for p in packets:
        r = interp_simulate(image_or_program, p, maps_in=state, map_cache=map_cache, trace=trace, **kw)
        out.append(r)
        state = r.maps
    return out

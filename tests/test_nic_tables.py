"""NIC-side map tables against the reference interpreter's maps and the kernel's own maps."""

from __future__ import annotations

import ctypes
import errno
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.maps import create_map
from nfpjit.ebpf.opcodes import MapType
from nfpjit.ebpf.program import MapDef
from nfpjit.nic import cmsg as C
from nfpjit.nic.errors import OffloadError
from nfpjit.nic.tables import MAX_TABLES, MapTables

KEY = 4
VALUE = 8
MAX = 4


def _key(i: int) -> bytes:
    return i.to_bytes(KEY, "little")


def _val(i: int) -> bytes:
    return i.to_bytes(VALUE, "little")


ops = st.lists(st.one_of(
    st.tuples(st.just("update"), st.integers(0, 6), st.integers(0, 3), st.sampled_from([0, 0, 1, 2, 3, 4])),
    st.tuples(st.just("lookup"), st.integers(0, 6)),
    st.tuples(st.just("delete"), st.integers(0, 6)),
    st.tuples(st.just("next"), st.integers(0, 6)),
    st.tuples(st.just("first")),
), max_size=40)


def _errno(reply) -> int:
    return 0 if reply.ok else reply.errno


class NicSide:
    """The table driven through encoded control messages, as the daemon sees them."""

    def __init__(self, map_type: MapType):
        self.tables = MapTables()
        reply = C.decode_reply(self.tables.handle_bytes(C.encode(C.MapAlloc(map_type, KEY, VALUE, MAX, name="t"))))
        assert reply.ok
        self.tid = reply.tid

    def call(self, req):
        return C.decode_reply(self.tables.handle_bytes(C.encode(req)))

    def update(self, k, v, flags):
        return _errno(self.call(C.MapUpdate(self.tid, _key(k), _val(v), flags)))

    def lookup(self, k):
        r = self.call(C.MapLookup(self.tid, _key(k)))
        return (0, r.value) if r.ok else (r.errno, None)

    def delete(self, k):
        return _errno(self.call(C.MapDelete(self.tid, _key(k))))

    def next(self, k):
        r = self.call(C.MapGetNext(self.tid, _key(k)))
        return (0, r.key) if r.ok else (r.errno, None)

    def first(self):
        r = self.call(C.MapGetFirst(self.tid))
        return (0, r.key) if r.ok else (r.errno, None)

    def keys(self):
        out = []
        e, k = self.first()
        while e == 0:
            out.append(k)
            e, k = self.next(int.from_bytes(k, "little"))
        assert e == errno.ENOENT
        return out


class RefSide:
    """nfpjit.ebpf.maps (kernel semantics for the interpreter); get-next derived from its items() order."""

    def __init__(self, map_type: MapType):
        self.m = create_map(MapDef("t", map_type, KEY, VALUE, MAX))
        self.array = map_type == MapType.ARRAY

    def update(self, k, v, flags):
        return -self.m.update(_key(k), _val(v), flags)

    def lookup(self, k):
        v = self.m.lookup(_key(k))
        return (errno.ENOENT, None) if v is None else (0, bytes(v))

    def delete(self, k):
        return -self.m.delete(_key(k))

    def _keys(self):
        return [k for k, _ in self.m.items()]

    def first(self):
        keys = self._keys()
        return (0, keys[0]) if keys else (errno.ENOENT, None)

    def next(self, k):
        keys = self._keys()
        if _key(k) not in keys:
            return self.first()
        i = keys.index(_key(k))
        return (0, keys[i + 1]) if i + 1 < len(keys) else (errno.ENOENT, None)

    def keys(self):
        return self._keys()


def _run(side, seq):
    out = []
    for op in seq:
        out.append(getattr(side, op[0])(*op[1:]))
    return out


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.ARRAY])
@settings(max_examples=150)
@given(seq=ops)
def test_same_as_reference_maps(map_type, seq):
    nic, ref = NicSide(map_type), RefSide(map_type)
    assert _run(nic, seq) == _run(ref, seq)
    assert nic.keys() == ref.keys()
    assert nic.tables.contents(nic.tid) == dict(ref.m.items())


# ---------------------------------------------------------------- the kernel's maps


_BPF_MAP_DELETE_ELEM = 3
_BPF_MAP_GET_NEXT_KEY = 4


def _kernel_map(map_type: MapType):
    from nfpjit import kernel

    try:
        return kernel._KMap(MapDef("t", map_type, KEY, VALUE, MAX))
    except Exception as exc:  # no bpf() here: not root, seccomp, old kernel ...
        pytest.skip(f"the kernel's bpf() cannot create maps here: {exc}")


class KernelSide:
    """The same operations on a real kernel map (bpf() syscall; get-next order is the kernel's)."""

    def __init__(self, map_type: MapType):
        from nfpjit import kernel

        self.k = kernel
        self.m = _kernel_map(map_type)

    def close(self):
        self.m.close()

    def update(self, k, v, flags):
        try:
            self.m.update(_key(k), _val(v), flags)
        except self.k.KernelError as exc:
            return exc.errno
        return 0

    def lookup(self, k):
        v = self.m.lookup(_key(k), 0)
        return (errno.ENOENT, None) if v is None else (0, v)

    def delete(self, k):
        kbuf = ctypes.create_string_buffer(_key(k), KEY)
        ret, err = self.k._bpf(_BPF_MAP_DELETE_ELEM, self.k._attr(("I", 0, self.m.fd), ("Q", 8, ctypes.addressof(kbuf))))
        return err if ret < 0 else 0

    def _next(self, key: bytes | None):
        kbuf = ctypes.create_string_buffer(key, KEY) if key is not None else None
        nxt = ctypes.create_string_buffer(KEY)
        ret, err = self.k._bpf(_BPF_MAP_GET_NEXT_KEY, self.k._attr(
            ("I", 0, self.m.fd), ("Q", 8, ctypes.addressof(kbuf) if kbuf is not None else 0),
            ("Q", 16, ctypes.addressof(nxt))))
        return (err, None) if ret < 0 else (0, nxt.raw)

    def first(self):
        return self._next(None)

    def next(self, k):
        return self._next(_key(k))

    def keys(self):
        return self.m.keys()


def _order_free(op, result, present_before: set[bytes]):
    """get-next results depend on the kernel's hash order (seeded at random per map): compare what
    is order-independent.  get-first and get-next of a missing key: ENOENT exactly when the table is
    empty, else a present key.  get-next of a present key: ENOENT or another present key."""
    e, key = result
    if op[0] == "first" or _key(op[1]) not in present_before:
        return ("first", e, key in present_before if key is not None else None)
    return ("next", e == 0 or e == errno.ENOENT, key is None or (key in present_before and key != _key(op[1])))


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.ARRAY])
@settings(max_examples=60)
@given(seq=ops)
def test_same_as_kernel_maps(map_type, seq):
    nic = NicSide(map_type)
    kern = KernelSide(map_type)
    try:
        for op in seq:
            present = set(nic.keys())
            got, want = getattr(nic, op[0])(*op[1:]), getattr(kern, op[0])(*op[1:])
            if op[0] in ("first", "next") and map_type == MapType.HASH:
                assert _order_free(op, got, present) == _order_free(op, want, present), op
            else:
                assert got == want, op
        assert sorted(nic.keys()) == sorted(kern.keys())
        assert nic.tables.contents(nic.tid) == kern.m.dump(0)
    finally:
        kern.close()


def test_kernel_hash_full_is_e2big_and_array_errnos():
    kern = KernelSide(MapType.HASH)
    nic = NicSide(MapType.HASH)
    try:
        for i in range(MAX):
            assert nic.update(i, i, 0) == kern.update(i, i, 0) == 0
        assert nic.update(MAX, 0, 0) == kern.update(MAX, 0, 0) == errno.E2BIG
        assert nic.update(0, 9, 0) == kern.update(0, 9, 0) == 0  # replacing a key of a full map is fine
    finally:
        kern.close()
    kern, nic = KernelSide(MapType.ARRAY), NicSide(MapType.ARRAY)
    try:
        for op in (("update", MAX, 1, 0), ("update", 0, 1, 1), ("lookup", MAX), ("delete", 0), ("update", 0, 1, 5),
                   ("next", MAX - 1), ("next", 100)):
            assert getattr(nic, op[0])(*op[1:]) == getattr(kern, op[0])(*op[1:]), op
    finally:
        kern.close()


# ---------------------------------------------------------------- table management and the simulator side


def test_alloc_checks_like_the_nfp_driver():
    t = MapTables(max_tables=3, max_elems=100)
    cases = [
        ((MapType.LRU_HASH, 4, 8, 4), errno.EINVAL),
        ((MapType.PERCPU_ARRAY, 4, 8, 4), errno.EINVAL),
        ((MapType.HASH, 4, 8, 4, 1), errno.EINVAL),  # map flags
        ((MapType.HASH, 0, 8, 4), errno.EINVAL),
        ((MapType.ARRAY, 8, 8, 4), errno.EINVAL),
        ((MapType.HASH, 8, 57, 4), errno.ENOMEM),  # 8 + 64 > 64: elements don't fit
        ((MapType.HASH, 4, 8, 101), errno.ENOMEM),  # too many elements
    ]
    for args, err in cases:
        with pytest.raises(OffloadError) as exc:
            t.alloc(*args)
        assert exc.value.errno == err, args
        reply = t.handle(C.MapAlloc(*args, seq=4))
        assert not reply.ok and reply.errno == err and reply.seq == 4
    assert t.alloc(MapType.HASH, 8, 56, 50) == 1  # 8 + 56 = 64 fits
    assert t.alloc(MapType.ARRAY, 4, 4, 50) == 2
    with pytest.raises(OffloadError) as exc:
        t.alloc(MapType.ARRAY, 4, 4, 1)  # 100 elements used
    assert exc.value.errno == errno.ENOMEM
    t.free(2)
    assert t.alloc(MapType.ARRAY, 4, 4, 1) == 3  # ids are not reused
    t.alloc(MapType.ARRAY, 4, 4, 1)
    with pytest.raises(OffloadError) as exc:
        t.alloc(MapType.ARRAY, 4, 4, 1)
    assert exc.value.errno == errno.ENOMEM and "too many maps" in str(exc.value)
    assert MAX_TABLES == 128
    reply = t.handle(C.MapFree(2))
    assert reply.errno == errno.EBADFD
    listing = t.handle(C.MapList())
    assert [i.tid for i in listing.tables] == [1, 3, 4]


def test_wrong_sizes_unknown_table_and_non_map_requests_get_error_replies():
    t = MapTables()
    tid = t.alloc(MapType.HASH, 4, 8, 4)
    for req, err in ((C.MapLookup(tid, b"abc"), errno.EINVAL), (C.MapUpdate(tid, b"abcd", b"v"), errno.EINVAL),
                     (C.MapLookup(tid + 1, b"abcd"), errno.EBADFD), (C.MapGetNext(tid, b"abcdefgh"), errno.EINVAL),
                     (C.ProgLoad(b"x"), errno.EOPNOTSUPP), ("garbage", errno.EOPNOTSUPP)):
        reply = t.handle(req)
        assert isinstance(reply, C.ErrorReply) and reply.errno == err, req
        C.decode_reply(C.encode(reply))
    assert t.contents(tid) == {}


def test_handle_turns_internal_errors_into_error_replies(monkeypatch):
    t = MapTables()
    tid = t.alloc(MapType.HASH, 4, 8, 4)
    monkeypatch.setattr(type(t.tables[tid]), "lookup", lambda self, key: 1 / 0)
    reply = t.handle(C.MapLookup(tid, b"abcd", seq=3))
    assert reply.errno == errno.EIO and "ZeroDivisionError" in reply.message and reply.seq == 3


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_handle_bytes_never_raises(data):
    t = MapTables()
    t.alloc(MapType.HASH, 4, 8, 4)
    C.decode_reply(t.handle_bytes(data))


def test_store_and_contents_in_run_sim_format():
    t = MapTables()
    h = t.alloc(MapType.HASH, 4, 8, 2)
    a = t.alloc(MapType.ARRAY, 4, 8, 3)
    t.store(h, {_key(1): _val(10)})
    t.store(a, {_key(2): _val(5)})
    assert t.contents(h) == {_key(1): _val(10)}
    assert t.contents(a) == {_key(0): _val(0), _key(1): _val(0), _key(2): _val(5)}
    assert t.contents(a, sparse=True) == {_key(2): _val(5)}
    before = t.contents(h)
    for bad in ({_key(1): b"short"}, {b"k": _val(1)}, {_key(1): _val(1), _key(2): _val(2), _key(3): _val(3)}):
        with pytest.raises(OffloadError):
            t.store(h, bad)
        assert t.contents(h) == before  # all or nothing
    with pytest.raises(OffloadError):
        t.store(a, {_key(3): _val(1)})
    # base: only what the run changed is applied, a concurrent control-message update survives
    ids = {"h": h, "a": a}
    base = t.snapshot(ids)
    t.handle(C.MapUpdate(h, _key(7), _val(70)))  # meanwhile, from the host
    after = {"h": {_key(1): _val(11)}, "a": {**base["a"], _key(0): _val(1)}}
    t.commit(ids, after, base)
    assert t.contents(h) == {_key(1): _val(11), _key(7): _val(70)}
    assert t.contents(a)[_key(0)] == _val(1)


def test_concurrent_updates_lose_nothing():
    """A packet thread (snapshot -> increment -> store, under the lock) and host threads (control
    messages under the same lock, read-modify-write with BPF_EXIST) on one table: counts exact."""
    t = MapTables()
    tid = t.alloc(MapType.HASH, 4, 8, 4)
    t.handle(C.MapUpdate(tid, _key(0), _val(0)))
    t.handle(C.MapUpdate(tid, _key(1), _val(0)))
    n_packets, n_host, hosts = 300, 200, 3

    def packets():
        for _ in range(n_packets):
            with t.lock:
                maps = t.snapshot({"c": tid})
                c = maps["c"]
                c[_key(0)] = _val(int.from_bytes(c[_key(0)], "little") + 1)
                t.commit({"c": tid}, maps)

    def host():
        for _ in range(n_host):
            with t.lock:  # a host-side read-modify-write of its own key, racing the packet thread's stores
                v = int.from_bytes(t.handle(C.MapLookup(tid, _key(1))).value, "little")
                assert t.handle(C.MapUpdate(tid, _key(1), _val(v + 1), 2)).ok

    threads = [threading.Thread(target=packets)] + [threading.Thread(target=host) for _ in range(hosts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.contents(tid) == {_key(0): _val(n_packets), _key(1): _val(n_host * hosts)}


def test_sparse_array_snapshot_commit():
    t = MapTables()
    a = t.alloc(MapType.ARRAY, 4, 8, 1000)
    t.store(a, {_key(5): _val(5)})
    base = {"a": t.contents(a, sparse=True)}
    assert base == {"a": {_key(5): _val(5)}}
    t.handle(C.MapUpdate(a, _key(9), _val(9)))  # meanwhile, from the host
    after = {"a": {**t.contents(a), _key(7): _val(7)}}  # a dense run result with the old index 9 (zero)
    after["a"][_key(9)] = _val(0)
    t.commit({"a": a}, after, base)
    got = t.contents(a, sparse=True)
    assert got == {_key(5): _val(5), _key(7): _val(7), _key(9): _val(9)}


@st.composite
def mutated_map_requests(draw):
    tid = draw(st.sampled_from([1, 2, 3]))
    req = draw(st.sampled_from([
        C.MapUpdate(tid, _key(draw(st.integers(0, 6))), _val(draw(st.integers(0, 9))), draw(st.integers(0, 3))),
        C.MapLookup(tid, _key(draw(st.integers(0, 6)))), C.MapDelete(tid, _key(draw(st.integers(0, 6)))),
        C.MapGetNext(tid, _key(draw(st.integers(0, 6)))), C.MapGetFirst(tid), C.MapList(), C.MapFree(tid),
        C.MapAlloc(MapType.HASH, 4, 8, 2)]))
    data = bytearray(C.encode(req))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=300)
@given(st.lists(mutated_map_requests(), max_size=20))
def test_mutated_requests_get_replies_and_keep_tables_sound(datas):
    t = MapTables()
    t.alloc(MapType.HASH, 4, 8, 4)
    t.alloc(MapType.ARRAY, 4, 8, 4)
    for data in datas:
        reply = C.decode_reply(t.handle_bytes(data))
        _, seq = C.peek(data)
        assert reply.seq == seq
    for table in t.tables.values():
        assert len(table.values) <= table.d.max_entries
        assert table.keys() == (list(table.values) if not table.is_array else table.keys())
        assert all(len(k) == table.d.key_size and len(v) == table.d.value_size for k, v in table.values.items())

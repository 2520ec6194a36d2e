"""Maps: the kernel's update flags and errors, LRU eviction, LPM longest match, map files.

The LPM oracle is Python's ``ipaddress`` module; the LRU oracle is a list
that records use order; error numbers are the kernel's (include/uapi/asm-generic/errno*.h).
"""

from __future__ import annotations

import ipaddress
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.mapfile import load_map_file, state_to_json, write_map_file
from nfpjit.ebpf.maps import MapStore, create_map
from nfpjit.ebpf.opcodes import MapType
from nfpjit.ebpf.program import MapDef, Program
from nfpjit.errors import LoadError, UnsupportedError

ENOENT, E2BIG, EEXIST, EINVAL, ENOSPC = 2, 7, 17, 22, 28
ANY, NOEXIST, EXIST = 0, 1, 2


def k32(i: int) -> bytes:
    return i.to_bytes(4, "little")


def mk(type_: MapType, key=4, value=8, entries=4, name="m", initial=None):
    return create_map(MapDef(name, type_, key, value, entries, initial=initial))


# -- arrays ----------------------------------------------------------------------------------

def test_array_flags_and_errors():
    m = mk(MapType.ARRAY)
    assert m.update(k32(1), b"\x01" * 8, ANY) == 0
    assert m.update(k32(1), b"\x02" * 8, EXIST) == 0
    assert m.update(k32(1), b"\x03" * 8, NOEXIST) == -EEXIST
    assert m.update(k32(4), b"\x03" * 8, ANY) == -E2BIG
    assert m.update(k32(0), b"\x03" * 8, 3) == -EINVAL
    assert m.delete(k32(0)) == -EINVAL
    assert m.lookup(k32(4)) is None
    assert bytes(m.lookup(k32(1))) == b"\x02" * 8
    dump = dict(m.items())
    assert list(dump) == [k32(i) for i in range(4)] and dump[k32(0)] == bytes(8)


def test_global_data_initial_bytes():
    store = MapStore([mk(MapType.ARRAY, value=6, entries=1, name=".data", initial=b"abcdef")])
    assert store.dump() == {".data": {k32(0): b"abcdef"}}


# -- hashes -----------------------------------------------------------------------------------

def test_hash_flags_and_errors():
    m = mk(MapType.HASH, entries=2)
    assert m.update(k32(1), bytes(8), EXIST) == -ENOENT
    assert m.update(k32(1), b"a" * 8, NOEXIST) == 0
    assert m.update(k32(1), b"b" * 8, NOEXIST) == -EEXIST
    assert m.update(k32(1), b"c" * 8, EXIST) == 0
    assert m.update(k32(2), b"d" * 8, ANY) == 0
    assert m.update(k32(3), b"e" * 8, ANY) == -E2BIG          # full
    assert m.update(k32(2), b"f" * 8, ANY) == 0               # replacing is fine when full
    assert m.update(k32(2), b"f" * 8, 7) == -EINVAL
    assert m.delete(k32(9)) == -ENOENT
    assert m.delete(k32(1)) == 0 and m.lookup(k32(1)) is None
    assert dict(m.items()) == {k32(2): b"f" * 8}


def test_lookup_pointer_sees_later_updates():
    m = mk(MapType.HASH)
    m.update(k32(5), bytes(8))
    ptr = m.lookup(k32(5))
    m.update(k32(5), b"z" * 8)
    assert bytes(ptr) == b"z" * 8


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(["get", "put"]), st.integers(0, 7)), max_size=60))
def test_lru_evicts_least_recently_used(ops):
    cap = 3
    m = mk(MapType.LRU_HASH, entries=cap)
    order: list[int] = []          # oldest first
    for op, key in ops:
        if op == "get":
            hit = m.lookup(k32(key)) is not None
            assert hit == (key in order)
            if hit:
                order.remove(key)
                order.append(key)
        else:
            assert m.update(k32(key), key.to_bytes(8, "little")) == 0
            if key in order:
                order.remove(key)
            elif len(order) == cap:
                order.pop(0)
            order.append(key)
    assert sorted(int.from_bytes(k, "little") for k, _ in m.items()) == sorted(order)


def test_percpu_maps_model_one_cpu():
    m = mk(MapType.PERCPU_HASH)
    assert m.update(k32(1), b"x" * 8) == 0 and bytes(m.lookup(k32(1))) == b"x" * 8
    a = mk(MapType.PERCPU_ARRAY)
    assert a.update(k32(3), b"y" * 8) == 0 and dict(a.items())[k32(3)] == b"y" * 8


# -- LPM trie ------------------------------------------------------------------------------------

def lpm_key(prefixlen: int, addr: str) -> bytes:
    return prefixlen.to_bytes(4, "little") + ipaddress.IPv4Address(addr).packed


def test_lpm_errors():
    m = mk(MapType.LPM_TRIE, key=8, value=4, entries=2)
    assert m.update(lpm_key(33, "10.0.0.0"), bytes(4)) == -EINVAL
    assert m.update(lpm_key(8, "10.0.0.0"), bytes(4), EXIST) == -ENOENT
    assert m.update(lpm_key(8, "10.0.0.0"), bytes(4)) == 0
    assert m.update(lpm_key(8, "10.9.9.9"), bytes(4), NOEXIST) == -EEXIST   # same /8 prefix
    assert m.update(lpm_key(16, "10.1.0.0"), bytes(4)) == 0
    assert m.update(lpm_key(24, "10.1.1.0"), bytes(4)) == -ENOSPC
    assert m.delete(lpm_key(24, "10.1.1.0")) == -ENOENT
    assert m.delete(lpm_key(8, "10.0.0.0")) == 0


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 32), st.integers(0, 2**32 - 1)), min_size=1, max_size=20),
       st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_lpm_longest_match_against_ipaddress(prefixes, probes):
    m = mk(MapType.LPM_TRIE, key=8, value=4, entries=64)
    nets = {}
    for i, (plen, addr) in enumerate(prefixes):
        net = ipaddress.IPv4Network((addr, plen), strict=False)
        assert m.update(lpm_key(plen, str(ipaddress.IPv4Address(addr))), k32(i)) == 0
        nets[net] = i
    for p in probes:
        ip = ipaddress.IPv4Address(p)
        matches = [n for n in nets if ip in n]
        got = m.lookup(lpm_key(32, str(ip)))
        if not matches:
            assert got is None
        else:
            best = max(matches, key=lambda n: n.prefixlen)
            assert got is not None and int.from_bytes(got, "little") == nets[best]


def test_lpm_lookup_from_program():
    prog = assemble("""
        .map lpm lpm_trie key=8 value=4 entries=8
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 4
        mov r0, 0
        jgt r4, r3, out
        ldxw r4, [r2+0]
        stw [r10-8], 32
        stxw [r10-4], r4
        mov r2, r10
        add r2, -8
        lddw r1, map:lpm
        call 1
        jeq r0, 0, out
        ldxw r0, [r0+0]
    out:
        exit
    """)
    store = MapStore.from_program(prog)
    store.by_name("lpm").update(lpm_key(8, "10.0.0.0"), k32(8))
    store.by_name("lpm").update(lpm_key(24, "10.1.2.0"), k32(24))
    assert run(prog, ipaddress.IPv4Address("10.1.2.3").packed + bytes(10), maps=store).r0 == 24
    assert run(prog, ipaddress.IPv4Address("10.1.3.3").packed + bytes(10), maps=store).r0 == 8
    assert run(prog, ipaddress.IPv4Address("11.1.2.3").packed + bytes(10), maps=store).r0 == 0


def test_map_errors_reach_the_program():
    prog = assemble("""
        .map h hash key=4 value=4 entries=1
        stw [r10-4], 1
        stw [r10-8], 2
        lddw r1, map:h
        mov r2, r10
        add r2, -4
        mov r3, r10
        add r3, -8
        mov r4, 2
        call 2
        exit
    """)
    res = run(prog, bytes(20))
    assert res.r0 == (-ENOENT) & (2**64 - 1)
    assert res.maps == {"h": {}}


def test_unsupported_map_type():
    with pytest.raises(UnsupportedError):
        mk(MapType.SOCKMAP)


# -- map files ---------------------------------------------------------------------------------------

def _store():
    return MapStore([mk(MapType.ARRAY, name="arr", entries=2), mk(MapType.HASH, key=2, value=4, name="h")])


def test_mapfile_json_and_toml_roundtrip(tmp_path):
    p = tmp_path / "maps.json"
    p.write_text(json.dumps({"arr": [{"key": 1, "value": "0102030405060708"}],
                             "h": [{"key": "0x5000", "value": 7}]}))
    store = _store()
    load_map_file(p, store)
    dump = store.dump()
    assert dump["arr"][k32(1)] == bytes(range(1, 9))
    assert dump["h"] == {b"\x50\x00": (7).to_bytes(4, "little")}
    t = tmp_path / "maps.toml"
    t.write_text('[[h]]\nkey = 80\nvalue = "deadbeef"\n')
    store2 = _store()
    load_map_file(t, store2)
    assert store2.dump()["h"] == {(80).to_bytes(2, "little"): bytes.fromhex("deadbeef")}
    out = tmp_path / "out.json"
    write_map_file(out, dump)
    store3 = _store()
    load_map_file(out, store3)
    assert store3.dump() == dump
    assert state_to_json(dump)["h"] == [{"key": "5000", "value": "07000000"}]


@pytest.mark.parametrize("doc,needle", [
    ({"nope": []}, "no map named 'nope'"),
    ({"h": {}}, "list of entries"),
    ({"h": [{"key": 1}]}, "entry 0"),
    ({"h": [{"key": "zz", "value": 1}]}, "not a hex string"),
    ({"h": [{"key": "0102", "value": "01"}]}, "has 1 bytes, the map needs 4"),
    ({"h": [{"key": 70000, "value": 1}]}, "does not fit in 2 bytes"),
    ({"h": [{"key": -1, "value": 1}]}, "does not fit"),
    ({"arr": [{"key": 5, "value": 0}]}, "refused"),
    ([1, 2], "table of map names"),
])
def test_mapfile_errors_name_map_and_entry(tmp_path, doc, needle):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(LoadError) as exc:
        load_map_file(p, _store())
    assert needle in str(exc.value)


def test_mapfile_syntax_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{nope")
    with pytest.raises(LoadError, match="invalid JSON"):
        load_map_file(p, _store())
    t = tmp_path / "bad.toml"
    t.write_text("[[h]\n")
    with pytest.raises(LoadError, match="invalid TOML"):
        load_map_file(t, _store())
    with pytest.raises(LoadError, match="cannot read"):
        load_map_file(tmp_path / "missing.json", _store())


@settings(max_examples=60)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["h", "arr", "key", "value", "x"]), c, max_size=3),
                    max_leaves=10))
def test_mapfile_fuzz_only_load_errors(tmp_path_factory, doc):
    p = tmp_path_factory.mktemp("f") / "m.json"
    p.write_text(json.dumps(doc))
    try:
        load_map_file(p, _store())
    except LoadError:
        pass


def test_random_hash_against_dict():
    rng = random.Random(5)
    m = mk(MapType.HASH, entries=16)
    model: dict[bytes, bytes] = {}
    for _ in range(500):
        key = k32(rng.randrange(24))
        value = rng.randbytes(8)
        flags = rng.choice([ANY, NOEXIST, EXIST])
        op = rng.choice(["u", "u", "d"])
        if op == "d":
            assert m.delete(key) == (0 if model.pop(key, None) is not None else -ENOENT)
            continue
        if key in model:
            want = -EEXIST if flags == NOEXIST else 0
        elif flags == EXIST:
            want = -ENOENT
        else:
            want = -E2BIG if len(model) >= 16 else 0
        assert m.update(key, value, flags) == want
        if want == 0:
            model[key] = value
    assert dict(m.items()) == model


def test_from_program_order():
    prog = Program("p", (), maps=(MapDef("a", MapType.ARRAY, 4, 4, 1), MapDef("b", MapType.HASH, 4, 4, 1)))
    store = MapStore.from_program(prog)
    assert [m.name for m in store] == ["a", "b"] and store[1].name == "b"


# -- differential against the Linux kernel ----------------------------------------------------------

_UPDATE_OR_DELETE = """
        {decl}
        mov r6, r1
        ldxw r7, [r6+0]
        ldxw r8, [r6+4]
        mov r2, r7
        add r2, 16
        mov r0, 2
        jgt r2, r8, out
        ldxw r9, [r7+0]
        stxw [r10-8], r9
        ldxw r9, [r7+12]
        stxw [r10-4], r9
        stdw [r10-16], 7
        lddw r1, map:m
        mov r2, r10
        add r2, -8
        ldxw r3, [r7+4]
        jeq r3, 1, del
        mov r3, r10
        add r3, -16
        ldxw r4, [r7+8]
        call 2
        exit
    del:
        call 3
    out:
        exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("decl,ops", [
    (".map m array key=4 value=8 entries=4",
     [(1, 0, 0, 0), (1, 0, 1, 0), (1, 0, 2, 0), (4, 0, 0, 0), (1, 0, 3, 0), (1, 1, 0, 0), (9, 1, 0, 0)]),
    (".map m hash key=4 value=8 entries=2",
     [(1, 0, 2, 0), (1, 0, 1, 0), (1, 0, 1, 0), (2, 0, 0, 0), (3, 0, 0, 0), (2, 0, 2, 0), (3, 1, 0, 0),
      (1, 1, 0, 0), (3, 0, 1, 0), (3, 0, 5, 0)]),
    (".map m lpm_trie key=8 value=8 entries=2 flags=1",
     [(33, 0, 0, 0x0A), (8, 0, 0, 0x0A), (8, 0, 1, 0x090A), (8, 0, 2, 0x0A), (16, 0, 0, 0x10A),
      (24, 0, 0, 0x1010A), (24, 1, 0, 0x1010A), (8, 1, 0, 0x0A), (33, 1, 0, 0)]),
], ids=["array", "hash", "lpm_trie"])
def test_update_delete_errors_agree_with_kernel(decl, ops):
    kernel = pytest.importorskip("nfpjit.kernel")
    ok, why = kernel.kernel_available()
    if not ok:
        pytest.skip(why)
    prog = assemble(_UPDATE_OR_DELETE.format(decl=decl))
    store = MapStore.from_program(prog)
    with kernel.KernelProgram(prog) as kp:
        for key, op, flags, extra in ops:
            pkt = b"".join(v.to_bytes(4, "little") for v in (key, op, flags, extra)) + bytes(4)
            want = kp.run(pkt)
            got = run(prog, pkt, maps=store)
            assert (got.r0 & 0xFFFF_FFFF, got.maps) == (want.r0, want.maps), (key, op, flags, extra)


def test_read_map_entries_validates_without_writing(tmp_path):
    from nfpjit.ebpf.mapfile import read_map_entries

    p = tmp_path / "m.json"
    p.write_text(json.dumps({"h": [{"key": 1, "value": "0a0b0c0d"}]}))
    store = _store()
    assert read_map_entries(p, store) == {"h": [(b"\x01\x00", b"\x0a\x0b\x0c\x0d")]}
    assert store.dump()["h"] == {}

"""Map-in-map: BTF ``__array(values, ...)`` inner templates, ``.values`` slots, lookups, map files, the kernel.

The loader follows libbpf: the outer map's value is 4 bytes (an inner map id), the inner
map's definition is the struct the ``values`` array points to, and ``.values = { [i] = &m }``
relocations in ``.maps`` put map ``m`` into slot ``i``.  The kernel oracle creates the
template, the outer map and the slots the same way, so both engines dump the inner maps as
``outer[key hex]``.
"""

from __future__ import annotations

import json

import pytest

import nfpjit
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.mapfile import InnerMap, load_map_file, read_map_entries
from nfpjit.ebpf.maps import MapOfMaps, MapStore
from nfpjit.ebpf.opcodes import MapType
from nfpjit.errors import LoadError, UsageError
from nfpjit.testing import crafted_packets

from conftest import CORPUS
from xdp_cases import both, build, needs_kernel

KATRAN = CORPUS / "katran_lb.o"


def test_loader_reads_inner_templates_and_slots():
    program = nfpjit.load(KATRAN)
    outer = program.map_named("lru_mapping")
    assert outer.type == MapType.ARRAY_OF_MAPS and outer.value_size == 4 and outer.max_entries == 4
    assert outer.inner.type == MapType.LRU_HASH and outer.inner.key_size == 16 and outer.inner.value_size == 4
    assert [(k, m.name) for k, m in outer.slots] == [((0).to_bytes(4, "little"), "conn_q0"),
                                                     ((1).to_bytes(4, "little"), "conn_q1")]
    vips = program.map_named("vip_reals")
    assert vips.type == MapType.HASH_OF_MAPS and vips.inner.type == MapType.ARRAY
    assert [(k, m.name) for k, m in vips.slots] == [((1).to_bytes(4, "little"), "reals_web")]
    # the inner maps are referenced only through the outer maps: not program maps of their own
    assert {m.name for m in program.maps} == {"lru_mapping", "vip_reals", "lb_stats"}
    assert outer.to_json()["inner"]["type"] == "lru_hash" and outer.to_json()["slots"] == {"00000000": "conn_q0",
                                                                                             "01000000": "conn_q1"}


def test_interpreter_lookup_returns_the_inner_map():
    program = nfpjit.load(KATRAN)
    store = MapStore.from_program(program)
    outer = store.by_name("lru_mapping")
    assert isinstance(outer, MapOfMaps)
    assert outer.inner_of(bytes(4)).name == "conn_q0" and outer.inner_of((2).to_bytes(4, "little")) is None
    for frame in crafted_packets():
        res = run(program, frame, maps=store)
        assert res.fault is None
    dump = store.dump()
    assert "lru_mapping[00000000]" in dump and "vip_reals[01000000]" in dump
    assert len(dump["lru_mapping[00000000]"]) >= 1          # flows were recorded in queue 0's table


@needs_kernel
def test_katran_agrees_with_the_kernel():
    program = nfpjit.load(KATRAN)
    problems, want, _ = both(program, crafted_packets() * 2)
    assert not problems, problems[:5]
    assert want[-1].maps["lru_mapping[00000000]"]    # the kernel's inner LRU map holds the same flows


@needs_kernel
def test_map_file_fills_the_outer_map_in_both_engines(tmp_path):
    program = nfpjit.load(KATRAN)
    path = tmp_path / "maps.json"
    # queue 2 gets a fresh LRU table with one flow; vip 2 gets a fresh backends array
    flow = bytes(16)
    path.write_text(json.dumps({
        "lru_mapping": [{"key": 2, "map": [{"key": flow.hex(), "value": 7}]}],
        "vip_reals": [{"key": 2, "map": [{"key": 0, "value": 100}, {"key": 3, "value": 300}]}],
    }))
    store = MapStore.from_program(program)
    entries = read_map_entries(path, store)
    assert isinstance(entries["lru_mapping"][0][1], InnerMap)
    problems, want, got = both(program, crafted_packets(), maps_in=entries)
    assert not problems, problems[:5]
    assert got[0].maps["lru_mapping[02000000]"] == {flow: (7).to_bytes(4, "little")}
    assert "vip_reals[02000000]" in want[-1].maps
    # the same file through load_map_file
    store = MapStore.from_program(program)
    load_map_file(path, store)
    assert store.by_name("vip_reals").inner_of((2).to_bytes(4, "little")).lookup((3).to_bytes(4, "little")) == \
        bytearray((300).to_bytes(4, "little"))


def test_map_file_errors(tmp_path):
    program = nfpjit.load(KATRAN)
    store = MapStore.from_program(program)
    path = tmp_path / "bad.json"
    for doc, match in (({"lru_mapping": [{"key": 0, "value": 1}]}, "'key' and 'map'"),
                       ({"lru_mapping": [{"key": 0, "map": "nope"}]}, "no map named"),
                       ({"lru_mapping": [{"key": 0, "map": "lb_stats"}]}, "does not match the template"),
                       ({"lru_mapping": [{"key": 0, "map": [{"key": "00", "value": 1}]}]}, "bytes")):
        path.write_text(json.dumps(doc))
        with pytest.raises(LoadError, match=match):
            read_map_entries(path, store)


OUTER_SRC = """
struct inner {{ __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, u64); }};
struct {{
    __uint(type, {outer}); __uint(max_entries, 4); __type(key, u32);
    __array(values, struct inner);
}} outer SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u8 *b = data;
    if (b + 2 > (u8 *)end) return XDP_ABORTED;
    u32 k = b[0], i = b[1];
    void *m = bpf_map_lookup_elem(&outer, &k);
    if (!m) return 10;
    u64 *v = bpf_map_lookup_elem(m, &i);
    if (!v) return 11;
    return 20 + (*v)++;
}}
"""


@needs_kernel
@pytest.mark.parametrize("outer", ["BPF_MAP_TYPE_ARRAY_OF_MAPS", "BPF_MAP_TYPE_HASH_OF_MAPS"])
def test_outer_map_filled_only_from_user_space(outer):
    program = build(OUTER_SRC.format(outer=outer), name="outer")
    assert program.maps[0].inner.name == "outer.inner" and program.maps[0].slots == ()
    maps_in = {"outer": [((1).to_bytes(4, "little"), InnerMap(entries=(((0).to_bytes(4, "little"),
                                                                           (5).to_bytes(8, "little")),))),
                         ((3).to_bytes(4, "little"), InnerMap())]}
    frames = [bytes([k, i]) + bytes(58) for k in range(5) for i in range(3)] * 2
    problems, want, _ = both(program, frames, maps_in=maps_in)
    assert not problems, problems[:5]
    assert {w.r0 for w in want} >= {10, 11, 20, 25, 26}


def test_inner_map_must_match_the_template():
    program = build(OUTER_SRC.format(outer="BPF_MAP_TYPE_ARRAY_OF_MAPS"), name="outer")
    store = MapStore.from_program(program)
    outer = store.by_name("outer")
    from dataclasses import replace

    wrong = outer.new_inner("w")
    wrong.mapdef = replace(wrong.mapdef, value_size=4)
    assert outer.set_inner(bytes(4), wrong) == -22
    assert outer.set_inner((9).to_bytes(4, "little"), outer.new_inner("x")) == -7   # -E2BIG beyond max_entries
    assert outer.set_inner(bytes(4), outer.new_inner("ok")) == 0


def test_map_in_map_without_inner_definition_is_a_load_error(tmp_path):
    src = """
    struct { __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); __uint(max_entries, 4); __type(key, u32);
             __type(value, u32); } outer SEC(".maps");
    SEC("xdp") int p(struct xdp_md *ctx) { u32 k = 0; return bpf_map_lookup_elem(&outer, &k) ? 1 : 2; }
    """
    with pytest.raises(LoadError, match="no inner map definition"):
        build(src, name="noinner")


def test_program_cannot_update_an_outer_map():
    src = OUTER_SRC.format(outer="BPF_MAP_TYPE_HASH_OF_MAPS").replace(
        "void *m = bpf_map_lookup_elem(&outer, &k);", "bpf_map_delete_elem(&outer, &k); void *m = 0;")
    program = build(src, name="outerdel")
    res = run(program, bytes(60))
    assert res.fault is not None and "verifier refuses" in res.fault.reason


def test_check_report_names_map_in_map():
    from nfpjit import check

    report = check(nfpjit.load(KATRAN))
    assert "map-type" in report.codes
    assert any("array_of_maps" in d.message and "map-in-map" in (d.hint or "") for d in report.diagnostics)


def test_usage_error_for_map_in_map_without_template():
    from nfpjit.ebpf.maps import create_map
    from nfpjit.ebpf.program import MapDef

    with pytest.raises(UsageError, match="inner map definition"):
        create_map(MapDef("o", MapType.ARRAY_OF_MAPS, 4, 4, 2))


def test_a_dump_reads_back_as_a_map_file(tmp_path):
    from nfpjit.ebpf.mapfile import write_map_file

    program = nfpjit.load(KATRAN)
    store = MapStore.from_program(program)
    for frame in crafted_packets()[:20]:
        run(program, frame, maps=store)
    path = tmp_path / "dump.json"
    write_map_file(path, store.dump())
    again = MapStore.from_program(program)
    load_map_file(path, again)
    assert again.dump() == store.dump()

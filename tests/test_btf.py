"""BTF parsing and map definitions against independent readers.

Oracles: bpftool's JSON dump of every corpus object's BTF (all types, field
by field); clang itself (a generated C file that static_asserts the map
attributes we read); llvm-readelf's hex dump of the legacy ``maps`` section.
Malformed BTF is built by hand and by hypothesis.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.errors import LoadError
from nfpjit.ebpf.btf import BtfKind, parse_btf, parse_btf_ext
from nfpjit.ebpf.elf import read_object
from nfpjit.ebpf.loader import list_programs, load
from tests.conftest import CORPUS, need_tool

OBJECTS = sorted(CORPUS.glob("*.o"))


def _section(path: Path, name: str) -> bytes:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(name).data()


def _all_maps(path: Path):
    obj = read_object(path.read_bytes(), str(path))
    return obj.maps


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_types_match_bpftool(path):
    tool = need_tool("bpftool")
    theirs = json.loads(subprocess.run([tool, "-j", "btf", "dump", "file", str(path)], capture_output=True,
                                       text=True, check=True).stdout)["types"]
    btf = parse_btf(_section(path, ".BTF"))
    assert len(btf.types) == len(theirs) + 1
    for t in theirs:
        ours = btf.type(t["id"])
        assert ours.kind.name == t["kind"]
        assert (ours.name or "(anon)") == t["name"]
        if "size" in t and t["kind"] != "DATASEC":
            assert ours.size == t["size"]
        if t["kind"] in ("PTR", "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "FUNC", "VAR", "TYPE_TAG"):
            assert ours.ref == t["type_id"]
        if t["kind"] == "ARRAY":
            assert ours.array == (t["type_id"], t["index_type_id"], t["nr_elems"])
        if t["kind"] in ("STRUCT", "UNION"):
            assert [(m.name or "(anon)", m.type, m.offset & 0xFFFFFF if ours.kind_flag else m.offset)
                    for m in ours.members] == \
                   [(m["name"], m["type_id"], m["bits_offset"]) for m in t["members"]]
            assert btf.size_of(t["id"]) == t["size"]
        if t["kind"] == "FUNC_PROTO":
            assert ours.ref == t["ret_type_id"]
            assert [(p.name or "(anon)", p.type) for p in ours.members] == \
                   [(p["name"], p["type_id"]) for p in t["params"]]
        if t["kind"] == "DATASEC":
            assert [(v.type, v.offset, v.size) for v in ours.vars] == \
                   [(v["type_id"], v["offset"], v["size"]) for v in t["vars"]]
        if t["kind"] == "VAR":
            assert {0: "static", 1: "global"}[ours.linkage] == t["linkage"]


_MAP_DECL = re.compile(r"\}\s*(\w+)\s+SEC\(\"\.maps\"\)")


@pytest.mark.parametrize("path", [p for p in OBJECTS if '".maps"' in p.with_suffix(".c").read_text()],
                         ids=lambda p: p.name)
def test_btf_map_attributes_agree_with_clang(path, tmp_path):
    """clang evaluates sizeof() of the same declarations; a failed _Static_assert means we misread BTF."""
    clang = need_tool("clang")
    maps = [m for m in _all_maps(path) if m.origin == "btf"]
    declared = _MAP_DECL.findall(path.with_suffix(".c").read_text())
    assert sorted(m.name for m in maps) == sorted(declared)
    checks = []
    for m in maps:
        n = m.name
        checks.append(f"_Static_assert(sizeof(*{n}.type) / sizeof(int) == {int(m.type)}, \"{n} type\");")
        for attr, value in (("max_entries", m.max_entries), ("map_flags", m.flags)):
            if f"__uint({attr}" in _decl_of(path, n):
                checks.append(f"_Static_assert(sizeof(*{n}.{attr}) / sizeof(int) == {value}, \"{n} {attr}\");")
            else:
                assert value == 0
        for attr, value in (("key", m.key_size), ("value", m.value_size)):
            if f"__type({attr}," in _decl_of(path, n):
                checks.append(f"_Static_assert(sizeof(*{n}.{attr}) == {value}, \"{n} {attr}\");")
            elif f"__uint({attr}_size" in _decl_of(path, n):
                checks.append(f"_Static_assert(sizeof(*{n}.{attr}_size) / sizeof(int) == {value}, \"{n} {attr}\");")
    probe = tmp_path / "probe.c"
    probe.write_text(f'#include "{path.with_suffix(".c")}"\n' + "\n".join(checks) + "\n")
    res = subprocess.run([clang, "-target", "bpf", "-fsyntax-only", f"-I{CORPUS / 'include'}", str(probe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _decl_of(path: Path, name: str) -> str:
    text = path.with_suffix(".c").read_text()
    end = text.index(f"}} {name} SEC")
    return text[text.rindex("struct {", 0, end):end]


def test_legacy_maps_agree_with_readelf():
    tool = need_tool("llvm-readelf")
    path = CORPUS / "legacy_maps.o"
    out = subprocess.run([tool, "-x", "maps", str(path)], capture_output=True, text=True, check=True).stdout
    raw = b""
    for line in out.splitlines():
        if m := re.match(r"^0x[0-9a-f]+ ((?:[0-9a-f]{2,8} ?){1,4})", line):
            raw += bytes.fromhex(m.group(1).replace(" ", ""))
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    maps = _all_maps(path)
    assert len(words) == 5 * len(maps)
    for i, m in enumerate(maps):
        assert words[5 * i: 5 * i + 5] == (int(m.type), m.key_size, m.value_size, m.max_entries, m.flags)


def test_btf_and_legacy_definitions_of_the_same_map_agree(tmp_path):
    """The same map declared both ways must load to the same attributes."""
    clang = need_tool("clang")
    src = tmp_path / "both.c"
    src.write_text('#include "bpf_defs.h"\n'
                   "struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u32); __type(value, u64);\n"
                   "         __uint(max_entries, 77); __uint(map_flags, BPF_F_NO_PREALLOC); } m_btf SEC(\".maps\");\n"
                   "struct bpf_map_def SEC(\"maps\") m_legacy = { .type = BPF_MAP_TYPE_HASH, .key_size = 4,\n"
                   "   .value_size = 8, .max_entries = 77, .map_flags = BPF_F_NO_PREALLOC };\n"
                   "SEC(\"xdp\") int p(struct xdp_md *ctx) { u32 k = 0;\n"
                   "  return bpf_map_lookup_elem(&m_btf, &k) && bpf_map_lookup_elem(&m_legacy, &k); }\n")
    out = tmp_path / "both.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-I{CORPUS / 'include'}", "-c", str(src), "-o", str(out)],
                   check=True, capture_output=True)
    prog = load(out)
    a, b = prog.map_named("m_btf"), prog.map_named("m_legacy")
    assert (a.type, a.key_size, a.value_size, a.max_entries, a.flags) == \
           (b.type, b.key_size, b.value_size, b.max_entries, b.flags)
    assert (a.origin, b.origin) == ("btf", "legacy")


# -- hand-built BTF ---------------------------------------------------------------

def build_btf(types: list[bytes], strings: bytes) -> bytes:
    body = b"".join(types)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings)) + body + strings


def _t(name_off, kind, vlen, size_or_type, extra=b"", kflag=0):
    return struct.pack("<III", name_off, (kflag << 31) | (kind << 24) | vlen, size_or_type) + extra


STRS = b"\0int\0e\0A\0B\0"  # offsets: int=1, e=5, A=7, B=9


def test_hand_built_enum_and_bitfield_struct():
    int_t = _t(1, BtfKind.INT, 0, 4, struct.pack("<I", 32))
    enum_t = _t(5, BtfKind.ENUM, 2, 4, struct.pack("<Ii", 7, -1) + struct.pack("<Ii", 9, 5))
    bitfield = _t(0, BtfKind.STRUCT, 1, 4, struct.pack("<III", 7, 1, (3 << 24) | 4), kflag=1)
    btf = parse_btf(build_btf([int_t, enum_t, bitfield], STRS))
    assert btf.type(2).kind == BtfKind.ENUM and [(m.name, m.offset) for m in btf.type(2).members] == [("A", -1),
                                                                                                       ("B", 5)]
    m = btf.type(3).members[0]
    assert btf.type(3).kind_flag and m.offset >> 24 == 3 and m.offset & 0xFFFFFF == 4
    assert btf.size_of(3) == 4 and btf.size_of(1) == 4


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:10], "truncated"),
    (lambda b: b"\xeb\x9f" + b[2:], "big-endian"),
    (lambda b: b[:2] + b"\x02" + b[3:], "version"),
    (lambda b: b[:8] + struct.pack("<I", 0) + struct.pack("<I", 999) + b[16:], "runs past"),
    (lambda b: b[:24] + struct.pack("<I", 500) + b[28:], "string offset 500"),
    (lambda b: b[:24] + struct.pack("<III", 1, 25 << 24, 4) + b[36:], "unknown BTF kind"),
])
def test_malformed_btf(mutate, message):
    good = build_btf([_t(1, BtfKind.INT, 0, 4, struct.pack("<I", 32)), _t(0, BtfKind.PTR, 0, 1)], STRS)
    parse_btf(good)
    with pytest.raises(LoadError, match=message):
        parse_btf(mutate(good))


def test_dangling_type_reference():
    with pytest.raises(LoadError, match="missing type 7"):
        parse_btf(build_btf([_t(0, BtfKind.PTR, 0, 7)], STRS))
    with pytest.raises(LoadError, match="too long or cyclic"):
        parse_btf(build_btf([_t(1, BtfKind.TYPEDEF, 0, 1)], STRS)).resolve(1)


def test_btf_ext_matches_symbols():
    """func_info names and offsets agree with the ELF function symbols clang wrote."""
    path = CORPUS / "two_programs.o"
    btf = parse_btf(_section(path, ".BTF"))
    ext = parse_btf_ext(_section(path, ".BTF.ext"), btf)
    obj = read_object(path.read_bytes(), str(path))
    for sec, funcs in ext.func_info.items():
        syms = {f.name: f.value for f in obj._sections[sec].funcs}
        assert {fi.name: fi.insn_off for fi in funcs} == syms
    assert {s for s, _ in list_programs(path)} | {".text"} == set(ext.line_info)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_btf_only_loaderror(blob):
    data = build_btf([_t(1, BtfKind.INT, 0, 4, struct.pack("<I", 32))], STRS)[:24] + blob
    try:
        btf = parse_btf(data)
        for t in btf.types:
            try:
                btf.size_of(t.id)
            except LoadError:
                pass
    except LoadError:
        pass

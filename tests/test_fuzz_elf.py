"""Mutated corpus objects: the loader either succeeds or raises LoadError, nothing else.

Mutations flip, overwrite, truncate and insert bytes of real objects, with a
bias toward the interesting parts (ELF and section headers, code,
relocations, BTF).  The default run is a few hundred examples; ``--run-slow``
runs thousands.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfpjit.errors import LoadError
from nfpjit.ebpf.elf import read_object
from nfpjit.ebpf.program import Program
from tests.conftest import CORPUS

SEEDS = {p.name: p.read_bytes() for p in sorted(CORPUS.glob("*.o"))}
NAMES = sorted(SEEDS)
# a few objects that exercise every path: BTF maps, legacy maps, global data, calls, two programs
FOCUS = ["xdp_drop_tcp_ports.o", "legacy_maps.o", "global_data.o", "bpf2bpf_call.o", "two_programs.o",
         "xdp_pass.o"]


def _hot_offsets(data: bytes) -> list[int]:
    """ELF header (past the magic), section header table and the start of every section: where mutations bite."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    hot = list(range(4, 64)) + list(range(shoff, min(len(data), shoff + shentsize * shnum)))
    for i in range(shnum):
        off, = struct.unpack_from("<Q", data, shoff + i * shentsize + 0x18)
        hot += [o for o in range(off, off + 48) if 4 <= o < len(data)]
    return hot


HOT = {n: _hot_offsets(d) for n, d in SEEDS.items()}


def _debug_ranges(data: bytes) -> list[int]:
    """Every byte of .BTF, .BTF.ext and the relocation sections: the parsers nfpjit wrote itself."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    str_off, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    out = []
    for i in range(shnum):
        hdr = shoff + i * shentsize
        (noff,) = struct.unpack_from("<I", data, hdr)
        name = data[str_off + noff:data.index(b"\0", str_off + noff)]
        off, size = struct.unpack_from("<QQ", data, hdr + 0x18)
        if name in (b".BTF", b".BTF.ext", b"maps") or name.startswith(b".rel") and b"debug" not in name:
            out += range(off, off + size)
    return out


DEBUG = {n: _debug_ranges(d) for n, d in SEEDS.items()}


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(FOCUS) | st.sampled_from(NAMES))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "word", "truncate", "insert", "delete"]))
        if not data:
            break
        pos = draw(st.sampled_from(HOT[name]) | st.integers(0, len(data) - 1)) % len(data)
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "word" and pos + 4 <= len(data):
            value = draw(st.sampled_from([0, 1, 7, 8, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1))
            struct.pack_into("<I", data, pos, value)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return name, bytes(data)


@st.composite
def mutated_debug(draw):
    """Overwrite bytes or words inside BTF, BTF.ext, legacy maps and code relocations only."""
    name = draw(st.sampled_from(FOCUS))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.sampled_from(DEBUG[name]))
        if draw(st.booleans()):
            data[pos] = draw(st.integers(0, 255))
        elif pos + 4 <= len(data):
            struct.pack_into("<I", data, pos, draw(st.sampled_from([0, 1, 8, 0xFFFF, 0xFFFFFFFF])
                                                   | st.integers(0, 2**32 - 1)))
    return name, bytes(data)


def _load_all(name: str, data: bytes) -> None:
    try:
        obj = read_object(data, name)
        for section, func in obj.entries:
            prog = obj.program(section, func)
            assert isinstance(prog, Program)
            for pc, _loc in prog.line_info.items():
                assert pc in prog.index_at_pc
    except LoadError as exc:
        assert name in str(exc)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_objects_only_raise_loaderror(case):
    _load_all(*case)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_debug())
def test_mutated_btf_and_relocations_only_raise_loaderror(case):
    _load_all(*case)


@pytest.mark.slow
@settings(max_examples=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_debug())
def test_mutated_btf_big_run(case):
    _load_all(*case)


@pytest.mark.slow
@settings(max_examples=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_objects_big_run(case):
    _load_all(*case)


def test_unmutated_seeds_load():
    for name, data in SEEDS.items():
        obj = read_object(data, name)
        assert obj.entries
        for section, func in obj.entries:
            obj.program(section, func)

"""nfpjit.ebpf.elfread (the loader's small ELF reader) against pyelftools on every corpus object and mutations."""

from __future__ import annotations

import io

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection as PyRelocations
from elftools.elf.sections import SymbolTableSection as PySymbols
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfpjit.ebpf import elfread
from tests.conftest import CORPUS

OBJECTS = sorted(CORPUS.glob("*.o"))
FIELDS = ("sh_type", "sh_flags", "sh_size", "sh_info", "sh_link", "sh_offset", "sh_entsize")


def _same(data: bytes) -> None:
    ref, ours = ELFFile(io.BytesIO(data)), elfread.ElfFile(data)
    assert ours.header["e_machine"] == ref.header["e_machine"]
    assert (ours.elfclass, ours.little_endian) == (ref.elfclass, ref.little_endian)
    theirs, mine = list(ref.iter_sections()), list(ours.iter_sections())
    assert [s.name for s in mine] == [s.name for s in theirs]
    for a, b in zip(theirs, mine):
        assert {k: b[k] for k in FIELDS} == {k: a[k] for k in FIELDS}, a.name
        assert b.data() == a.data(), a.name
        assert isinstance(b, elfread.SymbolTableSection) == isinstance(a, PySymbols)
        assert isinstance(b, elfread.RelocationSection) == isinstance(a, PyRelocations)
        if isinstance(a, PySymbols):
            want = [(s.name, s["st_value"], s["st_size"], s["st_shndx"], s["st_info"]["type"], s["st_info"]["bind"])
                    for s in a.iter_symbols()]
            got = [(s.name, s["st_value"], s["st_size"], s["st_shndx"], s["st_info"]["type"], s["st_info"]["bind"])
                   for s in b.iter_symbols()]
            assert got == want
        if isinstance(a, PyRelocations):
            assert b.is_RELA() == a.is_RELA()
            assert [(r["r_offset"], r["r_info_type"], r["r_info_sym"]) for r in b.iter_relocations()] == \
                [(r["r_offset"], r["r_info_type"], r["r_info_sym"]) for r in a.iter_relocations()]
    for name in (".BTF", ".BTF.ext", "license", ".maps", "maps", "no-such-section"):
        a, b = ref.get_section_by_name(name), ours.get_section_by_name(name)
        assert (a is None) == (b is None) and (a is None or a.data() == b.data())


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.stem)
def test_reads_what_pyelftools_reads(path):
    _same(path.read_bytes())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(OBJECTS), st.data())
def test_mutated_header_fields_agree_or_fail(path, data):
    """One byte of a section header changed: where pyelftools still reads the file, we read the same."""
    raw = bytearray(path.read_bytes())
    shoff = int.from_bytes(raw[0x28:0x30], "little")
    shnum = int.from_bytes(raw[0x3C:0x3E], "little")
    at = data.draw(st.integers(shoff, shoff + 64 * shnum - 1))
    raw[at] = data.draw(st.integers(0, 255))
    try:
        ref = ELFFile(io.BytesIO(bytes(raw)))
        list(ref.iter_sections())
        for s in ref.iter_sections():
            s.data()
            if isinstance(s, (PySymbols, PyRelocations)):
                list(s.iter_symbols() if isinstance(s, PySymbols) else s.iter_relocations())
    except Exception:  # noqa: BLE001 - pyelftools refuses it: only our not crashing differently matters
        return
    try:
        _same(bytes(raw))
    except (elfread.ElfFormatError, ValueError, IndexError):
        pass  # we are stricter on some broken files; the loader turns this into LoadError

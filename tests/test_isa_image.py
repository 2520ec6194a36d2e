"""The NFP-32 firmware image: round trip, independent readers (pyelftools, readelf), rejection, relocation."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from io import BytesIO

from nfpjit.errors import ImageError
from nfpjit.isa import Bank, Cond, Gpr, Imm, Instruction, Op, decode, encode
from nfpjit.isa.image import (
    EM_NFP,
    Image,
    ImageData,
    ImageMap,
    ImageMapType,
    ImageProgType,
    LineEntry,
    Metadata,
    Relocation,
    RelocKind,
    Symbol,
    SymbolKind,
    program_tag,
    read_image,
    relocate,
    write_image,
)
from conftest import need_tool


def sample() -> Image:
    code = (
        encode(Instruction(Op.IMMED, dest=Gpr(Bank.A, 2), imm=0)),
        encode(Instruction(Op.LOAD_ADDR, dest=Gpr(Bank.A, 30), target=3)),
        encode(Instruction(Op.BR, cond=Cond.ALWAYS, target=0)),
        encode(Instruction(Op.HALT, b=Imm(2))),
        encode(Instruction(Op.ADD, dest=Gpr(Bank.A, 0), a=Gpr(Bank.A, 0), b=Imm(1))),
    )
    return Image(
        code=code,
        maps=(ImageMap(0, "counters", ImageMapType.ARRAY, 4, 8, 64), ImageMap(1, "flows", ImageMapType.HASH, 16, 8, 1024),
              ImageMap(2, ".data", ImageMapType.ARRAY, 4, 12, 1)),
        metadata=Metadata(prog_type=ImageProgType.XDP, entry=0, stack_size=64, profile="default",
                          source_tag=program_tag(b"\x95" + bytes(7)), passes=("reg-init", "zext-elim"),
                          nfpjit_version="0.1.0", name="xdp_prog"),
        line_table=(LineEntry(0, 0, "prog.c", 10, 5), LineEntry(2, 3, "prog.c", 12, 9), LineEntry(4, 7, "util.h", 3, 1)),
        symbols=(Symbol("xdp_prog", SymbolKind.SUBPROG, 0, 4), Symbol("helper", SymbolKind.SUBPROG, 4, 1),
                 Symbol("counters", SymbolKind.MAP), Symbol("fw_map_lookup", SymbolKind.ROUTINE)),
        relocations=(Relocation(0, RelocKind.MAP_ID, "counters"), Relocation(2, RelocKind.ROUTINE_ADDR, "fw_map_lookup")),
        data=(ImageData(".data", b"hello world\0"),),
    )


def test_round_trip_and_file(tmp_path):
    img = sample()
    assert Image.from_bytes(img.to_bytes()) == img
    path = tmp_path / "prog.nfp"
    write_image(path, img)
    assert read_image(path) == img


def test_pyelftools_reads_what_we_wrote():
    img = sample()
    elf = ELFFile(BytesIO(img.to_bytes()))
    assert elf["e_machine"] == "EM_NFP" or elf.header["e_machine"] == EM_NFP
    assert elf.elfclass == 64 and elf.little_endian
    text = elf.get_section_by_name(".text").data()
    assert struct.unpack(f"<{len(img.code)}Q", text) == img.code
    syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name}
    assert syms["helper"]["st_value"] == 8 * 4 and syms["helper"]["st_size"] == 8
    assert syms["counters"]["st_shndx"] == "SHN_UNDEF"
    relocs = list(elf.get_section_by_name(".rela.text").iter_relocations())
    symtab = elf.get_section_by_name(".symtab")
    assert [(r["r_offset"], r["r_info_type"], symtab.get_symbol(r["r_info_sym"]).name) for r in relocs] == [
        (0, 1, "counters"), (16, 2, "fw_map_lookup")]
    # The hash section is SHA-256 over (name, length, bytes) of every other section, in file order.
    h = hashlib.sha256()
    for sec in elf.iter_sections():
        if sec.name in ("", ".nfp.hash"):
            continue
        body = sec.data()
        h.update(sec.name.encode() + b"\0" + struct.pack("<Q", len(body)) + body)
    assert elf.get_section_by_name(".nfp.hash").data() == h.digest()


@pytest.mark.parametrize("relocated", [False, True])
@pytest.mark.parametrize("tool", ["readelf", "llvm-readelf"])
def test_readelf_accepts(tool, relocated, tmp_path):
    exe = need_tool(tool)
    path = tmp_path / "prog.nfp"
    img = sample()
    write_image(path, relocate(img, {"counters": 3}, {"fw_map_lookup": 0x3F00}) if relocated else img)
    out = subprocess.run([exe, "-a", str(path)], capture_output=True, text=True, check=True)
    assert "warning" not in out.stderr.lower() and "error" not in out.stderr.lower(), out.stderr
    for name in (".text", ".nfp.maps", ".nfp.meta", ".nfp.lines", ".symtab", ".rela.text", ".nfp.hash"):
        assert name in out.stdout
    assert "xdp_prog" in out.stdout and "fw_map_lookup" in out.stdout


def test_truncated_is_rejected():
    data = sample().to_bytes()
    for cut in (0, 3, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(ImageError):
            Image.from_bytes(data[:cut])
    with pytest.raises(ImageError, match="truncated|past the end"):
        Image.from_bytes(data[: len(data) - 70])


def test_corrupt_content_fails_the_hash():
    data = bytearray(sample().to_bytes())
    data[64 + 3] ^= 0x01  # first section body (.text) starts right after the ELF header
    with pytest.raises(ImageError, match="integrity hash"):
        Image.from_bytes(bytes(data))


def test_wrong_version_and_wrong_isa():
    data = bytearray(sample().to_bytes())
    bad_version = bytearray(data)
    struct.pack_into("<I", bad_version, 48, 2)  # e_flags
    with pytest.raises(ImageError, match="format version 2"):
        Image.from_bytes(bytes(bad_version))
    bad_machine = bytearray(data)
    struct.pack_into("<H", bad_machine, 18, 247)  # EM_BPF
    with pytest.raises(ImageError, match="another ISA"):
        Image.from_bytes(bytes(bad_machine))
    other = dataclasses.replace(sample(), metadata=dataclasses.replace(sample().metadata, isa="nfp6000"))
    with pytest.raises(ImageError, match="ISA 'nfp6000'"):
        Image.from_bytes(other.to_bytes())
    with pytest.raises(ImageError, match="ELF magic"):
        Image.from_bytes(b"hello")


def test_writer_rejects_inconsistent_images():
    img = sample()
    with pytest.raises(ImageError, match="entry point"):
        dataclasses.replace(img, metadata=dataclasses.replace(img.metadata, entry=99)).to_bytes()
    with pytest.raises(ImageError, match="not a map symbol"):
        dataclasses.replace(img, relocations=(Relocation(0, RelocKind.MAP_ID, "fw_map_lookup"),)).to_bytes()
    with pytest.raises(ImageError, match="unknown map"):
        dataclasses.replace(img, data=(ImageData("nope", b"x"),)).to_bytes()


def test_relocate_patches_fields_and_symbols():
    img = relocate(sample(), {"counters": 0x1234}, {"fw_map_lookup": 0x3F00})
    assert img.relocations == ()
    assert decode(img.code[0]).imm == 0x1234 and decode(img.code[0]).dest == Gpr(Bank.A, 2)
    assert decode(img.code[2]).target == 0x3F00 and decode(img.code[2]).cond == Cond.ALWAYS
    assert img.code[1:2] + img.code[3:] == sample().code[1:2] + sample().code[3:]
    assert img.symbol("counters").address == 0x1234 and img.symbol("fw_map_lookup").address == 0x3F00
    again = Image.from_bytes(img.to_bytes())
    assert again == img
    with pytest.raises(ImageError, match="no load-time value"):
        relocate(sample(), {}, {"fw_map_lookup": 1})
    with pytest.raises(ImageError, match="does not fit"):
        relocate(sample(), {"counters": 1 << 16}, {"fw_map_lookup": 1})


def test_line_for():
    img = sample()
    assert img.line_for(1).line == 10 and img.line_for(3).insn_index == 3 and img.line_for(4).file == "util.h"


# -- property: any consistent image survives the round trip ------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=12)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def images(draw):
    code = tuple(draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20)))
    n = len(code)
    map_names = draw(st.lists(names, unique=True, max_size=4))
    maps = tuple(ImageMap(i, nm, draw(st.sampled_from(list(ImageMapType))), draw(u32), draw(u32), draw(u32), draw(u32))
                 for i, nm in enumerate(map_names))
    data = tuple(ImageData(nm, draw(st.binary(max_size=40))) for nm in map_names if draw(st.booleans()))
    md = Metadata(prog_type=draw(st.sampled_from(list(ImageProgType))), entry=draw(st.integers(0, n - 1)),
                  stack_size=draw(u32), profile=draw(names), source_tag=draw(st.binary(min_size=32, max_size=32)),
                  passes=tuple(draw(st.lists(names, max_size=4))), nfpjit_version=draw(names), name=draw(names))
    lines = tuple(LineEntry(draw(st.integers(0, n - 1)), draw(st.integers(-1, 2**31 - 1)), draw(names), draw(u32),
                            draw(u32)) for _ in range(draw(st.integers(0, 5))))
    sym_names = draw(st.lists(names, unique=True, max_size=6).filter(lambda xs: not set(xs) & set(map_names)))
    symbols = []
    for nm in sym_names:
        kind = draw(st.sampled_from([SymbolKind.SUBPROG, SymbolKind.ROUTINE]))
        if kind == SymbolKind.SUBPROG:
            start = draw(st.integers(0, n - 1))
            symbols.append(Symbol(nm, kind, start, draw(st.integers(0, n - start))))
        else:
            symbols.append(Symbol(nm, kind, draw(u32)))
    symbols += [Symbol(nm, SymbolKind.MAP, draw(u32)) for nm in map_names if draw(st.booleans())]
    targets = [(s.name, RelocKind.MAP_ID if s.kind == SymbolKind.MAP else RelocKind.ROUTINE_ADDR)
               for s in symbols if s.kind != SymbolKind.SUBPROG]
    relocs = tuple(Relocation(draw(st.integers(0, n - 1)), kind, nm, draw(st.integers(-2**63, 2**63 - 1)))
                   for nm, kind in (draw(st.lists(st.sampled_from(targets), max_size=4)) if targets else []))
    return Image(code, maps, md, lines, tuple(symbols), relocs, data)


@settings(max_examples=150)
@given(images())
def test_any_consistent_image_round_trips(img):
    assert Image.from_bytes(img.to_bytes()) == img


def test_unwritable_values_are_image_errors():
    img = sample()
    with pytest.raises(ImageError):
        dataclasses.replace(img, line_table=(LineEntry(0, -2**40, "f", 1, 1),)).to_bytes()
    with pytest.raises(ImageError):
        dataclasses.replace(img, metadata=dataclasses.replace(img.metadata, name="a\0b")).to_bytes()
    with pytest.raises(ImageError):
        dataclasses.replace(img, metadata=dataclasses.replace(img.metadata, name="\ud800")).to_bytes()


def test_asm_data_initialises_a_global_data_map():
    from nfpjit.isa.asm import assemble
    from nfpjit.isa.image import image_from_asm
    from nfpjit.isa.sim import EMEM_MAP_BASE, simulate

    src = """
    .map counters hash key=4 value=4 entries=2
    .map greeting array key=4 value=5 entries=1
    .data greeting 0x68, 0x69, 0x21, 0x0a, 0x7f
    .data unused 1, 2
        immed a1, {hi}
        mem_read.emem $in0, a1, 0, 2, ctx_swap     ; map 1's only value, straight from EMEM
        mov a0, $in0
        mov b0, $in1
        mov a1, b0
        halt 2
    """.format(hi=(EMEM_MAP_BASE + (1 << 32)) >> 32)
    img = image_from_asm(assemble(src, "g.s"))
    assert [(m.id, m.name, m.type, m.value_size, m.max_entries) for m in img.maps] == [
        (0, "counters", ImageMapType.HASH, 4, 2), (1, "greeting", ImageMapType.ARRAY, 5, 1)]
    r = simulate(Image.from_bytes(img.to_bytes()), b"")
    data = bytes([0x68, 0x69, 0x21, 0x0A, 0x7F])
    assert r.fault is None and r.r0 == int.from_bytes(data + bytes(3), "little")
    assert r.maps["greeting"] == {bytes(4): data}

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


@pytest.mark.parametrize("tool", ["readelf", "llvm-readelf"])
def test_readelf_accepts(tool, tmp_path):
    exe = need_tool(tool)
    path = tmp_path / "prog.nfp"
    write_image(path, sample())
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

"""A small reader for the parts of 64-bit ELF files that BPF objects use: header, sections, symbols, REL(A).

It gives :mod:`nfpjit.ebpf.elf` what it used from pyelftools (header fields, sections with
``sh_*`` fields and ``data()``, ``.symtab`` symbols, relocations) with pyelftools' spellings of
the enumerated values (``"SHT_PROGBITS"``, ``"STT_FUNC"``, ``"STB_LOCAL"``; unknown values stay
ints), at a fraction of its import and parse time: loading is on the path of every
``nfpjit compile``.  pyelftools stays the independent reader in the tests.  Malformed input
raises :class:`ElfFormatError` (or ``struct.error``), which the loader turns into a LoadError.
"""

from __future__ import annotations

import struct
import zlib

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")
_CHDR = struct.Struct("<IIQQ")

SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1

SECTION_TYPES = {0: "SHT_NULL", 1: "SHT_PROGBITS", 2: "SHT_SYMTAB", 3: "SHT_STRTAB", 4: "SHT_RELA",
                 5: "SHT_HASH", 6: "SHT_DYNAMIC", 7: "SHT_NOTE", 8: "SHT_NOBITS", 9: "SHT_REL", 10: "SHT_SHLIB",
                 11: "SHT_DYNSYM", 14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY", 16: "SHT_PREINIT_ARRAY",
                 17: "SHT_GROUP", 18: "SHT_SYMTAB_SHNDX", 19: "SHT_RELR", 20: "SHT_NUM", 0x60000000: "SHT_LOOS",
                 0x6FFFFFF5: "SHT_GNU_ATTRIBUTES", 0x6FFFFFF6: "SHT_GNU_HASH", 0x6FFFFFF7: "SHT_GNU_LIBLIST",
                 0x6FFFFFFD: "SHT_GNU_verdef", 0x6FFFFFFE: "SHT_GNU_verneed", 0x6FFFFFFF: "SHT_GNU_versym",
                 0x80000000: "SHT_LOUSER", 0xFFFFFFFF: "SHT_HIUSER"}
SYMBOL_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
                5: "STT_COMMON", 6: "STT_TLS", 7: "STT_NUM", 8: "STT_RELC", 9: "STT_SRELC", 10: "STT_LOOS",
                12: "STT_HIOS", 13: "STT_LOPROC", 15: "STT_HIPROC"}
SYMBOL_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK", 3: "STB_NUM", 10: "STB_LOOS", 12: "STB_HIOS",
                13: "STB_LOPROC", 15: "STB_HIPROC"}
SPECIAL_SHNDX = {0: "SHN_UNDEF", 0xFFF1: "SHN_ABS", 0xFFF2: "SHN_COMMON"}
MACHINES = {0: "EM_NONE", 3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 40: "EM_ARM", 62: "EM_X86_64",
            183: "EM_AARCH64", 243: "EM_RISCV", 247: "EM_BPF"}


class ElfFormatError(ValueError):
    """The bytes are not a well-formed ELF file."""


def _cstring(data: bytes, offset: int) -> str:
    if not 0 <= offset < len(data):
        return ""
    end = data.find(b"\0", offset)
    raw = data[offset:] if end < 0 else data[offset:end]
    return raw.decode("utf-8", errors="replace") if raw else ""


class Section:
    """One section: ``s["sh_type"]`` etc. (pyelftools' field names), ``name`` and ``data()``."""

    __slots__ = ("name", "header", "_file", "index")

    def __init__(self, name: str, header: dict, file: bytes, index: int):
        self.name = name
        self.header = header
        self._file = file
        self.index = index

    def __getitem__(self, key: str):
        return self.header[key]

    def data(self) -> bytes:
        h = self.header
        if h["sh_type"] == "SHT_NOBITS":
            return bytes(h["sh_size"])
        raw = self._file[h["sh_offset"]:h["sh_offset"] + h["sh_size"]]
        if h["sh_flags"] & SHF_COMPRESSED:
            if len(raw) < _CHDR.size:
                raise ElfFormatError(f"compressed section {self.name} is truncated")
            ctype, _, size, _ = _CHDR.unpack_from(raw)
            if ctype != ELFCOMPRESS_ZLIB:
                raise ElfFormatError(f"section {self.name} is compressed with unknown type {ctype}")
            try:
                raw = zlib.decompress(raw[_CHDR.size:])
            except zlib.error as exc:
                raise ElfFormatError(f"section {self.name} does not decompress: {exc}") from None
            if len(raw) != size:
                raise ElfFormatError(f"section {self.name} decompresses to {len(raw)} bytes, not {size}")
        return raw


class Symbol:
    __slots__ = ("name", "entry")

    def __init__(self, name: str, entry: dict):
        self.name = name
        self.entry = entry

    def __getitem__(self, key: str):
        return self.entry[key]


class SymbolTableSection(Section):
    __slots__ = ("strtab",)

    def iter_symbols(self):
        entsize = self.header["sh_entsize"]
        if entsize < _SYM.size:
            raise ElfFormatError(f"symbol table entries of {entsize} bytes")
        data = self.data()
        for off in range(0, len(data) - entsize + 1, entsize):
            st_name, info, other, shndx, value, size = _SYM.unpack_from(data, off)
            entry = {"st_name": st_name, "st_info": {"type": SYMBOL_TYPES.get(info & 0xF, info & 0xF),
                                                     "bind": SYMBOL_BINDS.get(info >> 4, info >> 4)},
                     "st_other": other, "st_shndx": SPECIAL_SHNDX.get(shndx, shndx), "st_value": value,
                     "st_size": size}
            yield Symbol(_cstring(self.strtab, st_name) if self.strtab is not None else "", entry)


class RelocationSection(Section):
    __slots__ = ()

    def is_RELA(self) -> bool:  # noqa: N802 - pyelftools' name
        return self.header["sh_type"] == "SHT_RELA"

    def iter_relocations(self):
        entsize = self.header["sh_entsize"] or (24 if self.is_RELA() else 16)
        if entsize < _REL.size:
            raise ElfFormatError(f"relocation entries of {entsize} bytes")
        data = self.data()
        for off in range(0, len(data) - entsize + 1, entsize):
            offset, info = _REL.unpack_from(data, off)
            yield {"r_offset": offset, "r_info": info, "r_info_sym": info >> 32, "r_info_type": info & 0xFFFFFFFF}


class ElfFile:
    """The file's header (``header["e_machine"]``), ``little_endian``, ``elfclass`` and its sections.

    Only 64-bit little-endian files get their sections read; for others the header says what
    they are (the loader refuses them).
    """

    def __init__(self, data: bytes):
        if len(data) < 16 or data[:4] != b"\x7fELF":
            raise ElfFormatError("not an ELF file (bad magic)")
        ei_class, ei_data = data[4], data[5]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            raise ElfFormatError(f"bad ELF class {ei_class} or data encoding {ei_data}")
        self.elfclass = 64 if ei_class == 2 else 32
        self.little_endian = ei_data == 1
        self._data = data
        if len(data) < 20:
            raise ElfFormatError("the ELF header is truncated")
        machine, = struct.unpack_from("<H" if self.little_endian else ">H", data, 18)
        self.header = {"e_machine": MACHINES.get(machine, machine)}
        self._sections: list[Section] = []
        if self.elfclass != 64 or not self.little_endian:
            return
        if len(data) < _EHDR.size:
            raise ElfFormatError("the ELF header is truncated")
        (_, e_type, _, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize, e_phnum,
         e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(data)
        self.header.update(e_type=e_type, e_version=e_version, e_entry=e_entry, e_phoff=e_phoff, e_shoff=e_shoff,
                           e_flags=e_flags, e_ehsize=e_ehsize, e_phentsize=e_phentsize, e_phnum=e_phnum,
                           e_shentsize=e_shentsize, e_shnum=e_shnum, e_shstrndx=e_shstrndx)
        if e_shnum and e_shentsize < _SHDR.size:
            raise ElfFormatError(f"section headers of {e_shentsize} bytes")
        headers = []
        for i in range(e_shnum):
            at = e_shoff + i * e_shentsize
            if at + _SHDR.size > len(data):
                raise ElfFormatError(f"section header {i} lies past the end of the file")
            (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign,
             sh_entsize) = _SHDR.unpack_from(data, at)
            headers.append({"sh_name": sh_name, "sh_type": SECTION_TYPES.get(sh_type, sh_type), "sh_flags": sh_flags,
                            "sh_addr": sh_addr, "sh_offset": sh_offset, "sh_size": sh_size, "sh_link": sh_link,
                            "sh_info": sh_info, "sh_addralign": sh_addralign, "sh_entsize": sh_entsize})
        if e_shnum and not 0 <= e_shstrndx < e_shnum:
            raise ElfFormatError(f"section name table index {e_shstrndx} of {e_shnum} sections")
        names = b""
        if e_shnum:
            h = headers[e_shstrndx]
            names = data[h["sh_offset"]:h["sh_offset"] + h["sh_size"]]
        for i, h in enumerate(headers):
            name = _cstring(names, h["sh_name"])
            kind = h["sh_type"]
            if kind in ("SHT_SYMTAB", "SHT_DYNSYM"):
                s = SymbolTableSection(name, h, data, i)
                link = h["sh_link"]
                if not 0 <= link < len(headers):
                    raise ElfFormatError(f"symbol table {name} links to section {link}, which does not exist")
                lh = headers[link]
                s.strtab = data[lh["sh_offset"]:lh["sh_offset"] + lh["sh_size"]]
            elif kind in ("SHT_REL", "SHT_RELA"):
                s = RelocationSection(name, h, data, i)
            else:
                s = Section(name, h, data, i)
            self._sections.append(s)
        self._by_name = {s.name: s for s in self._sections}  # the last of a name, as pyelftools

    def iter_sections(self):
        return iter(self._sections)

    def get_section_by_name(self, name: str) -> Section | None:
        return self._by_name.get(name)


__all__ = ["ElfFile", "ElfFormatError", "Section", "SymbolTableSection", "RelocationSection"]

"""The NFP-32 firmware image: an ELF64 container for JIT output, written and read here.

An :class:`Image` is what the JIT produces and the simulator (or a real
loader) consumes: the 64-bit code words, the map table, initial data of
global-data maps, metadata, a line table back to the eBPF program, symbols
and load-time relocations.  :meth:`Image.to_bytes` writes a small ELF64
file with our own struct packing; :meth:`Image.from_bytes` reads it back
with strict bounds checks, so a truncated, corrupt, other-version or
other-ISA file is one :class:`~nfpjit.errors.ImageError`, never a crash.
pyelftools, ``readelf -a`` and ``llvm-readelf -a`` read the files as well.

ELF layout (little-endian, ``ET_REL``, ``e_machine`` = EM_NFP (250),
``e_flags`` = image format version)::

    .text        code words, u64 little-endian; symbol values are byte offsets (8 * address)
    .nfp.maps    per map: u32 id, type, key size, value size, max entries, flags, name (.strtab offset)
    .nfp.data    per global-data map: u32 name offset, u32 length, bytes
    .nfp.meta    metadata (see _META below), then one u32 .strtab offset per pass run
    .nfp.lines   per entry: u32 NFP address, i32 eBPF insn index, u32 file offset, u32 line, u32 col
    .symtab      subprograms (FUNC in .text), firmware routines (FUNC, undefined until relocated,
                 then absolute), maps (OBJECT, undefined until relocated, then absolute = table id)
    .strtab      names for everything above
    .rela.text   load-time relocations (types in RelocKind), r_offset = 8 * code address
    .nfp.hash    SHA-256 over every other section (name, length, bytes), checked on read
    .shstrtab    section names

Relocations are applied by :func:`relocate` with the table ids the NIC
returned for the maps and the firmware routine addresses of the port,
as the real driver does before it DMAs the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from nfpjit.errors import ImageError

from .encoding import decode, encode
from .operands import IsaError
from .table import MAX_CODE_WORDS, Op

IMAGE_FORMAT_VERSION = 1
ISA_NAME = "nfp32"
ISA_VERSION = 1
EM_NFP = 250  # e_machine of Netronome Flow Processor ELF files

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
_MAP = struct.Struct("<IIIIIII")
_DATA = struct.Struct("<II")
_META = struct.Struct("<4sHHIIIIIIII32s")
_LINE = struct.Struct("<IiIII")
_META_MAGIC = b"NFPM"

_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA = 1, 2, 3, 4
_SHF_ALLOC, _SHF_EXECINSTR, _SHF_INFO_LINK = 0x2, 0x4, 0x40
_STT_OBJECT, _STT_FUNC = 1, 2
_STB_GLOBAL = 1
_SHN_UNDEF, _SHN_ABS = 0, 0xFFF1

_SECTIONS = (".text", ".nfp.maps", ".nfp.data", ".nfp.meta", ".nfp.lines", ".symtab", ".strtab",
             ".rela.text", ".nfp.hash", ".shstrtab")


# -- values ---------------------------------------------------------------------


class ImageProgType(IntEnum):
    """Program type of the image (numbers as the kernel's BPF_PROG_TYPE_*)."""

    XDP = 6
    TC = 3  # BPF_PROG_TYPE_SCHED_CLS, direct action


class ImageMapType(IntEnum):
    """Map types an image may hold (numbers as the kernel's BPF_MAP_TYPE_*)."""

    HASH = 1
    ARRAY = 2
    PERCPU_HASH = 5     # one value per thread (the NIC's threads are its CPUs)
    PERCPU_ARRAY = 6
    LRU_HASH = 9        # a full table evicts its least recently used entry
    LRU_PERCPU_HASH = 10

    @property
    def is_hash(self) -> bool:
        return self in (ImageMapType.HASH, ImageMapType.PERCPU_HASH, ImageMapType.LRU_HASH,
                        ImageMapType.LRU_PERCPU_HASH)

    @property
    def percpu(self) -> bool:
        return self in (ImageMapType.PERCPU_HASH, ImageMapType.PERCPU_ARRAY, ImageMapType.LRU_PERCPU_HASH)

    @property
    def lru(self) -> bool:
        return self in (ImageMapType.LRU_HASH, ImageMapType.LRU_PERCPU_HASH)


class SymbolKind(IntEnum):
    SUBPROG = 0   # code in .text: entry point or BPF-to-BPF callee
    ROUTINE = 1   # firmware routine; address known after relocation
    MAP = 2       # a map; address = its table id, known after relocation


class RelocKind(IntEnum):
    """What a relocation patches (stored as the ELF relocation type)."""

    MAP_ID = 1         # imm field of an IMMED: the map's table id (+ addend)
    ROUTINE_ADDR = 2   # target field of a BR/LOAD_ADDR: the firmware routine address (+ addend)


@dataclass(frozen=True)
class ImageMap:
    """A map the program uses; ``id`` is its index in the image (the table id comes at load time)."""

    id: int
    name: str
    type: ImageMapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


@dataclass(frozen=True)
class ImageData:
    """Initial contents of a global-data map (an ARRAY with one entry)."""

    map: str
    data: bytes


@dataclass(frozen=True)
class Metadata:
    """What a loader checks before accepting the image, and where it came from."""

    prog_type: ImageProgType = ImageProgType.XDP
    entry: int = 0
    stack_size: int = 0
    profile: str = "default"
    source_tag: bytes = bytes(32)          # SHA-256 of the eBPF instruction bytes (program_tag())
    passes: tuple[str, ...] = ()
    nfpjit_version: str = ""
    name: str = ""
    isa: str = ISA_NAME
    isa_version: int = ISA_VERSION


@dataclass(frozen=True)
class LineEntry:
    """NFP address -> eBPF instruction index -> source location (file "" when unknown)."""

    address: int
    insn_index: int
    file: str = ""
    line: int = 0
    col: int = 0

    def source(self) -> str | None:
        return f"{self.file}:{self.line}:{self.col}" if self.file else None


@dataclass(frozen=True)
class Symbol:
    """A named code range (SUBPROG: address/size in words), firmware routine or map."""

    name: str
    kind: SymbolKind
    address: int = 0
    size: int = 0


@dataclass(frozen=True)
class Relocation:
    """Patch the word at code ``address`` with the load-time value of ``symbol`` (+ ``addend``)."""

    address: int
    kind: RelocKind
    symbol: str
    addend: int = 0


@dataclass(frozen=True)
class Image:
    code: tuple[int, ...]
    maps: tuple[ImageMap, ...] = ()
    metadata: Metadata = Metadata()
    line_table: tuple[LineEntry, ...] = ()
    symbols: tuple[Symbol, ...] = ()
    relocations: tuple[Relocation, ...] = ()
    data: tuple[ImageData, ...] = ()

    def __post_init__(self) -> None:
        # Accept any sequence but store tuples: images are values (hashable, cached by the simulator).
        for name in ("code", "maps", "line_table", "symbols", "relocations", "data"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def to_bytes(self) -> bytes:
        """The ELF64 file; raises :class:`ImageError` when a value cannot be represented."""
        _validate(self, "<image>")
        try:
            return _write(self)
        except (struct.error, TypeError, ValueError, AttributeError) as exc:
            raise ImageError(f"a value cannot be written: {exc}", where="<image>",
                             hint="names are text without NUL, numbers fit their fields") from None

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "<image>") -> "Image":
        """Parse and check an image file; every problem is an :class:`ImageError`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageError(f"image must be bytes, not {type(data).__name__}", where=where)
        image = _read(bytes(data), where)
        _validate(image, where)
        return image

    def line_for(self, address: int) -> LineEntry | None:
        """The line-table entry covering ``address`` (the last entry at or before it)."""
        best = None
        for entry in self.line_table:
            if entry.address <= address and (best is None or entry.address >= best.address):
                best = entry
        return best

    def symbol(self, name: str) -> Symbol | None:
        for s in self.symbols:
            if s.name == name:
                return s
        return None


def program_tag(insn_bytes: bytes) -> bytes:
    """The source program tag stored in the metadata: SHA-256 of the eBPF instruction bytes."""
    return hashlib.sha256(bytes(insn_bytes)).digest()


def read_image(path) -> Image:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image: {exc.strerror}", where=str(path)) from None
    return Image.from_bytes(data, where=str(path))


def write_image(path, image: Image) -> None:
    data = image.to_bytes()
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise ImageError(f"cannot write image: {exc.strerror}", where=str(path)) from None


# -- validation -------------------------------------------------------------------


def _u32(value, what: str, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF_FFFF:
        raise ImageError(f"{what} {value!r} is not a 32-bit unsigned number", where=where)


def _validate(image: Image, where: str) -> None:
    """Check the cross-references of an image (shared by the writer and the reader)."""
    ncode = len(image.code)
    if ncode > MAX_CODE_WORDS:
        raise ImageError(f"{ncode} code words exceed the {MAX_CODE_WORDS}-word instruction store", where=where)
    for i, w in enumerate(image.code):
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < 1 << 64:
            raise ImageError(f"code word {i} is not a 64-bit unsigned number: {w!r}", where=where)
    md = image.metadata
    try:
        ImageProgType(md.prog_type)
    except ValueError:
        raise ImageError(f"unknown program type {md.prog_type!r}", where=f"{where}: .nfp.meta") from None
    if ncode and not 0 <= md.entry < ncode:
        raise ImageError(f"entry point {md.entry} outside the code (0..{ncode - 1})", where=f"{where}: .nfp.meta")
    _u32(md.stack_size, "stack size", where)
    if not isinstance(md.source_tag, bytes) or len(md.source_tag) != 32:
        raise ImageError("source tag must be 32 bytes (SHA-256)", where=f"{where}: .nfp.meta")
    names = set()
    for m in image.maps:
        try:
            ImageMapType(m.type)
        except ValueError:
            raise ImageError(f"map {m.name!r}: unsupported map type {m.type!r}", where=f"{where}: .nfp.maps",
                             hint="the NIC firmware holds HASH and ARRAY maps only") from None
        for what in ("id", "key_size", "value_size", "max_entries", "flags"):
            _u32(getattr(m, what), f"map {m.name!r} {what}", f"{where}: .nfp.maps")
        if m.name in names:
            raise ImageError(f"map {m.name!r} appears twice", where=f"{where}: .nfp.maps")
        names.add(m.name)
    for d in image.data:
        if d.map not in names:
            raise ImageError(f"initial data for unknown map {d.map!r}", where=f"{where}: .nfp.data")
    for e in image.line_table:
        _u32(e.address, "line-table address", where)
        if ncode and e.address >= ncode:
            raise ImageError(f"line-table address {e.address} outside the code", where=f"{where}: .nfp.lines")
    symbols = {}
    for s in image.symbols:
        try:
            SymbolKind(s.kind)
        except ValueError:
            raise ImageError(f"symbol {s.name!r}: unknown kind {s.kind!r}", where=f"{where}: .symtab") from None
        if not s.name or s.name in symbols:
            raise ImageError(f"symbol name {s.name!r} empty or duplicated", where=f"{where}: .symtab")
        _u32(s.address, f"symbol {s.name!r} address", where)
        _u32(s.size, f"symbol {s.name!r} size", where)
        if s.kind == SymbolKind.SUBPROG and s.address + s.size > ncode:
            raise ImageError(f"subprogram {s.name!r} outside the code", where=f"{where}: .symtab")
        symbols[s.name] = s
    for r in image.relocations:
        try:
            kind = RelocKind(r.kind)
        except ValueError:
            raise ImageError(f"unknown relocation type {r.kind!r}", where=f"{where}: .rela.text") from None
        if not 0 <= r.address < ncode:
            raise ImageError(f"relocation at {r.address} outside the code", where=f"{where}: .rela.text")
        s = symbols.get(r.symbol)
        want = SymbolKind.MAP if kind == RelocKind.MAP_ID else SymbolKind.ROUTINE
        if s is None or s.kind != want:
            raise ImageError(f"relocation at {r.address} names {r.symbol!r}, which is not a {want.name.lower()} symbol",
                             where=f"{where}: .rela.text")


# -- writer -------------------------------------------------------------------------


class _Strings:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        if text not in self.offsets:
            raw = text.encode()
            if b"\0" in raw:
                raise ImageError(f"name {text!r} contains a NUL byte")
            self.offsets[text] = len(self.data)
            self.data += raw + b"\0"
        return self.offsets[text]


def _section_digest(contents: dict[str, bytes]) -> bytes:
    h = hashlib.sha256()
    for name in _SECTIONS:
        if name in (".nfp.hash",):
            continue
        body = contents[name]
        h.update(name.encode() + b"\0" + struct.pack("<Q", len(body)) + body)
    return h.digest()


def _write(image: Image) -> bytes:
    strs = _Strings()
    md = image.metadata
    text = b"".join(struct.pack("<Q", w) for w in image.code)
    maps = b"".join(_MAP.pack(m.id, int(m.type), m.key_size, m.value_size, m.max_entries, m.flags, strs.add(m.name))
                    for m in image.maps)
    data = b"".join(_DATA.pack(strs.add(d.map), len(d.data)) + bytes(d.data) for d in image.data)
    meta = _META.pack(_META_MAGIC, IMAGE_FORMAT_VERSION, md.isa_version, strs.add(md.isa), int(md.prog_type),
                      md.entry, md.stack_size, strs.add(md.profile), strs.add(md.nfpjit_version), strs.add(md.name),
                      len(md.passes), md.source_tag)
    meta += b"".join(struct.pack("<I", strs.add(p)) for p in md.passes)
    lines = b"".join(_LINE.pack(e.address, e.insn_index, strs.add(e.file), e.line, e.col) for e in image.line_table)
    text_index = 1 + _SECTIONS.index(".text")
    symtab = bytearray(_SYM.pack(0, 0, 0, 0, 0, 0))
    sym_index = {}
    for s in image.symbols:
        if s.kind == SymbolKind.SUBPROG:
            info, shndx, value, size = (_STB_GLOBAL << 4) | _STT_FUNC, text_index, 8 * s.address, 8 * s.size
        else:
            stt = _STT_FUNC if s.kind == SymbolKind.ROUTINE else _STT_OBJECT
            # Address 0 means "not yet relocated": the symbol stays undefined, as in an object file.
            info, shndx, value, size = (_STB_GLOBAL << 4) | stt, _SHN_ABS if s.address else _SHN_UNDEF, s.address, 0
        sym_index[s.name] = len(symtab) // _SYM.size
        symtab += _SYM.pack(strs.add(s.name), info, 0, shndx, value, size)
    rela = b"".join(_RELA.pack(8 * r.address, (sym_index[r.symbol] << 32) | int(r.kind), r.addend)
                    for r in image.relocations)
    contents = {".text": text, ".nfp.maps": maps, ".nfp.data": data, ".nfp.meta": meta, ".nfp.lines": lines,
                ".symtab": bytes(symtab), ".strtab": bytes(strs.data), ".rela.text": rela}
    shstr = _Strings()
    for name in _SECTIONS:
        shstr.add(name)
    contents[".shstrtab"] = bytes(shstr.data)
    contents[".nfp.hash"] = b""
    contents[".nfp.hash"] = _section_digest(contents)

    out = bytearray(_ELF_HEADER.size)
    headers = [_SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    idx = {name: i + 1 for i, name in enumerate(_SECTIONS)}
    for name in _SECTIONS:
        while len(out) % 8:
            out.append(0)
        body = contents[name]
        offset = len(out)
        out += body
        sh_type, flags, link, info, entsize = _SHT_PROGBITS, 0, 0, 0, 0
        if name == ".text":
            flags, entsize = _SHF_ALLOC | _SHF_EXECINSTR, 8
        elif name == ".symtab":
            sh_type, link, info, entsize = _SHT_SYMTAB, idx[".strtab"], 1, _SYM.size
        elif name in (".strtab", ".shstrtab"):
            sh_type = _SHT_STRTAB
        elif name == ".rela.text":
            sh_type, flags, link, info, entsize = _SHT_RELA, _SHF_INFO_LINK, idx[".symtab"], idx[".text"], _RELA.size
        headers.append(_SHDR.pack(shstr.offsets[name], sh_type, flags, 0, offset, len(body), link, info, 8, entsize))
    while len(out) % 8:
        out.append(0)
    shoff = len(out)
    for h in headers:
        out += h
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)
    out[:_ELF_HEADER.size] = _ELF_HEADER.pack(ident, 1, EM_NFP, 1, 0, 0, shoff, IMAGE_FORMAT_VERSION,
                                              _ELF_HEADER.size, 0, 0, _SHDR.size, len(headers),
                                              idx[".shstrtab"])
    return bytes(out)


# -- reader -------------------------------------------------------------------------


def _unpack(st: struct.Struct, data: bytes, offset: int, what: str, where: str) -> tuple:
    if offset < 0 or offset + st.size > len(data):
        raise ImageError(f"{what} is truncated", where=where, hint="the file is cut short or corrupt")
    return st.unpack_from(data, offset)


def _cstr(table: bytes, offset: int, what: str, where: str) -> str:
    if not 0 <= offset < len(table):
        raise ImageError(f"{what}: string offset {offset} outside the string table", where=where)
    end = table.find(b"\0", offset)
    if end < 0:
        raise ImageError(f"{what}: unterminated string", where=where)
    try:
        return table[offset:end].decode()
    except UnicodeDecodeError:
        raise ImageError(f"{what}: name is not UTF-8", where=where) from None


def _records(body: bytes, st: struct.Struct, section: str, where: str):
    if len(body) % st.size:
        raise ImageError(f"size {len(body)} is not a multiple of its {st.size}-byte records",
                         where=f"{where}: {section}")
    return [st.unpack_from(body, i) for i in range(0, len(body), st.size)]


def _read(data: bytes, where: str) -> Image:
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise ImageError("not an NFP-32 image (no ELF magic)", where=where)
    (ident, e_type, machine, _ver, _entry, _phoff, shoff, flags, _ehsize, _phentsize, _phnum, shentsize, shnum,
     shstrndx) = _unpack(_ELF_HEADER, data, 0, "ELF header", where)
    if ident[4] != 2 or ident[5] != 1:
        raise ImageError("not an ELF64 little-endian file", where=where, hint="NFP-32 images are ELF64 LSB")
    if machine != EM_NFP:
        raise ImageError(f"image is for another ISA (e_machine {machine}, expected {EM_NFP} NFP)", where=where)
    if flags != IMAGE_FORMAT_VERSION:
        raise ImageError(f"image format version {flags} is not supported (this nfpjit reads version "
                         f"{IMAGE_FORMAT_VERSION})", where=where, hint="rebuild the image with this nfpjit")
    if shentsize != _SHDR.size or not 0 < shnum <= 64 or not 0 <= shstrndx < shnum:
        raise ImageError("bad section header table", where=where)
    headers = [_unpack(_SHDR, data, shoff + i * _SHDR.size, "section header table", where) for i in range(shnum)]
    bodies = []
    for i, h in enumerate(headers):
        offset, size = h[4], h[5]
        if offset + size > len(data):
            raise ImageError(f"section {i} extends past the end of the file", where=where,
                             hint="the file is truncated")
        bodies.append(data[offset:offset + size])
    shstr = bodies[shstrndx]
    contents: dict[str, bytes] = {}
    for i, h in enumerate(headers[1:], 1):
        name = _cstr(shstr, h[0], f"section {i} name", where)
        if name in contents:
            raise ImageError(f"section {name} appears twice", where=where)
        contents[name] = bodies[i]
    missing = [n for n in _SECTIONS if n not in contents]
    if missing:
        raise ImageError(f"missing section(s) {', '.join(missing)}", where=where)
    if _section_digest(contents) != contents[".nfp.hash"]:
        raise ImageError("integrity hash mismatch: the image is corrupt", where=f"{where}: .nfp.hash",
                         hint="rebuild or re-copy the image")
    strtab = contents[".strtab"]

    def s(offset: int, what: str, section: str) -> str:
        return _cstr(strtab, offset, what, f"{where}: {section}")

    text = contents[".text"]
    if len(text) % 8:
        raise ImageError("code size is not a multiple of 8 bytes", where=f"{where}: .text")
    code = struct.unpack(f"<{len(text) // 8}Q", text)

    meta = contents[".nfp.meta"]
    (magic, version, isa_version, isa_off, prog_type, entry, stack, profile_off, ver_off, name_off, npasses,
     tag) = _unpack(_META, meta, 0, "metadata", f"{where}: .nfp.meta")
    if magic != _META_MAGIC:
        raise ImageError("bad metadata magic", where=f"{where}: .nfp.meta")
    if version != IMAGE_FORMAT_VERSION:
        raise ImageError(f"metadata format version {version} is not supported", where=f"{where}: .nfp.meta",
                         hint="rebuild the image with this nfpjit")
    isa = s(isa_off, "ISA name", ".nfp.meta")
    if isa != ISA_NAME or isa_version != ISA_VERSION:
        raise ImageError(f"image is for ISA {isa!r} version {isa_version}, not {ISA_NAME!r} version {ISA_VERSION}",
                         where=f"{where}: .nfp.meta")
    if len(meta) != _META.size + 4 * npasses:
        raise ImageError("metadata size does not match its pass count", where=f"{where}: .nfp.meta")
    passes = tuple(s(struct.unpack_from("<I", meta, _META.size + 4 * i)[0], "pass name", ".nfp.meta")
                   for i in range(npasses))
    try:
        ptype = ImageProgType(prog_type)
    except ValueError:
        raise ImageError(f"unknown program type {prog_type}", where=f"{where}: .nfp.meta") from None
    metadata = Metadata(prog_type=ptype, entry=entry, stack_size=stack, profile=s(profile_off, "profile", ".nfp.meta"),
                        source_tag=tag, passes=passes, nfpjit_version=s(ver_off, "version", ".nfp.meta"),
                        name=s(name_off, "program name", ".nfp.meta"), isa=isa, isa_version=isa_version)

    maps = []
    for (mid, mtype, ks, vs, me, mflags, moff) in _records(contents[".nfp.maps"], _MAP, ".nfp.maps", where):
        try:
            t = ImageMapType(mtype)
        except ValueError:
            raise ImageError(f"unsupported map type {mtype}", where=f"{where}: .nfp.maps") from None
        maps.append(ImageMap(mid, s(moff, "map name", ".nfp.maps"), t, ks, vs, me, mflags))

    init = []
    body, pos = contents[".nfp.data"], 0
    while pos < len(body):
        noff, length = _unpack(_DATA, body, pos, "data record", f"{where}: .nfp.data")
        pos += _DATA.size
        if pos + length > len(body):
            raise ImageError("data record is truncated", where=f"{where}: .nfp.data")
        init.append(ImageData(s(noff, "data map name", ".nfp.data"), body[pos:pos + length]))
        pos += length

    lines = tuple(LineEntry(a, idx, s(foff, "file name", ".nfp.lines"), ln, col)
                  for (a, idx, foff, ln, col) in _records(contents[".nfp.lines"], _LINE, ".nfp.lines", where))

    text_index = 1 + [n for n in contents].index(".text")
    symbols = []
    names_by_index: dict[int, str] = {}
    for i, (noff, info, _other, shndx, value, size) in enumerate(_records(contents[".symtab"], _SYM, ".symtab", where)):
        if i == 0:
            continue
        name = s(noff, "symbol name", ".symtab")
        stt = info & 0xF
        if stt == _STT_FUNC and shndx == text_index:
            if value % 8 or size % 8:
                raise ImageError(f"symbol {name!r} is not word-aligned", where=f"{where}: .symtab")
            sym = Symbol(name, SymbolKind.SUBPROG, value // 8, size // 8)
        elif stt in (_STT_FUNC, _STT_OBJECT) and shndx in (_SHN_UNDEF, _SHN_ABS):
            if value > 0xFFFF_FFFF:
                raise ImageError(f"symbol {name!r} value out of range", where=f"{where}: .symtab")
            sym = Symbol(name, SymbolKind.ROUTINE if stt == _STT_FUNC else SymbolKind.MAP, value, 0)
        else:
            raise ImageError(f"symbol {name!r} has an unexpected type/section", where=f"{where}: .symtab")
        names_by_index[i] = name
        symbols.append(sym)

    relocs = []
    for (offset, info, addend) in _records(contents[".rela.text"], _RELA, ".rela.text", where):
        name = names_by_index.get(info >> 32)
        if name is None or offset % 8:
            raise ImageError(f"relocation at byte {offset} is malformed", where=f"{where}: .rela.text")
        try:
            kind = RelocKind(info & 0xFFFF_FFFF)
        except ValueError:
            raise ImageError(f"unknown relocation type {info & 0xFFFF_FFFF}", where=f"{where}: .rela.text") from None
        relocs.append(Relocation(offset // 8, kind, name, addend))

    return Image(code=code, maps=tuple(maps), metadata=metadata, line_table=lines, symbols=tuple(symbols),
                 relocations=tuple(relocs), data=tuple(init))


# -- loading ------------------------------------------------------------------------


def relocate(image: Image, map_table_ids: dict[str, int], routine_addresses: dict[str, int]) -> Image:
    """Apply every relocation; the result has none left and its MAP/ROUTINE symbols carry the values.

    ``map_table_ids`` maps map names to the table ids the NIC returned,
    ``routine_addresses`` firmware routine names to code addresses of this port.
    """
    code = list(image.code)
    values: dict[str, int] = {}
    for r in image.relocations:
        table = map_table_ids if r.kind == RelocKind.MAP_ID else routine_addresses
        what = "map" if r.kind == RelocKind.MAP_ID else "firmware routine"
        if r.symbol not in table:
            raise ImageError(f"no load-time value for {what} {r.symbol!r}", where=f"relocation at {r.address}",
                             hint=f"pass it in {'map_table_ids' if what == 'map' else 'routine_addresses'}")
        value = table[r.symbol] + r.addend
        values[r.symbol] = table[r.symbol]
        try:
            instr = decode(code[r.address])
            if r.kind == RelocKind.MAP_ID:
                if instr.op != Op.IMMED or not 0 <= value <= 0xFFFF:
                    raise ImageError(f"map id {value} does not fit the immed at {r.address}",
                                     where=f"relocation at {r.address}")
                instr = dataclasses.replace(instr, imm=value)
            else:
                if instr.op not in (Op.BR, Op.LOAD_ADDR) or not 0 <= value < MAX_CODE_WORDS:
                    raise ImageError(f"routine address {value} does not fit the instruction at {r.address}",
                                     where=f"relocation at {r.address}")
                instr = dataclasses.replace(instr, target=value)
            code[r.address] = encode(instr)
        except IsaError as exc:
            raise ImageError(f"cannot patch the word at {r.address}: {exc.message}",
                             where=f"relocation at {r.address}") from None
    symbols = tuple(dataclasses.replace(s, address=values[s.name]) if s.name in values else s for s in image.symbols)
    return dataclasses.replace(image, code=tuple(code), symbols=symbols, relocations=())


def image_from_asm(result, *, name: str = "", profile: str = "default", source_tag: bytes = bytes(32),
                   passes: tuple[str, ...] = ()) -> Image:
    """An image from an :class:`~nfpjit.isa.asm.AsmResult` (maps numbered in declaration order)."""
    from nfpjit import __version__

    types = {"hash": ImageMapType.HASH, "array": ImageMapType.ARRAY}
    maps = []
    for m in result.maps:
        if m.type not in types:
            raise ImageError(f"map {m.name!r}: type {m.type} is not held by the NIC", where=result.filename,
                             hint="use hash or array")
        maps.append(ImageMap(m.index, m.name, types[m.type], m.key_size, m.value_size, m.max_entries, m.flags))
    lines = tuple(LineEntry(addr, -1, result.filename, line, 1) for addr, line in enumerate(result.lines))
    md = Metadata(prog_type=ImageProgType.TC if result.prog_type == "tc" else ImageProgType.XDP, entry=result.entry,
                  stack_size=result.stack_size, profile=profile, source_tag=source_tag, passes=tuple(passes),
                  nfpjit_version=__version__, name=name)
    # A .data block initialises the first value of the map of the same name (a global-data map,
    # declared as an array with one entry); blocks without such a map are not part of the image.
    names = {m.name for m in maps}
    data = tuple(ImageData(d.name, d.data) for d in result.data if d.name in names)
    return Image(code=tuple(result.words), maps=tuple(maps), metadata=md, line_table=lines, data=data)

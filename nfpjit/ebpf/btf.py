"""BTF and .BTF.ext: the type and debug information clang emits for BPF objects.

``.BTF`` describes types (ints, pointers, arrays, structs, variables and the
data sections that hold them) and carries a string table; the ELF front end
reads map definitions from it (the ``__uint``/``__type`` convention encodes a
map attribute as a struct member that points to an array whose length is the
value).  ``.BTF.ext`` ties instruction offsets to functions and source lines.

Everything here parses untrusted bytes: every offset and length is checked and
any inconsistency raises :class:`~nfpjit.errors.LoadError`.  Only
little-endian BTF (what ``-target bpf`` on x86/arm64 hosts produces) is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from nfpjit.errors import LoadError

BTF_MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("<III")  # name_off, info, size/type
_EXT_HDR = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, func_off, func_len, line_off, line_len
_MAX_CHAIN = 64  # typedef/const/volatile chains longer than this are treated as a cycle


class BtfKind(IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


_MODIFIERS = frozenset({BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG})
# Kinds whose third word is a size (the others refer to a type id there).
_SIZED = frozenset({BtfKind.INT, BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM, BtfKind.DATASEC,
                    BtfKind.FLOAT, BtfKind.ENUM64})


@dataclass(frozen=True)
class BtfMember:
    """A struct/union member (``offset`` in bits), a function parameter (offset 0) or an enum value."""

    name: str
    type: int
    offset: int = 0


@dataclass(frozen=True)
class BtfVarSecInfo:
    """One variable of a DATASEC: its VAR type id, byte offset and size."""

    type: int
    offset: int
    size: int


@dataclass(frozen=True)
class BtfType:
    id: int
    kind: BtfKind
    name: str
    size: int = 0  # for sized kinds
    ref: int = 0  # referenced type id for PTR, TYPEDEF, modifiers, FUNC, VAR, FUNC_PROTO (return type)
    kind_flag: bool = False
    members: tuple[BtfMember, ...] = ()  # STRUCT/UNION members, FUNC_PROTO params, ENUM values
    array: tuple[int, int, int] | None = None  # (elem type, index type, nelems)
    vars: tuple[BtfVarSecInfo, ...] = ()  # DATASEC
    linkage: int = 0  # VAR linkage, FUNC linkage (vlen)


class Btf:
    """A parsed ``.BTF`` section: ``types[id]`` (id 0 is void) and the string table."""

    def __init__(self, types: list[BtfType], strings: bytes, where: str):
        self.types = types
        self.strings = strings
        self.where = where

    def __len__(self) -> int:
        return len(self.types)

    def type(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self.types):
            raise LoadError(f"BTF type id {type_id} is out of range (have {len(self.types)})", where=self.where)
        return self.types[type_id]

    def string(self, off: int) -> str:
        return btf_string(self.strings, off, self.where)

    def resolve(self, type_id: int) -> BtfType:
        """Follow typedefs and qualifiers to the underlying type."""
        t = self.type(type_id)
        for _ in range(_MAX_CHAIN):
            if t.kind not in _MODIFIERS:
                return t
            t = self.type(t.ref)
        raise LoadError(f"BTF type {type_id}: typedef/qualifier chain is too long or cyclic", where=self.where)

    def size_of(self, type_id: int, _depth: int = 0) -> int:
        """The size in bytes of a type, as the kernel computes it."""
        if _depth > _MAX_CHAIN:
            raise LoadError(f"BTF type {type_id}: type nesting is too deep or cyclic", where=self.where)
        t = self.resolve(type_id)
        if t.kind == BtfKind.PTR:
            return 8
        if t.kind == BtfKind.ARRAY:
            assert t.array is not None
            return t.array[2] * self.size_of(t.array[0], _depth + 1)
        if t.kind == BtfKind.VAR:
            return self.size_of(t.ref, _depth + 1)
        if t.kind in _SIZED:
            return t.size
        raise LoadError(f"BTF type {type_id} ({t.kind.name}) has no size", where=self.where)

    def find(self, name: str, kind: BtfKind) -> BtfType | None:
        for t in self.types:
            if t.kind == kind and t.name == name:
                return t
        return None

    def datasec(self, name: str) -> BtfType | None:
        return self.find(name, BtfKind.DATASEC)

    def map_values(self, var_type_id: int) -> tuple[int, int] | None:
        """``__array(values, T)`` of a BTF-defined map: (type id T points to, byte offset of the member), or None.

        For map-in-map T is the inner map's definition struct (libbpf's inner-map template);
        for prog arrays it is a function prototype.
        """
        t = self.resolve(var_type_id)
        if t.kind == BtfKind.VAR:
            t = self.resolve(t.ref)
        if t.kind != BtfKind.STRUCT:
            return None
        for m in t.members:
            mt = self.resolve(m.type)
            if m.name == "values" and mt.kind == BtfKind.ARRAY and mt.array is not None:
                elem = self.resolve(mt.array[0])
                if elem.kind != BtfKind.PTR:
                    raise LoadError("map attribute 'values' is not an array of pointers", where=self.where,
                                    hint="use __array(values, struct inner_map_def) or __array(values, int (void *))")
                if m.offset % 8:
                    raise LoadError("map attribute 'values' is not byte-aligned", where=self.where)
                return self.resolve(elem.ref).id, m.offset // 8
        return None

    def map_attrs(self, var_type_id: int) -> dict[str, int]:
        """Decode a BTF-defined map (the VAR's struct) into ``{"type", "key_size", "value_size", ...}``.

        ``__uint(name, N)`` is a member pointing to ``int[N]``; ``__type(name, T)``
        is a member pointing to ``T`` (its size becomes ``name_size``).
        """
        t = self.resolve(var_type_id)
        if t.kind == BtfKind.VAR:
            t = self.resolve(t.ref)
        if t.kind != BtfKind.STRUCT:
            raise LoadError(f"map definition is a {t.kind.name}, not a struct", where=self.where,
                            hint="declare maps as struct { __uint(type, ...); ... } name SEC(\".maps\")")
        attrs: dict[str, int] = {}
        for m in t.members:
            mt = self.resolve(m.type)
            if mt.kind == BtfKind.ARRAY and m.name == "values":
                continue  # __array(values, ...): initial prog/map-in-map slots, not needed here
            if mt.kind != BtfKind.PTR:
                raise LoadError(f"map attribute {m.name!r} is a {mt.kind.name}, not a pointer", where=self.where,
                                hint="use the __uint/__type macros")
            if m.name in ("key", "value"):
                attrs[m.name + "_size"] = self.size_of(mt.ref)
                continue
            target = self.resolve(mt.ref)
            if target.kind != BtfKind.ARRAY or target.array is None:
                raise LoadError(f"map attribute {m.name!r} does not point to an array", where=self.where,
                                hint="__uint(name, value) encodes value as int (*name)[value]")
            attrs[m.name] = target.array[2]
        return attrs


def btf_string(strings: bytes, off: int, where: str) -> str:
    if not 0 <= off < len(strings):
        raise LoadError(f"BTF string offset {off} is outside the string table ({len(strings)} bytes)", where=where)
    end = strings.find(b"\0", off)
    if end < 0:
        raise LoadError(f"BTF string at {off} is not NUL-terminated", where=where)
    try:
        return strings[off:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"BTF string at {off} is not UTF-8", where=where) from exc


def _header_slices(data: bytes, where: str, what: str) -> tuple[int, tuple[int, ...]]:
    if len(data) < _HDR.size:
        raise LoadError(f"{what} is truncated ({len(data)} bytes, header needs {_HDR.size})", where=where)
    magic, version, _flags, hdr_len, *rest = _HDR.unpack_from(data)
    if magic != BTF_MAGIC:
        hint = "big-endian BTF is not supported" if magic == 0x9FEB else None
        raise LoadError(f"{what} has bad magic 0x{magic:04x} (want 0x{BTF_MAGIC:04x})", where=where, hint=hint)
    if version != 1:
        raise LoadError(f"{what} version {version} is not supported (want 1)", where=where)
    if hdr_len < _HDR.size or hdr_len > len(data):
        raise LoadError(f"{what} header length {hdr_len} is invalid", where=where)
    return hdr_len, tuple(rest)


def _region(data: bytes, base: int, off: int, length: int, where: str, what: str) -> bytes:
    start, end = base + off, base + off + length
    if end > len(data):
        raise LoadError(f"{what} at {off}+{length} runs past the end of the section ({len(data) - base} bytes)",
                        where=where)
    return data[start:end]


def parse_btf(data: bytes, *, where: str = ".BTF") -> Btf:
    """Parse a ``.BTF`` section."""
    hdr_len, (type_off, type_len, str_off, str_len) = _header_slices(data, where, "BTF")
    type_data = _region(data, hdr_len, type_off, type_len, where, "BTF type data")
    strings = _region(data, hdr_len, str_off, str_len, where, "BTF string table")
    if strings and strings[0] != 0:
        raise LoadError("BTF string table does not start with an empty string", where=where)
    types: list[BtfType] = [BtfType(0, BtfKind.UNKN, "")]
    pos = 0
    u32 = struct.Struct("<I")
    while pos < len(type_data):
        tid = len(types)
        here = f"{where}: type {tid}"
        if pos + _TYPE.size > len(type_data):
            raise LoadError("type record is truncated", where=here)
        name_off, info, size_or_type = _TYPE.unpack_from(type_data, pos)
        pos += _TYPE.size
        vlen, kind_no, kflag = info & 0xFFFF, (info >> 24) & 0x1F, bool(info >> 31)
        if kind_no not in BtfKind._value2member_map_ or kind_no == 0:
            raise LoadError(f"unknown BTF kind {kind_no}", where=here)
        kind = BtfKind(kind_no)
        name = btf_string(strings, name_off, here)

        def take(fmt: struct.Struct, count: int = 1) -> list[tuple]:
            nonlocal pos
            need = fmt.size * count
            if pos + need > len(type_data):
                raise LoadError(f"{kind.name} record is truncated", where=here)
            out = [fmt.unpack_from(type_data, pos + i * fmt.size) for i in range(count)]
            pos += need
            return out

        fields: dict = {"size": size_or_type} if kind in _SIZED else {"ref": size_or_type}
        if kind == BtfKind.INT:
            take(u32)
        elif kind == BtfKind.ARRAY:
            (arr,) = take(struct.Struct("<III"))
            fields["array"] = arr
        elif kind in (BtfKind.STRUCT, BtfKind.UNION):
            fields["members"] = tuple(BtfMember(btf_string(strings, n, here), t, o)
                                      for n, t, o in take(struct.Struct("<III"), vlen))
        elif kind == BtfKind.ENUM:
            fields["members"] = tuple(BtfMember(btf_string(strings, n, here), 0, v)
                                      for n, v in take(struct.Struct("<Ii"), vlen))
        elif kind == BtfKind.ENUM64:
            fields["members"] = tuple(BtfMember(btf_string(strings, n, here), 0, lo | (hi << 32))
                                      for n, lo, hi in take(struct.Struct("<III"), vlen))
        elif kind == BtfKind.FUNC_PROTO:
            fields["members"] = tuple(BtfMember(btf_string(strings, n, here), t)
                                      for n, t in take(struct.Struct("<II"), vlen))
        elif kind == BtfKind.VAR:
            ((fields["linkage"],),) = take(u32)
        elif kind == BtfKind.DATASEC:
            fields["vars"] = tuple(BtfVarSecInfo(*v) for v in take(struct.Struct("<III"), vlen))
        elif kind == BtfKind.DECL_TAG:
            take(u32)
        elif kind == BtfKind.FUNC:
            fields["linkage"] = vlen
        types.append(BtfType(tid, kind, name, kind_flag=kflag, **fields))
    btf = Btf(types, strings, where)
    _check_refs(btf)
    return btf


def _check_refs(btf: Btf) -> None:
    """Every type id a record mentions must exist, so later look-ups cannot fail halfway."""
    n = len(btf.types)
    for t in btf.types[1:]:
        refs = []
        if t.kind not in _SIZED and t.kind != BtfKind.FWD:
            refs.append(t.ref)
        if t.array:
            refs += t.array[:2]
        if t.kind in (BtfKind.STRUCT, BtfKind.UNION, BtfKind.FUNC_PROTO):
            refs += [m.type for m in t.members]
        refs += [v.type for v in t.vars]
        for r in refs:
            if not 0 <= r < n:
                raise LoadError(f"type {t.id} ({t.kind.name}) refers to missing type {r}", where=btf.where)


@dataclass(frozen=True)
class LineInfo:
    """One ``.BTF.ext`` line record; ``insn_off`` is a byte offset in the ELF section."""

    insn_off: int
    file: str
    line: int
    col: int
    text: str


@dataclass(frozen=True)
class FuncInfo:
    insn_off: int
    type_id: int
    name: str


@dataclass(frozen=True)
class BtfExt:
    """``.BTF.ext`` grouped by ELF section name."""

    func_info: dict[str, tuple[FuncInfo, ...]]
    line_info: dict[str, tuple[LineInfo, ...]]


def _ext_records(blob: bytes, min_rec: int, where: str, what: str, strings: bytes):
    """Yield ``(section name, record bytes...)`` from a func_info/line_info block."""
    if not blob:
        return
    if len(blob) < 4:
        raise LoadError(f"{what} block is truncated", where=where)
    (rec_size,) = struct.unpack_from("<I", blob)
    if rec_size < min_rec or rec_size > 1024:
        raise LoadError(f"{what} record size {rec_size} is invalid (minimum {min_rec})", where=where)
    pos = 4
    while pos < len(blob):
        if pos + 8 > len(blob):
            raise LoadError(f"{what} section header is truncated", where=where)
        sec_off, count = struct.unpack_from("<II", blob, pos)
        pos += 8
        sec = btf_string(strings, sec_off, where)
        if count == 0 or pos + count * rec_size > len(blob):
            raise LoadError(f"{what} for section {sec!r}: {count} records do not fit", where=where)
        for i in range(count):
            yield sec, blob[pos + i * rec_size: pos + (i + 1) * rec_size]
        pos += count * rec_size


def parse_btf_ext(data: bytes, btf: Btf, *, where: str = ".BTF.ext") -> BtfExt:
    """Parse ``.BTF.ext`` (func_info and line_info; CO-RE relocations are ignored)."""
    if len(data) < _EXT_HDR.size:
        raise LoadError(f"BTF.ext is truncated ({len(data)} bytes)", where=where)
    magic, version, _flags, hdr_len, func_off, func_len, line_off, line_len = _EXT_HDR.unpack_from(data)
    if magic != BTF_MAGIC:
        raise LoadError(f"BTF.ext has bad magic 0x{magic:04x}", where=where)
    if version != 1:
        raise LoadError(f"BTF.ext version {version} is not supported", where=where)
    if hdr_len < _EXT_HDR.size or hdr_len > len(data):
        raise LoadError(f"BTF.ext header length {hdr_len} is invalid", where=where)
    funcs: dict[str, list[FuncInfo]] = {}
    for sec, rec in _ext_records(_region(data, hdr_len, func_off, func_len, where, "func_info"), 8, where,
                                 "func_info", btf.strings):
        off, tid = struct.unpack_from("<II", rec)
        name = btf.type(tid).name
        funcs.setdefault(sec, []).append(FuncInfo(off, tid, name))
    lines: dict[str, list[LineInfo]] = {}
    for sec, rec in _ext_records(_region(data, hdr_len, line_off, line_len, where, "line_info"), 16, where,
                                 "line_info", btf.strings):
        off, file_off, text_off, line_col = struct.unpack_from("<IIII", rec)
        lines.setdefault(sec, []).append(LineInfo(off, btf.string(file_off), line_col >> 10, line_col & 0x3FF,
                                                  btf.string(text_off)))
    return BtfExt({k: tuple(v) for k, v in funcs.items()}, {k: tuple(v) for k, v in lines.items()})


__all__ = ["Btf", "BtfExt", "BtfKind", "BtfMember", "BtfType", "BtfVarSecInfo", "FuncInfo", "LineInfo",
           "parse_btf", "parse_btf_ext", "btf_string"]

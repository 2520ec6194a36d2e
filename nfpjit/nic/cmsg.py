"""The control-message wire format between the host and the virtual NIC (version 1).

Every message is a 12-byte little-endian header followed by ``length`` payload bytes::

    u8 version (= VERSION)   u8 type (CmsgType, | REPLY_BIT in replies)
    u16 flags (0)            u32 sequence (echoed by the reply)   u32 payload length

The map side is fixed binary (as the NFP's map control messages are); the program side
(PROG_*, NIC_STATS) carries small JSON objects.  Every reply starts with a u32 firmware
return code (:class:`FwRet`); an error reply carries only that code and a UTF-8 message, and
:data:`FW_TO_ERRNO` maps the code to the errno the kernel's nfp driver returns for it.  The
byte layout of each message is tabled in docs/offload.md ("Control messages and maps").

:func:`encode` turns a message into bytes; :func:`decode_request` and :func:`decode_reply`
parse bytes and raise :class:`~nfpjit.nic.errors.CmsgError` (and nothing else) on anything
malformed: truncated, wrong version, unknown type or flags, oversized key or value, lengths
that do not add up, trailing bytes, bad JSON.  The daemon answers such input with
:func:`error_reply_for`.
"""

from __future__ import annotations

import errno as E
import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Union

from nfpjit.ebpf.opcodes import MapType
from nfpjit.nic.errors import CmsgError

VERSION = 1
HEADER = struct.Struct("<BBHII")  # version, type, flags, sequence, payload length
HEADER_SIZE = HEADER.size
REPLY_BIT = 0x80
MAX_ELEM_SIZE = 64  # firmware limit: key and value, each rounded up to 8 bytes, add up to at most this
MAX_PAYLOAD = 4 << 20  # no message is larger (a firmware image is well under it)
MAX_MESSAGE = 0xFFFF  # longest error message text in bytes
NAME_SIZE = 16  # map names: NUL-padded, at most 15 characters (BPF_OBJ_NAME_LEN)
U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1


class CmsgType(IntEnum):
    """Message types.  The map ones keep the numbers of the nfp driver's ``nfp_bpf_cmsg_type``."""

    MAP_ALLOC = 1
    MAP_FREE = 2
    MAP_LOOKUP = 3
    MAP_UPDATE = 4
    MAP_DELETE = 5
    MAP_GETNEXT = 6
    MAP_GETFIRST = 7
    MAP_LIST = 9
    PROG_LOAD = 16
    PROG_UNLOAD = 17
    PROG_ATTACH = 18
    PROG_DETACH = 19
    PROG_LIST = 20
    NIC_STATS = 32

    @property
    def reply(self) -> int:
        """The type byte of this message's reply."""
        return REPLY_BIT | self


MAP_ENTRY_TYPES = frozenset({CmsgType.MAP_LOOKUP, CmsgType.MAP_UPDATE, CmsgType.MAP_DELETE,
                             CmsgType.MAP_GETNEXT, CmsgType.MAP_GETFIRST})
JSON_TYPES = frozenset({CmsgType.PROG_UNLOAD, CmsgType.PROG_ATTACH, CmsgType.PROG_DETACH,
                        CmsgType.PROG_LIST, CmsgType.NIC_STATS})


class FwRet(IntEnum):
    """Firmware return codes.  0-7 are the nfp firmware's ``CMSG_RC_*``; 16 and up are nfpjit's
    own, for the program side, which the real firmware does not do through control messages."""

    OK = 0
    MAP_FD = 1  # no such table id
    NOENT = 2
    INVAL = 3  # CMSG_RC_ERR_MAP_ERR
    PARSE = 4  # the firmware could not parse the message
    EXIST = 5
    NOMEM = 6
    TOOBIG = 7  # CMSG_RC_ERR_MAP_E2BIG (also: hash table full)
    BUSY = 16
    NODEV = 17
    NOTSUPP = 18
    NOSPC = 19
    PERM = 20
    AGAIN = 21
    FAULT = 22


# As nfp_bpf_ctrl_rc_to_errno() maps them (codes 0-7); nfpjit's extensions map one to one.
FW_TO_ERRNO: dict[FwRet, int] = {
    FwRet.OK: 0,
    FwRet.MAP_FD: E.EBADFD,
    FwRet.NOENT: E.ENOENT,
    FwRet.INVAL: E.EINVAL,
    FwRet.PARSE: E.EIO,
    FwRet.EXIST: E.EEXIST,
    FwRet.NOMEM: E.ENOMEM,
    FwRet.TOOBIG: E.E2BIG,
    FwRet.BUSY: E.EBUSY,
    FwRet.NODEV: E.ENODEV,
    FwRet.NOTSUPP: E.EOPNOTSUPP,
    FwRet.NOSPC: E.ENOSPC,
    FwRet.PERM: E.EPERM,
    FwRet.AGAIN: E.EAGAIN,
    FwRet.FAULT: E.EFAULT,
}
ERRNO_TO_FW: dict[int, FwRet] = {err: rc for rc, err in FW_TO_ERRNO.items() if rc != FwRet.OK}
# parse failures of the wire format (CmsgError errnos) answer as the firmware's PARSE
for _err in (E.EBADMSG, E.EPROTO, E.EPROTONOSUPPORT, E.EMSGSIZE, E.EIO):
    ERRNO_TO_FW[_err] = FwRet.PARSE
ERRNO_TO_FW[E.ENOTSUP] = FwRet.NOTSUPP


def fw_ret_for_errno(err: int) -> FwRet:
    """The return code a NIC replies with for ``err`` (unknown errnos: PARSE, read as EIO)."""
    return ERRNO_TO_FW.get(int(err), FwRet.PARSE)


def round8(n: int) -> int:
    return (n + 7) & ~7


def elem_fits(key_size: int, value_size: int) -> bool:
    """Whether a key/value pair fits the firmware's element limit (:data:`MAX_ELEM_SIZE`)."""
    return round8(key_size) + round8(value_size) <= MAX_ELEM_SIZE


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapAlloc:
    """Create a table; the reply carries its table id."""

    TYPE: ClassVar[CmsgType] = CmsgType.MAP_ALLOC
    map_type: MapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    name: str = ""
    seq: int = 0


@dataclass(frozen=True)
class MapFree:
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_FREE
    tid: int
    seq: int = 0


@dataclass(frozen=True)
class _MapEntryRequest:
    TYPE: ClassVar[CmsgType]
    tid: int
    key: bytes = b""
    value: bytes = b""
    flags: int = 0
    seq: int = 0


@dataclass(frozen=True)
class MapLookup(_MapEntryRequest):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_LOOKUP


@dataclass(frozen=True)
class MapUpdate(_MapEntryRequest):
    """``flags``: BPF_ANY (0), BPF_NOEXIST (1), BPF_EXIST (2); the table judges other values."""

    TYPE: ClassVar[CmsgType] = CmsgType.MAP_UPDATE


@dataclass(frozen=True)
class MapDelete(_MapEntryRequest):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_DELETE


@dataclass(frozen=True)
class MapGetFirst(_MapEntryRequest):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_GETFIRST


@dataclass(frozen=True)
class MapGetNext(_MapEntryRequest):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_GETNEXT


@dataclass(frozen=True)
class MapList:
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_LIST
    seq: int = 0


@dataclass(frozen=True)
class ProgLoad:
    """A firmware image (``Image.to_bytes()``) and its load info (name, tag, profile, maps ...)."""

    TYPE: ClassVar[CmsgType] = CmsgType.PROG_LOAD
    image: bytes
    info: dict = field(default_factory=dict)
    seq: int = 0


@dataclass(frozen=True)
class JsonRequest:
    """PROG_UNLOAD, PROG_ATTACH, PROG_DETACH, PROG_LIST, NIC_STATS: a JSON object of arguments."""

    type: CmsgType
    body: dict = field(default_factory=dict)
    seq: int = 0

    @property
    def TYPE(self) -> CmsgType:  # noqa: N802 - same spelling as the other messages' class constant
        return self.type


Request = Union[MapAlloc, MapFree, MapLookup, MapUpdate, MapDelete, MapGetFirst, MapGetNext, MapList,
                ProgLoad, JsonRequest]
MAP_ENTRY_REQUESTS: dict[CmsgType, type] = {c.TYPE: c for c in (MapLookup, MapUpdate, MapDelete, MapGetFirst,
                                                                 MapGetNext)}


class _ReplyBase:
    """Replies are OK unless they are an :class:`ErrorReply`."""

    rc: ClassVar[FwRet] = FwRet.OK

    @property
    def ok(self) -> bool:
        return self.rc == FwRet.OK

    @property
    def errno(self) -> int:
        return FW_TO_ERRNO[self.rc]


@dataclass(frozen=True)
class ErrorReply:
    """A failed request: ``type`` is the request's type, ``rc`` the firmware code (never OK)."""

    type: CmsgType
    rc: FwRet
    message: str = ""
    seq: int = 0

    @property
    def ok(self) -> bool:
        return False

    @property
    def errno(self) -> int:
        return FW_TO_ERRNO[self.rc]


@dataclass(frozen=True)
class MapAllocReply(_ReplyBase):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_ALLOC
    tid: int
    seq: int = 0


@dataclass(frozen=True)
class MapFreeReply(_ReplyBase):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_FREE
    seq: int = 0


@dataclass(frozen=True)
class MapEntryReply(_ReplyBase):
    """LOOKUP carries the value; GETFIRST/GETNEXT the key; UPDATE/DELETE nothing."""

    type: CmsgType
    key: bytes = b""
    value: bytes = b""
    seq: int = 0


@dataclass(frozen=True)
class TableInfo:
    """One table in a MAP_LIST reply; ``count`` is the number of entries present."""

    tid: int
    map_type: MapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    name: str = ""
    count: int = 0


@dataclass(frozen=True)
class MapListReply(_ReplyBase):
    TYPE: ClassVar[CmsgType] = CmsgType.MAP_LIST
    tables: tuple[TableInfo, ...] = ()
    seq: int = 0


@dataclass(frozen=True)
class JsonReply(_ReplyBase):
    """The reply to PROG_* and NIC_STATS: a JSON object."""

    type: CmsgType
    body: dict = field(default_factory=dict)
    seq: int = 0


Reply = Union[ErrorReply, MapAllocReply, MapFreeReply, MapEntryReply, MapListReply, JsonReply]


def message_type(msg) -> CmsgType:
    """The (request) type of a request or reply."""
    t = getattr(msg, "type", None)
    return CmsgType(t if t is not None else msg.TYPE)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

_ALLOC = struct.Struct(f"<IIIII{NAME_SIZE}s")
_U32 = struct.Struct("<I")
_ENTRY_REQ = struct.Struct("<IQHH")  # tid, flags, key length, value length
_ENTRY_REP = struct.Struct("<HH")  # key length, value length (after rc)
_ERROR = struct.Struct("<IH")  # rc, message length
_TABLE = struct.Struct(f"<IIIIII{NAME_SIZE}sI")


def _bad(msg: str, err: int = E.EINVAL) -> CmsgError:
    return CmsgError(err, msg)


def _uint(value, bits: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise _bad(f"{what} must be an unsigned {bits}-bit integer, not {value!r}")
    return value


def _bytes(value, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _bad(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _check_elem(key_len: int, value_len: int) -> None:
    if not elem_fits(key_len, value_len):
        raise _bad(f"key of {key_len} and value of {value_len} bytes exceed the firmware's element limit "
                   f"({MAX_ELEM_SIZE} bytes, key and value each rounded up to 8)", E.E2BIG)


def _name(name) -> bytes:
    if not isinstance(name, str):
        raise _bad(f"map name must be a string, not {type(name).__name__}")
    raw = name.encode("utf-8", "replace")
    if len(raw) >= NAME_SIZE or "\0" in name or not all(c.isprintable() and ord(c) < 128 for c in name):
        raise _bad(f"map name {name!r} must be at most {NAME_SIZE - 1} printable ASCII characters")
    return raw


def _json(body, what: str) -> bytes:
    if not isinstance(body, dict):
        raise _bad(f"{what} must be a JSON object (dict), not {type(body).__name__}")
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise _bad(f"{what} is not representable as JSON: {exc}") from None


def _map_type(value) -> MapType:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"map type must be a MapType, not {value!r}")
    try:
        return MapType(value)
    except ValueError:
        raise _bad(f"unknown map type {value}") from None


def _payload(msg) -> tuple[int, bytes]:
    """(type byte, payload) of ``msg``."""
    if isinstance(msg, ErrorReply):
        t = CmsgType(msg.type)
        rc = FwRet(msg.rc)
        if rc == FwRet.OK:
            raise _bad("an error reply needs a return code other than OK")
        if not isinstance(msg.message, str):
            raise _bad("error message must be a string")
        text = msg.message.encode("utf-8", "replace")
        if len(text) > MAX_MESSAGE:
            raise _bad(f"error message of {len(text)} bytes is longer than {MAX_MESSAGE}", E.EMSGSIZE)
        return t.reply, _ERROR.pack(rc, len(text)) + text
    if isinstance(msg, MapAlloc):
        return msg.TYPE, _ALLOC.pack(_map_type(msg.map_type), _uint(msg.key_size, 32, "key size"),
                                     _uint(msg.value_size, 32, "value size"),
                                     _uint(msg.max_entries, 32, "max entries"),
                                     _uint(msg.map_flags, 32, "map flags"), _name(msg.name))
    if isinstance(msg, MapFree):
        return msg.TYPE, _U32.pack(_uint(msg.tid, 32, "table id"))
    if isinstance(msg, _MapEntryRequest):
        key, value = _bytes(msg.key, "key"), _bytes(msg.value, "value")
        _check_entry_request(msg.TYPE, len(key), len(value), _uint(msg.flags, 64, "flags"))
        return msg.TYPE, _ENTRY_REQ.pack(_uint(msg.tid, 32, "table id"), msg.flags, len(key), len(value)) + key + value
    if isinstance(msg, MapList):
        return msg.TYPE, b""
    if isinstance(msg, ProgLoad):
        image = _bytes(msg.image, "image")
        if not image:
            raise _bad("PROG_LOAD needs a firmware image")
        return msg.TYPE, _U32.pack(len(image)) + image + _json(msg.info, "load info")
    if isinstance(msg, JsonRequest):
        t = CmsgType(msg.type)
        if t not in JSON_TYPES:
            raise _bad(f"{t.name} does not carry a JSON body")
        return t, _json(msg.body, f"{t.name} arguments")
    ok = _U32.pack(FwRet.OK)
    if isinstance(msg, MapAllocReply):
        return msg.TYPE.reply, ok + _U32.pack(_uint(msg.tid, 32, "table id"))
    if isinstance(msg, MapFreeReply):
        return msg.TYPE.reply, ok
    if isinstance(msg, MapEntryReply):
        t = CmsgType(msg.type)
        key, value = _bytes(msg.key, "key"), _bytes(msg.value, "value")
        _check_entry_reply(t, len(key), len(value))
        return t.reply, ok + _ENTRY_REP.pack(len(key), len(value)) + key + value
    if isinstance(msg, MapListReply):
        rows = [ok, _U32.pack(len(msg.tables))]
        for t in msg.tables:
            rows.append(_TABLE.pack(_uint(t.tid, 32, "table id"), _map_type(t.map_type),
                                    _uint(t.key_size, 32, "key size"), _uint(t.value_size, 32, "value size"),
                                    _uint(t.max_entries, 32, "max entries"), _uint(t.map_flags, 32, "map flags"),
                                    _name(t.name), _uint(t.count, 32, "entry count")))
        return msg.TYPE.reply, b"".join(rows)
    if isinstance(msg, JsonReply):
        t = CmsgType(msg.type)
        if t not in JSON_TYPES and t != CmsgType.PROG_LOAD:
            raise _bad(f"{t.name} replies do not carry a JSON body")
        return t.reply, ok + _json(msg.body, f"{t.name} reply")
    raise _bad(f"not a control message: {type(msg).__name__}")


def encode(msg: Request | Reply) -> bytes:
    """The wire bytes of a request or reply (header + payload)."""
    try:
        type_byte, payload = _payload(msg)
    except (ValueError, TypeError, struct.error) as exc:  # e.g. CmsgType(999) on a hand-made message
        if isinstance(exc, CmsgError):
            raise
        raise _bad(f"cannot encode {type(msg).__name__}: {exc}") from None
    if len(payload) > MAX_PAYLOAD:
        raise _bad(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}", E.EMSGSIZE)
    seq = _uint(getattr(msg, "seq", 0), 32, "sequence number")
    return HEADER.pack(VERSION, type_byte, 0, seq, len(payload)) + payload


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _check_entry_request(t: CmsgType, key_len: int, value_len: int, flags: int) -> None:
    if t == CmsgType.MAP_GETFIRST:
        if key_len or value_len:
            raise _bad("MAP_GETFIRST carries neither key nor value")
    elif not key_len:
        raise _bad(f"{t.name} needs a key")
    elif t == CmsgType.MAP_UPDATE:
        if not value_len:
            raise _bad("MAP_UPDATE needs a value")
    elif value_len:
        raise _bad(f"{t.name} carries no value")
    if flags and t != CmsgType.MAP_UPDATE:
        raise _bad(f"{t.name} takes no flags (got {flags:#x})")
    _check_elem(key_len, value_len)


def _check_entry_reply(t: CmsgType, key_len: int, value_len: int) -> None:
    if t not in MAP_ENTRY_TYPES:
        raise _bad(f"{t.name} is not a map entry operation")
    if t == CmsgType.MAP_LOOKUP:
        if key_len or not value_len:
            raise _bad("a MAP_LOOKUP reply carries a value and no key")
    elif t in (CmsgType.MAP_GETFIRST, CmsgType.MAP_GETNEXT):
        if value_len or not key_len:
            raise _bad(f"a {t.name} reply carries a key and no value")
    elif key_len or value_len:
        raise _bad(f"a {t.name} reply carries neither key nor value")
    _check_elem(key_len, value_len)


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise _bad(f"{self.what} truncated: {what} needs {n} bytes at offset {self.pos}, "
                       f"{len(self.data) - self.pos} left", E.EBADMSG)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _bad(f"{self.what} has {len(self.data) - self.pos} trailing bytes", E.EBADMSG)


def _split(data, want_reply: bool) -> tuple[CmsgType, int, bytes]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _bad(f"a control message is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise _bad(f"message of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header", E.EBADMSG)
    version, type_byte, flags, seq, length = HEADER.unpack_from(data)
    if version != VERSION:
        raise _bad(f"control message version {version}, this NIC speaks version {VERSION}", E.EPROTONOSUPPORT)
    if flags:
        raise _bad(f"unknown header flags {flags:#06x}")
    if bool(type_byte & REPLY_BIT) != want_reply:
        raise _bad(f"type {type_byte:#04x} is {'a request' if want_reply else 'a reply'}, "
                   f"expected {'a reply' if want_reply else 'a request'}", E.EBADMSG)
    try:
        t = CmsgType(type_byte & ~REPLY_BIT)
    except ValueError:
        raise _bad(f"unknown message type {type_byte:#04x}", E.EOPNOTSUPP) from None
    if length > MAX_PAYLOAD:
        raise _bad(f"payload length {length} exceeds {MAX_PAYLOAD}", E.EMSGSIZE)
    if len(data) - HEADER_SIZE != length:
        raise _bad(f"header says {length} payload bytes, message has {len(data) - HEADER_SIZE}", E.EBADMSG)
    return t, seq, data[HEADER_SIZE:]


def _parse_json(raw: bytes, what: str) -> dict:
    if not raw:
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad(f"{what} must be a JSON object, not {type(body).__name__}")
    return body


def _parse_name(raw: bytes) -> str:
    text, _, pad = raw.partition(b"\0")
    if pad.strip(b"\0") or not all(0x20 <= c < 0x7F for c in text):
        raise _bad(f"map name {raw!r} is not NUL-padded printable ASCII")
    return text.decode("ascii")


def _parse_map_type(value: int) -> MapType:
    try:
        return MapType(value)
    except ValueError:
        raise _bad(f"unknown map type {value}") from None


def decode_request(data: bytes) -> Request:
    """Parse a request; anything malformed raises :class:`CmsgError`."""
    t, seq, payload = _split(data, want_reply=False)
    r = _Reader(payload, t.name)
    if t == CmsgType.MAP_ALLOC:
        mt, ks, vs, me, mf, name = r.unpack(_ALLOC, "table definition")
        r.end()
        return MapAlloc(_parse_map_type(mt), ks, vs, me, mf, _parse_name(name), seq=seq)
    if t == CmsgType.MAP_FREE:
        (tid,) = r.unpack(_U32, "table id")
        r.end()
        return MapFree(tid, seq=seq)
    if t in MAP_ENTRY_TYPES:
        tid, flags, klen, vlen = r.unpack(_ENTRY_REQ, "entry header")
        _check_entry_request(t, klen, vlen, flags)
        key = r.take(klen, "key")
        value = r.take(vlen, "value")
        r.end()
        return MAP_ENTRY_REQUESTS[t](tid, key, value, flags, seq=seq)
    if t == CmsgType.MAP_LIST:
        r.end()
        return MapList(seq=seq)
    if t == CmsgType.PROG_LOAD:
        (n,) = r.unpack(_U32, "image length")
        if not n:
            raise _bad("PROG_LOAD needs a firmware image")
        image = r.take(n, "image")
        return ProgLoad(image, _parse_json(r.rest(), "load info"), seq=seq)
    return JsonRequest(t, _parse_json(r.rest(), f"{t.name} arguments"), seq=seq)


def decode_reply(data: bytes) -> Reply:
    """Parse a reply; anything malformed (including an unknown return code) raises :class:`CmsgError`."""
    t, seq, payload = _split(data, want_reply=True)
    r = _Reader(payload, f"{t.name} reply")
    (rc_raw,) = r.unpack(_U32, "return code")
    try:
        rc = FwRet(rc_raw)
    except ValueError:
        raise _bad(f"the NIC responded with invalid status {rc_raw}", E.EIO) from None
    if rc != FwRet.OK:
        (n,) = r.unpack(struct.Struct("<H"), "message length")
        raw = r.take(n, "message")
        r.end()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("error message is not UTF-8") from None
        return ErrorReply(t, rc, text, seq=seq)
    if t == CmsgType.MAP_ALLOC:
        (tid,) = r.unpack(_U32, "table id")
        r.end()
        return MapAllocReply(tid, seq=seq)
    if t == CmsgType.MAP_FREE:
        r.end()
        return MapFreeReply(seq=seq)
    if t in MAP_ENTRY_TYPES:
        klen, vlen = r.unpack(_ENTRY_REP, "entry header")
        _check_entry_reply(t, klen, vlen)
        key = r.take(klen, "key")
        value = r.take(vlen, "value")
        r.end()
        return MapEntryReply(t, key, value, seq=seq)
    if t == CmsgType.MAP_LIST:
        (count,) = r.unpack(_U32, "table count")
        if count * _TABLE.size != len(payload) - r.pos:
            raise _bad(f"MAP_LIST reply says {count} tables, carries {len(payload) - r.pos} bytes", E.EBADMSG)
        tables = []
        for _ in range(count):
            tid, mt, ks, vs, me, mf, name, n = r.unpack(_TABLE, "table")
            tables.append(TableInfo(tid, _parse_map_type(mt), ks, vs, me, mf, _parse_name(name), n))
        r.end()
        return MapListReply(tuple(tables), seq=seq)
    return JsonReply(t, _parse_json(r.rest(), f"{t.name} reply"), seq=seq)


def peek(data) -> tuple[CmsgType | None, int]:
    """Best-effort (request type, sequence) of a possibly malformed message, for error replies."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < HEADER_SIZE:
        return None, 0
    _, type_byte, _, seq, _ = HEADER.unpack_from(bytes(data[:HEADER_SIZE]))
    try:
        return CmsgType(type_byte & ~REPLY_BIT), seq
    except ValueError:
        return None, seq


def error_reply(request, err: int, message: str) -> ErrorReply:
    """The error reply to a (decoded) request, failing with errno ``err``."""
    return ErrorReply(message_type(request), fw_ret_for_errno(err), _clip(message), seq=getattr(request, "seq", 0))


def error_reply_for(data, exc: CmsgError) -> bytes:
    """The encoded error reply to undecodable bytes ``data`` (type and sequence echoed when readable;
    an unreadable type answers as MAP_LIST, whose reply every client parses)."""
    t, seq = peek(data)
    reply = ErrorReply(t or CmsgType.MAP_LIST, fw_ret_for_errno(exc.errno), _clip(str(exc)), seq=seq)
    return encode(reply)


def _clip(text: str, limit: int = 1024) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "VERSION", "HEADER_SIZE", "REPLY_BIT", "MAX_ELEM_SIZE", "MAX_PAYLOAD", "CmsgType", "FwRet", "FW_TO_ERRNO",
    "ERRNO_TO_FW", "fw_ret_for_errno", "elem_fits", "MapAlloc", "MapFree", "MapLookup", "MapUpdate", "MapDelete",
    "MapGetFirst", "MapGetNext", "MapList", "ProgLoad", "JsonRequest", "Request", "ErrorReply", "MapAllocReply",
    "MapFreeReply", "MapEntryReply", "TableInfo", "MapListReply", "JsonReply", "Reply", "encode",
    "decode_request", "decode_reply", "peek", "error_reply", "error_reply_for", "message_type", "CmsgError",
]

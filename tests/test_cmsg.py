"""The control-message wire format: round trips for every type, and only CmsgError on bad input."""

from __future__ import annotations

import errno
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.opcodes import MapType
from nfpjit.nic import cmsg as C
from nfpjit.nic.errors import CmsgError, OffloadError

u32 = st.integers(0, C.U32)
u64 = st.integers(0, C.U64)
names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=15)
map_types = st.sampled_from(list(MapType))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), 1 << 64) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@st.composite
def elems(draw, key: bool = True, value: bool = True):
    """(key, value) within the firmware element limit."""
    k = draw(st.integers(1, C.MAX_ELEM_SIZE - (8 if value else 0))) if key else 0
    room = C.MAX_ELEM_SIZE - C.round8(k)
    v = draw(st.integers(1, room)) if value else 0
    return draw(st.binary(min_size=k, max_size=k)), draw(st.binary(min_size=v, max_size=v))


@st.composite
def requests(draw):
    seq = draw(u32)
    kind = draw(st.sampled_from(["alloc", "free", "lookup", "update", "delete", "first", "next", "list", "load",
                                 "json"]))
    if kind == "alloc":
        return C.MapAlloc(draw(map_types), draw(u32), draw(u32), draw(u32), draw(u32), draw(names), seq=seq)
    if kind == "free":
        return C.MapFree(draw(u32), seq=seq)
    if kind == "update":
        k, v = draw(elems())
        return C.MapUpdate(draw(u32), k, v, draw(u64), seq=seq)
    if kind in ("lookup", "delete", "next"):
        k, _ = draw(elems(value=False))
        cls = {"lookup": C.MapLookup, "delete": C.MapDelete, "next": C.MapGetNext}[kind]
        return cls(draw(u32), k, seq=seq)
    if kind == "first":
        return C.MapGetFirst(draw(u32), seq=seq)
    if kind == "list":
        return C.MapList(seq=seq)
    if kind == "load":
        return C.ProgLoad(draw(st.binary(min_size=1, max_size=64)), draw(json_objects), seq=seq)
    return C.JsonRequest(draw(st.sampled_from(sorted(C.JSON_TYPES))), draw(json_objects), seq=seq)


@st.composite
def replies(draw):
    seq = draw(u32)
    kind = draw(st.sampled_from(["error", "alloc", "free", "entry", "list", "json"]))
    if kind == "error":
        rc = draw(st.sampled_from([r for r in C.FwRet if r != C.FwRet.OK]))
        return C.ErrorReply(draw(st.sampled_from(list(C.CmsgType))), rc, draw(st.text(max_size=40)), seq=seq)
    if kind == "alloc":
        return C.MapAllocReply(draw(u32), seq=seq)
    if kind == "free":
        return C.MapFreeReply(seq=seq)
    if kind == "entry":
        t = draw(st.sampled_from(sorted(C.MAP_ENTRY_TYPES)))
        if t == C.CmsgType.MAP_LOOKUP:
            _, v = draw(elems(key=False))
            return C.MapEntryReply(t, value=v, seq=seq)
        if t in (C.CmsgType.MAP_GETFIRST, C.CmsgType.MAP_GETNEXT):
            k, _ = draw(elems(value=False))
            return C.MapEntryReply(t, key=k, seq=seq)
        return C.MapEntryReply(t, seq=seq)
    if kind == "list":
        tables = draw(st.lists(st.builds(C.TableInfo, u32, map_types, u32, u32, u32, u32, names, u32), max_size=4))
        return C.MapListReply(tuple(tables), seq=seq)
    t = draw(st.sampled_from(sorted(C.JSON_TYPES | {C.CmsgType.PROG_LOAD})))
    return C.JsonReply(t, draw(json_objects), seq=seq)


def _json_normal(obj):
    """What a JSON round trip makes of ``obj`` (tuples -> lists, keys -> strings)."""
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------ round trips


@given(requests())
def test_request_round_trip(msg):
    data = C.encode(msg)
    assert len(data) == C.HEADER_SIZE + struct.unpack_from("<I", data, 8)[0]
    assert data[0] == C.VERSION and data[1] == C.message_type(msg)
    back = C.decode_request(data)
    if isinstance(msg, C.ProgLoad):
        assert back.image == msg.image and back.info == _json_normal(msg.info) and back.seq == msg.seq
    elif isinstance(msg, C.JsonRequest):
        assert (back.type, back.body, back.seq) == (msg.type, _json_normal(msg.body), msg.seq)
    else:
        assert back == msg
    assert C.encode(back) == data
    with pytest.raises(CmsgError):  # a request is not a reply
        C.decode_reply(data)


@given(replies())
def test_reply_round_trip(msg):
    data = C.encode(msg)
    assert data[1] == C.message_type(msg) | C.REPLY_BIT
    back = C.decode_reply(data)
    if isinstance(msg, C.JsonReply):
        assert (back.type, back.body, back.seq) == (msg.type, _json_normal(msg.body), msg.seq)
    else:
        assert back == msg
    assert back.ok == (not isinstance(msg, C.ErrorReply))
    assert back.errno == C.FW_TO_ERRNO[back.rc]
    assert C.encode(back) == data
    with pytest.raises(CmsgError):
        C.decode_request(data)


def test_every_type_has_a_round_trip_case():
    # the strategies above draw each of these; make sure nobody adds a type without a message class
    covered = {C.CmsgType.MAP_ALLOC, C.CmsgType.MAP_FREE, C.CmsgType.MAP_LIST, C.CmsgType.PROG_LOAD}
    covered |= C.MAP_ENTRY_TYPES | C.JSON_TYPES
    assert covered == set(C.CmsgType)


def test_header_layout_is_little_endian():
    data = C.encode(C.MapUpdate(0x01020304, b"\xaa" * 4, b"\xbb" * 8, flags=2, seq=0x11223344))
    version, t, flags, seq, length = struct.unpack_from("<BBHII", data)
    assert (version, t, flags, seq, length) == (1, C.CmsgType.MAP_UPDATE, 0, 0x11223344, 16 + 12)
    tid, fl, klen, vlen = struct.unpack_from("<IQHH", data, 12)
    assert (tid, fl, klen, vlen) == (0x01020304, 2, 4, 8)
    assert data[28:] == b"\xaa" * 4 + b"\xbb" * 8


# ------------------------------------------------------------------ return codes


def test_fw_to_errno_matches_the_nfp_driver():
    # nfp_bpf_ctrl_rc_to_errno(): CMSG_RC_* 0..7
    kernel = [0, errno.EBADFD, errno.ENOENT, errno.EINVAL, errno.EIO, errno.EEXIST, errno.ENOMEM, errno.E2BIG]
    assert [C.FW_TO_ERRNO[C.FwRet(i)] for i in range(8)] == kernel
    assert set(C.FW_TO_ERRNO) == set(C.FwRet)
    for rc, err in C.FW_TO_ERRNO.items():
        if rc != C.FwRet.OK:
            assert C.fw_ret_for_errno(err) == rc


def test_unknown_return_code_is_eio_like_the_driver():
    data = bytearray(C.encode(C.MapFreeReply(seq=1)))
    struct.pack_into("<I", data, C.HEADER_SIZE, 8 + 200)
    with pytest.raises(CmsgError) as exc:
        C.decode_reply(bytes(data))
    assert exc.value.errno == errno.EIO


# ------------------------------------------------------------------ malformed input


def _err(data, decoder=C.decode_request) -> CmsgError:
    with pytest.raises(CmsgError) as exc:
        decoder(data)
    assert isinstance(exc.value, OffloadError)
    return exc.value


def test_malformed_cases_have_the_documented_errno():
    good = C.encode(C.MapLookup(3, b"abcd", seq=7))
    assert _err(good[:5]).errno == errno.EBADMSG  # shorter than the header
    assert _err(good[:-1]).errno == errno.EBADMSG  # truncated payload
    assert _err(good + b"\0").errno == errno.EBADMSG  # trailing byte
    assert _err(b"\x02" + good[1:]).errno == errno.EPROTONOSUPPORT  # wrong version
    assert _err(good[:1] + b"\x3f" + good[2:]).errno == errno.EOPNOTSUPP  # unknown type
    assert _err(good[:2] + b"\x01\x00" + good[4:]).errno == errno.EINVAL  # unknown flags
    big = struct.pack("<BBHII", 1, C.CmsgType.MAP_LIST, 0, 0, C.MAX_PAYLOAD + 1)
    assert _err(big).errno == errno.EMSGSIZE
    # oversized key: 65 bytes
    hdr = struct.pack("<IQHH", 1, 0, 65, 0) + b"k" * 65
    assert _err(struct.pack("<BBHII", 1, C.CmsgType.MAP_LOOKUP, 0, 0, len(hdr)) + hdr).errno == errno.E2BIG
    # key 8 + value 57 (rounds to 64) is over the limit; key 8 + value 56 fits
    with pytest.raises(CmsgError) as exc:
        C.encode(C.MapUpdate(1, b"k" * 8, b"v" * 57))
    assert exc.value.errno == errno.E2BIG
    C.decode_request(C.encode(C.MapUpdate(1, b"k" * 8, b"v" * 56)))
    # a key length that points past the end
    hdr = struct.pack("<IQHH", 1, 0, 8, 0) + b"k" * 4
    assert _err(struct.pack("<BBHII", 1, C.CmsgType.MAP_LOOKUP, 0, 0, len(hdr)) + hdr).errno == errno.EBADMSG
    # a lookup carrying a value, a getfirst carrying a key, flags on a delete
    for t, klen, vlen, flags in ((C.CmsgType.MAP_LOOKUP, 4, 4, 0), (C.CmsgType.MAP_GETFIRST, 4, 0, 0),
                                 (C.CmsgType.MAP_DELETE, 4, 0, 1), (C.CmsgType.MAP_UPDATE, 4, 0, 0)):
        hdr = struct.pack("<IQHH", 1, flags, klen, vlen) + b"x" * (klen + vlen)
        assert _err(struct.pack("<BBHII", 1, t, 0, 0, len(hdr)) + hdr).errno == errno.EINVAL
    # bad JSON, JSON that is not an object, a map name that is not NUL-padded ASCII
    for body in (b"{", b"[1]", b"\xff", b"[" * 5000 + b"]" * 5000):
        _err(struct.pack("<BBHII", 1, C.CmsgType.PROG_LIST, 0, 0, len(body)) + body)
    alloc = bytearray(C.encode(C.MapAlloc(MapType.HASH, 4, 4, 4, name="ab")))
    alloc[-1] = ord("x")
    _err(bytes(alloc))
    _err("not bytes")


@settings(max_examples=400)
@given(st.binary(max_size=80))
def test_fuzz_random_bytes(data):
    for decoder in (C.decode_request, C.decode_reply):
        try:
            decoder(data)
        except CmsgError as exc:
            assert exc.errno > 0 and str(exc)


@st.composite
def mutated(draw):
    """A valid request or reply with some bytes flipped, inserted, removed or cut."""
    msg = draw(st.one_of(requests(), replies()))
    data = bytearray(C.encode(msg))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "length"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos]
        elif op == "cut":
            del data[pos:]
        elif op == "length" and len(data) >= C.HEADER_SIZE:
            struct.pack_into("<I", data, 8, len(data) - C.HEADER_SIZE)  # keep the length consistent
    return bytes(data)


@settings(max_examples=600)
@given(mutated())
def test_fuzz_mutations_of_valid_messages(data):
    for decoder in (C.decode_request, C.decode_reply):
        try:
            msg = decoder(data)
        except CmsgError as exc:
            assert exc.errno > 0
        else:
            C.encode(msg)  # whatever decodes re-encodes


@given(mutated())
def test_error_reply_for_anything_decodes(data):
    try:
        C.decode_request(data)
    except CmsgError as exc:
        reply = C.decode_reply(C.error_reply_for(data, exc))
        assert isinstance(reply, C.ErrorReply) and not reply.ok
        assert reply.errno in (errno.EIO, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP)
        t, seq = C.peek(data)
        assert reply.seq == seq


def test_encode_rejects_bad_fields_with_cmsg_error():
    for msg in (C.MapFree(-1), C.MapFree(1 << 32), C.MapLookup(1, "str key"), C.MapUpdate(1, b"k", b"v", -1),
                C.MapAlloc(999, 4, 4, 4), C.MapAlloc(MapType.HASH, 4, 4, 4, name="x" * 16),
                C.JsonRequest(C.CmsgType.MAP_LOOKUP, {}), C.ProgLoad(b"", {}), C.ProgLoad(b"x", {"a": object()}),
                C.ErrorReply(C.CmsgType.MAP_FREE, C.FwRet.OK), C.MapList(seq=-1), object()):
        with pytest.raises(CmsgError):
            C.encode(msg)

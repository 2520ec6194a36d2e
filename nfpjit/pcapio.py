"""Read and write packet captures (classic libpcap format, Ethernet link type) with dpkt.

:func:`read_pcap` returns the frames of a capture; anything that is not a
readable Ethernet pcap raises :class:`~nfpjit.errors.LoadError` saying why.
:func:`write_pcap` writes frames with increasing microsecond timestamps.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import dpkt

from nfpjit.errors import LoadError

__all__ = ["read_pcap", "write_pcap", "LINKTYPE_ETHERNET"]

LINKTYPE_ETHERNET = 1


def read_pcap(path: str | os.PathLike) -> list[bytes]:
    """The frames in a pcap file, in order."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read pcap: {exc.strerror or exc}", where=where) from None
    if raw[:4] in (b"\x0a\x0d\x0d\x0a",):
        raise LoadError("this is a pcapng file; only classic pcap is supported", where=where,
                        hint="convert it with: editcap -F pcap IN.pcapng OUT.pcap")
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(raw))
    except (ValueError, struct.error, dpkt.dpkt.Error) as exc:
        reason = str(exc) or "bad header"
        if len(raw) < 24:
            reason = f"file of {len(raw)} bytes is shorter than a pcap header (24 bytes)"
        raise LoadError(f"not a pcap file: {reason}", where=where) from None
    if reader.datalink() != LINKTYPE_ETHERNET:
        raise LoadError(f"link type {reader.datalink()} is not Ethernet (1)", where=where,
                        hint="XDP and TC programs see Ethernet frames")
    frames: list[bytes] = []
    try:
        for _ts, buf in reader:
            frames.append(bytes(buf))
    except (ValueError, struct.error, dpkt.dpkt.Error) as exc:
        raise LoadError(f"packet record {len(frames)} is corrupt: {exc or 'bad record header'}", where=where) from None
    # dpkt quietly returns a short last record (or stops early): walk the record headers to be sure.
    endian = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset = 24
    for n, frame in enumerate(frames):
        caplen = struct.unpack_from(endian + "I", raw, offset + 8)[0]
        if offset + 16 + caplen > len(raw) or caplen != len(frame):
            raise LoadError(f"packet record {n} is truncated: it claims {caplen} bytes, "
                            f"{max(0, len(raw) - offset - 16)} remain", where=where)
        offset += 16 + caplen
    if offset != len(raw):
        raise LoadError(f"packet record {len(frames)} is truncated ({len(raw) - offset} trailing bytes)", where=where)
    return frames


def write_pcap(path: str | os.PathLike, frames: list[bytes], *, snaplen: int = 65535) -> None:
    """Write ``frames`` as an Ethernet pcap (timestamps 0, 1 µs, 2 µs, ...)."""
    try:
        with open(path, "wb") as fh:
            writer = dpkt.pcap.Writer(fh, snaplen=snaplen, linktype=LINKTYPE_ETHERNET)
            for n, frame in enumerate(frames):
                writer.writepkt(bytes(frame), ts=n * 1e-6)
    except OSError as exc:
        raise LoadError(f"cannot write pcap: {exc.strerror or exc}", where=str(path)) from None

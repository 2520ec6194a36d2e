"""Read and write packet captures (classic libpcap format, Ethernet link type) with dpkt.

:func:`read_pcap` returns the frames of a capture and :func:`write_pcap` writes frames with
increasing microsecond timestamps.  For captures too big to hold, :class:`PcapReader` streams
them in :class:`PcapChunk` s (a block of the file and where its frames are in it: no copy per
frame) and :class:`PcapWriter` writes records one by one to a temporary file that becomes the
named file only when :meth:`PcapWriter.close` succeeds (a failed run leaves no half-written
capture).

dpkt does the format: the file header is read by :class:`dpkt.pcap.Reader` (magic, byte order,
micro/nanosecond resolution, link type, snaplen) and each record header is unpacked with the
layout of dpkt's record-header class for that magic (``dpkt.pcap.MAGIC_TO_PKT_HDR``).  Anything
that is not a readable Ethernet pcap raises :class:`~nfpjit.errors.LoadError` saying why and
where: pcapng, wrong magic, a file header cut short, another link type, a record header or
record cut short (dpkt silently returns a short last record: these readers do not), a record
larger than the file's snaplen or than any capture can be (262144 bytes).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dpkt

from nfpjit.errors import LoadError

__all__ = ["read_pcap", "write_pcap", "PcapReader", "PcapWriter", "PcapChunk", "LINKTYPE_ETHERNET",
           "MAX_CAPLEN"]

LINKTYPE_ETHERNET = 1
MAX_CAPLEN = 262144          # libpcap's largest snapshot length for Ethernet: a bigger record is corrupt
_FILE_HEADER = 24
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_NANO_MAGICS = (dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO)   # either byte order


@dataclass(frozen=True)
class PcapChunk:
    """Consecutive records of a capture: frame ``k`` is ``data[offsets[k]:offsets[k] + lengths[k]]``.

    ``first`` is the index of the chunk's first record in the file, ``wire_lengths`` the original
    lengths (larger than ``lengths`` for frames the capture cut short), ``ts`` the timestamps as
    (seconds, micro- or nanoseconds) pairs, and ``end`` the file offset after the chunk (progress).
    """

    data: bytes
    offsets: list[int]
    lengths: list[int]
    wire_lengths: list[int]
    ts: list[tuple[int, int]]
    first: int
    end: int

    def __len__(self) -> int:
        return len(self.offsets)

    def frame(self, k: int) -> bytes:
        o = self.offsets[k]
        return self.data[o:o + self.lengths[k]]

    def frames(self) -> list[bytes]:
        data = self.data
        return [data[o:o + n] for o, n in zip(self.offsets, self.lengths)]


class PcapReader:
    """A classic pcap file, read in chunks (constant memory); use as a context manager.

    ``PcapReader(path)`` checks the file header (raising LoadError); :meth:`chunks` yields
    :class:`PcapChunk` s of at most ``max_frames`` records and about ``max_bytes`` bytes, checking
    every record header as it goes.  ``size`` is the file's size in bytes, ``nano`` whether the
    timestamps are nanoseconds, ``snaplen`` and ``linktype`` the header's values.
    """

    def __init__(self, path: str | os.PathLike):
        self.where = str(path)
        try:
            self._fh = open(path, "rb")
            self.size = os.fstat(self._fh.fileno()).st_size
        except OSError as exc:
            raise LoadError(f"cannot read pcap: {exc.strerror or exc}", where=self.where) from None
        try:
            self._read_header()
        except BaseException:
            self._fh.close()
            raise

    def _read_header(self) -> None:
        head = self._fh.read(_FILE_HEADER)
        if head[:4] == _PCAPNG:
            raise LoadError("this is a pcapng file; only classic pcap is supported", where=self.where,
                            hint="convert it with: editcap -F pcap IN.pcapng OUT.pcap")
        if len(head) < _FILE_HEADER:
            raise LoadError(f"not a pcap file: file of {len(head)} bytes is shorter than a pcap header "
                            f"({_FILE_HEADER} bytes)", where=self.where)
        try:
            reader = dpkt.pcap.Reader(io.BytesIO(head))
        except (ValueError, struct.error, dpkt.dpkt.Error) as exc:
            raise LoadError(f"not a pcap file: {exc or 'bad header'} (magic {head[:4].hex()})", where=self.where,
                            hint="classic pcap files start with a1b2c3d4 or a1b23c4d in either byte order") from None
        if reader.datalink() != LINKTYPE_ETHERNET:
            raise LoadError(f"link type {reader.datalink()} is not Ethernet (1)", where=self.where,
                            hint="XDP and TC programs see Ethernet frames")
        magic = struct.unpack(">I", head[:4])[0]        # as dpkt reads it (its FileHdr is big-endian)
        self._record = struct.Struct(dpkt.pcap.MAGIC_TO_PKT_HDR[magic].__hdr_fmt__)
        self.nano = magic in _NANO_MAGICS
        self.snaplen = reader.snaplen
        self.linktype = reader.datalink()
        self.byteorder = "little" if self._record.format.startswith("<") else "big"

    def chunks(self, *, max_frames: int = 4096, max_bytes: int = 1 << 20) -> Iterator[PcapChunk]:
        """The records in order, ``max_frames`` at most per chunk (LoadError at the first bad record)."""
        fh, rec, where = self._fh, self._record, self.where
        hlen = rec.size
        unpack = rec.unpack_from
        snap = self.snaplen if 0 < self.snaplen else MAX_CAPLEN
        limit = min(snap, MAX_CAPLEN)
        index, pos_file = 0, _FILE_HEADER
        buf, eof = b"", False
        while True:
            if not eof and len(buf) < max_bytes:
                more = fh.read(max_bytes - len(buf))
                eof = not more
                buf = buf + more if buf else more
            offsets: list[int] = []
            lengths: list[int] = []
            wire: list[int] = []
            ts: list[tuple[int, int]] = []
            pos, n = 0, len(buf)
            while len(offsets) < max_frames and pos + hlen <= n:
                fields = unpack(buf, pos)
                caplen = fields[2]
                if caplen > limit:
                    what = ("the file's snaplen" if caplen <= MAX_CAPLEN else "any capture can hold")
                    raise LoadError(f"packet record {index + len(offsets)} claims {caplen} bytes, more than "
                                    f"{what} ({limit})", where=f"{where}: byte {pos_file + pos}",
                                    hint="the file is corrupt, or its writer set a wrong snaplen in the header")
                if pos + hlen + caplen > n:
                    break
                offsets.append(pos + hlen)
                lengths.append(caplen)
                wire.append(fields[3])
                ts.append((fields[0], fields[1]))
                pos += hlen + caplen
            if offsets:
                yield PcapChunk(buf, offsets, lengths, wire, ts, index, pos_file + pos)
                index += len(offsets)
                pos_file += pos
                buf = buf[pos:]
                continue
            if not buf and eof:
                return
            if not eof:          # one record larger than the buffer: read the rest of it
                need = hlen + (unpack(buf, 0)[2] if n >= hlen else 0) - n
                more = fh.read(max(need, 1 << 16))
                eof = not more
                buf += more
                continue
            if n < hlen:
                raise LoadError(f"packet record {index} is truncated: its header needs {hlen} bytes, {n} remain",
                                where=f"{where}: byte {pos_file}")
            raise LoadError(f"packet record {index} is truncated: it claims {unpack(buf, 0)[2]} bytes, "
                            f"{n - hlen} remain", where=f"{where}: byte {pos_file}")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_pcap(path: str | os.PathLike) -> list[bytes]:
    """The frames in a pcap file, in order."""
    with PcapReader(path) as reader:
        return [f for chunk in reader.chunks() for f in chunk.frames()]


class PcapWriter:
    """A classic little-endian Ethernet pcap written record by record (constant memory).

    Records go to a temporary file next to ``path``; :meth:`close` renames it to ``path``,
    :meth:`abort` (or leaving a ``with`` block by an exception) removes it.  ``nano``: nanosecond
    timestamps (the second element of a ``ts`` pair is then nanoseconds).
    """

    def __init__(self, path: str | os.PathLike, *, snaplen: int = 65535, nano: bool = False):
        self.path = Path(path)
        self.where = str(path)
        self.count = 0
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent or ".")
        except OSError as exc:
            raise LoadError(f"cannot write pcap: {exc.strerror or exc}", where=self.where) from None
        self._tmp = tmp
        self._fh = os.fdopen(fd, "wb", buffering=1 << 20)
        writer = dpkt.pcap.Writer(self._fh, snaplen=snaplen, linktype=LINKTYPE_ETHERNET, nano=nano)
        self._pack = writer._pack_hdr          # dpkt's record header layout for the header it wrote
        self.nano = nano

    def write(self, frame, ts: tuple[int, int] | None = None) -> None:
        """One record: ``frame`` (bytes-like) with timestamp ``ts`` = (seconds, fraction), default n µs."""
        n = len(frame)
        if ts is None:
            k = self.count
            ts = (k // 1_000_000, (k % 1_000_000) * (1000 if self.nano else 1))
        try:
            self._fh.write(self._pack(ts[0], ts[1], n, n))
            self._fh.write(frame)
        except OSError as exc:
            self.abort()
            raise LoadError(f"cannot write pcap: {exc.strerror or exc}", where=self.where) from None
        self.count += 1

    def write_many(self, frames, ts=None) -> None:
        """Records for ``frames`` (bytes-like) with timestamps ``ts`` (a list of (seconds, fraction); None: n µs),
        in one write."""
        pack = self._pack
        parts = []
        if ts is None:
            k, scale = self.count, 1000 if self.nano else 1
            for f in frames:
                n = len(f)
                parts.append(pack(k // 1_000_000, (k % 1_000_000) * scale, n, n))
                parts.append(f)
                k += 1
        else:
            for f, (sec, frac) in zip(frames, ts, strict=True):
                n = len(f)
                parts.append(pack(sec, frac, n, n))
                parts.append(f)
        try:
            self._fh.write(b"".join(parts))
        except OSError as exc:
            self.abort()
            raise LoadError(f"cannot write pcap: {exc.strerror or exc}", where=self.where) from None
        self.count += len(parts) // 2

    def close(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.close()
            os.replace(self._tmp, self.path)
            try:
                os.chmod(self.path, 0o644)
            except OSError:
                pass
        except OSError as exc:
            self.abort()
            raise LoadError(f"cannot write pcap: {exc.strerror or exc}", where=self.where) from None
        self._fh = None

    def abort(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except OSError:
            pass
        self._fh = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_pcap(path: str | os.PathLike, frames, *, snaplen: int = 65535) -> None:
    """Write ``frames`` as an Ethernet pcap (timestamps 0, 1 µs, 2 µs, ...)."""
    with PcapWriter(path, snaplen=snaplen) as writer:
        writer.write_many([bytes(f) for f in frames])

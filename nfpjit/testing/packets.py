"""Test packets: a hypothesis strategy and a fixed list of interesting frames.

Frames are built from a :class:`PacketSpec` (Ethernet, optional 802.1Q/QinQ
tags, IPv4 with valid header checksum and optional options or IPv6, then TCP,
UDP or ICMP, then a payload), optionally cut short.  Every frame is at least
14 bytes long (``BPF_PROG_TEST_RUN`` refuses shorter ones) and at most
``max_len`` bytes.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = ["PacketSpec", "build_packet", "packets", "crafted_packets", "inet_checksum"]

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
ETH_P_8021Q, ETH_P_8021AD = 0x8100, 0x88A8
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
MIN_FRAME = 14
DEFAULT_MAX = 1518


def inet_checksum(data: bytes) -> int:
    """The Internet (RFC 1071) one's-complement checksum of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class PacketSpec:
    """What to put in a frame.  ``l3``: "ipv4", "ipv6", "arp" or "raw"; ``l4``: "tcp", "udp", "icmp" or "raw"."""

    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02"
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01"
    vlans: tuple[int, ...] = ()          # TCIs, outermost first (two = QinQ, outer tag 0x88a8)
    l3: str = "ipv4"
    l4: str = "udp"
    ethertype: int = 0x88B5              # for l3 == "raw"
    ip_options: bytes = b""              # IPv4 options (padded to 4 bytes)
    ttl: int = 64
    frag: int = 0                        # IPv4 flags+fragment offset field
    src_port: int = 1234
    dst_port: int = 80
    tcp_flags: int = 0x02
    icmp_type: int = 8
    payload: bytes = b""
    truncate: int | None = None          # cut the frame to this many bytes (at least 14)


def _l4(spec: PacketSpec, pseudo: bytes) -> tuple[int, bytes]:
    if spec.l4 == "tcp":
        hdr = struct.pack("!HHIIBBHHH", spec.src_port, spec.dst_port, 1, 0, 5 << 4, spec.tcp_flags, 65535, 0, 0)
        seg = hdr + spec.payload
        csum = inet_checksum(pseudo + struct.pack("!BBH", 0, IPPROTO_TCP, len(seg)) + seg)
        return IPPROTO_TCP, seg[:16] + struct.pack("!H", csum) + seg[18:]
    if spec.l4 == "udp":
        seg = struct.pack("!HHHH", spec.src_port, spec.dst_port, 8 + len(spec.payload), 0) + spec.payload
        csum = inet_checksum(pseudo + struct.pack("!BBH", 0, IPPROTO_UDP, len(seg)) + seg) or 0xFFFF
        return IPPROTO_UDP, seg[:6] + struct.pack("!H", csum) + seg[8:]
    if spec.l4 == "icmp":
        proto = IPPROTO_ICMPV6 if spec.l3 == "ipv6" else IPPROTO_ICMP
        msg = struct.pack("!BBHHH", spec.icmp_type, 0, 0, 1, 1) + spec.payload
        extra = struct.pack("!BBH", 0, proto, len(msg)) if proto == IPPROTO_ICMPV6 else b""
        csum = inet_checksum((pseudo + extra if proto == IPPROTO_ICMPV6 else b"") + msg)
        return proto, msg[:2] + struct.pack("!H", csum) + msg[4:]
    return 253, spec.payload  # 253: experimental protocol number (RFC 3692)


def build_packet(spec: PacketSpec) -> bytes:
    """The frame bytes for ``spec``."""
    l3: bytes
    if spec.l3 == "ipv4":
        src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        proto, seg = _l4(spec, src + dst)
        opts = spec.ip_options + bytes(-len(spec.ip_options) % 4)
        ihl = 5 + len(opts) // 4
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(seg), 0x1234, spec.frag, spec.ttl, proto, 0,
                          src, dst) + opts
        hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
        l3, etype = hdr + seg, ETH_P_IP
    elif spec.l3 == "ipv6":
        src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
        proto, seg = _l4(spec, src + dst)
        l3 = struct.pack("!IHBB16s16s", 6 << 28, len(seg), proto, spec.ttl, src, dst) + seg
        etype = ETH_P_IPV6
    elif spec.l3 == "arp":
        l3 = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, spec.src_mac, bytes([10, 0, 0, 1]), bytes(6),
                         bytes([10, 0, 0, 2])) + spec.payload
        etype = ETH_P_ARP
    else:
        l3, etype = spec.payload, spec.ethertype
    tags = b""
    for n, tci in enumerate(spec.vlans):
        tpid = ETH_P_8021AD if n == 0 and len(spec.vlans) > 1 else ETH_P_8021Q
        tags += struct.pack("!HH", tpid, tci & 0xFFFF)
    frame = spec.dst_mac + spec.src_mac + tags + struct.pack("!H", etype) + l3
    if spec.truncate is not None:
        frame = frame[: max(MIN_FRAME, spec.truncate)]
    return frame


_MACS = st.sampled_from([b"\xff" * 6, b"\x02\x00\x00\x00\x00\x02", b"\x01\x00\x5e\x00\x00\x01", bytes(6)]) | \
    st.binary(min_size=6, max_size=6)
_PORTS = st.sampled_from([0, 22, 53, 80, 443, 8080, 65535]) | st.integers(0, 65535)


@st.composite
def _specs(draw, max_len: int) -> PacketSpec:
    l3 = draw(st.sampled_from(["ipv4", "ipv4", "ipv6", "arp", "raw"]))
    l4 = draw(st.sampled_from(["tcp", "udp", "icmp", "raw"]))
    vlans = tuple(draw(st.lists(st.integers(0, 0xFFFF), max_size=2)))
    opts = draw(st.sampled_from([b"", b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00"]) | st.binary(max_size=40)) \
        if l3 == "ipv4" else b""
    payload = draw(st.binary(max_size=min(200, max_len)))
    spec = PacketSpec(
        dst_mac=draw(_MACS), src_mac=draw(_MACS), vlans=vlans, l3=l3, l4=l4,
        ethertype=draw(st.integers(0, 0xFFFF)), ip_options=opts[:40], ttl=draw(st.sampled_from([0, 1, 64, 255])),
        frag=draw(st.sampled_from([0, 0, 0x4000, 0x2000, 0x0001])), src_port=draw(_PORTS), dst_port=draw(_PORTS),
        tcp_flags=draw(st.integers(0, 0xFF)), icmp_type=draw(st.sampled_from([0, 8, 128, 129, 3])),
        payload=payload,
    )
    if draw(st.integers(0, 9)) == 0:
        spec = PacketSpec(**{**spec.__dict__, "truncate": draw(st.integers(MIN_FRAME, 80))})
    return spec


def packets(*, min_len: int = MIN_FRAME, max_len: int = DEFAULT_MAX) -> st.SearchStrategy[bytes]:
    """Frames: Ethernet (+VLAN/QinQ) + IPv4/IPv6/ARP/other + TCP/UDP/ICMP + payload, sometimes cut short,
    sometimes runt/random bytes.  Every frame is ``min_len`` (at least 14) to ``max_len`` bytes."""
    min_len = max(MIN_FRAME, min_len)
    if max_len < min_len:
        raise ValueError(f"max_len {max_len} is below min_len {min_len}")
    built = _specs(max_len).map(build_packet)
    runts = st.binary(min_size=min_len, max_size=min(max_len, 64))
    return st.one_of(built, built, built, runts).map(lambda b: b[:max_len].ljust(min_len, b"\0"))


def crafted_packets(n: int = 50, *, seed: int = 0) -> list[bytes]:
    """At least ``max(n, 50)`` deterministic frames: every VLAN x L3 x L4 combination, then edge lengths."""
    out: list[bytes] = []
    for vlans in ((), (100,), (0x2064, 200)):
        for l3, opts in (("ipv4", b""), ("ipv4", b"\x01\x01\x01\x00\x94\x04\x00\x00"), ("ipv6", b"")):
            for l4, port in (("tcp", 80), ("udp", 53), ("icmp", 0)):
                out.append(build_packet(PacketSpec(vlans=vlans, l3=l3, l4=l4, ip_options=opts, dst_port=port,
                                                   payload=bytes(range(16)))))
        out.append(build_packet(PacketSpec(vlans=vlans, l3="arp")))
        out.append(build_packet(PacketSpec(vlans=vlans, l3="raw", payload=b"\xaa" * 46)))
    specials = [
        PacketSpec(l4="tcp", dst_port=8080), PacketSpec(l4="tcp", dst_port=22), PacketSpec(l4="tcp", dst_port=443),
        PacketSpec(l4="tcp", dst_port=80, tcp_flags=0x12), PacketSpec(ttl=1), PacketSpec(ttl=0),
        PacketSpec(frag=0x2000), PacketSpec(frag=0x00B9), PacketSpec(dst_mac=b"\xff" * 6),
        PacketSpec(dst_mac=b"\x01\x00\x5e\x00\x00\x01"), PacketSpec(ip_options=b"\x01" * 40),
        PacketSpec(l3="ipv4", l4="raw", payload=b"x" * 20), PacketSpec(l3="ipv6", l4="raw"),
    ]
    out += [build_packet(s) for s in specials]
    big = PacketSpec(l4="udp", payload=bytes(i & 0xFF for i in range(1518 - 42)))
    full = build_packet(big)
    for cut in (14, 15, 17, 18, 20, 33, 34, 35, 41, 42, 53, 54, 59, 60, 64, 128, 1514, 1518):
        out.append(full[:cut])
    out.append(build_packet(PacketSpec(vlans=(5,), l4="tcp", truncate=20)))
    out.append(build_packet(PacketSpec(vlans=(5, 6), l3="ipv6", l4="udp", truncate=40)))
    out.append(bytes(14))
    out.append(b"\xff" * 60)
    rng = random.Random(seed)
    while len(out) < n:
        out.append(rng.randbytes(rng.randint(MIN_FRAME, 200)))
    return out

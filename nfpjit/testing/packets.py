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

__all__ = ["PacketSpec", "build_packet", "packets", "crafted_packets", "application_packets", "inet_checksum",
           "gre_payload", "vxlan_payload", "dns_query"]

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
    """What to put in a frame.  ``l3``: "ipv4", "ipv6", "arp" or "raw"; ``l4``: "tcp", "udp", "icmp" or "raw".

    ``src_ip``/``dst_ip`` are the IPv4 addresses (also ARP's sender and target protocol
    addresses); IPv6 uses ``::1`` and ``::2``.  ``l4 == "raw"`` carries ``payload`` as protocol
    ``ip_proto`` (253 when None).  ``ext_headers`` are IPv6 extension headers, outermost first,
    each ``(type, body)``: the next-header byte is filled in, and for every type but the fragment
    header (44, 6 body bytes) the length byte too; bodies are zero-padded to the header's unit.
    """

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
    src_ip: bytes = b"\x0a\x00\x00\x01"
    dst_ip: bytes = b"\x0a\x00\x00\x02"
    ip_proto: int | None = None          # protocol number for l4 == "raw"
    tos: int = 0                         # IPv4 TOS / IPv6 traffic class
    ext_headers: tuple[tuple[int, bytes], ...] = ()
    arp_op: int = 1                      # 1 request, 2 reply
    tcp_seq: int = 1
    tcp_ack: int = 0


def _l4(spec: PacketSpec, pseudo: bytes) -> tuple[int, bytes]:
    if spec.l4 == "tcp":
        hdr = struct.pack("!HHIIBBHHH", spec.src_port, spec.dst_port, spec.tcp_seq & 0xFFFF_FFFF,
                          spec.tcp_ack & 0xFFFF_FFFF, 5 << 4, spec.tcp_flags, 65535, 0, 0)
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
    # 253: experimental protocol number (RFC 3692)
    return (253 if spec.ip_proto is None else spec.ip_proto), spec.payload


_NO_LENGTH_BYTE = 44          # the IPv6 fragment header has a fixed size


def _ipv6_ext(headers: tuple[tuple[int, bytes], ...], last: int) -> tuple[int, bytes]:
    """The chain of extension headers before protocol ``last``: (first next-header value, bytes)."""
    out = b""
    for n in range(len(headers) - 1, -1, -1):
        kind, body = headers[n]
        nxt = headers[n + 1][0] if n + 1 < len(headers) else last
        if kind == _NO_LENGTH_BYTE:
            out = bytes([nxt, 0]) + body[:6].ljust(6, b"\0") + out
            continue
        unit = 4 if kind == 51 else 8          # AH counts 4-byte words, the others 8-byte units
        size = max(8, -(-(len(body) + 2) // 8) * 8)
        hdr_len = size // unit - (2 if kind == 51 else 1)
        out = bytes([nxt, hdr_len]) + body.ljust(size - 2, b"\0") + out
    return (headers[0][0] if headers else last), out


def build_packet(spec: PacketSpec) -> bytes:
    """The frame bytes for ``spec``."""
    l3: bytes
    if spec.l3 == "ipv4":
        src, dst = spec.src_ip, spec.dst_ip
        proto, seg = _l4(spec, src + dst)
        opts = spec.ip_options + bytes(-len(spec.ip_options) % 4)
        ihl = 5 + len(opts) // 4
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, spec.tos, 4 * ihl + len(seg), 0x1234, spec.frag, spec.ttl,
                          proto, 0, src, dst) + opts
        hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
        l3, etype = hdr + seg, ETH_P_IP
    elif spec.l3 == "ipv6":
        src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
        proto, seg = _l4(spec, src + dst)
        proto, ext = _ipv6_ext(spec.ext_headers, proto)
        seg = ext + seg
        l3 = struct.pack("!IHBB16s16s", 6 << 28 | (spec.tos & 0xFF) << 20, len(seg), proto, spec.ttl, src, dst) + seg
        etype = ETH_P_IPV6
    elif spec.l3 == "arp":
        tha = bytes(6) if spec.arp_op == 1 else spec.dst_mac
        l3 = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, spec.arp_op, spec.src_mac, spec.src_ip, tha,
                         spec.dst_ip) + spec.payload
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


def gre_payload(inner: bytes, *, proto: int = ETH_P_IP, key: int | None = None, csum: bool = False,
                seq: int | None = None, version: int = 0) -> bytes:
    """A GRE header (RFC 2784/2890: optional checksum, key and sequence words) before ``inner``."""
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    out = struct.pack("!HH", flags | (version & 7), proto)
    if csum:
        out += struct.pack("!HH", 0, 0)
    if key is not None:
        out += struct.pack("!I", key & 0xFFFF_FFFF)
    if seq is not None:
        out += struct.pack("!I", seq & 0xFFFF_FFFF)
    if csum:
        c = inet_checksum(out + inner)
        out = out[:4] + struct.pack("!H", c) + out[6:]
    return out + inner


def vxlan_payload(inner_frame: bytes, vni: int, *, flags: int = 0x08) -> bytes:
    """A VXLAN header (RFC 7348: flags byte, 24-bit VNI) before an inner Ethernet frame."""
    return struct.pack("!B3xI", flags, (vni & 0xFFFFFF) << 8) + inner_frame


def dns_query(name: str | bytes, qtype: int = 1, *, flags: int = 0x0100, qdcount: int = 1, ident: int = 0x4242) -> bytes:
    """A DNS message (RFC 1035) with one question; ``name`` dotted text, or raw bytes used as they are."""
    if isinstance(name, str):
        qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"
    else:
        qname = name
    return struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def application_packets() -> list[bytes]:
    """Frames for the kinds of programs people run: blocklists, load balancers, tunnels, DNS, ARP, ...

    Deterministic, ordered so that stateful programs see a story: SYNs to honeypot ports from
    a few /24s, then traffic from those prefixes; several flows to the VIP 10.0.0.2 port 80/443;
    a SYN flood from one source; one TCP connection's handshake, data, FIN and RST in both
    directions and a stray ACK; VLAN tags with low/high/zero VIDs; GRE (plain, key, checksum
    + key + sequence, version 1, IPv6 inside, fragmented), VXLAN (known and unknown VNIs, I flag
    clear), IP-in-IP (good, inner TTL 1, bad inner version); DNS queries (repeated names in
    mixed case, ANY, AAAA, a response, two questions, a compression pointer, an overlong name,
    a truncated name); ICMP/ICMPv6 echo requests and replies; ARP requests, a gratuitous ARP, a
    reply; IPv6 extension-header chains (hop-by-hop, routing type 0 and 4, fragments, destination
    options + AH, no next header, a chain too long to walk); UDP echo and DSCP-relevant ports.
    """
    B = build_packet
    out: list[bytes] = []
    # honeypot SYNs teach a blocklist; later packets from the same /24 and from elsewhere
    for src, port in (("10.1.2.3", 23), ("10.1.2.3", 23), ("192.168.5.5", 2323), ("172.16.9.1", 22)):
        out.append(B(PacketSpec(l4="tcp", src_ip=_ip(src), dst_port=port, tcp_flags=0x02)))
    for src in ("10.1.2.99", "10.1.3.1", "192.168.5.200", "172.16.9.1"):
        out.append(B(PacketSpec(l4="udp", src_ip=_ip(src), dst_port=4000)))
    for proto, port in (("udp", 445), ("udp", 1900), ("udp", 11211), ("tcp", 135), ("udp", 19), ("udp", 0)):
        out.append(B(PacketSpec(l4=proto, dst_port=port, src_ip=_ip("10.7.0.1"))))
    # flows to the VIP, some repeated (a load balancer's connection table hits)
    for n, (src, sport, dport, l4) in enumerate((("10.2.0.1", 40000, 80, "tcp"), ("10.2.0.2", 40001, 80, "tcp"),
                                                 ("10.2.0.3", 51515, 443, "tcp"), ("10.2.0.1", 40000, 80, "tcp"),
                                                 ("10.2.0.4", 1024, 443, "udp"), ("10.2.0.5", 65535, 80, "tcp"),
                                                 ("10.2.0.6", 33333, 80, "tcp"), ("10.2.0.2", 40001, 80, "tcp"))):
        out.append(B(PacketSpec(l4=l4, src_ip=_ip(src), src_port=sport, dst_port=dport, tcp_flags=0x10,
                                payload=bytes([n]) * (n * 9))))
    # a SYN flood from one source, then it completes a handshake
    for n in range(7):
        out.append(B(PacketSpec(l4="tcp", src_ip=_ip("10.9.9.9"), src_port=2000 + n, dst_port=80, tcp_flags=0x02)))
    out.append(B(PacketSpec(l4="tcp", src_ip=_ip("10.9.9.9"), src_port=2000, dst_port=80, tcp_flags=0x10)))
    out.append(B(PacketSpec(l4="tcp", src_ip=_ip("10.9.9.9"), src_port=2007, dst_port=80, tcp_flags=0x02)))
    # one connection both ways: SYN, SYN-ACK, ACK, data, FIN, FIN-ACK; a stray ACK; RST of another
    a, b = _ip("10.3.0.1"), _ip("10.3.0.2")
    for src, dst, sp, dp, flags, payload in ((a, b, 5555, 22, 0x02, b""), (b, a, 22, 5555, 0x12, b""),
                                             (a, b, 5555, 22, 0x10, b""), (a, b, 5555, 22, 0x18, b"ls\n"),
                                             (b, a, 22, 5555, 0x18, b"ok\n"), (a, b, 5555, 22, 0x11, b""),
                                             (b, a, 22, 5555, 0x11, b""), (a, b, 6666, 22, 0x10, b""),
                                             (a, b, 5555, 22, 0x04, b"")):
        out.append(B(PacketSpec(l4="tcp", src_ip=src, dst_ip=dst, src_port=sp, dst_port=dp, tcp_flags=flags,
                                payload=payload)))
    # VLAN tags: low, high and zero VIDs, priority bits, 802.1ad outer tag around IPv6
    for vlans, l3 in (((0xA00A,), "ipv4"), ((1500,), "ipv4"), ((0,), "ipv4"), ((999,), "ipv6"),
                      ((0x2064, 7), "ipv6"), ((42,), "arp")):
        out.append(B(PacketSpec(vlans=vlans, l3=l3, l4="tcp")))
    # tunnels
    inner4 = B(PacketSpec(l4="udp", src_ip=_ip("10.50.0.1"), dst_ip=_ip("10.50.0.2"), payload=b"inner"))[14:]
    inner6 = B(PacketSpec(l3="ipv6", l4="tcp"))[14:]
    tun = {"src_ip": _ip("192.168.0.1"), "dst_ip": _ip("192.168.0.2"), "l4": "raw"}
    for gre in (gre_payload(inner4), gre_payload(inner4, key=7), gre_payload(inner4, key=7),
                gre_payload(inner4, key=0x01020304, csum=True, seq=9), gre_payload(inner6, proto=ETH_P_IPV6),
                gre_payload(inner4, version=1), gre_payload(inner4, proto=0x6558)):
        out.append(B(PacketSpec(**tun, ip_proto=47, payload=gre)))
    out.append(B(PacketSpec(**tun, ip_proto=47, frag=0x2000, payload=gre_payload(inner4))))
    inner_frame = B(PacketSpec(dst_mac=b"\x02\xaa\x00\x00\x00\x01", l4="icmp"))
    for vni, flags in ((10, 0x08), (10, 0x08), (0x2000, 0x08), (11, 0x00), (4095, 0x08)):
        out.append(B(PacketSpec(src_ip=_ip("192.168.0.1"), l4="udp", src_port=49152, dst_port=4789,
                                payload=vxlan_payload(inner_frame, vni, flags=flags))))
    out.append(B(PacketSpec(l4="udp", dst_port=4789, payload=b"\x08\0\0\0\0\0\x0a")))
    bad_version = bytes([0x65]) + inner4[1:]
    for inner in (inner4, B(PacketSpec(ttl=1, l4="tcp"))[14:], bad_version, inner4[:12]):
        out.append(B(PacketSpec(**tun, ip_proto=4, payload=inner)))
    out.append(B(PacketSpec(l4="raw", ip_proto=4, payload=inner4)))   # IP-in-IP to another endpoint
    # DNS
    for name, qtype in (("example.com", 1), ("Example.COM", 1), ("example.com", 28), ("example.com", 1),
                        ("example.com", 1), ("www.nfp.test", 255), ("a.b.c.d.e.f.g.h.i", 16)):
        out.append(B(PacketSpec(l4="udp", src_port=5353, dst_port=53, payload=dns_query(name, qtype))))
    for payload in (dns_query("example.com", flags=0x8180), dns_query("example.com", qdcount=2),
                    dns_query(b"\x03www\xc0\x0c"), dns_query("x" * 63 + "." + "y" * 20), dns_query("nfp.test")[:20],
                    dns_query("nfp.test", flags=0x2800)):
        out.append(B(PacketSpec(l4="udp", src_port=5353, dst_port=53, payload=payload)))
    # ICMP and ICMPv6 echo
    for l3, kind in (("ipv4", 8), ("ipv4", 0), ("ipv6", 128), ("ipv6", 129), ("ipv4", 13)):
        out.append(B(PacketSpec(l3=l3, l4="icmp", icmp_type=kind, payload=b"ping" * 4)))
    out.append(B(PacketSpec(l4="icmp", icmp_type=8, frag=0x2000)))
    # ARP
    for spa, tpa, op in (("10.0.0.1", "10.0.0.5", 1), ("10.0.0.1", "10.0.0.20", 1), ("10.0.0.7", "10.0.0.7", 1),
                         ("10.0.0.3", "10.0.0.2", 2), ("10.0.0.1", "10.0.0.9", 1)):
        out.append(B(PacketSpec(l3="arp", src_ip=_ip(spa), dst_ip=_ip(tpa), arp_op=op)))
    # IPv6 extension headers
    for chain, l4 in ((((0, b""),), "tcp"), (((0, b""), (43, b"\x04\x00" + bytes(20))), "udp"),
                      (((43, b"\x00\x01"),), "udp"), (((44, b"\x00\x01\0\0\0\x09"),), "udp"),
                      (((44, b"\x00\xb9\0\0\0\x09"),), "udp"), (((60, b""), (51, bytes(14))), "tcp"),
                      (((60, b""),), "raw"), (((0, b""), (60, b""), (60, b""), (60, b""), (60, b""), (60, b"")), "udp")):
        out.append(B(PacketSpec(l3="ipv6", l4=l4, ip_proto=59 if l4 == "raw" else None, ext_headers=chain)))
    # UDP echo / reflector ports and DSCP-relevant traffic
    for l3, port, tos in (("ipv4", 7, 0), ("ipv6", 9000, 0), ("ipv4", 5060, 0xB8), ("ipv4", 20000, 1),
                          ("ipv6", 22, 0), ("ipv4", 9000, 0)):
        out.append(B(PacketSpec(l3=l3, l4="udp", dst_port=port, tos=tos, payload=b"echo")))
    out.append(B(PacketSpec(l4="tcp", dst_port=5000, src_port=443, tos=0x03)))
    return out


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
    """At least ``max(n, 50)`` deterministic frames: every VLAN x L3 x L4 combination, edge lengths,
    then :func:`application_packets`."""
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
    out += application_packets()
    rng = random.Random(seed)
    while len(out) < n:
        out.append(rng.randbytes(rng.randint(MIN_FRAME, 200)))
    return out

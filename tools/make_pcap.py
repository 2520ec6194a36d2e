"""Write a large, realistic Ethernet pcap: deterministic from a seed, streaming (constant memory).

    python tools/make_pcap.py OUT.pcap [--frames 1000000] [--seed 1] [--flows 4000]

The traffic is a mix of what an XDP program meets on a real port:

* IPv4 TCP (about 52%: web ports 80/443/8080, ssh, random high ports; SYN, ACK, PSH|ACK, FIN, RST),
  UDP (about 18%: DNS, QUIC, NTP, random), ICMP echo (3%);
* 802.1Q VLAN-tagged IPv4 (8%) and a few double-tagged (802.1ad + 802.1Q) frames;
* IPv6 TCP, UDP and ICMPv6 (12%), some with a hop-by-hop extension header;
* ARP (2%), LLDP-like frames of other EtherTypes, IPv4 fragments and IPv4 options;
* malformed frames (about 3%): shorter than an Ethernet header, IPv4/IPv6/TCP headers cut off,
  IHL below 5 or pointing past the frame, total length larger than the frame, IP version 7.

Sizes follow an IMIX-like spread (minimum-size frames, ~576 and ~1500-byte frames, the rest in
between; every frame at most 1514 bytes, so the default --mtu of ``nfpjit run`` takes them).
Packets belong to flows drawn from a pool with a skewed popularity (a few flows carry much of
the traffic, as real traffic does), and the pool slowly turns over.  Timestamps start at
2026-01-01 and advance by exponentially distributed gaps of 1 µs on average.  Header checksums
(IPv4, TCP, UDP, ICMP, ICMPv6) are correct on well-formed frames.

The same --seed and --frames give the same bytes.  Prints what it wrote (counts per kind).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nfpjit.pcapio import PcapWriter  # noqa: E402

START = 1_767_225_600          # 2026-01-01T00:00:00Z
ETH_IP, ETH_IP6, ETH_ARP, ETH_VLAN, ETH_QINQ, ETH_LLDP = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x88CC
TCP, UDP, ICMP, ICMP6, HOPOPT = 6, 17, 1, 58, 0
MAX_FRAME = 1514

# (kind, weight): what each frame is
KINDS = (("tcp4", 52), ("udp4", 18), ("icmp4", 3), ("vlan", 8), ("qinq", 1), ("ip6", 12), ("arp", 2),
         ("other", 0.5), ("frag4", 0.5), ("malformed", 3))
MALFORMED = ("runt", "ip_cut", "ihl_small", "ihl_past_end", "tot_len_long", "bad_version", "tcp_cut", "ip6_cut")
TCP_PORTS = (80, 443, 8080, 22, 25, 3306)
UDP_PORTS = (53, 443, 123, 4789, 5353)


def csum(data: bytes) -> int:
    """The Internet checksum of ``data`` (ones' complement of the ones' complement sum of 16-bit words):
    the sum of big-endian words modulo 0xFFFF is the number modulo 0xFFFF, since 2**16 = 1 (mod 0xFFFF)."""
    if len(data) & 1:
        data += b"\0"
    n = int.from_bytes(data, "big")
    s = n % 0xFFFF
    if s == 0 and n:
        s = 0xFFFF
    return ~s & 0xFFFF


@dataclass
class Flow:
    v6: bool
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    smac: bytes
    dmac: bytes
    vlan: int          # 0: untagged
    seq: int
    ident: int


class Traffic:
    """The frame generator: ``next()`` -> (kind, frame bytes)."""

    def __init__(self, seed: int, flows: int):
        self.rng = random.Random(seed)
        r = self.rng
        self.payload = r.randbytes(1 << 16)
        self.kinds = [k for k, _ in KINDS]
        self.weights = [w for _, w in KINDS]
        self.pool = [self._new_flow() for _ in range(flows)]
        self.macs = [bytes([0x02, 0, 0, 0, r.randrange(256), r.randrange(256)]) for _ in range(64)]

    # -- flows ---------------------------------------------------------------------------------

    def _addr4(self) -> bytes:
        r = self.rng
        net = r.choice((b"\x0a", b"\xc0\xa8", b"\xac\x10", b"\x5d\xb8"))
        return net + r.randbytes(4 - len(net))

    def _new_flow(self, *, v6: bool | None = None, proto: int | None = None) -> Flow:
        r = self.rng
        if v6 is None:
            v6 = r.random() < 0.12
        if proto is None:
            proto = r.choices((TCP, UDP, ICMP6 if v6 else ICMP), (70, 26, 4))[0]
        if v6:
            src = b"\x20\x01\x0d\xb8" + r.randbytes(12)
            dst = b"\x20\x01\x0d\xb8" + r.randbytes(12)
        else:
            src, dst = self._addr4(), self._addr4()
        ports = TCP_PORTS if proto == TCP else UDP_PORTS
        dport = r.choice(ports) if r.random() < 0.8 else r.randrange(1, 65536)
        smac = bytes([0x02, 0, 0, 1, r.randrange(256), r.randrange(256)])
        dmac = bytes([0x02, 0, 0, 2, 0, r.randrange(4)])
        vlan = r.randrange(1, 4095) if r.random() < 0.15 else 0
        return Flow(v6, proto, src, dst, r.randrange(1024, 65536), dport, smac, dmac, vlan, r.getrandbits(32),
                    r.getrandbits(16))

    def _flow(self, *, v6: bool | None = None, proto: int | None = None) -> Flow:
        """A flow of the pool, popular ones more often; sometimes a new flow replaces one."""
        r = self.rng
        pool = self.pool
        if r.random() < 0.02:
            pool[r.randrange(len(pool))] = self._new_flow()
        for _ in range(8):
            f = pool[int(len(pool) * r.random() ** 3)]      # skewed: low indices are the heavy hitters
            if (v6 is None or f.v6 == v6) and (proto is None or f.proto == proto):
                return f
        f = self._new_flow(v6=v6, proto=proto)
        pool[r.randrange(len(pool))] = f
        return f

    # -- sizes and payloads ----------------------------------------------------------------------

    def _size(self) -> int:
        """A frame size, IMIX-like."""
        r = self.rng
        x = r.random()
        if x < 0.45:
            return 60 + r.randrange(8)
        if x < 0.62:
            return 570 + r.randrange(24)
        if x < 0.88:
            return 1490 + r.randrange(MAX_FRAME - 1490 + 1)
        return r.randrange(64, MAX_FRAME + 1)

    def _bytes(self, n: int) -> bytes:
        if n <= 0:
            return b""
        o = self.rng.randrange(len(self.payload) - n) if n < len(self.payload) else 0
        return self.payload[o:o + n]

    # -- headers ---------------------------------------------------------------------------------

    @staticmethod
    def _eth(f: Flow, ethertype: int, vlans=()) -> bytes:
        out = f.dmac + f.smac
        for tpid, vid in vlans:
            out += struct.pack("!HH", tpid, vid)
        return out + struct.pack("!H", ethertype)

    def _l4(self, f: Flow, room: int, pseudo: bytes) -> bytes:
        """The transport header and payload filling ``room`` bytes, checksum over ``pseudo``."""
        r = self.rng
        if f.proto == TCP:
            flags = r.choices((0x02, 0x10, 0x18, 0x11, 0x04, 0x12), (8, 50, 35, 4, 1, 2))[0]
            f.seq = (f.seq + r.randrange(1, 1460)) & 0xFFFFFFFF
            body = self._bytes(room - 20)
            hdr = struct.pack("!HHIIBBHHH", f.sport, f.dport, f.seq, r.getrandbits(32), 0x50, flags,
                              r.choice((65535, 29200, 502)), 0, 0)
            c = csum(pseudo + struct.pack("!HH", TCP, len(hdr) + len(body)) + hdr + body)
            return hdr[:16] + struct.pack("!H", c) + hdr[18:] + body
        if f.proto == UDP:
            body = self._bytes(room - 8)
            ln = 8 + len(body)
            c = csum(pseudo + struct.pack("!HH", UDP, ln) + struct.pack("!HHHH", f.sport, f.dport, ln, 0) + body)
            return struct.pack("!HHHH", f.sport, f.dport, ln, c or 0xFFFF) + body
        # ICMP / ICMPv6 echo request or reply
        body = self._bytes(room - 8)
        typ = (128 if r.random() < 0.5 else 129) if f.v6 else (8 if r.random() < 0.5 else 0)
        hdr = struct.pack("!BBHHH", typ, 0, 0, f.ident, f.seq & 0xFFFF)
        f.seq += 1
        if f.v6:
            c = csum(pseudo + struct.pack("!IxxxB", len(hdr) + len(body), ICMP6) + hdr + body)
        else:
            c = csum(hdr + body)
        return hdr[:2] + struct.pack("!H", c) + hdr[4:] + body

    def _ip4(self, f: Flow, l2: bytes, size: int, *, frag: bool = False, options: bytes = b"") -> bytes:
        room = max(size - len(l2) - 20 - len(options), 28)
        l4 = self._l4(f, room, f.src + f.dst)
        f.ident = (f.ident + 1) & 0xFFFF
        ihl = 5 + len(options) // 4
        fragoff = (0x2000 | self.rng.randrange(1, 180)) if frag else 0x4000     # MF + offset, or DF
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(l4), f.ident, fragoff,
                          self.rng.choice((64, 63, 128, 255)), f.proto, 0, f.src, f.dst) + options
        c = csum(hdr)
        return l2 + hdr[:10] + struct.pack("!H", c) + hdr[12:] + l4

    def _ip6(self, f: Flow, l2: bytes, size: int) -> bytes:
        r = self.rng
        ext = b""
        nxt = f.proto
        if r.random() < 0.05:       # hop-by-hop options header (router alert + padding)
            ext = struct.pack("!BB", f.proto, 0) + bytes.fromhex("05020000") + bytes.fromhex("0100")
            nxt = HOPOPT
        room = max(size - len(l2) - 40 - len(ext), 28)
        l4 = self._l4(f, room, f.src + f.dst)
        hdr = struct.pack("!IHBB16s16s", 0x60000000 | r.getrandbits(20), len(ext) + len(l4), nxt, 64, f.src, f.dst)
        return l2 + hdr + ext + l4

    # -- frames ----------------------------------------------------------------------------------

    def next(self) -> tuple[str, bytes]:
        r = self.rng
        kind = r.choices(self.kinds, self.weights)[0]
        size = self._size()
        if kind == "tcp4":
            f = self._flow(v6=False, proto=TCP)
            return kind, self._ip4(f, self._eth(f, ETH_IP), size)
        if kind == "udp4":
            f = self._flow(v6=False, proto=UDP)
            return kind, self._ip4(f, self._eth(f, ETH_IP), size)
        if kind == "icmp4":
            f = self._flow(v6=False, proto=ICMP)
            return kind, self._ip4(f, self._eth(f, ETH_IP), min(size, 1014))
        if kind in ("vlan", "qinq"):
            f = self._flow(v6=False)
            vid = f.vlan or r.randrange(1, 4095)
            tags = ((ETH_VLAN, vid),) if kind == "vlan" else ((ETH_QINQ, r.randrange(1, 4095)), (ETH_VLAN, vid))
            return kind, self._ip4(f, self._eth(f, ETH_IP, tags), size)
        if kind == "ip6":
            f = self._flow(v6=True)
            return kind, self._ip6(f, self._eth(f, ETH_IP6), max(size, 86))
        if kind == "arp":
            f = self._flow(v6=False)
            op = r.choice((1, 2))
            arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IP, 6, 4, op, f.smac, f.src, bytes(6) if op == 1 else f.dmac,
                              f.dst)
            eth = (b"\xff" * 6 if op == 1 else f.dmac) + f.smac + struct.pack("!H", ETH_ARP)
            return kind, eth + arp + bytes(60 - 14 - len(arp))
        if kind == "other":
            f = self._flow()
            return kind, self._eth(f, r.choice((ETH_LLDP, 0x88F7, 0x8863))) + self._bytes(max(46, size - 14))
        if kind == "frag4":
            f = self._flow(v6=False, proto=UDP)
            opts = bytes.fromhex("94040000") if r.random() < 0.5 else b""        # router alert option
            return kind, self._ip4(f, self._eth(f, ETH_IP), size, frag=True, options=opts)
        return self._malformed()

    def _malformed(self) -> tuple[str, bytes]:
        r = self.rng
        how = r.choice(MALFORMED)
        f = self._flow(v6=False, proto=TCP)
        good = self._ip4(f, self._eth(f, ETH_IP), 60 + r.randrange(200))
        b = bytearray(good)
        if how == "runt":
            b = b[:r.randrange(0, 14)]
        elif how == "ip_cut":
            b = b[:14 + r.randrange(1, 20)]
        elif how == "ihl_small":
            b[14] = 0x40 | r.randrange(0, 5)
        elif how == "ihl_past_end":
            b = b[:14 + 20 + 8]
            b[14] = 0x4F
        elif how == "tot_len_long":
            b[16:18] = struct.pack("!H", len(b) - 14 + r.randrange(1, 2000))
        elif how == "bad_version":
            b[14] = 0x70 | (b[14] & 0x0F)
        elif how == "tcp_cut":
            b = b[:14 + 20 + r.randrange(1, 20)]
        else:   # ip6_cut
            f6 = self._flow(v6=True)
            b = bytearray(self._ip6(f6, self._eth(f6, ETH_IP6), 100)[:14 + r.randrange(1, 40)])
        return f"malformed:{how}", bytes(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the pcap to write")
    ap.add_argument("--frames", type=int, default=1_000_000, help="number of frames (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--flows", type=int, default=4000, help="size of the flow pool (default 4000)")
    args = ap.parse_args(argv)
    if args.frames < 0 or args.flows < 1:
        ap.error("--frames must be >= 0 and --flows >= 1")
    traffic = Traffic(args.seed, args.flows)
    rng = traffic.rng
    kinds: Counter = Counter()
    total = 0
    start = time.perf_counter()
    t_us = 0.0
    with PcapWriter(args.out) as w:
        for _ in range(args.frames):
            kind, frame = traffic.next()
            t_us += rng.expovariate(1.0)
            us = int(t_us)
            w.write(frame, (START + us // 1_000_000, us % 1_000_000))
            kinds[kind.split(":")[0]] += 1
            total += len(frame)
    dt = time.perf_counter() - start
    print(f"wrote {args.out}: {args.frames} frames, {total} bytes ({total / max(args.frames, 1):.0f} per frame) "
          f"in {dt:.1f} s")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

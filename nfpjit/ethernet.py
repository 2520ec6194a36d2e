"""Ethernet facts both sides model: what a receiver derives from a frame before any program runs.

A leaf module (like :mod:`nfpjit.bits`): the reference interpreter (``__sk_buff`` of a TC program)
and the NIC's firmware model (``isa/sim``: the packet metadata it fills) both import it, so the two
never disagree on how a frame is classified.

* :func:`eth_protocol_and_type` — ``skb->protocol`` and ``skb->pkt_type`` as the kernel's
  ``eth_type_trans`` sets them.
* :func:`rx_hash` — the receive hash the NIC's firmware computes for ``skb->hash``: Toeplitz (the
  RSS hash of NICs) with the widely published 40-byte default key, over the IPv4/IPv6 source and
  destination addresses, plus the source and destination ports for TCP and UDP (no fragments);
  0 for anything else.  The kernel's own ``skb->hash`` (``skb_get_hash``: a jhash of the flow
  dissector's keys with a per-boot random seed) is a different number, and the skb that
  ``BPF_PROG_TEST_RUN`` builds carries no hash at all (0).
"""

from __future__ import annotations

ETH_HLEN = 14

# Packet types eth_type_trans assigns (include/uapi/linux/if_packet.h).
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3
ETH_P_802_3, ETH_P_802_2 = 0x0001, 0x0004
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_TCP, IPPROTO_UDP = 6, 17


def eth_protocol_and_type(frame: bytes, dev_addr: bytes = bytes(6), broadcast: bytes = bytes(6)) -> tuple[int, int]:
    """(skb->protocol as the __be16 value reads on a little-endian host, pkt_type) as eth_type_trans sets them.

    The defaults describe the loopback device BPF_PROG_TEST_RUN uses: its
    hardware and broadcast addresses are all zeros, so an ff:ff:... frame
    counts as multicast there.
    """
    if len(frame) < ETH_HLEN:
        return 0, PACKET_HOST
    dest = frame[:6]
    if dest == dev_addr:
        pkt_type = PACKET_HOST
    elif dest[0] & 1:
        pkt_type = PACKET_BROADCAST if dest == broadcast else PACKET_MULTICAST
    else:
        pkt_type = PACKET_OTHERHOST
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype < 0x600:
        # 802.3 frame: raw IPX if the payload starts 0xFFFF, else 802.2 LLC.
        ethertype = ETH_P_802_3 if frame[14:16] == b"\xff\xff" else ETH_P_802_2
    return int.from_bytes(ethertype.to_bytes(2, "big"), "little"), pkt_type


#: the default RSS key published with the Toeplitz hash (and used by many NIC drivers)
RSS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")


def toeplitz(data: bytes, key: bytes = RSS_KEY) -> int:
    """The 32-bit Toeplitz hash of ``data`` (at most ``len(key) - 4`` bytes) under ``key``."""
    if len(data) > len(key) - 4:
        raise ValueError(f"{len(data)} bytes of input need a key of at least {len(data) + 4} bytes")
    k = int.from_bytes(key, "big")
    kbits = 8 * len(key)
    result = 0
    for i, byte in enumerate(data):
        for bit in range(8):
            if byte & (0x80 >> bit):
                pos = 8 * i + bit
                result ^= (k >> (kbits - 32 - pos)) & 0xFFFF_FFFF
    return result


def rx_hash_input(frame: bytes) -> bytes:
    """The bytes the receive hash covers (empty: the frame gets no hash)."""
    if len(frame) < ETH_HLEN:
        return b""
    ethertype = int.from_bytes(frame[12:14], "big")
    l3 = frame[ETH_HLEN:]
    if ethertype == ETH_P_IP and len(l3) >= 20 and l3[0] >> 4 == 4:
        ihl = 4 * (l3[0] & 15)
        addrs = l3[12:20]
        fragment = int.from_bytes(l3[6:8], "big") & 0x3FFF
        proto, l4 = l3[9], l3[ihl:]
    elif ethertype == ETH_P_IPV6 and len(l3) >= 40 and l3[0] >> 4 == 6:
        addrs = l3[8:40]
        fragment = 0
        proto, l4 = l3[6], l3[40:]
    else:
        return b""
    if proto in (IPPROTO_TCP, IPPROTO_UDP) and not fragment and len(l4) >= 4:
        return addrs + l4[:4]
    return addrs


def rx_hash(frame: bytes) -> int:
    """The NIC firmware's receive hash of a frame (see the module docstring); 0 when it has none."""
    data = rx_hash_input(frame)
    return toeplitz(data) if data else 0


__all__ = ["eth_protocol_and_type", "rx_hash", "rx_hash_input", "toeplitz", "RSS_KEY", "ETH_HLEN",
           "PACKET_HOST", "PACKET_BROADCAST", "PACKET_MULTICAST", "PACKET_OTHERHOST"]

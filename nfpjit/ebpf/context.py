"""Program contexts: XDP ``struct xdp_md`` and TC ``struct __sk_buff`` over a packet buffer.

The packet lives in a :class:`PacketBuffer` with headroom in front and
tailroom behind, so ``bpf_xdp_adjust_head/tail/meta`` move ``data``,
``data_end`` and ``data_meta`` exactly as the kernel does and fail with the
kernel's error codes.  The context structs are what the program sees through
r1: their pointer fields are declared ``__u32`` in the UAPI but the verifier
rewrites a 4-byte load of them into a load of the full 64-bit pointer, so
:meth:`load` returns a full address there.  Offsets are the kernel UAPI's.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.ebpf.maps import Errno
from nfpjit.ethernet import eth_protocol_and_type
from nfpjit.ebpf.result import SKB_META_FIELDS, PacketIn

XDP_PACKET_HEADROOM = 256
DEFAULT_TAILROOM = 256
# The kernel keeps a struct xdp_frame (40 bytes on 64-bit) at the start of the
# headroom; bpf_xdp_adjust_head/meta may not move data or data_meta into it.
XDP_FRAME_SIZE = 40
ETH_HLEN = 14
# Metadata length must be a multiple of 4 and fit skb_shared_info.meta_len (a u8).
XDP_META_MAX = 255
# BPF_PROG_TEST_RUN's XDP frame: 4096 bytes, the last 320 reserved for struct
# skb_shared_info, so bpf_xdp_adjust_tail can grow a packet up to 3520 bytes.
TEST_RUN_FRAME_SIZE = 4096
SKB_SHARED_INFO_SIZE = 320


def kernel_tailroom(length: int, headroom: int = XDP_PACKET_HEADROOM) -> int:
    """The growth room BPF_PROG_TEST_RUN leaves behind a packet of ``length`` bytes."""
    return max(0, TEST_RUN_FRAME_SIZE - SKB_SHARED_INFO_SIZE - headroom - length)


class PacketBuffer:
    """A packet with headroom/tailroom; ``data``/``data_end``/``data_meta`` are offsets into ``buf``."""

    def __init__(self, data: bytes, *, headroom: int = XDP_PACKET_HEADROOM, tailroom: int | None = DEFAULT_TAILROOM):
        if tailroom is None:
            tailroom = kernel_tailroom(len(data), headroom)
        self.buf = bytearray(headroom) + bytearray(data) + bytearray(tailroom)
        self.data = headroom
        self.data_end = headroom + len(data)
        self.data_meta = headroom  # no metadata: data_meta == data
        self.hard_end = len(self.buf)

    @property
    def length(self) -> int:
        return self.data_end - self.data

    def bytes(self) -> bytes:
        """The packet proper, from data to data_end."""
        return bytes(self.buf[self.data : self.data_end])

    def output(self) -> bytes:
        """What BPF_PROG_TEST_RUN hands back: metadata (if any) followed by the packet."""
        return bytes(self.buf[self.data_meta : self.data_end])

    def adjust_head(self, delta: int) -> int:
        metalen = self.data - self.data_meta
        new = self.data + delta
        if new < XDP_FRAME_SIZE + metalen or new > self.data_end - ETH_HLEN:
            return -Errno.EINVAL
        if metalen:
            self.buf[self.data_meta + delta : new] = self.buf[self.data_meta : self.data]
        self.data_meta += delta
        self.data = new
        return 0

    def adjust_tail(self, delta: int) -> int:
        new = self.data_end + delta
        if new > self.hard_end or new < self.data + ETH_HLEN:
            return -Errno.EINVAL
        if delta > 0:
            self.buf[self.data_end : new] = bytes(delta)
        self.data_end = new
        return 0

    def adjust_meta(self, delta: int) -> int:
        meta = self.data_meta + delta
        metalen = self.data - meta
        if meta < XDP_FRAME_SIZE or meta > self.data:
            return -Errno.EINVAL
        if metalen & 3 or metalen > XDP_META_MAX:
            return -Errno.EACCES
        self.data_meta = meta
        return 0


@dataclass(frozen=True)
class CtxField:
    name: str
    offset: int
    size: int
    pointer: str | None = None  # "data", "data_end", "data_meta": loads yield an address
    writable: bool = False


class Context:
    """Base: a struct the program reads through r1; ``pkt_base`` is the packet region's address."""

    SIZE = 0
    FIELDS: tuple[CtxField, ...] = ()
    NARROW_LOADS = False

    def __init__(self, packet: PacketBuffer, pin: PacketIn):
        self.packet = packet
        self.pin = pin
        self.pkt_base = 0
        self.raw = bytearray(self.SIZE)
        self._by_off = {f.offset: f for f in self.FIELDS}

    def field_at(self, off: int, size: int) -> CtxField | None:
        for f in self.FIELDS:
            if f.offset <= off and off + size <= f.offset + f.size:
                return f
        return None

    def _pointer(self, which: str) -> int:
        return self.pkt_base + getattr(self.packet, which)

    def value_of(self, f: CtxField) -> int:
        return int.from_bytes(self.raw[f.offset : f.offset + f.size], "little")

    def load(self, off: int, size: int) -> int | None:
        """The value a load of ``size`` bytes at ``off`` gives, or None if the verifier would refuse it."""
        f = self.field_at(off, size)
        if f is None:
            return None
        if f.pointer is not None:
            if off != f.offset or size != 4:
                return None
            return self._pointer(f.pointer)
        if size != f.size and not (self.NARROW_LOADS and off % size == 0):
            return None
        if off % size:
            return None
        full = self.value_of(f).to_bytes(f.size, "little")
        rel = off - f.offset
        return int.from_bytes(full[rel : rel + size], "little")

    def store(self, off: int, size: int, value: int) -> bool:
        f = self._by_off.get(off)
        if f is None or not f.writable or size != f.size:
            return False
        self.raw[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return True


class XdpContext(Context):
    """``struct xdp_md``: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex."""

    SIZE = 24
    FIELDS = (
        CtxField("data", 0, 4, "data"),
        CtxField("data_end", 4, 4, "data_end"),
        CtxField("data_meta", 8, 4, "data_meta"),
        CtxField("ingress_ifindex", 12, 4),
        CtxField("rx_queue_index", 16, 4),
        CtxField("egress_ifindex", 20, 4),
    )

    def __init__(self, packet: PacketBuffer, pin: PacketIn):
        super().__init__(packet, pin)
        self.raw[12:16] = (pin.ingress_ifindex & 0xFFFF_FFFF).to_bytes(4, "little")
        self.raw[16:20] = (pin.rx_queue_index & 0xFFFF_FFFF).to_bytes(4, "little")


#: __sk_buff.cb[0..4]: bytes [SKB_CB_START, SKB_CB_END) of the struct
SKB_CB_START, SKB_CB_END = 48, 68
#: __sk_buff fields the kernel keeps in 16 bits (stores truncate)
_SKB_U16_FIELDS = frozenset({"queue_mapping", "tc_index", "tc_classid"})


class SkbContext(Context):
    """``struct __sk_buff`` for TC direct-action classifiers (UAPI offsets; 192 bytes)."""

    SIZE = 192
    NARROW_LOADS = True
    FIELDS = (
        CtxField("len", 0, 4),
        CtxField("pkt_type", 4, 4),
        CtxField("mark", 8, 4, writable=True),
        CtxField("queue_mapping", 12, 4, writable=True),
        CtxField("protocol", 16, 4),
        CtxField("vlan_present", 20, 4),
        CtxField("vlan_tci", 24, 4),
        CtxField("vlan_proto", 28, 4),
        CtxField("priority", 32, 4, writable=True),
        CtxField("ingress_ifindex", 36, 4),
        CtxField("ifindex", 40, 4),
        CtxField("tc_index", 44, 4, writable=True),
        *(CtxField(f"cb[{i}]", 48 + 4 * i, 4, writable=True) for i in range(5)),
        CtxField("hash", 68, 4),
        CtxField("tc_classid", 72, 4, writable=True),
        CtxField("data", 76, 4, "data"),
        CtxField("data_end", 80, 4, "data_end"),
        CtxField("napi_id", 84, 4),
        # 88..139: family .. local_port, socket fields TC programs may not read.
        CtxField("data_meta", 140, 4, "data_meta"),
        # 144: flow_keys (flow dissector only).
        CtxField("tstamp", 152, 8, writable=True),
        CtxField("wire_len", 160, 4),
        CtxField("gso_segs", 164, 4),
        CtxField("sk", 168, 8),
        CtxField("gso_size", 176, 4),
        CtxField("tstamp_type", 180, 1),
        CtxField("hwtstamp", 184, 8),
    )

    def __init__(self, packet: PacketBuffer, pin: PacketIn):
        super().__init__(packet, pin)
        frame = packet.bytes()
        protocol, pkt_type = eth_protocol_and_type(frame)
        put = lambda off, v: self.raw.__setitem__(slice(off, off + 4), (v & 0xFFFF_FFFF).to_bytes(4, "little"))  # noqa: E731
        put(4, pkt_type)
        put(16, protocol)
        # As BPF_PROG_TEST_RUN sets up the skb when given a __sk_buff context (the
        # kernel oracle always passes one): the device is the ingress device (the oracle
        # passes ifindex = ingress_ifindex; without one, loopback: 1), ingress_ifindex is copied from the
        # context, wire_len is the frame length, mark, priority and cb come from ctx_in.
        put(40, pin.ingress_ifindex or 1)
        put(36, pin.ingress_ifindex)
        put(160, len(frame))
        put(8, pin.mark)
        put(32, pin.priority)
        for i, word in enumerate(pin.cb):
            put(48 + 4 * i, word)
        put(68, pin.skb_hash())

    def clear_hash(self) -> None:
        """skb_clear_hash (bpf_skb_store_bytes with BPF_F_INVALIDATE_HASH): skb->hash reads 0."""
        self.raw[68:72] = bytes(4)

    def metadata(self) -> dict[str, int]:
        """The writable metadata after a run (RunResult.skb)."""
        by_name = {f.name: f for f in self.FIELDS}
        return {name: self.value_of(by_name[name]) for name in SKB_META_FIELDS}

    def value_of(self, f: CtxField) -> int:
        if f.name == "len":
            return self.packet.length
        return super().value_of(f)

    def load(self, off: int, size: int) -> int | None:
        if off % size:
            return None
        if SKB_CB_START <= off and off + size <= SKB_CB_END:     # cb[] is one 20-byte area (dw loads too)
            return int.from_bytes(self.raw[off : off + size], "little")
        return super().load(off, size)

    def store(self, off: int, size: int, value: int) -> bool:
        """The verifier's rules for TC context stores (bpf_convert_ctx_access): cb[] takes any aligned
        width; tc_index, tc_classid and queue_mapping are 16-bit fields (a queue_mapping of 0xffff or
        more is ignored); mark and priority are 32-bit."""
        if off % size:
            return False
        if SKB_CB_START <= off and off + size <= SKB_CB_END:
            self.raw[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            return True
        f = self._by_off.get(off)
        if f is None or not f.writable or size != f.size:
            return False
        value &= 0xFFFF_FFFF
        if f.name == "queue_mapping" and value >= 0xFFFF:
            return True
        if f.name in _SKB_U16_FIELDS:
            value &= 0xFFFF
        return super().store(off, size, value)


__all__ = ["kernel_tailroom", "TEST_RUN_FRAME_SIZE", "SKB_SHARED_INFO_SIZE", "PacketBuffer", "Context", "XdpContext", "SkbContext", "CtxField", "eth_protocol_and_type",
           "XDP_PACKET_HEADROOM", "DEFAULT_TAILROOM", "XDP_FRAME_SIZE", "ETH_HLEN", "XDP_META_MAX"]

"""Kernel helper functions for the reference interpreter: one table, helper id -> implementation.

Each implementation takes the running machine (:class:`nfpjit.ebpf.interp.Machine`)
and the argument registers r1..rN as 64-bit numbers and returns r0.  They
follow the kernel's code in net/core/filter.c and kernel/bpf/helpers.c,
including its error returns; memory arguments are read and written through
the machine, so a bad pointer is a fault like any other bad access.
Anything a helper needs from the machine: ``read``/``write``/``read_cstring``,
``map_at``/``value_ptr``, ``packet``/``sync_packet``, ``rng``, ``clock``,
``redirect``, ``trace_output``/``perf_output``, ``tail_call``, ``call_function`` and
``program.prog_type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from nfpjit.bits import MASK32, s32, sext, u32, u64
from nfpjit.ebpf.maps import ArrayMap, Errno, HashMap
from nfpjit.ebpf.opcodes import Helper, MapType, ProgType, TcAction, XdpAction
from nfpjit.ebpf.result import Trap


@dataclass(frozen=True)
class HelperSpec:
    helper: Helper
    nargs: int
    fn: Callable[..., int]
    required: int | None = None  # arguments that must be initialised (default: all nargs)

    @property
    def needed(self) -> int:
        return self.nargs if self.required is None else self.required


def _trap(reason: str) -> Trap:
    return Trap(reason)


# -- maps ---------------------------------------------------------------------------

def map_lookup_elem(m, map_ptr: int, key_ptr: int) -> int:
    bpf_map = m.map_at(map_ptr)
    key = m.read(key_ptr, bpf_map.key_size)
    value = bpf_map.lookup(key)
    if value is None:
        return 0
    if bpf_map.mapdef.type == MapType.PROG_ARRAY:
        raise _trap("bpf_map_lookup_elem on a prog array")
    return m.value_ptr(value, bpf_map.name)


def map_update_elem(m, map_ptr: int, key_ptr: int, value_ptr: int, flags: int) -> int:
    bpf_map = m.map_at(map_ptr)
    key = m.read(key_ptr, bpf_map.key_size)
    value = m.read(value_ptr, bpf_map.value_size)
    return bpf_map.update(key, value, flags)


def map_delete_elem(m, map_ptr: int, key_ptr: int) -> int:
    bpf_map = m.map_at(map_ptr)
    return bpf_map.delete(m.read(key_ptr, bpf_map.key_size))


# -- time, randomness, cpu ---------------------------------------------------------

def ktime_get_ns(m) -> int:
    return m.clock()


def get_prandom_u32(m) -> int:
    return m.rng.getrandbits(32)


def get_smp_processor_id(m) -> int:
    return 0


# -- output --------------------------------------------------------------------------

_CONV = re.compile(rb"%([-+ 0#]*)(\d*)(ll|l|h|hh|z)?([diuxXpcs%])|%")


def format_printk(m, fmt: bytes, args: list[int]) -> str | None:
    """bpf_trace_printk's formatting; None for a format the kernel rejects (-EINVAL)."""
    out = []
    pos = 0
    used = 0
    for match in _CONV.finditer(fmt):
        out.append(fmt[pos : match.start()].decode("latin-1"))
        pos = match.end()
        conv = match.group(4)
        if conv is None:
            return None  # a lone '%' or an unsupported conversion
        if conv == b"%":
            out.append("%")
            continue
        if used >= len(args):
            return None
        arg = args[used]
        used += 1
        flags = match.group(1).decode()
        width = match.group(2).decode()
        length = match.group(3) or b""
        bits = 64 if length in (b"l", b"ll", b"z") else 32
        if conv in (b"d", b"i"):
            text = "%" + flags + width + "d"
            out.append(text % sext(arg, bits))
        elif conv == b"u":
            out.append(("%" + flags + width + "d") % (arg & ((1 << bits) - 1)))
        elif conv in (b"x", b"X"):
            out.append(("%" + flags + width + conv.decode()) % (arg & ((1 << bits) - 1)))
        elif conv == b"p":
            out.append("0x%x" % u64(arg))
        elif conv == b"c":
            out.append(chr(arg & 0xFF))
        elif conv == b"s":
            out.append(m.read_cstring(arg).decode("latin-1"))
    out.append(fmt[pos:].decode("latin-1"))
    return "".join(out)


def trace_printk(m, fmt_ptr: int, fmt_size: int, *args: int) -> int:
    size = u32(fmt_size)
    raw = m.read(fmt_ptr, size)
    nul = raw.find(b"\0")
    if nul < 0:
        return -Errno.EINVAL  # the kernel requires a NUL-terminated format
    text = format_printk(m, raw[:nul], list(args))
    if text is None:
        return -Errno.EINVAL
    m.trace_output.append(text)
    return len(text.encode("latin-1"))


BPF_F_INDEX_MASK = 0xFFFF_FFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32


def perf_event_output(m, ctx: int, map_ptr: int, flags: int, data_ptr: int, size: int) -> int:
    m.map_at(map_ptr)
    if flags & ~(BPF_F_CTXLEN_MASK | BPF_F_INDEX_MASK):
        return -Errno.EINVAL
    sample = m.read(data_ptr, u64(size))
    ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
    if ctx_len:
        if m.packet is None or ctx_len > m.packet.length:
            return -Errno.EFAULT
        sample += m.packet.bytes()[:ctx_len]
    m.perf_output.append(sample)
    return 0


# -- packet ---------------------------------------------------------------------------

def _need_xdp(m, name: str) -> None:
    if m.packet is None or m.program.prog_type != ProgType.XDP:
        raise _trap(f"bpf_{name} is only available to XDP programs")


def xdp_adjust_head(m, ctx: int, delta: int) -> int:
    _need_xdp(m, "xdp_adjust_head")
    ret = m.packet.adjust_head(s32(delta))
    m.sync_packet()
    return ret


def xdp_adjust_tail(m, ctx: int, delta: int) -> int:
    _need_xdp(m, "xdp_adjust_tail")
    ret = m.packet.adjust_tail(s32(delta))
    m.sync_packet()
    return ret


def xdp_adjust_meta(m, ctx: int, delta: int) -> int:
    _need_xdp(m, "xdp_adjust_meta")
    ret = m.packet.adjust_meta(s32(delta))
    m.sync_packet()
    return ret


def xdp_get_buff_len(m, ctx: int) -> int:
    _need_xdp(m, "xdp_get_buff_len")
    return m.packet.length


def xdp_load_bytes(m, ctx: int, offset: int, buf: int, length: int) -> int:
    _need_xdp(m, "xdp_load_bytes")
    offset, length = u32(offset), u32(length)
    pkt = m.packet
    if offset + length > pkt.length:
        return -Errno.EINVAL
    m.write(buf, bytes(pkt.buf[pkt.data + offset : pkt.data + offset + length]))
    return 0


def xdp_store_bytes(m, ctx: int, offset: int, buf: int, length: int) -> int:
    _need_xdp(m, "xdp_store_bytes")
    offset, length = u32(offset), u32(length)
    pkt = m.packet
    if offset + length > pkt.length:
        return -Errno.EINVAL
    data = m.read(buf, length)
    pkt.buf[pkt.data + offset : pkt.data + offset + length] = data
    return 0


def _need_skb(m, name: str) -> None:
    if m.packet is None or m.program.prog_type not in (ProgType.SCHED_CLS, ProgType.SCHED_ACT):
        raise _trap(f"bpf_{name} is only available to TC programs")


BPF_F_RECOMPUTE_CSUM = 1
BPF_F_INVALIDATE_HASH = 2


def skb_load_bytes(m, ctx: int, offset: int, to: int, length: int) -> int:
    _need_skb(m, "skb_load_bytes")
    offset, length = u32(offset), u32(length)
    pkt = m.packet
    if offset > 0xFFFF or offset + length > pkt.length:
        m.write(to, bytes(length))  # the kernel zeroes the destination on error
        return -Errno.EFAULT
    m.write(to, bytes(pkt.buf[pkt.data + offset : pkt.data + offset + length]))
    return 0


def skb_store_bytes(m, ctx: int, offset: int, frm: int, length: int, flags: int) -> int:
    _need_skb(m, "skb_store_bytes")
    offset, length = u32(offset), u32(length)
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return -Errno.EINVAL
    pkt = m.packet
    if offset > 0xFFFF or offset + length > pkt.length:
        return -Errno.EFAULT
    data = m.read(frm, length)
    pkt.buf[pkt.data + offset : pkt.data + offset + length] = data
    return 0


def csum_partial(data: bytes, seed: int) -> int:
    """x86-64 csum_partial for a multiple of 4 bytes: 32-bit ones'-complement sum of little-endian words."""
    total = seed & MASK32
    for i in range(0, len(data) - len(data) % 4, 4):
        total += int.from_bytes(data[i : i + 4], "little")
        total = (total & MASK32) + (total >> 32)
    return total


def csum_add(a: int, b: int) -> int:
    total = (a & MASK32) + (b & MASK32)
    return (total & MASK32) + (total >> 32)


def csum_from32to16(x: int) -> int:
    """Fold a 32-bit partial checksum to 16 bits (the kernel's csum_from32to16)."""
    x &= MASK32
    x = (x + (((x >> 16) | (x << 16)) & MASK32)) & MASK32
    return x >> 16


def csum_fold(x: int) -> int:
    """Fold a 32-bit partial sum to the complemented 16-bit checksum (x86-64 csum_fold)."""
    x &= MASK32
    s = (x & 0xFFFF_0000) + ((x << 16) & MASK32)
    s = ((s & MASK32) + 0xFFFF + (s >> 32)) & MASK32
    return (~s & MASK32) >> 16


def _csum16_add(a: int, b: int) -> int:
    res = (a + b) & 0xFFFF
    return (res + (res < (b & 0xFFFF))) & 0xFFFF


def csum_replace(old_sum: int, frm: int, to: int, size: int) -> int:
    """The kernel's csum_replace_by_diff (size 0), csum_replace2 (2) and csum_replace4 (4) on a 16-bit field."""
    if size == 2:
        return ~_csum16_add(_csum16_add(~old_sum & 0xFFFF, ~frm & 0xFFFF), to & 0xFFFF) & 0xFFFF
    unfolded = ~old_sum & MASK32  # ~csum_unfold(sum)
    if size == 4:
        return csum_fold(csum_add(csum_add(unfolded, ~frm & MASK32), to & MASK32))
    return csum_fold(csum_add(to & MASK32, unfolded))


BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
CSUM_MANGLED_0 = 0xFFFF


def _csum_field(m, offset: int, flags: int, allowed: int) -> tuple[int, int] | int:
    """Validate a checksum-replace call: (buffer offset, field size) or a negative errno."""
    if flags & ~allowed:
        return -Errno.EINVAL
    offset = u32(offset)
    if offset > 0xFFFF or offset & 1 or offset + 2 > m.packet.length:
        return -Errno.EFAULT
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4):
        return -Errno.EINVAL
    return m.packet.data + offset, size


def l3_csum_replace(m, ctx: int, offset: int, frm: int, to: int, flags: int) -> int:
    _need_skb(m, "l3_csum_replace")
    got = _csum_field(m, offset, flags, BPF_F_HDR_FIELD_MASK)
    if isinstance(got, int):
        return got
    at, size = got
    if size == 0 and frm:
        return -Errno.EINVAL
    buf = m.packet.buf
    old = int.from_bytes(buf[at : at + 2], "little")
    buf[at : at + 2] = csum_replace(old, frm, to, size).to_bytes(2, "little")
    return 0


def l4_csum_replace(m, ctx: int, offset: int, frm: int, to: int, flags: int) -> int:
    # BPF_PROG_TEST_RUN's skb has ip_summed == CHECKSUM_NONE, so the pseudo-header
    # flag changes nothing beyond what l3_csum_replace does.
    _need_skb(m, "l4_csum_replace")
    allowed = BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6
    got = _csum_field(m, offset, flags, allowed)
    if isinstance(got, int):
        return got
    at, size = got
    buf = m.packet.buf
    old = int.from_bytes(buf[at : at + 2], "little")
    mangled_zero = bool(flags & BPF_F_MARK_MANGLED_0)
    if mangled_zero and not flags & BPF_F_MARK_ENFORCE and old == 0:
        return 0
    if size == 0 and frm:
        return -Errno.EINVAL
    new = csum_replace(old, frm, to, size)
    if mangled_zero and new == 0:
        new = CSUM_MANGLED_0
    buf[at : at + 2] = new.to_bytes(2, "little")
    return 0


def csum_diff(m, from_ptr: int, from_size: int, to_ptr: int, to_size: int, seed: int) -> int:
    # Linux >= 6.12 semantics: the 32-bit difference is folded to 16 bits, with
    # separate paths for push (only `to`), pull (only `from`) and diff (both).
    from_size, to_size = u32(from_size), u32(to_size)
    if (from_size | to_size) & 3 or from_size + to_size > 512:
        return -Errno.EINVAL
    frm = m.read(from_ptr, from_size)
    to = m.read(to_ptr, to_size)
    ret = u32(seed)
    if from_size and to_size:
        ret = csum_add(csum_partial(to, ret), ~csum_partial(frm, 0))
    elif to_size:
        ret = csum_partial(to, ret)
    elif from_size:
        ret = ~csum_partial(frm, ~ret & MASK32) & MASK32
    return csum_from32to16(ret)


# -- redirect, tail call ----------------------------------------------------------------

BPF_F_INGRESS = 1
XDP_ACTION_MASK = 3           # XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX
BPF_F_BROADCAST = 1 << 3
BPF_F_EXCLUDE_INGRESS = 1 << 4


def redirect(m, ifindex: int, flags: int) -> int:
    if m.program.prog_type == ProgType.XDP:
        if flags:
            return XdpAction.ABORTED
        m.redirect = u32(ifindex)
        return XdpAction.REDIRECT
    if flags & ~BPF_F_INGRESS:
        return TcAction.SHOT
    m.redirect = u32(ifindex)
    return TcAction.REDIRECT


def redirect_map(m, map_ptr: int, key: int, flags: int) -> int:
    bpf_map = m.map_at(map_ptr)
    if flags & ~(XDP_ACTION_MASK | BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS):
        return XdpAction.ABORTED
    if bpf_map.mapdef.type not in (MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP):
        raise _trap(f"bpf_redirect_map on map {bpf_map.name!r} of type {bpf_map.mapdef.type.kernel_name}")
    key_bytes = u32(key).to_bytes(4, "little")
    if isinstance(bpf_map, ArrayMap):
        found = bpf_map.present(key_bytes)
    else:
        found = isinstance(bpf_map, HashMap) and bpf_map.lookup(key_bytes) is not None
    if not found:
        return flags & XDP_ACTION_MASK
    m.redirect = u32(key)
    return XdpAction.REDIRECT


def tail_call(m, ctx: int, map_ptr: int, index: int) -> int:
    return m.tail_call(m.map_at(map_ptr), index)


BPF_MAX_LOOPS = 1 << 23


def loop(m, nr_loops: int, callback: int, callback_ctx: int, flags: int) -> int:
    """bpf_loop: call ``callback(i, ctx)`` up to nr_loops times; a non-zero return stops early."""
    if flags:
        return -Errno.EINVAL
    nr_loops = u32(nr_loops)
    if nr_loops > BPF_MAX_LOOPS:
        return -Errno.E2BIG
    for i in range(nr_loops):
        if m.call_function(callback, [i, callback_ctx]):
            return i + 1
    return nr_loops


def for_each_map_elem(m, map_ptr: int, callback: int, callback_ctx: int, flags: int) -> int:
    """bpf_for_each_map_elem: callback(map, &key, &value, ctx) per element until it returns non-zero."""
    bpf_map = m.map_at(map_ptr)
    if flags:
        return -Errno.EINVAL
    if not isinstance(bpf_map, (ArrayMap, HashMap)) or bpf_map.mapdef.type not in (
            MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH, MapType.PERCPU_HASH,
            MapType.LRU_HASH, MapType.LRU_PERCPU_HASH):
        raise _trap(f"bpf_for_each_map_elem on map {bpf_map.name!r} of type {bpf_map.mapdef.type.kernel_name}")
    if isinstance(bpf_map, ArrayMap):
        elements = [(i.to_bytes(4, "little"), v) for i, v in enumerate(bpf_map.values)]
    else:
        elements = list(bpf_map.entries.items())  # a snapshot: the callback may delete
    done = 0
    for key, value in elements:
        done += 1
        key_ptr = m.scratch_ptr(key, f"{bpf_map.name} key")
        if m.call_function(callback, [map_ptr, key_ptr, m.value_ptr(value, bpf_map.name), callback_ctx]):
            break
    return done


HELPERS: dict[int, HelperSpec] = {
    spec.helper: spec
    for spec in (
        HelperSpec(Helper.map_lookup_elem, 2, map_lookup_elem),
        HelperSpec(Helper.map_update_elem, 4, map_update_elem),
        HelperSpec(Helper.map_delete_elem, 2, map_delete_elem),
        HelperSpec(Helper.ktime_get_ns, 0, ktime_get_ns),
        HelperSpec(Helper.ktime_get_boot_ns, 0, ktime_get_ns),
        HelperSpec(Helper.ktime_get_coarse_ns, 0, ktime_get_ns),
        HelperSpec(Helper.ktime_get_tai_ns, 0, ktime_get_ns),
        HelperSpec(Helper.trace_printk, 5, trace_printk, required=2),
        HelperSpec(Helper.get_prandom_u32, 0, get_prandom_u32),
        HelperSpec(Helper.get_smp_processor_id, 0, get_smp_processor_id),
        HelperSpec(Helper.tail_call, 3, tail_call),
        HelperSpec(Helper.loop, 4, loop),
        HelperSpec(Helper.for_each_map_elem, 4, for_each_map_elem),
        HelperSpec(Helper.redirect, 2, redirect),
        HelperSpec(Helper.perf_event_output, 5, perf_event_output),
        HelperSpec(Helper.csum_diff, 5, csum_diff),
        HelperSpec(Helper.xdp_adjust_head, 2, xdp_adjust_head),
        HelperSpec(Helper.xdp_adjust_tail, 2, xdp_adjust_tail),
        HelperSpec(Helper.xdp_adjust_meta, 2, xdp_adjust_meta),
        HelperSpec(Helper.redirect_map, 3, redirect_map),
        HelperSpec(Helper.xdp_get_buff_len, 1, xdp_get_buff_len),
        HelperSpec(Helper.xdp_load_bytes, 4, xdp_load_bytes),
        HelperSpec(Helper.xdp_store_bytes, 4, xdp_store_bytes),
        HelperSpec(Helper.skb_load_bytes, 4, skb_load_bytes),
        HelperSpec(Helper.skb_store_bytes, 5, skb_store_bytes),
        HelperSpec(Helper.l3_csum_replace, 5, l3_csum_replace),
        HelperSpec(Helper.l4_csum_replace, 5, l4_csum_replace),
    )
}

__all__ = ["HELPERS", "HelperSpec", "csum_partial", "csum_add", "csum_from32to16", "csum_fold", "csum_replace",
           "format_printk"]

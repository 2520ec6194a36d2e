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

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

from nfpjit.bits import MASK32, csum_add, csum_diff_value, csum_fold, csum_from32to16, csum_partial, csum_replace, s32, sext, u32, u64
from nfpjit.ebpf.maps import ArrayMap, Errno, HashMap, MapOfMaps, QueueStackMap, RingBufMap
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

# Map types whose elements a program may not touch with the generic helpers (the verifier's
# check_map_func_compatibility): helper -> types it refuses.
_NO_LOOKUP = {MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.QUEUE, MapType.STACK, MapType.RINGBUF,
              MapType.CPUMAP}
_NO_UPDATE = _NO_LOOKUP | {MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH,
                           MapType.CPUMAP, MapType.XSKMAP}


def _refuse(helper: str, bpf_map, refused) -> None:
    if bpf_map.mapdef.type in refused:
        raise _trap(f"bpf_{helper} on map {bpf_map.name!r} of type {bpf_map.mapdef.type.kernel_name}, "
                    "which the kernel verifier refuses")


def map_lookup_elem(m, map_ptr: int, key_ptr: int) -> int:
    bpf_map = m.map_at(map_ptr)
    _refuse("map_lookup_elem", bpf_map, _NO_LOOKUP)
    key = m.read(key_ptr, bpf_map.key_size)
    if isinstance(bpf_map, MapOfMaps):
        inner = bpf_map.inner_of(key)
        return 0 if inner is None else m.map_ptr(inner)
    value = bpf_map.lookup(key)
    if value is None:
        return 0
    return m.value_ptr(value, bpf_map.name)


def map_update_elem(m, map_ptr: int, key_ptr: int, value_ptr: int, flags: int) -> int:
    bpf_map = m.map_at(map_ptr)
    _refuse("map_update_elem", bpf_map, _NO_UPDATE)
    key = m.read(key_ptr, bpf_map.key_size)
    value = m.read(value_ptr, bpf_map.value_size)
    return bpf_map.update(key, value, flags)


def map_delete_elem(m, map_ptr: int, key_ptr: int) -> int:
    bpf_map = m.map_at(map_ptr)
    _refuse("map_delete_elem", bpf_map, _NO_UPDATE)
    return bpf_map.delete(m.read(key_ptr, bpf_map.key_size))


def _queue(m, map_ptr: int, helper: str) -> QueueStackMap:
    bpf_map = m.map_at(map_ptr)
    if not isinstance(bpf_map, QueueStackMap):
        raise _trap(f"bpf_{helper} on map {bpf_map.name!r} of type {bpf_map.mapdef.type.kernel_name}, "
                    "which the kernel verifier refuses (queue and stack maps only)")
    return bpf_map


def map_push_elem(m, map_ptr: int, value_ptr: int, flags: int) -> int:
    bpf_map = _queue(m, map_ptr, "map_push_elem")
    return bpf_map.push(m.read(value_ptr, bpf_map.value_size), flags)


def _pop_or_peek(m, map_ptr: int, value_ptr: int, pop: bool) -> int:
    bpf_map = _queue(m, map_ptr, "map_pop_elem" if pop else "map_peek_elem")
    got = bpf_map.pop() if pop else bpf_map.peek()
    if got is None:
        m.write(value_ptr, bytes(bpf_map.value_size))  # the kernel zeroes the buffer when empty
        return -Errno.ENOENT
    m.write(value_ptr, got)
    return 0


def map_pop_elem(m, map_ptr: int, value_ptr: int) -> int:
    return _pop_or_peek(m, map_ptr, value_ptr, True)


def map_peek_elem(m, map_ptr: int, value_ptr: int) -> int:
    return _pop_or_peek(m, map_ptr, value_ptr, False)


# -- ring buffer -------------------------------------------------------------------------

BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2


def _ringbuf(m, map_ptr: int, helper: str) -> RingBufMap:
    bpf_map = m.map_at(map_ptr)
    if not isinstance(bpf_map, RingBufMap):
        raise _trap(f"bpf_{helper} on map {bpf_map.name!r} of type {bpf_map.mapdef.type.kernel_name}, "
                    "which the kernel verifier refuses (ring buffers only)")
    return bpf_map


def ringbuf_output(m, map_ptr: int, data_ptr: int, size: int, flags: int) -> int:
    rb = _ringbuf(m, map_ptr, "ringbuf_output")
    if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
        return -Errno.EINVAL
    data = m.read(data_ptr, u64(size))
    rec = rb.reserve(len(data))
    if rec is None:
        return -Errno.EAGAIN
    rec[0][:] = data
    rec[1] = "done"
    return 0


def ringbuf_reserve(m, map_ptr: int, size: int, flags: int) -> int:
    rb = _ringbuf(m, map_ptr, "ringbuf_reserve")
    if flags:
        return 0
    rec = rb.reserve(u64(size))
    if rec is None:
        return 0
    return m.ringbuf_record_ptr(rb, rec)


def _ringbuf_commit(m, ptr: int, discard: bool) -> int:
    rb, rec = m.ringbuf_record_at(ptr)
    rec[1] = "discarded" if discard else "done"
    return 0


def ringbuf_submit(m, ptr: int, flags: int) -> int:
    return _ringbuf_commit(m, ptr, False)


def ringbuf_discard(m, ptr: int, flags: int) -> int:
    return _ringbuf_commit(m, ptr, True)


def ringbuf_query(m, map_ptr: int, flags: int) -> int:
    rb = _ringbuf(m, map_ptr, "ringbuf_query")
    return {0: rb.avail_data(), 1: rb.size, 2: rb.cons_pos, 3: rb.prod_pos}.get(u64(flags), 0)


# -- time, randomness, cpu ---------------------------------------------------------

def ktime_get_ns(m) -> int:
    return m.clock()


def get_prandom_u32(m) -> int:
    return m.rng.getrandbits(32)


def get_smp_processor_id(m) -> int:
    return 0


def get_numa_node_id(m) -> int:
    return 0


JIFFY_NS = 4_000_000   # CONFIG_HZ=250, as the machine this was checked on


def jiffies64(m) -> int:
    """Jiffies from the controllable clock (a nondeterministic value, masked in kernel comparisons)."""
    return m.clock() // JIFFY_NS


def spin_lock(m, lock_ptr: int) -> int:
    """bpf_spin_lock: one CPU, no contention: the lock word is taken (the verifier pairs lock and unlock)."""
    m.write(lock_ptr, (1).to_bytes(4, "little"))
    return 0


def spin_unlock(m, lock_ptr: int) -> int:
    m.write(lock_ptr, bytes(4))
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
    """The kernel's bpf_xdp/skb_event_output: the sample goes to the perf event in the CPU's slot.

    A slot holds an event when its value is non-zero (user space stored a perf event fd there);
    without one the kernel returns -ENOENT (an index beyond the array -E2BIG), which is what a
    test run with an empty perf event array sees.  Samples sent to an event are in
    ``RunResult.perf_output``.
    """
    bpf_map = m.map_at(map_ptr)
    if bpf_map.mapdef.type != MapType.PERF_EVENT_ARRAY:
        raise _trap(f"bpf_perf_event_output on map {bpf_map.name!r} of type {bpf_map.mapdef.type.kernel_name}, "
                    "which the kernel verifier refuses")
    if flags & ~(BPF_F_CTXLEN_MASK | BPF_F_INDEX_MASK):
        return -Errno.EINVAL
    sample = m.read(data_ptr, u64(size))
    ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
    if ctx_len:
        if m.packet is None or ctx_len > m.packet.length:
            return -Errno.EFAULT
        sample += m.packet.bytes()[:ctx_len]
    index = flags & BPF_F_INDEX_MASK
    if index == BPF_F_CURRENT_CPU:
        index = 0
    if index >= bpf_map.mapdef.max_entries:
        return -Errno.E2BIG
    if not bpf_map.present(index.to_bytes(4, "little")):
        return -Errno.ENOENT
    if index != 0:
        return -Errno.EOPNOTSUPP   # the event in that slot belongs to another CPU (the run is on CPU 0)
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
    if offset > 0xFFFF or length > 0xFFFF:   # bpf_xdp_pointer
        return -Errno.EFAULT
    if offset + length > pkt.length:
        return -Errno.EINVAL
    m.write(buf, bytes(pkt.buf[pkt.data + offset : pkt.data + offset + length]))
    return 0


def xdp_store_bytes(m, ctx: int, offset: int, buf: int, length: int) -> int:
    _need_xdp(m, "xdp_store_bytes")
    offset, length = u32(offset), u32(length)
    pkt = m.packet
    if offset > 0xFFFF or length > 0xFFFF:   # bpf_xdp_pointer
        return -Errno.EFAULT
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
    # BPF_F_RECOMPUTE_CSUM changes skb->csum only under CHECKSUM_COMPLETE, which BPF_PROG_TEST_RUN's
    # skb (CHECKSUM_NONE) never is; BPF_F_INVALIDATE_HASH is skb_clear_hash: skb->hash reads 0 after it
    if flags & BPF_F_INVALIDATE_HASH:
        m.ctx.clear_hash()
    return 0


BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
CSUM_MANGLED_0 = 0xFFFF


def _csum_field(m, offset: int, flags: int, allowed: int) -> tuple[int, int] | int:
    """Validate a checksum-replace call's flags and offset: (buffer offset, field size) or a negative
    errno.  The field size is checked later, as the kernel's switch does (after l4's mangled-0 exit)."""
    if flags & ~allowed:
        return -Errno.EINVAL
    offset = u32(offset)
    if offset > 0xFFFF or offset & 1 or offset + 2 > m.packet.length:
        return -Errno.EFAULT
    return m.packet.data + offset, flags & BPF_F_HDR_FIELD_MASK


def _csum_size_refused(size: int, frm: int) -> bool:
    """The kernel's switch on the field size: 2 and 4, or 0 (a csum_diff-style ``to``) with from == 0."""
    return size not in (0, 2, 4) or (size == 0 and frm != 0)


def l3_csum_replace(m, ctx: int, offset: int, frm: int, to: int, flags: int) -> int:
    _need_skb(m, "l3_csum_replace")
    got = _csum_field(m, offset, flags, BPF_F_HDR_FIELD_MASK)
    if isinstance(got, int):
        return got
    at, size = got
    if _csum_size_refused(size, frm):
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
    if _csum_size_refused(size, frm):
        return -Errno.EINVAL
    new = csum_replace(old, frm, to, size)
    if mangled_zero and new == 0:
        new = CSUM_MANGLED_0
    buf[at : at + 2] = new.to_bytes(2, "little")
    return 0


def csum_diff(m, from_ptr: int, from_size: int, to_ptr: int, to_size: int, seed: int) -> int:
    # Linux >= 6.12 semantics: the 32-bit difference is folded to 16 bits, with separate paths for push
    # (only `to`), pull (only `from`) and diff (both).  Sizes: the kernel measured (6.18) checks none (the
    # verifier bounds both buffers): sizes that are no multiple of 4 and sums above 512 bytes are summed.
    return csum_diff_value(m.read(from_ptr, u32(from_size)), m.read(to_ptr, u32(to_size)), u32(seed))


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
    """__bpf_xdp_redirect_map: devmaps take BPF_F_BROADCAST/EXCLUDE_INGRESS, cpumaps and xskmaps no flag.

    Only the low two bits of other flags are allowed (the action returned when the slot is
    empty); anything else is XDP_ABORTED.  A broadcast redirects without a lookup.  The test
    run stops at the verdict (XDP_REDIRECT): nothing is sent, so only the target is recorded.
    """
    bpf_map = m.map_at(map_ptr)
    mtype = bpf_map.mapdef.type
    if mtype not in (MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP):
        raise _trap(f"bpf_redirect_map on map {bpf_map.name!r} of type {mtype.kernel_name}, "
                    "which the kernel verifier refuses")
    allowed = XDP_ACTION_MASK
    if mtype in (MapType.DEVMAP, MapType.DEVMAP_HASH):
        allowed |= BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS
    if flags & ~allowed:
        return XdpAction.ABORTED
    key_bytes = u32(key).to_bytes(4, "little")
    if bpf_map.lookup(key_bytes) is None and not flags & BPF_F_BROADCAST:
        return flags & XDP_ACTION_MASK
    m.redirect = u32(key)
    return XdpAction.REDIRECT


# -- dynptrs (the XDP packet ones: see nfpjit.ebpf.kfuncs) ------------------------------------

def dynptr_read(m, dst: int, length: int, src: int, offset: int, flags: int) -> int:
    from nfpjit.ebpf.kfuncs import _dyn_check, dynptr_get

    data, size, off = dynptr_get(m, src)
    length, offset = u32(length), u32(offset)
    if not data or flags:
        return -Errno.EINVAL
    err = _dyn_check(size, offset, length)
    if err:
        return err
    pkt = m.packet
    at = off + offset
    if at > 0xFFFF or length > 0xFFFF:
        return -Errno.EFAULT
    if at + length > pkt.length:
        return -Errno.EINVAL
    m.write(dst, bytes(pkt.buf[pkt.data + at: pkt.data + at + length]))
    return 0


def dynptr_write(m, dst: int, offset: int, src: int, length: int, flags: int) -> int:
    from nfpjit.ebpf.kfuncs import _dyn_check, dynptr_get

    data, size, off = dynptr_get(m, dst)
    offset, length = u32(offset), u32(length)
    if not data:
        return -Errno.EINVAL
    err = _dyn_check(size, offset, length)
    if err:
        return err
    if flags:
        return -Errno.EINVAL
    pkt = m.packet
    at = off + offset
    if at > 0xFFFF or length > 0xFFFF:
        return -Errno.EFAULT
    if at + length > pkt.length:
        return -Errno.EINVAL
    pkt.buf[pkt.data + at: pkt.data + at + length] = m.read(src, length)
    return 0


# -- FIB and MTU -----------------------------------------------------------------------------

AF_INET = 2
AF_INET6 = 10
BPF_FIB_LOOKUP_DIRECT = 1
BPF_FIB_LOOKUP_OUTPUT = 2
BPF_FIB_LOOKUP_SKIP_NEIGH = 4
BPF_FIB_LOOKUP_TBID = 8
BPF_FIB_LOOKUP_SRC = 16
BPF_FIB_LOOKUP_MARK = 32
BPF_FIB_LOOKUP_MASK = 0x3F
FIB_PARAMS_SIZE = 64          # sizeof(struct bpf_fib_lookup)


class FibRet:
    SUCCESS = 0
    BLACKHOLE = 1
    UNREACHABLE = 2
    PROHIBIT = 3
    NOT_FWDED = 4
    FWD_DISABLED = 5
    UNSUPP_LWT = 6
    NO_NEIGH = 7
    FRAG_NEEDED = 8
    NO_SRC_ADDR = 9


def _v6_strict(addr: bytes) -> bool:
    """rt6_need_strict: multicast, link-local or loopback addresses are never forwarded."""
    return addr[0] == 0xFF or (addr[0] == 0xFE and addr[1] & 0xC0 == 0x80) or addr == bytes(15) + b"\x01"


def fib_lookup(m, ctx: int, params_ptr: int, plen: int, flags: int) -> int:
    """bpf_xdp_fib_lookup / bpf_skb_fib_lookup against the run's :class:`~nfpjit.ebpf.net.Net`."""
    if u32(plen) < FIB_PARAMS_SIZE:
        return -Errno.EINVAL
    flags = u32(flags)
    if flags & ~BPF_FIB_LOOKUP_MASK:
        return -Errno.EINVAL
    raw = bytearray(m.read(params_ptr, FIB_PARAMS_SIZE))
    family = raw[0]
    if family == AF_INET:
        v6 = False
        dst, src = bytes(raw[32:36]), bytes(raw[16:20])
    elif family == AF_INET6:
        v6 = True
        dst, src = bytes(raw[32:48]), bytes(raw[16:32])
        if _v6_strict(dst) or _v6_strict(src):
            return FibRet.NOT_FWDED
    else:
        return -Errno.EAFNOSUPPORT
    net = m.net
    ifindex = int.from_bytes(raw[8:12], "little")
    dev = net.device(ifindex)
    if dev is None:
        return -Errno.ENODEV
    if not (dev.forwarding6 if v6 else dev.forwarding):
        return FibRet.FWD_DISABLED
    if flags & BPF_FIB_LOOKUP_TBID and flags & BPF_FIB_LOOKUP_DIRECT:
        tbid = int.from_bytes(raw[48:52], "little")
        raw[48:52] = bytes(4)          # the kernel zeroes tbid (it shares room with the VLAN output)
        m.write(params_ptr, bytes(raw))
        if tbid and tbid != 254:
            return FibRet.NOT_FWDED  # only the main table is modelled (a missing table: NOT_FWDED)
    route = net.lookup(dst)
    if route is None:
        return FibRet.NOT_FWDED
    if route.type == "blackhole":
        return FibRet.BLACKHOLE
    if route.type == "unreachable":
        return FibRet.UNREACHABLE
    if route.type == "prohibit":
        return FibRet.PROHIBIT
    if route.type != "unicast":
        return FibRet.NOT_FWDED
    out = net.device(route.dev)
    if out is None:
        return FibRet.NOT_FWDED
    mtu = 0
    if m.program.prog_type == ProgType.XDP or int.from_bytes(raw[6:8], "little"):
        # ip_mtu_from_fib_result: an IPv4 route's MTU counts only when locked ("mtu lock N")
        mtu = route.mtu if route.mtu and (v6 or route.mtu_lock) else out.mtu
        if int.from_bytes(raw[6:8], "little") > mtu:
            raw[6:8] = mtu.to_bytes(2, "little")
            m.write(params_ptr, bytes(raw))
            return FibRet.FRAG_NEEDED
    raw[12:16] = route.metric.to_bytes(4, "little")
    raw[8:12] = out.ifindex.to_bytes(4, "little")
    if flags & BPF_FIB_LOOKUP_SRC:
        # the output device's address (fib_result_prefsrc / ipv6_dev_get_saddr)
        mine = [ipaddress.ip_address(a) for a in out.addrs]
        mine = [a for a in mine if a.version == (6 if v6 else 4) and not (v6 and a.is_link_local)]
        if v6:
            if not mine:
                m.write(params_ptr, bytes(raw))
                return FibRet.NO_SRC_ADDR
            raw[16:32] = mine[0].packed
        else:
            raw[16:20] = mine[0].packed if mine else bytes(4)
    if route.via is not None:
        gw = ipaddress.ip_address(route.via).packed
        if len(gw) == 16 and not v6:
            raw[0] = AF_INET6
            raw[32:48] = gw
        else:
            raw[32:32 + len(gw)] = gw
    nh = bytes(raw[32:48]) if raw[0] == AF_INET6 else bytes(raw[32:36])
    ret = FibRet.SUCCESS
    if not flags & BPF_FIB_LOOKUP_SKIP_NEIGH:
        mac = net.neighbours.get((out.ifindex, str(ipaddress.ip_address(nh))))
        if mac is None:
            m.write(params_ptr, bytes(raw))
            return FibRet.NO_NEIGH
        raw[58:64] = mac
        raw[52:58] = out.mac
    raw[48:52] = bytes(4)          # h_vlan_proto, h_vlan_TCI
    if mtu:
        raw[6:8] = mtu.to_bytes(2, "little")
    elif m.program.prog_type != ProgType.XDP:
        # bpf_skb_fib_lookup without tot_len: the skb itself against the output device (is_skb_forwardable)
        if m.packet.length > out.mtu + out.hard_header_len + 4:
            ret = FibRet.FRAG_NEEDED
        raw[6:8] = (out.mtu & 0xFFFF).to_bytes(2, "little")
    m.write(params_ptr, bytes(raw))
    return ret


BPF_MTU_CHK_RET_SUCCESS = 0
BPF_MTU_CHK_RET_FRAG_NEEDED = 1


BPF_MTU_CHK_SEGS = 1


def check_mtu(m, ctx: int, ifindex: int, mtu_ptr: int, len_diff: int, flags: int) -> int:
    """bpf_xdp_check_mtu / bpf_skb_check_mtu: the packet (or *mtu_len as an L3 length) plus len_diff
    against the device MTU.  The test run's skb is never GSO, so BPF_MTU_CHK_SEGS changes nothing."""
    if m.packet is None:
        raise _trap("bpf_check_mtu needs a packet")
    if m.program.prog_type != ProgType.XDP:
        return _skb_check_mtu(m, ifindex, mtu_ptr, len_diff, flags)
    if flags:
        return -Errno.EINVAL
    ifindex = u32(ifindex)
    dev = m.net.device(ifindex if ifindex else (m.ctx.pin.ingress_ifindex or 1))
    if dev is None:
        return -Errno.ENODEV
    mtu_len = int.from_bytes(m.read(mtu_ptr, 4), "little")
    length = m.packet.length
    if mtu_len:
        length = mtu_len + dev.hard_header_len
    length = s32(length + s32(len_diff))
    ret = BPF_MTU_CHK_RET_FRAG_NEEDED if length > dev.mtu + dev.hard_header_len else BPF_MTU_CHK_RET_SUCCESS
    m.write(mtu_ptr, dev.mtu.to_bytes(4, "little"))
    return ret


def _skb_check_mtu(m, ifindex: int, mtu_ptr: int, len_diff: int, flags: int) -> int:
    mtu_len = int.from_bytes(m.read(mtu_ptr, 4), "little")
    flags = u64(flags)
    if flags & ~BPF_MTU_CHK_SEGS or (flags & BPF_MTU_CHK_SEGS and (s32(len_diff) or mtu_len)):
        return -Errno.EINVAL
    ifindex = u32(ifindex)
    dev = m.net.device(ifindex if ifindex else 1)   # the test run's skb->dev is lo
    if dev is None:
        return -Errno.ENODEV
    length = mtu_len + dev.hard_header_len if mtu_len else m.packet.length
    length = s32(length + s32(len_diff))
    ret = BPF_MTU_CHK_RET_SUCCESS if length <= dev.mtu + dev.hard_header_len else BPF_MTU_CHK_RET_FRAG_NEEDED
    m.write(mtu_ptr, dev.mtu.to_bytes(4, "little"))
    return ret


def tail_call(m, ctx: int, map_ptr: int, index: int) -> int:
    return m.tail_call(m.map_at(map_ptr), index)


BPF_MAX_LOOPS = 1 << 23


def loop(m, nr_loops: int, callback: int, callback_ctx: int, flags: int) -> int:
    """bpf_loop: call ``callback(i, ctx)`` up to nr_loops times; a non-zero return stops early."""
    if flags:
        return -Errno.EINVAL
    nr_loops = u32(nr_loops)
    if nr_loops > BPF_MAX_LOOPS:
        # flags is 0 here: the verifier inlines such a bpf_loop (inline_bpf_loop), whose -E2BIG is a 32-bit
        # move, zero-extended (measured on 6.18; a flags register zero only at run time is not inlined)
        return u32(-Errno.E2BIG)
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
        HelperSpec(Helper.get_numa_node_id, 0, get_numa_node_id),
        HelperSpec(Helper.jiffies64, 0, jiffies64),
        HelperSpec(Helper.spin_lock, 1, spin_lock),
        HelperSpec(Helper.spin_unlock, 1, spin_unlock),
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
        HelperSpec(Helper.map_push_elem, 3, map_push_elem),
        HelperSpec(Helper.map_pop_elem, 2, map_pop_elem),
        HelperSpec(Helper.map_peek_elem, 2, map_peek_elem),
        HelperSpec(Helper.ringbuf_output, 4, ringbuf_output),
        HelperSpec(Helper.ringbuf_reserve, 3, ringbuf_reserve),
        HelperSpec(Helper.ringbuf_submit, 2, ringbuf_submit),
        HelperSpec(Helper.ringbuf_discard, 2, ringbuf_discard),
        HelperSpec(Helper.ringbuf_query, 2, ringbuf_query),
        HelperSpec(Helper.fib_lookup, 4, fib_lookup),
        HelperSpec(Helper.check_mtu, 5, check_mtu),
        HelperSpec(Helper.dynptr_read, 5, dynptr_read),
        HelperSpec(Helper.dynptr_write, 5, dynptr_write),
    )
}

__all__ = ["HELPERS", "HelperSpec", "csum_partial", "csum_add", "csum_from32to16", "csum_fold", "csum_replace",
           "format_printk"]

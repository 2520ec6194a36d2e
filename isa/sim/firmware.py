"""Firmware routines the NIC provides to JIT-compiled code, and their calling convention (ABI).

Code calls a routine by branching to its address in the reserved firmware
region at the top of the code space, with the return address in
:data:`RETURN_ADDRESS_REG` (typically set with ``load_addr`` in a defer slot
of the branch).  The simulator does not execute firmware code: it runs the
routine in Python, charges the routine's cycles from the cycle table, and
continues at the return address.

Register convention (follows the JIT's mapping of eBPF Rn to GPR pair 2n/2n+1;
the routine reads the A bank, results are written to both banks)::

    a2            R1: map table id                     (map routines)
    a4            R2: key address (LM byte address)    (map routines)
                      signed delta                      (adjust_head, adjust_tail)
    a6            R3: value address (LM byte address)  (map update)
    a8            R4: flags (BPF_ANY 0, NOEXIST 1, EXIST 2)  (map update)
    a30           return address
    a0/b0, a1/b1  R0 result, low/high word:
                    lookup: 40-bit EMEM address of the value (a1 = bits 39..32), 0 when absent
                    update, delete, adjust_head, adjust_tail: 0 or a negative errno (64-bit)
                    get_prandom: a 32-bit pseudo-random number (a1 = 0)
                    redirect: XDP_REDIRECT / TC_ACT_REDIRECT, or XDP_ABORTED / TC_ACT_SHOT
                      for refused flags; a2 = target ifindex, a5:a4 flags, a6 0 XDP / 1 TC
                    xdp_load_bytes/xdp_store_bytes: 0, -EFAULT or -EINVAL; a4 packet offset,
                      a7:a6 buffer, a8 length, a27 the buffer's kind (PTR_*)
                    csum_diff: the folded 16-bit sum; a3:a2 from, a4 from_size,
                      a7:a6 to, a8 to_size, a10 seed, a27 kinds (from: bits 1..0, to: bits 3..2)
                    skb_load_bytes/skb_store_bytes: 0, -EFAULT or -EINVAL; a4 packet offset,
                      a7:a6 buffer, a8 length, a11:a10 flags (store), a27 the buffer's kind
                    l3_csum_replace/l4_csum_replace: 0, -EFAULT or -EINVAL; a4 offset of the
                      16-bit checksum field, a7:a6 from, a9:a8 to, a11:a10 flags

Pointer arguments of the byte routines are full eBPF pointers (low:high word) whose memory the JIT
names in a27, two bits per pointer (it knows every pointer's kind statically): PTR_NONE (NULL),
PTR_LM (a stack address: the LM byte address), PTR_EMEM (a map value: the 40-bit EMEM address),
PTR_CTM (a packet address: the CTM byte address in the low word).

Registers a2..a11/b2..b11 (R1..R5) are clobbered by the convention; the
simulator happens to leave them unchanged, which code must not rely on.

Arithmetic routines (``fw_divide``) keep the eBPF registers: they take their operands in scratch
GPRs and return the result there (:data:`ROUTINE_ABI` says, per routine, what it reads, writes and
clobbers; the machine-level passes derive their view of a call from it)::

    a23:a22       dividend (high:low)         -> result, both banks (quotient or remainder)
    a25:a24       divisor (high:low)
    a26           mode: bit 0 modulo, bit 1 signed, bit 2 64-bit (else the low words only)

Routine addresses: map routines from FIRMWARE_BASE + 0, helper routines from
FIRMWARE_BASE + 0x40 (two ranges, so that routines added for maps and for helpers never collide).
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum

from nfpjit.bits import MASK32, csum_diff_value, csum_replace, join64, lo32, hi32, s32, s64, u64
from nfpjit.errors import UsageError
from nfpjit.isa.operands import Bank, Gpr
from nfpjit.isa.table import Csr

from .cycles import CYCLES, Resource
from .memory import ETH_HLEN, FRAME_RESERVED, Trap
from .result import FaultKind

FIRMWARE_BASE = 0x3F00        # code addresses FIRMWARE_BASE .. 0x3FFF are reserved for firmware
MAX_PROGRAM_WORDS = FIRMWARE_BASE

ARG_MAP_ID = Gpr(Bank.A, 2)
ARG_KEY = Gpr(Bank.A, 4)
ARG_DELTA = Gpr(Bank.A, 4)
ARG_VALUE = Gpr(Bank.A, 6)
ARG_FLAGS = Gpr(Bank.A, 8)
RETURN_ADDRESS_REG = Gpr(Bank.A, 30)
RESULT_LO = 0      # a0/b0
RESULT_HI = 1      # a1/b1
#: fw_divide: dividend low/high (and the result), divisor low/high, mode
DIV_ARGS = tuple(Gpr(Bank.A, n) for n in (22, 23, 24, 25, 26))
DIV_MOD, DIV_SIGNED, DIV_WIDE = 1, 2, 4
#: fw_redirect: a2 target ifindex, a5:a4 flags, a6 program kind (REDIRECT_XDP / REDIRECT_TC)
ARG_REDIRECT_KIND = Gpr(Bank.A, 6)
REDIRECT_XDP, REDIRECT_TC = 0, 1
#: the byte routines (xdp_load/store_bytes, csum_diff): pointer kinds, two bits per pointer
ARG_PTR_KINDS = Gpr(Bank.A, 27)
PTR_NONE, PTR_LM, PTR_EMEM, PTR_CTM = 0, 1, 2, 3
ARG_BYTES_OFFSET, ARG_BYTES_BUF, ARG_BYTES_LEN = Gpr(Bank.A, 4), Gpr(Bank.A, 6), Gpr(Bank.A, 8)
ARG_CSUM_SEED = Gpr(Bank.A, 10)
#: bpf_xdp_pointer's limit on offset and length (larger: -EFAULT)
XDP_BYTES_LIMIT = 0xFFFF
#: the TC byte and checksum routines: flags in a11:a10, checksum-replace from/to in a7:a6 / a9:a8
ARG_SKB_FLAGS, ARG_CSUM_FROM, ARG_CSUM_TO = Gpr(Bank.A, 10), Gpr(Bank.A, 6), Gpr(Bank.A, 8)
#: the kernel's limit on a TC byte or checksum routine's offset (larger: -EFAULT)
SKB_OFFSET_LIMIT = 0xFFFF
#: bpf_skb_store_bytes flags (BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH)
SKB_F_RECOMPUTE_CSUM, SKB_F_INVALIDATE_HASH = 1, 2
#: l3/l4_csum_replace flags: field size (bits 3..0), BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0,
#: BPF_F_MARK_ENFORCE, BPF_F_IPV6; CSUM_MANGLED_0 is what a zero UDP checksum becomes
CSUM_F_SIZE_MASK, CSUM_F_PSEUDO_HDR, CSUM_F_MARK_MANGLED_0, CSUM_F_MARK_ENFORCE, CSUM_F_IPV6 = 0xF, 16, 32, 64, 128
CSUM_MANGLED_0 = 0xFFFF


class Routine(IntEnum):
    """Firmware routines; the value is the routine's code address."""

    MAP_LOOKUP = FIRMWARE_BASE + 0
    MAP_UPDATE = FIRMWARE_BASE + 1
    MAP_DELETE = FIRMWARE_BASE + 2
    ADJUST_HEAD = FIRMWARE_BASE + 3
    ADJUST_HEAD_FAST = FIRMWARE_BASE + 4
    ADJUST_TAIL = FIRMWARE_BASE + 5
    GET_PRANDOM = FIRMWARE_BASE + 6
    # helper routines (from FIRMWARE_BASE + 0x40)
    DIVIDE = FIRMWARE_BASE + 0x40
    REDIRECT = FIRMWARE_BASE + 0x41
    XDP_LOAD_BYTES = FIRMWARE_BASE + 0x42
    XDP_STORE_BYTES = FIRMWARE_BASE + 0x43
    CSUM_DIFF = FIRMWARE_BASE + 0x44
    SKB_LOAD_BYTES = FIRMWARE_BASE + 0x48
    SKB_STORE_BYTES = FIRMWARE_BASE + 0x49
    L3_CSUM_REPLACE = FIRMWARE_BASE + 0x4A
    L4_CSUM_REPLACE = FIRMWARE_BASE + 0x4B

    @property
    def symbol(self) -> str:
        """The symbol name images use in ROUTINE relocations: ``fw_map_lookup`` ..."""
        return "fw_" + self.name.lower()


#: the routine addresses of this (simulated) port, by symbol name, for image.relocate()
ROUTINE_ADDRESSES = {r.symbol: int(r) for r in Routine}


@dataclass(frozen=True)
class RoutineAbi:
    """What one routine reads and writes: A-bank argument registers, GPRs it writes (both banks),
    GPRs it leaves undefined (both banks).  Every routine also reads the return address (a30), and
    may change the condition codes, ``prev``, the multiplier and the transfer registers."""

    args: tuple[Gpr, ...]
    results: tuple[int, ...] = (RESULT_LO, RESULT_HI)
    clobbers: tuple[int, ...] = tuple(range(2, 12))      # R1..R5
    memory: bool = True                                   # reads/writes LM, packet, maps or CSRs


ROUTINE_ABI = {
    Routine.MAP_LOOKUP: RoutineAbi((ARG_MAP_ID, ARG_KEY)),
    Routine.MAP_UPDATE: RoutineAbi((ARG_MAP_ID, ARG_KEY, ARG_VALUE, ARG_FLAGS, Gpr(Bank.A, ARG_FLAGS.index + 1))),
    Routine.MAP_DELETE: RoutineAbi((ARG_MAP_ID, ARG_KEY)),
    Routine.ADJUST_HEAD: RoutineAbi((ARG_DELTA,)),
    Routine.ADJUST_HEAD_FAST: RoutineAbi((ARG_DELTA,)),
    Routine.ADJUST_TAIL: RoutineAbi((ARG_DELTA,)),
    Routine.GET_PRANDOM: RoutineAbi(()),
    Routine.DIVIDE: RoutineAbi(DIV_ARGS, results=(22, 23), clobbers=(24, 25, 26), memory=False),
    Routine.REDIRECT: RoutineAbi((ARG_MAP_ID, ARG_KEY, Gpr(Bank.A, ARG_KEY.index + 1), ARG_REDIRECT_KIND)),
    Routine.XDP_LOAD_BYTES: RoutineAbi((ARG_BYTES_OFFSET, ARG_BYTES_BUF, Gpr(Bank.A, 7), ARG_BYTES_LEN,
                                        ARG_PTR_KINDS)),
    Routine.XDP_STORE_BYTES: RoutineAbi((ARG_BYTES_OFFSET, ARG_BYTES_BUF, Gpr(Bank.A, 7), ARG_BYTES_LEN,
                                         ARG_PTR_KINDS)),
    Routine.CSUM_DIFF: RoutineAbi((Gpr(Bank.A, 2), Gpr(Bank.A, 3), Gpr(Bank.A, 4), Gpr(Bank.A, 6), Gpr(Bank.A, 7),
                                   Gpr(Bank.A, 8), ARG_CSUM_SEED, ARG_PTR_KINDS)),
    Routine.SKB_LOAD_BYTES: RoutineAbi((ARG_BYTES_OFFSET, ARG_BYTES_BUF, Gpr(Bank.A, 7), ARG_BYTES_LEN,
                                        ARG_PTR_KINDS)),
    Routine.SKB_STORE_BYTES: RoutineAbi((ARG_BYTES_OFFSET, ARG_BYTES_BUF, Gpr(Bank.A, 7), ARG_BYTES_LEN,
                                         ARG_SKB_FLAGS, Gpr(Bank.A, 11), ARG_PTR_KINDS)),
    Routine.L3_CSUM_REPLACE: RoutineAbi((ARG_BYTES_OFFSET, ARG_CSUM_FROM, Gpr(Bank.A, 7), ARG_CSUM_TO,
                                         Gpr(Bank.A, 9), ARG_SKB_FLAGS, Gpr(Bank.A, 11))),
    Routine.L4_CSUM_REPLACE: RoutineAbi((ARG_BYTES_OFFSET, ARG_CSUM_FROM, Gpr(Bank.A, 7), ARG_CSUM_TO,
                                         Gpr(Bank.A, 9), ARG_SKB_FLAGS, Gpr(Bank.A, 11))),
}


class MapCache:
    """The NIC-side map lookup cache: LRU over (table id, key) of present entries.

    The cache only decides what a lookup costs (``fw_map_lookup_hit`` or ``_miss``), never what it
    returns.  ``hits``/``misses`` count every lookup since the cache was made; a run's
    :class:`~nfpjit.isa.sim.result.SimResult` reports its own share.  ``simulate`` makes a cold
    cache per run unless given one (``map_cache=``): pass the same object for every packet to model
    the NIC, whose cache stays warm across packets.  Updates and deletes evict the key (write-through).
    """

    def __init__(self, size: int):
        if size < 0:
            raise UsageError(f"a map cache of {size} entries", hint="give a size of 0 (no cache) or more")
        self.size = size
        self.entries: OrderedDict[tuple[int, bytes], None] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, table_id: int, key: bytes, present: bool) -> bool:
        """True on a hit; a present entry that missed is installed (evicting the least recent)."""
        k = (table_id, key)
        if k in self.entries:
            self.entries.move_to_end(k)
            self.hits += 1
            return True
        self.misses += 1
        if present and self.size > 0:
            self.entries[k] = None
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return False

    def evict(self, table_id: int, key: bytes) -> None:
        self.entries.pop((table_id, key), None)


def _set_result(m, value: int) -> None:
    value = u64(value)
    m.gpr_a[RESULT_LO] = m.gpr_b[RESULT_LO] = lo32(value)
    m.gpr_a[RESULT_HI] = m.gpr_b[RESULT_HI] = hi32(value)


def _arg(m, reg: Gpr) -> int:
    return m.gpr_a[reg.index]


def _table(m):
    tid = _arg(m, ARG_MAP_ID)
    table = m.tables_by_id.get(tid)
    if table is None:
        raise Trap(FaultKind.OUT_OF_BOUNDS, f"map routine called with unknown map table id {tid}")
    return table


def _lm_bytes(m, reg: Gpr, length: int, what: str) -> bytes:
    return m.lm.read(_arg(m, reg), length)


def map_lookup(m) -> None:
    t = _table(m)
    key = _lm_bytes(m, ARG_KEY, t.key_size, "key")
    address = t.lookup(key, m.cpu)
    hit = m.map_cache.lookup(t.table_id, key, address != 0)
    m.charge(Resource.FIRMWARE, CYCLES["fw_map_lookup_hit" if hit else "fw_map_lookup_miss"])
    _set_result(m, address)


def map_update(m) -> None:
    t = _table(m)
    key = _lm_bytes(m, ARG_KEY, t.key_size, "key")
    value = _lm_bytes(m, ARG_VALUE, t.value_size, "value")
    m.map_cache.evict(t.table_id, key)
    m.charge(Resource.FIRMWARE, CYCLES["fw_map_update"])
    _set_result(m, t.update(key, value, join64(_arg(m, ARG_FLAGS), m.gpr_a[ARG_FLAGS.index + 1]), m.cpu))


def map_delete(m) -> None:
    t = _table(m)
    key = _lm_bytes(m, ARG_KEY, t.key_size, "key")
    m.map_cache.evict(t.table_id, key)
    m.charge(Resource.FIRMWARE, CYCLES["fw_map_delete"])
    _set_result(m, t.delete(key))


def _move_head(m, delta: int) -> int:
    start = m.pkt_addr + delta
    length = m.pkt_len - delta
    if start < m.ctm.base + FRAME_RESERVED or length < ETH_HLEN:
        return -errno.EINVAL
    m.pkt_addr, m.pkt_len = start, length
    return 0


def adjust_head(m) -> None:
    m.charge(Resource.FIRMWARE, CYCLES["fw_adjust_head"])
    _set_result(m, _move_head(m, s32(_arg(m, ARG_DELTA))))


def adjust_head_fast(m) -> None:
    m.charge(Resource.FIRMWARE, CYCLES["fw_adjust_head_fast"])
    _set_result(m, _move_head(m, s32(_arg(m, ARG_DELTA))))


def adjust_tail(m) -> None:
    m.charge(Resource.FIRMWARE, CYCLES["fw_adjust_tail"])
    length = m.pkt_len + s32(_arg(m, ARG_DELTA))
    if length < ETH_HLEN or m.pkt_addr + length > m.ctm.base + len(m.ctm.data):
        _set_result(m, -errno.EINVAL)
        return
    if length > m.pkt_len:
        # like Linux, a grown tail reads as zeros (not as bytes an earlier shrink left behind)
        m.ctm.write(m.pkt_addr + m.pkt_len, bytes(length - m.pkt_len))
    m.pkt_len = length
    _set_result(m, 0)


def get_prandom(m) -> None:
    m.charge(Resource.FIRMWARE, CYCLES["fw_get_prandom"])
    _set_result(m, m.rng.getrandbits(32))


# -- helper routines ---------------------------------------------------------------------------


def divide_steps(n: int, d: int) -> int:
    """Quotient bits a shift-subtract divider works through: |n| and |d| as unsigned magnitudes."""
    if d == 0:
        return 0
    return max(0, n.bit_length() - d.bit_length() + 1)


def divide_value(n_lo: int, n_hi: int, d_lo: int, d_hi: int, mode: int) -> tuple[int, int]:
    """(result as a 64-bit value, quotient bits worked) of fw_divide, with eBPF's rules:
    x / 0 = 0, x % 0 = x, INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0 (truncating division)."""
    wide = mode & DIV_WIDE
    if wide:
        n, d = join64(n_lo, n_hi), join64(d_lo, d_hi)
    else:
        n, d = n_lo & MASK32, d_lo & MASK32
    signed = mode & DIV_SIGNED
    if signed:
        n, d = (s64(n), s64(d)) if wide else (s32(n), s32(d))
    na, da = abs(n), abs(d)
    steps = divide_steps(na, da)
    if d == 0:
        value = 0 if not mode & DIV_MOD else n
    elif mode & DIV_MOD:
        r = na % da
        value = -r if n < 0 else r
    else:
        q = na // da
        value = -q if (n < 0) != (d < 0) else q
    value = u64(value)
    return (value if wide else value & MASK32), steps


def divide(m) -> None:
    a = [m.gpr_a[r.index] for r in DIV_ARGS]
    mode = a[4]
    value, steps = divide_value(a[0], a[1], a[2], a[3], mode)
    m.charge(Resource.FIRMWARE, CYCLES["fw_divide"]
             + steps * CYCLES["fw_divide_step64" if mode & DIV_WIDE else "fw_divide_step32"])
    lo_reg, hi_reg = DIV_ARGS[0].index, DIV_ARGS[1].index
    m.gpr_a[lo_reg] = m.gpr_b[lo_reg] = lo32(value)
    m.gpr_a[hi_reg] = m.gpr_b[hi_reg] = hi32(value)


def redirect_verdict(flags: int, kind: int) -> int | None:
    """bpf_redirect's return value for ``flags`` (64-bit); None: the flags are refused.

    XDP takes no flag (XDP_REDIRECT 4, else XDP_ABORTED 0); TC takes BPF_F_INGRESS (TC_ACT_REDIRECT 7,
    else TC_ACT_SHOT 2), as the kernel's bpf_redirect.
    """
    if kind == REDIRECT_TC:
        return 7 if not flags & ~1 else None
    return 4 if not flags else None


def redirect(m) -> None:
    """Record the target: the NIC transmits a frame redirected to its own ingress port (as XDP_TX);
    other targets are the host's business (the frame goes up with the target, as the kernel's)."""
    m.charge(Resource.FIRMWARE, CYCLES["fw_redirect"])
    kind = _arg(m, ARG_REDIRECT_KIND)
    verdict = redirect_verdict(join64(_arg(m, ARG_KEY), m.gpr_a[ARG_KEY.index + 1]), kind)
    if verdict is None:
        _set_result(m, 2 if kind == REDIRECT_TC else 0)
        return
    m.redirect = _arg(m, ARG_MAP_ID)
    _set_result(m, verdict)


def _memory_of(m, kind: int, lo: int, hi: int):
    """(memory, address) of a byte routine's pointer argument (PTR_* kind, low and high word)."""
    if kind == PTR_LM:
        return m.lm, lo
    if kind == PTR_EMEM:
        return m.emem, join64(lo, hi)
    if kind == PTR_CTM:
        return m.ctm, lo
    raise Trap(FaultKind.OUT_OF_BOUNDS, f"byte routine called with a NULL pointer (kind {kind})")


def _byte_buffer(m):
    """(memory, address) of a byte routine's buffer argument: a7:a6, its kind in a27 bits 1..0."""
    return _memory_of(m, _arg(m, ARG_PTR_KINDS) & 3, _arg(m, ARG_BYTES_BUF), m.gpr_a[ARG_BYTES_BUF.index + 1])


def _bytes_words(length: int) -> int:
    return (length + 3) // 4


def xdp_bytes_status(offset: int, length: int, pkt_len: int) -> int:
    """bpf_xdp_load_bytes/store_bytes' check of (u32) offset and length: 0, -EFAULT or -EINVAL."""
    if offset > XDP_BYTES_LIMIT or length > XDP_BYTES_LIMIT:       # bpf_xdp_pointer
        return -errno.EFAULT
    if offset + length > pkt_len:
        return -errno.EINVAL
    return 0


def _xdp_bytes(m, store: bool) -> None:
    offset, length = _arg(m, ARG_BYTES_OFFSET), _arg(m, ARG_BYTES_LEN)
    m.charge(Resource.FIRMWARE, CYCLES["fw_bytes"])
    status = xdp_bytes_status(offset, length, m.pkt_len)
    if status:
        _set_result(m, status)
        return
    m.charge(Resource.FIRMWARE, _bytes_words(length) * CYCLES["fw_bytes_word"])
    memory, address = _byte_buffer(m)
    if store:
        m.ctm.write(m.pkt_addr + offset, memory.read(address, length))
    else:
        memory.write(address, m.ctm.read(m.pkt_addr + offset, length))
    _set_result(m, 0)


def xdp_load_bytes(m) -> None:
    """Copy ``length`` packet bytes from ``offset`` to the buffer (kernel return codes)."""
    _xdp_bytes(m, store=False)


def xdp_store_bytes(m) -> None:
    """Copy ``length`` buffer bytes into the packet at ``offset`` (kernel return codes)."""
    _xdp_bytes(m, store=True)


def csum_diff(m) -> None:
    """bpf_csum_diff over the two buffers (:func:`nfpjit.bits.csum_diff_value`; no size is refused)."""
    from_size, to_size = _arg(m, Gpr(Bank.A, 4)), _arg(m, ARG_BYTES_LEN)
    m.charge(Resource.FIRMWARE, CYCLES["fw_csum_diff"]
             + (_bytes_words(from_size) + _bytes_words(to_size)) * CYCLES["fw_csum_word"])
    kinds = _arg(m, ARG_PTR_KINDS)
    frm = to = b""
    if from_size:
        memory, address = _memory_of(m, kinds & 3, m.gpr_a[2], m.gpr_a[3])
        frm = memory.read(address, from_size)
    if to_size:
        memory, address = _memory_of(m, kinds >> 2 & 3, _arg(m, ARG_BYTES_BUF), m.gpr_a[ARG_BYTES_BUF.index + 1])
        to = memory.read(address, to_size)
    _set_result(m, csum_diff_value(frm, to, _arg(m, ARG_CSUM_SEED)))


def _arg64(m, reg: Gpr) -> int:
    return join64(m.gpr_a[reg.index], m.gpr_a[reg.index + 1])


def skb_bytes_status(offset: int, length: int, pkt_len: int) -> int:
    """bpf_skb_load_bytes/store_bytes' check of (u32) offset and length: 0 or -EFAULT (the kernel
    reads and writes only what the packet has: skb_header_pointer, skb_ensure_writable)."""
    if offset > SKB_OFFSET_LIMIT or offset + length > pkt_len:
        return -errno.EFAULT
    return 0


def skb_load_bytes(m) -> None:
    """Copy ``length`` packet bytes from ``offset`` to the buffer; on -EFAULT the buffer is zeroed
    (the kernel's err_clear)."""
    offset, length = _arg(m, ARG_BYTES_OFFSET), _arg(m, ARG_BYTES_LEN)
    m.charge(Resource.FIRMWARE, CYCLES["fw_bytes"] + _bytes_words(length) * CYCLES["fw_bytes_word"])
    memory, address = _byte_buffer(m)
    status = skb_bytes_status(offset, length, m.pkt_len)
    memory.write(address, bytes(length) if status else m.ctm.read(m.pkt_addr + offset, length))
    _set_result(m, status)


def skb_store_bytes(m) -> None:
    """Copy ``length`` buffer bytes into the packet at ``offset``.  BPF_F_RECOMPUTE_CSUM changes nothing:
    the NIC keeps no CHECKSUM_COMPLETE sum of the packet (as BPF_PROG_TEST_RUN's CHECKSUM_NONE skb);
    BPF_F_INVALIDATE_HASH clears the receive hash (PKT_HASH reads 0 afterwards)."""
    offset, length, flags = _arg(m, ARG_BYTES_OFFSET), _arg(m, ARG_BYTES_LEN), _arg64(m, ARG_SKB_FLAGS)
    m.charge(Resource.FIRMWARE, CYCLES["fw_bytes"])
    if flags & ~(SKB_F_RECOMPUTE_CSUM | SKB_F_INVALIDATE_HASH):
        _set_result(m, -errno.EINVAL)
        return
    status = skb_bytes_status(offset, length, m.pkt_len)
    if status:
        _set_result(m, status)
        return
    m.charge(Resource.FIRMWARE, _bytes_words(length) * CYCLES["fw_bytes_word"])
    memory, address = _byte_buffer(m)
    m.ctm.write(m.pkt_addr + offset, memory.read(address, length))
    if flags & SKB_F_INVALIDATE_HASH:
        m.meta[Csr.PKT_HASH] = 0
    _set_result(m, 0)


def _csum_replace(m, l4: bool) -> None:
    """bpf_l3_csum_replace / bpf_l4_csum_replace on the 16-bit field at ``offset`` (the kernel's checks in
    its order; the packet has no CHECKSUM_PARTIAL/COMPLETE state, so the pseudo-header flag changes
    nothing beyond the field itself, as under BPF_PROG_TEST_RUN)."""
    m.charge(Resource.FIRMWARE, CYCLES["fw_csum_replace"])
    offset, flags = _arg(m, ARG_BYTES_OFFSET), _arg64(m, ARG_SKB_FLAGS)
    frm, to = _arg64(m, ARG_CSUM_FROM), _arg64(m, ARG_CSUM_TO)
    allowed = CSUM_F_SIZE_MASK
    if l4:
        allowed |= CSUM_F_PSEUDO_HDR | CSUM_F_MARK_MANGLED_0 | CSUM_F_MARK_ENFORCE | CSUM_F_IPV6
    if flags & ~allowed:
        _set_result(m, -errno.EINVAL)
        return
    if offset > SKB_OFFSET_LIMIT or offset & 1 or offset + 2 > m.pkt_len:
        _set_result(m, -errno.EFAULT)
        return
    at = m.pkt_addr + offset
    old = int.from_bytes(m.ctm.read(at, 2), "little")
    mangled_zero = l4 and bool(flags & CSUM_F_MARK_MANGLED_0)
    if mangled_zero and not flags & CSUM_F_MARK_ENFORCE and old == 0:
        _set_result(m, 0)
        return
    size = flags & CSUM_F_SIZE_MASK
    if size not in (0, 2, 4) or (size == 0 and frm):
        _set_result(m, -errno.EINVAL)
        return
    new = csum_replace(old, frm, to, size)
    if mangled_zero and new == 0:
        new = CSUM_MANGLED_0
    m.ctm.write(at, new.to_bytes(2, "little"))
    _set_result(m, 0)


def l3_csum_replace(m) -> None:
    _csum_replace(m, l4=False)


def l4_csum_replace(m) -> None:
    _csum_replace(m, l4=True)


ROUTINES = {
    Routine.MAP_LOOKUP: map_lookup,
    Routine.MAP_UPDATE: map_update,
    Routine.MAP_DELETE: map_delete,
    Routine.ADJUST_HEAD: adjust_head,
    Routine.ADJUST_HEAD_FAST: adjust_head_fast,
    Routine.ADJUST_TAIL: adjust_tail,
    Routine.GET_PRANDOM: get_prandom,
    Routine.DIVIDE: divide,
    Routine.REDIRECT: redirect,
    Routine.XDP_LOAD_BYTES: xdp_load_bytes,
    Routine.XDP_STORE_BYTES: xdp_store_bytes,
    Routine.CSUM_DIFF: csum_diff,
    Routine.SKB_LOAD_BYTES: skb_load_bytes,
    Routine.SKB_STORE_BYTES: skb_store_bytes,
    Routine.L3_CSUM_REPLACE: l3_csum_replace,
    Routine.L4_CSUM_REPLACE: l4_csum_replace,
}

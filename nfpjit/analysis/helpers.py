"""Signatures of the kernel helpers XDP and TC programs call: argument kinds, result, side effects.

Only what the verifier needs: which register must hold what (a map, the
context, memory of some size), what comes back in R0, and whether the call may
move packet data (which invalidates every packet pointer).  Written from the
helper prototypes documented in include/uapi/linux/bpf.h.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from nfpjit.ebpf.opcodes import Helper, MapType, ProgType


class Arg(Enum):
    ANY = "anything"        # any initialised value
    CTX = "ctx"
    MAP = "map_ptr"
    KEY = "map_key"         # memory of the map's key size, read
    VALUE = "map_value"     # memory of the map's value size, read
    MEM = "mem"             # memory read, size in the next argument
    MEM_OR_NULL = "mem_or_null"
    MEM_W = "uninit_mem"    # memory written by the helper, size in the next argument
    SIZE = "const_size"     # size of the previous memory argument (> 0)
    SIZE_OR_ZERO = "const_size_or_zero"
    VALUE_W = "uninit_map_value"  # memory of the map's value size, written (queue/stack pop, peek)
    ALLOC_SIZE = "const_alloc_size_or_zero"  # a known constant: the size of the memory returned
    FUNC = "func"           # a callback: ld_imm64 func (bpf_loop)
    STACK_OR_NULL = "fp_or_null"  # the callback's context: a stack pointer or NULL
    RINGBUF_MEM = "ringbuf_mem"   # a reserved record, released by the call
    U32_MEM = "fixed_size_mem"    # 4 aligned bytes the helper reads and writes (check_mtu's mtu_len)


class Ret(Enum):
    SCALAR = "scalar"
    U32 = "u32"
    MAP_VALUE_OR_NULL = "map_value_or_null"
    RINGBUF_MEM_OR_NULL = "ringbuf_mem_or_null"  # a record of ALLOC_SIZE bytes, reference acquired


@dataclass(frozen=True)
class HelperSig:
    helper: Helper
    args: tuple[Arg, ...]
    ret: Ret = Ret.SCALAR
    changes_packet: bool = False
    prog_types: frozenset[ProgType] | None = None  # None: every program type
    releases: bool = False  # releases the reference its RINGBUF_MEM argument holds


_XDP = frozenset({ProgType.XDP})
_TC = frozenset({ProgType.SCHED_CLS, ProgType.SCHED_ACT})
A = Arg

_SIGS = [
    HelperSig(Helper.map_lookup_elem, (A.MAP, A.KEY), Ret.MAP_VALUE_OR_NULL),
    HelperSig(Helper.map_update_elem, (A.MAP, A.KEY, A.VALUE, A.ANY)),
    HelperSig(Helper.map_delete_elem, (A.MAP, A.KEY)),
    HelperSig(Helper.map_push_elem, (A.MAP, A.VALUE, A.ANY)),
    HelperSig(Helper.map_pop_elem, (A.MAP, A.VALUE_W)),
    HelperSig(Helper.map_peek_elem, (A.MAP, A.VALUE_W)),
    HelperSig(Helper.ringbuf_output, (A.MAP, A.MEM, A.SIZE_OR_ZERO, A.ANY)),
    HelperSig(Helper.ringbuf_reserve, (A.MAP, A.ALLOC_SIZE, A.ANY), Ret.RINGBUF_MEM_OR_NULL),
    HelperSig(Helper.ringbuf_submit, (A.RINGBUF_MEM, A.ANY), releases=True),
    HelperSig(Helper.ringbuf_discard, (A.RINGBUF_MEM, A.ANY), releases=True),
    HelperSig(Helper.ringbuf_query, (A.MAP, A.ANY)),
    HelperSig(Helper.loop, (A.ANY, A.FUNC, A.STACK_OR_NULL, A.ANY)),
    HelperSig(Helper.for_each_map_elem, (A.MAP, A.FUNC, A.STACK_OR_NULL, A.ANY)),
    HelperSig(Helper.get_prandom_u32, (), Ret.U32),
    HelperSig(Helper.get_smp_processor_id, (), Ret.U32),
    HelperSig(Helper.get_numa_node_id, ()),
    HelperSig(Helper.ktime_get_ns, ()),
    HelperSig(Helper.ktime_get_boot_ns, ()),
    HelperSig(Helper.ktime_get_coarse_ns, ()),
    HelperSig(Helper.ktime_get_tai_ns, ()),
    HelperSig(Helper.trace_printk, (A.MEM, A.SIZE)),
    HelperSig(Helper.tail_call, (A.CTX, A.MAP, A.ANY)),
    HelperSig(Helper.redirect, (A.ANY, A.ANY)),
    HelperSig(Helper.redirect_map, (A.MAP, A.ANY, A.ANY)),
    HelperSig(Helper.perf_event_output, (A.CTX, A.MAP, A.ANY, A.MEM, A.SIZE_OR_ZERO)),
    HelperSig(Helper.csum_diff, (A.MEM_OR_NULL, A.SIZE_OR_ZERO, A.MEM_OR_NULL, A.SIZE_OR_ZERO, A.ANY)),
    HelperSig(Helper.fib_lookup, (A.CTX, A.MEM, A.SIZE, A.ANY)),
    HelperSig(Helper.check_mtu, (A.CTX, A.ANY, A.U32_MEM, A.ANY, A.ANY)),
    HelperSig(Helper.xdp_adjust_head, (A.CTX, A.ANY), changes_packet=True, prog_types=_XDP),
    HelperSig(Helper.xdp_adjust_tail, (A.CTX, A.ANY), changes_packet=True, prog_types=_XDP),
    HelperSig(Helper.xdp_adjust_meta, (A.CTX, A.ANY), changes_packet=True, prog_types=_XDP),
    HelperSig(Helper.xdp_get_buff_len, (A.CTX,), prog_types=_XDP),
    HelperSig(Helper.xdp_load_bytes, (A.CTX, A.ANY, A.MEM_W, A.SIZE), prog_types=_XDP),
    HelperSig(Helper.xdp_store_bytes, (A.CTX, A.ANY, A.MEM, A.SIZE), prog_types=_XDP),
    HelperSig(Helper.skb_load_bytes, (A.CTX, A.ANY, A.MEM_W, A.SIZE), prog_types=_TC),
    HelperSig(Helper.skb_load_bytes_relative, (A.CTX, A.ANY, A.MEM_W, A.SIZE, A.ANY), prog_types=_TC),
    HelperSig(Helper.skb_store_bytes, (A.CTX, A.ANY, A.MEM, A.SIZE, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.l3_csum_replace, (A.CTX, A.ANY, A.ANY, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.l4_csum_replace, (A.CTX, A.ANY, A.ANY, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_change_tail, (A.CTX, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_change_head, (A.CTX, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_pull_data, (A.CTX, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_adjust_room, (A.CTX, A.ANY, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_change_proto, (A.CTX, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_change_type, (A.CTX, A.ANY), prog_types=_TC),
    HelperSig(Helper.clone_redirect, (A.CTX, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_vlan_push, (A.CTX, A.ANY, A.ANY), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.skb_vlan_pop, (A.CTX,), changes_packet=True, prog_types=_TC),
    HelperSig(Helper.get_hash_recalc, (A.CTX,), prog_types=_TC),
    HelperSig(Helper.set_hash_invalid, (A.CTX,), prog_types=_TC),
    HelperSig(Helper.set_hash, (A.CTX, A.ANY), prog_types=_TC),
    HelperSig(Helper.csum_update, (A.CTX, A.ANY), prog_types=_TC),
    HelperSig(Helper.get_cgroup_classid, (A.CTX,), prog_types=_TC),
    HelperSig(Helper.get_route_realm, (A.CTX,), prog_types=_TC),
]

HELPERS: dict[int, HelperSig] = {int(s.helper): s for s in _SIGS}

M = MapType
_PERF = frozenset({Helper.perf_event_output, Helper.perf_event_read, Helper.perf_event_read_value})
_RINGBUF = frozenset({Helper.ringbuf_output, Helper.ringbuf_reserve, Helper.ringbuf_query})
_QUEUE = frozenset({Helper.map_push_elem, Helper.map_pop_elem, Helper.map_peek_elem})
#: the kernel's check_map_func_compatibility, map side: these map types go only to these helpers
MAP_HELPERS: dict[MapType, frozenset[Helper]] = {
    M.PROG_ARRAY: frozenset({Helper.tail_call}),
    M.PERF_EVENT_ARRAY: _PERF,
    M.RINGBUF: _RINGBUF,
    M.DEVMAP: frozenset({Helper.redirect_map, Helper.map_lookup_elem}),
    M.DEVMAP_HASH: frozenset({Helper.redirect_map, Helper.map_lookup_elem}),
    M.CPUMAP: frozenset({Helper.redirect_map}),
    M.XSKMAP: frozenset({Helper.redirect_map, Helper.map_lookup_elem}),
    M.ARRAY_OF_MAPS: frozenset({Helper.map_lookup_elem}),
    M.HASH_OF_MAPS: frozenset({Helper.map_lookup_elem}),
    M.QUEUE: _QUEUE,
    M.STACK: _QUEUE,
}
#: ... and helper side: these helpers take only these map types
HELPER_MAPS: dict[int, frozenset[MapType]] = {
    # the maps with a for-each callback (map_for_each_callback)
    Helper.for_each_map_elem: frozenset({M.ARRAY, M.PERCPU_ARRAY, M.HASH, M.PERCPU_HASH, M.LRU_HASH,
                                         M.LRU_PERCPU_HASH}),
    Helper.tail_call: frozenset({M.PROG_ARRAY}),
    **{h: frozenset({M.PERF_EVENT_ARRAY}) for h in _PERF},
    **{h: frozenset({M.RINGBUF}) for h in _RINGBUF},
    Helper.redirect_map: frozenset({M.DEVMAP, M.DEVMAP_HASH, M.CPUMAP, M.XSKMAP}),
    Helper.map_push_elem: frozenset({M.QUEUE, M.STACK, M.BLOOM_FILTER}),
    Helper.map_peek_elem: frozenset({M.QUEUE, M.STACK, M.BLOOM_FILTER}),
    Helper.map_pop_elem: frozenset({M.QUEUE, M.STACK}),
}


def map_helper_compatible(map_type: MapType, helper_id: int) -> bool:
    """Whether the kernel lets a program pass a map of ``map_type`` to helper ``helper_id``."""
    allowed = MAP_HELPERS.get(map_type)
    if allowed is not None and helper_id not in allowed:
        return False
    types = HELPER_MAPS.get(helper_id)
    return types is None or map_type in types


def helper_signature(helper_id: int, prog_type: ProgType) -> HelperSig | None:
    """The signature, or None when the helper is unknown or not available to ``prog_type``."""
    sig = HELPERS.get(helper_id)
    if sig is None or (sig.prog_types is not None and prog_type not in sig.prog_types):
        return None
    return sig


def helper_name(helper_id: int) -> str:
    try:
        return "bpf_" + Helper(helper_id).name
    except ValueError:
        return "unknown"

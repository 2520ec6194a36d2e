"""The eBPF instruction set's numbers (RFC 9669 and the kernel UAPI), as IntEnums.

One source of truth for opcode fields, pseudo sources, helper ids, map and
program types.  Everything that builds or inspects eBPF code names these
instead of writing bare numbers.
"""

from __future__ import annotations

from enum import IntEnum


class InsnClass(IntEnum):
    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


CLASS_MASK = 0x07
SOURCE_MASK = 0x08
OP_MASK = 0xF0
SIZE_MASK = 0x18
MODE_MASK = 0xE0


class Source(IntEnum):
    K = 0x00  # immediate operand
    X = 0x08  # register operand (for END: TO_BE)


class AluOp(IntEnum):
    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpOp(IntEnum):
    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0


CONDITIONAL_JUMPS = frozenset(JmpOp) - {JmpOp.JA, JmpOp.CALL, JmpOp.EXIT}


class Size(IntEnum):
    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18

    @property
    def nbytes(self) -> int:
        return {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}[self]


SIZE_OF_BYTES = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}


class Mode(IntEnum):
    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class AtomicOp(IntEnum):
    """The ``imm`` field of an atomic instruction."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1

    @property
    def fetches(self) -> bool:
        return bool(self & 0x01)

    @property
    def alu_op(self) -> AluOp | None:
        """The arithmetic the atomic performs, None for XCHG/CMPXCHG."""
        base = self & ~0x01
        return AluOp(base) if base in (0x00, 0x40, 0x50, 0xA0) else None


ATOMIC_FETCH = 0x01


class PseudoSrc(IntEnum):
    """``src`` of an ld_imm64: what the 64-bit immediate means.

    In a loaded :class:`~nfpjit.ebpf.program.Program`, MAP_FD and MAP_VALUE
    carry the index into ``Program.maps`` in ``imm`` (libbpf would put a file
    descriptor there); the kernel oracle substitutes real fds.
    """

    IMM64 = 0
    MAP_FD = 1
    MAP_VALUE = 2
    BTF_ID = 3
    FUNC = 4
    MAP_IDX = 5
    MAP_IDX_VALUE = 6


class CallKind(IntEnum):
    """``src`` of a CALL instruction."""

    HELPER = 0
    LOCAL = 1  # BPF-to-BPF call: imm is the pc offset - 1
    KFUNC = 2


class Helper(IntEnum):
    """Kernel helper ids (include/uapi/linux/bpf.h, ___BPF_FUNC_MAPPER order)."""

    map_lookup_elem = 1
    map_update_elem = 2
    map_delete_elem = 3
    probe_read = 4
    ktime_get_ns = 5
    trace_printk = 6
    get_prandom_u32 = 7
    get_smp_processor_id = 8
    skb_store_bytes = 9
    l3_csum_replace = 10
    l4_csum_replace = 11
    tail_call = 12
    clone_redirect = 13
    get_current_pid_tgid = 14
    get_current_uid_gid = 15
    get_current_comm = 16
    get_cgroup_classid = 17
    skb_vlan_push = 18
    skb_vlan_pop = 19
    skb_get_tunnel_key = 20
    skb_set_tunnel_key = 21
    perf_event_read = 22
    redirect = 23
    get_route_realm = 24
    perf_event_output = 25
    skb_load_bytes = 26
    get_stackid = 27
    csum_diff = 28
    skb_get_tunnel_opt = 29
    skb_set_tunnel_opt = 30
    skb_change_proto = 31
    skb_change_type = 32
    skb_under_cgroup = 33
    get_hash_recalc = 34
    get_current_task = 35
    probe_write_user = 36
    current_task_under_cgroup = 37
    skb_change_tail = 38
    skb_pull_data = 39
    csum_update = 40
    set_hash_invalid = 41
    get_numa_node_id = 42
    skb_change_head = 43
    xdp_adjust_head = 44
    probe_read_str = 45
    get_socket_cookie = 46
    get_socket_uid = 47
    set_hash = 48
    setsockopt = 49
    skb_adjust_room = 50
    redirect_map = 51
    sk_redirect_map = 52
    sock_map_update = 53
    xdp_adjust_meta = 54
    perf_event_read_value = 55
    perf_prog_read_value = 56
    getsockopt = 57
    override_return = 58
    sock_ops_cb_flags_set = 59
    msg_redirect_map = 60
    msg_apply_bytes = 61
    msg_cork_bytes = 62
    msg_pull_data = 63
    bind = 64
    xdp_adjust_tail = 65
    skb_get_xfrm_state = 66
    get_stack = 67
    skb_load_bytes_relative = 68
    fib_lookup = 69
    map_push_elem = 87
    map_pop_elem = 88
    map_peek_elem = 89
    spin_lock = 93
    spin_unlock = 94
    jiffies64 = 118
    ktime_get_boot_ns = 125
    ringbuf_output = 130
    ringbuf_reserve = 131
    ringbuf_submit = 132
    ringbuf_discard = 133
    ringbuf_query = 134
    check_mtu = 163
    timer_init = 169
    timer_set_callback = 170
    timer_start = 171
    timer_cancel = 172
    ktime_get_coarse_ns = 160
    xdp_get_buff_len = 188
    xdp_load_bytes = 189
    xdp_store_bytes = 190
    dynptr_read = 201
    dynptr_write = 202
    loop = 181
    for_each_map_elem = 164
    ktime_get_tai_ns = 208


class MapType(IntEnum):
    """enum bpf_map_type; ``str(MapType.HASH.kernel_name)`` is "hash" as bpftool prints it."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30

    @property
    def kernel_name(self) -> str:
        return self.name.lower()


class ProgType(IntEnum):
    """enum bpf_prog_type (the ones nfpjit meets)."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6


class XdpAction(IntEnum):
    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4

    @property
    def kernel_name(self) -> str:
        return "XDP_" + self.name


class TcAction(IntEnum):
    UNSPEC = -1
    OK = 0
    RECLASSIFY = 1
    SHOT = 2
    PIPE = 3
    STOLEN = 4
    QUEUED = 5
    REPEAT = 6
    REDIRECT = 7

    @property
    def kernel_name(self) -> str:
        return "TC_ACT_" + self.name


class MapUpdateFlag(IntEnum):
    ANY = 0
    NOEXIST = 1
    EXIST = 2

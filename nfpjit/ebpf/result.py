"""What running a program on one packet produces, whichever engine ran it.

The reference interpreter, the Linux kernel oracle (``BPF_PROG_TEST_RUN``) and
the NFP simulator (through the driver) all return a :class:`RunResult`, so
differential tests compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nfpjit.ebpf.opcodes import ProgType, TcAction, XdpAction

# Map contents after a run: map name -> {key bytes: value bytes}.  Arrays list
# every index (as the kernel's dump does); hashes list the present entries.
MapState = dict[str, dict[bytes, bytes]]


#: the __sk_buff fields a TC program may write that the engines hand back (RunResult.skb)
SKB_META_FIELDS = ("mark", "priority", "queue_mapping", "tc_index", "tc_classid",
                   "cb[0]", "cb[1]", "cb[2]", "cb[3]", "cb[4]")


@dataclass(frozen=True)
class PacketIn:
    """One packet and the context fields an XDP/TC program may read."""

    data: bytes
    ingress_ifindex: int = 1
    rx_queue_index: int = 0
    # __sk_buff metadata a TC program starts with (BPF_PROG_TEST_RUN's ctx_in can set mark, priority
    # and cb).  ``hash`` is skb->hash: 0 = none (test_run's skb), None = the NIC firmware's receive
    # hash of the frame (nfpjit.ethernet.rx_hash), any other number = that hash.
    mark: int = 0
    priority: int = 0
    cb: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    hash: int | None = 0

    def __post_init__(self):
        if len(self.cb) != 5:
            raise ValueError(f"cb has 5 words, not {len(self.cb)}")

    def skb_hash(self) -> int:
        """skb->hash as every engine sees it (None resolved to the firmware's receive hash)."""
        if self.hash is None:
            from nfpjit.ethernet import rx_hash

            return rx_hash(self.data)
        return self.hash & 0xFFFF_FFFF


class Trap(Exception):
    """Raised inside an interpreter handler or helper; the interpreter turns it into a :class:`Fault` at its pc."""

    def __init__(self, reason: str, address: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.address = address


@dataclass(frozen=True)
class Fault:
    """Why a run stopped abnormally: a result, never an exception."""

    pc: int
    reason: str
    address: int | None = None

    def __str__(self) -> str:
        at = f" at address 0x{self.address:x}" if self.address is not None else ""
        return f"insn {self.pc}: {self.reason}{at}"


@dataclass
class RunResult:
    r0: int = 0                       # full 64-bit return value
    packet: bytes = b""               # packet bytes after the run (adjust_head/tail applied)
    maps: MapState = field(default_factory=dict)
    insns: int = 0                    # instructions executed (eBPF or NFP, per engine)
    redirect: int | None = None       # redirect target (ifindex or map key), if any
    trace_output: list[str] = field(default_factory=list)   # bpf_trace_printk
    perf_output: list[bytes] = field(default_factory=list)  # bpf_perf_event_output
    fault: Fault | None = None
    cycles: int | None = None         # simulator only
    trace: list[str] | None = None    # per-instruction trace when asked for
    # TC programs: the __sk_buff metadata after the run, field name -> value (SKB_META_FIELDS; the
    # kernel oracle reports only what test_run's ctx_out carries: mark, priority, cb[0..4])
    skb: dict[str, int] | None = None

    def action_name(self, prog_type: ProgType) -> str:
        """The kernel's name for the verdict: XDP_PASS, TC_ACT_SHOT, ... (XDP looks at the low 32 bits)."""
        if self.fault is not None:
            return "FAULT"
        if prog_type == ProgType.XDP:
            ret = self.r0 & 0xFFFF_FFFF
            return XdpAction(ret).kernel_name if ret in XdpAction._value2member_map_ else f"XDP_UNKNOWN({ret})"
        ret = self.r0 & 0xFFFF_FFFF
        ret = ret - (1 << 32) if ret >> 31 else ret
        return TcAction(ret).kernel_name if ret in TcAction._value2member_map_ else f"TC_ACT_UNKNOWN({ret})"

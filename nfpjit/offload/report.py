"""The offload capability report: every reason a program cannot run on the NIC, at once.

:func:`check` runs each check in :data:`CHECKS` against a :class:`Program`
and a :class:`~nfpjit.offload.profile.Profile` and returns a :class:`Report`
of :class:`Diagnostic` values with stable codes (:class:`Code`), source
locations from the line info and a hint saying what to write instead.  The
real NFP driver stops at its first problem with a bare message; this report
collects all of them.

Checks that need to know what a register points to read the program analysis
(``nfpjit.analysis``, through :mod:`nfpjit.offload.facts`), the one source of
those facts: it is run when the caller passes none.  Its ``problems`` become
``verifier`` diagnostics (unless the caller asks to skip them) and its
``stack_depth`` the frame sizes.  A new check is a function ``(ctx) ->
iterable of Diagnostic`` appended to :data:`CHECKS`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum
from functools import cached_property

from nfpjit.bits import u32
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import (
    AluOp, AtomicOp, CallKind, Helper, InsnClass, JmpOp, MapType, Mode, ProgType, PseudoSrc,
    TcAction, XdpAction,
)
from nfpjit.ebpf.program import Program
from nfpjit.offload.facts import XDP_QUEUE_SELECT, AccessKind, Kind, Tracked, offload_analysis
from nfpjit.offload.profile import Profile


class Severity(IntEnum):
    NOTE = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


class Code(StrEnum):
    """Stable diagnostic codes (documented in docs/check-json.md); never renamed."""

    UNSUPPORTED_HELPER = "unsupported-helper"
    MAP_TYPE = "map-type"
    MAP_FLAGS = "map-flags"
    MAP_KEY_SIZE = "map-key-size"
    MAP_VALUE_SIZE = "map-value-size"
    MAP_ENTRY_SIZE = "map-entry-size"
    MAP_ENTRIES = "map-entries"
    TOO_MANY_MAPS = "too-many-maps"
    DIV_BY_VARIABLE = "div-by-variable"
    MOD = "mod"
    SIGNED_DIV = "signed-div"
    ATOMIC_OP = "atomic-op"
    ATOMIC_TARGET = "atomic-target"
    MAP_VALUE_WRITE = "map-value-write"
    CTX_STORE = "ctx-store"
    STACK_SIZE = "stack-size"
    VARIABLE_STACK_POINTER = "variable-stack-pointer"
    PROGRAM_TOO_LONG = "program-too-long"
    PACKET_SPLIT = "packet-split"
    TAIL_CALL = "tail-call"
    KFUNC = "kfunc"
    BPF_CALL = "bpf-call"
    LD_ABS = "ld-abs"
    UNSUPPORTED_OPCODE = "unsupported-opcode"
    PROG_TYPE = "prog-type"
    EXIT_ACTION = "exit-action"
    HELPER_ARG = "helper-arg"
    MAP_VALUE_USE = "map-value-use"
    MAP_VALUE_OFFSET = "map-value-offset"
    DIV_OPERAND = "div-operand"
    MUL_OPERAND = "mul-operand"
    CTX_LOAD = "ctx-load"
    MIXED_POINTER = "mixed-pointer"
    VERIFIER = "verifier"


@dataclass(frozen=True)
class Diagnostic:
    """One problem.  ``insn`` is the eBPF pc (slot index), None for program- or map-level problems."""

    code: Code
    severity: Severity
    insn: int | None
    file: str | None
    line: int | None
    col: int | None
    source_text: str
    message: str
    hint: str | None = None
    # what the Linux nfp driver itself says when it refuses the same thing (its verifier-log line
    # "[nfp] ...", kernel-log line "NFP net bpf: ..." or netlink message "nfp: ..."), None when the
    # driver has no such rule; "(no message: ...)" when it refuses without a word
    kernel: str | None = None

    def to_json(self) -> dict:
        return {
            "code": str(self.code),
            "severity": str(self.severity),
            "insn": self.insn,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "message": self.message,
            "hint": self.hint,
            "kernel": self.kernel,
        }


@dataclass(frozen=True)
class Resources:
    """How much of the NIC the program uses, next to the profile's limits."""

    stack: int
    stack_limit: int
    nfp_insns: int
    nfp_insns_estimated: bool  # True until the lowering reports the real count
    nfp_insn_limit: int
    maps: int
    map_limit: int
    map_entries: int
    map_entry_limit: int

    def to_json(self) -> dict:
        return {
            "stack": self.stack, "stack_limit": self.stack_limit,
            "nfp_insns": self.nfp_insns, "nfp_insns_estimated": self.nfp_insns_estimated,
            "nfp_insn_limit": self.nfp_insn_limit,
            "maps": self.maps, "map_limit": self.map_limit,
            "map_entries": self.map_entries, "map_entry_limit": self.map_entry_limit,
        }

    def __str__(self) -> str:
        approx = "~" if self.nfp_insns_estimated else ""
        return (f"stack {self.stack}/{self.stack_limit} B, NFP instructions {approx}{self.nfp_insns}/"
                f"{self.nfp_insn_limit}{' (estimate)' if self.nfp_insns_estimated else ''}, "
                f"maps {self.maps}/{self.map_limit}, map entries {self.map_entries}/{self.map_entry_limit}")


@dataclass(frozen=True)
class Report:
    program: str
    section: str
    profile: str
    diagnostics: tuple[Diagnostic, ...]
    resources: Resources | None = None

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.severity == severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(str(d.code) for d in self.diagnostics)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "program": self.program,
            "section": self.section,
            "profile": self.profile,
            "diagnostics": [d.to_json() for d in self.diagnostics],
            "resources": self.resources.to_json() if self.resources is not None else None,
        }


@dataclass
class CheckContext:
    """What every check may look at."""

    program: Program
    profile: Profile
    tracked: Tracked
    analysis: object | None = None
    unsupported_opcodes: frozenset[int] = frozenset()
    nfp_insn_count: int | None = None
    verifier_problems: bool = True
    queue_select: frozenset[int] = frozenset()  # queue-select stores the host verifier refused

    @cached_property
    def _line_pcs(self) -> list[int]:
        return sorted(self.program.line_info)

    def loc_of(self, pc: int):
        """Line info marks the first instruction of each source line: the entry at or before pc covers it."""
        i = bisect_right(self._line_pcs, pc)
        return self.program.line_info[self._line_pcs[i - 1]] if i else None

    def diag(self, code: Code, severity: Severity, pc: int | None, message: str, hint: str | None = None,
             kernel: str | None = None) -> Diagnostic:
        loc = self.loc_of(pc) if pc is not None else None
        file = loc.file if loc else self.main_file
        if loc is not None and loc.line <= 0:
            loc = None  # line 0: code the compiler made up (merged tails, spills): no honest line
        return Diagnostic(code, severity, pc, file, loc.line if loc else None, loc.col if loc else None,
                          loc.text if loc else "", message, hint, kernel)

    @property
    def main_file(self) -> str | None:
        """Where program-level problems (maps, stack, length) are reported: the entry point's source
        file when there is line info, else the object."""
        prog = self.program
        if prog.line_info:
            first = prog.line_info[min(prog.line_info)]
            if first.file:
                return first.file
        return prog.source_path or None

    def helper_name(self, helper_id: int) -> str:
        try:
            return "bpf_" + Helper(helper_id).name
        except ValueError:
            return f"helper #{helper_id}"

    def map_name(self, index: int | None) -> str:
        if index is not None and 0 <= index < len(self.program.maps):
            return self.program.maps[index].name
        maps = getattr(getattr(self.analysis, "analysis", None), "maps", ())  # then inner-map templates
        if index is not None and 0 <= index < len(maps):
            return maps[index].name
        return f"map #{index}"


# -- the Linux nfp driver's own words ----------------------------------------------------------------
# Facts about drivers/net/ethernet/netronome/nfp/bpf: its verifier hook writes "[nfp] " lines to
# the verifier log, map allocation writes "NFP net bpf: " lines to the kernel log, and attach
# answers with netlink messages that iproute2 shows prefixed "nfp: ".  docs/profiles.md lists
# every rule with its message.

def _vlog(text: str) -> str:
    return f"[nfp] {text}"


def _klog(text: str) -> str:
    return f"NFP net bpf: {text}"


def _extack(text: str) -> str:
    return f"nfp: {text}"


# the kernel's enum bpf_reg_type numbers the driver prints (the ones it pins with BUILD_BUG_ON and
# their neighbours); "%d" where the number depends on the kernel version
_REG_TYPE = {
    Kind.SCALAR: "1", Kind.CTX: "2", Kind.MAP_PTR: "3", Kind.MAP_VALUE: "4", Kind.MAP_KEY: "5",
    Kind.STACK: "6", Kind.PACKET: "8", Kind.PACKET_END: "9",
}


def _reg_type(kind) -> str:
    return _REG_TYPE.get(kind, "%d")


def _unsupported_opcode(code: int) -> str:
    return _vlog(f"instruction {code:#x} not supported")


# helpers the driver checks by name before its "unsupported function id" default
_HELPER_FW_MESSAGES = {
    Helper.xdp_adjust_head: "adjust_head not supported by FW",
    Helper.xdp_adjust_tail: "adjust_tail not supported by FW",
    Helper.get_prandom_u32: "bpf_get_prandom_u32(): FW doesn't support random number generation",
    Helper.perf_event_output: "event_output: not supported by FW",
    Helper.map_lookup_elem: "map_lookup: not supported by FW",
    Helper.map_update_elem: "map_update: not supported by FW",
    Helper.map_delete_elem: "map_delete: not supported by FW",
}
_NO_CTX_FIELD = "(no message: the JIT fails with EOPNOTSUPP; it reads only data and data_end, on TC also len)"


# -- hints ----------------------------------------------------------------------------------------

_TIME_HINT = "{name} has no NIC equivalent: timestamp in the host or use a counter"
_REDIRECT_HINT = ("{name}: offloaded programs can only PASS, DROP, TX or ABORT: return XDP_TX to send the "
                  "packet back out, or XDP_PASS and redirect in a host XDP program")
_HELPER_HINTS = {
    Helper.ktime_get_ns: _TIME_HINT,
    Helper.ktime_get_boot_ns: _TIME_HINT,
    Helper.ktime_get_coarse_ns: _TIME_HINT,
    Helper.ktime_get_tai_ns: _TIME_HINT,
    Helper.redirect: _REDIRECT_HINT,
    Helper.redirect_map: _REDIRECT_HINT,
    Helper.clone_redirect: _REDIRECT_HINT,
    Helper.trace_printk: "{name}: the NIC has no trace pipe: count events in an ARRAY map or use bpf_perf_event_output",
    Helper.fib_lookup: "{name}: the NIC has no routing table: keep next hops in a HASH map filled by the host",
    Helper.get_smp_processor_id: "{name}: the NIC has no host CPU: use ctx->rx_queue_index",
    Helper.csum_diff: "{name}: update checksums incrementally with ALU instructions (RFC 1624)",
    Helper.l3_csum_replace: "{name}: update checksums incrementally with ALU instructions (RFC 1624)",
    Helper.l4_csum_replace: "{name}: update checksums incrementally with ALU instructions (RFC 1624)",
    Helper.xdp_adjust_meta: "{name}: the NIC keeps no metadata area: carry the data in the packet",
    Helper.xdp_load_bytes: "{name}: read the packet directly through ctx->data after a bounds check",
    Helper.xdp_store_bytes: "{name}: write the packet directly through ctx->data after a bounds check",
    Helper.check_mtu: "{name}: the NIC knows no host device MTUs: compare the packet length with a constant",
    Helper.map_push_elem: "{name}: queue and stack maps live in the host: keep a ring of slots in an ARRAY map",
    Helper.map_pop_elem: "{name}: queue and stack maps live in the host: keep a ring of slots in an ARRAY map",
    Helper.map_peek_elem: "{name}: queue and stack maps live in the host: keep a ring of slots in an ARRAY map",
    Helper.ringbuf_output: "{name}: the NIC has no ring buffer: send events with bpf_perf_event_output",
    Helper.ringbuf_reserve: "{name}: the NIC has no ring buffer: send events with bpf_perf_event_output",
    Helper.ringbuf_submit: "{name}: the NIC has no ring buffer: send events with bpf_perf_event_output",
    Helper.ringbuf_discard: "{name}: the NIC has no ring buffer: send events with bpf_perf_event_output",
    Helper.ringbuf_query: "{name}: the NIC has no ring buffer: send events with bpf_perf_event_output",
    Helper.loop: "{name}: the NIC runs no callbacks: write a bounded loop the compiler can unroll",
    Helper.for_each_map_elem: "{name}: the NIC runs no callbacks: walk the map from the host",
    Helper.timer_init: "{name}: the NIC has no timers: expire state from the host",
    Helper.timer_set_callback: "{name}: the NIC has no timers: expire state from the host",
    Helper.timer_start: "{name}: the NIC has no timers: expire state from the host",
    Helper.timer_cancel: "{name}: the NIC has no timers: expire state from the host",
}

_MAP_HINTS = {
    MapType.PERCPU_ARRAY: "per-CPU arrays are not offloadable: use BPF_MAP_TYPE_ARRAY with one slot per queue",
    MapType.PERCPU_HASH: "per-CPU hashes are not offloadable: use BPF_MAP_TYPE_HASH and put the queue index in the key",
    MapType.LRU_PERCPU_HASH: "use BPF_MAP_TYPE_HASH (queue index in the key) and expire entries from the host",
    MapType.LRU_HASH: "use BPF_MAP_TYPE_HASH and delete stale entries from the host",
    MapType.LPM_TRIE: ("longest-prefix match is not offloadable: use one HASH map per prefix length "
                       "and look up from the longest, or match in the host"),
    MapType.PROG_ARRAY: "tail calls are not offloadable: call a BPF-to-BPF function (__noinline) instead",
    MapType.DEVMAP: "redirect targets live in the host: return XDP_TX or XDP_PASS",
    MapType.DEVMAP_HASH: "redirect targets live in the host: return XDP_TX or XDP_PASS",
    MapType.CPUMAP: "redirect targets live in the host: return XDP_TX or XDP_PASS",
    MapType.XSKMAP: "AF_XDP sockets live in the host: return XDP_PASS and redirect in a host program",
    MapType.RINGBUF: "use bpf_perf_event_output to send events to the host",
    MapType.ARRAY_OF_MAPS: ("map-in-map is not offloadable: put the inner maps' index into the key of one "
                            "HASH map (or one ARRAY with a slot range per inner map)"),
    MapType.HASH_OF_MAPS: ("map-in-map is not offloadable: put the outer key into the key of one HASH map "
                           "holding all inner entries"),
    MapType.QUEUE: "queue maps live in the host: keep a ring of slots and a head index in an ARRAY map",
    MapType.STACK: "stack maps live in the host: keep slots and a top index in an ARRAY map",
}

_MAP_HELPERS = {  # helper id -> argument index (0 = r1) that is a map pointer
    Helper.map_lookup_elem: 0, Helper.map_update_elem: 0, Helper.map_delete_elem: 0,
    Helper.tail_call: 1, Helper.redirect_map: 0, Helper.perf_event_output: 1,
    Helper.map_push_elem: 0, Helper.map_pop_elem: 0, Helper.map_peek_elem: 0,
    Helper.ringbuf_output: 0, Helper.ringbuf_reserve: 0, Helper.ringbuf_query: 0,
}


def _round8(n: int) -> int:
    return (n + 7) & ~7


# -- checks ---------------------------------------------------------------------------------------

def check_prog_type(ctx: CheckContext) -> Iterable[Diagnostic]:
    if ctx.program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        yield ctx.diag(Code.PROG_TYPE, Severity.ERROR, None,
                       f"program type {ctx.program.prog_type.name} cannot be offloaded",
                       "only XDP and TC direct-action classifiers (SEC(\"xdp\"), SEC(\"tc\")) run on the NIC",
                       "(no message: BPF_PROG_LOAD with prog_ifindex fails with EINVAL for other program types)")


def _map_uses(ctx: CheckContext) -> dict[int, list[tuple[int, int]]]:
    """map index -> [(pc, helper id)]: the helper calls passing that map, else its ld_imm64 sites (helper 0)."""
    uses: dict[int, list[tuple[int, int]]] = {}
    for call in ctx.tracked.calls:
        arg = _MAP_HELPERS.get(call.helper)
        v = call.args[arg] if arg is not None else None
        if v is not None and v.kind == Kind.MAP_PTR and v.map is not None:
            uses.setdefault(v.map, []).append((call.pc, call.helper))
    refs: dict[int, list[tuple[int, int]]] = {}
    for pc, insn in ctx.program.slots():
        if insn.is_ld_imm64 and insn.src in _MAP_PSEUDO and insn.imm not in uses:
            refs.setdefault(insn.imm, []).append((pc, 0))
    return uses | refs


_MAP_PSEUDO = (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX, PseudoSrc.MAP_IDX_VALUE)


def check_maps(ctx: CheckContext) -> Iterable[Diagnostic]:
    prof = ctx.profile
    maps = ctx.program.maps
    uses = _map_uses(ctx)
    supported_types = ", ".join(sorted(t.kernel_name for t in prof.map_types))
    for idx, m in enumerate(maps):
        if m.type not in prof.map_types:
            hint = _MAP_HINTS.get(m.type, f"the NIC supports these map types: {supported_types}")
            yield ctx.diag(Code.MAP_TYPE, Severity.ERROR, None,
                           f"map '{m.name}' has type {m.type.kernel_name}, which the NIC does not implement", hint,
                           _klog("map type not supported"))
            for pc, helper in uses.get(idx, []):
                what = f"{ctx.helper_name(helper)} on" if helper else "reference to"
                yield ctx.diag(Code.MAP_TYPE, Severity.NOTE, pc,
                               f"{what} {m.type.kernel_name} map '{m.name}' here", hint)
        bad_flags = m.flags & ~prof.map_flags
        if bad_flags:
            yield ctx.diag(Code.MAP_FLAGS, Severity.ERROR, None,
                           f"map '{m.name}' has flags 0x{bad_flags:x} the NIC firmware does not accept",
                           "drop the map_flags (BPF_F_NO_PREALLOC, BPF_F_MMAPABLE, ...) for offloaded maps"
                           + (f"; accepted mask is 0x{prof.map_flags:x}" if prof.map_flags else ""),
                           _klog("map flags are not supported"))
        if m.key_size > prof.max_key_size:
            yield ctx.diag(Code.MAP_KEY_SIZE, Severity.ERROR, None,
                           f"map '{m.name}' key is {m.key_size} bytes, the NIC allows at most {prof.max_key_size}",
                           "hash a long key down to a shorter one, or split the table",
                           _klog(f"map key size {m.key_size}, FW max is {prof.max_key_size}"))
        if m.value_size > prof.max_value_size:
            yield ctx.diag(Code.MAP_VALUE_SIZE, Severity.ERROR, None,
                           f"map '{m.name}' value is {m.value_size} bytes, the NIC allows at most "
                           f"{prof.max_value_size}",
                           "split the value over two maps with the same key",
                           _klog(f"map value size {m.value_size}, FW max is {prof.max_value_size}"))
        entry = _round8(m.key_size) + _round8(m.value_size)
        if entry > prof.max_entry_size:  # the driver checks this first, whatever the key and value sizes
            yield ctx.diag(Code.MAP_ENTRY_SIZE, Severity.ERROR, None,
                           f"map '{m.name}' entry needs {entry} bytes (key {m.key_size} and value {m.value_size}, "
                           f"each rounded up to 8), the firmware limit is {prof.max_entry_size}",
                           "shrink the key or the value",
                           _klog(f"map elements too large: {entry}, FW max element size (key+value): "
                                 f"{prof.max_entry_size}"))
        if m.max_entries > prof.max_entries_per_map:
            yield ctx.diag(Code.MAP_ENTRIES, Severity.ERROR, None,
                           f"map '{m.name}' has {m.max_entries} entries, the NIC allows at most "
                           f"{prof.max_entries_per_map} per map", "lower max_entries",
                           _klog(f"map with too many elements: {m.max_entries}, left: {prof.max_entries_per_map}"))
    total = sum(m.max_entries for m in maps)
    if total > prof.max_total_entries and all(m.max_entries <= prof.max_entries_per_map for m in maps):
        used, first = 0, None  # the driver refuses the first map that no longer fits
        for m in maps:
            if prof.max_total_entries - used < m.max_entries:
                first = (m.max_entries, prof.max_total_entries - used)
                break
            used += m.max_entries
        yield ctx.diag(Code.MAP_ENTRIES, Severity.ERROR, None,
                       f"the maps have {total} entries in total, the NIC holds at most {prof.max_total_entries}",
                       "lower max_entries of the largest maps",
                       _klog(f"map with too many elements: {first[0]}, left: {first[1]}") if first else None)
    if len(maps) > prof.max_maps:
        yield ctx.diag(Code.TOO_MANY_MAPS, Severity.ERROR, None,
                       f"the program uses {len(maps)} maps, the NIC allows at most {prof.max_maps}",
                       "merge maps with the same key into one map with a larger value",
                       _klog("too many maps for a device"))


def check_calls(ctx: CheckContext) -> Iterable[Diagnostic]:
    prof = ctx.profile
    supported = ", ".join("bpf_" + h.name for h in sorted(prof.helpers))
    for pc, insn in ctx.program.slots():
        if not insn.is_call:
            continue
        if insn.src == CallKind.KFUNC:
            if not prof.features.kfuncs:
                kname = ctx.program.kfuncs.get(pc)
                what = f"{kname} (kfunc BTF id {insn.imm})" if kname else f"(kfunc BTF id {insn.imm})"
                hint = ("the NIC fills no XDP metadata: read what you need from the packet or the host"
                        if kname and kname.startswith("bpf_xdp_metadata_") else "do this part in a host program")
                yield ctx.diag(Code.KFUNC, Severity.ERROR, pc,
                               f"call to kernel function {what}: kfuncs do not exist on the NIC", hint,
                               _vlog(f"unsupported function id: {insn.imm}"))
            continue
        if insn.src == CallKind.LOCAL:
            if not prof.features.bpf_to_bpf_calls:
                yield ctx.diag(Code.BPF_CALL, Severity.ERROR, pc, "BPF-to-BPF call: this NIC profile has no calls",
                               "mark the callee __always_inline")
            continue
        hid = insn.imm
        name = ctx.helper_name(hid)
        if hid == Helper.tail_call:
            if not prof.features.tail_calls:
                yield ctx.diag(Code.TAIL_CALL, Severity.ERROR, pc, "bpf_tail_call is not offloadable",
                               "call a BPF-to-BPF function (__noinline) or inline the next stage",
                               _vlog(f"unsupported function id: {hid}"))
            continue
        if not prof.helper_supported(hid):
            hint = _HELPER_HINTS.get(hid)
            if hint is None and hid in (Helper.xdp_adjust_head, Helper.xdp_adjust_tail):
                hint = "{name}: this NIC profile cannot move the packet boundaries; change the packet size in the host"
            hint = (hint or "the NIC firmware implements only {supported}").format(name=name, supported=supported)
            yield ctx.diag(Code.UNSUPPORTED_HELPER, Severity.ERROR, pc,
                           f"helper {name} (id {hid}) is not available on the NIC", hint,
                           _vlog(_HELPER_FW_MESSAGES.get(hid, f"unsupported function id: {hid}")))


def _is_v4(insn: Insn) -> str | None:
    """The name of a v4-only instruction form, or None."""
    if insn.is_alu:
        op = insn.alu_op
        if op == AluOp.MOV and insn.source and insn.off:
            return "movsx (sign-extending move)"
        if op == AluOp.END and insn.cls == InsnClass.ALU64:
            return "bswap (unconditional byte swap)"
    if insn.cls == InsnClass.LDX and insn.mode == Mode.MEMSX:
        return "ldsx (sign-extending load)"
    if insn.cls == InsnClass.JMP32 and insn.jmp_op == JmpOp.JA:
        return "gotol (long jump)"
    return None


def _v4_kernel(insn: Insn) -> str:
    """What the driver says about a v4 form: ldsx, bswap and gotol have opcodes of their own it does
    not know; movsx shares its opcode with mov, which the driver's opcode check lets through."""
    if insn.is_alu and insn.alu_op == AluOp.MOV:
        return (f"(no message: the driver checks only the opcode, {insn.code:#x}, which movsx shares with mov; "
                "its JIT would move without sign extension)")
    return _unsupported_opcode(insn.code)


def check_insns(ctx: CheckContext) -> Iterable[Diagnostic]:
    prof = ctx.profile
    feats = prof.features
    divisors = {d.pc: d.divisor for d in ctx.tracked.divisions}
    for pc, insn in ctx.program.slots():
        if insn.code in ctx.unsupported_opcodes:
            yield ctx.diag(Code.UNSUPPORTED_OPCODE, Severity.ERROR, pc,
                           f"opcode 0x{insn.code:02x} has no NFP lowering",
                           "rewrite this operation with simpler ALU instructions", _unsupported_opcode(insn.code))
        v4 = _is_v4(insn)
        if v4 and not feats.v4_instructions:
            if feats.v4_read_as_v3 and insn.is_alu and insn.alu_op == AluOp.MOV:
                yield ctx.diag(Code.UNSUPPORTED_OPCODE, Severity.WARNING, pc,
                               f"{v4} is taken as a plain mov: the NIC ignores the sign extension, so the result "
                               "differs from the kernel's", "compile with -mcpu=v3", _v4_kernel(insn))
            else:
                yield ctx.diag(Code.UNSUPPORTED_OPCODE, Severity.ERROR, pc,
                               f"{v4} is an eBPF v4 instruction the NIC does not execute",
                               "compile with -mcpu=v3", _v4_kernel(insn))
        if insn.cls == InsnClass.LD and insn.mode in (Mode.ABS, Mode.IND) and not feats.ld_abs:
            yield ctx.diag(Code.LD_ABS, Severity.ERROR, pc, "legacy ld_abs/ld_ind packet load",
                           "read the packet through ctx->data after a bounds check")
        if insn.is_alu and insn.alu_op in (AluOp.DIV, AluOp.MOD):
            yield from _check_division(ctx, pc, insn, divisors.get(pc))
            if (insn.alu_op == AluOp.DIV and not insn.source and insn.imm < 0 and insn.off == 0
                    and not feats.division_by_register):
                yield ctx.diag(Code.DIV_OPERAND, Severity.ERROR, pc,
                               f"division by the negative constant {insn.imm} (read as {u32(insn.imm)} unsigned)",
                               "the NIC divides by reciprocal multiplication of 32-bit values: use a positive divisor",
                               _vlog("divide by negative constant is not supported"))
        if (insn.is_alu and insn.alu_op == AluOp.MUL and insn.cls == InsnClass.ALU64 and not insn.source
                and insn.imm < 0):
            yield ctx.diag(Code.MUL_OPERAND, Severity.ERROR, pc,
                           f"64-bit multiplication by the negative constant {insn.imm}: the NIC multiplies "
                           "32-bit unsigned values", "multiply by the positive value and negate the result",
                           _vlog("sign extended multiplicand won't be within u32 value range"))


def check_wide_operands(ctx: CheckContext) -> Iterable[Diagnostic]:
    """The NIC multiplies (and divides, by reciprocal multiplication) 32-bit unsigned numbers only."""
    if ctx.profile.features.division_by_register:  # a NIC with real 64-bit arithmetic
        return
    for pc, dst_max, src_max in ctx.tracked.wide_operands:
        insn = ctx.program.at(pc)
        op = insn.alu_op
        code = Code.MUL_OPERAND if op == AluOp.MUL else Code.DIV_OPERAND
        what = {AluOp.MUL: "multiplication", AluOp.DIV: "division", AluOp.MOD: "modulo"}[op]
        bits = "64-bit" if insn.cls == InsnClass.ALU64 else "32-bit"
        if dst_max is not None and dst_max > 0xFFFF_FFFF:
            role = "multiplier" if op == AluOp.MUL else "dividend"
            yield ctx.diag(code, Severity.ERROR, pc,
                           f"{bits} {what}: the {role} r{insn.dst} may exceed 32 bits (up to {dst_max:#x})",
                           "the NIC multiplies 32-bit unsigned values: mask or bound the operand to 32 bits first",
                           _vlog(f"{role} is not within u32 value range") if op != AluOp.MOD else None)
        if insn.source and src_max is not None and src_max > 0xFFFF_FFFF:
            role = "multiplicand" if op == AluOp.MUL else "divisor"
            yield ctx.diag(code, Severity.ERROR, pc,
                           f"{bits} {what}: the {role} r{insn.src} may exceed 32 bits (up to {src_max:#x})",
                           "the NIC multiplies 32-bit unsigned values: mask or bound the operand to 32 bits first",
                           _vlog(f"{role} is not within u32 value range") if op != AluOp.MOD else None)


def _check_division(ctx: CheckContext, pc: int, insn: Insn, divisor) -> Iterable[Diagnostic]:
    feats = ctx.profile.features
    signed = insn.off == 1
    by_reg = bool(insn.source)
    known = divisor is not None and divisor.kind == Kind.SCALAR and divisor.off is not None
    if signed and not feats.signed_division and feats.v4_read_as_v3 and insn.alu_op == AluOp.DIV:
        yield ctx.diag(Code.SIGNED_DIV, Severity.WARNING, pc,
                       "signed division (v4 sdiv) is taken as unsigned division: negative operands give other "
                       "results than the kernel's", "divide unsigned values (cast to __u32/__u64), handling the "
                       "sign yourself", f"(no message: the driver checks only the opcode, {insn.code:#x}, which sdiv "
                       "shares with div; its JIT would divide unsigned)")
        signed = False  # and the driver's rules for div apply to it
    if signed and not feats.signed_division:
        yield ctx.diag(Code.SIGNED_DIV, Severity.ERROR, pc,
                       f"signed {'division' if insn.alu_op == AluOp.DIV else 'modulo'} (v4 sdiv/smod)",
                       "divide unsigned values (cast to __u32/__u64), handling the sign yourself",
                       _unsupported_opcode(insn.code) if insn.alu_op == AluOp.MOD else
                       f"(no message: the driver checks only the opcode, {insn.code:#x}, which sdiv shares with div; "
                       "its JIT would divide unsigned)")
        return
    if insn.alu_op == AluOp.MOD:
        if not feats.modulo:
            yield ctx.diag(Code.MOD, Severity.ERROR, pc, "modulo (%) is not offloadable",
                           "for a power of two use & (n - 1); otherwise x - (x / c) * c with a constant c",
                           _unsupported_opcode(insn.code))
        elif by_reg and not known and not feats.modulo_by_register:
            yield ctx.diag(Code.MOD, Severity.ERROR, pc, "modulo by a register whose value is not a known constant",
                           "take the modulo of a constant")
        return
    if by_reg and not known and not feats.division_by_register:
        yield ctx.diag(Code.DIV_BY_VARIABLE, Severity.ERROR, pc,
                       f"division by register r{insn.src}, whose value is not a known constant",
                       "division by a register: divide by a constant or use a shift", _vlog("divisor is not constant"))


def check_memory(ctx: CheckContext) -> Iterable[Diagnostic]:
    prof = ctx.profile
    feats = prof.features
    xdp = ctx.program.prog_type == ProgType.XDP
    for acc in ctx.tracked.accesses:
        insn = ctx.program.at(acc.pc)
        base = acc.base
        kind = base.kind if base is not None else None
        if acc.kind == AccessKind.ATOMIC:
            op = u32(insn.imm)
            is_add = op == AtomicOp.ADD
            width_ok = feats.atomic_add64 if acc.size == 8 else feats.atomic_add32
            if (not is_add and not feats.other_atomics) or (is_add and not width_ok):
                opname = AtomicOp(op).name.lower() if op in AtomicOp._value2member_map_ else hex(op)
                yield ctx.diag(Code.ATOMIC_OP, Severity.ERROR, acc.pc,
                               f"atomic {opname} ({acc.size * 8}-bit): the NIC only has atomic add without fetch",
                               "use __sync_fetch_and_add and ignore its result, or keep the logic in the host",
                               _vlog(f"atomic op not implemented: {insn.imm}") if not is_add else None)
            if kind is None:
                yield ctx.diag(Code.ATOMIC_TARGET, Severity.WARNING, acc.pc,
                               "cannot tell what this atomic operation's pointer points to",
                               "the NIC only does atomics on map values: apply them to a bpf_map_lookup_elem result")
            elif kind != Kind.MAP_VALUE and not (kind == Kind.STACK and feats.other_atomics):
                # with the full atomic engine (other_atomics) the stack takes every atomic too (LM is the thread's own)
                yield ctx.diag(Code.ATOMIC_TARGET, Severity.ERROR, acc.pc,
                               f"atomic operation on {_KIND_NAMES[kind]}: the NIC only does atomics on map values",
                               "a plain load, add and store does the same on the stack or packet",
                               _vlog(f"atomic add not to a map value pointer: {_reg_type(kind)}"))
        if acc.kind == AccessKind.STORE and kind == Kind.MAP_VALUE and not feats.map_value_write:
            yield ctx.diag(Code.MAP_VALUE_WRITE, Severity.ERROR, acc.pc,
                           f"store into a value of map '{ctx.map_name(base.map)}' through its pointer: the NIC "
                           "cannot write map values in place",
                           "use bpf_map_update_elem with a copy on the stack, or __sync_fetch_and_add for counters",
                           _vlog("map writes not supported"))
        if acc.kind == AccessKind.LOAD and kind == Kind.CTX:
            field = _ctx_field(ctx, acc)
            if field is None and not xdp and acc.offset is not None and 48 <= acc.offset < 68:
                field = _ctx_field(ctx, replace(acc, size=min(acc.size, 4)))     # a cb[] load may span words
            allowed = prof.xdp_context_reads if xdp else prof.tc_context_reads
            if field is None or field.name not in allowed:
                struct = "xdp_md" if xdp else "__sk_buff"
                what = f"{struct}.{field.name}" if field else f"{struct} at offset {acc.offset}"
                yield ctx.diag(Code.CTX_LOAD, Severity.ERROR, acc.pc,
                               f"reads {what}, which the NIC does not provide",
                               f"the NIC provides only {', '.join(sorted(allowed))}: "
                               "derive the rest from the packet, or pass it in a map", _NO_CTX_FIELD)
        if acc.kind in (AccessKind.STORE, AccessKind.ATOMIC) and kind == Kind.CTX:
            queue_select = (xdp and feats.queue_select and acc.kind == AccessKind.STORE
                            and acc.offset == XDP_QUEUE_SELECT and acc.size == 4)
            field = _ctx_field(ctx, acc) if not xdp else None
            if field is None and not xdp and acc.offset is not None and 48 <= acc.offset < 68:
                field = _ctx_field(ctx, replace(acc, size=min(acc.size, 4)))     # a cb[] store may span words
            tc_write = (not xdp and acc.kind == AccessKind.STORE and field is not None
                        and field.name in prof.tc_context_writes)
            if not queue_select and not tc_write:
                field = _ctx_field(ctx, acc)
                struct = "xdp_md" if xdp else "__sk_buff"
                where = (f"{struct}.{field.name}" if field else
                         f"offset {acc.offset}" if acc.offset is not None else "a variable offset")
                yield ctx.diag(Code.CTX_STORE, Severity.ERROR, acc.pc,
                               f"store to the context field {where} ({acc.size} bytes)" if field else
                               f"store to the context at {where} ({acc.size} bytes)",
                               "the only context field an offloaded program may write is xdp_md.rx_queue_index "
                               "(queue select)" if xdp and feats.queue_select else
                               f"the NIC lets a TC program write {', '.join(sorted(prof.tc_context_writes))}"
                               if not xdp and prof.tc_context_writes else
                               "offloaded programs cannot write the context: keep the value in a map",
                               _vlog("queue selection not supported by FW") if xdp and acc.offset == XDP_QUEUE_SELECT
                               else _vlog("unsupported store to context field"))
        if kind == Kind.STACK and acc.offset is None:
            yield ctx.diag(Code.VARIABLE_STACK_POINTER, Severity.ERROR, acc.pc,
                           "stack access through a pointer whose offset is not the same constant on every path",
                           "index stack arrays with constants, or move the array into an ARRAY map",
                           _vlog("variable ptr stack access"))
        if kind == Kind.PACKET:
            yield from _check_split(ctx, acc)
    for pc in ctx.tracked.mixed_pointers:
        yield ctx.diag(Code.MIXED_POINTER, Severity.ERROR, pc,
                       "this instruction reaches different kinds of memory on different paths",
                       "the NIC compiles each load and store for one kind of memory: give each path its own access",
                       _vlog("ptr type changed for instruction %d -> %d"))


def _ctx_field(ctx: CheckContext, acc):
    """The context struct field an access falls in (the UAPI layout of nfpjit.ebpf.context), or None."""
    from nfpjit.ebpf.context import SkbContext, XdpContext

    if acc.offset is None:
        return None
    layout = XdpContext if ctx.program.prog_type == ProgType.XDP else SkbContext
    for f in layout.FIELDS:
        if f.offset <= acc.offset and acc.offset + acc.size <= f.offset + f.size:
            return f
    return None


_SPLIT_MESSAGE = _extack("BPF offload not supported with potential packet access beyond HW packet split boundary")


def _check_split(ctx: CheckContext, acc) -> Iterable[Diagnostic]:
    split = ctx.profile.packet_split
    hint = f"the NIC's packet buffer holds the first {split} bytes: parse less deep"
    lo, hi = acc.offset_range if acc.offset_range is not None else (acc.offset, acc.offset)
    if lo is None:
        return
    if lo + acc.size > split:
        yield ctx.diag(Code.PACKET_SPLIT, Severity.ERROR, acc.pc,
                       f"packet bytes {lo}..{lo + acc.size - 1} lie beyond the packet split boundary at {split}", hint,
                       _SPLIT_MESSAGE)
    elif hi + acc.size > split:
        # the verifier's max_pkt_offset takes the highest offset the access may reach: refused
        yield ctx.diag(Code.PACKET_SPLIT, Severity.ERROR, acc.pc,
                       f"packet access at offsets {lo}..{hi} ({acc.size} bytes) may reach beyond the packet split "
                       f"boundary at {split}", hint, _SPLIT_MESSAGE)


_KIND_NAMES = {
    Kind.SCALAR: "a scalar", Kind.CTX: "the context", Kind.STACK: "the stack", Kind.PACKET: "packet data",
    Kind.PACKET_END: "the packet end", Kind.MAP_PTR: "a map pointer", Kind.MAP_VALUE: "a map value",
    Kind.RINGBUF_RECORD: "a ring buffer record", Kind.MAP_KEY: "a map key",
}


def _function_starts(prog: Program) -> list[int]:
    """Start pcs of the entry point and every BPF-to-BPF callee (from the symbol table and call targets)."""
    starts = {fn.start_pc for fn in prog.functions}
    if prog.pcs:
        starts.add(prog.pcs[0])
    for pc, insn in prog.slots():
        if insn.is_local_call:
            starts.add(insn.jump_target(pc))
    return sorted(starts)


def _function_of(starts: list[int], pc: int) -> int:
    best = starts[0] if starts else 0
    for s in starts:
        if s <= pc:
            best = s
    return best


def _frame_depths(ctx: CheckContext, starts: list[int]) -> dict[int, int]:
    """Stack bytes each function touches (keyed by start pc), from its accesses and helper arguments."""
    depth: dict[int, int] = {}

    def note(pc: int, offset: int | None) -> None:
        if offset is None or offset >= 0:
            return
        key = _function_of(starts, pc)
        depth[key] = max(depth.get(key, 0), -offset)

    for acc in ctx.tracked.accesses:
        if acc.base is not None and acc.base.kind == Kind.STACK:
            note(acc.pc, acc.offset)
    for call in ctx.tracked.calls:
        for v in call.args:
            if v is not None and v.kind == Kind.STACK:
                note(call.pc, v.off)
    return depth


_FRAME_ALIGN = 64  # every frame on the NIC's stack starts 64-byte aligned
_RETURN_ADDRESS = 4  # a callee's frame also holds its return address ...
_SAVED_REGS = 32  # ... and R6-R9 (low words) when it writes them


def _writes_callee_saved(insn: Insn) -> bool:
    """The driver pushes R6-R9 for a callee with any instruction naming one of them as dst (a store's
    base and a compare's left side too, not only writes)."""
    return 6 <= insn.dst <= 9


def stack_usage(ctx: CheckContext) -> int:
    """Deepest stack use over all call chains, laid out as the NFP does: each frame rounded up to 64 bytes,
    callee frames with room for the return address and, when written, R6-R9."""
    analysis_depth = getattr(ctx.analysis, "stack_depth", None)
    if isinstance(analysis_depth, int):
        return analysis_depth
    prog = ctx.program
    if not prog.pcs:
        return 0
    starts = _function_starts(prog)
    depths = _frame_depths(ctx, starts)
    cfg = getattr(ctx.analysis, "cfg", None)
    if isinstance(analysis_depth, dict) and cfg is not None:
        # the analysis knows each function's own frame, including slots reached through pointers
        depths = {fn.start: analysis_depth.get(fn.name, 0) for fn in cfg.functions}
    entry = prog.pcs[0]
    calls: dict[int, set[int]] = {}
    saves: set[int] = set()
    for pc, insn in prog.slots():
        fn = _function_of(starts, pc)
        if insn.is_local_call:
            calls.setdefault(fn, set()).add(insn.jump_target(pc))
        if _writes_callee_saved(insn):
            saves.add(fn)

    def frame(start: int) -> int:
        size = depths.get(start, 0)
        if start != entry:
            size += _RETURN_ADDRESS + (_SAVED_REGS if start in saves else 0)
        return -(-size // _FRAME_ALIGN) * _FRAME_ALIGN

    def deepest(start: int, seen: frozenset) -> int:
        below = [deepest(c, seen | {c}) for c in calls.get(start, ()) if c not in seen]
        return frame(start) + max(below, default=0)

    return deepest(entry, frozenset({entry}))


def check_stack(ctx: CheckContext) -> Iterable[Diagnostic]:
    used = stack_usage(ctx)
    if used > ctx.profile.stack_size:
        yield ctx.diag(Code.STACK_SIZE, Severity.ERROR, None,
                       f"the program needs {used} bytes of stack, the NIC has {ctx.profile.stack_size}",
                       "move large buffers into a per-queue ARRAY map entry",
                       _vlog(f"stack too large: program {used}B > FW stack {ctx.profile.stack_size}B"))


# NFP instructions per eBPF instruction, by kind: a rough model of the lowering used only until the
# lowering itself reports the real count.  64-bit ALU works on two 32-bit halves; memory accesses are
# a command plus transfer-register moves; helper calls set up arguments in defer slots.
EXPANSION = {
    "alu64": 2, "alu32": 2, "mul": 8, "div": 12, "jmp": 3, "jmp32": 2, "ld_imm64": 4,
    "load": 4, "store": 4, "atomic": 6, "call": 6, "exit": 2,
}


def estimate_nfp_insns(program: Program) -> int:
    total = 0
    for insn in program.insns:
        cls = insn.cls
        if insn.is_ld_imm64:
            kind = "ld_imm64"
        elif insn.is_alu:
            op = insn.alu_op
            kind = ("mul" if op == AluOp.MUL else "div" if op in (AluOp.DIV, AluOp.MOD)
                    else "alu64" if cls == InsnClass.ALU64 else "alu32")
        elif insn.is_call:
            kind = "call"
        elif insn.is_exit:
            kind = "exit"
        elif insn.is_jmp:
            kind = "jmp32" if cls == InsnClass.JMP32 else "jmp"
        elif cls in (InsnClass.LDX, InsnClass.LD):
            kind = "load"
        elif insn.mode == Mode.ATOMIC:
            kind = "atomic"
        else:
            kind = "store"
        total += EXPANSION[kind]
    return total


def check_length(ctx: CheckContext) -> Iterable[Diagnostic]:
    store = ctx.profile.instruction_store
    if ctx.nfp_insn_count is not None:
        if ctx.nfp_insn_count > store:
            yield ctx.diag(Code.PROGRAM_TOO_LONG, Severity.ERROR, None,
                           f"the program is {ctx.nfp_insn_count} NFP instructions, the instruction store holds {store}",
                           "split the program, or move rare paths to the host (XDP_PASS)", _extack("program too long"))
        return
    est = estimate_nfp_insns(ctx.program)
    if est > store:
        yield ctx.diag(Code.PROGRAM_TOO_LONG, Severity.ERROR, None,
                       f"the program is an estimated {est} NFP instructions ({len(ctx.program.insns)} eBPF "
                       f"instructions, estimate), the instruction store holds {store}",
                       "split the program, or move rare paths to the host (XDP_PASS)", _extack("program too long"))


def check_exits(ctx: CheckContext) -> Iterable[Diagnostic]:
    prog = ctx.program
    prof = ctx.profile
    starts = _function_starts(prog)
    entry = prog.pcs[0] if prog.pcs else 0
    for pc, r0 in ctx.tracked.exits:
        if _function_of(starts, pc) != entry:
            continue  # a BPF-to-BPF callee's return value is not the verdict
        values = r0.possible_values() if r0 is not None else None
        if prog.prog_type == ProgType.XDP:
            # the driver takes any XDP return value; its JIT turns the unknown ones into XDP_ABORTED
            carried = ", ".join(a.kernel_name for a in sorted(prof.xdp_actions))
            for action in sorted({v & 0xFFFF_FFFF for v in values or ()}):
                if action in prof.xdp_actions:
                    continue
                name = XdpAction(action).kernel_name if action in XdpAction._value2member_map_ else str(action)
                what = "which the NIC does not carry out" if action in XdpAction._value2member_map_ else \
                    "which is no XDP action"
                yield ctx.diag(Code.EXIT_ACTION, Severity.WARNING, pc,
                               f"{_may(values)}{name}, {what}: the NIC drops the packet as XDP_ABORTED",
                               f"return one of {carried}" + (
                                   "; redirect from a host program" if action == XdpAction.REDIRECT else ""),
                               "(no message: the driver accepts every XDP return value; its JIT turns any above "
                               "XDP_TX into XDP_ABORTED)")
        elif prog.prog_type == ProgType.SCHED_CLS:
            accepted = sorted(prof.tc_actions)
            hint = ("return " + ", ".join(a.kernel_name for a in accepted) + (", " if accepted else "")
                    + "or TC_ACT_UNSPEC (-1) to hand the packet on; the NIC has no other verdicts")
            if values is None:
                if not prof.features.tc_variable_verdict:
                    yield ctx.diag(Code.EXIT_ACTION, Severity.ERROR, pc,
                                   "the TC verdict is not a constant the NIC can map to an action", hint,
                                   _vlog("unsupported exit state: 1, var_off: %s"))
                continue
            for value in sorted(values):
                unsigned = value & 0xFFFF_FFFF_FFFF_FFFF
                if unsigned <= TcAction.REDIRECT and TcAction(unsigned) not in prof.tc_actions:
                    yield ctx.diag(Code.EXIT_ACTION, Severity.ERROR, pc,
                                   f"{_may(values)}{TcAction(unsigned).kernel_name}, which the NIC cannot carry out",
                                   hint, _vlog(f"unsupported exit state: 1, imm: {unsigned:x}"))


def _may(values) -> str:
    return "returns " if len(values) == 1 else "may return "


_KEY_ARGS = {  # helper -> (argument index, what it is) that must point into the stack
    Helper.map_lookup_elem: ((1, "key"),),
    Helper.map_delete_elem: ((1, "key"),),
    Helper.map_update_elem: ((1, "key"), (2, "value")),
}
_BPF_F_CURRENT_CPU = 0xFFFF_FFFF


_DRIVER_NAMES = {Helper.map_lookup_elem: "map_lookup", Helper.map_update_elem: "map_update",
                 Helper.map_delete_elem: "map_delete", Helper.perf_event_output: "event_output"}
_EVENT_DATA_KINDS = (Kind.SCALAR, Kind.STACK, Kind.MAP_VALUE, Kind.PACKET)  # r4 of bpf_perf_event_output


def _stack_arg(ctx: CheckContext, call, index: int, what: str, name: str) -> Iterable[Diagnostic]:
    """The driver's rule for a helper's stack argument: the stack, at a constant, 4-byte aligned offset."""
    v = call.args[index]
    if v is None:
        return
    fname = _DRIVER_NAMES[call.helper]
    if v.kind != Kind.STACK or v.off is None:
        where = _KIND_NAMES[v.kind] if v.kind != Kind.STACK else "the stack at a variable offset"
        yield ctx.diag(Code.HELPER_ARG, Severity.ERROR, call.pc,
                       f"{name}: the {what} (r{index + 1}) points to {where}; the NIC takes {what}s "
                       "only from a fixed stack slot",
                       f"copy the {what} into a local variable and pass its address",
                       _vlog(f"{fname}: unsupported ptr type {_reg_type(v.kind)}") if v.kind != Kind.STACK
                       else _vlog(f"{fname}: variable pointer"))
    elif -v.off % 4 and not ctx.profile.features.unaligned_stack_args:
        yield ctx.diag(Code.HELPER_ARG, Severity.ERROR, call.pc,
                       f"{name}: the {what} (r{index + 1}) is at stack offset {v.off}, which is not 4-byte aligned",
                       f"align the {what} variable to 4 bytes (__attribute__((aligned(4))), or a __u32 member first)",
                       _vlog(f"{fname}: unaligned stack pointer {-v.off}"))


def check_helper_args(ctx: CheckContext) -> Iterable[Diagnostic]:
    for call in ctx.tracked.calls:
        if not ctx.profile.helper_supported(call.helper):
            continue
        name = ctx.helper_name(call.helper)
        for index, what in _KEY_ARGS.get(call.helper, ()):
            yield from _stack_arg(ctx, call, index, what, name)
        if call.helper == Helper.perf_event_output:
            flags = call.args[2]
            if flags is None or flags.kind != Kind.SCALAR or flags.off is None or \
                    flags.off & _BPF_F_CURRENT_CPU != _BPF_F_CURRENT_CPU:
                known = flags is not None and flags.kind == Kind.SCALAR and flags.off is not None
                yield ctx.diag(Code.HELPER_ARG, Severity.ERROR, call.pc,
                               f"{name}: flags (r3) must be the constant BPF_F_CURRENT_CPU",
                               "the NIC delivers events to whichever CPU reads its control queue",
                               _vlog("event_output: must use BPF_F_CURRENT_CPU, var_off: "
                                     + (f"(0x{flags.off & (1 << 64) - 1:x}; 0x0)" if known else "%s")))
            data = call.args[3]
            if data is not None and data.kind not in _EVENT_DATA_KINDS:
                yield ctx.diag(Code.HELPER_ARG, Severity.ERROR, call.pc,
                               f"{name}: the data (r4) points to {_KIND_NAMES[data.kind]}; the NIC sends events "
                               "from the stack, a map value or the packet",
                               "copy the data into a local variable and pass its address",
                               _vlog(f"event_output: unsupported ptr type: {_reg_type(data.kind)}"))
            elif data is not None and data.kind == Kind.STACK:
                yield from _stack_arg(ctx, call, 3, "data", name)
            yield ctx.diag(Code.HELPER_ARG, Severity.NOTE, call.pc,
                           f"{name} is asynchronous on the NIC: it reports success even when the event is "
                           "later dropped, and events may arrive reordered", None,
                           _vlog("warning: return codes and behavior of event_output helper differ for offload!"))


_USE_NAMES = {AccessKind.LOAD: "read", AccessKind.ATOMIC: "updated atomically"}


def check_map_value_use(ctx: CheckContext) -> Iterable[Diagnostic]:
    """The firmware keeps each 4-byte word of a map value either readable or an atomic counter."""
    words: dict[tuple[int, int], dict[AccessKind, int]] = {}
    for acc in ctx.tracked.accesses:
        base = acc.base
        if base is None or base.kind != Kind.MAP_VALUE or acc.kind == AccessKind.STORE:
            continue
        if acc.offset is None:
            if ctx.profile.features.variable_map_value_offset:
                continue    # the lowering picks a window inside the value (or refuses it itself)
            yield ctx.diag(Code.MAP_VALUE_OFFSET, Severity.ERROR, acc.pc,
                           f"map '{ctx.map_name(base.map)}' value accessed at a variable offset",
                           "index map values with constants (unroll the loop), or use one map entry per index",
                           _vlog("map value offset is variable"))
            continue
        start, end = acc.offset, acc.offset + acc.size
        for word in range(start // 4, (end + 3) // 4):
            uses = words.setdefault((base.map, word), {})
            uses.setdefault(acc.kind, acc.pc)
    if ctx.profile.features.other_atomics:
        return      # a NIC with the full atomic engine keeps atomically updated words as plain, readable memory
    reported: set[tuple[int, int]] = set()
    for (m, word), uses in sorted(words.items(), key=lambda kv: (kv[0][0] if kv[0][0] is not None else -1, kv[0][1])):
        if len(uses) < 2 or (m, uses[AccessKind.ATOMIC]) in reported:
            continue
        reported.add((m, uses[AccessKind.ATOMIC]))
        first, second = sorted(uses, key=uses.get)  # the verifier meets them in program order
        names = {AccessKind.LOAD: "read", AccessKind.ATOMIC: "atomic"}
        yield ctx.diag(Code.MAP_VALUE_USE, Severity.ERROR, uses[AccessKind.ATOMIC],
                       f"map '{ctx.map_name(m)}' value bytes {word * 4}..{word * 4 + 3} are updated atomically "
                       f"here and also read (insn {uses[AccessKind.LOAD]}): the NIC keeps atomic counters in a "
                       "form the program cannot read",
                       "read counters from the host, and keep values the program reads in other words",
                       _vlog(f"map value use type conflict {names[first]} vs {names[second]} off: {word * 4}"))


def check_analysis(ctx: CheckContext) -> Iterable[Diagnostic]:
    if not ctx.verifier_problems:
        return
    for problem in getattr(ctx.analysis, "problems", None) or ():
        pc = getattr(problem, "pc", None)
        pc = pc if pc is None or pc in ctx.program.index_at_pc else None
        code = getattr(problem, "code", "")
        if code == "ctx_access" and pc in ctx.queue_select:
            continue  # the host verifier refuses queue select; the NIC's allows it
        message = getattr(problem, "message", None) or str(problem)
        yield ctx.diag(Code.VERIFIER, Severity.ERROR, pc, f"{message} ({code})" if code else message,
                       getattr(problem, "hint", None) or "the kernel verifier would reject this too")


CHECKS: list[Callable[[CheckContext], Iterable[Diagnostic]]] = [
    check_prog_type, check_maps, check_calls, check_helper_args, check_insns, check_memory,
    check_map_value_use, check_wide_operands, check_exits, check_stack, check_length, check_analysis,
]


def _order(d: Diagnostic):
    return (d.insn is not None, d.insn if d.insn is not None else -1, -int(d.severity), str(d.code), d.message)


def check(program: Program, profile: Profile, *, analysis=None, verifier_problems: bool = True,
          unsupported_opcodes: Iterable[int] = (), nfp_insn_count: int | None = None) -> Report:
    """Every reason ``program`` cannot be offloaded to a NIC described by ``profile``.

    ``analysis`` is ``nfpjit.analysis.analyze(program)`` when the caller already has it; otherwise
    it is run here.  Its path-sensitive facts drive every check, its problems become ``verifier``
    diagnostics (``verifier_problems=False`` leaves them out: the program is known to verify, or
    only the NIC's limits are of interest) and its stack depths size the frames.
    ``unsupported_opcodes`` is the set of eBPF opcodes the lowering cannot handle; ``nfp_insn_count``
    is the lowered length, when known (otherwise it is estimated from the eBPF length).
    """
    queue_select = program.prog_type == ProgType.XDP and profile.features.queue_select
    facts = offload_analysis(program, analysis, queue_select=queue_select)
    ctx = CheckContext(program, profile, facts.tracked, facts, frozenset(unsupported_opcodes), nfp_insn_count,
                       verifier_problems, facts.queue_select)
    found: list[Diagnostic] = []
    for chk in CHECKS:
        found.extend(chk(ctx))
    unique = list(dict.fromkeys(found))
    unique.sort(key=_order)
    resources = Resources(
        stack=stack_usage(ctx), stack_limit=profile.stack_size,
        nfp_insns=nfp_insn_count if nfp_insn_count is not None else estimate_nfp_insns(program),
        nfp_insns_estimated=nfp_insn_count is None, nfp_insn_limit=profile.instruction_store,
        maps=len(program.maps), map_limit=profile.max_maps,
        map_entries=sum(m.max_entries for m in program.maps), map_entry_limit=profile.max_total_entries,
    )
    return Report(program.name, program.section, profile.name, tuple(unique), resources)


__all__ = ["Severity", "Code", "Diagnostic", "Report", "Resources", "CheckContext", "CHECKS", "check",
           "estimate_nfp_insns", "stack_usage", "EXPANSION"]

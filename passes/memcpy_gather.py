"""``memcpy-gather``: a run of loads through one map-value or packet pointer becomes one bulk read;
a run of packet-to-packet load/store pairs becomes a word-by-word merge in the packet cache.

Copies (``__builtin_memcpy``, struct assignments) compile to runs of loads from one source
pointer, each followed by a store elsewhere.  Lowered one by one, every load from a map value is
an EMEM command (about 250 cycles) and every packet load that the packet cache does not serve a
CTM command (about 50).  This pass reads the bytes of the whole run with one command (at most
10 words: ``$in2..$in11``) before its first load; each load of the run is then one or two ALU
instructions on those registers.  The stores stay as they are (packet stores go to the packet
cache, stack stores to local memory).

Before (``-O1``), copying 6 bytes of a map value to the stack::

    mem_read.emem $in0, a1, b0, 1, ctx_swap     ; 250 cycles, once per byte
    ld_field ab4, 0b0001, $in0, 0, clear
    ... (stack store) ...
    add ab22, a0, 1
    mem_read.emem $in0, a1, b22, 1, ctx_swap
    ...

After (``memcpy-gather``)::

    mem_read.emem $in2, a1, b0, 2, ctx_swap     ; the run's bytes, once
    ld_field ab4, 0b0001, $in2, 0, clear
    ... (stack store) ...
    ld_field ab4, 0b0001, $in2, 8, clear
    ...

Packet-to-packet copies (a MAC address moved within the Ethernet header) are a run of
consecutive load/store pairs through packet pointers at constant offsets, one register each,
all moving bytes by the same distance, source and destination bytes disjoint.  When the packet
cache serves every access of such a run, the lowering merges the moved bytes word by word into
the cached copy at the run's first load (one ``ld_field`` per source word and destination word,
instead of a load and a three-instruction merge per pair) and keeps only the last load of each
register, whose value the program may read after the run::

    ldxb r3, [r1+8]; stxb [r1+2], r3; ... 6 pairs     ld_field ab23, 0b0011, n1, 16, clear
                                                      ld_field ab23, 0b1100, $in14, 16
                                                      mov n0, b23
                                                      mov ab23, n1
                                                      ld_field ab23, 0b0011, $in14, 16
                                                      mov n1, b23
                                                      alu_shf ab6, --, mov, $in14, shr 24   ; r3

A run is a sequence of instructions in one basic block, starting at a load through a map-value or
packet pointer register ``P``, with at least two such loads
from ``P`` at constant offsets from it, and ending at the first instruction that writes ``P``, a
store into the same kind of memory (it could write bytes the run reads later), an atomic, a
call, ``ld_abs``/``ld_ind``, a jump or an exit.  Its bytes span at most 40.  A map-value run must
stay inside the value's 8-byte-rounded slot (the bulk read moves whole words); a packet run's read
starts with its first byte when the analysis proves every byte read in the packet, else it ends
with its last byte and starts at most 3 bytes before its first (inside the headroom, which
adjust_head never gives away entirely): it never leaves the CTM buffer.  Loads from the stack are already one LM access each and are not gathered.  With
``pkt-cache`` on, a run with a load the cache serves is left to the cache (the lowering drops it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from nfpjit.analysis import RegKind
from nfpjit.ebpf.opcodes import InsnClass, Mode
from nfpjit.passes.manager import Pass

#: first transfer register of a gather ($in0/$in1 stay free for the stores' read-modify-writes)
FIRST_XFER = 2
#: words one gather may read ($in2..$in11; $in12.. belong to the packet cache)
MAX_WORDS = 10


@dataclass(frozen=True)
class Gather:
    """One bulk read before the load at ``first``: ``words`` words at ``P + base`` (``kind`` PACKET/MAP_VALUE)."""

    first: int
    ptr: int
    base: int
    words: int
    kind: RegKind


@dataclass(frozen=True)
class Copy:
    """A run of packet-to-packet load/store pairs moving bytes ``src`` (offsets from ``data``) by ``delta``.

    ``pairs``: (load pc, store pc, source offset, size, register) in program order.  With the packet
    cache serving every access, the lowering merges the bytes word by word into the cached copy at
    the first load and keeps only the last load of each register (its value after the run).
    """

    first: int
    delta: int
    pairs: tuple


@dataclass
class GatherPlan:
    """``gathers``: first load pc -> Gather; ``loads``: load pc -> (Gather, byte offset from ``base``);
    ``copies``: first load pc -> Copy."""

    gathers: dict = field(default_factory=dict)
    loads: dict = field(default_factory=dict)
    copies: dict = field(default_factory=dict)


def _round8(n: int) -> int:
    return (n + 7) & ~7


class _Planner:
    def __init__(self, opts: "MemcpyGather", program, analysis):
        self.opts = opts
        self.p = program
        self.a = analysis
        self.span = min(opts.max_bytes, 4 * MAX_WORDS)

    def _source(self, pc, insn):
        """(pointer register, kind) when ``insn`` at ``pc`` is a load a gather could serve."""
        if insn.cls != InsnClass.LDX or insn.mode not in (Mode.MEM, Mode.MEMSX):
            return None
        f = self.a.facts.get(pc)
        if f is None or not f.reachable or f.mem is None:
            return None
        if f.mem.kind not in (RegKind.PACKET, RegKind.MAP_VALUE):
            return None
        return insn.src, f.mem.kind

    def _ends_run(self, pc, insn, ptr, kind) -> bool:
        if insn.is_jmp or insn.cls == InsnClass.LD and not insn.is_ld_imm64:
            return True
        if insn.cls in (InsnClass.ST, InsnClass.STX):
            if insn.mode == Mode.ATOMIC:
                return True
            f = self.a.facts.get(pc)
            mem = f.mem if f is not None else None
            return mem is None or mem.kind in (kind, RegKind.MIXED)
        return False

    @staticmethod
    def _writes(insn) -> int | None:
        if insn.is_alu or insn.cls == InsnClass.LDX or insn.is_ld_imm64:
            return insn.dst
        if insn.cls == InsnClass.STX and insn.mode == Mode.ATOMIC:
            return insn.src
        return None

    def run(self) -> GatherPlan:
        plan = GatherPlan()
        cfg = self.a.cfg
        insns = dict(self.p.slots())
        for block in cfg.blocks.values():
            pcs = list(block.pcs)
            i = 0
            while i < len(pcs):
                src = self._source(pcs[i], insns[pcs[i]])
                if src is None:
                    i += 1
                    continue
                ptr, kind = src
                members = []
                j = i
                while j < len(pcs):
                    pc = pcs[j]
                    insn = insns[pc]
                    s = self._source(pc, insn)
                    if s == (ptr, kind):
                        members.append(pc)
                    elif self._ends_run(pc, insn, ptr, kind):
                        break
                    if self._writes(insn) == ptr:
                        j += 1
                        break
                    j += 1
                self._add(plan, members, insns, ptr, kind)
                i = max(j, i + 1)
            self._copies(plan, pcs, insns)
        return plan

    # -- packet-to-packet copies ---------------------------------------------------------------------

    def _pair(self, pcs, i, insns):
        """(load pc, store pc, source offset, destination offset, size, register) of a pair at ``pcs[i]``."""
        if i + 1 >= len(pcs):
            return None
        lpc, spc = pcs[i], pcs[i + 1]
        ld, stx = insns[lpc], insns[spc]
        if ld.cls != InsnClass.LDX or ld.mode not in (Mode.MEM, Mode.MEMSX):
            return None
        if stx.cls != InsnClass.STX or stx.mode != Mode.MEM or stx.src != ld.dst or stx.size != ld.size:
            return None
        if ld.dst in (ld.src, stx.dst):
            return None
        fl, fs = self.a.facts.get(lpc), self.a.facts.get(spc)
        if fl is None or fs is None or fl.mem is None or fs.mem is None:
            return None
        if fl.mem.kind != RegKind.PACKET or fs.mem.kind != RegKind.PACKET:
            return None
        (a, a2), (b, b2) = fl.mem.offset, fs.mem.offset
        if a != a2 or b != b2:
            return None
        return lpc, spc, a, b, ld.size.nbytes, ld.dst

    def _copies(self, plan, pcs, insns) -> None:
        i = 0
        while i < len(pcs):
            first = self._pair(pcs, i, insns)
            if first is None:
                i += 1
                continue
            delta = first[3] - first[2]
            run = [first]
            j = i + 2
            while True:
                nxt = self._pair(pcs, j, insns)
                if nxt is None or nxt[3] - nxt[2] != delta:
                    break
                run.append(nxt)
                j += 2
            src = {x for p in run for x in range(p[2], p[2] + p[4])}
            dst = {x + delta for x in src}
            if len(run) >= 2 and not src & dst:
                plan.copies[run[0][0]] = Copy(run[0][0], delta, tuple((p[0], p[1], p[2], p[4], p[5]) for p in run))
                i = j
            else:
                i += 1

    def _add(self, plan, members, insns, ptr, kind) -> None:
        """Keep the longest prefixes of ``members`` that fit one gather, as gathers of two loads or more."""
        while len(members) >= 2:
            take = []
            lo = hi = None
            for pc in members:
                insn = insns[pc]
                a, b = insn.off, insn.off + insn.size.nbytes
                nlo, nhi = (a, b) if lo is None else (min(lo, a), max(hi, b))
                if nhi - nlo > self.span:
                    break
                lo, hi = nlo, nhi
                take.append(pc)
            members = members[len(take):] if take else members[1:]
            if len(take) < 2:
                continue
            words = (hi - lo + 3) // 4
            if kind == RegKind.MAP_VALUE and not self._inside_value(take, insns, lo, words):
                continue
            # packet: the read ends with the run's last byte (so it starts at most 3 bytes before the
            # first, which the headroom holds); map value: it starts with the first byte
            base = lo
            if kind == RegKind.PACKET:
                reg = self.a.facts[take[0]].regs[ptr]
                if lo + 4 * words > reg.range - reg.off:     # not all proven to be in the packet
                    base = hi - 4 * words
            g = Gather(take[0], ptr, base, words, kind)
            plan.gathers[take[0]] = g
            for pc in take:
                plan.loads[pc] = (g, insns[pc].off - base)

    def _inside_value(self, take, insns, lo, words) -> bool:
        """The whole words read must stay inside the value's slot on every path."""
        for pc in take:
            mem = self.a.facts[pc].mem
            start_lo = mem.offset[0] - (insns[pc].off - lo)
            start_hi = mem.offset[1] - (insns[pc].off - lo)
            slot = _round8(max(self.p.map_named(mem.map).value_size, 1))
            if start_lo < 0 or start_hi + 4 * words > slot:
                return False
        return True


@dataclass(frozen=True)
class MemcpyGather(Pass):
    """Switch of the load gather; ``max_bytes`` caps one bulk read (at most 40)."""

    name: ClassVar[str] = "memcpy-gather"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "runs of loads through one map-value/packet pointer read with one bulk command"

    max_bytes: int = 40
    option_ranges: ClassVar[dict] = {"max_bytes": (1, 40)}

    def plan(self, program, analysis) -> GatherPlan | None:
        if analysis is None or getattr(analysis, "cfg", None) is None or getattr(analysis, "raw_context", False):
            return None
        return _Planner(self, program, analysis).run()


__all__ = ["MemcpyGather", "GatherPlan", "Gather", "Copy", "FIRST_XFER", "MAX_WORDS"]

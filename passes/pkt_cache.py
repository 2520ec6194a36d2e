"""``pkt-cache``: packet bytes served from transfer registers filled by one bulk CTM read.

Without it every packet access is its own CTM command with a context swap (about 50 cycles),
and a 1- or 2-byte store is a read-modify-write (two commands).  With it the first packet access
of a region reads the window (packet bytes ``[0, 4n)`` from ``data``, ``n`` <= 20 words) into
``$in12..$in31`` with one command (an indirect count above 8 words); every later access at a
constant offset inside the window is one instruction on those registers (two when it straddles
two words).  Stores go to a copy of the stored words kept in next-neighbour registers ``n0..n19``
and are written back with one ``mem_write`` before anything that needs the packet in memory
(exit, helper calls that move the packet, uncached packet accesses, BPF-to-BPF calls) or before
leaving the region where the cache is valid.  A load at a variable offset whose possible values
are 4 apart (a TCP port after a variable IHL) reads ``*$index`` with ``T_INDEX`` pointing at its
register (a tree of bit tests picks the register when some of the words are NN copies of stores).

Before (``-O1``), ``r2 = *(u8 *)(r1 + 13)`` and ``*(u8 *)(r1 + 2) = r2``::

    mem_read.ctm $in0, a2, 13, 1, ctx_swap           ; 50 cycles each
    ld_field ab4, 0x1, $in0, 0, clear
    ...
    mem_read.ctm $in0, a2, 2, 1, ctx_swap            ; read-modify-write of one word
    mov ab22, $in0
    ld_field ab22, 0x1, b4, 0
    mov $out0, b22
    mem_write.ctm $out0, a2, 2, 1, ctx_swap

After (``pkt-cache``)::

    csr_rd ab22, pkt_addr                            ; the fill, once per region
    mem_read.ctm $in12, a22, 0, 4, ctx_swap
    mov n0, $in12                                    ; stored words: NN copy
    ld_field ab4, 0b0010, $in15, 8, clear            ; the load: one instruction
    ...
    mov ab22, n0                                     ; the store: merge into n0
    ld_field ab22, 0b0100, b4, 16
    mov n0, b22
    ...
    csr_rd ab22, pkt_addr                            ; write-back before exit
    mov $out12, n0
    mem_write.ctm $out12, a22, 0, 1, ctx_swap

What is cached, and when
------------------------
- Loads and stores through a packet pointer (not ``data_meta``) whose offset from ``data`` the
  analysis proves constant, inside the window (``window`` bytes, at most 80: the TCP ports after
  the largest IPv4 header), 1/2/4 bytes at any byte position, 8 bytes when word-aligned (stores)
  or at any position (loads).  Loads at a variable offset whose low two bits the analysis knows
  (so every possible offset is the same byte of a different word), at most 32 possible words,
  one to four bytes not straddling a word.  Other variable offsets stay CTM commands.
- The cache state is a forward data-flow over the CFG (must-valid per word, may-dirty per word),
  so it stays valid across basic blocks, jumps and joins as long as every path into a point has
  filled it and nothing invalidated it since: unlike the kernel's NFP JIT it is not reset at
  jump targets.  A fill goes before the first cached access that finds its words invalid, and
  reads every word any cached access of the function needs (one command costs the same).  With
  ``early=true``, when that access is the first packet business on every path from the entry
  (outside loops), the read is issued in the background at the entry and the fill only waits for
  it (``ctx_wait``): the prologue and the bounds checks run while the read is in flight (about 8
  cycles per packet on the corpus parsers).
- Invalidated (after a write-back) by: ``xdp_adjust_head``/``xdp_adjust_tail`` and every helper
  that is not a map helper or ``get_prandom_u32`` (those do not move or change the packet, and
  the firmware routines leave transfer and NN registers alone), BPF-to-BPF calls (the callee may
  do anything; its own cache starts empty), and a packet store the cache cannot take (the words
  it may touch).  Uncached packet loads, ``ld_abs``/``ld_ind`` and map helpers whose key or value
  points into the packet only need the dirty words written back first.
- Written back: the dirty words (one run, clean valid words in between included) before such
  events and the exit, and at the end of a block whose successor does not hold them valid (a
  join with a path that never filled the cache); a flush is placed "before pc" right after the
  instruction's label, or after a cached store that ends its block.

The fill never faults where the program would not
--------------------------------------------------
The simulator (like the NIC) allows reads past the packet end inside the 8 KiB CTM buffer and
faults outside it.  The fill reads ``[data, data + 4n)``:

- where no ``xdp_adjust_head`` can have run, ``data`` is the buffer's packet start (256 bytes in)
  and the buffer holds at least 7936 bytes after it: any window up to 80 bytes is inside;
- after an adjust_head whose deltas are all constant multiples of 4, ``data`` is word-aligned and
  so is the buffer end, so the proven range rounded up to words is inside (``data + range <=
  data_end <= buffer end``);
- otherwise only the whole words inside the proven range are filled.

A write-back rewrites bytes past the packet end only with the values the fill read there.
Raw-context programs (uBPF-style memory blocks, analysed with an unchecked 64 KiB range, run with
exact block bounds) are not cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from nfpjit.analysis import RegKind
from nfpjit.ebpf.opcodes import Helper, InsnClass, Mode
from nfpjit.passes.manager import Pass

#: words of the largest window (transfer registers $in12..$in31, NN n0..n19): 80 bytes reach the TCP
#: ports after the largest IPv4 header (14 + 60 + 4)
MAX_WORDS = 20
#: first transfer register ($in and $out side) of the window
FIRST_XFER = 12
#: first next-neighbour register holding stored words
FIRST_NN = 0
#: most possible offsets of a variable-offset load served by a branch tree (5 levels)
MAX_DISPATCH = 32
#: the completion signal of a fill issued at the program's entry
EARLY_SIGNAL = 1

#: helpers that neither move nor change the packet (the cache stays valid across them)
PACKET_SAFE_HELPERS = frozenset({Helper.map_lookup_elem, Helper.map_update_elem, Helper.map_delete_elem,
                                 Helper.get_prandom_u32})
#: helpers taking key/value pointers the lowering copies from memory (a packet one needs a write-back)
_POINTER_ARGS = {Helper.map_lookup_elem: (2,), Helper.map_update_elem: (2, 3), Helper.map_delete_elem: (2,)}

# head alignment states: ORIG (no adjust_head yet), ALIGNED (data word-aligned), UNKNOWN
ORIG, ALIGNED, UNKNOWN = 0, 1, 2


@dataclass(frozen=True)
class Access:
    """A packet load or store served from the cache: ``size`` bytes at ``off`` from ``data``."""

    off: int
    size: int
    write: bool
    #: a variable offset: one of ``off, off + 4, ..., off + 4 * (count - 1)`` (a load, chosen at run time)
    count: int = 1

    @property
    def words(self) -> int:
        """Bit mask of the window words the access may touch."""
        first, last = self.off // 4, (self.off + 4 * (self.count - 1) + self.size - 1) // 4
        return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)


@dataclass
class PktCachePlan:
    """What the lowering reads (all keyed by eBPF pc).

    ``accesses``: cached loads/stores; ``fills``: words ``[0, n)`` to read before the access;
    ``flush_before`` / ``flush_after``: bit masks of words to write back before the instruction's
    code / after a cached store; ``mirrored``: words whose current value lives in NN registers
    (every word some cached store writes); loads of other words read ``$in``.
    """

    accesses: dict = field(default_factory=dict)
    fills: dict = field(default_factory=dict)
    flush_before: dict = field(default_factory=dict)
    flush_after: dict = field(default_factory=dict)
    mirrored: int = 0
    #: fills whose read is issued in the background at the program's entry (``early_words`` words);
    #: the fill itself only waits for it (``ctx_wait EARLY_SIGNAL``)
    early: frozenset = frozenset()
    early_words: int = 0

    def words_of(self, mask: int) -> list[int]:
        return [k for k in range(MAX_WORDS) if mask >> k & 1]


@dataclass(frozen=True)
class Event:
    flush: bool = False       # the packet must be current in memory before the instruction
    kill: int = 0             # words no longer valid afterwards
    head: int | None = None   # None: no adjust_head; else the delta (or UNKNOWN_DELTA)


UNKNOWN_DELTA = object()


def _span(dirty: int, valid: int) -> int:
    """The words to write back for ``dirty``: one run from its first to its last word when every word
    in between is valid (a ``mov`` per clean word is cheaper than a second command), else ``dirty``."""
    lo = (dirty & -dirty).bit_length() - 1
    run = ((1 << dirty.bit_length()) - 1) & ~((1 << lo) - 1)
    return run if not run & ~valid else dirty


class _Planner:
    def __init__(self, opts: "PacketCache", program, analysis):
        self.opts = opts
        self._events: dict = {}
        self.p = program
        self.a = analysis
        self.window_words = max(1, min(MAX_WORDS, opts.window // 4))
        self.stores = opts.stores
        self.cfg = analysis.cfg
        self.insn = {pc: insn for pc, insn in program.slots()}
        self.any_adjust_head = any(i.is_helper_call and i.imm == Helper.xdp_adjust_head
                                   for i in self.insn.values())

    # -- classification ---------------------------------------------------------------------

    def _reachable(self, pc: int) -> bool:
        f = self.a.facts.get(pc)
        return f is not None and f.reachable

    def classify(self, no_stores: bool):
        """(candidate accesses, events) per pc."""
        cand, events = {}, {}
        all_words = (1 << MAX_WORDS) - 1
        for pc, insn in self.insn.items():
            if not self._reachable(pc):
                continue
            f = self.a.facts[pc]
            cls = insn.cls
            if cls in (InsnClass.LDX, InsnClass.ST, InsnClass.STX) and f.mem is not None:
                mem = f.mem
                if mem.kind not in (RegKind.PACKET, RegKind.PACKET_META):
                    continue
                write = cls != InsnClass.LDX
                size = insn.size.nbytes
                lo, hi = mem.offset
                atomic = insn.mode == Mode.ATOMIC
                ok = (mem.kind == RegKind.PACKET and lo == hi and lo >= 0 and not atomic
                      and lo + size <= 4 * self.window_words
                      and insn.mode in (Mode.MEM, Mode.MEMSX))
                if ok and write and (no_stores or (size == 8 and lo % 4)):
                    ok = False
                var = self._variable(f, insn, lo, hi, size) if not ok and not write and self.opts.variable else None
                if ok:
                    cand[pc] = Access(lo, size, write)
                elif var is not None:
                    cand[pc] = var
                elif write:
                    if mem.kind == RegKind.PACKET and lo >= 0:
                        first, last = lo // 4, min((hi + size - 1) // 4, MAX_WORDS - 1)
                        kill = ((1 << (last + 1)) - 1) & ~((1 << first) - 1) if first < MAX_WORDS else 0
                    else:
                        kill = all_words
                    events[pc] = Event(flush=True, kill=kill)
                else:
                    events[pc] = Event(flush=True)
            elif cls == InsnClass.LD and insn.mode in (Mode.ABS, Mode.IND):
                events[pc] = Event(flush=True)
            elif insn.is_exit:
                events[pc] = Event(flush=True)
            elif insn.is_local_call:
                events[pc] = Event(flush=True, kill=all_words, head=UNKNOWN_DELTA if self.any_adjust_head else None)
            elif insn.is_helper_call:
                try:
                    helper = Helper(insn.imm)
                except ValueError:
                    helper = None
                if helper in PACKET_SAFE_HELPERS:
                    packet_arg = any(f.regs[r].kind in (RegKind.PACKET, RegKind.PACKET_META, RegKind.MIXED)
                                     for r in _POINTER_ARGS.get(helper, ()))
                    if packet_arg:
                        events[pc] = Event(flush=True)
                    continue
                head = None
                if helper == Helper.xdp_adjust_head:
                    d = f.regs[2]
                    head = d.var.value if d.kind == RegKind.SCALAR and d.var.is_const else UNKNOWN_DELTA
                events[pc] = Event(flush=True, kill=all_words, head=head)
        return cand, events

    def _variable(self, f, insn, lo: int, hi: int, size: int) -> Access | None:
        """A load at a variable offset whose possible offsets step by 4 inside the window (one word each)."""
        if f.mem.kind != RegKind.PACKET or insn.mode not in (Mode.MEM, Mode.MEMSX) or size > 4 or lo < 0:
            return None
        r = f.regs[insn.src]
        tn = r.var.full.tnum
        if r.kind != RegKind.PACKET or tn.mask & 3:
            return None                        # the offset's low bits vary: bytes move within words
        residue = (r.off + insn.off + tn.value) % 4
        first = lo + (residue - lo) % 4
        count = (hi - first) // 4 + 1
        if first % 4 + size > 4 or count > MAX_DISPATCH or first + 4 * (count - 1) + size > 4 * self.window_words:
            return None
        return Access(first, size, False, count)

    # -- CFG order ----------------------------------------------------------------------------

    def blocks_of(self, fn):
        blocks = [b for b in fn.blocks if self._reachable(self.cfg.blocks[b].start)]
        reach = set(blocks)
        entry = fn.start
        succs = {b: [s for s in self.cfg.blocks[b].succs if s in reach] for b in blocks}
        order, seen = [], set()
        if entry in reach:
            stack = [(entry, iter(succs[entry]))]
            seen.add(entry)
            post = []
            while stack:
                node, it = stack[-1]
                for s in it:
                    if s not in seen:
                        seen.add(s)
                        stack.append((s, iter(succs[s])))
                        break
                else:
                    post.append(node)
                    stack.pop()
            order = post[::-1]
        order += [b for b in blocks if b not in seen]
        preds = {b: [q for q in self.cfg.blocks[b].preds if q in reach] for b in blocks}
        return order, succs, preds

    # -- head alignment (only matters when the program calls adjust_head) ------------------------

    def head_states(self, fn, order, preds, events) -> dict:
        """Alignment state of ``data`` before each pc of the function."""
        entry_state = ORIG if fn.start == 0 else UNKNOWN
        if not self.any_adjust_head:
            return {}
        out = {}
        state_in = {}
        for _ in range(len(order) + 2):
            changed = False
            for b in order:
                ins = [out[q] for q in preds[b] if q in out]
                s = entry_state if b == fn.start else (max(ins) if ins else None)
                if b == fn.start and ins:
                    s = max([s] + ins)
                if s is None:
                    continue
                for pc in self.cfg.blocks[b].pcs:
                    state_in[pc] = s
                    e = events.get(pc)
                    if e is not None and e.head is not None:
                        if e.head is UNKNOWN_DELTA or e.head % 4:
                            s = UNKNOWN
                        else:
                            s = max(s, ALIGNED)
                if out.get(b) != s:
                    out[b] = s
                    changed = True
            if not changed:
                break
        return state_in

    def fill_limit(self, pc: int, head: int) -> int:
        """Words a fill before ``pc`` may read without leaving the CTM buffer (see the docstring)."""
        if head == ORIG:
            return self.window_words
        proven = 0
        for r in self.a.facts[pc].regs:
            if r.kind == RegKind.PACKET:
                proven = max(proven, r.var.umin + r.range)
        words = (proven + 3) // 4 if head == ALIGNED else proven // 4
        return min(self.window_words, words)

    # -- must-valid data-flow and fill placement -------------------------------------------------

    def valid_in(self, fn, order, preds, cand, events, fills) -> dict:
        """Words valid before each pc (must: intersection over predecessors)."""
        full = (1 << MAX_WORDS) - 1
        out = {b: full for b in order}         # optimistic start
        state_in = {}
        for _ in range(2 * len(order) + 4):
            changed = False
            for b in order:
                if b == fn.start:
                    v = 0
                else:
                    v = full
                    for q in preds[b]:
                        v &= out[q]
                    if not preds[b]:
                        v = 0
                for pc in self.cfg.blocks[b].pcs:
                    state_in[pc] = v
                    v = self._step_valid(pc, v, events, fills)
                if out[b] != v:
                    out[b] = v
                    changed = True
            if not changed:
                break
        self.last_out = out
        return state_in

    @staticmethod
    def _step_valid(pc, v, events, fills):
        n = fills.get(pc)
        if n is not None:
            v |= (1 << n) - 1
        e = events.get(pc)
        if e is not None:
            v &= ~e.kill
        return v

    def place_fills(self, fn, order, preds, cand, events):
        heads = self.head_states(fn, order, preds, events)
        fills: dict[int, int] = {}
        pcs = [pc for b in order for pc in self.cfg.blocks[b].pcs if pc in cand]
        need = 0
        for pc in pcs:
            need |= cand[pc].words
        need_words = need.bit_length()
        for _ in range(len(pcs) + 2):
            self.valid_in(fn, order, preds, cand, events, fills)
            prev_out = self.last_out
            changed = False
            # one sweep in order, propagating validity as fills are placed (back edges: the fixpoint's)
            out: dict[int, int] = {}
            for b in order:
                if b == fn.start or not preds[b]:
                    v = 0
                else:
                    v = (1 << MAX_WORDS) - 1
                    for q in preds[b]:
                        v &= out.get(q, prev_out[q])
                for pc in self.cfg.blocks[b].pcs:
                    if pc in cand and pc not in fills and cand[pc].words & ~v:
                        n = min(self.fill_limit(pc, heads.get(pc, ORIG)), need_words)
                        if cand[pc].words & ~((1 << n) - 1):
                            del cand[pc]
                            acc_write = self.insn[pc].cls != InsnClass.LDX
                            events[pc] = Event(flush=True, kill=((1 << MAX_WORDS) - 1) if acc_write else 0)
                        else:
                            fills[pc] = n
                        changed = True
                    v = self._step_valid(pc, v, events, fills)
                out[b] = v
            if not changed:
                break
        return fills

    # -- may-dirty data-flow and write-back placement --------------------------------------------

    def place_flushes(self, fn, order, succs, preds, cand, events, fills, valid):
        """(flush_before, flush_after) bit masks per pc, or None when no placement is safe."""
        before_pts = {pc for b in order for pc in self.cfg.blocks[b].pcs
                      if (pc in events and events[pc].flush) or pc in fills}
        after_pts: set[int] = set()
        for _ in range(4 * len(order) + 8):
            dirty_in, out = self._dirty(fn, order, preds, cand, before_pts, after_pts)
            changed = False
            for b in order:
                for s in succs[b]:
                    if out[b] & ~valid.get(self.cfg.blocks[s].start, 0):
                        last = self.cfg.blocks[b].end
                        if last in cand and cand[last].write:
                            if last not in after_pts:
                                after_pts.add(last)
                                changed = True
                        elif last not in before_pts:
                            before_pts.add(last)
                            changed = True
            if not changed:
                break
        else:
            return None
        dirty_in, out = self._dirty(fn, order, preds, cand, before_pts, after_pts)
        flush_before, flush_after = {}, {}
        for pc in before_pts:
            d = dirty_in.get(pc, 0)
            if d:
                if d & ~valid.get(pc, 0):
                    return None
                flush_before[pc] = _span(d, valid.get(pc, 0))
        for pc in after_pts:
            d = dirty_in.get(pc, 0) | cand[pc].words
            if d & ~(valid.get(pc, 0) | self._filled(pc, fills)):
                return None
            flush_after[pc] = _span(d, valid.get(pc, 0) | self._filled(pc, fills))
        # every edge leaves no dirty word the successor does not hold valid
        for b in order:
            for s in succs[b]:
                if out[b] & ~valid.get(self.cfg.blocks[s].start, 0):
                    return None
        return flush_before, flush_after

    @staticmethod
    def _filled(pc, fills):
        n = fills.get(pc)
        return (1 << n) - 1 if n else 0

    def _dirty(self, fn, order, preds, cand, before_pts, after_pts):
        out = {b: 0 for b in order}
        dirty_in = {}
        for _ in range(2 * len(order) + 4):
            changed = False
            for b in order:
                d = 0
                for q in preds[b]:
                    d |= out[q]
                for pc in self.cfg.blocks[b].pcs:
                    dirty_in[pc] = d
                    if pc in before_pts:
                        d = 0
                    a = cand.get(pc)
                    if a is not None and a.write:
                        d |= a.words
                    if pc in after_pts:
                        d = 0
                if out[b] != d:
                    out[b] = d
                    changed = True
            if not changed:
                break
        return dirty_in, out

    # -- the whole program ---------------------------------------------------------------------

    def run(self) -> PktCachePlan:
        plan = PktCachePlan()
        for fn in self.cfg.functions:
            order, succs, preds = self.blocks_of(fn)
            if not order:
                continue
            result = self._function(fn, order, succs, preds, no_stores=not self.stores)
            if result is None:
                result = self._function(fn, order, succs, preds, no_stores=True)
            if result is None:
                continue
            cand, fills, fb, fa = result
            if fn.start == 0 and self.opts.early:
                early = self._early(fn, order, preds, cand, fills)
                if early:
                    plan.early = frozenset(early)
                    plan.early_words = max(fills[pc] for pc in early)
            plan.accesses.update(cand)
            plan.fills.update(fills)
            plan.flush_before.update(fb)
            plan.flush_after.update(fa)
            for a in cand.values():
                if a.write:
                    plan.mirrored |= a.words
        return plan

    def _early(self, fn, order, preds, cand, fills) -> list[int]:
        """Fills of the entry function whose read can start at the entry: the first cache business on
        every path to them (no access, event or fill before, so ``data`` and the bytes are still the
        entry's), outside every loop, with an entry block nothing jumps back to."""
        if preds.get(fn.start):
            return []
        in_loop = set()
        for loop in self.cfg.loops:
            in_loop |= set(loop.blocks)
        busy = set(cand) | set(self._events) | set(fills)
        out = []
        for f in fills:
            b = self.cfg.block_at(f).start
            if b in in_loop:
                continue
            block_pcs = self.cfg.blocks[b].pcs
            if any(pc in busy for pc in block_pcs[:block_pcs.index(f)]):
                continue
            seen, todo, ok = {b}, list(preds[b]), True
            while todo and ok:
                q = todo.pop()
                if q in seen:
                    continue
                seen.add(q)
                ok = not any(pc in busy for pc in self.cfg.blocks[q].pcs)
                todo += preds[q]
            if ok:
                out.append(f)
        return out

    def _function(self, fn, order, succs, preds, *, no_stores: bool):
        cand_all, events_all = self.classify(no_stores)
        pcs = {pc for b in order for pc in self.cfg.blocks[b].pcs}
        cand = {pc: a for pc, a in cand_all.items() if pc in pcs}
        events = {pc: e for pc, e in events_all.items() if pc in pcs}
        if not cand:
            return {}, {}, {}, {}
        fills = self.place_fills(fn, order, preds, cand, events)
        self._events = events
        valid = self.valid_in(fn, order, preds, cand, events, fills)
        # every cached access finds its words valid (after its own fill)
        for pc, a in cand.items():
            if a.words & ~(valid.get(pc, 0) | self._filled(pc, fills)):
                return None
        flushes = self.place_flushes(fn, order, succs, preds, cand, events, fills, valid)
        if flushes is None:
            return None
        return cand, fills, flushes[0], flushes[1]


@dataclass(frozen=True)
class PacketCache(Pass):
    """Switch of the packet cache; ``window`` bytes from ``data`` (at most 80), ``stores`` caches stores too,
    ``early`` starts the first fill's read at the program's entry, ``variable`` serves variable offsets
    4 apart from the cache (``*$index``, or a tree of bit tests when stored words are involved)."""

    name: ClassVar[str] = "pkt-cache"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "packet reads/writes at constant offsets served from transfer registers filled once"

    option_ranges: ClassVar[dict] = {"window": (4, 80)}

    window: int = 80
    stores: bool = True
    early: bool = False
    variable: bool = True

    def plan(self, program, analysis) -> PktCachePlan | None:
        if analysis is None or getattr(analysis, "cfg", None) is None or getattr(analysis, "raw_context", False):
            return None
        return _Planner(self, program, analysis).run()


__all__ = ["PacketCache", "PktCachePlan", "Access", "MAX_WORDS", "FIRST_XFER", "FIRST_NN", "PACKET_SAFE_HELPERS"]

"""``map-cache``: map lookups the program does not need to make at run time.

A ``bpf_map_lookup_elem`` is a branch into the firmware's lookup routine: about 1000 cycles,
300 when the NIC-side map cache holds the entry.  This pass (level ``lower``: the lowering of
``call`` reads its plan) removes the call in three cases:

``direct`` — an ARRAY lookup whose key bytes on the stack are proven constant: the value's
EMEM address is known at compile time (map *i*'s table at bits 39..32 = ``0x10 + i``, slot
``key * round8(value_size)``, the firmware's table layout that global-data references use
too); a key ``>= max_entries`` is NULL::

    *(u32 *)(r10 - 4) = 1           ...
    r2 = r10 + -4; r1 = map[stats]  immed ab2, map(stats) / immed ab3, 0
    r0 = map_lookup_elem(r1, r2)    br.always fw_map_lookup, defer 1 / load_addr a30, .ret7_1   (-O0)
                                    immed ab0, 0x8 / immed ab1, 0x10                           (map-cache)

``reuse`` — a lookup of the same map with the same stack key as a lookup that runs before it
on every path, with nothing in between that could change the answer (a store that may touch
the key bytes, an update or delete of that map, a BPF-to-BPF call or a helper that may write
memory): the first result is kept in a next-neighbour register pair (``n24``.. ``n31``: four
slots, the NFP's NN registers used as core-local registers) and copied::

    r0 = map_lookup_elem(r1, r2)    br.always fw_map_lookup, defer 1 / load_addr ... / mov n24, b0 / mov n25, b1
    ... (no update, key unchanged)
    r0 = map_lookup_elem(r1, r2)    mov ab0, n24 / mov ab1, n25

``inline`` — any other ARRAY lookup with its key on the stack: the key is read from LM and
bounds-checked inline, as the kernel inlines array lookups; the key is multiplied by the value
slot with one ``alu_shf`` per set bit of the slot size (at most four: 8, 16, 24, 40 ... bytes)::

    r0 = map_lookup_elem(r1, r2)    csr_wr active_lm_addr_1, b4 / immed ab0, 0 / immed ab1, 0 / nop
                                    sub --, *l$index1, 8 / br.hs .done
                                    alu_shf ab0, --, mov, *l$index1, shl 3 / immed ab1, 0x10 / .done:

The direct and inline addresses come from the map's index in the image (the table layout of
the firmware the simulator models, which global-data ``ld_imm64`` references rely on too), not
from a relocation: a firmware that placed tables elsewhere would need a MAP_VALUE relocation kind.
Any nfp-level pass must treat ``n24..n31`` as live from the saving lookup to the reusing one.

What is proven, and how (:meth:`MapCache.plan`): a forward data-flow over each function's
blocks (meet = intersection, so a fact holds on every path) tracks (1) the stack bytes of the
function's own frame that hold a known constant — set by ``st``/``stx`` through R10 whose value
the analysis proves constant, forgotten by any store, atomic or call that may touch them — and
(2) the lookups whose result is still valid: (map, key offset, lookup pc), killed by a store
that may change the key bytes (storing the constant they are known to hold changes nothing), an update/delete of that map (or of an unknown map), any
BPF-to-BPF call, and helpers other than map lookup/update/delete, get_prandom_u32 and
xdp_adjust_head/tail.  A fact that holds at function entry on no path is not assumed
(the entry state is empty), so a reused lookup always ran before on every path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from nfpjit.analysis import RegKind
from nfpjit.ebpf.opcodes import CallKind, Helper, InsnClass, MapType, Mode
from nfpjit.passes.manager import Pass

#: helpers that write no stack memory and change no map (besides update/delete of the map they name)
_QUIET_HELPERS = frozenset({Helper.map_lookup_elem, Helper.map_update_elem, Helper.map_delete_elem,
                            Helper.get_prandom_u32, Helper.xdp_adjust_head, Helper.xdp_adjust_tail})
_MAP_WRITERS = frozenset({Helper.map_update_elem, Helper.map_delete_elem})

#: next-neighbour registers holding reused lookup results: slot i = n(FIRST_NN + 2i) (low), +1 (high)
FIRST_NN = 24
MAX_SLOTS = 4
#: inline lookups multiply the key by the value slot with one shift-and-add per set bit of its size
MAX_SLOT_BITS = 4


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Direct:
    """The lookup is the constant address of slot ``index`` of map ``map``; ``index`` None: NULL."""

    map: int
    index: int | None


@dataclass(frozen=True)
class Inline:
    """An ARRAY lookup with the key on the stack: bounds check and address computed inline."""

    map: int


@dataclass(frozen=True)
class Reuse:
    """The lookup returns what the lookup at ``source`` returned, kept in NN slot ``slot``."""

    slot: int
    source: int


@dataclass(frozen=True)
class MapCachePlan:
    """``lookups``: pc -> how the lookup there is lowered; ``saves``: pc of a lookup -> NN slot its result goes to."""

    lookups: dict = field(default_factory=dict)
    saves: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many lookups each way (for statistics)."""
        out = {"direct": 0, "inline": 0, "reuse": 0}
        for how in self.lookups.values():
            out[type(how).__name__.lower()] += 1
        return out


def nn_slot(slot: int) -> tuple[int, int]:
    """Next-neighbour register numbers (low, high word) of result slot ``slot``."""
    return FIRST_NN + 2 * slot, FIRST_NN + 2 * slot + 1


def slot_size(value_size: int) -> int:
    """Bytes between two values of an ARRAY table (the firmware rounds values up to 8 bytes)."""
    return (max(value_size, 1) + 7) & ~7


# -- the data-flow ------------------------------------------------------------------------------
#
# A state is (consts, avail), both frozensets so that the meet is an intersection:
#   consts: (stack offset from this function's R10, byte value) for bytes known to hold a constant
#   avail:  (map index, key offset, key size, lookup pc) for lookup results still valid
# None stands for "no path seen yet" (the top of the lattice).

_EMPTY = (frozenset(), frozenset())


def _meet(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (a[0] & b[0], a[1] & b[1])


def _kill_range(state, lo: int, hi: int):
    """Forget stack bytes [lo, hi) of the frame and the lookups whose key overlaps them."""
    consts, avail = state
    return (frozenset(c for c in consts if not lo <= c[0] < hi),
            frozenset(a for a in avail if a[1] + a[2] <= lo or a[1] >= hi))


def _kill_all():
    return _EMPTY


def _frame(facts) -> int | None:
    r10 = facts.regs[10]
    return r10.frame if r10.kind == RegKind.STACK else None


def _const_bytes(insn, facts) -> bytes | None:
    """The bytes a store writes when the analysis proves them constant (little-endian)."""
    n = insn.size.nbytes
    if insn.cls == InsnClass.ST:
        value = insn.imm
    else:
        if insn.src == 10:
            return None
        r = facts.regs[insn.src]
        if r.kind != RegKind.SCALAR or r.var.value is None:
            return None
        value = r.var.value
    return (value & ((1 << 64) - 1)).to_bytes(8, "little")[:n]


def _key_offset(facts, frame) -> int | None:
    """R2's offset from this function's R10 when it is a fixed stack pointer into this frame."""
    k = facts.regs[2]
    if k.kind != RegKind.STACK or frame is None or k.frame != frame or k.var.value is None:
        return None
    return k.off + k.var.value


class _Planner:
    def __init__(self, pass_: "MapCache", program, analysis):
        self.p = pass_
        self.program = program
        self.analysis = analysis
        self.decisions: dict[int, object] = {}

    # the transfer function of one instruction; records the decision of a lookup in self.decisions
    def step(self, pc: int, insn, state):
        facts = self.analysis.facts.get(pc)
        if facts is None or not facts.reachable:
            return state
        cls = insn.cls
        if cls in (InsnClass.ST, InsnClass.STX) and insn.mode in (Mode.MEM, Mode.ATOMIC):
            return self._store(insn, facts, state)
        if insn.is_call:
            return self._call(pc, insn, facts, state)
        return state

    def _store(self, insn, facts, state):
        mem = facts.mem
        if mem is None or mem.kind == RegKind.MIXED:
            return _kill_all()
        if mem.kind != RegKind.STACK:
            return state
        frame = _frame(facts)
        if frame is None:
            return _kill_all()
        if mem.frame != frame:
            return state        # another function's frame: this function's bytes are untouched
        n = insn.size.nbytes
        data = _const_bytes(insn, facts) if insn.mode == Mode.MEM and insn.dst == 10 else None
        if data is not None:
            written = {(insn.off + i, b) for i, b in enumerate(data)}
            if written <= state[0]:
                return state        # the bytes already hold these values: nothing changes
        state = _kill_range(state, mem.offset[0], mem.offset[1] + n)
        if data is not None:
            consts, avail = state
            state = (consts | written, avail)
        return state

    def _call(self, pc: int, insn, facts, state):
        if insn.src != CallKind.HELPER:
            return _kill_all()          # a BPF-to-BPF call may write our stack through a pointer, update maps
        try:
            helper = Helper(insn.imm)
        except ValueError:
            return _kill_all()
        if helper not in _QUIET_HELPERS:
            return _kill_all()
        consts, avail = state
        if helper in _MAP_WRITERS:
            m = facts.regs[1]
            if m.kind != RegKind.MAP_PTR:
                return (consts, frozenset())
            return (consts, frozenset(a for a in avail if a[0] != m.map))
        if helper == Helper.map_lookup_elem:
            return self._lookup(pc, facts, state)
        return state

    def _lookup(self, pc: int, facts, state):
        consts, avail = state
        m = facts.regs[1]
        if m.kind != RegKind.MAP_PTR or m.map is None:
            self.decisions.pop(pc, None)
            return state
        mdef = self.program.maps[m.map]
        frame = _frame(facts)
        off = _key_offset(facts, frame)
        array = mdef.type == MapType.ARRAY and mdef.key_size == 4
        how = None
        if self.p.direct and array and off is not None:
            known = dict(consts)
            key = [known.get(off + i) for i in range(4)]
            if None not in key:
                index = int.from_bytes(bytes(key), "little")
                how = Direct(m.map, index if index < mdef.max_entries else None)
        if how is None and self.p.reuse and off is not None and mdef.type in (MapType.HASH, MapType.ARRAY):
            for a in avail:
                if a[0] == m.map and a[1] == off and a[2] == mdef.key_size:
                    how = Reuse(-1, a[3])
                    break
        if how is None and self.p.inline and array and facts.regs[2].kind == RegKind.STACK \
                and bin(slot_size(mdef.value_size)).count("1") <= MAX_SLOT_BITS:
            how = Inline(m.map)
        if how is None:
            self.decisions.pop(pc, None)
        else:
            self.decisions[pc] = how
        if isinstance(how, (Direct, Reuse)) or off is None:
            return state
        # this lookup's result is now the one for (map, key): it replaces any older one
        avail = frozenset(a for a in avail if not (a[0] == m.map and a[1] == off)) | {(m.map, off, mdef.key_size, pc)}
        return (consts, avail)

    def run(self) -> MapCachePlan:
        cfg = self.analysis.cfg
        for fn in cfg.functions:
            self._solve(fn)
        return self._assign_slots()

    def _solve(self, fn) -> None:
        blocks = self.analysis.cfg.blocks
        order = [b for b in fn.blocks if b in blocks]
        block_in: dict[int, object] = {b: None for b in order}
        block_in[fn.start] = _EMPTY
        block_out: dict[int, object] = {b: None for b in order}
        changed = True
        rounds = 0
        while changed:
            changed = False
            rounds += 1
            for b in order:
                blk = blocks[b]
                if b == fn.start:
                    state = _EMPTY
                else:
                    state = None
                    for p in blk.preds:
                        state = _meet(state, block_out.get(p))
                first = self.analysis.facts.get(blk.start)
                if state is None or first is None or not first.reachable:
                    out = None
                else:
                    block_in[b] = state
                    for pc in blk.pcs:
                        state = self.step(pc, self.program.at(pc), state)
                    out = state
                if out != block_out[b]:
                    block_out[b] = out
                    changed = True
            if rounds > 100:       # not expected (finite lattice); give up on this function rather than guess
                for pc in fn_pcs(self.analysis.cfg, fn):
                    self.decisions.pop(pc, None)
                return

    def _assign_slots(self) -> MapCachePlan:
        sources = sorted({how.source for how in self.decisions.values() if isinstance(how, Reuse)})
        slots = {src: i for i, src in enumerate(sources[:min(self.p.slots, MAX_SLOTS)])}
        lookups = {}
        for pc, how in sorted(self.decisions.items()):
            if isinstance(how, Reuse):
                if how.source not in slots:
                    continue
                how = Reuse(slots[how.source], how.source)
            lookups[pc] = how
        return MapCachePlan(lookups, dict(slots))


def fn_pcs(cfg, fn):
    return [pc for b in fn.blocks if b in cfg.blocks for pc in cfg.blocks[b].pcs]


@dataclass(frozen=True)
class MapCache(Pass):
    """Constant-key ARRAY lookups become addresses, repeated lookups reuse the first result."""

    name: ClassVar[str] = "map-cache"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = ("map lookups without a helper call: constant-key array lookups become addresses, "
                              "other stack-key array lookups are inlined, repeated lookups reuse the first result")

    direct: bool = True     # constant-key ARRAY lookups -> the value's address (or NULL)
    reuse: bool = True      # a lookup repeated with the same map and unchanged key -> the first result
    inline: bool = True     # other ARRAY lookups with a stack key -> inline bounds check and address
    slots: int = MAX_SLOTS  # NN register pairs for kept results (at most 4)
    option_ranges: ClassVar[dict] = {"slots": (0, MAX_SLOTS)}

    def plan(self, program, analysis) -> MapCachePlan | None:
        if analysis is None or getattr(analysis, "cfg", None) is None or not program.maps:
            return None
        return _Planner(self, program, analysis).run()


__all__ = ["MapCache", "MapCachePlan", "Direct", "Inline", "Reuse", "nn_slot", "slot_size", "FIRST_NN",
           "MAX_SLOTS"]

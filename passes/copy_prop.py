"""``copy-prop``: read a value from the register it was first written to, not from a copy of it.

The lowering copies eBPF registers with ``mov ab<d>, b<s>`` and then computes on the copy; when
the original still holds the value, the computation can read it directly and the copy dies
(``dce`` removes it)::

    mov ab6, b2                 mov ab6, b2             ; dead now
    add ab6, a6, 14       ->    add ab6, a2, 14

Value numbers (:func:`nfpjit.passes.machine.value_numbers`) say which GPRs hold the same value
at each instruction: copies, both banks of an ``ab<n>`` write, equal constants loaded with
``immed``.  A source operand is replaced by the holder whose value was written earliest, so uses
move towards the original definition.  Each rewrite must still encode (the two-source rule:
``a`` and ``b`` from different banks; :func:`nfpjit.isa.encoding.check`), else the next holder is
tried, else the operand stays.  A ``mov`` into registers that already hold the value goes when
nobody reads the flags it sets.

Copies out of scratch registers are coalesced backwards: when ``x`` dies at ``mov ab<y>, b<x>``
and nothing between x's definition and the copy touches y, the definition writes y directly::

    ld_field ab22, 0b0001, a2, 8, clear         ld_field ab4, 0b0001, a2, 8, clear
    ld_field ab22, 0b0010, a2, 24         ->    ld_field ab4, 0b0010, a2, 24
    mov ab4, b22

and a value computed only to be copied into a transfer or next-neighbour register is computed
there (``add ab2, $in0, 1; mov $out0, b2`` -> ``add $out0, $in0, 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.isa.encoding import check
from nfpjit.isa.operands import NN, Gpr, GprBoth, IllegalOperands, Xfer
from nfpjit.isa.table import Op
from nfpjit.passes.manager import Pass

from . import machine as M


def _legal(ins) -> bool:
    try:
        check(ins)
    except IllegalOperands:
        return False
    return True


def rewrite_sources(ins, state: dict, pos: int, loops: bool = True):
    """``ins`` with each GPR, NN, $in or LM-word source read from its oldest equal holder (None if nothing changes).

    An LM word stored from a register and read back while the register still holds the value is
    read from the register (store-to-load forwarding through the value numbers).
    """
    new = ins
    for role in ("a", "b"):
        op = getattr(new, role)
        loc = M.value_loc(op) if op is not None else None
        if loc is None:
            continue
        vid = M.vn_of(state, loc, pos, loops)
        here = state[loc][1]
        if here < 0:
            continue                     # held since before anything this walk knows: none older
        # never an LM word as the replacement: that would add an LM access (and its pointer wait)
        cands = sorted((v[1], k) for k, v in state.items()
                       if v[0] == vid and v[1] < here and k != loc and k < M.LM_KEY0)
        for _, cand in cands:
            trial = replace(new, **{role: M.value_operand(cand)})
            if _legal(trial):
                new = trial
                break
    return None if new is ins else new


@dataclass(frozen=True)
class CopyProp(Pass):
    """Replace reads of copies by reads of the original register (the two-source rule permitting)."""

    name: ClassVar[str] = "copy-prop"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "read values from the register first written, so copies die"

    coalesce: bool = True
    coalesce_first: bool = False

    def run(self, unit) -> bool:
        changed = False
        if self.coalesce and self.coalesce_first:   # first: forward rewrites would keep scratch registers alive
            for _ in range(4):
                if not coalesce(unit):
                    break
                changed = True
        for fa in M.analyses(unit):
            fn, cfg = fa.fn, fa.cfg
            body = cfg.body
            ins_states = fa.vn
            lv = fa.live
            edits = {}
            for b in cfg.blocks:
                state = ins_states[b.index]
                if state is None:
                    continue
                state = dict(state)
                for i in b.idx:
                    m = body[i]
                    if m.reloc is None and m.instr.op != Op.LOAD_ADDR:
                        if _redundant_copy(m.instr, state, i, lv.after(i), cfg.loops):
                            edits[i] = None
                            continue
                        new = rewrite_sources(m.instr, state, i, cfg.loops)
                        if new is not None:
                            m = replace(m, instr=new)
                            edits[i] = m
                    M.vn_step(state, m, i, None, cfg.loops)
            changed |= M.apply_edits(fn, edits)
        if self.coalesce:                # and again: the forward rewrites free some copies of their uses
            for _ in range(4):
                if not coalesce(unit):
                    break
                changed = True
        return changed


def _redundant_copy(ins, state: dict, pos: int, live_after: int, loops: bool = True) -> bool:
    """A mov (or a csr_rd) whose destination registers already hold its value, flags unread."""
    if ins.op == Op.CSR_RD:
        vid = ("csr", int(ins.csr))
    elif ins.op == Op.MOV and M.value_loc(ins.b) is not None:
        if live_after & (M.BIT_CC | M.BIT_PREV):
            return False
        vid = M.vn_of(state, M.value_loc(ins.b), pos, loops)
    else:
        return False
    dests = M.vn_dests(ins.dest)
    return bool(dests) and all(state.get(loc, (None,))[0] == vid for loc in dests)


def _rename(ins, x: int, y: int):
    """``ins`` with GPR x read and written as GPR y (None if it touches x in a form that cannot be renamed)."""
    changes = {}
    for role in ("a", "b"):
        op = getattr(ins, role)
        if op.__class__ is Gpr and op.index == x:
            changes[role] = Gpr(op.bank, y)
    d = ins.dest
    if d.__class__ is GprBoth and d.index == x:
        changes["dest"] = GprBoth(y)
    elif d.__class__ is Gpr and d.index == x:
        return None
    new = replace(ins, **changes) if changes else ins
    return new if _legal(new) else None


def coalesce(unit) -> bool:
    """One round of backward copy coalescing over every function (see the module docstring).

    The chain from x's full definition to the copy writes x only as ``ab<x>`` (checked by the
    plan), so both banks of x are equal at the copy and the copy may read either.
    """
    changed = False
    for fa in M.analyses(unit):
        fn, cfg = fa.fn, fa.cfg
        body = cfg.body
        lv = fa.live
        edits = {}
        touched: set = set()
        reach = cfg.reachable()
        for b in cfg.blocks:
            if b.index not in reach:
                continue
            for k in b.idx:
                m = body[k]
                ins = m.instr
                if m.reloc is None and ins.op == Op.MOV and ins.dest.__class__ is GprBoth \
                        and ins.b.__class__ is Gpr and ins.b.index != ins.dest.index:
                    x, y = ins.b.index, ins.dest.index
                    if x not in touched and y not in touched and \
                            not lv.after(k) & (M.BIT_CC | M.BIT_PREV | M.both(x)):
                        plan = _coalesce_plan(body, b, k, x, y)
                        # a plan rewrites instructions as they were: never one another plan rewrites
                        if plan is not None and k not in edits and not plan.keys() & edits.keys():
                            edits.update(plan)
                            edits[k] = None
                            touched.update((x, y))
                elif m.reloc is None and ins.op == Op.MOV and ins.dest.__class__ in (Xfer, NN) \
                        and ins.b.__class__ is Gpr and ins.b.index not in touched and \
                        not lv.after(k) & (M.BIT_CC | M.BIT_PREV | M.both(ins.b.index)):
                    plan = _into_register_plan(body, b, k)
                    if plan is not None and k not in edits and not plan.keys() & edits.keys():
                        edits.update(plan)
                        edits[k] = None
                        touched.add(ins.b.index)
        changed |= M.apply_edits(fn, edits)
    return changed


def _into_register_plan(body, b, k: int) -> dict | None:
    """``D: op ab<x>, ...; ...; mov $out<n>|n<n>, b<x>`` with x read by nobody else: D writes the register."""
    mv = body[k].instr
    x = mv.b.index
    bx = M.both(x)
    target = M.def_use(mv).defs & ~(M.BIT_CC | M.BIT_PREV)     # the $out / NN register
    pos = b.idx.index(k)
    for j in reversed(b.idx[:pos]):
        m = body[j]
        du = M.def_use(m.instr)
        if (du.uses | du.clobbers) & target:
            return None
        if du.clobbers & bx:
            ins = m.instr
            if m.reloc is not None or du.uses & bx or du.defs & bx != bx or ins.dest.__class__ is not GprBoth \
                    or ins.op in M.BRANCH_OPS:
                return None              # not a full definition of x alone
            new = replace(ins, dest=mv.dest)
            return {j: replace(m, instr=new)} if _legal(new) else None
        if du.uses & bx:
            return None
    return None


def _coalesce_plan(body, b, k: int, x: int, y: int) -> dict | None:
    bx, by = M.both(x), M.both(y)
    pos = b.idx.index(k)
    plan = {}
    for j in reversed(b.idx[:pos]):
        m = body[j]
        du = M.def_use(m.instr)
        touches = (du.uses | du.clobbers)
        full_def = du.defs & bx == bx and not du.uses & bx and m.instr.dest.__class__ is GprBoth \
            and m.instr.dest.index == x
        if not full_def and touches & by:
            return None
        if touches & bx:
            new = _rename(m.instr, x, y)
            if new is None or (du.clobbers & bx and not (m.instr.dest.__class__ is GprBoth and
                                                         m.instr.dest.index == x)):
                return None
            if du.clobbers & by & ~M.def_use(new).defs:
                return None
            plan[j] = replace(m, instr=new)
        if full_def:
            return plan
    return None

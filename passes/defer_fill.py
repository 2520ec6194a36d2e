"""``defer-fill``: a list scheduler per block that fills LM-pointer waits and branch defer slots.

Two kinds of idle cycles in the lowering's code:

* ``csr_wr active_lm_addr_N`` is followed by three ``nop``\\ s: the simulator (like the NFP)
  traps a use of LM index pointer N fewer than 3 cycles after its CSR is written;
* a taken branch costs 3 cycles less one per defer slot, and the lowering fills none (except
  the ``load_addr a30`` of a firmware call).

Each block is rescheduled from a dependence graph built from the machine def/use
(:mod:`nfpjit.passes.machine`): a value's readers stay after its writer, later writers after
them; the condition codes and ``prev``, which nearly every instruction writes, only constrain
writes somebody reads, so independent ALU work can move across dead flag writes.  A use of LM
pointer N waits 4 slots after the pointer's write; the scheduler fills the wait with the
independent instructions with the longest path behind them, and a ``nop`` only when nothing is
ready.  Then the block's branch moves up over the instructions that do not feed it (never a
pointer write, never across a label) into its defer slots::

    csr_wr active_lm_addr_0, 72      csr_wr active_lm_addr_0, 72
    nop                              immed ab4, 0x76
    nop                              immed ab6, 0x68
    nop                              immed ab8, 0x0
    mov *l$index0[8], 1        ->    mov *l$index0[8], 1
    immed ab4, 0x76                  ...
    immed ab6, 0x68
    immed ab8, 0x0

    sub --, a4, b6                   sub --, a4, b6
    immed ab7, 0x0             ->    br.lo L51, defer=1
    br.lo L51                        immed ab7, 0x0

The branch of a firmware call fills its second slot with the instruction before it (the
``load_addr a30`` stays the last slot); a BPF-to-BPF call's branch takes up to two.  A block is
only rewritten when it gets shorter or fills more defer slots.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.isa.table import Instruction, Op
from nfpjit.jit.mir import MInstr
from nfpjit.passes.manager import Pass

from . import machine as M

LM_DELAY = 3


def _lm_write(ins) -> int | None:
    return M.lm_pointer_written(ins)


def dependences(body, nodes: list, live_after: list) -> tuple[list, list]:
    """(preds, succs) lists per node position for ``nodes`` (body indices, in program order)."""
    n = len(nodes)
    preds = [set() for _ in range(n)]
    cur_writer: dict = {}
    readers: dict = {}
    pending_dead: dict = {}
    for k, i in enumerate(nodes):
        du = M.def_use(body[i].instr)
        p = preds[k]
        uses = du.uses
        while uses:
            low = uses & -uses
            loc = low.bit_length() - 1
            uses ^= low
            w = cur_writer.get(loc)
            if w is not None:
                p.add(w)
            for d in pending_dead.get(loc, ()):
                p.add(d)
            readers.setdefault(loc, []).append(k)
        writes = du.clobbers
        live = live_after[k]
        while writes:
            low = writes & -writes
            loc = low.bit_length() - 1
            writes ^= low
            for r in readers.get(loc, ()):
                p.add(r)
            w = cur_writer.get(loc)
            if w is not None:
                p.add(w)
            if live & low:
                for d in pending_dead.pop(loc, ()):
                    p.add(d)
                cur_writer[loc] = k
                readers[loc] = []
            else:
                pending_dead.setdefault(loc, []).append(k)
        p.discard(k)
    succs = [[] for _ in range(n)]
    for k in range(n):
        for q in preds[k]:
            succs[q].append(k)
    return [sorted(p) for p in preds], succs


def schedule(body, nodes: list, live_after: list, term: int | None, max_defer: int, fixed_tail: list):
    """A new order for ``nodes`` (body indices; ``term`` the branch among them or None): list of body
    indices and None (a nop), plus the branch's defer count."""
    n = len(nodes)
    preds, succs = dependences(body, nodes, live_after)
    ins = [body[i].instr for i in nodes]
    halt = [k for k in range(n) if ins[k].op == Op.HALT]
    for h in halt:                         # halt ends the block: everything else first
        for k in range(n):
            if k != h and k not in preds[h]:
                preds[h].append(k)
                succs[k].append(h)
    tpos = nodes.index(term) if term is not None else None
    lat = {}                               # (pred, node) -> minimum distance in slots
    for k in range(n):
        ptr = _lm_write(ins[k])
        if ptr is None:
            continue
        bit = 1 << M.lmp(ptr)
        for s in succs[k]:
            if M.def_use(ins[s]).uses & bit:
                lat[(k, s)] = LM_DELAY + 1
    # priority: longest latency-weighted path to the end
    height = [1] * n
    for k in range(n - 1, -1, -1):
        for s in succs[k]:
            height[k] = max(height[k], lat.get((k, s), 1) + height[s])
    waiting = [len(preds[k]) for k in range(n)]
    earliest = [0] * n
    placed = [None] * n
    seq: list = []
    ready = [k for k in range(n) if waiting[k] == 0]
    done = 0
    while done < n:
        slot = len(seq)
        cands = [k for k in ready if earliest[k] <= slot]
        pick = None
        normal = [k for k in cands if k != tpos and k not in halt]
        if normal:
            pick = max(normal, key=lambda k: (height[k], -k))
        elif cands and not any(k != tpos and k not in halt for k in ready):
            pick = cands[0]            # the branch (or halt) once everything not behind it is placed
        if pick is None:
            if not ready:
                raise AssertionError("dependence cycle")
            seq.append(None)
            continue
        ready.remove(pick)
        placed[pick] = slot
        seq.append(pick)
        done += 1
        for s in succs[pick]:
            waiting[s] -= 1
            earliest[s] = max(earliest[s], slot + lat.get((pick, s), 1))
            if waiting[s] == 0:
                ready.append(s)
    defer = 0
    if tpos is not None:
        # the branch goes up over instructions that do not feed it, into its defer slots
        p = seq.index(tpos)
        after = len(seq) - 1 - p
        pred_t = set(preds[tpos])
        while p > 0 and after < max_defer:
            x = seq[p - 1]
            if x is None or x in pred_t or _lm_write(ins[x]) is not None or p - 1 < earliest[tpos]:
                break
            seq[p - 1], seq[p] = seq[p], seq[p - 1]
            p -= 1
            after += 1
        defer = len(seq) - 1 - p
    out = [None if k is None else nodes[k] for k in seq]
    # a pointer write must have LM_DELAY instructions after it in the block (its successor may use it)
    tail = len(fixed_tail)
    for pos, i in enumerate(out):
        if i is None or _lm_write(body[i].instr) is None:
            continue
        bit = 1 << M.lmp(_lm_write(body[i].instr))
        later = out[pos + 1:]
        used = any(j is not None and M.def_use(body[j].instr).uses & bit for j in later)
        if not used and len(later) + tail < LM_DELAY:
            at = out.index(term) if term is not None and term in out else len(out)
            out[at:at] = [None] * (LM_DELAY - len(later) - tail)
    return out, defer


@dataclass(frozen=True)
class DeferFill(Pass):
    """List-schedule each block: fill LM pointer waits and branch defer slots with independent work."""

    name: ClassVar[str] = "defer-fill"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "fill branch defer slots and LM-pointer nops with independent instructions"

    slots: bool = True

    def run(self, unit) -> bool:
        changed = False
        for fa in M.analyses(unit):
            fn, cfg = fa.fn, fa.cfg
            body = cfg.body
            lv = fa.live
            replacements = {}
            reach = cfg.reachable()
            for b in cfg.blocks:
                if b.index not in reach or not b.idx:
                    continue
                new = _block(body, b, lv, self.slots)
                if new is not None:
                    replacements[b.index] = new
            if replacements:
                out = []
                for b in cfg.blocks:
                    rep = replacements.get(b.index)
                    out.extend(body[b.start:b.end] if rep is None else rep)
                fn.body[:] = out
                changed = True
        return changed


def _block(body, b, lv, slots: bool):
    idx = b.idx
    term = b.term
    fixed_tail: list = []
    if term is not None and body[term].instr.op in M.BRANCH_OPS:
        if b.kind in (M.CALL, M.ESCAPE) or not slots:
            fixed_tail = [i for i in idx if i >= term]
            work = [i for i in idx if i < term]
            term_node = None
        else:
            work = list(idx)
            term_node = term
    else:
        work = list(idx)
        term_node = None
    nodes = [i for i in work if body[i].instr.op != Op.NOP]
    if not nodes:
        return None
    live_after = [lv.after(i) for i in nodes]
    max_defer = body[term].instr.entry.max_defer if term_node is not None else 0
    order, defer = schedule(body, nodes, live_after, term_node, max_defer, fixed_tail)
    if defer > max_defer:
        return None
    old_len = len(work)
    old_defer = body[term].instr.defer if term_node is not None else 0
    tail = [body[i] for i in fixed_tail]
    filled = defer
    if fixed_tail and slots:
        order, tail, gained = _call_slots(body, b, order, tail)
        filled += gained
    if (len(order) + len(tail), -filled) >= (old_len + len(fixed_tail), -old_defer):
        return None                      # neither shorter nor more slots filled
    labels = [body[j] for j in range(b.start, b.end) if body[j].instr is None]
    seq = []
    pc = None
    for i in order:
        if i is None:
            seq.append(MInstr(Instruction(Op.NOP), pc=pc))
            continue
        m = body[i]
        pc = m.pc if m.pc is not None else pc
        if i == term_node and m.instr.defer != defer:
            m = replace(m, instr=replace(m.instr, defer=defer))
        seq.append(m)
    # nops get the eBPF pc of the instruction before them (the pointer write they wait for)
    return labels + seq + tail


def _call_slots(body, b, order: list, tail: list):
    """Fill the free defer slots of a call's branch with the instructions just before it.

    A firmware call keeps its ``load_addr a30`` as the last slot (the routine's faults are
    attributed through it); a BPF-to-BPF call's branch takes up to two.  The routine or the
    callee runs after the slots, so any instruction before the branch may sit in them, except
    an LM pointer write (the code after the call may use the pointer at once).
    Returns the shortened order, the new tail and how many slots were filled.
    """
    br = tail[0]
    ins = br.instr
    if ins.op != Op.BR or ins.cond.name != "ALWAYS":
        return order, tail, 0
    if b.kind == M.CALL:
        if len(tail) != 2 or ins.defer != 1:
            return order, tail, 0
        room = ins.entry.max_defer - 1
    elif br.reloc is None and br.target is not None and len(tail) == 1 + ins.defer:
        room = ins.entry.max_defer - ins.defer
    else:
        return order, tail, 0
    moved = []
    while room and order and order[-1] is not None and _lm_write(body[order[-1]].instr) is None \
            and body[order[-1]].instr.op not in M.BRANCH_OPS and body[order[-1]].instr.op != Op.HALT:
        moved.insert(0, body[order.pop()])
        room -= 1
    if not moved:
        return order, tail, 0
    new_br = replace(br, instr=replace(ins, defer=ins.defer + len(moved)))
    if b.kind == M.CALL:
        return order, [new_br] + moved + tail[1:], len(moved)
    return order, [new_br] + tail[1:] + moved, len(moved)

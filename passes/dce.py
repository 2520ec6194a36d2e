"""``dce``: dead machine code — dead results, unreachable blocks, branches to the next instruction, idle nops.

An instruction goes when it has no effect (no memory command, LM write, CSR write, branch,
halt; an LM read is fine) and nothing reads what it writes (:func:`nfpjit.passes.machine.liveness`, per location,
including the condition codes and ``prev``).  This subsumes the high-word writes the lowering
leaves behind when the high word is never read — zero extension elimination at machine level::

    mov ab6, b2                 add ab6, a2, 14
    immed ab7, 0x0        ->    br.lo L126              ; a7/b7 read by nobody
    add ab6, a2, 14
    br.lo L126

Blocks no path reaches lose their instructions (labels stay: they take no space); a branch to
the instruction right after its defer slots goes; a branch to an unconditional ``br`` with no
defer slots goes straight to that branch's target; ``nop``\\ s go unless they are needed to keep an
LM index pointer's 3-cycle delay (:func:`nfpjit.passes.machine.repair_lm_timing` re-checks every
pointer write afterwards), and a nop in a defer slot shortens the branch's defer count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.isa.table import Cond, Op
from nfpjit.passes.manager import Pass

from . import machine as M


def _first_instruction_at(body) -> dict:
    """label -> index of the first instruction at or after it (len(body) at the end)."""
    out = {}
    nxt = len(body)
    for i in range(len(body) - 1, -1, -1):
        m = body[i]
        if m.instr is not None:
            nxt = i
        else:
            out[m.label] = nxt
    return out


def _thread_jumps(fn, cfg: M.CFG) -> dict:
    """Retarget branches whose target is an unconditional ``br`` without defer slots."""
    body = cfg.body
    first_at = _first_instruction_at(body)
    edits = {}
    for i, m in enumerate(body):
        ins = m.instr
        if ins is None or m.target is None or ins.op not in (Op.BR, Op.BR_BSET, Op.BR_BCLR) or m.reloc is not None:
            continue
        target = m.target
        seen = {target}
        while True:
            j = first_at.get(target)
            if j is None or j >= len(body):
                break
            t = body[j]
            if t.instr.op != Op.BR or t.instr.cond != Cond.ALWAYS or t.instr.defer or t.reloc is not None \
                    or t.target is None or t.target not in first_at or t.target in seen:
                break
            target = t.target
            seen.add(target)
        if target != m.target:
            edits[i] = replace(m, target=target)
    return edits


def _branches_to_next(cfg: M.CFG) -> dict:
    body = cfg.body
    first_at = _first_instruction_at(body)
    edits = {}
    for b in cfg.blocks:
        if b.term is None or b.kind not in (M.JUMP, M.COND):
            continue
        m = body[b.term]
        pos = first_at.get(m.target)
        nxt = b.term + 1 + m.instr.defer
        while nxt < len(body) and body[nxt].instr is None:
            nxt += 1
        if pos is not None and pos == nxt:
            edits[b.term] = None
    return edits


def _dead(cfg: M.CFG, lv: M.Liveness) -> dict:
    body = cfg.body
    edits = {}
    reachable = cfg.reachable()
    for b in cfg.blocks:
        if b.index not in reachable:
            for i in b.idx:
                edits[i] = None
            continue
        live = lv.live_out[b.index]
        if b.call is not None:
            live = b.call.uses | (live & ~b.call.defs)
        for i in reversed(b.idx):
            m = body[i]
            du = M.def_use(m.instr)
            if not (du.effects & ~M.E_LM_READ) and not (du.clobbers & live) and m.reloc is None \
                    and m.instr.op != Op.LOAD_ADDR:
                edits[i] = None          # nops included: repair_lm_timing puts back the ones a pointer needs
                continue
            live = du.uses | (live & ~du.defs)
    return edits


@dataclass(frozen=True)
class Dce(Pass):
    """Delete dead instructions, unreachable code, branches to the next instruction and idle nops."""

    name: ClassVar[str] = "dce"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "remove dead results, unreachable blocks, branches to the next instruction and idle nops"

    rounds: int = 4
    option_ranges: ClassVar[dict] = {"rounds": (1, 64)}

    def run(self, unit) -> bool:
        before = [list(fn.body) for fn in unit.functions]
        for fn_index in range(len(unit.functions)):
            for _ in range(self.rounds):
                fa = M.analyses(unit)[fn_index]
                fn, cfg = fa.fn, fa.cfg
                edits = _thread_jumps(fn, cfg)
                if edits:
                    M.apply_edits(fn, edits)
                    fa = M.analyses(unit)[fn_index]
                    fn, cfg = fa.fn, fa.cfg
                edits2 = _dead(cfg, fa.live)
                for i in _branches_to_next(cfg):
                    edits2.setdefault(i, None)
                if not (bool(edits) | M.apply_edits(fn, edits2)):
                    break
            M.repair_lm_timing(unit.functions[fn_index])
        return [fn.body for fn in unit.functions] != before

"""``imm-materialise``: constants as ALU immediates, reused from registers, built in fewer instructions.

The lowering loads every constant it needs with ``immed`` (one instruction, or two for a value
no 16-bit shifted or inverted form reaches: :func:`nfpjit.isa.encoding.load_const` already picks
the cheapest single form).  With known register contents (:func:`nfpjit.passes.machine.known_bits`):

* a source register holding a constant 0..255 becomes that immediate operand when the
  instruction still encodes (two-source rule: not two immediates)::

      immed ab22, 0x56                      csr_wr active_lm_addr_0, 86
      csr_wr active_lm_addr_0, b22    ->    (the immed dies)

* a source register holding a larger constant that an older register already holds reads that
  register instead (the second ``immed ab23, 0x5000`` of a program dies);
* a two-instruction constant within 255 of a value some register holds becomes one ``add`` or
  ``sub`` from that register, when nobody reads the flags it sets; when the destination already
  holds the constant's low half, the high-half ``immed`` alone does;
* masks need no constant: ``xor x, ~0`` is ``not x``; ``and x, 0xffff`` (any mask of whole
  bytes) is ``ld_field x, 0b0011, x, 0, clear`` when nobody reads the flags::

      immed ab22, 0xffff
      and ab14, a14, b22        ->    ld_field ab14, 0b0011, a14, 0, clear

``dce`` removes the ``immed``\\ s nobody reads afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.bits import MASK32
from nfpjit.isa.encoding import check
from nfpjit.isa.operands import MAX_ALU_IMM, Gpr, GprBoth, IllegalOperands, Imm
from nfpjit.isa.table import Instruction, Op, Width
from nfpjit.passes.manager import Pass

from . import machine as M


def _legal(ins) -> bool:
    try:
        check(ins)
    except IllegalOperands:
        return False
    return True


def _immed_pair(body, idx: list, k: int):
    """(dest, value) when idx[k], idx[k+1] are the two-immed load of one 32-bit constant."""
    if k + 1 >= len(idx):
        return None
    m1, m2 = body[idx[k]], body[idx[k + 1]]
    a, b = m1.instr, m2.instr
    if m1.reloc or m2.reloc or a.op != Op.IMMED or b.op != Op.IMMED:
        return None
    if a.width != Width.WORD or a.byte or a.invert or b.width != Width.HI or b.byte != 2 or b.invert:
        return None
    if a.dest != b.dest or a.dest.__class__ not in (Gpr, GprBoth):
        return None
    return a.dest, (b.imm << 16) | a.imm


@dataclass(frozen=True)
class ImmMaterialise(Pass):
    """Small constants as immediates, constants reused from registers, two-immed constants as add/sub."""

    name: ClassVar[str] = "imm-materialise"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "constants <= 255 as ALU immediates, reuse of constants in registers, cheaper immed forms"

    def run(self, unit) -> bool:
        changed = False
        for fa in M.analyses(unit):
            fn, cfg = fa.fn, fa.cfg
            body = cfg.body
            kb = fa.bits
            lv = None
            edits = {}
            for b in cfg.blocks:
                state = kb[b.index]
                if state is None:
                    continue
                state = dict(state)
                since = {}                       # loc -> position of its last write in this block
                skip_next = False
                for k, i in enumerate(b.idx):
                    m = body[i]
                    if skip_next:
                        skip_next = False
                    elif m.reloc is None:
                        pair = _immed_pair(body, b.idx, k)
                        if pair is not None and _low_half_there(pair, state):
                            edits[i] = None          # the high-half immed alone finishes the value
                            skip_next = True
                        elif pair is not None:
                            lv = lv or fa.live
                            new = _pair_from_register(pair, state, lv.after(b.idx[k + 1]))
                            if new is not None:
                                edits[i] = replace(m, instr=new)
                                edits[b.idx[k + 1]] = None
                                skip_next = True
                        if not skip_next:
                            new = _sources(m.instr, state, since, i)
                            if new is not None:
                                edits[i] = replace(m, instr=new)
                            lv = lv or fa.live
                            form = _mask_form(new or m.instr, state, lv.after(i))
                            if form is not None:
                                edits[i] = replace(m, instr=form)
                    du = M.def_use(m.instr)
                    M.step(state, m, du)
                    clob = du.clobbers & M.GPRS
                    while clob:
                        low = clob & -clob
                        since[low.bit_length() - 1] = i
                        clob ^= low
            changed |= M.apply_edits(fn, edits)
        return changed


def _sources(ins: Instruction, state: dict, since: dict, pos: int):
    e = ins.entry
    if e.is_branch or ins.op == Op.LOAD_ADDR:
        return None
    new = ins
    for role in ("a", "b"):
        op = getattr(new, role)
        if op.__class__ is not Gpr:
            continue
        v = M.const_of(state, M.gpr_loc(op))
        if v is None:
            continue
        if v <= MAX_ALU_IMM:
            trial = replace(new, **{role: Imm(v)})
            if _legal(trial):
                new = trial
                continue
        here = since.get(M.gpr_loc(op), -1)
        if here < 0:
            continue
        best = None
        for loc, kv in state.items():
            if loc >= M.XIN0 or loc == M.gpr_loc(op) or kv[0] | kv[1] != MASK32 or kv[1] != v:
                continue
            when = since.get(loc, -1)
            if when < here and (best is None or when < best[0]):
                trial = replace(new, **{role: M.loc_gpr(loc)})
                if _legal(trial):
                    best = (when, trial)
        if best is not None:
            new = best[1]
    return None if new is ins else new


def _low_half_there(pair, state: dict) -> bool:
    """The destination already holds the constant's low half (in every bank the pair writes)."""
    dest, value = pair
    locs = M.gpr_dests(dest)
    return all(M.const_of(state, loc) is not None and M.const_of(state, loc) & 0xFFFF == value & 0xFFFF
               for loc in locs)


def _byte_mask(k: int) -> int | None:
    """The ld_field byte mask equal to the 32-bit AND mask ``k`` (whole bytes only), else None."""
    mask = 0
    for i in range(4):
        byte = (k >> (8 * i)) & 0xFF
        if byte == 0xFF:
            mask |= 1 << i
        elif byte:
            return None
    return mask or None


def _mask_form(ins: Instruction, state: dict, live_after: int):
    """``xor x, ~0`` -> ``not x`` (same flags); ``and x, K`` with K whole bytes -> a clearing
    ``ld_field`` (no immed for K; only when nobody reads the flags, which ld_field leaves)."""
    op = ins.op
    if op not in (Op.XOR, Op.AND) or ins.a is None:
        return None
    for const, other in ((ins.b, ins.a), (ins.a, ins.b)):
        k = M.operand_value(state, const)
        if k is None or const.__class__ is Imm or other.__class__ is Imm:
            continue
        if op == Op.XOR and k == MASK32:
            new = Instruction(Op.NOT, dest=ins.dest, b=other)
        elif op == Op.AND and _byte_mask(k) not in (None, 0xF) and k > MAX_ALU_IMM \
                and not live_after & (M.BIT_CC | M.BIT_PREV) and ins.dest.__class__ in (Gpr, GprBoth):
            new = Instruction(Op.LD_FIELD, dest=ins.dest, b=other, mask=_byte_mask(k), amount=0, clear=True)
        else:
            continue
        if _legal(new):
            return new
    return None


def _pair_from_register(pair, state: dict, live_after: int):
    """``add/sub dest, R, k`` for a two-immed constant near a known register value (flags unread)."""
    if live_after & (M.BIT_CC | M.BIT_PREV):
        return None
    dest, value = pair
    for loc, kv in sorted(state.items(), key=lambda item: item[0] if isinstance(item[0], int) else 999):
        if not isinstance(loc, int) or loc >= M.XIN0 or kv[0] | kv[1] != MASK32:
            continue
        diff = (value - kv[1]) & MASK32
        for op, k in ((Op.ADD, diff), (Op.SUB, (-diff) & MASK32)):
            if 0 <= k <= MAX_ALU_IMM:
                new = Instruction(op, dest=dest, a=M.loc_gpr(loc), b=Imm(k))
                if _legal(new):
                    return new
    return None

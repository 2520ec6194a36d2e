"""``const-fold``: computations on known values become ``immed`` (or nothing), branches on known flags are decided.

Known bits (:func:`nfpjit.passes.machine.known_bits`) give the constant in each GPR, the
condition codes and ``prev`` where they are known.  The simulator's own semantic handler
evaluates an instruction whose inputs are all known, so folding is exact by construction::

    immed ab4, 0x78             immed ab4, 0x76         ; R2 = R10 - 2
    sub ab4, a4, 2        ->    (nothing: a5 already 0)
    subc ab5, a5, 0

* an ALU/shift/ld_field/immed whose result is known becomes one ``immed`` when nobody reads the
  condition codes or ``prev`` it would have set, and disappears when the destination already
  holds that value (a redundant ``immed`` of a value the register holds);
* ``br.<cc>`` on known flags and ``br_bset``/``br_bclr`` on a known bit become ``br.always`` or
  fall through (``dce`` then removes the unreachable side);
* ``csr_wr active_lm_addr_N`` of the address pointer N already holds goes;
* ``csr_wr active_lm_addr_N`` of the address LM pointer N already holds goes;
* ``or``/``xor``/``add`` with a known 0 (and ``and`` with all ones) are ``mov``\\ s — the same
  result, flags and ``prev``; a ``mov --, x`` (a test of x) right after the logic instruction that
  wrote x sets nothing new and goes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.bits import MASK32
from nfpjit.isa.encoding import check, load_const
from nfpjit.isa.operands import Gpr, GprBoth, IllegalOperands, NoDest
from nfpjit.isa.sim.semantics import HANDLERS
from nfpjit.isa.table import AluOp, Cond, Instruction, Op
from nfpjit.passes.manager import Pass

from . import machine as M

_LOGIC_OPS = frozenset({Op.AND, Op.OR, Op.XOR, Op.ANDNOT, Op.NOT, Op.MOV, Op.DBL_SHF})
_LOGIC_ALU = frozenset({AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.ANDNOT, AluOp.NOT, AluOp.MOV})


class _Branch:
    """A stand-in for the machine when running a branch's semantic handler on known flags."""

    __slots__ = ("z", "n", "c", "v", "taken", "state")

    def __init__(self, cc, state):
        self.z, self.n, self.c, self.v = cc if cc is not None else (None,) * 4
        self.taken = False
        self.state = state

    def take_branch(self, target, defer):
        self.taken = True

    def check_not_in_defer(self):
        pass

    def read(self, op):
        v = M.operand_value(self.state, op)
        if v is None:
            raise LookupError
        return v


def branch_outcome(ins: Instruction, state: dict) -> bool | None:
    """True/False when the branch's decision is known from ``state``, else None."""
    if ins.op == Op.BR:
        if ins.cond == Cond.ALWAYS or state.get(M.CC) is None:
            return None
        m = _Branch(state[M.CC], state)
    elif ins.op in (Op.BR_BSET, Op.BR_BCLR):
        z, o = M.operand_bits(state, ins.a)
        bit = 1 << ins.bit
        if not (z | o) & bit:
            return None
        m = _Branch(None, {M.gpr_loc(ins.a): (~o & MASK32, o)} if ins.a.__class__ is Gpr else {})
        if ins.a.__class__ is not Gpr:
            return None
    else:
        return None
    HANDLERS[ins.op](m, ins)
    return m.taken


def _legal(ins) -> bool:
    try:
        check(ins)
    except IllegalOperands:
        return False
    return True


def _writes_logic_flags(ins: Instruction) -> bool:
    if ins.op in _LOGIC_OPS:
        return True
    return ins.op == Op.ALU_SHF and ins.alu in _LOGIC_ALU


def _as_mov(ins: Instruction, state: dict, live_after: int) -> Instruction | None:
    """``op d, x, k`` with k the identity of op: ``mov d, x`` (same result, flags and prev)."""
    op = ins.op
    if op not in (Op.OR, Op.XOR, Op.ADD, Op.SUB, Op.AND):
        return None
    va, vb = M.operand_value(state, ins.a), M.operand_value(state, ins.b)
    ident = MASK32 if op == Op.AND else 0
    if vb == ident:
        other = ins.a
    elif va == ident and op != Op.SUB:
        other = ins.b
    else:
        return None
    if op == Op.SUB and live_after & M.BIT_CC:
        return None                    # sub x, 0 leaves C set; mov clears it
    new = Instruction(Op.MOV, dest=ins.dest, b=other)
    return new if _legal(new) else None


def fold_instruction(m, state: dict, live_after: int, flag_src: set):
    """The replacement for one MInstr: itself, another MInstr, or None (delete)."""
    ins = m.instr
    if m.reloc is not None:
        return m
    du = M.def_use(ins)
    if du.effects & M.E_BRANCH:
        taken = branch_outcome(ins, state)
        if taken is None:
            return m
        if taken:
            return replace(m, instr=Instruction(Op.BR, cond=Cond.ALWAYS, defer=ins.defer))
        return None
    if ins.op == Op.CSR_WR and M.lm_pointer_written(ins) is not None:
        p = M.lm_pointer_written(ins)
        if M.operand_value(state, ins.b) is not None and state.get(M.lmp(p)) == M.operand_value(state, ins.b):
            return None                # the pointer already holds that address
        return m
    if du.effects:
        return m
    flags_live = live_after & du.defs & (M.BIT_CC | M.BIT_PREV)
    res = M.evaluate(ins, state)
    if res is not None:
        out, cc, prev = res
        # Only GPR values are trusted for "already there": a rewrite never changes one, but an
        # instruction folded into immed no longer sets the flags the original set.
        if not flags_live and all(M.const_of(state, loc) == v for loc, v in out.items()):
            return None
        if out and not flags_live and ins.op != Op.IMMED:
            value = next(iter(out.values()))
            seq = load_const(ins.dest, value)
            if len(seq) == 1:
                return replace(m, instr=seq[0])
        return m
    new = _as_mov(ins, state, live_after)
    if new is not None:
        ins = new
        m = replace(m, instr=new)
    if ins.op == Op.MOV and isinstance(ins.dest, NoDest) and ins.b.__class__ is Gpr \
            and M.gpr_loc(ins.b) in flag_src:
        return None                    # CC and prev already are the logic flags of that value
    return m


def _update_flag_src(flag_src: set, m, du) -> None:
    ins = m.instr
    if du.clobbers & (M.BIT_CC | M.BIT_PREV):
        flag_src.clear()
        if _writes_logic_flags(ins) and isinstance(ins.dest, (Gpr, GprBoth)):
            flag_src.update(M.gpr_dests(ins.dest))
        return
    if flag_src and du.clobbers & M.GPRS:
        for loc in [k for k in flag_src if du.clobbers >> k & 1]:
            flag_src.discard(loc)


@dataclass(frozen=True)
class ConstFold(Pass):
    """Fold instructions on known values into immed (or nothing) and decide branches on known flags."""

    name: ClassVar[str] = "const-fold"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "ALU ops on known values become immed or vanish; branches on known flags are decided"

    def run(self, unit) -> bool:
        changed = False
        for fa in M.analyses(unit):
            fn, cfg = fa.fn, fa.cfg
            body = cfg.body
            lv = fa.live
            kb = fa.bits
            edits = {}
            for b in cfg.blocks:
                state = kb[b.index]
                if state is None:
                    continue
                state = dict(state)
                flag_src: set = set()
                for i in b.idx:
                    m = body[i]
                    new = fold_instruction(m, state, lv.after(i), flag_src)
                    if new is not m:
                        edits[i] = new
                    if new is not None:          # the state follows the code as rewritten
                        du = M.def_use(new.instr)
                        _update_flag_src(flag_src, new, du)
                        M.step(state, new, du)
            changed |= M.apply_edits(fn, edits)
        return changed

"""The real NFP JIT's peepholes at machine level: ``neg-add-sub``, ``ld-mask``, ``ld-shift``, ``reg-init``.

``neg-add-sub`` — an add of a negative constant is a sub of a small one (an 8-bit immediate
instead of an ``immed`` into a register), and a compare (``sub --``) with a negative constant
an ``add``.  For k in 1..255, ``a + (-k)`` and ``a - k`` give the same result *and* the same
Z, N, C and V (C = carry of the add = no borrow of the sub, i.e. a >= k), so it is legal
whatever reads the flags::

    immed ab23, 0x1, invert         add ab6, a6, b23 -> sub ab6, a6, 2 ; immed dies
    add ab6, a6, b23                sub --, a4, b23   -> add --, a4, 2

``ld-mask`` — an ``and`` whose mask keeps every bit the other operand may have set (known bits:
a byte load is ``shr 24`` of the word, so its top 24 bits are zero) is a ``mov`` (same result,
flags and prev); an ``ld_field ..., clear`` without rotation that keeps every possibly-set byte is
a ``mov`` when nobody reads the flags::

    alu_shf ab6, --, mov, $in0, shr 24
    and ab6, a6, 255          ->    mov ab6, a6        (copy-prop/dce then drop it)

``ld-shift`` — ``shl k`` followed by ``shr k`` (or ``asr k``) of the result is the original
value when its top k (k+1) bits are known zero; ``shr k`` then ``shl k`` when its low k bits
are.  The second shift becomes a ``mov`` of the original; a first shift done in place (its
result read by nothing else) goes::

    alu_shf ab6, --, mov, $in0, shr 16              alu_shf ab6, --, mov, $in0, shr 16
    alu_shf ab6, --, mov, b6, shl 16          ->    mov ab6, b6           (b6 < 65536 known)
    alu_shf ab6, --, mov, b6, shr 16

``ld-shift`` also collapses byte assembly: with a byte map per register (each byte: 0, or byte j
of some value), an instruction whose result is bytes of one value, rotated by whole bytes and
zero elsewhere, becomes one clearing ``ld_field`` from a register holding that value (the shifts,
ors and masks before it then die)::

    ld_field ab8, 0b0001, $in15, 8, clear
    alu_shf ab8, --, mov, b8, shl 8               (p[1] << 8) | p[0]
    ld_field ab10, 0b0001, $in15, 0, clear
    or ab8, a8, b10                         ->    ld_field ab8, 0b0011, $in15, 0, clear

``reg-init`` — the real JIT's first pass skips the leading ``r6 = r1`` copies of the context
pointer.  Our lowering gives the context no register at all (its fields are CSR reads), so the
copies copy a register nothing has written.  Liveness already removes those nobody reads
(``dce``); this pass removes, in the entry function, every copy whose source and destination are
both still unwritten on every path from the entry (the destination keeps the same initial value
either way).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nfpjit.bits import MASK32
from nfpjit.isa.encoding import check
from nfpjit.isa.operands import MAX_ALU_IMM, Gpr, GprBoth, IllegalOperands, Imm
from nfpjit.isa.table import AluOp, Instruction, Op, ShiftKind
from nfpjit.passes.manager import Pass

from . import machine as M


def _legal(ins) -> bool:
    try:
        check(ins)
    except IllegalOperands:
        return False
    return True


def _walk(unit, rewrite, *, need_live: bool = False, need_states: bool = False) -> bool:
    """Run ``rewrite(m, state, live_after, ctx) -> MInstr | None | m`` over every reachable instruction."""
    changed = False
    for fa in M.analyses(unit):
        fn, cfg = fa.fn, fa.cfg
        body = cfg.body
        kb = fa.bits
        lv = fa.live if need_live else None
        edits = {}
        for b in cfg.blocks:
            state = kb[b.index]
            if state is None:
                continue
            state = dict(state)
            ctx = {"defs": {}, "states": {}, "idx": b.idx, "live": lv, "delete": set(), "edits": edits}
            for i in b.idx:
                m = body[i]
                if m.reloc is None:
                    new = rewrite(m, state, lv.after(i) if lv else 0, ctx, body, i)
                    if new is not m:
                        edits[i] = new
                du = M.def_use(m.instr)
                if need_states:
                    ctx["states"][i] = dict(state)
                M.step(state, m, du)
                clob = du.clobbers & M.GPRS
                while clob:
                    low = clob & -clob
                    ctx["defs"][low.bit_length() - 1] = i
                    clob ^= low
            for j in ctx["delete"]:
                edits[j] = None
        changed |= M.apply_edits(fn, edits)
    return changed


# -- neg-add-sub ------------------------------------------------------------------------------------


def _neg_small(v: int | None) -> int | None:
    if v is None:
        return None
    k = (-v) & MASK32
    return k if 1 <= k <= MAX_ALU_IMM else None


def _neg_add_sub(m, state, live_after, ctx, body, i):
    ins = m.instr
    if ins.op not in (Op.ADD, Op.SUB) or ins.b is None:
        return m
    kb = _neg_small(M.operand_value(state, ins.b)) if ins.b.__class__ is Gpr else None
    flip = {Op.ADD: Op.SUB, Op.SUB: Op.ADD}[ins.op]
    if kb is not None:
        new = Instruction(flip, dest=ins.dest, a=ins.a, b=Imm(kb))
        if _legal(new):
            return replace(m, instr=new)
    if ins.op == Op.ADD and ins.a.__class__ is Gpr:
        ka = _neg_small(M.operand_value(state, ins.a))
        if ka is not None:
            new = Instruction(Op.SUB, dest=ins.dest, a=ins.b, b=Imm(ka))
            if _legal(new):
                return replace(m, instr=new)
    return m


@dataclass(frozen=True)
class NegAddSub(Pass):
    """add of a negative constant -> sub of a small immediate (and the reverse for compares)."""

    name: ClassVar[str] = "neg-add-sub"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "add/sub of a negative constant becomes sub/add of an 8-bit immediate"

    def run(self, unit) -> bool:
        return _walk(unit, _neg_add_sub)


# -- ld-mask ------------------------------------------------------------------------------------------


def _maybe_one(state, op) -> int:
    z, _ = M.operand_bits(state, op)
    return ~z & MASK32


def _ld_mask(m, state, live_after, ctx, body, i):
    ins = m.instr
    if ins.op == Op.AND:
        for keep, other in ((ins.b, ins.a), (ins.a, ins.b)):
            k = M.operand_value(state, keep)
            if k is not None and not (_maybe_one(state, other) & ~k) and other.__class__ is not Imm:
                new = Instruction(Op.MOV, dest=ins.dest, b=other)
                if _legal(new):
                    return replace(m, instr=new)
        return m
    if ins.op == Op.LD_FIELD and ins.clear and ins.amount == 0 and not live_after & (M.BIT_CC | M.BIT_PREV):
        bytemask = sum(0xFF << (8 * j) for j in range(4) if ins.mask >> j & 1)
        if not (_maybe_one(state, ins.b) & ~bytemask):
            new = Instruction(Op.MOV, dest=ins.dest, b=ins.b)
            if _legal(new):
                return replace(m, instr=new)
    return m


@dataclass(frozen=True)
class LdMask(Pass):
    """and-masks (and clearing ld_fields) that keep every bit a load can have produced become movs."""

    name: ClassVar[str] = "ld-mask"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "masks made redundant by what a load already zero-extends become movs"

    def run(self, unit) -> bool:
        return _walk(unit, _ld_mask, need_live=True)


# -- ld-shift -----------------------------------------------------------------------------------------


def _plain_shift(ins):
    if ins.op == Op.ALU_SHF and ins.alu == AluOp.MOV and not ins.indirect and ins.a is None:
        return ins.shift, ins.amount
    return None


def _ld_shift(m, state, live_after, ctx, body, i):
    ins = m.instr
    second = _plain_shift(ins)
    if second is None or second[1] == 0 or ins.b.__class__ is not Gpr:
        return m
    src_loc = M.gpr_loc(ins.b)
    j = ctx["defs"].get(src_loc)
    if j is None:
        return m
    if j in ctx["edits"]:
        return m                        # already rewritten (a chain of shifts)
    first_ins = body[j].instr
    first = _plain_shift(first_ins)
    if first is None or first[1] != second[1] or first_ins.b.__class__ is not Gpr:
        return m
    orig = first_ins.b
    orig_loc = M.gpr_loc(orig)
    in_place = False
    if ctx["defs"].get(orig_loc, -1) > j:
        return m                        # the original was overwritten since
    if ctx["defs"].get(orig_loc, -1) == j:
        # shifted in place (``shl ab6, b6`` ... ``shr ab6, b6``): the first shift can go, if its
        # result and flags serve only the second
        in_place = True
        first_bits = M.def_use(first_ins).clobbers
        if live_after_of(ctx, j) & first_bits & (M.BIT_CC | M.BIT_PREV):
            return m
        for t in ctx["idx"][ctx["idx"].index(j) + 1:ctx["idx"].index(i)]:
            du_t = M.def_use(body[t].instr)
            if (du_t.uses | du_t.clobbers) & first_bits & M.GPRS:
                return m
        left = first_bits & M.GPRS & ~M.def_use(ins).defs
        if live_after & left:
            return m
    k = second[1]
    z, _ = M.operand_bits(ctx["states"][j], orig)
    if first[0] == ShiftKind.SHL and second[0] == ShiftKind.SHR:
        need = (MASK32 << (32 - k)) & MASK32
    elif first[0] == ShiftKind.SHL and second[0] == ShiftKind.ASR:
        need = (MASK32 << (31 - k)) & MASK32
    elif first[0] == ShiftKind.SHR and second[0] == ShiftKind.SHL:
        need = (1 << k) - 1
    else:
        return m
    if z & need != need:
        return m
    new = Instruction(Op.MOV, dest=ins.dest, b=orig)
    if not _legal(new):
        return m
    if in_place:
        ctx["delete"].add(j)
    return replace(m, instr=new)


def live_after_of(ctx, j: int) -> int:
    return ctx["live"].after(j)


@dataclass(frozen=True)
class LdShift(Pass):
    """shl/shr pairs that give back the original value become a mov of it; byte assembly from one
    word (shifts, ors and byte masks of its bytes) becomes one ld_field."""

    name: ClassVar[str] = "ld-shift"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "shift pairs made redundant by known-zero bits become movs; byte assembly one ld_field"

    bytes: bool = True

    def run(self, unit) -> bool:
        changed = _walk(unit, _ld_shift, need_live=True, need_states=True)
        if self.bytes:
            changed |= byte_fields(unit)
        return changed


# -- byte fields ----------------------------------------------------------------------------------------
#
# A byte map says, for each byte of a register's value: 0, byte j of the value with id v (the
# value numbers' ids), or None (unknown).  A value nothing better is known about is the
# identity map of its own id.


def _const_of_vid(vid) -> int | None:
    return vid[1] if vid is not None and vid[0] == "k" else None


def _src_bytes(op, bm: dict, vn: dict, pos: int, loops: bool):
    if op is None:
        return None
    if op.__class__ is Imm:
        return tuple(0 if not (op.value >> (8 * i)) & 0xFF else None for i in range(4))
    loc = M.value_loc(op)
    if loc is None or loc >= M.LM_KEY0:
        return None
    got = bm.get(loc)
    if got is not None:
        return got
    vid = M.vn_of(vn, loc, pos, loops)
    k = _const_of_vid(vid)
    if k is not None:
        return tuple(0 if not (k >> (8 * i)) & 0xFF else None for i in range(4))
    return tuple((vid, i) for i in range(4))


def _or_byte(x, y):
    if x == 0:
        return y
    if y == 0 or x == y:
        return x
    return None


def _result_bytes(ins, bm: dict, vn: dict, pos: int, loops: bool, dest_loc: int):
    """The byte map of what ``ins`` writes into ``dest_loc`` (None: nothing known)."""
    op = ins.op
    if op == Op.LD_FIELD:
        src = _src_bytes(ins.b, bm, vn, pos, loops)
        if src is None or ins.amount % 8:
            return None
        r = ins.amount // 8
        old = None if ins.clear else _src_bytes(M.loc_gpr(dest_loc), bm, vn, pos, loops)
        out = []
        for i in range(4):
            if ins.mask >> i & 1:
                out.append(src[(i + r) % 4])
            else:
                out.append(0 if ins.clear else (old[i] if old is not None else None))
        return tuple(out)
    if op == Op.ALU_SHF and ins.alu == AluOp.MOV and not ins.indirect and ins.a is None:
        src = _src_bytes(ins.b, bm, vn, pos, loops)
        if src is None or ins.amount % 8:
            return None
        k = ins.amount // 8
        if ins.shift == ShiftKind.SHL:
            return tuple(src[i - k] if i >= k else 0 for i in range(4))
        if ins.shift == ShiftKind.SHR:
            return tuple(src[i + k] if i + k < 4 else 0 for i in range(4))
        if ins.shift == ShiftKind.ROR:
            return tuple(src[(i + k) % 4] for i in range(4))
        return None
    if op == Op.MOV:
        return _src_bytes(ins.b, bm, vn, pos, loops)
    if op == Op.OR:
        x, y = _src_bytes(ins.a, bm, vn, pos, loops), _src_bytes(ins.b, bm, vn, pos, loops)
        if x is None or y is None:
            return None
        return tuple(_or_byte(x[i], y[i]) for i in range(4))
    if op == Op.AND:
        for const, other in ((ins.b, ins.a), (ins.a, ins.b)):
            if const.__class__ is Imm:
                k = const.value
            else:
                loc = M.value_loc(const)
                k = _const_of_vid(vn.get(loc, (None,))[0]) if loc is not None else None
            if k is None or any(((k >> (8 * i)) & 0xFF) not in (0, 0xFF) for i in range(4)):
                continue
            src = _src_bytes(other, bm, vn, pos, loops)
            if src is None:
                return None
            return tuple(src[i] if (k >> (8 * i)) & 0xFF else 0 for i in range(4))
        return None
    return None


def _as_ld_field(ins, R, vn: dict):
    """One clearing ld_field giving byte map ``R`` from a location holding its source, else None."""
    if R is None or any(b is None for b in R) or all(b == 0 for b in R):
        return None
    vids = {b[0] for b in R if b != 0}
    if len(vids) != 1:
        return None
    vid = vids.pop()
    shifts = {(b[1] - i) % 4 for i, b in enumerate(R) if b != 0}
    if len(shifts) != 1:
        return None
    s = shifts.pop()
    mask = sum(1 << i for i, b in enumerate(R) if b != 0)
    holders = sorted(k for k, v in vn.items() if v[0] == vid and k < M.LM_KEY0)
    if not holders:
        return None
    # nothing to gain when the instruction already reads the source itself
    if any(M.value_loc(op) in holders for op in (ins.a, ins.b) if op is not None):
        return None
    for h in holders:
        new = Instruction(Op.LD_FIELD, dest=ins.dest, mask=mask, b=M.value_operand(h), amount=(8 * s) % 32,
                          clear=True)
        if _legal(new):
            return new
    return None


def byte_fields(unit) -> bool:
    """Rewrite instructions whose result is bytes of one value into one ld_field (see LdShift)."""
    changed = False
    for fa in M.analyses(unit):
        fn, cfg = fa.fn, fa.cfg
        body = cfg.body
        vns = fa.vn
        lv = fa.live
        loops = cfg.loops
        edits = {}
        for b in cfg.blocks:
            if vns[b.index] is None:
                continue
            vn = dict(vns[b.index])
            bm: dict = {}
            for i in b.idx:
                m = body[i]
                ins = m.instr
                du = M.def_use(ins)
                dests = M.gpr_dests(ins.dest) if ins.dest is not None else ()
                results = {}
                if m.reloc is None and dests and not du.effects:
                    for loc in dests:
                        results[loc] = _result_bytes(ins, bm, vn, i, loops, loc)
                    R = results[dests[0]]
                    if all(results[loc] == R for loc in dests) and \
                            not lv.after(i) & du.defs & (M.BIT_CC | M.BIT_PREV):
                        new = _as_ld_field(ins, R, vn)
                        if new is not None:
                            m = replace(m, instr=new)
                            edits[i] = m
                            du = M.def_use(new)
                clob = du.clobbers & M.GPRS
                while clob:
                    low = clob & -clob
                    bm.pop(low.bit_length() - 1, None)
                    clob ^= low
                for loc, R in results.items():
                    if R is not None and any(x is not None for x in R):
                        bm[loc] = R
                M.vn_step(vn, m, i, du, loops)
        changed |= M.apply_edits(fn, edits)
    return changed


# -- reg-init -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegInit(Pass):
    """Drop copies, in the entry function, between registers nothing has written yet."""

    name: ClassVar[str] = "reg-init"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "skip the entry copies of the context pointer (copies of never-written registers)"

    def run(self, unit) -> bool:
        if not unit.functions:
            return False
        fa = M.analyses(unit)[0]
        fn, cfg = fa.fn, fa.cfg
        body = cfg.body
        blocks = cfg.blocks
        written_in: list = [None] * len(blocks)
        written_out: list = [None] * len(blocks)
        changed = True
        while changed:                   # forward: registers possibly written on some path
            changed = False
            for bi in cfg.rpo:
                b = blocks[bi]
                w = M.ALL if b.entry and bi != 0 else 0
                for p in b.preds:
                    if written_out[p] is not None:
                        w |= written_out[p]
                if written_in[bi] == w and written_out[bi] is not None:
                    continue
                written_in[bi] = w
                for i in b.idx:
                    w |= M.def_use(body[i].instr).clobbers
                if b.call is not None:
                    w |= b.call.clobbers
                written_out[bi] = w
                changed = True
        lv = fa.live
        edits = {}
        for bi in cfg.rpo:
            b = blocks[bi]
            w = written_in[bi]
            for i in b.idx:
                m = body[i]
                ins = m.instr
                du = M.def_use(ins)
                if m.reloc is None and ins.op == Op.MOV and ins.b.__class__ is Gpr and \
                        ins.dest.__class__ in (Gpr, GprBoth) and not (du.uses & w) and \
                        not (du.defs & M.GPRS & w):
                    flags = du.defs & (M.BIT_CC | M.BIT_PREV)
                    if not flags & lv.after(i):
                        edits[i] = None
                        continue
                w |= du.clobbers
        return M.apply_edits(fn, edits)


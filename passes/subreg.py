"""``subreg``: 64-bit eBPF operations done in 32 bits where the analysis proves the high word known or unread.

The NFP is a 32-bit machine and eBPF registers are word pairs (Rn = GPR 2n low, 2n+1 high).
Without this pass every ALU64 operation and every 64-bit compare works on both words: packet
pointers carry an ``addc`` on every add, bounds checks are ``sub``/``subc``, a ``mov64`` is two
moves, a 64-bit equality is ``xor``+``or``.  But the NIC's packet (CTM) and stack (LM) addresses
are 32-bit: their high word is 0, and most scalars a packet parser handles are < 2**32.

``xdp_drop_tcp_ports``, pc 3..5 (``if (void *)(eth + 1) > data_end``)::

    r3 = r1                 mov ab6, b2 / mov ab7, b3                           (-O1)
    r3 += 14                add ab6, a6, 14 / addc ab7, a7, 0
    if r3 > r2 goto L45     sub --, a4, b6 / subc --, a5, b7 / br.lo L45
                                                                              (subreg)
    r3 = r1                 mov ab6, b2
    r3 += 14                add ab6, a6, 14
    if r3 > r2 goto L45     sub --, a6, b4 / br.hi L45

What :meth:`Subreg.plan` proves, per instruction, from the analysis facts before it
(``InsnFacts.regs``: pointer kinds, offsets, tnum/ranges), and what the lowering
(``nfpjit/jit/lower_alu.py``, ``lower_jmp.py``) then emits:

* **ALU64 in 32 bits** (:class:`AluNarrow`).  add, sub, and, or, xor, mov, neg, mul and
  lsh by a constant (or a register proven < 32) have a low word that depends only on the
  operands' low words; rsh/arsh too when the shifted value's high word is proven 0.  The high
  word of the result is then

  - ``hi=c``: a known constant — scalars: the analysis' result has known high bits
    (``dst_hi32_zero``, or the tnum of the joined operands' result); packet (``data``,
    ``data_meta``, ``data_end``) and stack pointers: 0, when the offset range keeps the address
    inside 0..2**31 (the NIC's addresses are 32-bit: CTM ``0x1000..0x3000``, LM from 64 up —
    docs/jit.md's memory table);
  - ``keep``: equal to the destination's old high word — a scalar whose old high word is the
    same known constant, a packet/stack pointer moved within range, or a **map value**
    pointer (a 40-bit EMEM address whose high word is bits 39..32: constant after the lookup)
    whose old and new offsets both lie inside the value's 8-byte-rounded slot, so the low-word
    add cannot carry (a table is < 4 GiB: ``lower_mem``'s EMEM addressing relies on the same);
  - unknown: then the operation is done in 32 bits only where the high word is dead.

  The lowering emits the 32-bit operation, then for the high word nothing (dead, or ``keep``),
  one ``immed`` of ``c``, or (unknown and live) falls back to the 64-bit code.
* **64-bit compares in 32 bits** (:attr:`SubregPlan.jmp`) when both high words are known and
  equal (scalars with known high bits, a sign-extended immediate, in-range packet/stack
  pointers — ``pkt + 14 > data_end`` is one ``sub`` and a ``br``): the unsigned condition on the
  low words; a signed one becomes unsigned too, since equal high words leave the order to the
  low words.  ``jset`` is 32-bit when either high word is known 0.
* **NULL checks** (:attr:`SubregPlan.null_bit`) of a lookup result: one ``br_bclr``/``br_bset`` on
  a bit of the high word (the value's table bits 39..32, never 0; NULL is 0), instead of ORing
  the words; the low word is not read.
* **Liveness per half, refined** (:attr:`SubregPlan.live_out`).  The analysis' liveness
  (``nfpjit.analysis.liveness``) assumes every ALU64 op and 64-bit compare reads both halves
  and every memory access reads its pointer's high word.  This pass solves the same backward
  problem with what the code actually reads: a narrowed op reads low words only; an op whose
  high word is unknown reads the high words only when its own high word is live; ``keep``
  passes the high word through (neither read nor written); a packet or stack access reads only
  its pointer's low word (CTM/LM addresses); the firmware map routines read the A-bank low
  words of R1..R3 and both words of R4 (``nfpjit.isa.sim.firmware``'s ABI), adjust_head/tail
  the low word of R2.  The refined sets are never larger than the analysis' (removing reads,
  and passing through only where the analysis already reads the old high word), so code that
  keeps halves live by the analysis' liveness (loads, calls) stays right.  The lowering writes
  a 64-bit result's high word (and, with ``zext-elim``, a 32-bit result's zero extension) only
  where the refined liveness says it is read: ``mov64 r3, r1`` of a packet pointer is one
  ``mov``, ``r2 = r10; r2 += -8`` for a helper key is ``immed`` + ``sub``.

Why it is exact: at every point, every half the refined liveness calls live holds the
value the -O0 code would hold there (induction over the instructions: a live high word is
either written with its proven value or passed through from a live, hence correct, old one),
and the low word of every lowered op is computed from correct low words.

Folded in (not separate switches: they are the same proof and the same liveness): 64-bit
equality against a sign-extended immediate in 32 bits when the register's high word is known;
``jgt``/``jge`` on packet pointers as one ``sub`` + ``br``; constants and ``mov64`` with a
known-zero high word written as one ``immed``/``mov`` (nothing for the high word when it is
dead); ``rsh``/``arsh`` by 32..63 computed from the high word alone (``r3 >>= 56`` is one
``alu_shf``, and the low word of the ``mov64`` before it need not be written); an ALU/ALU64 result
whose operands the analysis knows exactly is a constant (one ``immed``; division and modulo
too, which the analysis itself leaves unknown); an ALU result
no half of which is read is not computed at all (a context pointer copied to r6 and only used
for context loads, which read CSRs); a callee's exit returns only the halves of R0 its callers
read.  Other lowering modules can ask :func:`nfpjit.jit.lower_alu.hi32_live_out` (this
liveness when the pass is on) before writing a high word, e.g. the zero extension of a narrow
load.

Not done (yet): high words of values that go through memory (a spilled pointer's high word is
still stored and reloaded), 64-bit compares where only one high word is known, helper
arguments of helpers outside the firmware table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from nfpjit.analysis import HI, LO, RegKind, use_def
from nfpjit.analysis.liveness import CALLER_SAVED, bit, both, solve_function
from nfpjit.bits import MASK32, MASK64, s64, u64
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AluOp as EAlu, Helper, InsnClass, JmpOp, Mode, PseudoSrc, Size, Source
from nfpjit.passes.manager import Pass

#: pointer kinds whose NIC address is 32-bit (high word 0): CTM packet addresses, LM stack addresses
_ADDR32 = (RegKind.PACKET, RegKind.PACKET_META, RegKind.STACK)
#: the highest offset from a 32-bit pointer's base the proofs accept (addresses stay below 2**32)
_MAX_OFF = 1 << 31
#: ops whose 64-bit result's low word is a function of the operands' low words
_LOW_OPS = (EAlu.ADD, EAlu.SUB, EAlu.AND, EAlu.OR, EAlu.XOR, EAlu.MOV, EAlu.NEG, EAlu.MUL, EAlu.LSH)
_SHR_OPS = (EAlu.RSH, EAlu.ARSH)
#: helpers whose firmware routine reads only some words of its arguments (nfpjit.isa.sim.firmware ABI):
#: register -> "lo" (the A-bank low word), "ptr" (low word for a stack/packet key or value, both for a
#: map value, which lower_call copies from EMEM) or absent (not read)
_HELPER_READS = {
    Helper.map_lookup_elem: {1: "lo", 2: "ptr"},
    Helper.map_delete_elem: {1: "lo", 2: "ptr"},
    Helper.map_update_elem: {1: "lo", 2: "ptr", 3: "ptr", 4: "both"},
    Helper.get_prandom_u32: {},
    Helper.xdp_adjust_head: {2: "lo"},
    Helper.xdp_adjust_tail: {2: "lo"},
}


@dataclass(frozen=True)
class AluNarrow:
    """An ALU64 instruction done on the low words; the result's high word is ``hi`` (known), the old one (``keep``) or unknown."""

    hi: int | None = None
    keep: bool = False
    from_hi: bool = False        # the low word comes from the destination's high word (rsh/arsh by >= 32)
    lo: int | None = None        # the low word is this constant (both operands known: folded)


@dataclass
class SubregPlan:
    """What :meth:`Subreg.plan` found: narrowed ALU64 ops and compares by pc, and the refined liveness."""

    alu: dict[int, AluNarrow] = field(default_factory=dict)
    jmp: set[int] = field(default_factory=set)
    #: NULL checks of a lookup result: pc -> a bit of the high word that every non-NULL value has set
    null_bit: dict[int, int] = field(default_factory=dict)
    live_in: dict[int, int] = field(default_factory=dict)
    live_out: dict[int, int] = field(default_factory=dict)

    def hi_live_out(self, pc: int, reg: int) -> bool:
        """May the high word of ``reg`` written at ``pc`` be read later (by the code this plan makes)?"""
        return bool(self.live_out.get(pc, 0) & bit(reg, HI))

    def lo_live_out(self, pc: int, reg: int) -> bool:
        return bool(self.live_out.get(pc, 0) & bit(reg, LO))

    def dead(self, pc: int, reg: int) -> bool:
        """No half of ``reg`` written at ``pc`` is read later: an ALU result that need not be computed."""
        return not self.live_out.get(pc, 0) & both(reg)

    def narrow_alu(self, pc: int, dst: int) -> AluNarrow | None:
        """The ALU64 instruction at ``pc`` (destination ``dst``) as a 32-bit op, when the lowering should do it so.

        None: lower it as a 64-bit op (not provable, or its unknown high word is read later).
        """
        dec = self.alu.get(pc)
        if dec is None or (dec.hi is None and not dec.keep and self.hi_live_out(pc, dst)):
            return None
        return dec


# -- what is known about a register's high word ------------------------------------------------------


def scalar_hi(var) -> int | None:
    """The high word of a scalar when the analysis knows it (known bits, or a range within one high word)."""
    f = var.full
    if f.tnum.mask >> 32 == 0:
        return f.tnum.value >> 32
    if f.umin >> 32 == f.umax >> 32:
        return f.umin >> 32
    return None


@dataclass(frozen=True)
class _Ctx:
    """Per-program constants the proofs use."""

    stack_low: int          # the lowest offset from any frame's R10 that is still an address >= 0


def _ptr_range(st) -> tuple[int, int] | None:
    """Signed offset range of a pointer from its base (fixed + variable part)."""
    v = st.var.full
    if v.smin > v.smax:
        return None
    return st.off + v.smin, st.off + v.smax


def _addr32_ok(kind, lo: int, hi: int, pc_ctx: _Ctx) -> bool:
    """Does a ``kind`` pointer at offsets lo..hi from its base stay a 32-bit address (high word 0)?"""
    if kind == RegKind.STACK:
        return lo >= pc_ctx.stack_low and hi <= _MAX_OFF
    return lo >= 0 and hi <= _MAX_OFF       # packet: data (>= CTM base, or 0 for an empty raw block) + offset


def reg_hi(st, pc_ctx: _Ctx) -> int | None:
    """The known high word of the NFP value of a register in state ``st`` (None: unknown)."""
    kind = st.kind
    if kind == RegKind.SCALAR:
        return scalar_hi(st.var)
    if kind == RegKind.PACKET_END:
        return 0 if st.off == 0 and st.var.is_const and st.var.value == 0 else None
    if kind in _ADDR32:
        r = _ptr_range(st)
        return 0 if r is not None and _addr32_ok(kind, r[0], r[1], pc_ctx) else None
    return None


def _operand(insn: Insn, facts):
    """("imm", value) or ("reg", RegState) for the second operand of an ALU/JMP instruction."""
    if insn.source == Source.K:
        return "imm", u64(insn.imm)
    return "reg", facts.regs[insn.src]


def _imm_scalar(v: int):
    from nfpjit.analysis import Scalar

    return Scalar.const(v)


# -- ALU64 ------------------------------------------------------------------------------------------


def _const_result(insn: Insn, facts) -> int | None:
    """The result of an ALU/ALU64 instruction whose operands the analysis knows exactly (else None)."""
    op = insn.alu_op
    if op == EAlu.END or (op == EAlu.MOV and insn.off) or not facts.regs:
        return None
    if insn.source == Source.X and 10 in (insn.src, insn.dst):
        return None
    wide = insn.cls == InsnClass.ALU64
    d = facts.regs[insn.dst]
    if op == EAlu.MOV:
        dv = None
    elif d.kind != RegKind.SCALAR or not d.var.is_const:
        return None
    else:
        dv = d.var
    if insn.source == Source.K:
        sv = _imm_scalar(u64(insn.imm) if wide else insn.imm & MASK32)
    else:
        s = facts.regs[insn.src]
        if s.kind != RegKind.SCALAR or not s.var.is_const:
            return None
        sv = s.var
    try:
        if op == EAlu.MOV:
            res = sv.alu(op, sv, wide=wide) if wide else _imm_scalar(sv.value & MASK32)
        elif op == EAlu.NEG:
            res = dv.neg(wide=wide)
        else:
            res = dv.alu(op, sv, wide=wide, signed=insn.off == 1)
    except Exception:  # noqa: BLE001 - no fold, no proof
        return None
    if res is None or not res.is_const:
        return None
    v = res.value
    return v if wide else v & MASK32


def _alu_plan(program, insn: Insn, facts, pc_ctx: _Ctx) -> AluNarrow | None:
    op = insn.alu_op
    if insn.cls in (InsnClass.ALU, InsnClass.ALU64) and facts.regs:
        v = _const_result(insn, facts)
        if v is not None:
            old_hi = reg_hi(facts.regs[insn.dst], pc_ctx) if op != EAlu.MOV else None
            return AluNarrow(hi=v >> 32, keep=insn.cls == InsnClass.ALU64 and old_hi == v >> 32, lo=v & MASK32)
    if insn.cls != InsnClass.ALU64 or op in (EAlu.END, EAlu.DIV, EAlu.MOD):
        return None
    if op == EAlu.MOV and insn.off:
        return None                                           # movsx: its own code (high word = sign)
    if not facts.regs:
        return None
    kind_src, src = _operand(insn, facts)
    if insn.source == Source.X and insn.src == 10 and op == EAlu.MOV:
        return AluNarrow(hi=0)                                # the frame pointer: an LM address
    if insn.source == Source.X and 10 in (insn.src, insn.dst):
        return None
    d = facts.regs[insn.dst]
    shift_ok = True
    if op in (EAlu.LSH, EAlu.RSH, EAlu.ARSH) and insn.source == Source.X:
        r = facts.src_range
        shift_ok = r is not None and r[1] < 32
    if op == EAlu.LSH and not shift_ok:
        return None
    if op in _SHR_OPS and insn.source == Source.K and insn.imm & 63 >= 32:
        # by 32 or more: the low word is the old high word shifted, the high word 0 (rsh) or its sign (arsh)
        if op == EAlu.RSH:
            return AluNarrow(hi=0, keep=reg_hi(d, pc_ctx) == 0, from_hi=True)
        c = scalar_hi(d.var) if d.kind == RegKind.SCALAR else None
        return AluNarrow(hi=None if c is None else (MASK32 if c >> 31 else 0), from_hi=True)
    if op in _SHR_OPS:
        # the low word of a right shift needs the high word: narrow only when it is known 0
        if not shift_ok or d.kind != RegKind.SCALAR or scalar_hi(d.var) != 0:
            return None
    if op not in _LOW_OPS and op not in _SHR_OPS:
        return None
    if op == EAlu.MOV:
        if kind_src == "imm":
            return AluNarrow(hi=src >> 32)
        return AluNarrow(hi=reg_hi(src, pc_ctx))
    old_hi = reg_hi(d, pc_ctx)
    s_scalar = kind_src == "imm" or src.kind == RegKind.SCALAR
    if d.kind == RegKind.SCALAR and s_scalar:
        hi = _scalar_result_hi(insn, facts, d, src if kind_src == "reg" else None, src if kind_src == "imm" else None)
        return AluNarrow(hi=hi, keep=hi is not None and old_hi == hi)
    if op in (EAlu.ADD, EAlu.SUB) and s_scalar and d.kind in _ADDR32 + (RegKind.MAP_VALUE,):
        sr = (s64(src), s64(src)) if kind_src == "imm" else (src.var.full.smin, src.var.full.smax)
        dr = _ptr_range(d)
        if dr is None:
            return AluNarrow()
        new = (dr[0] + sr[0], dr[1] + sr[1]) if op == EAlu.ADD else (dr[0] - sr[1], dr[1] - sr[0])
        if d.kind == RegKind.MAP_VALUE:
            slot = (max(program.maps[d.map].value_size, 1) + 7) & ~7 if d.map is not None else 0
            inside = all(0 <= lo and hi <= slot for lo, hi in (dr, new))
            return AluNarrow(keep=inside)
        if _addr32_ok(d.kind, new[0], new[1], pc_ctx):
            return AluNarrow(hi=0, keep=old_hi == 0)
        return AluNarrow()
    if (op == EAlu.SUB and kind_src == "reg" and d.kind == src.kind == RegKind.PACKET and facts.dst_hi32_zero
            and old_hi == 0 and reg_hi(src, pc_ctx) == 0):
        return AluNarrow(hi=0, keep=True)                     # pkt - pkt: a distance the analysis bounds
    return AluNarrow()                                        # low word exact; high word unknown


def _scalar_result_hi(insn: Insn, facts, d, s_reg, s_imm) -> int | None:
    if facts.dst_hi32_zero:
        return 0
    s = s_reg.var if s_reg is not None else _imm_scalar(s_imm)
    try:
        if insn.alu_op == EAlu.NEG:
            res = d.var.neg(wide=True)
        else:
            res = d.var.alu(insn.alu_op, s, wide=True)
    except Exception:  # noqa: BLE001 - a domain corner the analysis itself never hits: no proof
        return None
    return scalar_hi(res) if res is not None else None


# -- compares ---------------------------------------------------------------------------------------


def _jmp_plan(insn: Insn, facts, pc_ctx: _Ctx) -> bool:
    if insn.cls != InsnClass.JMP or insn.jmp_op in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT) or not facts.regs:
        return False
    if insn.dst == 10 or (insn.source == Source.X and insn.src == 10):
        return False
    dh = reg_hi(facts.regs[insn.dst], pc_ctx)
    kind_src, src = _operand(insn, facts)
    sh = src >> 32 if kind_src == "imm" else reg_hi(src, pc_ctx)
    if insn.jmp_op == JmpOp.JSET:
        return dh == 0 or sh == 0
    return dh is not None and dh == sh


def _null_check_bit(insn: Insn, facts) -> int | None:
    """``if rX ==/!= 0`` on a map lookup result: a bit of the high word set in every non-NULL value.

    A value pointer is a 40-bit EMEM address whose high word is its table's bits 39..32
    (``lower_mem.map_table_hi``: never 0); NULL is 0 in both words.  So one ``br_bclr``/``br_bset``
    on such a bit is the whole check (a value's low word may well be 0).
    """
    if (insn.cls != InsnClass.JMP or insn.jmp_op not in (JmpOp.JEQ, JmpOp.JNE) or insn.source != Source.K
            or insn.imm != 0 or not facts.regs or insn.dst == 10):
        return None
    st = facts.regs[insn.dst]
    if st.kind != RegKind.MAP_VALUE_OR_NULL or st.map is None or st.off != 0:
        return None
    from nfpjit.jit.lower_mem import map_table_hi  # noqa: PLC0415 - the lowering's EMEM table layout

    hi = map_table_hi(st.map)
    return (hi & -hi).bit_length() - 1 if hi else None


# -- refined liveness ------------------------------------------------------------------------------


def _mem_uses(insn: Insn, facts) -> int | None:
    """Uses of a load/store whose pointer is a 32-bit address: its low word only (None: as the analysis says).

    A context load reads no register: its fields are CSRs (``lower_mem``'s ``_load_ctx``).
    """
    mem = facts.mem if facts is not None else None
    if mem is not None and mem.kind == RegKind.CTX and insn.cls == InsnClass.LDX:
        return 0
    if mem is None or mem.kind not in _ADDR32:
        return None
    cls = insn.cls
    if cls == InsnClass.LDX:
        return bit(insn.src, LO)
    if cls == InsnClass.ST and insn.mode == Mode.MEM:
        return bit(insn.dst, LO)
    if cls == InsnClass.STX and insn.mode == Mode.MEM:
        val = both(insn.src) if insn.size == Size.DW else bit(insn.src, LO)
        return bit(insn.dst, LO) | val
    return None


def _helper_uses(insn: Insn, facts) -> int | None:
    try:
        reads = _HELPER_READS.get(Helper(insn.imm))
    except ValueError:
        return None
    if reads is None or facts is None or not facts.regs:
        return None
    use = 0
    for reg, how in reads.items():
        if how == "lo" or (how == "ptr" and facts.regs[reg].kind in (RegKind.STACK, RegKind.PACKET)):
            use |= bit(reg, LO)
        else:
            use |= both(reg)
    return use


class _Transfer:
    """live_in = f(live_out) for one instruction, as the lowering with this plan reads and writes halves.

    ``cond``: (halves, uses) pairs: ``uses`` are read only when one of ``halves`` is live out (the
    lowering computes a result only where it is read).  Monotone, so the solver finds the least
    fixed point.
    """

    __slots__ = ("use", "define", "kill", "cond")

    def __init__(self, use: int, define: int, kill: int = 0, cond: tuple = ()):
        self.use, self.define, self.kill, self.cond = use, define, kill, cond

    def __call__(self, out: int) -> int:
        use = self.use
        for halves, extra in self.cond:
            if out & halves:
                use |= extra
        return use | (out & ~(self.define | self.kill))


def _transfer(program, pc: int, insn: Insn, facts, plan: SubregPlan, *, callee_args, main_exit: bool,
              ret_use: int | None) -> _Transfer:
    base = use_def(insn, callee_args=callee_args, main_exit=main_exit)
    reachable = facts is not None and facts.reachable
    if not reachable:
        return _Transfer(base.use, base.define, base.kill)
    if insn.is_exit and ret_use is not None:
        return _Transfer(ret_use, 0)                # a callee returns what its callers read of R0
    dec = plan.alu.get(pc)
    if dec is not None:
        d = insn.dst
        if dec.lo is not None:
            use = 0
        elif dec.from_hi:
            use = bit(d, HI)
        else:
            use = 0
            if insn.alu_op != EAlu.MOV:
                use |= bit(d, LO)
            if insn.source == Source.X and insn.src != 10 and insn.alu_op != EAlu.NEG:
                use |= bit(insn.src, LO)
        low = (bit(d, LO), use)                     # the low word is computed only when it is read
        if dec.keep:
            return _Transfer(0, bit(d, LO), cond=(low,))
        if dec.hi is not None:
            return _Transfer(0, both(d), cond=(low,))
        return _Transfer(0, both(d), cond=(low, (bit(d, HI), base.use)))
    if insn.cls in (InsnClass.ALU, InsnClass.ALU64):
        return _Transfer(0, base.define, cond=((both(insn.dst), base.use),))   # not computed when unread
    if pc in plan.jmp:
        use = bit(insn.dst, LO) | (bit(insn.src, LO) if insn.source == Source.X else 0)
        return _Transfer(use, 0)
    if pc in plan.null_bit:
        return _Transfer(bit(insn.dst, HI), 0)
    if insn.cls in (InsnClass.LDX, InsnClass.ST, InsnClass.STX):
        use = _mem_uses(insn, facts)
        if use is not None:
            return _Transfer(use, base.define, base.kill)
    if insn.is_helper_call:
        use = _helper_uses(insn, facts)
        if use is not None:
            return _Transfer(use, base.define, base.kill)
    return _Transfer(base.use, base.define, base.kill)


def _solve(program, analysis, plan: SubregPlan) -> None:
    """Per function, backwards; callee argument reads feed callers and callers' R0 reads feed callees' exits."""
    cfg = analysis.cfg
    full_r0 = getattr(analysis.liveness, "full_r0", False)
    entry_args = {fn.start: CALLER_SAVED for fn in cfg.functions}
    ret_use = {fn.start: 0 for fn in cfg.functions}
    # a callback (bpf_loop: an ld_imm64 func loads its address) returns R0 to the helper, which reads all of it
    for pc in program.pcs:
        insn = program.at(pc)
        if insn.is_ld_imm64 and insn.src == PseudoSrc.FUNC and pc + 1 + insn.imm in ret_use:
            ret_use[pc + 1 + insn.imm] = both(0)
    calls = [(pc, program.at(pc).jump_target(pc)) for pc in program.pcs if program.at(pc).is_local_call]
    for _ in range(4 * len(cfg.functions) + 4):
        changed = False
        for fn in cfg.functions:
            _solve_function(program, analysis, plan, fn, entry_args, ret_use[fn.start] if fn.start else None,
                            main_exit=fn.start == 0 and not full_r0)
            args = plan.live_in.get(fn.start, 0) & CALLER_SAVED
            if fn.start != 0 and entry_args.get(fn.start) != args:
                entry_args[fn.start] = args
                changed = True
        for pc, callee in calls:
            r0 = plan.live_out.get(pc, 0) & both(0)
            if callee in ret_use and r0 & ~ret_use[callee]:
                ret_use[callee] |= r0
                changed = True
        if not changed:
            return
    # no fixed point in the budget (cannot happen for the call graphs eBPF allows): the analysis' view
    plan.live_in.update(analysis.liveness.live_in)
    plan.live_out.update(analysis.liveness.live_out)


def _solve_function(program, analysis, plan: SubregPlan, fn, entry_args, ret_use: int | None, *,
                    main_exit: bool) -> None:
    pcs = [pc for pc in program.pcs if fn.start <= pc < fn.end]
    tf = {}
    for pc in pcs:
        insn = program.at(pc)
        callee = insn.jump_target(pc) if insn.is_local_call else None
        tf[pc] = _transfer(program, pc, insn, analysis.facts.get(pc), plan,
                           callee_args=entry_args.get(callee) if callee is not None else None, main_exit=main_exit,
                           ret_use=ret_use)
    live_in, live_out = solve_function(program, fn, tf)
    plan.live_in.update(live_in)
    plan.live_out.update(live_out)


def _stack_low(program, analysis) -> int:
    """Minus the smallest R10 over all frames: offsets from any R10 at or above it are LM addresses >= 0."""
    try:
        from nfpjit.jit.lower_mem import stack_layout  # noqa: PLC0415 - the lowering's frame layout

        frames = stack_layout(program, analysis).frames.values()
        return -min(f.frame_pointer for f in frames)
    except Exception:  # noqa: BLE001 - no layout (no CFG): only offsets >= 0 are proven
        return 0


def make_plan(program, analysis) -> SubregPlan | None:
    """The proofs and the refined liveness; None without an analysis (CFG, liveness, facts): nothing is proven."""
    if analysis is None or getattr(analysis, "cfg", None) is None or getattr(analysis, "liveness", None) is None:
        return None
    plan = SubregPlan()
    pc_ctx = _Ctx(_stack_low(program, analysis))
    for pc, insn in program.slots():
        facts = analysis.facts.get(pc)
        if facts is None or not facts.reachable:
            continue
        if insn.cls in (InsnClass.ALU64, InsnClass.ALU):
            dec = _alu_plan(program, insn, facts, pc_ctx)
            if dec is not None:
                plan.alu[pc] = dec
        elif insn.cls == InsnClass.JMP and _jmp_plan(insn, facts, pc_ctx):
            plan.jmp.add(pc)
        elif insn.cls == InsnClass.JMP:
            b = _null_check_bit(insn, facts)
            if b is not None:
                plan.null_bit[pc] = b
    _solve(program, analysis, plan)
    return plan


@dataclass(frozen=True)
class Subreg(Pass):
    """Switch for the sub-register lowering; :meth:`plan` holds the proofs (see the module docstring)."""

    name: ClassVar[str] = "subreg"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "64-bit ops and compares in 32 bits where the high word is known or never read"

    def plan(self, program, analysis) -> SubregPlan | None:
        return make_plan(program, analysis)


__all__ = ["Subreg", "SubregPlan", "AluNarrow", "make_plan", "reg_hi", "scalar_hi", "MASK32", "MASK64"]

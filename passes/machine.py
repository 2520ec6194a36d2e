"""Dataflow over the machine IR: def/use of every NFP-32 operand, a CFG, liveness, known bits.

Everything here is *derived from the ISA table* (``isa/table.py``: an entry's operand kinds,
``sets_cc``/``reads_cc``/``sets_prev``/``reads_prev``, the transfer-register side and count of
commands) and the operand kinds of ``isa/operands.py``; the few facts the table has no field for
are spelled out next to the rule that uses them (partial writes, the multiplier, CSRs, the
firmware ABI of ``isa/sim/firmware.py``).

Locations are bit positions, so sets of them are Python ints (``1 << loc``)::

    a0..a31   0..31         $in0..31   64..95        CC    160   LM pointer 0..3   163..166
    b0..b31   32..63        $out0..31  96..127       prev  161   LM (contents)     167
                            n0..31     128..159      mul   162   MEM (CTM, EMEM, IMEM, CLS) 168
                                                                 CSR (pkt_addr, pkt_len, tx_queue, rng) 169

An instruction's :class:`DefUse` has ``uses`` (read), ``defs`` (certainly overwritten: kills),
``clobbers`` (may be written, ⊇ defs) and ``effects`` (:class:`Effect` bits: what makes it more
than a register computation).  A firmware call (``br`` with a ROUTINE_ADDR relocation) is a
pseudo-instruction at the end of its block's defer slots (:func:`routine_def_use`): it reads the
argument registers of its routine, writes R0 (a0/b0/a1/b1), clobbers R1..R5 and the machine state
the ABI does not promise, and continues at the label its ``load_addr a30`` names.  BPF-to-BPF
calls (a ``br`` to a label of another function) and ``rtn`` are conservative: everything is
live there, and a label a ``load_addr`` names (a return point) is entered with nothing known.

:func:`build_cfg` splits an :class:`~nfpjit.jit.mir.MFunction` into :class:`Block`\\ s; :func:`liveness`
is backward liveness per location; :func:`known_bits` forward propagation of known zero/one bits
per GPR (constants are the fully known values) plus the condition codes and ``prev`` when known.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntFlag

from nfpjit.bits import MASK32
from nfpjit.isa.image import RelocKind
from nfpjit.isa.operands import GprBoth, Gpr, Imm, LMem, NN, NoDest, Xfer, XferIndex, XferSide, Bank
from nfpjit.isa.sim.firmware import (
    RESULT_HI,
    RESULT_LO,
    RETURN_ADDRESS_REG,
    ROUTINE_ABI,
    ROUTINE_ADDRESSES,
    Routine,
)
from nfpjit.isa.sim.semantics import HANDLERS
from nfpjit.jit.mir import MInstr
from nfpjit.jit.regs import SCRATCH_GPRS
from nfpjit.isa.table import BY_OP, AluOp, Cond, Csr, Format, Instruction, Op, ShiftKind, Width, atomic_out_words

#: ops that may change the pc (and have defer slots)
BRANCH_OPS = frozenset(op for op, e in BY_OP.items() if e.is_branch)

# -- locations -------------------------------------------------------------------------------

A0, B0, XIN0, XOUT0, NN0 = 0, 32, 64, 96, 128
CC, PREV, MUL = 160, 161, 162
LMP0 = 163
LM, MEM, CSR = 167, 168, 169
NLOCS = 170

GPR_A = (1 << 32) - 1
GPR_B = GPR_A << B0
GPRS = GPR_A | GPR_B
XIN_ALL = GPR_A << XIN0
XOUT_ALL = GPR_A << XOUT0
ALL = (1 << NLOCS) - 1
#: the lowering's scratch GPRs (both banks): valid only within one eBPF instruction's code, so never
#: live into a BPF-to-BPF callee or back to its caller
SCRATCH = sum((1 << n) | (1 << (B0 + n)) for n in SCRATCH_GPRS)
BIT_CC, BIT_PREV, BIT_MUL, BIT_LM, BIT_MEM, BIT_CSR = (1 << CC, 1 << PREV, 1 << MUL, 1 << LM, 1 << MEM,
                                                      1 << CSR)


def lmp(pointer: int) -> int:
    """Location of LM index pointer ``pointer``."""
    return LMP0 + pointer


def gpr_loc(reg: Gpr) -> int:
    return (A0 if reg.bank == Bank.A else B0) + reg.index


def loc_gpr(loc: int) -> Gpr:
    return Gpr(Bank.A, loc) if loc < B0 else Gpr(Bank.B, loc - B0)


def both(n: int) -> int:
    """Bit set of a<n> and b<n>."""
    return (1 << n) | (1 << (B0 + n))


def loc_name(loc: int) -> str:
    if loc < B0:
        return f"a{loc}"
    if loc < XIN0:
        return f"b{loc - B0}"
    if loc < XOUT0:
        return f"$in{loc - XIN0}"
    if loc < NN0:
        return f"$out{loc - XOUT0}"
    if loc < CC:
        return f"n{loc - NN0}"
    if LMP0 <= loc < LM:
        return f"lm_ptr{loc - LMP0}"
    return {CC: "cc", PREV: "prev", MUL: "mul", LM: "lm", MEM: "mem", CSR: "csr"}[loc]


def locs_text(mask: int) -> str:
    """``"a2 b2 cc"``: the locations of a bit set (for messages and tests)."""
    out = []
    loc = 0
    while mask:
        if mask & 1:
            out.append(loc_name(loc))
        mask >>= 1
        loc += 1
    return " ".join(out)


class Effect(IntFlag):
    """What an instruction does besides computing registers: such instructions are never deleted."""

    NONE = 0
    MEMORY = 1        # a memory command (may fault; order among commands matters)
    LM = 2            # writes local memory through an index pointer
    LM_READ = 256     # reads local memory through an index pointer (deletable when its result is dead)
    CSR_WRITE = 4
    HALT = 8
    BRANCH = 16
    CALL = 32         # firmware routine or BPF-to-BPF call
    WAIT = 64         # ctx_wait
    STATE = 128       # reads a CSR whose value changes on its own (pseudo-random, timestamp)


@dataclass(frozen=True, slots=True)
class DefUse:
    uses: int = 0
    defs: int = 0
    clobbers: int = 0
    effects: int = 0                  # Effect bits, as a plain int (hot paths test them)


# -- def/use of one instruction ---------------------------------------------------------------

#: CSRs whose reads see state other instructions change (others are read-only constants of the run)
_CSR_STATE = {Csr.PKT_ADDR, Csr.PKT_LEN, Csr.TX_QUEUE, Csr.T_INDEX}
_CSR_VOLATILE = {Csr.PSEUDO_RANDOM, Csr.TIMESTAMP_LO, Csr.TIMESTAMP_HI}
_LM_CSRS = {Csr.ACTIVE_LM_ADDR_0: 0, Csr.ACTIVE_LM_ADDR_1: 1, Csr.ACTIVE_LM_ADDR_2: 2, Csr.ACTIVE_LM_ADDR_3: 3}
#: registers holding eBPF R0 (a1:a0 is SimResult.r0; the JIT keeps both banks)
R0_REGS = both(RESULT_LO) | both(RESULT_HI)


def _source(op, acc: list) -> None:
    """Add what reading operand ``op`` uses to acc = [uses, defs, effects]."""
    t = op.__class__
    if t is Gpr:
        acc[0] |= 1 << gpr_loc(op)
    elif t is Xfer:
        acc[0] |= 1 << ((XIN0 if op.side == XferSide.IN else XOUT0) + op.index)
    elif t is NN:
        acc[0] |= 1 << (NN0 + op.index)
    elif t is XferIndex:                 # any $in register, the one the T_INDEX CSR names
        acc[0] |= XIN_ALL | BIT_CSR
    elif t is LMem:
        acc[0] |= 1 << lmp(op.pointer) | BIT_LM
        if op.postinc:
            acc[1] |= 1 << lmp(op.pointer)
        acc[2] |= Effect.LM_READ


def _dest(op, partial: bool, acc: list) -> None:
    """Add what writing destination ``op`` does; ``partial``: the old value is merged in (read too)."""
    t = op.__class__
    if t is Gpr:
        bit = 1 << gpr_loc(op)
    elif t is GprBoth:
        bit = both(op.index)
    elif t is Xfer:
        bit = 1 << (XOUT0 + op.index)
    elif t is NN:
        bit = 1 << (NN0 + op.index)
    elif t is LMem:
        acc[0] |= 1 << lmp(op.pointer) | (BIT_LM if partial else 0)
        if op.postinc:
            acc[1] |= 1 << lmp(op.pointer)
        acc[3] |= BIT_LM                 # a memory word: may-write, never a kill
        acc[2] |= Effect.LM
        return
    else:                                # NoDest / None
        return
    acc[1] |= bit
    if partial:
        acc[0] |= bit


def _partial_write(ins: Instruction) -> bool:
    """immed with width lo/hi and ld_field without clear (unless every byte is written) merge into dest."""
    if ins.op == Op.IMMED:
        return ins.width != Width.WORD
    if ins.op == Op.LD_FIELD:
        return not ins.clear and ins.mask != 0xF
    return False


def _compute(ins: Instruction) -> DefUse:
    e = ins.entry
    acc = [0, 0, Effect.NONE, 0]          # uses, defs, effects, extra clobbers
    op = ins.op
    if e.a_kinds is not None and ins.a is not None:
        _source(ins.a, acc)
    if e.b_kinds is not None and ins.b is not None:
        _source(ins.b, acc)
    if e.dest_kinds is not None and ins.dest is not None:
        _dest(ins.dest, _partial_write(ins), acc)
    if e.sets_cc:
        acc[1] |= BIT_CC
    if e.reads_cc:
        # the table says "may read": ALU_SHF only for a carry op, BR unless unconditional
        if (e.format == Format.ALU_SHF and ins.alu not in (AluOp.ADDC, AluOp.SUBC)) or \
                (op == Op.BR and ins.cond == Cond.ALWAYS):
            pass
        else:
            acc[0] |= BIT_CC
    if e.sets_prev:
        acc[1] |= BIT_PREV
    if e.reads_prev:
        # indirect shift amounts and indirect command counts
        if e.format == Format.CMD:
            if e.fixed_count is None and ins.count == 0:
                acc[0] |= BIT_PREV
        elif ins.indirect:
            acc[0] |= BIT_PREV
    if e.xfer_side is not None:          # memory commands
        first = ins.xfer.index
        count = e.fixed_count if e.fixed_count is not None else ins.count
        span = ((1 << count) - 1) << first if count else (GPR_A >> first) << first
        if e.xfer_side == XferSide.IN:
            if count:
                acc[1] |= span << XIN0
            else:
                acc[3] |= span << XIN0
        else:
            acc[0] |= span << XOUT0
        if op == Op.MEM_TEST_SET:        # the old word comes back in $in[xfer] (the table has no field for it)
            acc[1] |= 1 << (XIN0 + first)
        if op in (Op.MEM_ATOMIC32, Op.MEM_ATOMIC64):    # old value -> $in[xfer..]; cmp_swap also reads the expected
            acc[1] |= span << XIN0
            acc[0] |= (((1 << atomic_out_words(ins.atomic, count)) - 1) << first) << XOUT0
    if e.format == Format.CMD:           # every memory command, with or without transfer registers
        acc[0] |= BIT_MEM
        acc[3] |= BIT_MEM
        acc[2] |= Effect.MEMORY
    fmt = e.format
    if fmt == Format.MUL:                # the multiplier's X, Y, accumulator and step count
        if op == Op.MUL_START:
            acc[1] |= BIT_MUL
        elif op == Op.MUL_STEP:
            acc[0] |= BIT_MUL
            acc[1] |= BIT_MUL
        else:
            acc[0] |= BIT_MUL
    elif fmt == Format.CSR:
        csr = ins.csr
        if op == Op.CSR_RD:
            if csr in _LM_CSRS:
                acc[0] |= 1 << lmp(_LM_CSRS[csr])
            elif csr in _CSR_STATE:
                acc[0] |= BIT_CSR
            elif csr in _CSR_VOLATILE:
                acc[0] |= BIT_CSR
                acc[3] |= BIT_CSR
                acc[2] |= Effect.STATE
        else:
            if csr in _LM_CSRS:
                acc[1] |= 1 << lmp(_LM_CSRS[csr])
            else:
                acc[0] |= BIT_CSR
                acc[3] |= BIT_CSR
            acc[2] |= Effect.CSR_WRITE
    elif op == Op.HALT:
        acc[0] |= R0_REGS
        acc[2] |= Effect.HALT
    elif op == Op.CTX_WAIT:
        acc[0] |= BIT_MEM
        acc[3] |= BIT_MEM | XIN_ALL
        acc[2] |= Effect.WAIT
    if e.is_branch:
        acc[2] |= Effect.BRANCH
    return DefUse(acc[0], acc[1], acc[1] | acc[3], int(acc[2]))


_CACHE: dict[Instruction, DefUse] = {}
_BY_ID: dict[int, tuple] = {}


def def_use(ins: Instruction) -> DefUse:
    """Def/use of one instruction (memoised: instructions are immutable values)."""
    got = _BY_ID.get(id(ins))
    if got is not None and got[0] is ins:
        return got[1]
    du = _CACHE.get(ins)
    if du is None:
        du = _compute(ins)
        if len(_CACHE) > 1 << 15:
            _CACHE.clear()
        _CACHE[ins] = du
    if len(_BY_ID) > 1 << 16:
        _BY_ID.clear()
    _BY_ID[id(ins)] = (ins, du)        # holds ins, so its id cannot be reused while cached
    return du


# -- firmware calls ---------------------------------------------------------------------------

def routine_def_use(symbol: str | None) -> DefUse:
    """The firmware routine ``symbol`` (``fw_map_lookup`` ...) as an instruction: what it reads and writes.

    From the routine's :data:`~nfpjit.isa.sim.firmware.ROUTINE_ABI`: it reads its arguments from the
    A bank and the return address a30 (map and packet routines also local memory and the packet/map
    state); it writes its results in both banks (R0 for the helper-call routines); its clobbered
    registers (R1..R5 for those), the condition codes, prev, the multiplier and the transfer
    registers are left undefined (the ABI promises nothing about them).  An unknown symbol reads and
    clobbers everything.
    """
    address = ROUTINE_ADDRESSES.get(symbol or "")
    if address is None:
        return DefUse(ALL, 0, ALL, int(Effect.CALL | Effect.MEMORY))
    abi = ROUTINE_ABI[Routine(address)]
    uses = 1 << gpr_loc(RETURN_ADDRESS_REG)
    for reg in abi.args:
        uses |= 1 << gpr_loc(reg)
    defs = sum(both(n) for n in abi.results)
    clobbers = defs | sum(both(n) for n in abi.clobbers) | BIT_CC | BIT_PREV | BIT_MUL | XIN_ALL | XOUT_ALL
    effects = Effect.CALL
    if abi.memory:
        uses |= BIT_LM | BIT_MEM | BIT_CSR
        clobbers |= BIT_MEM | BIT_CSR
        effects |= Effect.MEMORY
    return DefUse(uses, defs, clobbers, int(effects))


#: effects as plain ints for the hot paths
E_BRANCH, E_LM_READ = int(Effect.BRANCH), int(Effect.LM_READ)

#: a call we know nothing about (BPF-to-BPF, unknown routine): reads and may write everything
UNKNOWN_CALL = DefUse(ALL, 0, ALL, int(Effect.CALL | Effect.MEMORY))


# -- the CFG -------------------------------------------------------------------------------------

FALL, JUMP, COND, CALL, ESCAPE, HALT, RETURN = "fall", "jump", "cond", "call", "escape", "halt", "return"


@dataclass(slots=True)
class Block:
    """Entries ``body[start:end]`` of the function: labels first, then instructions.

    ``term``: index of the branch/halt ending it (None: falls through); its defer slots are the
    instructions after it.  ``kind``: fall, jump (br.always), cond (br.<cc>, br_bset, br_bclr),
    call (firmware routine: ``call`` is its :class:`DefUse`, ``succs`` the return point), escape
    (BPF-to-BPF call, br out of the function or to an unknown address: everything live), return
    (rtn), halt.  ``entry``: the block may be entered from outside (function start, a return point
    a load_addr names).
    """

    index: int
    start: int
    end: int
    labels: list = field(default_factory=list)
    term: int | None = None
    kind: str = FALL
    succs: list = field(default_factory=list)
    preds: list = field(default_factory=list)
    call: DefUse | None = None
    entry: bool = False
    idx: list = field(default_factory=list)
    exit_live: int = ALL              # live when the block leaves the function (escape, return)

    def instrs(self, body=None) -> list:
        """Indices of the block's instructions in order (labels skipped)."""
        return self.idx


@dataclass(slots=True)
class CFG:
    body: list
    blocks: list
    label_block: dict
    rpo: list
    _where: dict | None = None
    loops: bool = True               # some edge goes back (to a block at or before it in RPO)

    def block_of(self, index: int) -> Block:
        """The block holding body entry ``index``."""
        if self._where is None:
            self._where = {i: b for b in self.blocks for i in range(b.start, b.end)}
        return self._where[index]

    def reachable(self) -> set[int]:
        return set(self.rpo)


def _is_routine_call(m) -> bool:
    return m.reloc is not None and m.reloc.kind == RelocKind.ROUTINE_ADDR and m.instr.op == Op.BR


def return_labels(functions) -> dict[str, bool]:
    """Labels a ``load_addr`` names, in every function: label -> True when only as a firmware return address."""
    out: dict[str, bool] = {}
    for fn in functions:
        body = fn.body
        for i, m in enumerate(body):
            ins = m.instr
            if ins is None or ins.op != Op.LOAD_ADDR or m.target is None:
                continue
            routine_ret = _is_return_address(ins) and _near_routine_call(body, i)
            out[m.target] = out.get(m.target, True) and routine_ret
    return out


def _is_return_address(ins: Instruction) -> bool:
    d = ins.dest
    return (isinstance(d, Gpr) and d == RETURN_ADDRESS_REG) or (isinstance(d, GprBoth) and d.index ==
                                                                 RETURN_ADDRESS_REG.index)


def _near_routine_call(body, i: int) -> bool:
    """The load_addr at ``i`` sits in the defer slots of a firmware call (or just before it)."""
    for j in range(i - 1, max(i - 4, -1), -1):
        m = body[j]
        if m.instr is None:
            return False
        if m.instr.op in BRANCH_OPS:
            return _is_routine_call(m) and i - j <= m.instr.defer
    for j in range(i + 1, min(i + 4, len(body))):
        m = body[j]
        if m.instr is None:
            return False
        if m.instr.op in BRANCH_OPS:
            return _is_routine_call(m)
    return False


def referenced_labels(functions) -> set[str]:
    """Labels some instruction names (branch or load_addr targets): only these start blocks."""
    return {m.target for fn in functions for m in fn.body if m.target is not None}


def build_cfg(fn, returns: dict[str, bool] | None = None, refs: set[str] | None = None) -> CFG:
    """Basic blocks of ``fn.body``: split before referenced labels and after a branch's defer slots or a halt.

    ``returns``: :func:`return_labels` over the whole program (labels entered from outside);
    ``refs``: :func:`referenced_labels` (a label nothing names cannot be jumped to, so it stays
    inside its block).
    """
    body = fn.body
    returns = returns if returns is not None else return_labels([fn])
    refs = refs if refs is not None else referenced_labels([fn])
    blocks: list[Block] = []
    label_block: dict[str, int] = {}
    n = len(body)
    i = 0
    while i < n:
        start = i
        labels = []
        while i < n and body[i].instr is None:
            labels.append(body[i].label)
            i += 1
        term = None
        idx = []
        while i < n:
            m = body[i]
            if m.instr is None:
                if m.label in refs:
                    break
                i += 1
                continue
            ins = m.instr
            idx.append(i)
            if ins.op in BRANCH_OPS or ins.op == Op.HALT:
                term = i
                stop = min(i + 1 + (ins.defer if ins.op in BRANCH_OPS else 0), n)
                i += 1
                while i < stop:
                    if body[i].instr is not None:
                        idx.append(i)
                    i += 1
                break
            i += 1
        b = Block(len(blocks), start, i, labels, term, idx=idx)
        for lab in labels:
            label_block[lab] = b.index
        for j in range(start, i):
            if body[j].instr is None:
                label_block[body[j].label] = b.index
        blocks.append(b)
    for b in blocks:
        nxt = b.index + 1 if b.index + 1 < len(blocks) else None
        if b.term is None:
            b.kind = FALL
            b.succs = [nxt] if nxt is not None else []
            if nxt is None:
                b.kind = ESCAPE          # falls off the end of the function
            continue
        m = body[b.term]
        ins = m.instr
        if ins.op == Op.HALT:
            b.kind = HALT
        elif ins.op == Op.RTN:
            b.kind = RETURN
            b.exit_live = ALL & ~SCRATCH
        elif _is_routine_call(m):
            ret = None
            for j in range(b.term + 1, b.end):
                mm = body[j]
                if mm.instr.op == Op.LOAD_ADDR and _is_return_address(mm.instr):
                    ret = mm.target
            if ins.cond == Cond.ALWAYS and ret in label_block:
                b.kind = CALL
                b.call = routine_def_use(m.reloc.symbol)
                b.succs = [label_block[ret]]
            else:
                b.kind = ESCAPE
                if ins.cond != Cond.ALWAYS and nxt is not None:
                    b.succs = [nxt]
        elif m.target is None or m.target not in label_block:
            b.kind = ESCAPE                 # BPF-to-BPF call or a branch to a fixed address
            if (ins.op != Op.BR or ins.cond != Cond.ALWAYS) and nxt is not None:
                b.succs = [nxt]             # a conditional one may fall through
            elif m.target is not None and m.reloc is None:
                b.exit_live = ALL & ~SCRATCH
        else:
            tgt = label_block[m.target]
            if ins.op == Op.BR and ins.cond == Cond.ALWAYS:
                b.kind = JUMP
                b.succs = [tgt]
            else:
                b.kind = COND
                b.succs = [tgt] if nxt is None else list(dict.fromkeys([nxt, tgt]))
    if blocks:
        blocks[0].entry = True
    for b in blocks:
        if any(lab in returns and not returns[lab] for lab in b.labels):
            b.entry = True
    for b in blocks:
        for s in b.succs:
            blocks[s].preds.append(b.index)
    # BPF-to-BPF return points: labels a non-firmware load_addr names are entries (set above)
    rpo = _rpo(blocks)
    order = {b: k for k, b in enumerate(rpo)}
    loops = any(order.get(s, -1) <= order[b] for b in rpo for s in blocks[b].succs)
    return CFG(body, blocks, label_block, rpo, loops=loops)


def _rpo(blocks) -> list[int]:
    seen = set()
    order = []
    for root in [b.index for b in blocks if b.entry]:
        if root in seen:
            continue
        stack = [(root, iter(blocks[root].succs))]
        seen.add(root)
        while stack:
            node, it = stack[-1]
            for s in it:
                if s not in seen:
                    seen.add(s)
                    stack.append((s, iter(blocks[s].succs)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def program_cfgs(unit, only: int | None = None) -> list[tuple[object, CFG]]:
    """(function, CFG) for every function of an MProgram (or just function number ``only``)."""
    returns = return_labels(unit.functions)
    refs = referenced_labels(unit.functions)
    fns = unit.functions if only is None else [unit.functions[only]]
    return [(fn, build_cfg(fn, returns, refs)) for fn in fns]


# -- liveness ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Liveness:
    cfg: CFG
    live_in: list
    live_out: list
    _after: dict = field(default_factory=dict)

    def after(self, index: int) -> int:
        """Locations live right after instruction ``body[index]`` (defer slots and calls included)."""
        got = self._after.get(index)
        if got is None:
            self._fill(self.cfg.block_of(index))
            got = self._after[index]
        return got

    def block_after(self, b: Block) -> dict:
        """{instruction index: live after it} for one block."""
        if b.idx and b.idx[-1] not in self._after:
            self._fill(b)
        return self._after

    def _fill(self, b: Block) -> None:
        live = self.live_out[b.index]
        if b.call is not None:
            live = b.call.uses | (live & ~b.call.defs)
        body = self.cfg.body
        for i in reversed(b.idx):
            self._after[i] = live
            du = def_use(body[i].instr)
            live = du.uses | (live & ~du.defs)


def _exit_live(b: Block) -> int:
    if b.kind in (ESCAPE, RETURN):
        return b.exit_live
    return 0


def liveness(cfg: CFG) -> Liveness:
    """Backward liveness per location (fixed point over the blocks)."""
    blocks = cfg.blocks
    body = cfg.body
    nb = len(blocks)
    # per block: gen (used before defined) and kill (defined)
    gen = [0] * nb
    kill = [0] * nb
    for b in blocks:
        g = k = 0
        if b.call is not None:
            g, k = b.call.uses, b.call.defs
        for i in reversed(b.idx):
            du = def_use(body[i].instr)
            g = du.uses | (g & ~du.defs)
            k |= du.defs
        gen[b.index], kill[b.index] = g, k
    live_in = [0] * nb
    live_out = [0] * nb
    exits = [_exit_live(b) for b in blocks]
    changed = True
    reach = set(cfg.rpo)
    order = list(reversed(cfg.rpo)) + [b for b in reversed(range(nb)) if b not in reach]
    exact = not cfg.loops and len(reach) == nb     # successors first: one pass is the fixed point
    while changed:
        changed = False
        for bi in order:
            out = exits[bi]
            for s in blocks[bi].succs:
                out |= live_in[s]
            inn = gen[bi] | (out & ~kill[bi])
            if out != live_out[bi] or inn != live_in[bi]:
                live_out[bi], live_in[bi] = out, inn
                changed = True
        if exact:
            break
    return Liveness(cfg, live_in, live_out)


# -- known bits (constants) ---------------------------------------------------------------------

#: a state maps GPR locations (0..63) to (known zero bits, known one bits); CC -> (z, n, c, v); PREV -> int;
#: an LM pointer's location -> the address it was set to.
#: Missing keys are unknown.  A value is a constant when zero | one == MASK32 (its value is ``one``).


def const_of(state: dict, loc: int) -> int | None:
    k = state.get(loc)
    if k is not None and k[0] | k[1] == MASK32:
        return k[1]
    return None


def operand_value(state: dict, op) -> int | None:
    """The constant an operand reads, if known."""
    t = op.__class__
    if t is Imm:
        return op.value
    if t is Gpr:
        return const_of(state, gpr_loc(op))
    return None


def operand_bits(state: dict, op) -> tuple[int, int]:
    """(known zero, known one) bits of a source operand."""
    t = op.__class__
    if t is Imm:
        return (~op.value & MASK32, op.value)
    if t is Gpr:
        return state.get(gpr_loc(op), (0, 0))
    return (0, 0)


class _Unknown(Exception):
    pass


class _Eval:
    """Just enough of the simulator's Machine to run a semantic handler on known values."""

    __slots__ = ("state", "z", "n", "c", "v", "prev", "out")

    def __init__(self, state: dict):
        self.state = state
        cc = state.get(CC)
        if cc is not None:
            self.z, self.n, self.c, self.v = cc
        else:
            self.z = self.n = self.c = self.v = None
        self.prev = state.get(PREV)
        self.out: dict = {}

    def read(self, op) -> int:
        if op is None:
            return 0
        v = operand_value(self.state, op)
        if v is None:
            raise _Unknown
        return v

    read_dest = read

    def write(self, op, value: int) -> None:
        t = op.__class__
        if t is Gpr:
            self.out[gpr_loc(op)] = value
        elif t is GprBoth:
            self.out[op.index] = self.out[B0 + op.index] = value
        elif t is not NoDest:
            raise _Unknown


_EVAL_OPS = frozenset({Op.ADD, Op.ADDC, Op.SUB, Op.SUBC, Op.AND, Op.OR, Op.XOR, Op.ANDNOT, Op.NOT, Op.MOV,
                       Op.ALU_SHF, Op.DBL_SHF, Op.LD_FIELD, Op.IMMED})


def evaluate(ins: Instruction, state: dict):
    """Run ``ins`` on known inputs: ({loc: value}, cc tuple or None, prev or None), or None if an input is unknown.

    The simulator's own semantic handler computes the result (one definition of every
    instruction); the condition codes come back only if the instruction sets them.
    """
    if ins.op not in _EVAL_OPS:
        return None
    du = def_use(ins)
    if du.uses & BIT_CC and state.get(CC) is None:
        return None
    if du.uses & BIT_PREV and state.get(PREV) is None:
        return None
    m = _Eval(state)
    try:
        HANDLERS[ins.op](m, ins)
    except _Unknown:
        return None
    cc = (bool(m.z), bool(m.n), bool(m.c), bool(m.v)) if du.defs & BIT_CC else None
    prev = m.prev if du.defs & BIT_PREV else None
    return m.out, cc, prev


def _bits_transfer(ins: Instruction, state: dict) -> tuple[int, int] | None:
    """(known zero, known one) of the value ``ins`` writes when some inputs are unknown (a few shapes)."""
    op = ins.op
    if op == Op.AND:
        za, oa = operand_bits(state, ins.a)
        zb, ob = operand_bits(state, ins.b)
        return ((za | zb) & MASK32, oa & ob)
    if op == Op.OR:
        za, oa = operand_bits(state, ins.a)
        zb, ob = operand_bits(state, ins.b)
        return (za & zb, (oa | ob) & MASK32)
    if op == Op.MOV:
        return operand_bits(state, ins.b)
    if op == Op.ALU_SHF and ins.alu == AluOp.MOV and not ins.indirect:
        z, o = operand_bits(state, ins.b)
        n = ins.amount
        if ins.shift == ShiftKind.SHR:
            return ((z >> n) | (MASK32 << (32 - n) & MASK32), o >> n)
        if ins.shift == ShiftKind.SHL:
            return ((z << n | ((1 << n) - 1)) & MASK32, (o << n) & MASK32)
        return None
    if op == Op.DBL_SHF and not ins.indirect:
        za, oa = operand_bits(state, ins.a)
        zb, ob = operand_bits(state, ins.b)
        n = ins.amount
        return (((za << 32 | zb) >> n) & MASK32, ((oa << 32 | ob) >> n) & MASK32)
    if op == Op.LD_FIELD and ins.clear:
        bytemask = 0
        for i in range(4):
            if ins.mask >> i & 1:
                bytemask |= 0xFF << (8 * i)
        z, o = operand_bits(state, ins.b)
        r = ins.amount
        z = ((z >> r) | (z << (32 - r))) & MASK32 if r else z
        o = ((o >> r) | (o << (32 - r))) & MASK32 if r else o
        return ((z & bytemask) | (~bytemask & MASK32), o & bytemask)
    return None


def step(state: dict, m, du: DefUse | None = None) -> None:
    """Advance a known-bits state over one MInstr (in place)."""
    ins = m.instr
    du = du or def_use(ins)
    clob = du.clobbers
    if m.reloc is None and ins.op in _EVAL_OPS:
        res = evaluate(ins, state)
        if res is not None:
            out, cc, prev = res
            _kill(state, clob)
            for loc, v in out.items():
                state[loc] = (~v & MASK32, v)
            if cc is not None:
                state[CC] = cc
            if prev is not None:
                state[PREV] = prev
            return
        bits = _bits_transfer(ins, state)
        _kill(state, clob)
        if bits is not None:
            v = bits
            if v[0] or v[1]:
                for loc in gpr_dests(ins.dest):
                    state[loc] = v
        return
    _kill(state, clob)
    if ins.op == Op.CSR_WR and ins.csr in _LM_CSRS:
        v = operand_value(state, ins.b)      # an LM pointer set to a known address
        if v is not None:
            state[lmp(_LM_CSRS[ins.csr])] = v


def gpr_dests(dest) -> tuple[int, ...]:
    if isinstance(dest, GprBoth):
        return (dest.index, B0 + dest.index)
    if isinstance(dest, Gpr):
        return (gpr_loc(dest),)
    return ()


def _drop(state: dict, mask: int, tracked: int = GPRS) -> None:
    """Delete the ``tracked`` locations of ``mask`` from a state (whichever is smaller to walk)."""
    mask &= tracked
    if not mask or not state:
        return
    if mask & (mask - 1) == 0 or len(state) > 8:
        n = mask.bit_count() if hasattr(mask, "bit_count") else bin(mask).count("1")
        if n <= len(state):
            while mask:
                low = mask & -mask
                state.pop(low.bit_length() - 1, None)
                mask ^= low
            return
    for loc in [k for k in state if mask >> k & 1]:
        del state[loc]


def _kill(state: dict, clob: int) -> None:
    if not state:
        return
    if clob & GPRS:
        _drop(state, clob)
    if clob & BIT_CC:
        state.pop(CC, None)
    if clob & BIT_PREV:
        state.pop(PREV, None)
    if clob & LMP_ALL:
        for p in range(4):
            if clob >> lmp(p) & 1:
                state.pop(lmp(p), None)


def _meet(a: dict, b: dict) -> dict:
    out = {}
    for k, v in a.items():
        w = b.get(k)
        if w is None:
            continue
        if w == v:
            out[k] = v
        elif k < XIN0:
            z, o = v[0] & w[0], v[1] & w[1]
            if z or o:
                out[k] = (z, o)
    return out


def block_transfer(cfg: CFG, b: Block, state: dict) -> dict:
    body = cfg.body
    for i in b.instrs(body):
        step(state, body[i])
    if b.call is not None:
        _kill(state, b.call.clobbers)
    return state


def forward_states(cfg: CFG, meet, transfer) -> list:
    """A forward dataflow's state at the start of every block (None: unreachable), to the fixed point.

    Entry blocks start from ``{}``; a block's state is the ``meet(state, pred_out, block_index)`` of
    its reachable predecessors' out-states; ``transfer(block, state)`` returns the block's out-state
    (it may change the dict it is given, a copy).  Visited in reverse post-order, so an acyclic CFG
    is done in one sweep.
    """
    blocks = cfg.blocks
    ins: list = [None] * len(blocks)
    outs: list = [None] * len(blocks)
    changed = True
    while changed:
        changed = False
        for bi in cfg.rpo:
            b = blocks[bi]
            if b.entry:
                new = {}
            else:
                new = None
                for p in b.preds:
                    o = outs[p]
                    if o is None:
                        continue
                    new = dict(o) if new is None else meet(new, o, bi)
                if new is None:
                    continue
            if new != ins[bi] or outs[bi] is None:
                ins[bi] = new
                outs[bi] = transfer(b, dict(new))
                changed = True
        if not cfg.loops:                  # predecessors first (RPO): one pass is the fixed point
            break
    return ins


def known_bits(cfg: CFG) -> list:
    """Known bits at the start of every block (None for unreachable blocks); entries start unknown."""
    return forward_states(cfg, lambda a, b, _bi: _meet(a, b), lambda b, st: block_transfer(cfg, b, st))


# -- value numbers (copies) ---------------------------------------------------------------------

#: A value-number state maps GPR locations to (value id, position of the write that put it there).
#: Locations with the same id hold the same value.  Ids: ("k", v) a constant from a plain immed;
#: ("p", i) the value instruction i wrote into both banks; ("p", i, loc) one bank's value;
#: ("e", i, loc) the unknown value loc held when instruction i read it.


def _vn_set(state: dict, loc: int, vid, pos: int) -> None:
    state[loc] = (vid, pos)


def _vn_drop_holders(state: dict, vid) -> None:
    for k in [k for k, v in state.items() if v[0] == vid]:
        del state[k]


def vn_of(state: dict, loc: int, pos: int, loops: bool = True):
    """The value id of ``loc`` before instruction ``pos`` (created when unknown)."""
    got = state.get(loc)
    if got is None:
        vid = ("e", pos, loc)
        if loops:
            _vn_drop_holders(state, vid)
        got = state[loc] = (vid, -1)
    return got[0]


#: locations value numbers track: GPRs, next-neighbour registers, read transfer registers
VN_LOCS = GPRS | (GPR_A << NN0) | XIN_ALL
LMP_ALL = 0xF << LMP0


#: value-number keys of LM words: LM_KEY0 + 16 * pointer + offset (words at distinct offsets of one
#: pointer do not overlap; a pointer write or a write through another pointer forgets them)
LM_KEY0 = 1000


def value_loc(op) -> int | None:
    """The value-numbered location an operand names (GPR, NN, $in, an LM word), else None."""
    t = op.__class__
    if t is Gpr:
        return gpr_loc(op)
    if t is NN:
        return NN0 + op.index
    if t is Xfer and op.side == XferSide.IN:
        return XIN0 + op.index
    if t is LMem and not op.postinc:
        return LM_KEY0 + 16 * op.pointer + op.offset
    return None


def value_operand(loc: int):
    """The source operand reading value-numbered location ``loc``."""
    if loc >= LM_KEY0:
        return LMem((loc - LM_KEY0) // 16, (loc - LM_KEY0) % 16)
    if loc < XIN0:
        return loc_gpr(loc)
    if loc < XOUT0:
        return Xfer(XferSide.IN, loc - XIN0)
    return NN(loc - NN0)


def vn_dests(dest) -> tuple[int, ...]:
    t = dest.__class__
    if t is GprBoth:
        return (dest.index, B0 + dest.index)
    if t is Gpr:
        return (gpr_loc(dest),)
    if t is NN:
        return (NN0 + dest.index,)
    if t is LMem and not dest.postinc:
        return (LM_KEY0 + 16 * dest.pointer + dest.offset,)
    return ()


def _drop_lm(state: dict, pointer: int | None) -> None:
    """Forget the LM words seen through ``pointer`` (None: through every pointer)."""
    lo, hi = (LM_KEY0, LM_KEY0 + 64) if pointer is None else (LM_KEY0 + 16 * pointer, LM_KEY0 + 16 * pointer + 16)
    for k in [k for k in state if lo <= k < hi]:
        del state[k]


def vn_kill(state: dict, clobbers: int) -> None:
    """Forget what ``clobbers`` may change (CSR state kills the ``csr_rd`` values, LM the LM words)."""
    _drop(state, clobbers, VN_LOCS)
    if clobbers & BIT_CSR:
        for k in [k for k, v in state.items() if v[0][0] == "csr"]:
            del state[k]
    if clobbers & BIT_LM:
        _drop_lm(state, None)
    for p in range(4):
        if clobbers >> lmp(p) & 1:
            _drop_lm(state, p)


def vn_step(state: dict, m, pos: int, du: DefUse | None = None, loops: bool = True) -> None:
    """Advance a value-number state over the MInstr at ``pos``.

    ``loops``: the CFG has a cycle, so an instruction may run again while copies of its last
    value are still around (they are dropped then); without cycles that cannot happen.
    """
    ins = m.instr
    du = du or def_use(ins)
    clob = du.clobbers & VN_LOCS
    op = ins.op
    dest = ins.dest
    other = du.clobbers & (BIT_CSR | LMP_ALL)
    if du.clobbers & BIT_LM:
        # a write through one pointer keeps what the other words of that pointer hold
        if dest.__class__ is LMem and not dest.postinc and ins.op not in BRANCH_OPS:
            for k in [k for k in state if k >= LM_KEY0 and (k - LM_KEY0) // 16 != dest.pointer]:
                del state[k]
            state.pop(LM_KEY0 + 16 * dest.pointer + dest.offset, None)
        else:
            other |= BIT_LM
    if other:
        vn_kill(state, other)
    if dest.__class__ is LMem and not dest.postinc and m.reloc is None:
        key = vn_dests(dest)[0]
        if op == Op.MOV and value_loc(ins.b) is not None and not _partial_write(ins):
            state[key] = (vn_of(state, value_loc(ins.b), pos, loops), pos)
        if not clob:
            return
    if not clob:
        return
    if m.reloc is None and op == Op.MOV:
        src = value_loc(ins.b)
        dests = vn_dests(dest)
        if src is not None and dests:
            vid = vn_of(state, src, pos, loops)
            _drop(state, clob & ~sum(1 << d for d in dests), VN_LOCS)
            for loc in dests:
                state[loc] = (vid, pos)
            return
    if m.reloc is None and op == Op.IMMED and ins.width == Width.WORD and vn_dests(dest):
        v = ins.imm << (8 * ins.byte)
        if ins.invert:
            v = ~v & MASK32
        for loc in vn_dests(dest):
            state[loc] = (("k", v), pos)
        return
    if op == Op.CSR_RD and ins.csr in _CSR_STATE and vn_dests(dest):
        for loc in vn_dests(dest):                  # the same CSR value until something changes it
            state[loc] = (("csr", int(ins.csr)), pos)
        return
    partial = _partial_write(ins)
    dests = vn_dests(dest)
    old = {loc: state.get(loc, (None,))[0] for loc in dests} if partial else None
    _drop(state, clob, VN_LOCS)
    if dests and not (clob & ~sum(1 << d for d in dests)):
        if len(dests) == 2 and (not partial or (old[dests[0]] is not None and old[dests[0]] == old[dests[1]])):
            vid = ("p", pos)
            if loops:
                _vn_drop_holders(state, vid)
            for loc in dests:
                state[loc] = (vid, pos)
        else:
            for loc in dests:
                vid = ("p", pos, loc)
                if loops:
                    _vn_drop_holders(state, vid)
                state[loc] = (vid, pos)


def _vn_meet(a: dict, b: dict, block: int) -> dict:
    """What both states agree on; a GPR whose two banks are equal on both sides (by different
    values) keeps its banks equal under a value id of the join (``("m", block, n)``)."""
    out = {}
    for k, v in a.items():
        w = b.get(k)
        if w is not None and w[0] == v[0]:
            out[k] = v if v[1] >= w[1] else w
    for n in range(32):
        if n in out:
            continue
        xa, ya, xb, yb = a.get(n), a.get(B0 + n), b.get(n), b.get(B0 + n)
        if xa is not None and ya is not None and xb is not None and yb is not None and \
                xa[0] == ya[0] and xb[0] == yb[0]:
            vid = ("m", block, n)
            for k in [k for k, v in out.items() if v[0] == vid]:
                del out[k]
            out[n] = out[B0 + n] = (vid, -1)          # held since the join
    return out


def value_numbers(cfg: CFG) -> list:
    """Value-number states at the start of every block (None: unreachable)."""
    body, loops = cfg.body, cfg.loops

    def transfer(b, st):
        for i in b.idx:
            vn_step(st, body[i], i, None, loops)
        if b.call is not None:
            vn_kill(st, b.call.clobbers)
        return st

    return forward_states(cfg, _vn_meet, transfer)


def banks_equal(state: dict, n: int) -> bool:
    """a<n> and b<n> hold the same value (same value id)."""
    x, y = state.get(n), state.get(B0 + n)
    return x is not None and y is not None and x[0] == y[0]


def apply_edits(fn, edits: dict) -> bool:
    """Rewrite ``fn.body``: ``edits`` maps an entry index to its replacement (an MInstr, a list, or None = delete).

    A branch keeps as defer slots whatever its slot instructions became (deleting a slot
    instruction shortens the defer count); a deleted branch leaves its slot instructions as plain
    code.  After deletions every LM pointer write gets its 3-instruction wait back
    (:func:`repair_lm_timing`).  Returns whether anything changed.
    """
    if not edits:
        return False
    body = fn.body
    out = []
    i = 0
    n = len(body)
    while i < n:
        m = body[i]
        rep = edits.get(i, m)
        if m.instr is not None and m.instr.op in BRANCH_OPS and m.instr.defer:
            slots = []
            for j in range(i + 1, min(i + 1 + m.instr.defer, n)):
                r = edits.get(j, body[j])
                slots.extend(r if isinstance(r, list) else ([] if r is None else [r]))
            reps = rep if isinstance(rep, list) else ([] if rep is None else [rep])
            for r in reps:
                if r.instr is not None and r.instr.op in BRANCH_OPS and r.instr.defer != len(slots):
                    r = replace(r, instr=replace(r.instr, defer=len(slots)))
                out.append(r)
            out.extend(slots)
            i += 1 + m.instr.defer
            continue
        if isinstance(rep, list):
            out.extend(rep)
        elif rep is not None:
            out.append(rep)
        i += 1
    fn.body[:] = out
    if any(v is None for v in edits.values()):
        repair_lm_timing(fn)           # a deletion may have shortened an LM pointer's wait
    return True


def lm_pointer_written(ins) -> int | None:
    if ins is not None and ins.op == Op.CSR_WR and ins.csr in _LM_CSRS:
        return _LM_CSRS[ins.csr]
    return None


def repair_lm_timing(fn, delay: int = 3) -> bool:
    """Make sure ``delay`` instructions separate each LM pointer write from the pointer's next use.

    The simulator traps a use of LM index pointer N fewer than 3 cycles after ``csr_wr
    active_lm_addr_N``; every instruction takes at least a cycle.  Counting stops at the first use
    of the pointer, at a label or at the end of the block (then the successor may use it at once,
    so the whole delay is required); missing cycles become ``nop``s right after the write.
    """
    body = fn.body
    inserts = {}
    n = len(body)
    for i, m in enumerate(body):
        p = lm_pointer_written(m.instr)
        if p is None:
            continue
        bit = 1 << lmp(p)
        count = 0
        j = i + 1
        end = None
        while j < n and count < delay:
            mm = body[j]
            if mm.instr is None or def_use(mm.instr).uses & bit:
                break
            count += 1
            if mm.instr.op == Op.HALT:
                count = delay
                break
            if mm.instr.op in BRANCH_OPS:
                end = j + mm.instr.defer
            if j == end:
                break
            j += 1
        if count < delay:
            inserts[i] = delay - count
    if not inserts:
        return False
    out = []
    for i, m in enumerate(body):
        out.append(m)
        k = inserts.get(i)
        if k:
            out.extend(MInstr(Instruction(Op.NOP), pc=m.pc) for _ in range(k))
    fn.body[:] = out
    return True


# -- shared analyses ------------------------------------------------------------------------------


class FunctionAnalysis:
    """The CFG of one function with its liveness, known bits and value numbers, computed on first use."""

    __slots__ = ("fn", "cfg", "_live", "_bits", "_vn")

    def __init__(self, fn, cfg: CFG):
        self.fn, self.cfg = fn, cfg
        self._live = self._bits = self._vn = None

    @property
    def live(self) -> Liveness:
        if self._live is None:
            self._live = liveness(self.cfg)
        return self._live

    @property
    def bits(self) -> list:
        if self._bits is None:
            self._bits = known_bits(self.cfg)
        return self._bits

    @property
    def vn(self) -> list:
        if self._vn is None:
            self._vn = value_numbers(self.cfg)
        return self._vn


_CACHE_ATTR = "_machine_dataflow"


def analyses(unit) -> list[FunctionAnalysis]:
    """One :class:`FunctionAnalysis` per function of ``unit``, reused while no body has changed.

    Passes run one after the other on the same MProgram; a pass that changes nothing leaves the
    analyses valid for the next one.  The cache keeps the entries it was computed for (so their
    identities stay unique) and is checked entry by entry.
    """
    entries = [m for fn in unit.functions for m in fn.body]
    cached = getattr(unit, _CACHE_ATTR, None)
    if cached is not None:
        old_entries, old_fns, result = cached
        if len(old_entries) == len(entries) and len(old_fns) == len(unit.functions) and \
                all(a is b for a, b in zip(old_fns, unit.functions)) and \
                all(a is b for a, b in zip(old_entries, entries)):
            return result
    result = [FunctionAnalysis(fn, cfg) for fn, cfg in program_cfgs(unit)]
    try:
        setattr(unit, _CACHE_ATTR, (entries, list(unit.functions), result))
    except AttributeError:
        pass
    return result


# -- rewriting helpers ------------------------------------------------------------------------------


__all__ = [
    "A0", "B0", "XIN0", "XOUT0", "NN0", "CC", "PREV", "MUL", "LMP0", "LM", "MEM", "CSR", "ALL", "GPRS",
    "BIT_CC", "BIT_PREV", "Effect", "E_BRANCH", "E_LM_READ", "DefUse", "def_use", "routine_def_use", "UNKNOWN_CALL",
    "Block", "CFG", "build_cfg", "program_cfgs", "return_labels", "liveness", "Liveness",
    "known_bits", "step", "evaluate", "const_of", "operand_value", "operand_bits", "gpr_loc", "loc_gpr",
    "analyses", "FunctionAnalysis", "apply_edits", "repair_lm_timing", "value_numbers", "value_loc", "value_operand", "vn_kill", "vn_step", "vn_of", "banks_equal",
    "both", "lmp", "loc_name", "locs_text", "gpr_dests", "vn_dests", "lm_pointer_written",
    "FALL", "JUMP", "COND", "CALL", "ESCAPE", "HALT", "RETURN",
]

"""Lowering of eBPF loads, stores, atomics, context reads and map references to NFP-32.

Every memory instruction is dispatched on the pointer kind the analysis proved
for it (``InsnFacts.mem``):

* **packet** pointers are 32-bit CTM byte addresses (high word 0): ``data`` is
  the ``pkt_addr`` CSR, ``data_end`` = ``pkt_addr + pkt_len``.  Loads and
  stores are ``mem_read``/``mem_write`` commands on CTM.
* **map value** pointers are 40-bit EMEM addresses in the register pair (high
  word = address bits 39..32), as the firmware's lookup returns them, so a
  failed lookup is 0 in both words and NULL checks need nothing special.
* **stack** pointers are local-memory byte addresses (high word 0); the frame
  layout is :class:`StackLayout` (one static region per function: eBPF has no
  recursion).  Accesses go through LM index pointer 0.
* **context** fields (``xdp_md``; ``__sk_buff`` len and packet pointers) are CSR reads.

Commands move whole 32-bit words but accept any byte address, so a 1- or
2-byte access reads one word and extracts (or merges, for a store) the bytes
it wants.  The word either starts at the access ("forward window") or ends
with it ("backward window"); the analysis' offset range picks the one that
cannot run past the end of a map value or either end of the packet buffer.  A
packet access that may sit within 3 bytes of the start of the packet and also
near the end of a full buffer (a variable offset, or ``data`` moved by a helper)
picks at run time: two compares and a branch, each window on its own path.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.analysis import HI, RegKind
from nfpjit.bits import MASK32, u32
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AtomicOp, Helper, InsnClass, Mode, ProgType, PseudoSrc, Size
from nfpjit.errors import UnsupportedError
from nfpjit.isa.encoding import load_const
from nfpjit.isa.image import RelocKind
from nfpjit.isa.sim.memory import CTM_BUFFER_SIZE, HEADROOM
from nfpjit.isa.operands import MAX_LM_OFFSET, NN, Bank, Gpr, GprBoth, Imm, LMem, NoDest, Xfer, XferIndex, XferSide
from nfpjit.isa.table import AluOp, AtomicCmd, Cond, Csr, Instruction, Memory, Op, ShiftKind

from .mir import MInstr, MReloc
from .regs import SCRATCH_GPRS

# -- registers and layout constants --------------------------------------------------

#: LM index pointer used for eBPF stack accesses
LM_DATA_POINTER = 0
#: the highest word offset an LM operand reaches from its pointer
MAX_LM_WORD = MAX_LM_OFFSET
#: instructions between writing an LM pointer CSR and using the pointer (the ISA's 3-cycle rule)
LM_POINTER_DELAY = 3
#: EMEM address bits 39..32 of map i's value table (the simulator's/firmware's layout)
EMEM_MAP_HI_BASE = 0x10

#: context fields the NIC provides, by offset: struct xdp_md and struct __sk_buff (UAPI layouts)
XDP_CTX_FIELDS = {0: "data", 4: "data_end", 8: "data_meta", 12: "ingress_ifindex", 16: "rx_queue_index",
                  20: "zero"}                       # egress_ifindex: 0 outside devmap programs
SKB_CTX_FIELDS = {0: "len", 4: "pkt_type", 8: "mark", 12: "queue_mapping", 16: "protocol",
                  20: "zero", 24: "zero", 28: "zero",          # vlan_present/tci/proto: the NIC strips no tag
                  32: "priority", 36: "ingress_ifindex", 40: "ifindex", 44: "tc_index",
                  48: "cb0", 52: "cb1", 56: "cb2", 60: "cb3", 64: "cb4", 68: "hash", 72: "tc_classid",
                  76: "data", 80: "data_end", 84: "zero",      # napi_id: no NAPI on the NIC
                  140: "data_meta"}
#: __sk_buff fields a TC program may write (the kernel's list), and those it keeps in 16 bits
SKB_CTX_WRITABLE = frozenset({"mark", "priority", "queue_mapping", "tc_index", "tc_classid",
                              "cb0", "cb1", "cb2", "cb3", "cb4"})
SKB_U16_FIELDS = frozenset({"queue_mapping", "tc_index", "tc_classid"})
SKB_CB_END = 68
_CTX_CSR = {
    "data": Csr.PKT_ADDR,
    "data_meta": Csr.PKT_ADDR,         # no metadata area: data_meta == data
    "len": Csr.PKT_LEN,
    "ingress_ifindex": Csr.INGRESS_IFINDEX,
    "rx_queue_index": Csr.RX_QUEUE,
    # TC: the packet metadata the firmware keeps in CSRs (isa/table.py, PKT_*)
    "pkt_type": Csr.PKT_TYPE, "mark": Csr.PKT_MARK, "queue_mapping": Csr.TX_QUEUE, "protocol": Csr.PKT_PROTOCOL,
    "priority": Csr.PKT_PRIORITY, "ifindex": Csr.PKT_IFINDEX, "tc_index": Csr.PKT_TC_INDEX,
    "cb0": Csr.PKT_CB_0, "cb1": Csr.PKT_CB_1, "cb2": Csr.PKT_CB_2, "cb3": Csr.PKT_CB_3, "cb4": Csr.PKT_CB_4,
    "hash": Csr.PKT_HASH, "tc_classid": Csr.PKT_TC_CLASSID,
}


def lo_a(r: int) -> Gpr:
    return Gpr(Bank.A, 2 * r)


def lo_b(r: int) -> Gpr:
    return Gpr(Bank.B, 2 * r)


def hi_a(r: int) -> Gpr:
    return Gpr(Bank.A, 2 * r + 1)


def hi_b(r: int) -> Gpr:
    return Gpr(Bank.B, 2 * r + 1)


def lo_ab(r: int) -> GprBoth:
    return GprBoth(2 * r)


def hi_ab(r: int) -> GprBoth:
    return GprBoth(2 * r + 1)


IN0, IN1 = Xfer(XferSide.IN, 0), Xfer(XferSide.IN, 1)
OUT0, OUT1 = Xfer(XferSide.OUT, 0), Xfer(XferSide.OUT, 1)


def _round8(n: int) -> int:
    return (n + 7) & ~7


# -- small instruction builders ------------------------------------------------------


def alu(op: Op, dest, a, b) -> Instruction:
    return Instruction(op, dest=dest, a=a, b=b)


def mov(dest, src) -> Instruction:
    return Instruction(Op.MOV, dest=dest, b=src)


def shf(dest, src, kind: ShiftKind, amount: int) -> Instruction:
    return Instruction(Op.ALU_SHF, dest=dest, b=src, alu=AluOp.MOV, shift=kind, amount=amount)


def ld_field(dest, mask: int, src, rotate: int, *, clear: bool = False) -> Instruction:
    return Instruction(Op.LD_FIELD, dest=dest, b=src, mask=mask, amount=rotate % 32, clear=clear)


def nop() -> Instruction:
    return Instruction(Op.NOP)


def command(op: Op, mem: Memory, xfer: Xfer, a, b, count: int) -> Instruction:
    fixed = {Op.MEM_ADD32: 1, Op.MEM_ADD64: 2}.get(op)
    return Instruction(op, mem=mem, xfer=xfer, a=a, b=b, count=count if fixed is None else fixed, ctx_swap=True)


def emit_all(ctx, instrs) -> None:
    """Append each instruction through the context's emitter."""
    for ins in instrs:
        ctx.emit(ins)


def _fail(ctx, pc: int, message: str, hint: str | None = None) -> UnsupportedError:
    return UnsupportedError(message, where=ctx.where(pc), hint=hint)


def scratch(ctx) -> int:
    """A fresh scratch GPR number for the current eBPF instruction (from the context's pool)."""
    return ctx.tmp().n


def add_const(ctx, dest: int, src_lo_a: Gpr, value: int) -> GprBoth:
    """``ab<dest> = src + value`` (32-bit); a large constant goes through one more scratch register."""
    value = u32(value)
    if value <= 255:
        ctx.emit(alu(Op.ADD, GprBoth(dest), src_lo_a, Imm(value)))
    elif u32(-value) <= 255:
        ctx.emit(alu(Op.SUB, GprBoth(dest), src_lo_a, Imm(u32(-value))))
    else:
        spare = scratch(ctx)
        emit_all(ctx, load_const(GprBoth(spare), value))
        ctx.emit(alu(Op.ADD, GprBoth(dest), src_lo_a, Gpr(Bank.B, spare)))
    return GprBoth(dest)


def offset_operand(ctx, value: int):
    """An operand (immediate or B-bank scratch) holding the 32-bit ``value``."""
    value = u32(value)
    if value <= 255:
        return Imm(value)
    spare = scratch(ctx)
    emit_all(ctx, load_const(GprBoth(spare), value))
    return Gpr(Bank.B, spare)


def zero_hi(ctx, r: int) -> None:
    ctx.emit(Instruction(Op.IMMED, dest=hi_ab(r), imm=0))


def zero_hi_if_read(ctx, r: int) -> None:
    """The high word of a 32-bit (or narrower) result ``r`` of the current instruction is zero:
    with ``zext-elim`` or ``subreg``, written only when some path reads it."""
    if ctx.enabled("zext-elim") or ctx.enabled("subreg"):
        from .lower_alu import half_live_out

        if not half_live_out(ctx, ctx.pc, r, HI):
            return
    zero_hi(ctx, r)


# -- stack layout ----------------------------------------------------------------------

#: per function: return-address slot (1 word, padded to 8) + R6..R9 saved by its calls (8 words)
SAVE_AREA = 8 + 32
#: LM bytes below the first frame (keeps stack addresses away from 0)
LM_STACK_BASE = 64
#: bytes of each helper-argument bounce area (the largest key/value copied off the stack)
BOUNCE_SIZE = 64
#: per function that calls bpf_loop: the loop's index, count and callback context (lo, hi), above the save area
LOOP_AREA = 16


@dataclass(frozen=True)
class FrameLayout:
    """One function's static LM region: save area at ``base``, R10 = ``frame_pointer``."""

    name: str
    start: int            # eBPF pc of the function's first instruction
    base: int             # LM byte address of the save area
    depth: int            # stack bytes (rounded up to 8)
    loop_area: int = 0    # LOOP_AREA when the function calls bpf_loop

    @property
    def return_slot(self) -> int:
        return self.base

    @property
    def loop_slot(self) -> int:
        """LM address of the bpf_loop state words: index, count, callback context low and high."""
        return self.base + SAVE_AREA

    @property
    def save_slot(self) -> int:
        """LM address of the caller-saved R6..R9 words (lo, hi each) this function's calls use."""
        return self.base + 8

    @property
    def frame_pointer(self) -> int:
        return self.base + SAVE_AREA + self.loop_area + self.depth

    @property
    def end(self) -> int:
        return self.frame_pointer


@dataclass(frozen=True)
class StackLayout:
    """Static LM frames for every function; ``size`` = LM bytes used (image metadata stack size).

    ``bounce_key``/``bounce_value``: LM areas where helper calls copy a key/value that is not on the stack.
    """

    frames: dict                # function start pc -> FrameLayout
    bounce_key: int
    bounce_value: int
    size: int

    def frame_at(self, pc: int) -> FrameLayout:
        """The frame of the function containing ``pc``."""
        best = None
        for f in self.frames.values():
            if f.start <= pc and (best is None or f.start > best.start):
                best = f
        return best


def stack_layout(program, analysis) -> StackLayout:
    """Place each function's frame above every frame that can be live below it in a call chain."""
    funcs = {f.start: f for f in analysis.cfg.functions}
    depth = {}
    for start, f in funcs.items():
        depth[start] = _round8(analysis.stack_depth.get(f.name, 0))
    callers: dict[int, set[int]] = {s: set() for s in funcs}
    loops: dict[int, int] = {}
    for start, f in funcs.items():
        for _call_pc, callee in f.calls:
            callers.setdefault(callee, set()).add(start)
        # a bpf_loop callback runs above the frame of the function that loads its address and calls bpf_loop
        for pc in program.pcs:
            insn = program.at(pc)
            if f.start <= pc < f.end and insn.is_ld_imm64 and insn.src == PseudoSrc.FUNC:
                callers.setdefault(pc + 1 + insn.imm, set()).add(start)
            if f.start <= pc < f.end and insn.is_helper_call and insn.imm == Helper.loop:
                loops[start] = LOOP_AREA
    base: dict[int, int] = {}

    def place(start: int, seen: tuple = ()) -> int:
        if start in base:
            return base[start]
        if start in seen:
            raise UnsupportedError("recursive BPF-to-BPF calls", where=f"{program.name}: insn {start}")
        b = LM_STACK_BASE
        for c in callers.get(start, ()):
            b = max(b, place(c, seen + (start,)) + SAVE_AREA + loops.get(c, 0) + depth[c])
        base[start] = b
        return b

    frames = {}
    for start, f in funcs.items():
        frames[start] = FrameLayout(f.name, start, place(start), depth[start], loops.get(start, 0))
    top = max((fr.end for fr in frames.values()), default=LM_STACK_BASE)
    return StackLayout(frames, top, top + BOUNCE_SIZE, top + 2 * BOUNCE_SIZE + 8)


# -- LM pointer -------------------------------------------------------------------------


def set_lm_pointer(ctx, pointer: int, address) -> None:
    """Point LM index ``pointer`` at ``address`` (an int or a B-readable register) and wait it out."""
    if isinstance(address, int):
        s = scratch(ctx)
        emit_all(ctx, load_const(GprBoth(s), address))
        address = Gpr(Bank.B, s)
    ctx.emit(Instruction(Op.CSR_WR, b=address, csr=Csr(Csr.ACTIVE_LM_ADDR_0 + pointer)))
    for _ in range(LM_POINTER_DELAY):
        ctx.emit(nop())


# -- pointer-kind dispatch --------------------------------------------------------------


def _access(ctx, pc: int):
    facts = ctx.facts_at(pc)
    mem = facts.mem if facts is not None else None
    if mem is None:
        raise _fail(ctx, pc, "memory access the analysis has no facts for (unreachable or unverified)")
    return facts, mem


def _window(ctx, pc: int, mem, size: int, limit: int | None) -> bool:
    """True: backward window (the word ends with the access), False: forward (starts with it)."""
    lo, hi = mem.offset
    back_ok = lo >= 4 - size
    fwd_ok = limit is None or hi + 4 <= limit
    if mem.kind in (RegKind.PACKET, RegKind.PACKET_META):
        return back_ok                 # before the buffer start faults; the tail has room
    if fwd_ok:
        return False
    if back_ok:
        return True
    raise _fail(ctx, pc, f"{size}-byte access at map value offsets {lo}..{hi} of a {limit}-byte slot "
                         "could touch bytes outside the value",
                hint="use a constant offset or a 4/8-byte access")


#: helpers after which ``data`` may sit anywhere in the packet buffer (not at HEADROOM)
_MOVES_DATA = frozenset({Helper.xdp_adjust_head, Helper.skb_adjust_room, Helper.skb_change_head,
                         Helper.skb_pull_data})
ETH_HLEN = 14         # bpf_xdp_adjust_head refuses to leave a shorter packet


def _forward_may_overrun(ctx, mem, size: int) -> bool:
    """A narrow packet access that must use the forward window, which could run past the CTM buffer.

    The forward word ``[off, off + 4)`` of a 1- or 2-byte access near the end of a packet that fills
    the buffer (a 7936-byte frame) ends up to 3 bytes past the buffer.  It cannot while ``data`` is
    at HEADROOM (no helper moved it) and the offset stays 4 bytes short of the buffer's end, nor
    inside the first ETH_HLEN bytes after ``xdp_adjust_head`` (which never leaves fewer).
    """
    if mem.kind != RegKind.PACKET or size >= 4 or mem.offset[0] >= 4 - size:
        return False
    moves = ctx.state.get("lower_mem_moves_data")
    if moves is None:
        moves = {Helper(i.imm) for i in ctx.program.insns if i.is_helper_call and i.imm in _MOVES_DATA}
        ctx.state["lower_mem_moves_data"] = moves
    hi = mem.offset[1]
    if not moves:
        return HEADROOM + hi + 4 > CTM_BUFFER_SIZE
    return not (moves == {Helper.xdp_adjust_head} and hi + 4 <= ETH_HLEN)


def _either_window(ctx, insn: Insn, p: int, size: int, access) -> None:
    """Choose the window at run time: backward when the access is at least ``4 - size`` bytes into
    the packet (the word before it is packet), forward otherwise (the packet goes on after it).

    ``p`` is the pointer register; ``access(back, a, b)`` emits the access through CTM operands ``a``/``b``.
    """
    s, t = scratch(ctx), scratch(ctx)
    forward, done = ctx.new_label("pkf"), ctx.new_label("pkw")
    ctx.emit(Instruction(Op.CSR_RD, dest=GprBoth(s), csr=Csr.PKT_ADDR))
    ctx.emit(alu(Op.SUB, GprBoth(t), lo_a(p), Gpr(Bank.B, s)))
    ctx.emit(alu(Op.SUB, NoDest(), Gpr(Bank.A, t), offset_operand(ctx, 4 - size - insn.off)))
    ctx.emit(Instruction(Op.BR, cond=Cond.LT), target=forward)
    access(True, lo_a(p), offset_operand(ctx, insn.off - (4 - size)))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=done)
    ctx.emit.label(forward)
    access(False, lo_a(p), offset_operand(ctx, insn.off))
    ctx.emit.label(done)


def _mem_target(ctx, pc: int, insn_off: int, ptr: int, mem, size: int, back: bool):
    """(memory, a, b) operands addressing the word(s) of the access through register ``ptr``."""
    adj = insn_off - (4 - size if back else 0)
    if mem.kind in (RegKind.PACKET, RegKind.PACKET_META):
        return Memory.CTM, lo_a(ptr), offset_operand(ctx, adj)
    # EMEM: a = bits 39..32 (high word), b = low word + offset (never carries: tables are < 4 GiB)
    if adj == 0:
        return Memory.EMEM, hi_a(ptr), lo_b(ptr)
    s = scratch(ctx)
    add_const(ctx, s, lo_a(ptr), adj)
    return Memory.EMEM, hi_a(ptr), Gpr(Bank.B, s)


def _value_limit(ctx, mem) -> int | None:
    if mem.kind != RegKind.MAP_VALUE:
        return None
    m = ctx.program.map_named(mem.map)
    return _round8(max(m.value_size, 1))


# -- loads ------------------------------------------------------------------------------------


def lower_ldx(ctx, pc: int, insn: Insn) -> None:
    """LDX MEM B/H/W/DW (and MEMSX: sign-extending) from packet, map value, stack or context."""
    facts, mem = _access(ctx, pc)
    size = insn.size.nbytes
    d, p = insn.dst, insn.src
    kind = mem.kind
    if kind == RegKind.CTX:
        _load_ctx(ctx, pc, insn, mem)
        return
    if kind == RegKind.STACK:
        _load_stack(ctx, pc, insn, mem, facts)
    elif kind == RegKind.PACKET and _pkt_access(ctx, pc) is not None:
        role = _copy_roles(ctx).get(pc)
        if role is None:
            _cached_load(ctx, pc, insn, _pkt_access(ctx, pc))
        else:
            copy, keep = role
            if copy is not None:
                _pkt_fill(ctx, pc)
                _pkt_copy(ctx, copy)
            if not keep:
                return                 # a later load of the run sets the register
            plan = _pkt_plan(ctx)
            acc = _pkt_access(ctx, pc)
            window_load(ctx, d, lambda k: _pkt_word(plan, k), acc.off, acc.size)
    elif kind in (RegKind.PACKET, RegKind.MAP_VALUE) and _gathered(ctx, pc) is not None:
        _gathered_load(ctx, pc, insn, mem, _gathered(ctx, pc))
    elif _forward_may_overrun(ctx, mem, size):
        def load(back: bool, a, b) -> None:
            ctx.emit(command(Op.MEM_READ, Memory.CTM, IN0, a, b, 1))
            _extract(ctx, d, IN0, IN1, size, 8 * (4 - size) if back else 0)
        _either_window(ctx, insn, p, size, load)
    elif kind in (RegKind.PACKET, RegKind.PACKET_META, RegKind.MAP_VALUE):
        back = size < 4 and _window(ctx, pc, mem, size, _value_limit(ctx, mem))
        memory, a, b = _mem_target(ctx, pc, insn.off, p, mem, size, back)
        ctx.emit(command(Op.MEM_READ, memory, IN0, a, b, 2 if size == 8 else 1))
        _extract(ctx, d, IN0, IN1, size, 8 * (4 - size) if back else 0)
    else:
        raise _fail(ctx, pc, f"load through a {kind.name.lower()} pointer is not supported by the NFP lowering")
    if insn.mode == Mode.MEMSX:
        _sign_extend(ctx, d, size)
    elif size < 8:
        zero_hi_if_read(ctx, d)


def _extract(ctx, d: int, w0, w1, size: int, byte_shift: int) -> None:
    """``R<d>`` low word = ``size`` bytes of ``w0`` starting ``byte_shift`` bits up (DW: w0/w1)."""
    if size == 8:
        ctx.emit(mov(lo_ab(d), w0))
        ctx.emit(mov(hi_ab(d), w1))
    elif size == 4:
        ctx.emit(mov(lo_ab(d), w0))
    elif byte_shift + 8 * size == 32:
        ctx.emit(shf(lo_ab(d), w0, ShiftKind.SHR, byte_shift))
    else:
        ctx.emit(ld_field(lo_ab(d), (1 << size) - 1, w0, byte_shift, clear=True))


def _sign_extend(ctx, d: int, size: int) -> None:
    if size < 4:
        ctx.emit(shf(lo_ab(d), lo_b(d), ShiftKind.SHL, 32 - 8 * size))
        ctx.emit(shf(lo_ab(d), lo_b(d), ShiftKind.ASR, 32 - 8 * size))
    ctx.emit(shf(hi_ab(d), lo_b(d), ShiftKind.ASR, 31))


def _point_at_stack(ctx, pc: int, insn: Insn, ptr: int) -> int:
    """Point LM pointer 0 at the access; returns the word offset of its first byte from the pointer.

    LM words are read and written at any byte address, so a narrow access uses the word that
    starts with it (the frames sit far below the end of LM); no alignment is assumed.  From -O1 on,
    an R10-relative access reuses the pointer an earlier access of the same basic block set when
    it lies within the pointer's 16 words (the pointer's 3-cycle wait is long over by then).
    """
    state = ctx.state.setdefault("lower_mem", {})
    if ptr != 10:
        s = scratch(ctx)
        add_const(ctx, s, lo_a(ptr), insn.off)
        set_lm_pointer(ctx, LM_DATA_POINTER, Gpr(Bank.B, s))
        state["lm0"] = None
        return 0
    address = ctx_frame_pointer(ctx, pc) + insn.off
    if not ctx.enabled("lm-reuse"):
        set_lm_pointer(ctx, LM_DATA_POINTER, address)
        return 0
    block = ctx.analysis.cfg.block_at(pc).start
    words = 2 if insn.size == Size.DW else 1
    known = state.get("lm0")
    if known is not None and known[0] == block and known[1] < pc:
        delta = address - known[2]
        if delta % 4 == 0 and 0 <= delta // 4 and delta // 4 + words - 1 <= MAX_LM_WORD:
            return delta // 4
    base = address - 4 * (MAX_LM_WORD // 2 + 1)     # frames start well above LM address 32
    set_lm_pointer(ctx, LM_DATA_POINTER, base)
    state["lm0"] = (block, pc, base)
    return (address - base) // 4


def forget_lm_pointer(ctx) -> None:
    """LM pointer 0 no longer holds what the last stack access left there (e.g. after a call)."""
    ctx.state.setdefault("lower_mem", {})["lm0"] = None


def _load_stack(ctx, pc: int, insn: Insn, mem, facts) -> None:
    size = insn.size.nbytes
    k = _point_at_stack(ctx, pc, insn, insn.src)
    w0, w1 = LMem(LM_DATA_POINTER, k), LMem(LM_DATA_POINTER, min(k + 1, MAX_LM_WORD))
    _extract(ctx, insn.dst, w0, w1, size, 0)


def _ctx_field(ctx, pc: int, off: int, size: int, write: bool) -> str:
    """The context field a load/store of ``size`` bytes at ``off`` touches (a key of the field tables)."""
    xdp = ctx.program.prog_type == ProgType.XDP
    fields = XDP_CTX_FIELDS if xdp else SKB_CTX_FIELDS
    base = off & ~3
    field = fields.get(base)
    struct = "xdp_md" if xdp else "__sk_buff"
    if write:
        ok = (field in SKB_CTX_WRITABLE and (size == 4 or field.startswith("cb")) if not xdp
              else field == "rx_queue_index" and size == 4)
        if not ok or (size == 8 and not (field.startswith("cb") and base + 8 <= SKB_CB_END and off % 8 == 0)):
            raise _fail(ctx, pc, f"store to the {struct} field at offset {off} ({size} bytes) has no NFP equivalent",
                        hint="a TC program may write mark, priority, queue_mapping, tc_index, tc_classid and cb[]; "
                             "an XDP program only rx_queue_index (queue select)")
        return field
    pointer = field in ("data", "data_end", "data_meta")
    wide_cb = size == 8 and field is not None and field.startswith("cb") and base + 8 <= SKB_CB_END and off % 8 == 0
    if field is None or (off + size > base + 4 and not wide_cb) or (pointer and size != 4) or (xdp and size != 4):
        raise _fail(ctx, pc, f"{struct} field at offset {off} ({size} bytes) has no NFP equivalent",
                    hint="the NIC provides the packet pointers and length, the receive queue and interface and "
                         "(TC) the packet metadata: mark, priority, queue_mapping, protocol, pkt_type, hash, "
                         "tc_index, tc_classid, cb[]")
    return field


def _read_field(ctx, dest: GprBoth, field: str) -> None:
    """``dest`` = the 32-bit value of a context field (a CSR, a sum, or a constant)."""
    if field == "data_end":
        s = scratch(ctx)
        ctx.emit(Instruction(Op.CSR_RD, dest=GprBoth(s), csr=Csr.PKT_LEN))
        ctx.emit(Instruction(Op.CSR_RD, dest=dest, csr=Csr.PKT_ADDR))
        ctx.emit(alu(Op.ADD, dest, Gpr(Bank.A, dest.index), Gpr(Bank.B, s)))
    elif field == "zero":
        ctx.emit(Instruction(Op.IMMED, dest=dest, imm=0))
    else:
        ctx.emit(Instruction(Op.CSR_RD, dest=dest, csr=_CTX_CSR[field]))


def _load_ctx(ctx, pc: int, insn: Insn, mem) -> None:
    off = mem.offset[0]
    d = insn.dst
    size = insn.size.nbytes
    field = _ctx_field(ctx, pc, off, size, write=False)
    if size == 8:                     # two cb words
        _read_field(ctx, lo_ab(d), field)
        _read_field(ctx, hi_ab(d), SKB_CTX_FIELDS[(off & ~3) + 4])
        return
    _read_field(ctx, lo_ab(d), field)
    if size < 4:                      # a narrow load: its bytes of the little-endian field
        shift = 8 * (off - (off & ~3))
        if shift + 8 * size == 32:
            ctx.emit(shf(lo_ab(d), lo_b(d), ShiftKind.SHR, shift))
        else:
            ctx.emit(ld_field(lo_ab(d), (1 << size) - 1, lo_b(d), shift, clear=True))
    zero_hi_if_read(ctx, d)


def _store_ctx(ctx, pc: int, insn: Insn, mem, vlo, vhi) -> None:
    """A context store: the metadata CSR of the field (TC), TX_QUEUE for XDP's queue select.

    As the kernel rewrites them: tc_index and tc_classid keep 16 bits, queue_mapping keeps 16 bits
    and ignores a value of 0xffff or more, cb[] takes any aligned width (a narrow store merges)."""
    off = mem.offset[0]
    size = insn.size.nbytes
    field = _ctx_field(ctx, pc, off, size, write=True)
    if ctx.program.prog_type == ProgType.XDP:
        ctx.emit(Instruction(Op.CSR_WR, b=vlo, csr=Csr.TX_QUEUE))
        return
    csr = _CTX_CSR[field]
    if size == 8:
        ctx.emit(Instruction(Op.CSR_WR, b=vlo, csr=csr))
        ctx.emit(Instruction(Op.CSR_WR, b=vhi, csr=_CTX_CSR[SKB_CTX_FIELDS[(off & ~3) + 4]]))
        return
    if size < 4:
        s = scratch(ctx)
        pos = off & 3
        ctx.emit(Instruction(Op.CSR_RD, dest=GprBoth(s), csr=csr))
        ctx.emit(ld_field(GprBoth(s), ((1 << size) - 1) << pos, vlo, 32 - 8 * pos))
        ctx.emit(Instruction(Op.CSR_WR, b=Gpr(Bank.B, s), csr=csr))
        return
    if field not in SKB_U16_FIELDS:
        ctx.emit(Instruction(Op.CSR_WR, b=vlo, csr=csr))
        return
    if field == "queue_mapping" and insn.cls == InsnClass.ST and u32(insn.imm) >= 0xFFFF:
        return                         # the kernel drops the store
    s = scratch(ctx)
    ctx.emit(ld_field(GprBoth(s), 0b0011, vlo, 0, clear=True))
    if field == "queue_mapping" and insn.cls != InsnClass.ST:
        skip = ctx.new_label("qm")
        ctx.emit.alu(AluOp.SUB, None, vlo, 0xFFFF)
        ctx.emit.br(Cond.HS, skip)
        ctx.emit(Instruction(Op.CSR_WR, b=Gpr(Bank.B, s), csr=csr))
        ctx.emit.label(skip)
        return
    ctx.emit(Instruction(Op.CSR_WR, b=Gpr(Bank.B, s), csr=csr))


def layout_of(ctx) -> StackLayout:
    """The program's :class:`StackLayout`, computed once per lowering and kept on the context."""
    state = ctx.state.setdefault("lower_mem", {})
    if "layout" not in state:
        state["layout"] = stack_layout(ctx.program, ctx.analysis)
    return state["layout"]


def ctx_frame_pointer(ctx, pc: int) -> int:
    """LM address of R10 in the function containing ``pc``."""
    return layout_of(ctx).frame_at(pc).frame_pointer


def frame_pointer(ctx) -> int:
    """R10's value (a 32-bit LM byte address, high word 0) in the function being lowered.

    R10 lives in no register: the ALU lowering materialises ``mov rX, r10`` with this constant.
    """
    return ctx_frame_pointer(ctx, ctx.pc)


# -- stores -----------------------------------------------------------------------------------


def _value_words(ctx, insn: Insn, size: int):
    """(low, high) B-readable operands holding the stored value (register or sign-extended imm)."""
    if insn.cls == InsnClass.STX and insn.src != 10:
        return lo_b(insn.src), hi_b(insn.src)
    if insn.cls == InsnClass.STX:     # spilling the frame pointer: R10 lives in no register
        imm = frame_pointer(ctx)
    else:
        imm = insn.imm
    lo = u32(imm)
    hi = MASK32 if imm < 0 else 0
    s_lo, s_hi = scratch(ctx), scratch(ctx)
    emit_all(ctx, load_const(GprBoth(s_lo), lo))
    if size == 8:
        emit_all(ctx, load_const(GprBoth(s_hi), hi))
    return Gpr(Bank.B, s_lo), Gpr(Bank.B, s_hi)


def lower_store(ctx, pc: int, insn: Insn) -> None:
    """STX/ST MEM B/H/W/DW to packet, map value or stack."""
    facts, mem = _access(ctx, pc)
    size = insn.size.nbytes
    p = insn.dst
    kind = mem.kind
    vlo, vhi = _value_words(ctx, insn, size)
    if kind == RegKind.STACK:
        k = _point_at_stack(ctx, pc, insn, p)
        w0, w1 = LMem(LM_DATA_POINTER, k), LMem(LM_DATA_POINTER, min(k + 1, MAX_LM_WORD))
        if size == 8:
            ctx.emit(mov(w0, vlo))
            ctx.emit(mov(w1, vhi))
        elif size == 4:
            ctx.emit(mov(w0, vlo))
        else:
            s = scratch(ctx)
            ctx.emit(mov(GprBoth(s), w0))
            ctx.emit(ld_field(GprBoth(s), (1 << size) - 1, vlo, 0))
            ctx.emit(mov(w0, Gpr(Bank.B, s)))
        return
    if kind == RegKind.PACKET and _pkt_access(ctx, pc) is not None:
        if pc in _copy_roles(ctx):      # done by the run's copy at its first load
            mask = _pkt_plan(ctx).flush_after.get(pc)
            if mask:
                emit_all(ctx, pkt_flush_code(_pkt_plan(ctx), mask, scratch(ctx)))
            return
        _cached_store(ctx, pc, _pkt_access(ctx, pc), vlo, vhi)
        return
    if kind == RegKind.CTX:
        _store_ctx(ctx, pc, insn, mem, vlo, vhi)
        return
    if kind not in (RegKind.PACKET, RegKind.PACKET_META, RegKind.MAP_VALUE):
        raise _fail(ctx, pc, f"store through a {kind.name.lower()} pointer is not supported by the NFP lowering",
                    hint="XDP context fields cannot be written")
    if _forward_may_overrun(ctx, mem, size):
        def store(back: bool, a, b) -> None:
            _narrow_store(ctx, Memory.CTM, a, b, size, back, vlo)
        _either_window(ctx, insn, p, size, store)
        return
    back = size < 4 and _window(ctx, pc, mem, size, _value_limit(ctx, mem))
    memory, a, b = _mem_target(ctx, pc, insn.off, p, mem, size, back)
    if size >= 4:
        ctx.emit(mov(OUT0, vlo))
        if size == 8:
            ctx.emit(mov(OUT1, vhi))
        ctx.emit(command(Op.MEM_WRITE, memory, OUT0, a, b, size // 4))
        return
    _narrow_store(ctx, memory, a, b, size, back, vlo)


def _narrow_store(ctx, memory, a, b, size: int, back: bool, vlo) -> None:
    """A 1- or 2-byte store: read-modify-write of the word through ``a``/``b``."""
    s = scratch(ctx)
    pos = 4 - size if back else 0
    ctx.emit(command(Op.MEM_READ, memory, IN0, a, b, 1))
    ctx.emit(mov(GprBoth(s), IN0))
    ctx.emit(ld_field(GprBoth(s), ((1 << size) - 1) << pos, vlo, 32 - 8 * pos))
    ctx.emit(mov(OUT0, Gpr(Bank.B, s)))
    ctx.emit(command(Op.MEM_WRITE, memory, OUT0, a, b, 1))


# -- pkt-cache (passes/pkt_cache.py): packet bytes in transfer / next-neighbour registers ------------
#
# The window is packet bytes [0, 4n) from ``data`` in $in12..$in31 (filled by one CTM read);
# words some cached store writes are copied to n0..n19 at each fill and updated there, and
# written back through $out12..$out31 with one mem_write where the plan says.  Other code uses
# $in0..$in11 / $out0..$out11 (memcpy-gather: $in2..$in11; map-cache: n24..n31), so the cache
# survives it.

#: first transfer register ($in and $out) and NN register of the packet cache
PKT_XFER, PKT_NN = 12, 0


def _pkt_plan(ctx):
    return ctx.plan("pkt-cache") if ctx.enabled("pkt-cache") else None


def _pkt_access(ctx, pc: int):
    plan = _pkt_plan(ctx)
    return plan.accesses.get(pc) if plan is not None else None


def _pkt_in(k: int) -> Xfer:
    return Xfer(XferSide.IN, PKT_XFER + k)


def _pkt_out(k: int) -> Xfer:
    return Xfer(XferSide.OUT, PKT_XFER + k)


def _pkt_word(plan, k: int):
    """Where window word ``k``'s current value is: its NN copy (stored words) or its $in register."""
    return NN(PKT_NN + k) if plan.mirrored >> k & 1 else _pkt_in(k)


def _pkt_fill(ctx, pc: int) -> None:
    """The fill the plan puts before the access at ``pc``: one CTM read of the window's first n words."""
    plan = _pkt_plan(ctx)
    n = plan.fills.get(pc)
    if not n:
        return
    if pc in plan.early:
        from nfpjit.passes.pkt_cache import EARLY_SIGNAL

        ctx.emit(Instruction(Op.CTX_WAIT, signal=EARLY_SIGNAL))
        n = plan.early_words
    else:
        emit_all(ctx, _pkt_read(n, scratch(ctx), None))
    for k in plan.words_of(plan.mirrored & ((1 << n) - 1)):
        ctx.emit(mov(NN(PKT_NN + k), _pkt_in(k)))


def _pkt_read(n: int, s: int, signal: int | None) -> list[Instruction]:
    """Read window words [0, n) into $in12..: waiting for it, or in the background with ``signal``."""
    code = [Instruction(Op.CSR_RD, dest=GprBoth(s), csr=Csr.PKT_ADDR)]
    count = n
    if n > 8:                          # more than a direct count: (prev & 31) + 1 words
        code.append(mov(NoDest(), Imm(n - 1)))
        count = 0
    code.append(Instruction(Op.MEM_READ, mem=Memory.CTM, xfer=_pkt_in(0), a=Gpr(Bank.A, s), b=Imm(0), count=count,
                            ctx_swap=signal is None, signal=signal or 0))
    return code


def _cached_load(ctx, pc: int, insn: Insn, acc) -> None:
    """``R<dst>`` = ``acc.size`` packet bytes at ``acc.off`` from the cache (one instruction; two when straddling)."""
    _pkt_fill(ctx, pc)
    plan = _pkt_plan(ctx)
    if acc.count > 1:
        _dispatch_load(ctx, pc, insn, acc, lambda k: _pkt_word(plan, k))
        return
    window_load(ctx, insn.dst, lambda k: _pkt_word(plan, k), acc.off, acc.size)


def _dispatch_load(ctx, pc: int, insn: Insn, acc, word) -> None:
    """A load at one of ``acc.count`` offsets 4 apart, from the register the offset picks.

    ``t`` = (pointer - data) + insn.off - acc.off = 4 * index.  When none of the words is mirrored
    in an NN register (no cached store wrote them), ``T_INDEX`` = first register + ``t / 4`` and the
    bytes come from ``*$index`` (about 6 cycles with the CSR's delay); otherwise a tree of bit
    tests on ``t`` chooses a leaf, which extracts the bytes in the defer slot of its jump to the end
    (about 15 cycles).  Either is far cheaper than a CTM read.
    """
    d, p = insn.dst, insn.src
    s, t = scratch(ctx), scratch(ctx)
    ctx.emit(Instruction(Op.CSR_RD, dest=GprBoth(s), csr=Csr.PKT_ADDR))
    ctx.emit(alu(Op.SUB, GprBoth(t), lo_a(p), Gpr(Bank.B, s)))
    if insn.off != acc.off:
        add_const(ctx, t, Gpr(Bank.A, t), insn.off - acc.off)
    first, pos = divmod(acc.off, 4)
    if not any(_pkt_plan(ctx).mirrored >> (first + i) & 1 for i in range(acc.count)):
        ctx.emit(Instruction(Op.ALU_SHF, dest=GprBoth(t), a=Imm(PKT_XFER + first), b=Gpr(Bank.B, t), alu=AluOp.ADD,
                             shift=ShiftKind.SHR, amount=2))
        ctx.emit(Instruction(Op.CSR_WR, csr=Csr.T_INDEX, b=Gpr(Bank.B, t)))
        window_load(ctx, d, lambda k: XferIndex(), pos, acc.size)
        return
    done = ctx.new_label(f"pkd{pc}_")
    levels = (acc.count - 1).bit_length()

    def tree(prefix: int, level: int, last: bool) -> None:
        if level < 0:
            if not last:
                ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS, defer=1), target=done)
            window_load(ctx, d, word, acc.off + 4 * prefix, acc.size)
            return
        right = prefix | 1 << level
        if right >= acc.count:               # no offset has this bit set: only the left side
            tree(prefix, level - 1, last)
            return
        label = ctx.new_label(f"pkd{pc}b{level}_")
        ctx.emit(Instruction(Op.BR_BSET, a=Gpr(Bank.A, t), bit=2 + level), target=label)
        tree(prefix, level - 1, False)
        ctx.emit.label(label)
        tree(right, level - 1, last)

    tree(0, levels - 1, True)
    ctx.emit.label(done)


def window_load(ctx, d: int, word, off: int, size: int) -> None:
    """``R<d>`` low word (both words for 8 bytes) = ``size`` bytes at byte ``off`` of registers ``word(k)``."""
    k, pos = divmod(off, 4)

    def w(i):
        return word(k + i)

    if size == 8 and pos == 0:
        ctx.emit(mov(lo_ab(d), w(0)))
        ctx.emit(mov(hi_ab(d), w(1)))
    elif size == 8:
        _straddle(ctx, lo_ab(d), w(0), w(1), pos, 4)
        _straddle(ctx, hi_ab(d), w(1), w(2), pos, 4)
    elif pos + size <= 4:
        _extract(ctx, d, w(0), None, size, 8 * pos)
    else:
        _straddle(ctx, lo_ab(d), w(0), w(1), pos, size)


def _straddle(ctx, dest: GprBoth, w0, w1, pos: int, size: int) -> None:
    """``dest`` = ``size`` bytes starting at byte ``pos`` of ``w0`` and running into ``w1`` (little-endian).

    One ``dbl_shf`` for a whole word from two sources of different kinds (the two-source rule), else
    two ``ld_field`` rotates: bytes pos..3 of w0 to the bottom, then the rest from w1 above them.
    """
    if size == 4 and type(w0) is not type(w1):
        ctx.emit(Instruction(Op.DBL_SHF, dest=dest, a=w1, b=w0, amount=8 * pos))
        return
    low = (1 << (4 - pos)) - 1
    ctx.emit(ld_field(dest, low, w0, 8 * pos, clear=True))
    ctx.emit(ld_field(dest, ((1 << size) - 1) & ~low, w1, 8 * pos))


def _pkt_merge(ctx, k: int, start: int, nbytes: int, value, rotate: int) -> None:
    """Bytes ``[start, start + nbytes)`` of window word ``k``'s NN copy = bytes of ``rotr(value, rotate)``."""
    word = NN(PKT_NN + k)
    if start == 0 and nbytes == 4 and rotate % 32 == 0:
        ctx.emit(mov(word, value))
        return
    s = scratch(ctx)
    ctx.emit(mov(GprBoth(s), word))
    ctx.emit(ld_field(GprBoth(s), ((1 << nbytes) - 1) << start, value, rotate))
    ctx.emit(mov(word, Gpr(Bank.B, s)))


def _cached_store(ctx, pc: int, acc, vlo, vhi) -> None:
    """A packet store into the NN copies of the window words it touches (written back later)."""
    _pkt_fill(ctx, pc)
    plan = _pkt_plan(ctx)
    k, pos = divmod(acc.off, 4)
    if acc.size == 8:                  # the plan caches 8-byte stores only when word-aligned
        ctx.emit(mov(NN(PKT_NN + k), vlo))
        ctx.emit(mov(NN(PKT_NN + k + 1), vhi))
    else:
        first = min(4, pos + acc.size) - pos
        _pkt_merge(ctx, k, pos, first, vlo, 32 - 8 * pos)
        if pos + acc.size > 4:
            _pkt_merge(ctx, k + 1, 0, pos + acc.size - 4, vlo, 8 * (4 - pos))
    mask = plan.flush_after.get(pc)
    if mask:
        emit_all(ctx, pkt_flush_code(plan, mask, scratch(ctx)))


def pkt_flush_code(plan, mask: int, s: int) -> list[Instruction]:
    """Write the window words in ``mask`` back to the packet: $out copies, then one mem_write per run."""
    code: list[Instruction] = []
    words = plan.words_of(mask)
    runs: list[list[int]] = []
    for k in words:
        if runs and runs[-1][-1] == k - 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    code.append(Instruction(Op.CSR_RD, dest=GprBoth(s), csr=Csr.PKT_ADDR))
    for run in runs:
        for k in run:
            code.append(mov(_pkt_out(k), _pkt_word(plan, k)))
        count = len(run)
        if count > 8:
            code.append(mov(NoDest(), Imm(count - 1)))
            count = 0
        code.append(Instruction(Op.MEM_WRITE, mem=Memory.CTM, xfer=_pkt_out(run[0]), a=Gpr(Bank.A, s),
                                b=Imm(4 * run[0]), count=count, ctx_swap=True))
    return code


def _pkt_cache_epilogue(ctx) -> None:
    """Put the plan's write-backs "before pc" right after the label of each such instruction."""
    plan = _pkt_plan(ctx)
    if plan is None or not (plan.flush_before or plan.early and ctx.is_entry):
        return
    at = {ctx.label_for(pc): pc for pc in plan.flush_before}
    start = ctx.label_for(ctx.function.start_pc)
    body = ctx.function.body
    out = []
    for m in body:
        out.append(m)
        if m.label == start and plan.early and ctx.is_entry:
            from nfpjit.passes.pkt_cache import EARLY_SIGNAL

            out.extend(MInstr(ins, pc=ctx.function.start_pc)
                       for ins in _pkt_read(plan.early_words, SCRATCH_GPRS[0], EARLY_SIGNAL))
        pc = at.get(m.label) if m.label is not None else None
        if pc is not None:
            out.extend(MInstr(ins, pc=pc) for ins in pkt_flush_code(plan, plan.flush_before[pc], SCRATCH_GPRS[0]))
    body[:] = out


EPILOGUE = _pkt_cache_epilogue


# -- memcpy-gather (passes/memcpy_gather.py): a run of loads through one pointer, one bulk read ---------


def _gather_loads(ctx) -> dict:
    """The plan's gathered loads, less the runs the packet cache serves (computed once per lowering)."""
    state = ctx.state.setdefault("lower_mem", {})
    if "gather" not in state:
        plan = ctx.plan("memcpy-gather") if ctx.enabled("memcpy-gather") else None
        loads = dict(plan.loads) if plan is not None else {}
        pkt = _pkt_plan(ctx)
        if pkt is not None and loads:
            dropped = {g.first for pc, (g, _) in loads.items() if pc in pkt.accesses}
            loads = {pc: v for pc, v in loads.items() if v[0].first not in dropped}
        state["gather"] = loads
    return state["gather"]


def _gathered(ctx, pc: int):
    return _gather_loads(ctx).get(pc)


def _gathered_load(ctx, pc: int, insn: Insn, mem, how) -> None:
    """A load of a gathered run: the run's bulk read at its first load, then bytes from $in2.."""
    from nfpjit.passes.memcpy_gather import FIRST_XFER

    g, off = how
    if pc == g.first:
        memory, a, b = _mem_target(ctx, pc, g.base, g.ptr, mem, 4, False)
        count = g.words
        if count > 8:
            ctx.emit(mov(NoDest(), Imm(count - 1)))
            count = 0
        ctx.emit(Instruction(Op.MEM_READ, mem=memory, xfer=Xfer(XferSide.IN, FIRST_XFER), a=a, b=b, count=count,
                             ctx_swap=True))
    window_load(ctx, insn.dst, lambda k: Xfer(XferSide.IN, FIRST_XFER + k), off, insn.size.nbytes)


def _copy_roles(ctx) -> dict:
    """memcpy-gather's packet-to-packet copies the packet cache serves: pc -> (Copy at its first load or
    None, whether the load must still set its register); stores of a copy map to (None, False)."""
    state = ctx.state.setdefault("lower_mem", {})
    if "copies" in state:
        return state["copies"]
    roles: dict = {}
    plan = ctx.plan("memcpy-gather") if ctx.enabled("memcpy-gather") else None
    pkt = _pkt_plan(ctx)
    for c in (plan.copies.values() if plan is not None and pkt is not None else ()):
        pcs = [x for pair in c.pairs for x in pair[:2]]
        if not all(pc in pkt.accesses and pkt.accesses[pc].count == 1 for pc in pcs):
            continue
        if any(pc in pkt.fills for pc in pcs if pc != c.first):
            continue
        if any(pc in pkt.flush_after for pc in pcs if pc != c.pairs[-1][1]):
            continue
        last = {reg: load for load, _, _, _, reg in c.pairs}
        for load, store, _, _, reg in c.pairs:
            roles[load] = (c if load == c.first else None, last[reg] == load)
            roles[store] = (None, False)
    state["copies"] = roles
    return roles


def _pkt_copy(ctx, copy) -> None:
    """The bytes of a packet-to-packet copy, merged word by word into the NN copies of the window."""
    plan = _pkt_plan(ctx)
    moved = {x + copy.delta: x for _, _, off, size, _ in copy.pairs for x in range(off, off + size)}
    rotate = (-8 * copy.delta) % 32        # destination byte j takes source byte j - delta
    s = scratch(ctx)
    for w in sorted({b // 4 for b in moved}):
        groups: dict[int, int] = {}
        for j in range(4):
            if 4 * w + j in moved:
                k = moved[4 * w + j] // 4
                groups[k] = groups.get(k, 0) | 1 << j
        full = sum(bin(m).count("1") for m in groups.values()) == 4
        if not full:
            ctx.emit(mov(GprBoth(s), NN(PKT_NN + w)))
        for i, (k, mask) in enumerate(sorted(groups.items())):
            ctx.emit(ld_field(GprBoth(s), mask, _pkt_word(plan, k), rotate, clear=full and i == 0))
        ctx.emit(mov(NN(PKT_NN + w), Gpr(Bank.B, s)))


# -- atomics ------------------------------------------------------------------------------------


def lower_atomic(ctx, pc: int, insn: Insn) -> None:
    """Atomics: every one on map values (EMEM's atomic engine), every one on the stack (LM read-modify-write)."""
    facts, mem = _access(ctx, pc)
    size = insn.size.nbytes
    try:
        op = AtomicOp(insn.imm)
    except ValueError:
        raise _fail(ctx, pc, f"unknown atomic operation {insn.imm:#x}") from None
    p, v = insn.dst, insn.src
    if mem.kind == RegKind.MAP_VALUE and op == AtomicOp.ADD:
        memory, a, b = _mem_target(ctx, pc, insn.off, p, mem, 4, False)
        ctx.emit(mov(OUT0, lo_b(v)))
        if size == 8:
            ctx.emit(mov(OUT1, hi_b(v)))
        ctx.emit(command(Op.MEM_ADD64 if size == 8 else Op.MEM_ADD32, memory, OUT0, a, b, 0))
        return
    if mem.kind == RegKind.MAP_VALUE:
        _map_value_atomic(ctx, pc, insn, mem, op, size)
        return
    if mem.kind == RegKind.STACK and op.alu_op is not None:
        _stack_atomic(ctx, pc, insn, mem, facts, op, size)
        return
    if mem.kind == RegKind.STACK:
        _stack_exchange(ctx, pc, insn, op, size)
        return
    raise _fail(ctx, pc, f"atomic {op.name.lower()} on a {mem.kind.name.lower()} pointer is not supported "
                         "by the NFP lowering",
                hint="atomics work on map values and the stack; keep packet and context updates plain")


#: eBPF atomic operation -> the EMEM atomic engine's command
_ATOMIC_CMD = {
    AtomicOp.ADD: AtomicCmd.ADD, AtomicOp.FETCH_ADD: AtomicCmd.ADD,
    AtomicOp.AND: AtomicCmd.AND, AtomicOp.FETCH_AND: AtomicCmd.AND,
    AtomicOp.OR: AtomicCmd.OR, AtomicOp.FETCH_OR: AtomicCmd.OR,
    AtomicOp.XOR: AtomicCmd.XOR, AtomicOp.FETCH_XOR: AtomicCmd.XOR,
    AtomicOp.XCHG: AtomicCmd.SWAP, AtomicOp.CMPXCHG: AtomicCmd.CMP_SWAP,
}


def _map_value_atomic(ctx, pc: int, insn: Insn, mem, op: AtomicOp, size: int) -> None:
    """One ``mem_atomic32/64`` command: the memory unit reads, combines and writes the value as one
    operation (no other thread's command can come between) and returns the old value in $in.

    $out0 (and $out1) = the operand (src), for cmpxchg followed by the expected value (R0);
    the old value goes to src for the fetching forms and xchg, to R0 for cmpxchg (32-bit: zero-extended).
    """
    p, v = insn.dst, insn.src
    words = size // 4
    cmd = _ATOMIC_CMD[op]
    memory, a, b = _mem_target(ctx, pc, insn.off, p, mem, 4, False)
    outs = [Xfer(XferSide.OUT, k) for k in range(2 * words)]
    ctx.emit(mov(outs[0], lo_b(v)))
    if words == 2:
        ctx.emit(mov(outs[1], hi_b(v)))
    if cmd == AtomicCmd.CMP_SWAP:
        ctx.emit(mov(outs[words], lo_b(0)))
        if words == 2:
            ctx.emit(mov(outs[3], hi_b(0)))
    ctx.emit(Instruction(Op.MEM_ATOMIC64 if words == 2 else Op.MEM_ATOMIC32, mem=memory, xfer=OUT0, a=a, b=b,
                         count=words, ctx_swap=True, atomic=cmd))
    if not (op.fetches or cmd == AtomicCmd.SWAP):
        return
    dest = 0 if cmd == AtomicCmd.CMP_SWAP else v
    ctx.emit(mov(lo_ab(dest), IN0))
    if words == 2:
        ctx.emit(mov(hi_ab(dest), IN1))
    else:
        zero_hi(ctx, dest)


def _stack_exchange(ctx, pc: int, insn: Insn, op: AtomicOp, size: int) -> None:
    """xchg / cmpxchg on the stack (one core owns its LM, so a plain read-compare-write is atomic)."""
    k = _point_at_stack(ctx, pc, insn, insn.dst)
    v = insn.src
    w0, w1 = LMem(LM_DATA_POINTER, k), LMem(LM_DATA_POINTER, min(k + 1, MAX_LM_WORD))
    s0, s1 = scratch(ctx), scratch(ctx)
    ctx.emit(mov(GprBoth(s0), w0))
    if size == 8:
        ctx.emit(mov(GprBoth(s1), w1))
    skip = None
    if op == AtomicOp.CMPXCHG:
        skip = ctx.new_label(f"cmpxchg{pc}_")
        if size == 8:
            t, u = scratch(ctx), scratch(ctx)
            ctx.emit(alu(Op.XOR, GprBoth(t), Gpr(Bank.A, s0), lo_b(0)))
            ctx.emit(alu(Op.XOR, GprBoth(u), Gpr(Bank.A, s1), hi_b(0)))
            ctx.emit(alu(Op.OR, NoDest(), Gpr(Bank.A, t), Gpr(Bank.B, u)))
        else:
            ctx.emit(alu(Op.SUB, NoDest(), Gpr(Bank.A, s0), lo_b(0)))
        ctx.emit(Instruction(Op.BR, cond=Cond.NE), target=skip)
    ctx.emit(mov(w0, lo_b(v)))
    if size == 8:
        ctx.emit(mov(w1, hi_b(v)))
    if skip is not None:
        ctx.emit.label(skip)
    dest = 0 if op == AtomicOp.CMPXCHG else v
    ctx.emit(mov(lo_ab(dest), Gpr(Bank.B, s0)))
    if size == 8:
        ctx.emit(mov(hi_ab(dest), Gpr(Bank.B, s1)))
    else:
        zero_hi(ctx, dest)


_ATOMIC_ALU = {0x00: (Op.ADD, Op.ADDC), 0x40: (Op.OR, Op.OR), 0x50: (Op.AND, Op.AND), 0xA0: (Op.XOR, Op.XOR)}


def _stack_atomic(ctx, pc: int, insn: Insn, mem, facts, op: AtomicOp, size: int) -> None:
    k = _point_at_stack(ctx, pc, insn, insn.dst)
    lo_op, hi_op = _ATOMIC_ALU[int(op.alu_op)]
    v = insn.src
    w0, w1 = LMem(LM_DATA_POINTER, k), LMem(LM_DATA_POINTER, min(k + 1, MAX_LM_WORD))
    if op.fetches:
        # old value to scratch first: src may be updated with it only after the memory sees src
        s0, s1 = scratch(ctx), scratch(ctx)
        ctx.emit(mov(GprBoth(s0), w0))
        if size == 8:
            ctx.emit(mov(GprBoth(s1), w1))
    ctx.emit(alu(lo_op, w0, w0, lo_b(v)))
    if size == 8:
        ctx.emit(alu(hi_op, w1, w1, hi_b(v)))
    if op.fetches:
        ctx.emit(mov(lo_ab(v), Gpr(Bank.B, s0)))
        if size == 8:
            ctx.emit(mov(hi_ab(v), Gpr(Bank.B, s1)))
        else:
            zero_hi(ctx, v)


# -- ld_imm64 map references -----------------------------------------------------------------


def map_table_hi(index: int) -> int:
    """EMEM address bits 39..32 of map ``index``'s value table."""
    return EMEM_MAP_HI_BASE + index


def lower_ld_imm64_map(ctx, pc: int, insn: Insn) -> None:
    """``ld_imm64`` of a map (its table id, MAP_ID relocation) or of an address inside a global-data map's value.

    ``lower_alu``'s ld_imm64 handler calls this for the pseudo sources MAP_FD/MAP_IDX and
    MAP_VALUE/MAP_IDX_VALUE.
    """
    d = insn.dst
    if insn.src == PseudoSrc.FUNC:
        # a bpf_loop callback: the call site knows its target statically (the analysis' FUNC fact), so the
        # register only carries the callback's eBPF pc
        emit_all(ctx, load_const(lo_ab(d), u32(pc + 1 + insn.imm)))
        emit_all(ctx, load_const(hi_ab(d), 0))
        return
    if not 0 <= insn.imm < len(ctx.program.maps):
        raise _fail(ctx, pc, f"ld_imm64 refers to map {insn.imm}, which the program does not have")
    mdef = ctx.program.maps[insn.imm]
    if insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
        ctx.emit(Instruction(Op.IMMED, dest=lo_ab(d), imm=0), reloc=MReloc(RelocKind.MAP_ID, mdef.name))
        zero_hi_if_read(ctx, d)
    elif insn.src in (PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE):
        # the value of a global-data map (an ARRAY with one entry) sits at slot 0 of its EMEM table
        emit_all(ctx, load_const(lo_ab(d), u32(insn.imm2)))
        emit_all(ctx, load_const(hi_ab(d), map_table_hi(insn.imm)))
    else:
        raise _fail(ctx, pc, f"ld_imm64 with pseudo source {insn.src} is not a map reference")


#: the name lower_alu's ld_imm64 handler looks up for map references
lower_ld_imm64 = lower_ld_imm64_map


# -- legacy packet loads (ld_abs / ld_ind) ----------------------------------------------------

SKF_NET_OFF = -0x100000      # ld_abs/ld_ind offsets relative to the network header (after Ethernet)
SKF_LL_OFF = -0x200000       # ... and to the link-layer header (the frame start)
ETH_HLEN = 14


def lower_ld_abs(ctx, pc: int, insn: Insn) -> None:
    """ld_abs/ld_ind: R0 = the big-endian packet bytes at imm (+ src); out of the packet the program ends with 0.

    Negative offsets address the network header (SKF_NET_OFF) or the frame start (SKF_LL_OFF) as the
    kernel resolves them.  R1..R5 are clobbered, as after a helper call.
    """
    n = insn.size.nbytes
    fail = ctx.new_label(f"ldabs{pc}_")
    skip = ctx.new_label(f"ldabsok{pc}_")
    t = scratch(ctx)
    if insn.mode == Mode.ABS:
        off = insn.imm
        if SKF_NET_OFF <= off < 0:
            off += ETH_HLEN - SKF_NET_OFF
        elif SKF_LL_OFF <= off < 0:
            off -= SKF_LL_OFF
        if off < 0:
            _ld_abs_fail(ctx)
            return
        emit_all(ctx, load_const(GprBoth(t), off))
    else:
        add_const(ctx, t, lo_a(insn.src), insn.imm)
        _resolve_negative(ctx, pc, t, fail)
    # t + n <= pkt_len (t < 2**31 here, so the sum does not wrap)
    e, length = scratch(ctx), scratch(ctx)
    ctx.emit(alu(Op.ADD, GprBoth(e), Gpr(Bank.A, t), Imm(n)))
    ctx.emit(Instruction(Op.CSR_RD, dest=GprBoth(length), csr=Csr.PKT_LEN))
    ctx.emit(alu(Op.SUB, NoDest(), Gpr(Bank.A, length), Gpr(Bank.B, e)))
    ctx.emit(Instruction(Op.BR, cond=Cond.LO), target=fail)
    base = scratch(ctx)
    ctx.emit(Instruction(Op.CSR_RD, dest=GprBoth(base), csr=Csr.PKT_ADDR))
    ctx.emit(command(Op.MEM_READ, Memory.CTM, IN0, Gpr(Bank.A, base), Gpr(Bank.B, t), 1))
    if n == 1:
        ctx.emit(alu(Op.AND, lo_ab(0), IN0, Imm(0xFF)))
    elif n == 2:
        ctx.emit(ld_field(lo_ab(0), 0b0001, IN0, 8, clear=True))
        ctx.emit(ld_field(lo_ab(0), 0b0010, IN0, 24))
    else:
        ctx.emit(ld_field(lo_ab(0), 0b1010, IN0, 8, clear=True))
        ctx.emit(ld_field(lo_ab(0), 0b0101, IN0, 24))
    zero_hi(ctx, 0)
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=skip)
    ctx.emit.label(fail)
    _ld_abs_fail(ctx)
    ctx.emit.label(skip)


def _resolve_negative(ctx, pc: int, t: int, fail: str) -> None:
    """A negative runtime ld_ind offset in ``t``: rebase SKF_NET_OFF/SKF_LL_OFF offsets, else fail."""
    done = ctx.new_label(f"ldindpos{pc}_")
    ll = ctx.new_label(f"ldindll{pc}_")
    k = scratch(ctx)
    ctx.emit(Instruction(Op.BR_BCLR, a=Gpr(Bank.A, t), bit=31), target=done)
    emit_all(ctx, load_const(GprBoth(k), u32(SKF_NET_OFF)))
    ctx.emit(alu(Op.SUB, NoDest(), Gpr(Bank.A, t), Gpr(Bank.B, k)))
    ctx.emit(Instruction(Op.BR, cond=Cond.LT), target=ll)
    emit_all(ctx, load_const(GprBoth(k), ETH_HLEN - SKF_NET_OFF))
    ctx.emit(alu(Op.ADD, GprBoth(t), Gpr(Bank.A, t), Gpr(Bank.B, k)))
    ctx.emit(Instruction(Op.BR, cond=Cond.ALWAYS), target=done)
    ctx.emit.label(ll)
    emit_all(ctx, load_const(GprBoth(k), u32(SKF_LL_OFF)))
    ctx.emit(alu(Op.SUB, NoDest(), Gpr(Bank.A, t), Gpr(Bank.B, k)))
    ctx.emit(Instruction(Op.BR, cond=Cond.LT), target=fail)
    emit_all(ctx, load_const(GprBoth(k), -SKF_LL_OFF))
    ctx.emit(alu(Op.ADD, GprBoth(t), Gpr(Bank.A, t), Gpr(Bank.B, k)))
    ctx.emit.label(done)


def _ld_abs_fail(ctx) -> None:
    """The legacy loads' failure: the whole program returns 0 (from any call depth)."""
    ctx.emit(Instruction(Op.IMMED, dest=lo_ab(0), imm=0))
    zero_hi(ctx, 0)
    ctx.emit(Instruction(Op.HALT, b=Imm(0)))

_LDX = {InsnClass.LDX | Mode.MEM | sz for sz in Size} | {InsnClass.LDX | Mode.MEMSX | sz for sz in
                                                         (Size.B, Size.H, Size.W)}
_STORES = {cls | Mode.MEM | sz for cls in (InsnClass.ST, InsnClass.STX) for sz in Size}
_ATOMICS = {InsnClass.STX | Mode.ATOMIC | sz for sz in (Size.W, Size.DW)}

#: eBPF opcode byte -> handler, merged into nfpjit.jit.lower's table
_LD_LEGACY = {InsnClass.LD | mode | sz for mode in (Mode.ABS, Mode.IND) for sz in (Size.B, Size.H, Size.W)}

HANDLERS = {
    **{int(code): lower_ld_abs for code in _LD_LEGACY},
    **{int(code): lower_ldx for code in _LDX},
    **{int(code): lower_store for code in _STORES},
    **{int(code): lower_atomic for code in _ATOMICS},
}


__all__ = [
    "LM_DATA_POINTER", "LM_POINTER_DELAY", "SAVE_AREA", "LM_STACK_BASE",
    "FrameLayout", "StackLayout", "stack_layout", "set_lm_pointer", "forget_lm_pointer", "ctx_frame_pointer",
    "lower_ldx", "lower_store", "lower_atomic", "lower_ld_imm64_map", "lower_ld_imm64", "frame_pointer", "map_table_hi", "HANDLERS",
    "layout_of", "scratch",
    "lo_a", "lo_b", "hi_a", "hi_b", "lo_ab", "hi_ab",
]

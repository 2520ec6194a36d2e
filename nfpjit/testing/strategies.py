"""A hypothesis strategy for eBPF programs the kernel verifier accepts, shaped like clang output.

:func:`programs` draws XDP (or TC direct-action) programs built from blocks a
compiler emits: ALU/ALU32 arithmetic (every operation, including the v4
signed division, sign-extending moves and byte swaps) on registers that are
always initialised, bounds-checked packet loads and stores, stack spills and
fills of bytes known to be written, map lookups with NULL checks and atomic
operations on the value, hash updates and deletes, direct global-data access,
forward branches, bounded loops with a constant trip count, BPF-to-BPF calls, ``bpf_loop``
with a callback updating the caller's stack
early exits, packet and checksum helpers (``bpf_csum_diff``, ``bpf_xdp_load/store_bytes``,
``bpf_skb_load/store_bytes``), (XDP) ``bpf_xdp_adjust_head/tail`` with in- and out-of-range
deltas and (TC without subprograms) ``ld_abs``/``ld_ind``.  Every program returns a valid action (``r0 & 3`` or a
constant 0..3).

Register discipline (what keeps the verifier happy): r6 = ctx, r7 = data,
r8 = data_end for the whole of the entry function; r0-r5 and r9 hold
scalars.  A block that turns a register into a pointer (or calls something
that clobbers r1-r5) sets those registers back to constants before it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import (
    AluOp,
    AtomicOp,
    CallKind,
    Helper,
    InsnClass,
    JmpOp,
    MapType,
    Mode,
    ProgType,
    PseudoSrc,
    Size,
    Source,
)
from nfpjit.ebpf.program import Function, MapDef, Program

__all__ = ["programs", "feature_programs", "GENERATED_MAPS", "XDP_HELPER_MAPS", "ProgramShape", "tc_programs",
           "tc_packet_ins", "TC_READ_FIELDS", "TC_WRITE_FIELDS"]

CTX, DATA, DATA_END, FP = 6, 7, 8, 10
SCALARS = (0, 1, 2, 3, 4, 5, 9)
VALUE_SIZE = 16
GENERATED_MAPS = (
    MapDef("arr", MapType.ARRAY, 4, VALUE_SIZE, 4, origin="asm"),
    MapDef("hsh", MapType.HASH, 4, VALUE_SIZE, 8, origin="asm"),
    MapDef("glb", MapType.ARRAY, 4, VALUE_SIZE, 1, initial=bytes(range(1, VALUE_SIZE + 1)), origin="global"),
)
_ARR, _HSH, _GLB = 0, 1, 2
# With programs(xdp_helpers=True): redirect maps, queue/stack, ring buffer, perf events, map-in-map.
_INNER = MapDef("inn", MapType.ARRAY, 4, VALUE_SIZE, 4, origin="asm")
XDP_HELPER_MAPS = (
    MapDef("dev", MapType.DEVMAP, 4, 4, 4, origin="asm"),
    MapDef("xsk", MapType.XSKMAP, 4, 4, 4, origin="asm"),
    MapDef("cpu", MapType.CPUMAP, 4, 4, 4, origin="asm"),
    MapDef("que", MapType.QUEUE, 0, 8, 4, origin="asm"),
    MapDef("stk", MapType.STACK, 0, 8, 4, origin="asm"),
    MapDef("rb", MapType.RINGBUF, 0, 0, 4096, origin="asm"),
    MapDef("ev", MapType.PERF_EVENT_ARRAY, 4, 4, 4, origin="asm"),
    MapDef("mim", MapType.ARRAY_OF_MAPS, 4, 4, 2, origin="asm",
           inner=MapDef("mim.inner", MapType.ARRAY, 4, VALUE_SIZE, 4, origin="asm"),
           slots=((bytes(4), _INNER),)),
)
_DEV, _XSK, _CPU, _QUE, _STK, _RB, _EV, _MIM = range(3, 11)
_FIB, _MTU, _QVAL = -200, -208, -136     # stack: fib params (64 bytes), mtu_len, a queue/ring value
# (data, data_end) offsets in the context struct; extra readable u32 scalar fields.
# (xdp_md.egress_ifindex is readable only by devmap programs.)
_CTX = {ProgType.XDP: (0, 4, (12, 16)),
        ProgType.SCHED_CLS: (76, 80, (0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72,
                                      84, 160, 164, 176))}
# __sk_buff fields a TC program may write: mark, priority, tc_index, cb[0..4], tc_classid.
_CTX_WRITABLE = {ProgType.XDP: (), ProgType.SCHED_CLS: (8, 32, 44, 48, 52, 56, 60, 64, 72)}
_SIZES = (Size.B, Size.H, Size.W, Size.DW)
_CONDS = (JmpOp.JEQ, JmpOp.JGT, JmpOp.JGE, JmpOp.JSET, JmpOp.JNE, JmpOp.JSGT, JmpOp.JSGE, JmpOp.JLT,
          JmpOp.JLE, JmpOp.JSLT, JmpOp.JSLE)
_ATOMICS = tuple(AtomicOp)
_IMMS = st.sampled_from([0, 1, -1, 2, 3, 7, 8, 31, 32, 63, 64, 0x7FFFFFFF, -0x80000000, 0xFF, 0x1234]) | \
    st.integers(-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class ProgramShape:
    """Knobs for :func:`programs`."""

    prog_type: ProgType = ProgType.XDP
    max_blocks: int = 12
    max_depth: int = 2
    subprograms: bool = True
    adjust: bool = True      # XDP: bpf_xdp_adjust_head/tail blocks
    xdp_helpers: bool = False  # XDP: redirect maps, fib_lookup, check_mtu, queues, ring buffer, map-in-map


# -- emission --------------------------------------------------------------------------------

class _Label:
    pass


@dataclass
class _Emitter:
    insns: list = field(default_factory=list)   # Insn, or (Insn, _Label) for a branch/call to resolve
    marks: dict = field(default_factory=dict)   # _Label -> instruction index

    def emit(self, insn: Insn, target: _Label | None = None) -> None:
        self.insns.append((insn, target) if target is not None else insn)

    def mark(self, label: _Label) -> None:
        self.marks[label] = len(self.insns)

    def finish(self) -> tuple[Insn, ...]:
        pcs, pc = [], 0
        for item in self.insns:
            pcs.append(pc)
            pc += (item[0] if isinstance(item, tuple) else item).width
        pcs.append(pc)
        out = []
        for n, item in enumerate(self.insns):
            if isinstance(item, tuple):
                insn, label = item
                rel = pcs[self.marks[label]] - pcs[n] - 1
                if insn.is_local_call or insn.is_ld_imm64:  # call / ld_imm64 func: the offset is in imm
                    insn = Insn(insn.code, insn.dst, insn.src, 0, rel, 0)
                elif insn.cls == InsnClass.JMP32 and insn.jmp_op == JmpOp.JA:
                    insn = Insn(insn.code, 0, 0, 0, rel)
                else:
                    insn = Insn(insn.code, insn.dst, insn.src, rel, insn.imm)
                item = insn
            out.append(item)
        return tuple(out)


def _alu(cls: InsnClass, op: AluOp, dst: int, *, src: int | None = None, imm: int = 0, off: int = 0) -> Insn:
    if src is None:
        return Insn(cls | op | Source.K, dst, 0, off, imm)
    return Insn(cls | op | Source.X, dst, src, off, 0)


def _mov(dst: int, imm: int) -> Insn:
    return _alu(InsnClass.ALU64, AluOp.MOV, dst, imm=imm)


def _movr(dst: int, src: int) -> Insn:
    return _alu(InsnClass.ALU64, AluOp.MOV, dst, src=src)


def _ldx(size: Size, dst: int, src: int, off: int, signed: bool = False) -> Insn:
    return Insn(InsnClass.LDX | (Mode.MEMSX if signed else Mode.MEM) | size, dst, src, off)


def _stx(size: Size, dst: int, src: int, off: int) -> Insn:
    return Insn(InsnClass.STX | Mode.MEM | size, dst, src, off)


def _st(size: Size, dst: int, off: int, imm: int) -> Insn:
    return Insn(InsnClass.ST | Mode.MEM | size, dst, 0, off, imm)


def _jmp(op: JmpOp, dst: int, *, src: int | None = None, imm: int = 0, cls: InsnClass = InsnClass.JMP) -> Insn:
    if src is None:
        return Insn(cls | op | Source.K, dst, 0, 0, imm)
    return Insn(cls | op | Source.X, dst, src, 0, 0)


_JA = Insn(InsnClass.JMP | JmpOp.JA)
_EXIT = Insn(InsnClass.JMP | JmpOp.EXIT)


def _call_helper(helper: Helper) -> Insn:
    return Insn(InsnClass.JMP | JmpOp.CALL, 0, CallKind.HELPER, 0, int(helper))


# -- the generator ----------------------------------------------------------------------------

class _Gen:
    def __init__(self, draw, shape: ProgramShape):
        self.draw = draw
        self.shape = shape
        self.e = _Emitter()
        self.stack_init: set[int] = set()     # stack bytes (as negative offsets) written on every path
        self.callees: list[_Label] = []
        self.callbacks: list[_Label] = []
        self.with_bpf_loop = shape.subprograms and draw(st.integers(0, 3)) == 0

    def d(self, strategy):
        return self.draw(strategy)

    def reinit(self, regs) -> None:
        for r in regs:
            self.e.emit(_mov(r, self.d(_IMMS)))

    # Blocks ------------------------------------------------------------------------------
    def alu(self, pool=SCALARS) -> None:
        cls = self.d(st.sampled_from([InsnClass.ALU64, InsnClass.ALU]))
        op = self.d(st.sampled_from(list(AluOp)))
        dst = self.d(st.sampled_from(pool))
        bits = 64 if cls == InsnClass.ALU64 else 32
        use_reg = self.d(st.booleans())
        if op == AluOp.NEG:
            self.e.emit(_alu(cls, op, dst))
        elif op == AluOp.END:
            width = self.d(st.sampled_from([16, 32, 64]))
            if cls == InsnClass.ALU64:
                self.e.emit(Insn(InsnClass.ALU64 | AluOp.END | Source.K, dst, 0, 0, width))  # bswap
            else:
                self.e.emit(Insn(InsnClass.ALU | AluOp.END | (Source.X if use_reg else Source.K), dst, 0, 0, width))
        elif op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
            if use_reg:
                self.e.emit(_alu(cls, op, dst, src=self.d(st.sampled_from(pool))))
            else:
                self.e.emit(_alu(cls, op, dst, imm=self.d(st.integers(0, bits - 1))))
        elif op in (AluOp.DIV, AluOp.MOD):
            off = self.d(st.sampled_from([0, 0, 1]))
            if use_reg:  # division by a register that may be zero is defined (0 / unchanged)
                self.e.emit(_alu(cls, op, dst, src=self.d(st.sampled_from(pool)), off=off))
            else:
                imm = self.d(_IMMS.filter(lambda v: v != 0))
                self.e.emit(_alu(cls, op, dst, imm=imm, off=off))
        elif op == AluOp.MOV:
            kind = self.d(st.integers(0, 5))
            if kind == 0:
                self.e.emit(Insn.ld_imm64(dst, self.d(st.integers(0, (1 << 64) - 1))))
            elif kind == 1 and use_reg:
                widths = (8, 16, 32) if cls == InsnClass.ALU64 else (8, 16)
                self.e.emit(_alu(cls, op, dst, src=self.d(st.sampled_from(pool)), off=self.d(st.sampled_from(widths))))
            elif use_reg:
                self.e.emit(_alu(cls, op, dst, src=self.d(st.sampled_from(pool))))
            else:
                self.e.emit(_alu(cls, op, dst, imm=self.d(_IMMS)))
        else:
            if use_reg:
                self.e.emit(_alu(cls, op, dst, src=self.d(st.sampled_from(pool))))
            else:
                self.e.emit(_alu(cls, op, dst, imm=self.d(_IMMS)))

    def packet(self) -> None:
        size = self.d(st.sampled_from(_SIZES))
        off = self.d(st.integers(0, 64))
        tmp = self.d(st.sampled_from((1, 2, 3, 4, 5)))
        skip = _Label()
        self.e.emit(_movr(tmp, DATA))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, tmp, imm=off + size.nbytes))
        if self.d(st.booleans()):
            self.e.emit(_jmp(JmpOp.JGT, tmp, src=DATA_END), skip)
        else:
            self.e.emit(_jmp(JmpOp.JLT, DATA_END, src=tmp), skip)
        for _ in range(self.d(st.integers(1, 3))):
            what = self.d(st.integers(0, 3))
            pool = tuple(r for r in SCALARS if r != tmp)
            if what == 0:
                self.e.emit(_ldx(size, self.d(st.sampled_from(pool)), DATA, off))
            elif what == 1 and size != Size.DW:
                self.e.emit(_ldx(size, self.d(st.sampled_from(pool)), DATA, off, signed=True))
            elif what == 2:
                self.e.emit(_stx(size, DATA, self.d(st.sampled_from(pool)), off))
            else:
                self.e.emit(_st(size, DATA, off, self.d(_IMMS)))
        self.e.mark(skip)
        self.reinit([tmp])

    def stack(self) -> None:
        size = self.d(st.sampled_from(_SIZES))
        n = size.nbytes
        slot = -n * self.d(st.integers(1, 64 // n))
        if self.d(st.booleans()) or not self.stack_init:
            if self.d(st.booleans()):
                self.e.emit(_stx(size, FP, self.d(st.sampled_from(SCALARS)), slot))
            else:
                self.e.emit(_st(size, FP, slot, self.d(_IMMS)))
            if self.depth == 0:
                self.stack_init |= set(range(slot, slot + n))
        else:
            ok = [o for o in sorted(self.stack_init) if o % n == 0 and all(b in self.stack_init for b in range(o, o + n))]
            if not ok:
                return
            signed = size != Size.DW and self.d(st.booleans())
            self.e.emit(_ldx(size, self.d(st.sampled_from(SCALARS)), FP, self.d(st.sampled_from(ok)), signed))

    def ctx_field(self) -> None:
        writable = _CTX_WRITABLE[self.shape.prog_type]
        if writable and self.d(st.integers(0, 2)) == 0:
            self.e.emit(_stx(Size.W, CTX, self.d(st.sampled_from(SCALARS)), self.d(st.sampled_from(writable))))
            return
        fields = _CTX[self.shape.prog_type][2]
        self.e.emit(_ldx(Size.W, self.d(st.sampled_from(SCALARS)), CTX, self.d(st.sampled_from(fields))))

    def _key(self) -> None:
        if self.d(st.booleans()):
            self.e.emit(_st(Size.W, FP, -4, self.d(st.integers(0, 9))))
        else:
            r = self.d(st.sampled_from(SCALARS))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.AND, r, imm=self.d(st.sampled_from([3, 7, 15]))))
            self.e.emit(_stx(Size.W, FP, r, -4))

    def value_ops(self, base: int) -> None:
        pool = tuple(r for r in SCALARS if r != base)
        for _ in range(self.d(st.integers(1, 4))):
            what = self.d(st.integers(0, 3))
            size = self.d(st.sampled_from(_SIZES))
            off = size.nbytes * self.d(st.integers(0, VALUE_SIZE // size.nbytes - 1))
            if what == 0:
                self.e.emit(_ldx(size, self.d(st.sampled_from(pool)), base, off))
            elif what == 1:
                self.e.emit(_stx(size, base, self.d(st.sampled_from(pool)), off))
            elif what == 2:
                self.e.emit(_st(size, base, off, self.d(_IMMS)))
            else:
                asize = self.d(st.sampled_from([Size.W, Size.DW]))
                aoff = asize.nbytes * self.d(st.integers(0, VALUE_SIZE // asize.nbytes - 1))
                op = self.d(st.sampled_from(_ATOMICS))
                src = self.d(st.sampled_from(tuple(r for r in pool if r != 0)))
                self.e.emit(Insn(InsnClass.STX | Mode.ATOMIC | asize, base, src, aoff, int(op)))

    def _lookup(self, which: int, null: _Label) -> None:
        """r1 = the value of map ``which`` at a drawn key (a jump to ``null`` when absent); r0, r2-r5 scalars."""
        self._key()
        self.e.emit(Insn.ld_imm64(1, which, PseudoSrc.MAP_FD))
        self.e.emit(_movr(2, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=-4))
        self.e.emit(_call_helper(Helper.map_lookup_elem))
        self.e.emit(_jmp(JmpOp.JEQ, 0, imm=0), null)
        self.e.emit(_movr(1, 0))
        self.reinit([0, 2, 3, 4, 5])

    def map_lookup(self) -> None:
        which = self.d(st.sampled_from([_ARR, _HSH]))
        null = _Label()
        self._lookup(which, null)
        self.value_ops(1)
        self.e.mark(null)
        self.reinit([0, 1, 2, 3, 4, 5])

    def map_update(self) -> None:
        self._key()
        for off in range(-4 - VALUE_SIZE, -4, 4):
            self.e.emit(_st(Size.W, FP, off - 4, self.d(_IMMS)))
        if self.depth == 0:  # key at fp-4..-1, value at fp-24..-9; fp-8..-5 stays unwritten
            self.stack_init |= set(range(-8 - VALUE_SIZE, -8)) | set(range(-4, 0))
        self.e.emit(Insn.ld_imm64(1, _HSH, PseudoSrc.MAP_FD))
        self.e.emit(_movr(2, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=-4))
        if self.d(st.integers(0, 3)) == 0:
            self.e.emit(_call_helper(Helper.map_delete_elem))
        else:
            self.e.emit(_movr(3, FP))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 3, imm=-8 - VALUE_SIZE))
            self.e.emit(_mov(4, self.d(st.sampled_from([0, 0, 1, 2]))))
            self.e.emit(_call_helper(Helper.map_update_elem))
        self.reinit([1, 2, 3, 4, 5])  # r0 holds the helper's (scalar) result

    def global_data(self) -> None:
        self.e.emit(Insn.ld_imm64(1, _GLB, PseudoSrc.MAP_VALUE))
        self.value_ops(1)
        self.reinit([1])

    def adjust(self) -> None:
        """bpf_xdp_adjust_head/tail, then reload data/data_end (the helpers invalidate packet pointers)."""
        helper = self.d(st.sampled_from([Helper.xdp_adjust_head, Helper.xdp_adjust_tail]))
        if helper == Helper.xdp_adjust_head:
            delta = self.d(st.sampled_from([-256, -220, -64, -14, -4, 0, 4, 14, 34, 60, 1000]) | st.integers(-300, 100))
        else:
            delta = self.d(st.sampled_from([-1000, -60, -4, 0, 4, 64, 255, 256, 257, 1024, 3000])
                           | st.integers(-200, 400))
        self.e.emit(_movr(1, CTX))
        self.e.emit(_mov(2, delta))
        self.e.emit(_call_helper(helper))
        data_off, end_off, _ = _CTX[self.shape.prog_type]
        self.e.emit(_ldx(Size.W, DATA, CTX, data_off))
        self.e.emit(_ldx(Size.W, DATA_END, CTX, end_off))
        self.reinit([1, 2, 3, 4, 5])

    def helper(self) -> None:
        """A packet/checksum helper on stack buffers fp-64..-49 ("from") and fp-48..-33 ("to")."""
        for off in range(-64, -32, 4):
            self.e.emit(_st(Size.W, FP, off, self.d(_IMMS)))
        if self.depth == 0:
            self.stack_init |= set(range(-64, -32))
        xdp = self.shape.prog_type == ProgType.XDP
        which = self.d(st.sampled_from(["csum_diff", "load", "store", "len" if xdp else "load"]))
        length = self.d(st.sampled_from([1, 2, 4, 8, 16]))
        offset = self.d(st.sampled_from([0, 6, 12, 14, 23, 34, 60, 200]) | st.integers(0, 100))
        if which == "csum_diff":
            self.e.emit(_movr(1, FP))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 1, imm=-64))
            self.e.emit(_mov(2, self.d(st.sampled_from([0, 4, 8, 16]))))
            self.e.emit(_movr(3, FP))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 3, imm=-48))
            self.e.emit(_mov(4, self.d(st.sampled_from([0, 4, 8, 16]))))
            self.e.emit(_mov(5, self.d(_IMMS)))
            self.e.emit(_call_helper(Helper.csum_diff))
        elif which == "len":
            self.e.emit(_movr(1, CTX))
            self.e.emit(_call_helper(Helper.xdp_get_buff_len))
        else:
            self.e.emit(_movr(1, CTX))
            self.e.emit(_mov(2, offset))
            self.e.emit(_movr(3, FP))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 3, imm=-64))
            self.e.emit(_mov(4, length))
            if xdp:
                self.e.emit(_call_helper(Helper.xdp_load_bytes if which == "load" else Helper.xdp_store_bytes))
            elif which == "load":
                self.e.emit(_call_helper(Helper.skb_load_bytes))
            else:
                self.e.emit(_mov(5, 0))
                self.e.emit(_call_helper(Helper.skb_store_bytes))
        data_off, end_off, _ = _CTX[self.shape.prog_type]
        self.e.emit(_ldx(Size.W, DATA, CTX, data_off))   # store helpers invalidate packet pointers
        self.e.emit(_ldx(Size.W, DATA_END, CTX, end_off))
        self.reinit([1, 2, 3, 4, 5])

    # -- the XDP helper set (programs(xdp_helpers=True)) ----------------------------------------
    def _stack_words(self, start: int, n: int, values=None) -> None:
        for i in range(n):
            v = values[i] if values is not None and i < len(values) else self.d(_IMMS)
            v &= 0xFFFF_FFFF
            self.e.emit(_st(Size.W, FP, start + 4 * i, v - (1 << 32) if v >> 31 else v))
        if self.depth == 0:
            self.stack_init |= set(range(start, start + 4 * n))

    def xdp_redirect(self) -> None:
        which = self.d(st.sampled_from([_DEV, _XSK, _CPU]))
        flags = self.d(st.sampled_from([0, 1, 2, 3, 8, 16, 24, 10, 4, 0x20]))
        self.e.emit(Insn.ld_imm64(1, which, PseudoSrc.MAP_FD))
        if self.d(st.booleans()):
            self.e.emit(_mov(2, self.d(st.integers(0, 5))))
        else:
            self.e.emit(_movr(2, self.d(st.sampled_from(SCALARS))))
        self.e.emit(_mov(3, flags))
        self.e.emit(_call_helper(Helper.redirect_map))
        if self.depth == 0 and self.d(st.booleans()):
            skip = _Label()
            self.e.emit(_jmp(JmpOp.JNE, 0, imm=4), skip)   # XDP_REDIRECT: the verdict
            self.e.emit(_EXIT)
            self.e.mark(skip)
        self.reinit([1, 2, 3, 4, 5])

    def xdp_map_lookup(self) -> None:
        """Lookups of redirect maps (empty in a test run: NULL) and of the map-in-map (the inner map)."""
        xdp = self.shape.prog_type == ProgType.XDP
        which = self.d(st.sampled_from([_DEV, _XSK, _MIM, _MIM] if xdp else [_MIM]))
        null = _Label()
        self.e.emit(_st(Size.W, FP, -4, self.d(st.integers(0, 2))))
        self.e.emit(Insn.ld_imm64(1, which, PseudoSrc.MAP_FD))
        self.e.emit(_movr(2, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=-4))
        self.e.emit(_call_helper(Helper.map_lookup_elem))
        self.e.emit(_jmp(JmpOp.JEQ, 0, imm=0), null)
        if which == _MIM:   # r0 = the inner map: look up in it
            self.e.emit(_st(Size.W, FP, -4, self.d(st.integers(0, 5))))
            self.e.emit(_movr(1, 0))
            self.e.emit(_movr(2, FP))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=-4))
            self.e.emit(_call_helper(Helper.map_lookup_elem))
            self.e.emit(_jmp(JmpOp.JEQ, 0, imm=0), null)
            self.e.emit(_movr(1, 0))
            self.reinit([0, 2, 3, 4, 5])
            self.value_ops(1)
        elif which == _DEV:
            self.e.emit(_ldx(Size.W, self.d(st.sampled_from((1, 2, 3, 4, 5, 9))), 0, 0))
        self.e.mark(null)
        self.reinit([0, 1, 2, 3, 4, 5])

    def fib_lookup(self) -> None:
        family = self.d(st.sampled_from([2, 2, 10, 10, 0, 7]))
        ifindex = self.d(st.sampled_from([0, 1, 1, 1, 0x7FFF0001]))
        words = [family | (self.d(st.sampled_from([6, 17, 1])) << 8) | (self.d(st.integers(0, 0xFFFF)) << 16),
                 self.d(st.integers(0, 0xFFFF)) | (self.d(st.sampled_from([0, 0, 64, 100, 1500, 65535])) << 16),
                 ifindex]
        dst6 = self.d(st.sampled_from([0x000080FE, 0x000002FF, 0, 0xB80D0120]))   # fe80::, ff02::, ::, 2001:db8::
        words += [self.d(_IMMS)] + [self.d(_IMMS) for _ in range(4)] + [dst6] + [self.d(_IMMS) for _ in range(3)]
        self._stack_words(_FIB, 16, words)
        self.e.emit(_movr(1, CTX))
        self.e.emit(_movr(2, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=_FIB))
        self.e.emit(_mov(3, self.d(st.sampled_from([64, 64, 64, 32]))))
        self.e.emit(_mov(4, self.d(st.sampled_from([0, 0, 0, 1, 2, 4, 5, 16, 20, 9, 0x40]))))
        self.e.emit(_call_helper(Helper.fib_lookup))
        for _ in range(self.d(st.integers(0, 2))):
            self.e.emit(_ldx(Size.W, self.d(st.sampled_from((1, 2, 3, 4, 5, 9))), FP,
                             _FIB + 4 * self.d(st.integers(0, 15))))
        self.reinit([1, 2, 3, 4, 5])

    def check_mtu(self) -> None:
        self._stack_words(_MTU, 1, [self.d(st.sampled_from([0, 0, 100, 1500, 65535, 70000]))])
        self.e.emit(_movr(1, CTX))
        self.e.emit(_mov(2, self.d(st.sampled_from([0, 0, 1, 0x7FFF0001]))))
        self.e.emit(_movr(3, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 3, imm=_MTU))
        self.e.emit(_mov(4, self.d(st.sampled_from([0, 14, -100, 65536, 0x7FFFFFFF]))))
        self.e.emit(_mov(5, self.d(st.sampled_from([0, 0, 0, 1]))))
        self.e.emit(_call_helper(Helper.check_mtu))
        self.e.emit(_ldx(Size.W, self.d(st.sampled_from((1, 2, 3, 4, 5, 9))), FP, _MTU))
        self.reinit([1, 2, 3, 4, 5])

    def queue_op(self) -> None:
        which = self.d(st.sampled_from([_QUE, _STK]))
        op = self.d(st.sampled_from([Helper.map_push_elem, Helper.map_push_elem, Helper.map_pop_elem,
                                     Helper.map_peek_elem]))
        self._stack_words(_QVAL, 2)
        self.e.emit(Insn.ld_imm64(1, which, PseudoSrc.MAP_FD))
        self.e.emit(_movr(2, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=_QVAL))
        if op == Helper.map_push_elem:
            self.e.emit(_mov(3, self.d(st.sampled_from([0, 0, 2, 2, 1, 3]))))
        self.e.emit(_call_helper(op))
        if op != Helper.map_push_elem:
            self.e.emit(_ldx(Size.DW, self.d(st.sampled_from((1, 2, 3, 4, 5, 9))), FP, _QVAL))
        self.reinit([1, 2, 3, 4, 5])

    def ringbuf(self) -> None:
        what = self.d(st.integers(0, 3))
        if what == 0:
            self._stack_words(_QVAL, 2)
            self.e.emit(Insn.ld_imm64(1, _RB, PseudoSrc.MAP_FD))
            self.e.emit(_movr(2, FP))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=_QVAL))
            self.e.emit(_mov(3, self.d(st.sampled_from([4, 8]))))
            self.e.emit(_mov(4, self.d(st.sampled_from([0, 0, 1, 2, 4]))))
            self.e.emit(_call_helper(Helper.ringbuf_output))
        elif what == 1:
            self.e.emit(Insn.ld_imm64(1, _RB, PseudoSrc.MAP_FD))
            self.e.emit(_mov(2, self.d(st.sampled_from([0, 1, 2, 3, 7]))))
            self.e.emit(_call_helper(Helper.ringbuf_query))
        else:
            skip = _Label()
            size = self.d(st.sampled_from([8, 16, 16, 40]))
            self.e.emit(Insn.ld_imm64(1, _RB, PseudoSrc.MAP_FD))
            self.e.emit(_mov(2, size))
            self.e.emit(_mov(3, self.d(st.sampled_from([0, 0, 0, 1]))))
            self.e.emit(_call_helper(Helper.ringbuf_reserve))
            self.e.emit(_jmp(JmpOp.JEQ, 0, imm=0), skip)
            for off in range(0, size, 8):
                if self.d(st.booleans()):
                    self.e.emit(_st(Size.DW, 0, off, self.d(_IMMS)))
                else:
                    self.e.emit(_stx(Size.DW, 0, 9, off))   # r1-r5 were clobbered by the call
            self.e.emit(_movr(1, 0))
            self.e.emit(_mov(2, self.d(st.sampled_from([0, 1, 2]))))
            self.e.emit(_call_helper(Helper.ringbuf_submit if what == 2 else Helper.ringbuf_discard))
            self.e.mark(skip)
            self.reinit([0])
        self.reinit([1, 2, 3, 4, 5])

    def perf_output(self) -> None:
        self._stack_words(_QVAL, 2)
        self.e.emit(_movr(1, CTX))
        self.e.emit(Insn.ld_imm64(2, _EV, PseudoSrc.MAP_FD))
        flags = self.d(st.sampled_from([0, 1, 3, 7, 0xFFFFFFFF, 14 << 32, (1 << 32) | 0xFFFFFFFF, 1 << 52]))
        self.e.emit(Insn.ld_imm64(3, flags))
        self.e.emit(_movr(4, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 4, imm=_QVAL))
        self.e.emit(_mov(5, 8))
        self.e.emit(_call_helper(Helper.perf_event_output))
        self.reinit([1, 2, 3, 4, 5])

    def ld_abs(self) -> None:
        """Legacy packet loads (TC): r0 = ntoh(*(size *)(skb->data + [src +] imm)); out of bounds ends the program with 0."""
        size = self.d(st.sampled_from([Size.B, Size.H, Size.W]))
        imm = self.d(st.sampled_from([0, 12, 14, 23, 30, 60]) | st.integers(0, 80))
        if self.d(st.booleans()):
            self.e.emit(Insn(InsnClass.LD | Mode.ABS | size, 0, 0, 0, imm))
        else:
            r = self.d(st.sampled_from((1, 2, 3, 4, 5, 9)))
            self.e.emit(_alu(InsnClass.ALU64, AluOp.AND, r, imm=63))
            self.e.emit(Insn(InsnClass.LD | Mode.IND | size, 0, r, 0, imm))
        self.reinit([1, 2, 3, 4, 5])

    def branch(self) -> None:
        skip = _Label()
        cls = self.d(st.sampled_from([InsnClass.JMP, InsnClass.JMP32]))
        op = self.d(st.sampled_from(_CONDS))
        a = self.d(st.sampled_from(SCALARS))
        if self.d(st.booleans()):
            self.e.emit(_jmp(op, a, src=self.d(st.sampled_from(SCALARS)), cls=cls), skip)
        else:
            self.e.emit(_jmp(op, a, imm=self.d(_IMMS), cls=cls), skip)
        self.depth += 1
        self.blocks(self.d(st.integers(1, 3)))
        self.depth -= 1
        if self.d(st.integers(0, 3)) == 0:  # an else-arm: ja over it
            end = _Label()
            self.e.emit(_JA, end)
            self.e.mark(skip)
            self.depth += 1
            self.blocks(1)
            self.depth -= 1
            self.e.mark(end)
        else:
            self.e.mark(skip)

    def loop(self) -> None:
        counter = 9
        pool = tuple(r for r in SCALARS if r != counter)
        top = _Label()
        self.e.emit(_mov(counter, self.d(st.integers(1, 6))))
        self.e.mark(top)
        for _ in range(self.d(st.integers(1, 4))):
            self.alu(pool)
        self.e.emit(_alu(InsnClass.ALU64, AluOp.SUB, counter, imm=1))
        self.e.emit(_jmp(JmpOp.JNE, counter, imm=0), top)
        self.reinit([counter])

    def call(self) -> None:
        label = _Label()
        self.callees.append(label)
        self.e.emit(Insn(InsnClass.JMP | JmpOp.CALL, 0, CallKind.LOCAL, 0, 0), label)
        self.reinit([1, 2, 3, 4, 5])

    def bpf_loop(self) -> None:
        """bpf_loop(n, callback, &ctx, 0) with the callback updating a u64 in the caller's stack at fp-72.

        At most one per program: Linux 6.18 fails programs with two inlined bpf_loop calls
        ("verifier bug: No program to jit at insn N (subprog < 0)").
        """
        if self.callbacks:
            self.alu()
            return
        label = _Label()
        self.callbacks.append(label)
        self.e.emit(_st(Size.DW, FP, -72, self.d(_IMMS)))
        if self.depth == 0:
            self.stack_init |= set(range(-72, -64))
        self.e.emit(_mov(1, self.d(st.integers(0, 12))))
        self.e.emit(Insn.ld_imm64(2, 0, PseudoSrc.FUNC), label)
        self.e.emit(_movr(3, FP))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 3, imm=-72))
        self.e.emit(_mov(4, 0))
        self.e.emit(_call_helper(Helper.loop))
        self.reinit([1, 2, 3, 4, 5])

    def callback(self, label: _Label) -> None:
        self.e.mark(label)
        op = self.d(st.sampled_from([AluOp.ADD, AluOp.XOR, AluOp.MUL, AluOp.OR, AluOp.SUB]))
        self.e.emit(_ldx(Size.DW, 3, 2, 0))
        self.e.emit(_alu(InsnClass.ALU64, op, 3, src=1))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 3, imm=self.d(_IMMS)))
        self.e.emit(_stx(Size.DW, 2, 3, 0))
        stop = _Label()
        self.e.emit(_mov(0, 1))
        self.e.emit(_jmp(JmpOp.JEQ, 1, imm=self.d(st.integers(0, 12))), stop)
        self.e.emit(_mov(0, 0))
        self.e.mark(stop)
        self.e.emit(_EXIT)

    def early_exit(self) -> None:
        skip = _Label()
        self.e.emit(_jmp(self.d(st.sampled_from(_CONDS)), self.d(st.sampled_from(SCALARS)), imm=self.d(_IMMS)), skip)
        self.e.emit(_mov(0, self.d(st.integers(0, 3))))
        self.e.emit(_EXIT)
        self.e.mark(skip)

    depth = 0

    def blocks(self, n: int) -> None:
        kinds = ["alu", "alu", "alu", "packet", "packet", "stack", "stack", "ctx_field", "map_lookup",
                 "map_update", "global_data"]
        if self.depth < self.shape.max_depth:
            kinds += ["branch", "branch", "loop"]
        kinds += ["helper"]
        if self.shape.prog_type == ProgType.XDP and self.shape.adjust:
            kinds += ["adjust"]
        if self.shape.xdp_helpers:
            kinds += ["xdp_map_lookup", "fib_lookup", "check_mtu", "queue_op", "ringbuf", "perf_output",
                      "xdp_map_lookup", "queue_op", "ringbuf"]
            if self.shape.prog_type == ProgType.XDP:
                kinds += ["xdp_redirect", "xdp_redirect"]
        if self.shape.prog_type == ProgType.SCHED_CLS and not self.shape.subprograms:
            kinds += ["ld_abs"]   # the verifier refuses ld_abs/ld_ind mixed with BPF-to-BPF calls
        if self.depth == 0:
            kinds += ["early_exit"]
            if self.shape.subprograms:
                # Never both in one program: Linux 6.18 fails some programs that mix an inlined
                # bpf_loop with BPF-to-BPF subprograms ("verifier bug: No program to jit at insn N").
                # At most one bpf_loop, too (see bpf_loop).
                kinds += ["bpf_loop" if self.with_bpf_loop else "call"]
        for _ in range(n):
            getattr(self, self.d(st.sampled_from(kinds)))()

    def callee(self, label: _Label) -> None:
        self.e.mark(label)
        pool = (0, 1, 2, 3, 4, 5)
        self.e.emit(_mov(0, self.d(_IMMS)))
        for _ in range(self.d(st.integers(1, 6))):
            self.alu(pool)
        if self.d(st.booleans()):
            skip = _Label()
            self.e.emit(_jmp(self.d(st.sampled_from(_CONDS)), self.d(st.sampled_from(pool)),
                             src=self.d(st.sampled_from(pool))), skip)
            self.alu(pool)
            self.e.mark(skip)
        self.e.emit(_EXIT)

    def program(self) -> Program:
        data_off, end_off, _ = _CTX[self.shape.prog_type]
        self.e.emit(_movr(CTX, 1))
        self.e.emit(_ldx(Size.W, DATA, CTX, data_off))
        self.e.emit(_ldx(Size.W, DATA_END, CTX, end_off))
        self.reinit(SCALARS)
        self.blocks(self.d(st.integers(1, self.shape.max_blocks)))
        if self.d(st.booleans()):
            self.e.emit(_alu(InsnClass.ALU64, AluOp.AND, 0, imm=3))
        else:
            self.e.emit(_mov(0, self.d(st.integers(0, 3))))
        self.e.emit(_EXIT)
        funcs = [Function("gen_main", 0)]
        for n, label in enumerate(self.callbacks):
            funcs.append(Function(f"gen_cb{n}", len(self.e.insns)))
            self.callback(label)
        for n, label in enumerate(self.callees):
            funcs.append(Function(f"gen_sub{n}", len(self.e.insns)))
            self.callee(label)
        insns = self.e.finish()
        pcs, pc = [], 0
        for insn in insns:
            pcs.append(pc)
            pc += insn.width
        starts = [Function(f.name, pcs[f.start_pc]) for f in funcs]
        return Program(name="gen_main", insns=insns, section="xdp" if self.shape.prog_type == ProgType.XDP else "tc",
                       prog_type=self.shape.prog_type,
                       maps=GENERATED_MAPS + (XDP_HELPER_MAPS if self.shape.xdp_helpers else ()), license="GPL",
                       functions=tuple(starts), source_path="<generated>")


def programs(prog_type: ProgType = ProgType.XDP, *, max_blocks: int = 12, max_depth: int = 2,
             subprograms: bool = True, adjust: bool = True, xdp_helpers: bool = False) -> st.SearchStrategy[Program]:
    """Verifier-acceptable XDP (or ``ProgType.SCHED_CLS``) programs using the maps in :data:`GENERATED_MAPS`.

    ``xdp_helpers=True`` adds :data:`XDP_HELPER_MAPS` and blocks using them: (XDP) bpf_redirect_map
    on a devmap/xskmap/cpumap with every kind of flags and lookups of redirect maps; (both) lookups
    of an array-of-maps (then of its inner array), bpf_fib_lookup and bpf_check_mtu with in- and
    out-of-range arguments, queue/stack push/pop/peek, ring buffer output/reserve/submit/discard/query
    and bpf_perf_event_output (TC: the skb variants).
    """
    if prog_type not in _CTX:
        raise ValueError(f"programs() builds XDP or SCHED_CLS programs, not {prog_type!r}")
    shape = ProgramShape(prog_type, max_blocks, max_depth, subprograms, adjust, xdp_helpers)

    @st.composite
    def build(draw) -> Program:
        return _Gen(draw, shape).program()

    return build()


# -- TC direct-action programs around the __sk_buff metadata (tc_programs) ---------------------------
#
# A family of its own (helper `corpus` extends programs() above): short TC programs that read every
# __sk_buff field the NIC provides (full and narrow widths, cb[] also 8 bytes wide), write the
# writable ones with every width and value class the kernel treats specially (16-bit fields, a
# queue_mapping of 0xffff or more, narrow cb stores), mix in bounds-checked packet reads and return
# a verdict from the whole TC_ACT_* range (constant or computed).  Every program is one the kernel's
# verifier accepts; run them with tc_packet_ins() inputs (mark, priority, cb, hash set).

#: (offset, name) of the __sk_buff u32 fields a TC program may read on the NIC
TC_READ_FIELDS = ((0, "len"), (4, "pkt_type"), (8, "mark"), (12, "queue_mapping"), (16, "protocol"),
                  (20, "vlan_present"), (24, "vlan_tci"), (28, "vlan_proto"), (32, "priority"),
                  (36, "ingress_ifindex"), (40, "ifindex"), (44, "tc_index"), (48, "cb[0]"), (52, "cb[1]"),
                  (56, "cb[2]"), (60, "cb[3]"), (64, "cb[4]"), (68, "hash"), (72, "tc_classid"), (84, "napi_id"))
#: offsets of the writable u32 fields (mark, queue_mapping, priority, tc_index, cb[0..4], tc_classid)
TC_WRITE_FIELDS = (8, 12, 32, 44, 48, 52, 56, 60, 64, 72)
_TC_VERDICTS = (-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x7FFF_FFFF)
_TC_VALUES = st.sampled_from([0, 1, 6, 0xFF, 0xFFFE, 0xFFFF, 0x10000, 0x12345, 0x7FFF_FFFF, -1]) | \
    st.integers(-(1 << 31), (1 << 31) - 1)
_TC_REGS = (0, 2, 3, 4, 5)


def _tc_read(draw) -> str:
    off, _ = draw(st.sampled_from(TC_READ_FIELDS))
    r = draw(st.sampled_from(_TC_REGS))
    if 48 <= off < 64 and off % 8 == 0 and draw(st.integers(0, 4)) == 0:
        return f"ldxdw %r{r}, [%r6+{off}]"
    size = draw(st.sampled_from([4, 4, 2, 1]))
    # fields the kernel keeps narrower than 32 bits (pkt_type, queue_mapping, protocol, vlan_*,
    # tc_index) are read from their first byte only: a narrow read of their upper half gives 0 in
    # the interpreter and in a kernel run alone, but the field's own value in the middle of a full
    # test run (some kernel state an earlier test sets; open)
    narrow = off in (4, 12, 16, 20, 24, 28, 44)
    part = 0 if narrow else draw(st.integers(0, 4 // size - 1)) * size
    return f"ldx{ {4: 'w', 2: 'h', 1: 'b'}[size]} %r{r}, [%r6+{off + part}]"


def _tc_write(draw) -> list[str]:
    off = draw(st.sampled_from(TC_WRITE_FIELDS))
    value = draw(_TC_VALUES)
    if 48 <= off < 68 and draw(st.integers(0, 2)) == 0:      # cb[]: narrow or 8-byte stores
        size = draw(st.sampled_from([1, 2, 8] if off % 8 == 0 and off + 8 <= 68 else [1, 2]))
        part = 0 if size == 8 else draw(st.integers(0, 4 // size - 1)) * size
        suffix = {1: "b", 2: "h", 8: "dw"}[size]
        r = draw(st.sampled_from(_TC_REGS))
        return [f"lddw %r{r}, {value & 0xFFFF_FFFF_FFFF_FFFF:#x}" if size == 8 else f"mov %r{r}, {value}",
                f"stx{suffix} [%r6+{off + part}], %r{r}"]
    if draw(st.booleans()):
        return [f"stw [%r6+{off}], {value}"]
    r = draw(st.sampled_from(_TC_REGS))
    return [f"stxw [%r6+{off}], %r{r}"]                    # whatever the register holds


def _tc_alu(draw) -> str:
    op = draw(st.sampled_from(["add", "sub", "xor", "or", "and", "lsh", "rsh", "mov", "add32", "xor32", "mov32"]))
    dst = draw(st.sampled_from(_TC_REGS))
    if draw(st.booleans()):
        src = draw(st.sampled_from(_TC_REGS))
        return f"{op} %r{dst}, %r{src}"
    imm = draw(st.integers(0, 31)) if op in ("lsh", "rsh") else draw(_TC_VALUES)
    return f"{op} %r{dst}, {imm}"


def _tc_packet(draw, n: int) -> list[str]:
    off = draw(st.integers(0, 40))
    size = draw(st.sampled_from([1, 2, 4]))
    r = draw(st.sampled_from(_TC_REGS))
    return ["mov %r1, %r7", f"add %r1, {off + size}", f"jgt %r1, %r8, pkt{n}",
            f"ldx{ {4: 'w', 2: 'h', 1: 'b'}[size]} %r{r}, [%r7+{off}]", f"pkt{n}:"]


@st.composite
def tc_programs(draw, max_blocks: int = 10) -> Program:
    """TC (sched_cls) programs on the __sk_buff metadata: field reads/writes, packet reads, any verdict.

    Registers start defined (r0, r2..r5 = 0), r6 = the context, r7/r8 = data/data_end.  The
    verdict is a constant from the whole TC_ACT_* range (UNSPEC, OK .. REDIRECT, above it) or a
    value computed from the fields.
    """
    from nfpjit.ebpf.asm import assemble

    lines = ["mov %r6, %r1", "ldxw %r7, [%r6+76]", "ldxw %r8, [%r6+80]",
             *(f"mov %r{r}, 0" for r in _TC_REGS)]
    skips = 0
    for n in range(draw(st.integers(1, max_blocks))):
        kind = draw(st.sampled_from(["read", "read", "write", "write", "alu", "alu", "packet", "branch"]))
        if kind == "read":
            lines.append(_tc_read(draw))
        elif kind == "write":
            lines += _tc_write(draw)
        elif kind == "alu":
            lines.append(_tc_alu(draw))
        elif kind == "packet":
            lines += _tc_packet(draw, n)
        else:                                   # an early verdict on a field value
            skips += 1
            lines += [_tc_read(draw),
                      f"jne %r{draw(st.sampled_from(_TC_REGS))}, {draw(_TC_VALUES)}, skip{skips}",
                      f"mov %r0, {draw(st.sampled_from(_TC_VERDICTS))}", "exit", f"skip{skips}:"]
    if draw(st.booleans()):
        lines.append(f"mov %r0, {draw(st.sampled_from(_TC_VERDICTS))}")
    else:                                       # computed: a field's low bits as the verdict
        lines += [_tc_read(draw), f"mov %r0, %r{draw(st.sampled_from(_TC_REGS))}", "and %r0, 7"]
    lines.append("exit")
    program = assemble(".type tc\n.license GPL\n" + "\n".join(lines) + "\n", filename="<generated tc>")
    return Program(name="gen_tc", insns=program.insns, section="tc", prog_type=ProgType.SCHED_CLS,
                   license="GPL", source_path="<generated tc>")


@st.composite
def tc_packet_ins(draw, *, kernel: bool = False):
    """A PacketIn for tc_programs(): a frame (IPv4/IPv6/other) and the metadata test_run can set;
    ``kernel=False`` also draws skb->hash (which BPF_PROG_TEST_RUN cannot set)."""
    from nfpjit.ebpf.result import PacketIn
    from nfpjit.testing.packets import packets

    frame = draw(packets(max_len=120))
    word = st.integers(0, 0xFFFF_FFFF)
    return PacketIn(frame, mark=draw(word), priority=draw(word), cb=tuple(draw(word) for _ in range(5)),
                    hash=0 if kernel else draw(st.sampled_from([0, None]) | word))


# -- programs built around map-value arithmetic (feature_programs) ---------------------------------

# Divisors and multipliers: small (non-zero quotients), zero (eBPF defines x/0 = 0, x%0 = x), signed
# extremes and 64-bit values; the 64-bit constants need ld_imm64 (ALU immediates are 32 bits).
_WIDE = st.sampled_from([0, 1, 2, 3, 7, 10, 255, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x1_0000_0001, 0x9E37_79B9_7F4A_7C15,
                         (1 << 63), (1 << 64) - 1, 0xFF51_AFD7_ED55_8CCD]) | st.integers(0, (1 << 64) - 1)


class _FeatureGen(_Gen):
    """Blocks centred on what the NFP's own JIT refuses: read-modify-write of map values (plain loads
    and stores of every width, every atomic with and without fetch, cmpxchg), division and modulo by
    registers (32/64-bit, signed and unsigned), 64-bit multiplication by registers and by constants
    of any size.  Results are written back into map values (what the maps show after a run) and
    folded into r0."""

    ACC = 9      # accumulator kept across blocks: r9 ends in r0

    def _operand(self, pool, reg: int) -> None:
        """``reg`` = a divisor/multiplier: a small constant, a wide ld_imm64 constant, or a masked scalar."""
        kind = self.d(st.integers(0, 3))
        if kind == 0:
            self.e.emit(Insn.ld_imm64(reg, self.d(_WIDE)))
        elif kind == 1:
            self.e.emit(_mov(reg, self.d(st.integers(-9, 300))))
        else:
            self.e.emit(_movr(reg, self.d(st.sampled_from(pool))))
            if kind == 2:
                self.e.emit(_alu(InsnClass.ALU64, AluOp.AND, reg, imm=self.d(st.sampled_from([3, 15, 255, 0xFFFF]))))

    def _arith(self, dst: int, pool) -> None:
        """One division, modulo or multiplication of ``dst`` by a register or an immediate."""
        cls = self.d(st.sampled_from([InsnClass.ALU64, InsnClass.ALU64, InsnClass.ALU]))
        op = self.d(st.sampled_from([AluOp.DIV, AluOp.MOD, AluOp.MUL, AluOp.MUL]))
        signed = op != AluOp.MUL and self.d(st.integers(0, 2)) == 0   # v4 sdiv/smod: off = 1
        if self.d(st.integers(0, 3)) == 0:
            imm = self.d(_IMMS)
            if op != AluOp.MUL and imm == 0:
                imm = 7
            if op == AluOp.MUL and cls == InsnClass.ALU64 and imm < 0 and self.d(st.integers(0, 3)):
                # no profile takes a 64-bit multiply by a negative (sign-extended) constant yet: keep a
                # quarter of them to show the gap, make the rest positive so the program compiles
                imm = min(-imm, 0x7FFF_FFFF)
            self.e.emit(_alu(cls, op, dst, imm=imm, off=int(signed)))
            return
        src = self.d(st.sampled_from(tuple(r for r in pool if r != dst)))
        self._operand(pool, src)
        self.e.emit(_alu(cls, op, dst, src=src, off=int(signed)))

    def value_rmw(self) -> None:
        """Look a value up, then load/compute/store words of it (and fold one into the accumulator)."""
        which = self.d(st.sampled_from([_ARR, _HSH, _GLB]))
        null = _Label()
        if which == _GLB:
            self.e.emit(Insn.ld_imm64(1, _GLB, PseudoSrc.MAP_VALUE))
        else:
            self._lookup(which, null)
        pool = (0, 2, 3, 4, 5)
        for _ in range(self.d(st.integers(1, 4))):
            size = self.d(st.sampled_from(_SIZES))
            off = size.nbytes * self.d(st.integers(0, VALUE_SIZE // size.nbytes - 1))
            what = self.d(st.integers(0, 6))
            if what <= 2:     # load, compute, store back (possibly at another width/offset)
                dst = self.d(st.sampled_from(pool))
                self.e.emit(_ldx(size, dst, 1, off, signed=size != Size.DW and self.d(st.integers(0, 3)) == 0))
                self._arith(dst, pool)
                if what == 2:
                    size = self.d(st.sampled_from(_SIZES))
                    off = size.nbytes * self.d(st.integers(0, VALUE_SIZE // size.nbytes - 1))
                self.e.emit(_stx(size, 1, dst, off))
                if self.d(st.booleans()):
                    self.e.emit(_alu(InsnClass.ALU64, self.d(st.sampled_from([AluOp.ADD, AluOp.XOR])), self.ACC,
                                     src=dst))
            elif what <= 4:   # an atomic, the fetched value (if any) folded into the accumulator
                asize = self.d(st.sampled_from([Size.W, Size.DW]))
                aoff = asize.nbytes * self.d(st.integers(0, VALUE_SIZE // asize.nbytes - 1))
                op = self.d(st.sampled_from(_ATOMICS))
                src = self.d(st.sampled_from((2, 3, 4, 5)))
                self.e.emit(Insn(InsnClass.STX | Mode.ATOMIC | asize, 1, src, aoff, int(op)))
                if int(op) & 1:   # the fetch forms
                    self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, self.ACC,
                                     src=0 if op == AtomicOp.CMPXCHG else src))
            elif what == 5:   # a constant store
                self.e.emit(_st(size, 1, off, self.d(_IMMS)))
            else:             # a load into the accumulator
                self.e.emit(_ldx(size, 2, 1, off))
                self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, self.ACC, src=2))
        self.e.mark(null)
        self.reinit([0, 1, 2, 3, 4, 5])

    def wide_arith(self) -> None:
        """A few divisions/modulos/multiplications on scalars, the last result into the accumulator."""
        pool = (0, 1, 2, 3, 4, 5)
        dst = self.d(st.sampled_from(pool))
        for _ in range(self.d(st.integers(1, 3))):
            self._arith(dst, pool)
        self.e.emit(_alu(InsnClass.ALU64, AluOp.XOR, self.ACC, src=dst))

    def packet_operand(self) -> None:
        """A packet byte/word as a divisor or multiplier (the value differs from packet to packet)."""
        size = self.d(st.sampled_from([Size.B, Size.H, Size.W]))
        off = self.d(st.integers(0, 40))
        skip = _Label()
        self.e.emit(_movr(2, DATA))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.ADD, 2, imm=off + size.nbytes))
        self.e.emit(_jmp(JmpOp.JGT, 2, src=DATA_END), skip)
        self.e.emit(_ldx(size, 3, DATA, off))
        op = self.d(st.sampled_from([AluOp.DIV, AluOp.MOD, AluOp.MUL]))
        cls = self.d(st.sampled_from([InsnClass.ALU64, InsnClass.ALU]))
        self.e.emit(_alu(cls, op, self.ACC, src=3, off=int(op != AluOp.MUL and self.d(st.booleans()))))
        self.e.mark(skip)
        self.reinit([2, 3])

    def blocks(self, n: int) -> None:
        kinds = ["value_rmw", "value_rmw", "value_rmw", "wide_arith", "wide_arith", "packet_operand",
                 "map_update", "alu", "stack"]
        if self.depth < self.shape.max_depth:
            kinds += ["branch"]
        if self.depth == 0:
            kinds += ["early_exit"]
        for _ in range(n):
            getattr(self, self.d(st.sampled_from(kinds)))()

    def program(self) -> Program:
        data_off, end_off, _ = _CTX[self.shape.prog_type]
        self.e.emit(_movr(CTX, 1))
        self.e.emit(_ldx(Size.W, DATA, CTX, data_off))
        self.e.emit(_ldx(Size.W, DATA_END, CTX, end_off))
        self.reinit(SCALARS)
        self.blocks(self.d(st.integers(1, self.shape.max_blocks)))
        self.e.emit(_movr(0, self.ACC))
        self.e.emit(_alu(InsnClass.ALU64, AluOp.AND, 0, imm=3))
        self.e.emit(_EXIT)
        return Program(name="gen_main", insns=self.e.finish(),
                       section="xdp" if self.shape.prog_type == ProgType.XDP else "tc",
                       prog_type=self.shape.prog_type, maps=GENERATED_MAPS, license="GPL",
                       functions=(Function("gen_main", 0),), source_path="<generated>")


def feature_programs(prog_type: ProgType = ProgType.XDP, *, max_blocks: int = 8) -> st.SearchStrategy[Program]:
    """Verifier-acceptable programs (XDP or ``ProgType.SCHED_CLS``, maps :data:`GENERATED_MAPS`) built
    from map-value loads and stores of every width, every atomic (add/and/or/xor with and without
    fetch, xchg, cmpxchg, 32 and 64 bit), division and modulo by registers (signed and unsigned, by
    zero too), 64-bit multiplication by registers and wide constants, and packet bytes as operands;
    results go back into map values and into r0 (``& 3``).  No BPF-to-BPF calls or adjust helpers.
    """
    if prog_type not in _CTX:
        raise ValueError(f"feature_programs() builds XDP or SCHED_CLS programs, not {prog_type!r}")
    shape = ProgramShape(prog_type, max_blocks, 1, False, False, False)

    @st.composite
    def build(draw) -> Program:
        return _FeatureGen(draw, shape).program()

    return build()

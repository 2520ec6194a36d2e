"""The reference eBPF interpreter: RFC 9669 (v1-v4) semantics plus the kernel's XDP/TC runtime.

Every engine in nfpjit is judged against this one, so it favours being exact
and checkable over being fast.  It runs a :class:`~nfpjit.ebpf.program.Program`
on one packet (XDP or TC, by ``program.prog_type``) or on a raw memory block
(the uBPF/bpf_conformance convention) and returns a
:class:`~nfpjit.ebpf.result.RunResult`; anything the program does wrong ends
the run with ``RunResult.fault`` set, never with a Python exception.

Memory model.  Every addressable object (packet buffer, context struct, one
512-byte stack frame per call, each map value, the raw memory block, map
objects) is a *region* with a fake base address ``index << 40``.  Registers
hold plain 64-bit numbers, so pointer arithmetic and comparisons
(``data + 14 > data_end``) behave as on a real machine; every load and store
decodes the address back into its region and checks it against the region's
bounds.  Addresses below ``1 << 40`` belong to no region: small ones are
reported as NULL dereferences.

Registers the verifier would consider uninitialised are ``None``: r0 and r2-r9
at entry, r1-r5 after a helper call (and after a BPF-to-BPF call), r0 and
r6-r9 on entry to a callee.  Reading one is a fault.

Dispatch is a table indexed by the opcode byte, built once from the opcode
enums; each entry is a function ``(machine, insn, pc) -> next pc``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from enum import IntEnum

from nfpjit.bits import MASK32, MASK64, bswap, s32, sdiv, sext, smod, u32, u64, udiv, umod
from nfpjit.errors import UsageError
from nfpjit.ebpf.context import ETH_HLEN, Context, PacketBuffer, SkbContext, XdpContext
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.maps import BpfMap, Errno, MapStore
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
from nfpjit.ebpf.program import Program
from nfpjit.ebpf.helpers import HELPERS
from nfpjit.ebpf.result import Fault, PacketIn, RunResult, Trap

REGION_SHIFT = 40
REGION_OFFSET_MASK = (1 << REGION_SHIFT) - 1
NULL_LIMIT = 1 << 16          # addresses below this are reported as NULL dereferences
STACK_SIZE = 512
MAX_CALL_FRAMES = 8           # the kernel's MAX_CALL_FRAMES
MAX_TAIL_CALLS = 33           # MAX_TAIL_CALL_CNT
DEFAULT_BUDGET = 1_000_000
SKF_NET_OFF = -0x100000       # ld_abs/ld_ind offsets relative to the network header
SKF_LL_OFF = -0x200000        # ... and to the link-layer (MAC) header

_EXIT = -(1 << 62)            # handler return values that are not pcs
_SWITCH = _EXIT + 1
_RETURN = _EXIT + 2           # a callback (bpf_loop) returned to the helper that called it


class RegionKind(IntEnum):
    PACKET = 1
    CONTEXT = 2
    STACK = 3
    MAP_VALUE = 4
    MEMORY = 5
    MAP = 6
    FUNCTION = 7

    @property
    def label(self) -> str:
        return {1: "packet", 2: "context", 3: "stack", 4: "map value", 5: "memory", 6: "map object",
                7: "function"}[self]


class Region:
    """One addressable object; ``lo``..``hi`` is the accessible window of ``buf``."""

    __slots__ = ("kind", "base", "buf", "lo", "hi", "name", "ctx", "obj")

    def __init__(self, kind: RegionKind, base: int, buf: bytearray, name: str, ctx: Context | None = None,
                 obj: object = None):
        self.kind = kind
        self.base = base
        self.buf = buf
        self.lo = 0
        self.hi = len(buf)
        self.name = name
        self.ctx = ctx
        self.obj = obj


@dataclass
class _Frame:
    return_pc: int
    saved: list            # caller's r6..r10
    stack: Region
    ops: list
    program: Program


_LD = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}


class Machine:
    """The state of one run.  Helpers (nfpjit.ebpf.helpers) call the public methods below."""

    def __init__(self, program: Program, maps: MapStore, *, budget: int, seed: int, clock_ns: int,
                 clock_step_ns: int, prog_array_programs: dict | None, trace: bool,
                 strict_registers: bool = True, stack_fill: int = 0, net=None):
        from nfpjit.ebpf.net import Net

        self.program = program
        self.net = net if net is not None else Net.default()
        self._ringbuf_records: dict[int, tuple] = {}
        self.strict = strict_registers
        self.stack_fill = bytes([stack_fill & 0xFF]) * STACK_SIZE
        self.maps = maps
        self.budget = budget
        self.rng = random.Random(seed)
        self.clock_ns = clock_ns
        self.clock_step_ns = clock_step_ns
        self.prog_array_programs = prog_array_programs or {}
        self.regions: dict[int, Region] = {}
        self._next_region = 0
        self._switch_pc = 0
        self._fault_pc = 0
        self._buf_regions: dict[int, Region] = {}
        self._map_regions: dict[int, Region] = {}
        self._program_maps: dict[int, list[BpfMap]] = {}
        self._func_regions: dict[tuple[int, int], Region] = {}
        self.regs: list[int | None] = [None if strict_registers else 0] * 11
        self.frames: list[_Frame] = []
        self.packet: PacketBuffer | None = None
        self.packet_region: Region | None = None
        self.ctx: Context | None = None
        self.ctx_addr = 0
        self.memory_region: Region | None = None
        self.redirect: int | None = None
        self.trace_output: list[str] = []
        self.perf_output: list[bytes] = []
        self.trace_lines: list[str] | None = [] if trace else None
        self.tail_calls = 0
        self.switch: tuple[list, Program] | None = None
        self.insns = 0
        self.ops = _compile(program)

    # -- regions -----------------------------------------------------------
    def add_region(self, kind: RegionKind, buf: bytearray, name: str, *, ctx: Context | None = None,
                   obj: object = None) -> Region:
        self._next_region += 1
        index = self._next_region
        region = Region(kind, index << REGION_SHIFT, buf, name, ctx, obj)
        self.regions[index] = region
        return region

    def drop_region(self, region: Region) -> None:
        self.regions.pop(region.base >> REGION_SHIFT, None)

    def value_ptr(self, buf: bytearray, name: str) -> int:
        """The address of a map value buffer (one region per live value)."""
        region = self._buf_regions.get(id(buf))
        if region is None or region.buf is not buf:
            region = self.add_region(RegionKind.MAP_VALUE, buf, name)
            self._buf_regions[id(buf)] = region
        return region.base

    def scratch_ptr(self, data: bytes, name: str) -> int:
        """The address of a fresh read-only-by-convention copy of ``data`` (e.g. a key handed to a callback)."""
        return self.add_region(RegionKind.MAP_VALUE, bytearray(data), name).base

    def ringbuf_record_ptr(self, rb, rec: list) -> int:
        """The address of a reserved ring buffer record (valid until submit/discard)."""
        region = self.add_region(RegionKind.MAP_VALUE, rec[0], f"{rb.name} record")
        self._ringbuf_records[region.base] = (rb, rec, region)
        return region.base

    def ringbuf_record_at(self, ptr: int | None) -> tuple:
        got = self._ringbuf_records.pop(ptr or 0, None)
        if got is None:
            raise Trap("ring buffer submit/discard of a pointer that bpf_ringbuf_reserve did not return", ptr)
        rb, rec, region = got
        self.drop_region(region)
        return rb, rec

    def map_ptr(self, bpf_map: BpfMap) -> int:
        region = self._map_regions.get(id(bpf_map))
        if region is None:
            region = self.add_region(RegionKind.MAP, bytearray(), bpf_map.name, obj=bpf_map)
            self._map_regions[id(bpf_map)] = region
        return region.base

    def map_at(self, value: int | None) -> BpfMap:
        region = self.regions.get((value or 0) >> REGION_SHIFT)
        if region is None or region.kind != RegionKind.MAP or value != region.base:
            raise Trap("helper argument is not a map pointer", value)
        return region.obj

    def maps_of(self, program: Program) -> list[BpfMap]:
        got = self._program_maps.get(id(program))
        if got is None:
            if program is self.program:
                got = list(self.maps.maps)
            else:
                got = [self.maps.ensure(m) for m in program.maps]
            self._program_maps[id(program)] = got
        return got

    def _resolve(self, addr: int, size: int, write: bool) -> tuple[Region, int]:
        region = self.regions.get(addr >> REGION_SHIFT)
        if region is None:
            what = "write" if write else "read"
            if 0 <= addr < NULL_LIMIT:
                raise Trap(f"NULL pointer dereference ({size}-byte {what})", addr)
            raise Trap(f"{size}-byte {what} of an address that belongs to no region", addr)
        off = addr & REGION_OFFSET_MASK
        if region.ctx is None and (off < region.lo or off + size > region.hi):
            what = "write" if write else "read"
            raise Trap(f"out-of-bounds {size}-byte {region.kind.label} {what} at offset "
                       f"{off - region.lo} of {region.name} (size {region.hi - region.lo})", addr)
        return region, off

    def load(self, addr: int, size: int) -> int:
        region, off = self._resolve(addr, size, False)
        if region.ctx is not None:
            value = region.ctx.load(off, size)
            if value is None:
                raise Trap(f"invalid {size}-byte context read at offset {off}", addr)
            return value
        return _LD[size].unpack_from(region.buf, off)[0]

    def store(self, addr: int, size: int, value: int) -> None:
        region, off = self._resolve(addr, size, True)
        if region.ctx is not None:
            if not region.ctx.store(off, size, value):
                raise Trap(f"invalid {size}-byte context write at offset {off}", addr)
            return
        if region.kind == RegionKind.MAP:
            raise Trap("write to a map object", addr)
        _LD[size].pack_into(region.buf, off, value & ((1 << (8 * size)) - 1))

    def read(self, addr: int | None, n: int) -> bytes:
        """``n`` bytes at ``addr`` (helpers' memory arguments); bounds-checked like a load."""
        if n == 0:
            return b""
        if addr is None:
            raise Trap("helper memory argument is uninitialised")
        region, off = self._resolve(addr, n, False)
        if region.ctx is not None:
            return bytes(region.ctx.raw[off : off + n])
        return bytes(region.buf[off : off + n])

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        region, off = self._resolve(addr, len(data), True)
        if region.ctx is not None or region.kind == RegionKind.MAP:
            raise Trap("helper wrote to read-only memory", addr)
        region.buf[off : off + len(data)] = data

    def read_cstring(self, addr: int, limit: int = 256) -> bytes:
        region, off = self._resolve(addr, 1, False)
        end = region.buf.find(b"\0", off, min(region.hi, off + limit))
        return bytes(region.buf[off : end if end >= 0 else min(region.hi, off + limit)])

    def sync_packet(self) -> None:
        """Refresh the packet region's window after data/data_end/data_meta moved."""
        if self.packet is not None and self.packet_region is not None:
            self.packet_region.lo = self.packet.data_meta
            self.packet_region.hi = self.packet.data_end

    def abs_window(self) -> tuple[bytearray, int, int]:
        """(buffer, start, end) that ld_abs/ld_ind offsets index: the packet, or the raw memory block."""
        if self.packet is not None:
            return self.packet.buf, self.packet.data, self.packet.data_end
        region = self.memory_region
        if region is None:
            raise Trap("ld_abs/ld_ind without a packet")
        return region.buf, 0, region.hi

    def clock(self) -> int:
        now = self.clock_ns
        self.clock_ns = u64(self.clock_ns + self.clock_step_ns)
        return now

    # -- set-up --------------------------------------------------------------
    def setup_packet(self, pin: PacketIn, *, tailroom: int | None) -> None:
        self.packet = PacketBuffer(pin.data, tailroom=tailroom)
        self.packet_region = self.add_region(RegionKind.PACKET, self.packet.buf, "packet")
        self.sync_packet()
        cls = XdpContext if self.program.prog_type == ProgType.XDP else SkbContext
        self.ctx = cls(self.packet, pin)
        self.ctx.pkt_base = self.packet_region.base
        self.ctx_addr = self.add_region(RegionKind.CONTEXT, self.ctx.raw, "context", ctx=self.ctx).base

    def push_stack(self) -> Region:
        return self.add_region(RegionKind.STACK, bytearray(self.stack_fill), f"stack frame {len(self.frames)}")

    # -- control -------------------------------------------------------------
    def tail_call(self, bpf_map: BpfMap, index: int) -> int:
        """bpf_tail_call: on success arrange the switch and return 0; on failure a negative errno."""
        if bpf_map.mapdef.type != MapType.PROG_ARRAY:
            raise Trap(f"bpf_tail_call on map {bpf_map.name!r}, which is not a prog array")
        index = u32(index)
        if index >= bpf_map.mapdef.max_entries:
            return -Errno.E2BIG
        if self.tail_calls >= MAX_TAIL_CALLS:
            return -Errno.EBUSY
        target = self.prog_array_programs.get((bpf_map.name, index), self.prog_array_programs.get(index))
        if target is None:
            return -Errno.ENOENT
        self.tail_calls += 1
        self.switch = (_compile(target), target)
        return 0

    def function_ptr(self, ops: list, program: Program, target: int) -> int:
        """A callable address for the BPF function starting at slot ``target`` (ld_imm64 ``func``)."""
        key = (id(ops), target)
        region = self._func_regions.get(key)
        if region is None:
            region = self.add_region(RegionKind.FUNCTION, bytearray(), f"function at {target}",
                                     obj=(ops, program, target))
            self._func_regions[key] = region
        return region.base

    def call_function(self, fn: int, args: list[int]) -> int:
        """Run a BPF callback to its exit with r1.. = ``args`` and return its r0 (for bpf_loop)."""
        region = self.regions.get(fn >> REGION_SHIFT)
        if region is None or region.kind != RegionKind.FUNCTION or fn != region.base:
            raise Trap("callback argument is not a function pointer", fn)
        if len(self.frames) >= MAX_CALL_FRAMES:
            raise Trap(f"BPF-to-BPF call nesting deeper than {MAX_CALL_FRAMES} frames")
        ops, program, target = region.obj
        r = self.regs
        stack = self.push_stack()
        self.frames.append(_Frame(_RETURN, r[6:11], stack, ops, program))
        blank = None if self.strict else 0
        r[0:10] = [blank] * 10
        for n, a in enumerate(args, 1):
            r[n] = a
        r[10] = stack.base + STACK_SIZE
        outer_ops = self.ops
        self.ops = ops
        if self.trace_lines is not None:
            self._loop_traced(target)
        else:
            self._loop(target)
        self.ops = outer_ops
        return r[0]

    def run(self, entry_args: list[int | None]) -> RunResult:
        regs = self.regs
        for i, v in enumerate(entry_args):
            regs[i + 1] = v
        stack = self.push_stack()
        regs[10] = stack.base + STACK_SIZE
        self.frames.append(_Frame(-1, [], stack, self.ops, self.program))
        fault = None
        pc = 0
        try:
            if self.trace_lines is not None:
                pc = self._loop_traced(pc)
            else:
                pc = self._loop(pc)
        except Trap as trap:
            fault = Fault(self._fault_pc, trap.reason, trap.address)
        except (ValueError, IndexError, KeyError, OverflowError, TypeError) as exc:
            # Only instructions built by hand (not decoded) can get here: bad field values.
            fault = Fault(self._fault_pc, f"malformed instruction: {exc}")
        r0 = regs[0] if fault is None else 0
        return RunResult(
            r0=r0 or 0,
            packet=self._output(),
            maps=self.maps.dump(),
            insns=self.insns,
            redirect=self.redirect,
            trace_output=self.trace_output,
            perf_output=self.perf_output,
            fault=fault,
            trace=self.trace_lines,
            skb=self.ctx.metadata() if isinstance(self.ctx, SkbContext) and fault is None else None,
        )

    def _output(self) -> bytes:
        if self.packet is not None:
            return self.packet.output()
        if self.memory_region is not None:
            return bytes(self.memory_region.buf)
        return b""

    def _loop(self, pc: int) -> int:
        ops = self.ops
        count = self.insns
        budget = self.budget
        n = len(ops)
        self._fault_pc = pc
        try:
            while True:
                if not 0 <= pc < n:
                    if pc == _EXIT or pc == _RETURN:
                        return pc
                    if pc == _SWITCH:
                        ops = self.ops
                        n = len(ops)
                        pc = self._switch_pc
                        continue
                    raise _outside(pc, n)
                handler, insn = ops[pc]
                if handler is None:
                    raise Trap(f"jump to {pc}, the second half of an ld_imm64")
                if count >= budget:
                    raise Trap(f"instruction budget of {budget} exhausted")
                count += 1
                self._fault_pc = pc
                if handler is _call:
                    # A helper may run a callback (bpf_loop), which counts instructions too.
                    self.insns = count
                    try:
                        pc = handler(self, insn, pc)
                    finally:
                        count = self.insns
                else:
                    pc = handler(self, insn, pc)
        finally:
            self.insns = count

    def _loop_traced(self, pc: int) -> int:
        from nfpjit.ebpf.disasm import format_insn

        ops = self.ops
        regs = self.regs
        self._fault_pc = pc
        while True:
            if not 0 <= pc < len(ops):
                if pc == _EXIT or pc == _RETURN:
                    return pc
                if pc == _SWITCH:
                    ops = self.ops
                    pc = self._switch_pc
                    continue
                raise _outside(pc, len(ops))
            handler, insn = ops[pc]
            if handler is None:
                raise Trap(f"jump to {pc}, the second half of an ld_imm64")
            if self.insns >= self.budget:
                raise Trap(f"instruction budget of {self.budget} exhausted")
            self.insns += 1
            self._fault_pc = pc
            before = list(regs)
            try:
                text = format_insn(insn, pc)
            except Exception:  # noqa: BLE001 - a trace line must never stop the run
                text = f"opcode 0x{insn.code:02x}"
            try:
                nxt = handler(self, insn, pc)
            except Trap as trap:
                self.trace_lines.append(f"{pc:5d}: {text}  ; fault: {trap.reason}")
                raise
            regs = self.regs
            changes = " ".join(f"r{i}={'?' if v is None else hex(v)}"
                               for i, (a, v) in enumerate(zip(before, regs)) if a != v)
            self.trace_lines.append(f"{pc:5d}: {text}" + (f"  ; {changes}" if changes else ""))
            pc = nxt


# -- compilation: slot index -> (handler, insn) ---------------------------------------

_COMPILED: dict[int, tuple[Program, list]] = {}


def _compile(program: Program) -> list:
    """The per-slot handler list, cached per Program object (a few dozen kept)."""
    hit = _COMPILED.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1]
    ops = _compile_uncached(program)
    if len(_COMPILED) >= 64:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[id(program)] = (program, ops)
    return ops


def _compile_uncached(program: Program) -> list:
    ops: list = []
    for insn in program.insns:
        handler = _TABLE[insn.code]
        if handler is None:
            handler = _bad_opcode
        ops.append((handler, insn))
        if insn.width == 2:
            ops.append((None, insn))
    return ops


def _outside(pc: int, n: int) -> Trap:
    if pc == n:
        return Trap(f"execution ran past the last instruction (pc {n}) without exit")
    return Trap(f"jump to {pc}, outside the program (0..{n - 1})")


def _bad_opcode(m: Machine, insn: Insn, pc: int) -> int:
    raise Trap(f"invalid opcode 0x{insn.code:02x}")


def _uninit(reg: int) -> Trap:
    return Trap(f"read of uninitialised register r{reg}")


# -- ALU ---------------------------------------------------------------------------

def _shift_ops(bits: int):
    m = (1 << bits) - 1
    sh = bits - 1
    return {
        AluOp.ADD: lambda a, b: (a + b) & m,
        AluOp.SUB: lambda a, b: (a - b) & m,
        AluOp.MUL: lambda a, b: (a * b) & m,
        AluOp.OR: lambda a, b: a | b,
        AluOp.AND: lambda a, b: a & b,
        AluOp.XOR: lambda a, b: a ^ b,
        AluOp.LSH: lambda a, b: (a << (b & sh)) & m,
        AluOp.RSH: lambda a, b: a >> (b & sh),
        AluOp.ARSH: lambda a, b: (sext(a, bits) >> (b & sh)) & m,
    }


def _make_alu(cls: InsnClass, op: AluOp, src: Source):
    bits = 64 if cls == InsnClass.ALU64 else 32
    m = (1 << bits) - 1
    x = src == Source.X

    if op == AluOp.MOV:
        if cls == InsnClass.ALU64:
            if not x:
                def h(vm, i, pc):
                    vm.regs[i.dst] = i.imm & MASK64
                    return pc + 1
                return h

            def h(vm, i, pc):
                v = vm.regs[i.src]
                if v is None:
                    raise _uninit(i.src)
                vm.regs[i.dst] = v if i.off == 0 else sext(v, i.off) & MASK64
                return pc + 1
            return h
        if not x:
            def h(vm, i, pc):
                vm.regs[i.dst] = i.imm & MASK32
                return pc + 1
            return h

        def h(vm, i, pc):
            v = vm.regs[i.src]
            if v is None:
                raise _uninit(i.src)
            vm.regs[i.dst] = (v if i.off == 0 else sext(v, i.off)) & MASK32
            return pc + 1
        return h

    if op == AluOp.NEG:
        def h(vm, i, pc):
            v = vm.regs[i.dst]
            if v is None:
                raise _uninit(i.dst)
            vm.regs[i.dst] = (-v) & m
            return pc + 1
        return h

    if op == AluOp.END:
        if cls == InsnClass.ALU64:   # bswap: unconditional
            conv = lambda v, width: bswap(v, width)  # noqa: E731
        elif x:                       # to big-endian: the host (little-endian) must swap
            conv = lambda v, width: bswap(v, width)  # noqa: E731
        else:                         # to little-endian: just truncate
            conv = lambda v, width: v & ((1 << width) - 1)  # noqa: E731

        def h(vm, i, pc):
            v = vm.regs[i.dst]
            if v is None:
                raise _uninit(i.dst)
            vm.regs[i.dst] = conv(v, i.imm)
            return pc + 1
        return h

    if op in (AluOp.DIV, AluOp.MOD):
        if op == AluOp.DIV:
            fns = (udiv, sdiv)
        else:
            fns = (umod, smod)

        def h(vm, i, pc):
            r = vm.regs
            a = r[i.dst]
            if a is None:
                raise _uninit(i.dst)
            if x:
                b = r[i.src]
                if b is None:
                    raise _uninit(i.src)
            else:
                b = i.imm & m
            if i.off not in (0, 1):
                raise Trap(f"division offset must be 0 or 1, not {i.off}")
            r[i.dst] = fns[i.off](a & m, b & m, bits)
            return pc + 1
        return h

    fn = _shift_ops(bits)[op]
    if bits == 64:
        if x:
            def h(vm, i, pc):
                r = vm.regs
                a = r[i.dst]
                b = r[i.src]
                if a is None or b is None:
                    raise _uninit(i.dst if a is None else i.src)
                r[i.dst] = fn(a, b)
                return pc + 1
            return h

        def h(vm, i, pc):
            r = vm.regs
            a = r[i.dst]
            if a is None:
                raise _uninit(i.dst)
            r[i.dst] = fn(a, i.imm & MASK64)
            return pc + 1
        return h
    if x:
        def h(vm, i, pc):
            r = vm.regs
            a = r[i.dst]
            b = r[i.src]
            if a is None or b is None:
                raise _uninit(i.dst if a is None else i.src)
            r[i.dst] = fn(a & MASK32, b & MASK32)
            return pc + 1
        return h

    def h(vm, i, pc):
        r = vm.regs
        a = r[i.dst]
        if a is None:
            raise _uninit(i.dst)
        r[i.dst] = fn(a & MASK32, i.imm & MASK32)
        return pc + 1
    return h


# -- jumps -------------------------------------------------------------------------

def _conditions(bits: int):
    s = lambda v: sext(v, bits)  # noqa: E731
    return {
        JmpOp.JEQ: lambda a, b: a == b,
        JmpOp.JNE: lambda a, b: a != b,
        JmpOp.JGT: lambda a, b: a > b,
        JmpOp.JGE: lambda a, b: a >= b,
        JmpOp.JLT: lambda a, b: a < b,
        JmpOp.JLE: lambda a, b: a <= b,
        JmpOp.JSET: lambda a, b: (a & b) != 0,
        JmpOp.JSGT: lambda a, b: s(a) > s(b),
        JmpOp.JSGE: lambda a, b: s(a) >= s(b),
        JmpOp.JSLT: lambda a, b: s(a) < s(b),
        JmpOp.JSLE: lambda a, b: s(a) <= s(b),
    }


def _make_jmp(cls: InsnClass, op: JmpOp, src: Source):
    bits = 64 if cls == InsnClass.JMP else 32
    m = (1 << bits) - 1
    x = src == Source.X
    if op == JmpOp.JA:
        if cls == InsnClass.JMP32:   # gotol: offset in imm
            return lambda vm, i, pc: pc + 1 + i.imm
        if src == Source.X:
            return None
        return lambda vm, i, pc: pc + 1 + i.off
    if op == JmpOp.CALL:
        return _call if cls == InsnClass.JMP and not x else None
    if op == JmpOp.EXIT:
        return _exit if cls == InsnClass.JMP and not x else None
    cond = _conditions(bits)[op]
    if x:
        def h(vm, i, pc):
            r = vm.regs
            a = r[i.dst]
            b = r[i.src]
            if a is None or b is None:
                raise _uninit(i.dst if a is None else i.src)
            return pc + 1 + i.off if cond(a & m, b & m) else pc + 1
        return h

    def h(vm, i, pc):
        a = vm.regs[i.dst]
        if a is None:
            raise _uninit(i.dst)
        return pc + 1 + i.off if cond(a & m, i.imm & m) else pc + 1
    return h


def _call(vm: Machine, i: Insn, pc: int) -> int:
    if i.src == CallKind.LOCAL:
        if len(vm.frames) >= MAX_CALL_FRAMES:
            raise Trap(f"BPF-to-BPF call nesting deeper than {MAX_CALL_FRAMES} frames")
        r = vm.regs
        frame = vm.frames[-1]
        stack = vm.push_stack()
        vm.frames.append(_Frame(pc + 1, r[6:11], stack, frame.ops, frame.program))
        if vm.strict:
            r[0] = None
            r[6] = r[7] = r[8] = r[9] = None
        r[10] = stack.base + STACK_SIZE
        return pc + 1 + i.imm
    if i.src == CallKind.KFUNC:
        from nfpjit.ebpf.kfuncs import call_kfunc

        result = call_kfunc(vm, vm.frames[-1].program, pc, i)
        r = vm.regs
        r[0] = result & MASK64
        if vm.strict:
            r[1] = r[2] = r[3] = r[4] = r[5] = None
        return pc + 1
    spec = HELPERS.get(i.imm)
    if spec is None:
        name = Helper(i.imm).name if i.imm in Helper._value2member_map_ else None
        what = f"bpf_{name} (id {i.imm})" if name else f"unknown helper id {i.imm}"
        raise Trap(f"call to {what}, which the interpreter does not implement")
    r = vm.regs
    args = r[1 : 1 + spec.nargs]
    for n, a in enumerate(args, 1):
        if a is None:
            if n <= spec.needed:
                raise Trap(f"bpf_{spec.helper.name}: argument r{n} is uninitialised")
            args[n - 1] = 0
    result = spec.fn(vm, *args)
    r[0] = result & MASK64
    if vm.strict:
        r[1] = r[2] = r[3] = r[4] = r[5] = None
    if vm.switch is not None:
        ops, program = vm.switch
        vm.switch = None
        frame = vm.frames[-1]
        vm.drop_region(frame.stack)
        frame.stack = vm.push_stack()
        frame.ops, frame.program = ops, program
        ctx = args[0]
        r[:] = [None if vm.strict else 0] * 11
        r[1] = ctx
        r[10] = frame.stack.base + STACK_SIZE
        vm.ops = ops
        vm._switch_pc = 0
        return _SWITCH
    return pc + 1


def _exit(vm: Machine, i: Insn, pc: int) -> int:
    r = vm.regs
    if r[0] is None:
        raise _uninit(0)
    frame = vm.frames.pop()
    vm.drop_region(frame.stack)
    if not vm.frames:
        return _EXIT
    r[6:11] = frame.saved
    if vm.strict:
        r[1] = r[2] = r[3] = r[4] = r[5] = None
    caller = vm.frames[-1]
    if caller.ops is not vm.ops:
        vm.ops = caller.ops
        vm._switch_pc = frame.return_pc
        return _SWITCH
    return frame.return_pc


# -- memory ------------------------------------------------------------------------

def _make_ldx(size: Size, signed: bool):
    n = size.nbytes
    if signed:
        bits = 8 * n

        def h(vm, i, pc):
            a = vm.regs[i.src]
            if a is None:
                raise _uninit(i.src)
            vm.regs[i.dst] = sext(vm.load((a + i.off) & MASK64, n), bits) & MASK64
            return pc + 1
        return h

    def h(vm, i, pc):
        a = vm.regs[i.src]
        if a is None:
            raise _uninit(i.src)
        vm.regs[i.dst] = vm.load((a + i.off) & MASK64, n)
        return pc + 1
    return h


def _make_st(size: Size):
    n = size.nbytes

    def h(vm, i, pc):
        a = vm.regs[i.dst]
        if a is None:
            raise _uninit(i.dst)
        vm.store((a + i.off) & MASK64, n, i.imm)
        return pc + 1
    return h


def _make_stx(size: Size):
    n = size.nbytes

    def h(vm, i, pc):
        r = vm.regs
        a = r[i.dst]
        v = r[i.src]
        if a is None or v is None:
            raise _uninit(i.dst if a is None else i.src)
        vm.store((a + i.off) & MASK64, n, v)
        return pc + 1
    return h


def _make_atomic(size: Size):
    n = size.nbytes
    bits = 8 * n
    m = (1 << bits) - 1
    arith = _shift_ops(bits)

    def h(vm, i, pc):
        r = vm.regs
        a = r[i.dst]
        v = r[i.src]
        if a is None or v is None:
            raise _uninit(i.dst if a is None else i.src)
        imm = u32(i.imm)
        if imm not in AtomicOp._value2member_map_:
            raise Trap(f"unknown atomic operation 0x{imm:x}")
        op = AtomicOp(imm)
        addr = (a + i.off) & MASK64
        region, _ = vm._resolve(addr, n, True)
        if region.kind not in (RegionKind.STACK, RegionKind.MAP_VALUE, RegionKind.MEMORY):
            raise Trap(f"atomic operation on {region.kind.label} memory", addr)
        old = vm.load(addr, n)
        if op == AtomicOp.CMPXCHG:
            r0 = r[0]
            if r0 is None:
                raise _uninit(0)
            if old == r0 & m:
                vm.store(addr, n, v)
            r[0] = old
            return pc + 1
        if op == AtomicOp.XCHG:
            vm.store(addr, n, v)
        else:
            vm.store(addr, n, arith[op.alu_op](old, v & m))
        if op.fetches:
            r[i.src] = old
        return pc + 1
    return h


def _ld_imm64(vm: Machine, i: Insn, pc: int) -> int:
    src = i.src
    if src == PseudoSrc.IMM64:
        vm.regs[i.dst] = i.imm64
        return pc + 2
    if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX, PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE):
        program = vm.frames[-1].program
        maps = vm.maps_of(program)
        index = i.imm
        if not 0 <= index < len(maps):
            raise Trap(f"ld_imm64 refers to map index {index}, but the program has {len(maps)} maps")
        bpf_map = maps[index]
        if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
            vm.regs[i.dst] = vm.map_ptr(bpf_map)
            return pc + 2
        value = bpf_map.lookup(bytes(4))
        if value is None or bpf_map.mapdef.type not in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            raise Trap(f"map value pseudo-load from map {bpf_map.name!r}, which is not a one-entry array")
        vm.regs[i.dst] = (vm.value_ptr(value, bpf_map.name) + u32(i.imm2)) & MASK64
        return pc + 2
    if src == PseudoSrc.FUNC:
        frame = vm.frames[-1]
        target = pc + 1 + i.imm
        if not 0 <= target < len(frame.ops) or frame.ops[target][0] is None:
            raise Trap(f"ld_imm64 func refers to slot {target}, which is not an instruction")
        vm.regs[i.dst] = vm.function_ptr(frame.ops, frame.program, target)
        return pc + 2
    raise Trap(f"ld_imm64 with pseudo source {PseudoSrc(src).name} is not supported by the interpreter")


def _make_ld_abs(size: Size, indirect: bool):
    n = size.nbytes

    def h(vm, i, pc):
        r = vm.regs
        off = i.imm
        if indirect:
            s = r[i.src]
            if s is None:
                raise _uninit(i.src)
            off = s32(s + i.imm)
        # The legacy loads read the packet big-endian and end the program with
        # r0 = 0 when the bytes are not there.  Negative offsets address the
        # network header (SKF_NET_OFF, just after the Ethernet header) or the
        # MAC header (SKF_LL_OFF, the frame start) as the kernel's helper does.
        buf, lo, hi = vm.abs_window()
        if off < 0:
            if off >= SKF_NET_OFF:
                off += ETH_HLEN - SKF_NET_OFF
            elif off >= SKF_LL_OFF:
                off -= SKF_LL_OFF
            else:
                off = hi  # below every window: out of bounds
        if lo + off + n > hi:
            r[0] = 0
            return _exit_program(vm)
        r[0] = int.from_bytes(buf[lo + off : lo + off + n], "big")
        if vm.strict:
            r[1] = r[2] = r[3] = r[4] = r[5] = None
        return pc + 1
    return h


def _exit_program(vm: Machine) -> int:
    while vm.frames:
        vm.drop_region(vm.frames.pop().stack)
    return _EXIT




# -- the table ---------------------------------------------------------------------

def _build_table() -> list:
    table: list = [None] * 256
    for cls in (InsnClass.ALU, InsnClass.ALU64):
        for op in AluOp:
            for src in Source:
                if op == AluOp.NEG and src == Source.X:
                    continue
                if op == AluOp.END and cls == InsnClass.ALU64 and src == Source.X:
                    continue
                table[cls | op | src] = _make_alu(cls, op, src)
    for cls in (InsnClass.JMP, InsnClass.JMP32):
        for op in JmpOp:
            for src in Source:
                table[cls | op | src] = _make_jmp(cls, op, src)
    for size in Size:
        table[InsnClass.LDX | Mode.MEM | size] = _make_ldx(size, False)
        table[InsnClass.ST | Mode.MEM | size] = _make_st(size)
        table[InsnClass.STX | Mode.MEM | size] = _make_stx(size)
        if size != Size.DW:
            table[InsnClass.LDX | Mode.MEMSX | size] = _make_ldx(size, True)
            table[InsnClass.LD | Mode.ABS | size] = _make_ld_abs(size, False)
            table[InsnClass.LD | Mode.IND | size] = _make_ld_abs(size, True)
    for size in (Size.W, Size.DW):
        table[InsnClass.STX | Mode.ATOMIC | size] = _make_atomic(size)
    table[InsnClass.LD | Mode.IMM | Size.DW] = _ld_imm64
    return table


_TABLE = _build_table()


# -- public API --------------------------------------------------------------------

def _prepare(program: Program, maps: MapStore | None, budget: int, kwargs) -> Machine:
    if not isinstance(program, Program):
        raise UsageError(f"expected a Program, got {type(program).__name__}")
    if budget <= 0:
        raise UsageError(f"instruction budget must be positive, not {budget}")
    check_modelled(program)
    for target in (kwargs.get("prog_array_programs") or {}).values():
        if isinstance(target, Program):
            check_modelled(target)
    if maps is None:
        maps = MapStore.from_program(program)
    return Machine(program, maps, budget=budget, **kwargs)


def check_modelled(program: Program) -> None:
    """Raise UnsupportedError naming the first kernel helper or kfunc the program calls that is not modelled.

    A program that uses something the interpreter cannot run gets this one clear error before
    it runs instead of a fault the kernel would never give.  Helper ids the kernel does not
    know either stay run-time faults (as a kernel would refuse to load them).
    """
    from nfpjit.errors import UnsupportedError
    from nfpjit.ebpf.kfuncs import KFUNCS

    for pc, insn in program.slots():
        try:
            if not insn.is_call:
                continue
        except (ValueError, TypeError):
            continue   # a malformed hand-built instruction: it faults when it runs
        where = f"{program.source_path or program.name}: insn {pc}"
        loc = program.line_info.get(pc)
        if loc is not None:
            where += f" ({loc})"
        if insn.src == CallKind.HELPER and insn.imm not in HELPERS and insn.imm in Helper._value2member_map_:
            name = Helper(insn.imm).name
            hint = ("bpf timers need a kernel clock and deferred callbacks, which a single test run does not "
                    "have" if name.startswith("timer_") else "docs/interpreter.md lists the helpers it models")
            raise UnsupportedError(f"helper bpf_{name} (id {insn.imm}) is not modelled by the interpreter",
                                   where=where, hint=hint)
        if insn.src == CallKind.KFUNC:
            name = program.kfuncs.get(pc)
            if name not in KFUNCS:
                what = name or f"btf id {insn.imm}"
                raise UnsupportedError(f"kfunc {what} is not modelled by the interpreter", where=where,
                                       hint="modelled kfuncs: " + ", ".join(sorted(KFUNCS)))


def run(program: Program, packet: PacketIn | bytes, *, maps: MapStore | None = None,
        prog_array_programs: dict | None = None, budget: int = DEFAULT_BUDGET, trace: bool = False,
        seed: int = 0, clock_ns: int = 0, clock_step_ns: int = 0,
        tailroom: int | None = 256, stack_fill: int = 0, net=None) -> RunResult:
    """Run an XDP or TC (direct-action) program on one packet.

    ``maps`` is updated in place (pass one to keep state across packets); the
    result's ``maps`` is a dump after the run.  ``prog_array_programs`` maps a
    prog-array index (or ``(map name, index)``) to the Program a tail call
    enters.  ``seed`` seeds bpf_get_prandom_u32; bpf_ktime_get_ns returns
    ``clock_ns`` and advances it by ``clock_step_ns`` per call.  ``tailroom`` is how far
    bpf_xdp_adjust_tail may grow the packet; None gives BPF_PROG_TEST_RUN's geometry
    (a 4096-byte frame), which is what the kernel oracle sees.  New stack frames are
    filled with the byte ``stack_fill``: running twice with different fills shows
    whether a program reads stack it never wrote (the kernel gives such reads garbage).
    ``net`` (a :class:`nfpjit.ebpf.net.Net`) is the network namespace bpf_fib_lookup and
    bpf_check_mtu see; None is a fresh namespace with only ``lo`` (forwarding off).
    """
    if isinstance(packet, (bytes, bytearray, memoryview)):
        packet = PacketIn(bytes(packet))
    if not isinstance(packet, PacketIn):
        raise UsageError(f"expected packet bytes or a PacketIn, got {type(packet).__name__}")
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT):
        raise UsageError(f"program {program.name!r} is of type {program.prog_type.name}, not XDP or TC",
                         hint="use run_raw for programs that take a raw memory block")
    vm = _prepare(program, maps, budget, dict(seed=seed, clock_ns=clock_ns, clock_step_ns=clock_step_ns,
                                              prog_array_programs=prog_array_programs, trace=trace,
                                              stack_fill=stack_fill, net=net))
    vm.setup_packet(packet, tailroom=tailroom)
    return vm.run([vm.ctx_addr])


def run_raw(program: Program, memory: bytes = b"", *, maps: MapStore | None = None,
            prog_array_programs: dict | None = None, budget: int = DEFAULT_BUDGET, trace: bool = False,
            seed: int = 0, clock_ns: int = 0, clock_step_ns: int = 0,
            strict_registers: bool = True, stack_fill: int = 0) -> RunResult:
    """Run with r1 = pointer to a copy of ``memory``, r2 = its length (uBPF convention).

    ``RunResult.r0`` is the full 64-bit r0 and ``RunResult.packet`` the memory block after the run.
    With ``strict_registers=False`` (the bpf_conformance convention) registers start at zero instead
    of uninitialised, calls leave r1-r5 as they are, and r1 is 0 when ``memory`` is empty.
    """
    vm = _prepare(program, maps, budget, dict(seed=seed, clock_ns=clock_ns, clock_step_ns=clock_step_ns,
                                              prog_array_programs=prog_array_programs, trace=trace,
                                              strict_registers=strict_registers, stack_fill=stack_fill))
    vm.memory_region = vm.add_region(RegionKind.MEMORY, bytearray(memory), "memory")
    r1 = vm.memory_region.base if memory or strict_registers else 0
    return vm.run([r1, len(memory)])


__all__ = ["run", "run_raw", "Machine", "Trap", "RegionKind", "Region", "REGION_SHIFT", "STACK_SIZE",
           "MAX_CALL_FRAMES", "MAX_TAIL_CALLS", "DEFAULT_BUDGET"]

"""The NFP-32 machine: one core's state, its memories, the run loop, and :func:`simulate`.

State: GPR banks A and B, transfer registers ($in written by memory reads,
$out sent by writes), next-neighbour registers, 4 KiB of local memory with
four LM index pointers (usable 3 cycles after their CSR is written), the
condition codes Z N C V, ``prev`` (the last ALU result, for indirect
shifts and counts), the multiplier, CSRs (seeded pseudo-random numbers,
timestamp = cycle count, packet address/length, queues), the CTM packet
buffer with 256 bytes of headroom, and EMEM map tables.  Faults are
results: the run stops and :class:`~nfpjit.isa.sim.result.SimResult.fault`
says why, where, and (through the image's line table) which eBPF
instruction and source line.
"""

from __future__ import annotations

import dataclasses
import functools

import random
from functools import lru_cache
from types import MappingProxyType
from typing import Sequence

from nfpjit.bits import MASK32, join64
from nfpjit.errors import UnsupportedError, UsageError
from nfpjit.isa.disasm import format_instruction
from nfpjit.isa.encoding import decode
from nfpjit.isa.image import Image, ImageMapType, ImageProgType, SymbolKind, image_from_asm, relocate
from nfpjit.isa.operands import NN, Bank, Gpr, GprBoth, IllegalInstruction, Imm, LMem, NoDest, Xfer, XferIndex, XferSide
from nfpjit.isa.table import PKT_META_CSRS, READ_ONLY_CSRS, Csr, Format, Instruction, Memory, Op

from .cycles import CYCLES, DEFAULT_BUDGET, DEFAULT_MAP_CACHE_SIZE, T_INDEX_DELAY, Resource
from .firmware import FIRMWARE_BASE, RETURN_ADDRESS_REG, ROUTINE_ADDRESSES, ROUTINES, MapCache, Routine
from .memory import (
    CTM_BASE,
    CTM_BUFFER_SIZE,
    EMEM_MAP_BASE,
    HEADROOM,
    LM_SIZE,
    RawBlock,
    MAX_PACKET,
    SCRATCH_SIZE,
    Emem,
    Flat,
    MapTable,
    Trap,
)
from .result import FaultKind, PacketMeta, SimFault, SimResult, TraceEntry, Usage
from .semantics import HANDLERS

_LM_CSRS = {Csr.ACTIVE_LM_ADDR_0: 0, Csr.ACTIVE_LM_ADDR_1: 1, Csr.ACTIVE_LM_ADDR_2: 2, Csr.ACTIVE_LM_ADDR_3: 3}
LM_POINTER_DELAY = 3   # cycles between writing an LM pointer CSR and using the pointer
MAX_MAP_BYTES = 256 << 20   # EMEM the simulator allocates for map values, all maps together
MAX_VALUE_SIZE = 1 << 16


@lru_cache(maxsize=1 << 16)
def _decode(word: int) -> Instruction | str:
    """The instruction of a word, or the decoder's message for an invalid word (a fault only if executed)."""
    try:
        return decode(word)
    except IllegalInstruction as exc:
        return exc.message


@functools.lru_cache(maxsize=64)
def _decode_code(code: tuple[int, ...]) -> tuple[Instruction | str, ...]:
    """Decode a code section once; images are immutable, so runs over many packets share it."""
    return tuple(_decode(word) for word in code)


class Machine:
    """One core running one program on one packet (build it with :func:`simulate`)."""

    def __init__(self, image: Image, packet: bytes, *, maps_in, budget: int, map_cache_size: int, seed: int,
                 trace: bool, ingress_ifindex: int, rx_queue_index: int, raw_memory: bool = False,
                 map_cache: MapCache | None = None, meta: PacketMeta | None = None, shared: "Machine | None" = None,
                 cpu: int = 0, ncpus: int = 1):
        self.image = image
        self.cpu = cpu              # this thread's number: its copy of per-CPU map values
        self.ncpus = ncpus          # threads running at once (copies a per-CPU value has)
        self.instrs: tuple[Instruction | str, ...] = _decode_code(image.code)
        self.gpr_a = [0] * 32
        self.gpr_b = [0] * 32
        self.xin = [0] * 32
        self.t_index = 0
        self.t_index_ready = 0
        self.xout = [0] * 32
        self.nn = [0] * 32
        self.lm = Flat("local memory", 0, LM_SIZE, FaultKind.STACK_OVERFLOW)
        self.lm_ptr = [0] * 4
        self.lm_ready = [0] * 4
        self.z = self.n = self.c = self.v = 0
        self.prev = 0
        self.mul_x = self.mul_y = None
        self.mul_acc = self.mul_steps = 0
        self.mul_mode = None
        self.ctm = RawBlock(CTM_BASE + HEADROOM, len(packet)) if raw_memory else Flat("CTM", CTM_BASE, CTM_BUFFER_SIZE)
        self.ctm.data[HEADROOM:HEADROOM + len(packet)] = packet
        self.pkt_addr = CTM_BASE + HEADROOM
        self.pkt_len = len(packet)
        self.rx_queue = rx_queue_index & MASK32
        self.ifindex = ingress_ifindex & MASK32
        meta = (meta or PacketMeta()).filled(packet, ingress_ifindex)
        self.tx_queue = meta.queue_mapping & MASK32
        self.meta = dict(zip(PKT_META_CSRS, (v & MASK32 for v in meta.csr_values())))
        self.imem = Flat("IMEM", 0, SCRATCH_SIZE)
        self.cls = Flat("CLS", 0, SCRATCH_SIZE)
        self.rng = random.Random(seed)
        self.cycles = 0
        self.insns = 0
        self.budget = budget
        self.usage = {r: [0, 0] for r in Resource}
        self.signals: dict[int, tuple[int, Resource]] = {}
        self.branch_left = 0
        self.branch_target = 0
        self.halted = False
        self.action = 0
        self.changes: list | None = [] if trace else None
        self.trace: list[TraceEntry] | None = [] if trace else None
        self.routine_calls: dict[str, int] = {}
        self.redirect: int | None = None            # fw_redirect's target
        # a cache given by the caller persists across runs (the NIC's stays warm); counts are per run
        self.map_cache = map_cache if map_cache is not None else MapCache(map_cache_size)
        self._cache_counts = (self.map_cache.hits, self.map_cache.misses)
        if shared is None:
            self._build_maps(maps_in or {})
        else:       # another thread of the same core group: one set of map tables (EMEM) for all
            self.tables, self.tables_by_id, self.emem = shared.tables, shared.tables_by_id, shared.emem

    # -- maps -----------------------------------------------------------------------

    def _build_maps(self, maps_in) -> None:
        # table id: the MAP symbol's value once relocated, else the map's index in the image
        ids = {s.name: s.address for s in self.image.symbols if s.kind == SymbolKind.MAP}
        self.tables: list[MapTable] = []
        self.tables_by_id: dict[int, MapTable] = {}
        total = 0
        for i, m in enumerate(self.image.maps):
            copies = self.ncpus if m.type.percpu else 1
            total += m.max_entries * ((max(m.value_size, 1) + 7) & ~7) * copies
            if total > MAX_MAP_BYTES or m.value_size > MAX_VALUE_SIZE:
                raise UnsupportedError(f"map {m.name!r}: the maps need more than the simulator's "
                                       f"{MAX_MAP_BYTES >> 20} MiB of EMEM (or a value over {MAX_VALUE_SIZE} bytes)",
                                       hint="the NIC holds about 2M entries in total; use smaller max_entries")
            t = MapTable(m.name, m.type.is_hash, m.key_size, m.value_size, m.max_entries,
                         ids.get(m.name, m.id), EMEM_MAP_BASE + (i << 32), self.ncpus if m.type.percpu else 0,
                         m.type.lru)
            if t.table_id in self.tables_by_id:
                raise UsageError(f"maps {self.tables_by_id[t.table_id].name!r} and {m.name!r} share table id "
                                 f"{t.table_id}", hint="relocate the image with distinct map table ids")
            self.tables.append(t)
            self.tables_by_id[t.table_id] = t
        by_name = {t.name: t for t in self.tables}
        for d in self.image.data:
            t = by_name[d.map]
            t.values[:min(len(d.data), t.value_size)] = d.data[:t.value_size]
        if not isinstance(maps_in, dict) or not all(isinstance(v, dict) for v in maps_in.values()):
            raise UsageError("maps_in must be a dict: map name -> {key bytes: value bytes}")
        for name, entries in maps_in.items():
            t = by_name.get(name)
            if t is None:
                raise UsageError(f"maps_in names map {name!r}, which the image does not have",
                                 hint="image maps: " + ", ".join(by_name) if by_name else "the image has no maps")
            for key, value in entries.items():
                if not isinstance(key, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
                    raise UsageError(f"maps_in[{name!r}]: keys and values must be bytes")
                key, value = bytes(key), bytes(value)
                if len(key) != t.key_size or len(value) != t.value_size:
                    raise UsageError(f"maps_in[{name!r}]: key/value must be {t.key_size}/{t.value_size} bytes")
                if t.update(key, value, 0) != 0:
                    raise UsageError(f"maps_in[{name!r}]: key {key.hex()} does not fit the map")
        self.emem = Emem(self.tables)

    # -- accounting -----------------------------------------------------------------

    def charge(self, resource: Resource, cycles: int, accesses: int = 1) -> None:
        u = self.usage[resource]
        u[0] += accesses
        u[1] += cycles
        self.cycles += cycles

    def complete(self, resource: Resource, latency: int, signal: int, ctx_swap: bool) -> None:
        """Book a memory command issued now: wait for it, or remember when its signal comes."""
        if ctx_swap:
            self.charge(resource, latency)
        else:
            self.usage[resource][0] += 1
            if signal:
                self.signals[signal] = (self.cycles + 1 + latency, resource)

    # -- operands -------------------------------------------------------------------

    def _lm_address(self, op: LMem) -> int:
        p = op.pointer
        if self.cycles < self.lm_ready[p]:
            raise Trap(FaultKind.LM_POINTER_TOO_SOON,
                       f"LM index pointer {p} used {self.cycles - self.lm_ready[p] + LM_POINTER_DELAY} cycle(s) after "
                       f"its CSR was written (needs {LM_POINTER_DELAY})")
        address = self.lm_ptr[p] + 4 * op.offset
        if op.postinc:
            self.lm_ptr[p] = (self.lm_ptr[p] + 4) & MASK32
        self.charge(Resource.LM, CYCLES["lm_access"])
        return address

    def read(self, op) -> int:
        t = op.__class__
        if t is Gpr:
            return (self.gpr_a if op.bank == Bank.A else self.gpr_b)[op.index]
        if t is Imm:
            return op.value
        if op is None:
            return 0
        if t is Xfer:
            if op.side != XferSide.IN:
                raise Trap(FaultKind.ILLEGAL_INSTRUCTION, f"{op} is write-only")
            self.charge(Resource.XFER, CYCLES["xfer_read"])
            return self.xin[op.index]
        if t is NN:
            return self.nn[op.index]
        if t is LMem:
            return int.from_bytes(self.lm.read(self._lm_address(op), 4), "little")
        if t is XferIndex:               # waits out the T_INDEX write's delay
            self.charge(Resource.XFER, max(0, self.t_index_ready - self.cycles))
            return self.xin[self.t_index & 31]
        raise Trap(FaultKind.ILLEGAL_INSTRUCTION, f"{op} cannot be read")

    def read_dest(self, op) -> int:
        """The current value of a destination (for partial writes: immed lo/hi, ld_field)."""
        t = op.__class__
        if t is Xfer:
            return self.xout[op.index]
        if t is NoDest:
            return 0
        if t is LMem:
            # the write that follows charges the access and applies any post-increment
            return int.from_bytes(self.lm.read(self.lm_ptr[op.pointer] + 4 * op.offset, 4), "little")
        return self.read(op)

    def write(self, op, value: int) -> None:
        t = op.__class__
        if t is Gpr:
            regs = self.gpr_a if op.bank == Bank.A else self.gpr_b
            if self.changes is not None:
                self.changes.append((str(op), regs[op.index], value))
            regs[op.index] = value
        elif t is GprBoth:
            if self.changes is not None:
                self.changes.append((f"a{op.index}", self.gpr_a[op.index], value))
                self.changes.append((f"b{op.index}", self.gpr_b[op.index], value))
            self.gpr_a[op.index] = self.gpr_b[op.index] = value
        elif t is NoDest:
            return
        elif t is Xfer and op.side == XferSide.OUT:
            if self.changes is not None:
                self.changes.append((str(op), self.xout[op.index], value))
            self.xout[op.index] = value
        elif t is NN:
            if self.changes is not None:
                self.changes.append((str(op), self.nn[op.index], value))
            self.nn[op.index] = value
        elif t is LMem:
            address = self._lm_address(op)
            if self.changes is not None:
                self.changes.append((f"lm[{address:#x}]", int.from_bytes(self.lm.read(address, 4), "little"), value))
            self.lm.write(address, value.to_bytes(4, "little"))
        else:
            raise Trap(FaultKind.ILLEGAL_INSTRUCTION, f"{op} cannot be written")

    def set_xin(self, index: int, value: int) -> None:
        if self.changes is not None:
            self.changes.append((f"$in{index}", self.xin[index], value))
        self.xin[index] = value

    def memory(self, mem: Memory):
        return (self.ctm, self.emem, self.imem, self.cls)[mem]

    # -- CSRs -------------------------------------------------------------------------

    def csr_read(self, csr: Csr) -> int:
        if csr in _LM_CSRS:
            return self.lm_ptr[_LM_CSRS[csr]]
        if csr == Csr.PSEUDO_RANDOM:
            return self.rng.getrandbits(32)
        if csr == Csr.TIMESTAMP_LO:
            return self.cycles & MASK32
        if csr == Csr.TIMESTAMP_HI:
            return self.cycles >> 32 & MASK32
        if csr in self.meta:
            return self.meta[csr]
        return {Csr.PKT_ADDR: self.pkt_addr, Csr.PKT_LEN: self.pkt_len, Csr.RX_QUEUE: self.rx_queue,
                Csr.TX_QUEUE: self.tx_queue, Csr.INGRESS_IFINDEX: self.ifindex, Csr.T_INDEX: self.t_index}[csr]

    def csr_write(self, csr: Csr, value: int) -> None:
        if self.changes is not None:
            self.changes.append((csr.name.lower(), self.csr_read(csr) if csr != Csr.PSEUDO_RANDOM else 0, value))
        if csr in READ_ONLY_CSRS:
            raise Trap(FaultKind.ILLEGAL_INSTRUCTION, f"CSR {csr.name} is read-only")
        if csr in _LM_CSRS:
            p = _LM_CSRS[csr]
            self.lm_ptr[p] = value
            self.lm_ready[p] = self.cycles + 1 + LM_POINTER_DELAY
        elif csr == Csr.T_INDEX:
            self.t_index = value
            self.t_index_ready = self.cycles + 1 + T_INDEX_DELAY
        elif csr in (Csr.PKT_ADDR, Csr.PKT_LEN):
            addr = value if csr == Csr.PKT_ADDR else self.pkt_addr
            length = value if csr == Csr.PKT_LEN else self.pkt_len
            if addr < CTM_BASE or addr + length > CTM_BASE + CTM_BUFFER_SIZE:
                raise Trap(FaultKind.OUT_OF_BOUNDS, f"packet [{addr:#x}, +{length}) outside the CTM packet buffer",
                           addr)
            self.pkt_addr, self.pkt_len = addr, length
        elif csr in self.meta:
            self.meta[csr] = value & MASK32
        else:
            self.tx_queue = value

    @property
    def cc(self) -> int:
        """The condition codes as a number: Z N C V = bits 3 2 1 0 (for the trace)."""
        return bool(self.z) << 3 | bool(self.n) << 2 | bool(self.c) << 1 | bool(self.v)

    # -- control flow -------------------------------------------------------------------

    def check_not_in_defer(self) -> None:
        if self.branch_left:
            raise Trap(FaultKind.ILLEGAL_INSTRUCTION, "branch in the defer slot of another branch")

    def take_branch(self, target: int, defer: int) -> None:
        self.check_not_in_defer()
        self.branch_target = target
        self.branch_left = defer + 1
        self.charge(Resource.BRANCH, max(0, CYCLES["branch_taken"] - defer))

    def run(self, swaps: Sequence[bool] | None = None):
        """Run to the end: None or the fault.  With ``swaps`` (per code address: does the instruction
        there swap the thread out?) the run also stops after such an instruction and after every
        firmware call and returns :data:`SWAPPED`; calling ``run`` again resumes it."""
        instrs = self.instrs
        handlers = [HANDLERS[i.op] if i.__class__ is not str else None for i in instrs]
        ncode = len(instrs)
        resume = getattr(self, "_resume", None)
        pc = self.image.metadata.entry if resume is None else resume
        issue = CYCLES["issue"]
        issue_usage = self.usage[Resource.ISSUE]
        trace = self.trace
        self.pc = pc
        try:
            if resume is None and self.image.metadata.stack_size > LM_SIZE:
                raise Trap(FaultKind.STACK_OVERFLOW, f"stack of {self.image.metadata.stack_size} bytes does not fit "
                                                     f"the {LM_SIZE}-byte local memory")
            while True:
                self.pc = pc
                swapped = False
                if pc >= FIRMWARE_BASE:
                    self._call_firmware(pc)
                    pc = self.gpr_a[RETURN_ADDRESS_REG.index] & 0x3FFF
                    swapped = swaps is not None
                else:
                    if pc >= ncode:
                        raise Trap(FaultKind.ILLEGAL_INSTRUCTION, f"pc {pc:#x} is outside the code ({ncode} words)")
                    ins = instrs[pc]
                    if ins.__class__ is str:
                        raise Trap(FaultKind.ILLEGAL_INSTRUCTION, ins)
                    if trace is not None:
                        cc_before = self.cc
                    handlers[pc](self, ins)
                    self.insns += 1
                    self.cycles += issue
                    issue_usage[0] += 1
                    issue_usage[1] += issue
                    if trace is not None:
                        if self.cc != cc_before:
                            self.changes.append(("cc", cc_before, self.cc))
                        trace.append(TraceEntry(pc, format_instruction(ins), tuple(self.changes), self.cycles))
                        self.changes.clear()
                    if self.halted:
                        return None
                    swapped = swaps is not None and swaps[pc]
                    pc += 1
                    if self.branch_left:
                        self.branch_left -= 1
                        if not self.branch_left:
                            pc = self.branch_target
                if self.cycles > self.budget:
                    raise Trap(FaultKind.WATCHDOG, f"cycle budget of {self.budget} exceeded")
                if swapped:
                    self._resume = pc
                    return SWAPPED
        except Trap as trap:
            where, message = self.pc, trap.message
            if where >= FIRMWARE_BASE:
                # A fault inside a firmware routine belongs to the code that called it: the instruction
                # before the return address (the call's last defer slot) carries the call's line entry.
                caller = self.gpr_a[RETURN_ADDRESS_REG.index] & 0x3FFF
                message = f"in firmware routine at {where:#x} (return address {caller:#x}): {message}"
                where = max(caller - 1, 0)
            entry = self.image.line_for(where) if where < len(instrs) else None
            return SimFault(trap.kind, self.pc, message, trap.mem_address,
                            entry.insn_index if entry else None, entry.source() if entry else None)

    def _call_firmware(self, address: int) -> None:
        try:
            routine = Routine(address)
        except ValueError:
            raise Trap(FaultKind.ILLEGAL_INSTRUCTION, f"no firmware routine at {address:#x}") from None
        self.routine_calls[routine.symbol] = self.routine_calls.get(routine.symbol, 0) + 1
        before = list(self.gpr_a[:2]) if self.changes is not None else None
        ROUTINES[routine](self)
        if self.trace is not None:
            changes = tuple((f"a{i}", before[i], self.gpr_a[i]) for i in range(2) if before[i] != self.gpr_a[i])
            self.trace.append(TraceEntry(address, f"<firmware {routine.symbol}>", changes, self.cycles))

    # -- result ---------------------------------------------------------------------------

    def result(self, fault: SimFault | None) -> SimResult:
        packet = self.ctm.read(self.pkt_addr, self.pkt_len) if self._packet_ok() else b""
        return SimResult(
            action=self.action if fault is None else 0,
            r0=join64(self.gpr_a[0], self.gpr_a[1]),
            packet=packet,
            maps={t.name: t.dump(self.cpu) for t in self.tables},
            insns=self.insns,
            cycles=self.cycles,
            breakdown=MappingProxyType({r: Usage(a, c) for r, (a, c) in self.usage.items()}),
            fault=fault,
            routine_calls=MappingProxyType(dict(self.routine_calls)),
            map_cache_hits=self.map_cache.hits - self._cache_counts[0],
            map_cache_misses=self.map_cache.misses - self._cache_counts[1],
            trace=tuple(self.trace) if self.trace is not None else None,
            redirect=self.redirect,
            meta=self.packet_meta() if self.image.metadata.prog_type == ImageProgType.TC else None,
        )

    def packet_meta(self) -> PacketMeta:
        """The packet metadata as the program left it."""
        return PacketMeta.from_csr_values([self.meta[c] for c in PKT_META_CSRS], self.tx_queue)

    def _packet_ok(self) -> bool:
        return CTM_BASE <= self.pkt_addr and self.pkt_addr + self.pkt_len <= CTM_BASE + CTM_BUFFER_SIZE


def _as_image(program) -> Image:
    if isinstance(program, Image):
        return program
    if hasattr(program, "words") and hasattr(program, "maps"):          # an isa.asm.AsmResult
        return image_from_asm(program)
    if isinstance(program, (list, tuple)) and all(isinstance(i, Instruction) for i in program):
        from nfpjit.isa.encoding import encode_all

        return Image(code=encode_all(program))
    raise UsageError(f"cannot simulate a {type(program).__name__}",
                     hint="pass an Image, an isa.asm AsmResult or a sequence of Instructions")


@functools.lru_cache(maxsize=64)
def _relocate_here(image: Image) -> Image:
    """Apply the image's relocations with the maps' image ids as table ids, consistently.

    ``relocate`` only gives a value to the MAP symbols some relocation names; a MAP symbol for a map
    the code never references would keep address 0 and read as table id 0, colliding with the map
    whose image id is 0.  Here every map's table id is its image id, so every MAP symbol gets it.
    """
    ids = {m.name: m.id for m in image.maps}
    image = relocate(image, ids, ROUTINE_ADDRESSES)
    symbols = tuple(dataclasses.replace(s, address=ids[s.name]) if s.kind == SymbolKind.MAP and s.name in ids else s
                    for s in image.symbols)
    return dataclasses.replace(image, symbols=symbols)


def simulate(image_or_program, packet: bytes, *, maps_in=None, budget: int = DEFAULT_BUDGET,
             map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, trace: bool = False,
             ingress_ifindex: int = 1, rx_queue_index: int = 0, raw_memory: bool = False,
             map_cache: MapCache | None = None, meta: PacketMeta | None = None) -> SimResult:
    """Run a program on one packet; program faults come back in ``SimResult.fault``.

    ``image_or_program``: an :class:`Image` (relocated here with the maps'
    image ids as table ids and the simulator's routine addresses if it still
    has relocations), an ``isa.asm`` result, or a sequence of Instructions.
    ``maps_in``: initial map contents, map name -> {key bytes: value bytes}.
    Bad arguments raise :class:`~nfpjit.errors.UsageError`.  ``raw_memory``: ``packet`` is a raw
    memory block (uBPF-style runs): CTM commands must stay inside it (:class:`RawBlock`).
    ``map_cache``: the NIC-side lookup cache to use (and update), e.g. one :class:`MapCache` for a
    whole packet sequence; by default a cold cache of ``map_cache_size`` entries per run.  The
    result's ``map_cache_hits``/``map_cache_misses`` count this run's lookups either way.
    ``meta``: the packet metadata the firmware hands a TC program (:class:`PacketMeta`; None: all
    computed or zero); a TC image's result carries it after the run.
    """
    if meta is not None and not isinstance(meta, PacketMeta):
        raise UsageError(f"meta must be a PacketMeta, not {type(meta).__name__}")
    image = _as_image(image_or_program)
    if image.relocations:
        image = _relocate_here(image)
    if len(image.code) > FIRMWARE_BASE:
        raise UsageError(f"{len(image.code)} code words overlap the firmware region at {FIRMWARE_BASE:#x}")
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        raise UsageError(f"packet must be bytes, not {type(packet).__name__}")
    packet = bytes(packet)
    if len(packet) > MAX_PACKET:
        raise UsageError(f"packet of {len(packet)} bytes exceeds the {MAX_PACKET}-byte packet buffer")
    if budget < 0 or map_cache_size < 0:
        raise UsageError("budget and map_cache_size must not be negative")
    if map_cache is not None and not isinstance(map_cache, MapCache):
        raise UsageError(f"map_cache must be a MapCache, not {type(map_cache).__name__}",
                         hint="nfpjit.isa.sim.MapCache(size), the same object for every packet")
    m = Machine(image, packet, maps_in=maps_in, budget=budget, map_cache_size=map_cache_size, seed=seed,
                trace=trace, ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index, raw_memory=raw_memory,
                map_cache=map_cache, meta=meta)
    fault = m.run()
    return m.result(fault)


#: what Machine.run returns when the thread swapped out (run it again to resume)
SWAPPED = "swapped"


def _swap_points(instrs) -> tuple[bool, ...]:
    """Per code address: a thread swaps out after a memory command that waits (``ctx_swap``) and after
    ``ctx_wait``, as the NFP's threads do; the next ready thread runs meanwhile."""
    return tuple(i.__class__ is not str and (i.op == Op.CTX_WAIT or (i.entry.format == Format.CMD and i.ctx_swap))
                 for i in instrs)


def simulate_threads(image_or_program, packets: Sequence[bytes], *, maps_in=None, budget: int = DEFAULT_BUDGET,
                     map_cache_size: int = DEFAULT_MAP_CACHE_SIZE, seed: int = 0, ingress_ifindex: int = 1,
                     rx_queue_index: int = 0) -> list[SimResult]:
    """Run packet *i* on thread *i*, all at once, interleaved at memory-command boundaries.

    The threads share the map tables (EMEM) and the map cache; each has its own registers, local
    memory (its stack) and packet buffer.  Scheduling is round-robin: a thread runs until it swaps
    out (a memory command that waits, ``ctx_wait``, a firmware call), then the next unfinished thread
    runs.  A command's data moves when it is issued, so a read-modify-write made of two commands
    (``mem_read`` ... ``mem_write``) can interleave with other threads' and lose their updates,
    while one atomic command cannot.  Every result's ``maps`` are the tables after the last thread
    finished (per-CPU maps: the thread's own copy; thread *i* is CPU *i*); ``cycles`` are each thread's own.
    """
    image = _as_image(image_or_program)
    if image.relocations:
        image = _relocate_here(image)
    packets = [bytes(p) for p in packets]
    if not packets:
        raise UsageError("simulate_threads needs at least one packet (one per thread)")
    if any(len(p) > MAX_PACKET for p in packets):
        raise UsageError(f"a packet exceeds the {MAX_PACKET}-byte packet buffer")
    cache = MapCache(map_cache_size)
    threads: list[Machine] = []
    for n, packet in enumerate(packets):
        threads.append(Machine(image, packet, maps_in=maps_in, budget=budget, map_cache_size=map_cache_size,
                               seed=seed + n, trace=False, ingress_ifindex=ingress_ifindex,
                               rx_queue_index=rx_queue_index, map_cache=cache,
                               shared=threads[0] if threads else None, cpu=n, ncpus=len(packets)))
    swaps = _swap_points(threads[0].instrs)
    faults: dict[int, SimFault | None] = {}
    while len(faults) < len(threads):
        for n, m in enumerate(threads):
            if n in faults:
                continue
            out = m.run(swaps)
            if out is not SWAPPED:
                faults[n] = out
    return [m.result(faults[n]) for n, m in enumerate(threads)]


__all__ = ["Machine", "simulate", "simulate_threads", "SWAPPED", "LM_POINTER_DELAY"]

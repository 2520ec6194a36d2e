"""The compiler driver: eBPF program in, NFP-32 firmware image out, and a way to run that image.

:func:`compile` is the whole pipeline behind ``nfpjit compile``: load (when
given a path), analyse, check against a NIC capability profile (stopping with
every diagnostic when the profile rejects the program), lower to NFP-32
(:mod:`nfpjit.jit`), run the NFP-level passes of the chosen optimisation
level, assemble, and build the :class:`~nfpjit.isa.image.Image` with its map
table, global-data contents, metadata, line table, symbols and relocations.

:func:`run_sim` runs an image in the simulator and returns the same
:class:`~nfpjit.ebpf.result.RunResult` the reference interpreter and the
kernel oracle return, so the three engines compare like with like.

This module and :mod:`nfpjit.jit` are the only ones that see both the eBPF
side and the NFP side.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path

from nfpjit.errors import ImageError, LoadError, NfpjitError, UnsupportedError, UsageError
from nfpjit.ebpf.opcodes import MapType, ProgType
from nfpjit.ebpf.program import Program, SourceLoc
from nfpjit.ebpf.result import Fault, PacketIn, RunResult
from nfpjit.isa.image import (
    Image,
    ImageData,
    ImageMap,
    ImageMapType,
    ImageProgType,
    LineEntry,
    Metadata,
    Relocation,
    RelocKind,
    Symbol,
    SymbolKind,
    program_tag,
)

from nfpjit.passes.pipelines import DEFAULT_LEVEL, PIPELINES as OPT_PIPELINES  # the named -O pipelines

_IMAGE_MAP_TYPES = {MapType.HASH: ImageMapType.HASH, MapType.ARRAY: ImageMapType.ARRAY,
                    MapType.PERCPU_HASH: ImageMapType.PERCPU_HASH, MapType.PERCPU_ARRAY: ImageMapType.PERCPU_ARRAY,
                    MapType.LRU_HASH: ImageMapType.LRU_HASH, MapType.LRU_PERCPU_HASH: ImageMapType.LRU_PERCPU_HASH}


class CompileError(UnsupportedError):
    """The capability profile rejects the program; ``report`` holds every diagnostic."""

    def __init__(self, message: str, *, report=None, where: str | None = None, hint: str | None = None):
        super().__init__(message, where=where, hint=hint)
        self.report = report


class CompilerBug(NfpjitError):
    """The analysis, lowering or assembler crashed: a bug in nfpjit, not a problem with the input."""


@dataclass(frozen=True)
class CompileStats:
    """Sizes and phase timings of one compilation (seconds per phase, in pipeline order)."""

    ebpf_insns: int
    nfp_insns: int
    stack: int
    maps: int
    phases: tuple[tuple[str, float], ...] = ()
    passes: tuple = ()  # nfpjit.passes.manager.PassStat per pass run

    @property
    def ratio(self) -> float:
        """NFP instructions per eBPF instruction."""
        return self.nfp_insns / self.ebpf_insns if self.ebpf_insns else 0.0

    @property
    def seconds(self) -> float:
        return sum(t for _, t in self.phases)


@dataclass(frozen=True)
class CompileResult:
    image: Image
    report: object            # nfpjit.offload.Report (with the real NFP instruction count)
    mprogram: object          # nfpjit.jit.mir.MProgram after the passes
    program: Program
    stats: CompileStats
    analysis: object = field(default=None, compare=False, repr=False)
    #: (pass name, listing) after the passes --print-after / --print-changed asked for
    snapshots: tuple = ()
    #: the passes that ran, as objects (image metadata has their spellings)
    pipeline: tuple = ()


# -- compile ------------------------------------------------------------------------


def _load_program(program_or_path, section: str | None) -> Program:
    if isinstance(program_or_path, Program):
        if section is not None and section != program_or_path.section:
            raise UsageError(f"section {section!r} given with an already loaded program of section "
                             f"{program_or_path.section!r}", hint="pass a path to pick a section")
        return program_or_path
    if isinstance(program_or_path, (str, Path)):
        from nfpjit import load

        return load(program_or_path, section=section)
    raise UsageError(f"compile() takes a Program or a path, not {type(program_or_path).__name__}")


@lru_cache(maxsize=8)
def _builtin_profile(name: str):
    from nfpjit.offload import load_profile

    return load_profile(name)


def _load_profile(profile):
    from nfpjit.offload import Profile, builtin_profiles, load_profile

    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str) and profile in builtin_profiles():
        return _builtin_profile(profile)  # a frozen value: parse the shipped TOML once
    if isinstance(profile, (str, Path)):
        return load_profile(str(profile))
    raise UsageError(f"profile must be a name, a path or a Profile, not {type(profile).__name__}")


def pipeline(opt_level: int = DEFAULT_LEVEL, passes=None, disable=()) -> list:
    """The passes a compilation runs: ``passes`` (a spelling or Pass objects) or the named pipeline of
    ``opt_level``, less the names in ``disable``.  Unknown names and options are a UsageError."""
    from nfpjit.passes.manager import Pass, parse_pipeline, without

    if isinstance(opt_level, bool) or opt_level not in OPT_PIPELINES:
        raise UsageError(f"optimisation level {opt_level!r} does not exist", hint="use 0, 1 or 2")
    if passes is None:
        out = parse_pipeline(OPT_PIPELINES[opt_level])
    elif isinstance(passes, str):
        out = parse_pipeline(passes)
    else:
        out = list(passes)
        for p in out:
            if not isinstance(p, Pass):
                raise UsageError(f"passes must be a pipeline string or Pass objects, not {type(p).__name__}")
    if isinstance(disable, str):
        disable = [d for d in (x.strip() for x in disable.split(",")) if d]
    return without(out, disable) if disable else out



def _rejection(report, program: Program) -> CompileError:
    from nfpjit.offload import Severity

    errors = [d for d in report.diagnostics if d.severity == Severity.ERROR]
    lines = []
    for d in errors:
        where = d.file or program.source_path or program.name
        if d.line:
            where += f":{d.line}:{d.col or 0}"
        if d.insn is not None:
            where += f" [insn {d.insn}]"
        lines.append(f"{where}: {d.message} [{d.code}]")
    shown = "; ".join(lines[:8]) + (f"; ... {len(lines) - 8} more" if len(lines) > 8 else "")
    return CompileError(f"profile {report.profile!r} rejects the program ({len(errors)} error"
                        f"{'s' if len(errors) != 1 else ''}): {shown}", report=report,
                        where=program.source_path or program.name,
                        hint="`nfpjit check` shows every diagnostic with its source line and a fix")


def compile(program_or_path, *, section: str | None = None, opt_level: int = DEFAULT_LEVEL, profile="default",
            passes=None, check: bool = True, raw_context: bool = False, disable=(), print_after=(),
            print_changed: bool = False, verify_each: bool = False, analysis=None) -> CompileResult:
    """Compile an XDP/TC program (a :class:`Program` or a path ``nfpjit.load`` reads) to a firmware image.

    ``profile`` is a profile name, a .toml path or a :class:`~nfpjit.offload.Profile`; when it rejects
    the program a :class:`CompileError` lists the errors (its ``report`` has all diagnostics).
    ``passes`` overrides the pipeline of ``opt_level``: a spelling such as ``"a,b{opt=1}"`` or a
    list of :class:`~nfpjit.passes.manager.Pass`.  ``check=False`` skips the capability report (tests
    of the lowering itself); the lowering still refuses what it cannot translate.

    ``raw_context=True`` compiles a uBPF/bpf_conformance-style program (r1 = memory block, r2 = its
    length, the result is all 64 bits of r0) to run with :func:`run_sim_raw`; see "Raw-context
    programs" in docs/jit.md.

    Pass options (docs/passes.md): ``disable`` names passes to leave out of the pipeline;
    ``print_after`` names passes (or ``"all"``) after which the machine listing is kept in
    ``CompileResult.snapshots`` (a lower-level pass: the listing after lowering), ``print_changed``
    keeps one after every pass that changed the code; ``verify_each`` checks the machine IR's
    invariants (:meth:`MProgram.verify`) after every pass.  ``analysis`` reuses an earlier
    :func:`nfpjit.analysis.analyze` of the same program.
    """
    phases: list[tuple[str, float]] = []
    t = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        phases.append((name, now - t))
        t = now

    program = _load_program(program_or_path, section)
    if not program.insns:
        raise LoadError("the program has no instructions", where=program.source_path or program.name or "<program>")
    prof = _load_profile(profile)
    passes_run = pipeline(opt_level, passes, disable)
    if not raw_context and program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        raise UnsupportedError(f"program {program.name!r} is of type {program.prog_type.name}; the NIC runs "
                               "XDP and TC (direct-action) programs", where=program.source_path or program.name)
    from nfpjit.analysis import analyze
    from nfpjit.jit.lower import supported_opcodes
    from nfpjit.offload import check as check_report
    from nfpjit.passes.manager import PassManager, split_levels

    phase("load")
    where = program.source_path or program.name
    if analysis is None or getattr(analysis, "raw_context", False) != raw_context:
        with _internal_errors("analysis", where):
            analysis = analyze(program, raw_context=raw_context)
    phase("analysis")
    unsupported = frozenset(i.code for i in program.insns) - supported_opcodes()
    report = None
    if check:
        report = check_report(program, prof, analysis=analysis, unsupported_opcodes=unsupported)
        if not report.ok:
            raise _rejection(report, program)
    phase("check")
    lower_level, nfp_level = split_levels(passes_run)
    print_after = {print_after} if isinstance(print_after, str) else set(print_after)
    snapshots: list[tuple[str, str]] = []
    mprogram = _lowered(program, analysis, lower_level, raw_context)
    if "all" in print_after or print_after & {p.name for p in lower_level} or "lower" in print_after \
            or (print_changed and lower_level):
        snapshots.append(("lower", mprogram.listing()))
    phase("lower")
    pm = PassManager(nfp_level, verify=(lambda unit: unit.verify()) if verify_each else None,
                     snapshot_after=print_after, snapshot_changed=print_changed, render=lambda u: u.listing())
    pm.run(mprogram)
    snapshots.extend(pm.snapshots)
    phase("passes")
    with _internal_errors("assembly", where):
        try:
            assembled = mprogram.assemble()
        except UnsupportedError as exc:
            if nfp_level and not verify_each:
                exc.hint = (exc.hint or "") + "; --verify-each names the pass that broke the code"
            raise
    phase("assemble")
    stack = _stack_size(mprogram, program, analysis)
    image = build_image(program, assembled, profile=prof.name, passes=tuple(p.spelling() for p in passes_run),
                        stack_size=stack)
    phase("image")
    if check:
        report = check_report(program, prof, analysis=analysis, unsupported_opcodes=unsupported,
                              nfp_insn_count=len(image.code))
        if not report.ok:
            raise _rejection(report, program)
        phase("recheck")
    stats = CompileStats(ebpf_insns=len(program.insns), nfp_insns=len(image.code), stack=stack,
                         maps=len(image.maps), phases=tuple(phases), passes=tuple(pm.stats))
    return CompileResult(image=image, report=report, mprogram=mprogram, program=program, stats=stats,
                         analysis=analysis, snapshots=tuple(snapshots), pipeline=tuple(passes_run))


def machine_size(program: Program, analysis, passes, *, raw_context: bool = False) -> int:
    """NFP instructions ``program`` lowers to with ``passes`` (no profile check, no image)."""
    from nfpjit.passes.manager import PassManager, split_levels

    lower_level, nfp_level = split_levels(list(passes))
    mprogram = _lowered(program, analysis, lower_level, raw_context)
    PassManager(nfp_level).run(mprogram)
    return mprogram.size()


def _lowered(program: Program, analysis, lower_level, raw_context: bool):
    """The MProgram of ``program`` with the lower-level passes (and the raw-context prologue), ready for nfp passes."""
    from nfpjit.jit.lower import lower
    from nfpjit.passes.manager import PassContext

    with _internal_errors("lowering", program.source_path or program.name):
        mprogram = lower(program, analysis, passes=lower_level)
        if raw_context:
            _raw_context_prologue(mprogram)
    mprogram.context = PassContext(program, analysis, raw_context)
    return mprogram


def pass_deltas(result: CompileResult) -> list[tuple[str, str, int]]:
    """Per pass of ``result``'s pipeline: (name, level, NFP instructions it saves), by ablation.

    The saving of a pass is the size of the code compiled with the same pipeline less that pass,
    minus the size with it: what switching it off (``--disable-pass``) would cost.  The analysis
    is reused, so this is one lowering (plus the nfp passes) per pass.
    """
    raw = getattr(result.analysis, "raw_context", False)
    full = result.mprogram.size()
    out = []
    for i, p in enumerate(result.pipeline):
        rest = list(result.pipeline[:i]) + list(result.pipeline[i + 1:])
        out.append((p.name, p.level, machine_size(result.program, result.analysis, rest, raw_context=raw) - full))
    return out


def _raw_context_prologue(mprogram) -> None:
    """Put R1 = the memory block's address (0 when it is empty) and R2 = its length before the entry.

    The simulator holds the block where a packet would be (``pkt_addr``/``pkt_len``); the other
    registers start at zero on the NFP, as the uBPF convention wants.
    """
    from nfpjit.isa.operands import GprBoth
    from nfpjit.isa.table import AluOp, Cond, Csr, Instruction, Op
    from nfpjit.jit.emit import Emitter
    from nfpjit.jit.regs import lo

    e = Emitter()
    e(Instruction(Op.CSR_RD, dest=GprBoth(lo(2).n), csr=Csr.PKT_LEN))
    e(Instruction(Op.CSR_RD, dest=GprBoth(lo(1).n), csr=Csr.PKT_ADDR))
    e.alu(AluOp.SUB, None, lo(2), 0)
    e.br(Cond.NE, ".raw_context_entry")
    e.const(lo(1), 0)
    e.label(".raw_context_entry")
    entry = mprogram.functions[0]
    entry.body[:0] = e.body


@contextmanager
def _internal_errors(what: str, where: str):
    """Let NfpjitErrors through; anything else escaping the JIT is a bug, reported as a :class:`CompilerBug`."""
    try:
        yield
    except NfpjitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash in the JIT must not become a traceback for the user
        raise CompilerBug(f"internal error in the {what}: {type(exc).__name__}: {exc}", where=where,
                          hint="this is a bug in nfpjit; please report it with the input") from exc


def _stack_size(mprogram, program: Program, analysis) -> int:
    """LM bytes the program's frames use (the image's stack size, checked by the loader): the lowering's layout."""
    return int(mprogram.stack_size)


# -- image ------------------------------------------------------------------------------


def _image_maps(program: Program) -> tuple[tuple[ImageMap, ...], tuple[ImageData, ...]]:
    maps, data = [], []
    for i, m in enumerate(program.maps):
        kind = _IMAGE_MAP_TYPES.get(m.type)
        if kind is None:
            raise UnsupportedError(f"map {m.name!r} has type {m.type.kernel_name}, which the NIC image cannot hold",
                                   where=program.source_path or program.name,
                                   hint="offloaded programs use hash and array maps (per-CPU ones too)")
        maps.append(ImageMap(i, m.name, kind, m.key_size, m.value_size, m.max_entries, m.flags))
        if m.initial is not None:
            data.append(ImageData(m.name, bytes(m.initial)))
    return tuple(maps), tuple(data)


def source_loc_finder(program: Program):
    """pc -> SourceLoc covering it: line info marks the first instruction of each source line."""
    pcs = sorted(program.line_info)
    starts = sorted(fn.start_pc for fn in program.functions)

    def find(pc: int) -> SourceLoc | None:
        i = bisect_right(pcs, pc)
        if not i:
            return None
        at = pcs[i - 1]
        # never carry a line across a function boundary
        j = bisect_right(starts, pc)
        if j and at < starts[j - 1]:
            return None
        return program.line_info[at]

    return find


def line_table(program: Program, line_pcs, ncode: int | None = None) -> tuple[LineEntry, ...]:
    """The image line table from the lowering's ``(nfp_address, ebpf_pc)`` pairs.

    One entry where the eBPF pc changes (``Image.line_for`` takes the last entry at or
    before an address); ``insn_index`` is the eBPF pc (slot index), -1 for code no eBPF
    instruction produced (prologue, stubs).  With ``ncode``, addresses missing from
    ``line_pcs`` are such code; without it they belong to the entry before them.
    """
    find = source_loc_finder(program)
    pcs = {int(a): (-1 if pc is None or pc < 0 else int(pc)) for a, pc in line_pcs}
    addresses = range(ncode) if ncode is not None else sorted(pcs)
    entries: list[LineEntry] = []
    last = None
    for address in addresses:
        pc = pcs.get(address, -1)
        if pc == last:
            continue
        last = pc
        loc = find(pc) if pc >= 0 else None
        if loc is None:
            entries.append(LineEntry(address, pc))
        else:
            entries.append(LineEntry(address, pc, loc.file, loc.line, loc.col))
    return tuple(entries)


def _as_symbol(s) -> Symbol:
    if isinstance(s, Symbol):
        return s
    if isinstance(s, tuple) and len(s) >= 2:  # (name, address[, size])
        return Symbol(str(s[0]), SymbolKind.SUBPROG, int(s[1]), int(s[2]) if len(s) > 2 else 0)
    return Symbol(s.name, SymbolKind(getattr(s, "kind", SymbolKind.SUBPROG)), int(s.address), int(getattr(s, "size", 0)))


def _as_relocation(r) -> Relocation:
    if isinstance(r, Relocation):
        return r
    return Relocation(int(r.address), RelocKind(r.kind), str(r.symbol), int(getattr(r, "addend", 0)))


def _function_symbols(program: Program, ncode: int, given: list[Symbol]) -> list[Symbol]:
    """SUBPROG symbols: the lowering's when it gives them, else the entry covering the whole code."""
    subs = [s for s in given if s.kind == SymbolKind.SUBPROG]
    if subs:
        return subs
    name = program.functions[0].name if program.functions else (program.name or "main")
    return [Symbol(name, SymbolKind.SUBPROG, 0, ncode)] if ncode else []


def build_image(program: Program, assembled, *, profile: str = "default", passes: tuple[str, ...] = (),
                stack_size: int = 0, entry: int | None = None) -> Image:
    """The firmware image of an assembled lowering (``MProgram.assemble()``) of ``program``.

    Maps keep their index in the program as image id; every map and firmware routine a relocation
    names gets a MAP/ROUTINE symbol, so the image is self-describing for
    :func:`~nfpjit.isa.image.relocate`.
    """
    from nfpjit import __version__

    words = tuple(int(w) for w in assembled.words)
    maps, data = _image_maps(program)
    relocations = tuple(_as_relocation(r) for r in getattr(assembled, "relocations", ()) or ())
    given = [_as_symbol(s) for s in getattr(assembled, "symbols", ()) or ()]
    symbols: dict[str, Symbol] = {}
    for s in _function_symbols(program, len(words), given):
        symbols.setdefault(s.name, s)
    for s in given:
        if s.kind != SymbolKind.SUBPROG:
            symbols.setdefault(s.name, s)
    # MAP/ROUTINE symbols only for what a relocation names: the symbol table describes relocation targets.
    # (An image with no relocations left is taken as relocated, its MAP symbols as table ids, so a symbol
    # for an unreferenced map would read as table id 0 there.)
    map_names = {m.name for m in maps}
    for r in relocations:
        kind = SymbolKind.MAP if r.kind == RelocKind.MAP_ID else SymbolKind.ROUTINE
        if kind == SymbolKind.MAP and r.symbol not in map_names:
            raise ImageError(f"relocation at {r.address} names {r.symbol!r}, which is not one of the program's maps",
                             where=program.source_path or program.name, hint="this is a bug in the lowering")
        prior = symbols.get(r.symbol)
        if prior is not None and prior.kind != kind:
            raise ImageError(f"{kind.name.lower()} {r.symbol!r} has the name of a {prior.kind.name.lower()} symbol",
                             where=program.source_path or program.name, hint="rename the map or the function")
        symbols[r.symbol] = Symbol(r.symbol, kind)
    if entry is None:
        entry = int(getattr(assembled, "entry", 0) or 0)
    insn_bytes = b"".join(i.encode() for i in program.insns)
    metadata = Metadata(
        prog_type=ImageProgType.TC if program.prog_type == ProgType.SCHED_CLS else ImageProgType.XDP,
        entry=entry, stack_size=stack_size, profile=profile, source_tag=program_tag(insn_bytes),
        passes=tuple(passes), nfpjit_version=__version__, name=program.name)
    return Image(code=words, maps=maps, metadata=metadata,
                 line_table=line_table(program, getattr(assembled, "line_pcs", ()) or (), len(words)),
                 symbols=tuple(symbols.values()), relocations=relocations, data=data)


# -- running ------------------------------------------------------------------------------


def to_run_result(sim) -> RunResult:
    """A simulator :class:`~nfpjit.isa.sim.SimResult` as the engines' common :class:`RunResult`.

    A fault keeps its eBPF instruction (pc from the line table, -1 when unknown), its kind and
    message as the reason, and the memory address it touched.
    """
    fault = None
    if sim.fault is not None:
        f = sim.fault
        reason = f"{f.kind.name.lower()}: {f.message} (nfp {f.address:#06x})"
        fault = Fault(pc=f.insn_index if f.insn_index is not None else -1, reason=reason, address=f.mem_address)
    return RunResult(r0=sim.r0, packet=bytes(sim.packet), maps={k: dict(v) for k, v in sim.maps.items()},
                     insns=sim.insns, fault=fault, cycles=sim.cycles, redirect=sim.redirect,
                     trace=[f"{t.address:04x}: {t.text}" for t in sim.trace] if sim.trace is not None else None,
                     skb=skb_fields(sim.meta) if sim.meta is not None and fault is None else None)


def packet_meta(packet: PacketIn):
    """The packet metadata the NIC's firmware hands a TC program for ``packet``: its mark, priority, cb and
    hash (a hash of None is the firmware's own); protocol, pkt_type and ifindex the firmware derives."""
    from nfpjit.isa.sim import PacketMeta

    return PacketMeta(mark=packet.mark & 0xFFFF_FFFF, priority=packet.priority & 0xFFFF_FFFF,
                      cb=tuple(w & 0xFFFF_FFFF for w in packet.cb), hash=packet.skb_hash())


def skb_fields(meta) -> dict[str, int]:
    """A simulator's :class:`~nfpjit.isa.sim.PacketMeta` as ``RunResult.skb`` (the writable __sk_buff fields)."""
    return {"mark": meta.mark, "priority": meta.priority, "queue_mapping": meta.queue_mapping,
            "tc_index": meta.tc_index, "tc_classid": meta.tc_classid,
            **{f"cb[{i}]": w for i, w in enumerate(meta.cb)}}


#: the simulator engines: the interpreting simulator (the reference) and the compiled one (llvmlite)
SIM_ENGINES = ("interp", "compiled")


def simulate_image(image: Image, packet, *, maps_in=None, trace: bool = False, seed: int = 0,
                   engine: str = "interp", **options):
    """Run ``image`` on one packet (bytes or :class:`PacketIn`): the raw :class:`SimResult`.

    ``engine="compiled"`` runs it as native code (:mod:`nfpjit.isa.sim.compiled`: the same results,
    cycles included; it falls back to the interpreting simulator for what it cannot translate, and
    ``trace`` always uses the interpreter).
    """
    if engine not in SIM_ENGINES:
        raise UsageError(f"simulator engine {engine!r} does not exist", hint=f"use one of {', '.join(SIM_ENGINES)}")
    if engine == "compiled" and not trace:
        from nfpjit.isa.sim.compiled import simulate
    else:
        from nfpjit.isa.sim import simulate

    if isinstance(packet, PacketIn):
        options.setdefault("ingress_ifindex", packet.ingress_ifindex)
        options.setdefault("rx_queue_index", packet.rx_queue_index)
        options.setdefault("meta", packet_meta(packet))
        packet = packet.data
    if not isinstance(image, Image):
        raise UsageError(f"expected an Image, got {type(image).__name__}", hint="compile(...).image")
    if maps_in is not None:
        names = {m.name for m in image.maps}
        maps_in = {k: v for k, v in maps_in.items() if k in names}
    return simulate(image, packet, maps_in=maps_in, trace=trace, seed=seed, **options)


def default_sim_engine() -> str:
    """The simulator to use when none is named: the compiled one where llvmlite's JIT works, else the interpreter."""
    from nfpjit.isa.sim.compiled import available

    return "compiled" if available() else "interp"


def simulate_many(image: Image, packets, *, maps_in=None, engine: str = "interp", seed: int = 0, **options) -> list:
    """Run ``image`` on ``packets`` (bytes or :class:`PacketIn`) in order, the maps persisting: one SimResult per
    packet, result *k* equal to ``simulate_image(image, packets[k], maps_in=<maps after packet k-1>, ...)``.

    ``engine="compiled"`` runs them in one native session (:func:`nfpjit.isa.sim.compiled.run_batch`, the
    packet loop in native code; the same results, cycles included).  A ``map_cache`` option (one
    :class:`~nfpjit.isa.sim.firmware.MapCache`) stays warm across the packets, as on the NIC.
    """
    if engine not in SIM_ENGINES:
        raise UsageError(f"simulator engine {engine!r} does not exist", hint=f"use one of {', '.join(SIM_ENGINES)}")
    if not isinstance(image, Image):
        raise UsageError(f"expected an Image, got {type(image).__name__}", hint="compile(...).image")
    packets = list(packets)
    contexts = {(p.ingress_ifindex, p.rx_queue_index) for p in packets if isinstance(p, PacketIn)}
    if engine == "compiled" and not options.get("trace") and len(contexts) <= 1:
        from nfpjit.isa.sim.compiled import run_batch

        if contexts:
            ifindex, rxq = contexts.pop()
            options.setdefault("ingress_ifindex", ifindex)
            options.setdefault("rx_queue_index", rxq)
        if maps_in is not None:
            names = {m.name for m in image.maps}
            maps_in = {k: v for k, v in maps_in.items() if k in names}
        return run_batch(image, [p.data if isinstance(p, PacketIn) else p for p in packets], maps_in, seed=seed,
                         **options)
    out, state = [], maps_in
    for p in packets:
        r = simulate_image(image, p, maps_in=state, seed=seed, engine=engine, **options)
        out.append(r)
        state = r.maps
    return out


def run_sim(image: Image, packet, maps_in=None, *, trace: bool = False, seed: int = 0, **options) -> RunResult:
    """Run ``image`` in the simulator on one packet; maps start from ``maps_in`` (name -> {key: value}).

    Map contents in ``maps_in`` for maps the image does not hold are ignored, so an interpreter's
    ``MapStore.dump()`` can be passed as is.  Other ``options`` go to :func:`nfpjit.isa.sim.simulate`
    (``budget``, ``map_cache_size``).
    """
    return to_run_result(simulate_image(image, packet, maps_in=maps_in, trace=trace, seed=seed, **options))


def run_sim_raw(image: Image, memory: bytes, maps_in=None, *, trace: bool = False, seed: int = 0,
                **options) -> RunResult:
    """Run a ``compile(..., raw_context=True)`` image on a raw memory block (uBPF convention).

    The block sits where a packet would (R1 = its CTM address, 0 when empty; R2 = its length) and
    CTM commands must stay inside it; ``RunResult.r0`` is all 64 bits of r0 and ``packet`` the block
    after the run.
    """
    if not isinstance(memory, (bytes, bytearray)):
        raise UsageError(f"memory must be bytes, not {type(memory).__name__}")
    from nfpjit.isa.sim.memory import MAX_PACKET

    if len(memory) > MAX_PACKET:
        raise UsageError(f"a memory block of {len(memory)} bytes does not fit the simulator's {MAX_PACKET}-byte "
                         "packet buffer", hint="use a smaller block, or --engine ref")
    return to_run_result(simulate_image(image, bytes(memory), maps_in=maps_in, trace=trace, seed=seed,
                                        raw_memory=True, **options))


__all__ = ["compile", "pipeline", "machine_size", "pass_deltas", "DEFAULT_LEVEL", "CompileResult", "CompileStats", "CompileError", "CompilerBug", "build_image", "line_table",
           "run_sim", "run_sim_raw", "simulate_image", "simulate_many", "default_sim_engine", "SIM_ENGINES", "source_loc_finder", "to_run_result", "OPT_PIPELINES"]

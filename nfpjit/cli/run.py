"""``nfpjit run``: run a program on packets with one engine and show the verdicts.

Packets come from ``--packet HEX`` (repeatable) or ``--pcap IN.pcap``; maps
persist across the packets of one run, as on a real device, and may be
preloaded (``--maps-in``) and written back (``--maps-out``).  Output is one
line per packet and a summary, or with ``--json`` the document described in
docs/run-json.md.  ``--raw-context --mem HEX`` runs the program on a raw
memory block instead (reference and simulator engines; the simulator
compiles it in raw-context mode, see docs/jit.md).

Engines are a table, :data:`ENGINES`: name -> factory ``(program, maps_file)``
returning an object with ``run(PacketIn, trace=bool) -> RunResult``,
``maps() -> MapState`` and ``close()``.  Adding an engine is one entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from nfpjit.errors import LoadError, UnsupportedError, UsageError
from nfpjit.ebpf.program import Program
from nfpjit.ebpf.result import MapState, PacketIn, RunResult

ETH_OVERHEAD = 14 + 4  # Ethernet header + one VLAN tag on top of the MTU


class RefEngine:
    """The reference interpreter with one MapStore for the whole run.

    ``seed`` seeds bpf_get_prandom_u32 and ``clock_ns`` is what bpf_ktime_get_ns returns (the same for
    every packet: a run is reproducible); ``net`` is the network namespace the FIB/MTU helpers see
    (``nfpjit.ebpf.net.Net``; None: a fresh one with ``lo`` only).
    """

    def __init__(self, program: Program, maps_file: str | None, *, seed: int = 0, clock_ns: int = 0, net=None):
        from nfpjit.ebpf.mapfile import load_map_file
        from nfpjit.ebpf.maps import MapStore

        self.program = program
        self.seed, self.clock_ns, self.net = seed, clock_ns, net
        self.store = MapStore.from_program(program)
        if maps_file:
            load_map_file(maps_file, self.store)

    def run(self, packet: PacketIn, *, trace: bool = False) -> RunResult:
        from nfpjit.ebpf.interp import run

        return run(self.program, packet, maps=self.store, trace=trace, seed=self.seed, clock_ns=self.clock_ns,
                   net=self.net)

    def run_raw(self, memory: bytes, *, trace: bool = False) -> RunResult:
        from nfpjit.ebpf.interp import run_raw

        return run_raw(self.program, memory, maps=self.store, trace=trace, seed=self.seed, clock_ns=self.clock_ns)

    def maps(self) -> MapState:
        return self.store.dump()

    def close(self) -> None:
        pass


class KernelEngine:
    """The Linux kernel (bpf() + BPF_PROG_TEST_RUN); maps live in the kernel for the whole run."""

    def __init__(self, program: Program, maps_file: str | None):
        from nfpjit.kernel import KernelProgram, kernel_available

        ok, reason = kernel_available()
        if not ok:
            raise UnsupportedError(reason, hint="run as root on Linux, or use --engine ref")
        entries = None
        if maps_file:
            entries = _parse_map_file(maps_file, program)
        self.kp = KernelProgram(program, maps_in=entries)

    def run(self, packet: PacketIn, *, trace: bool = False) -> RunResult:
        if trace:
            raise UnsupportedError("the kernel engine cannot trace instructions", hint="use --engine ref")
        return self.kp.run(packet)

    def run_raw(self, memory: bytes, *, trace: bool = False) -> RunResult:
        raise UnsupportedError("the kernel engine runs XDP/TC programs on packets, not raw memory",
                               hint="use --engine ref with --raw-context")

    def maps(self) -> MapState:
        return self.kp.dump_maps()

    def close(self) -> None:
        self.kp.close()


def _parse_map_file(path: str, program: Program) -> dict:
    """Validate a map file against the program's maps: {name: [(key, value)]}."""
    import tomllib
    from pathlib import Path

    from nfpjit.ebpf.mapfile import parse_entries
    from nfpjit.ebpf.maps import MapStore

    try:
        text = Path(path).read_text()
        doc = tomllib.loads(text) if path.lower().endswith(".toml") else json.loads(text)
    except OSError as exc:
        raise LoadError(f"cannot read map file: {exc.strerror}", where=path) from None
    except UnicodeDecodeError:
        raise LoadError("map file is not UTF-8 text", where=path) from None
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}:{exc.colno}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoadError(f"invalid TOML: {exc}", where=path) from None
    return parse_entries(doc, MapStore.from_program(program), source=path)


class ImageEngine:
    """An NFP firmware image run in the simulator as it is (``nfpjit compile -o``: no eBPF object needed).

    Maps persist across packets, and so does the NIC-side map cache (a hot key costs a cached
    lookup on the next packet, as on the NIC).
    """

    def __init__(self, image, maps_file: str | None, *, raw_context: bool = False, seed: int = 0):
        from nfpjit.ebpf.opcodes import ProgType
        from nfpjit.isa.sim import DEFAULT_MAP_CACHE_SIZE, MapCache

        self.seed = seed
        self.image = image
        self.raw_context = raw_context
        self.prog_type = ProgType(int(image.metadata.prog_type))
        self.map_cache = MapCache(DEFAULT_MAP_CACHE_SIZE)
        self.sim = "interp"          # or "compiled" (set by run_command from --sim)
        self.why_interp: str | None = None
        self._session = None
        self.state: MapState = {}
        if maps_file:
            from nfpjit.ebpf.mapfile import load_map_file
            from nfpjit.ebpf.maps import MapStore, create_map
            from nfpjit.ebpf.opcodes import MapType
            from nfpjit.ebpf.program import MapDef

            initial = {d.map: d.data for d in image.data}
            store = MapStore([create_map(MapDef(m.name, MapType(int(m.type)), m.key_size, m.value_size,
                                                m.max_entries, m.flags, initial.get(m.name)))
                              for m in image.maps])
            load_map_file(maps_file, store)
            self.state = store.dump()

    def session(self):
        """The compiled engine's session for the packets of this run (maps and map cache kept natively), made
        on first use; None when the interpreting simulator runs them (``--sim interp``, or an image the
        compiled engine hands to the interpreter: ``self.why_interp`` says why)."""
        if self._session is None and self.sim == "compiled" and self.why_interp is None:
            from nfpjit.isa.sim import compiled
            from nfpjit.isa.sim.compiled.translate import Untranslatable

            try:
                self._session = compiled.session(self.image, maps_in=self.state, map_cache=self.map_cache,
                                                 seed=self.seed)
            except (Untranslatable, UnsupportedError) as exc:   # not translated, or a cache the maps do not hold
                self.why_interp = str(exc)
        return self._session

    def run(self, packet: PacketIn, *, trace: bool = False) -> RunResult:
        from nfpjit.driver import run_sim, to_run_result

        s = None if trace else self.session()
        if s is not None:
            s.set_packet_context(ingress_ifindex=packet.ingress_ifindex, rx_queue_index=packet.rx_queue_index)
            return to_run_result(s.run(packet.data))
        res = run_sim(self.image, packet, maps_in=self.state, trace=trace, map_cache=self.map_cache, seed=self.seed,
                      engine=self.sim)
        self.state = res.maps
        return res

    def run_chunk(self, chunk, prog_type, keep: int, *, trace: bool = False) -> ChunkOut:
        """The packets of a :class:`~nfpjit.pcapio.PcapChunk`: the whole chunk in one native batch when the
        compiled engine runs them (no Python object per packet but the ``keep`` first records)."""
        s = None if trace else self.session()
        if s is None:
            return ChunkOut.of_runs(self, chunk, prog_type, keep, trace)
        return ChunkOut.of_session(s, chunk, prog_type, keep)

    def run_raw(self, memory: bytes, *, trace: bool = False) -> RunResult:
        from nfpjit.driver import run_sim_raw

        if not self.raw_context:
            raise UnsupportedError("this simulator engine was built for packets, not raw memory",
                                   hint="construct it with raw_context=True")
        res = run_sim_raw(self.image, memory, maps_in=self.state, trace=trace, map_cache=self.map_cache,
                          seed=self.seed)
        self.state = res.maps
        return res

    def maps(self) -> MapState:
        if self._session is not None:
            return self._session.maps()
        return self.state

    def close(self) -> None:
        pass


class SimEngine(ImageEngine):
    """The program compiled by nfpjit (default profile; -O2 or ``compile_options``) and run in the NFP-32 simulator."""

    def __init__(self, program: Program, maps_file: str | None, *, raw_context: bool = False,
                 compile_options: dict | None = None, seed: int = 0):
        from nfpjit.driver import compile
        from nfpjit.ebpf.mapfile import load_map_file
        from nfpjit.ebpf.maps import MapStore

        # raw-context programs (uBPF convention) compile in raw mode under the permissive profile
        options = dict(compile_options or {})
        self.result = (compile(program, profile="permissive", raw_context=True, **options) if raw_context
                       else compile(program, **options))
        super().__init__(self.result.image, None, raw_context=raw_context, seed=seed)
        store = MapStore.from_program(program)
        if maps_file:
            load_map_file(maps_file, store)
        names = {m.name for m in self.image.maps}
        self.state = {k: v for k, v in store.dump().items() if k in names}


def _image_engine(args) -> ImageEngine:
    """The engine for an image OBJ: only the simulator runs NFP code, and nothing is compiled."""
    from nfpjit.isa.image import read_image

    if args.engine != "sim":
        raise UsageError(f"{args.obj} is an NFP firmware image: only the simulator runs it", hint="--engine sim")
    if args.section or args.raw:
        raise UsageError("-s/--section and --raw are for eBPF objects, not NFP images")
    if args.passes or args.disable_pass or args.print_after or args.print_changed or args.verify_each:
        raise UsageError("an NFP image is already compiled: the pass options do not apply")
    return ImageEngine(read_image(args.obj), args.maps_in, raw_context=args.raw_context, seed=args.seed or 0)


ENGINES = {
    "ref": RefEngine,
    "kernel": KernelEngine,
    "sim": SimEngine,
}


def register(subparsers) -> None:
    from nfpjit.cli.dump import add_input_options

    p = subparsers.add_parser("run", help="run a program on packets (reference interpreter, kernel or NIC simulator)",
                              description="Run an XDP/TC program on packets and show each verdict. "
                              "Maps persist across the packets of one run.")
    add_input_options(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--packet", metavar="HEX", action="append", help="a packet as hex (repeatable)")
    src.add_argument("--pcap", metavar="IN.pcap", help="read packets from a pcap file")
    p.add_argument("--out", metavar="OUT.pcap", help="write every output packet (in input order) to a pcap file")
    p.add_argument("--maps-in", metavar="FILE", help="preload maps from a JSON/TOML map file")
    p.add_argument("--maps-out", metavar="FILE", help="write the maps after the run as JSON")
    p.add_argument("--engine", choices=sorted(ENGINES), default="ref", help="what runs the program (default: ref)")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/run-json.md)")
    p.add_argument("--records", choices=("auto", "all", "none"), default="auto",
                   help=f"per-packet records (text lines, JSON \"packets\"): all, none, or auto (the default): all "
                   f"for runs of up to {AUTO_RECORDS} packets, none for bigger ones (the summary is always there)")
    p.add_argument("--trace", action="store_true", help="print every executed instruction (ref and sim engines)")
    p.add_argument("--sim", choices=("auto", "compiled", "interp"), default="auto",
                   help="the simulator of --engine sim: compiled to native code with llvmlite (auto: when it works "
                   "here) or the interpreting simulator (the reference); --trace always interprets")
    p.add_argument("--raw-context", action="store_true",
                   help="run on a raw memory block (r1 = pointer, r2 = length) instead of packets")
    p.add_argument("--mem", metavar="HEX", help="the memory block for --raw-context")
    p.add_argument("--mtu", type=int, default=1500, help="largest L3 packet accepted (default 1500; frames may "
                   "be MTU + 18 bytes)")
    p.add_argument("--seed", type=_uint64, metavar="N", help="seed of bpf_get_prandom_u32, the same for every "
                   "packet (default 0; ref and sim engines)")
    p.add_argument("--clock", type=_uint64, metavar="NS", help="a fixed clock: bpf_ktime_get_ns (and the boot, "
                   "coarse, tai variants) return NS on every packet (default 0; ref engine)")
    p.add_argument("--net", metavar="FILE", help="the network namespace bpf_fib_lookup/bpf_check_mtu see: devices, "
                   "routes, neighbours as JSON/TOML (docs/run-json.md; default: lo only; ref engine)")
    from nfpjit.cli.passopts import add_pass_options

    add_pass_options(p)  # how --engine sim compiles
    p.set_defaults(func=run_command)


def _uint64(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{text} is not an unsigned 64-bit number")
    return value


def _load_net(path: str):
    """The --net file (JSON, or TOML by extension) as an nfpjit.ebpf.net.Net."""
    import tomllib
    from pathlib import Path

    from nfpjit.ebpf.net import Net

    try:
        text = Path(path).read_text()
        doc = tomllib.loads(text) if path.lower().endswith(".toml") else json.loads(text)
    except OSError as exc:
        raise LoadError(f"cannot read network file: {exc.strerror}", where=path) from None
    except UnicodeDecodeError:
        raise LoadError("network file is not UTF-8 text", where=path) from None
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}:{exc.colno}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoadError(f"invalid TOML: {exc}", where=path) from None
    if not isinstance(doc, dict):
        raise LoadError("a network file is an object with devices, routes and neighbours", where=path,
                        hint='e.g. {"devices": [{"ifindex": 2, "name": "eth0", "forwarding": true}], "routes": []}')
    return Net.from_dict(doc, source=path)


def _sim_engine(args) -> str:
    """``--sim``: auto is the compiled simulator where llvmlite's JIT works; --trace interprets (with a note)."""
    from nfpjit.driver import default_sim_engine

    sim = default_sim_engine() if args.sim == "auto" else args.sim
    if args.trace and sim == "compiled":
        sys.stderr.write("nfpjit: note: --trace runs the interpreting simulator (the compiled one does not trace)\n")
        return "interp"
    return sim


def _check_engine_options(args) -> None:
    """--seed, --clock and --net are for the engines that model them."""
    given = [name for name, value in (("--seed", args.seed), ("--clock", args.clock), ("--net", args.net))
             if value is not None]
    if args.engine == "kernel" and given:
        raise UsageError(f"{', '.join(given)}: the kernel engine uses the kernel's own random numbers, clock and "
                         "network namespace", hint="use --engine ref")
    if args.engine == "sim" and (args.clock is not None or args.net is not None):
        raise UsageError("--clock and --net: the NIC has no clock or FIB (the default profile refuses those "
                         "helpers)", hint="use --engine ref")


def _hex(text: str, what: str) -> bytes:
    clean = text.strip().lower().removeprefix("0x").replace(" ", "").replace(":", "")
    try:
        return bytes.fromhex(clean)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a hex string", hint="e.g. --packet ffffffffffff0011...") from None


def _record(n: int, frame: bytes, res: RunResult, prog_type, trace: bool) -> dict:
    rec = {
        "index": n,
        "action": res.action_name(prog_type),
        "r0": res.r0,
        "data": res.packet.hex(),
        "len_in": len(frame),
        "len_out": len(res.packet),
        "insns": res.insns,
        "fault": str(res.fault) if res.fault is not None else None,
    }
    if res.cycles is not None:  # engines that count cycles (the simulator)
        rec["cycles"] = res.cycles
    if res.skb is not None:     # TC programs: the packet metadata handed on with the packet
        rec["skb"] = dict(res.skb)
    if trace:
        rec["trace"] = list(res.trace or [])
    return rec



# -- streaming: chunks of packets in, verdicts counted, output frames written ----------------------------------

#: per-packet records (text lines, JSON "packets") by default for runs of at most this many packets
AUTO_RECORDS = 1000
CHUNK_FRAMES = 4096


class ChunkOut:
    """What one chunk of packets did: verdict counts, cycles (one per packet, None when the engine counts none),
    instructions, faults, the output frames (``frames()``: bytes-like, in order) and the RunResults of the first
    ``keep`` packets."""

    def __init__(self, actions: Counter, cycles, insns: int, faults: int, frames, results: list, out_lengths: list):
        self.actions, self.cycles, self.insns, self.faults = actions, cycles, insns, faults
        self.frames, self.results, self.out_lengths = frames, results, out_lengths

    @classmethod
    def of_runs(cls, engine, chunk, prog_type, keep: int, trace: bool = False) -> ChunkOut:
        """One ``engine.run`` per packet (every engine has it)."""
        runs = [engine.run(PacketIn(f), trace=trace) for f in chunk.frames()]
        actions = Counter(r.action_name(prog_type) for r in runs)
        cycles = [r.cycles for r in runs] if runs and runs[0].cycles is not None else None
        outs = [r.packet for r in runs]
        return cls(actions, cycles, sum(r.insns for r in runs), sum(r.fault is not None for r in runs),
                   lambda: outs, runs[:keep], [len(p) for p in outs])

    @classmethod
    def of_session(cls, s, chunk, prog_type, keep: int) -> ChunkOut:
        """The chunk through a compiled-engine session in native batches (``Session.run_columns``): the packets
        are read where they are in the chunk's buffer, the results stay in native records."""
        import ctypes

        from nfpjit.driver import to_run_result
        from nfpjit.isa.sim.compiled import runtime as rt

        n = len(chunk)
        data = chunk.data
        offs = (ctypes.c_int64 * n)(*chunk.offsets)
        lens = (ctypes.c_int64 * n)(*chunk.lengths)
        recs = (ctypes.c_int64 * (rt.R_SIZE * n))()
        obuf = ctypes.create_string_buffer(sum(chunk.lengths) + 8192 * 8)
        out_offs: list[int] = []
        out_lens: list[int] = []
        results: list = []
        actions: Counter = Counter()
        cycles: list[int] = []
        insns = faults = 0
        k = 0
        mv = memoryview(recs).cast("B").cast("q")
        blocks = []            # (first packet, its out buffer) per native batch
        while k < n:
            sub_offs = offs if k == 0 else (ctypes.c_int64 * (n - k)).from_buffer(offs, 8 * k)
            sub_lens = lens if k == 0 else (ctypes.c_int64 * (n - k)).from_buffer(lens, 8 * k)
            sub_recs = recs if k == 0 else (ctypes.c_int64 * (rt.R_SIZE * (n - k))).from_buffer(recs, 8 * rt.R_SIZE * k)
            done, _, out, ooffs = s.run_columns(data, sub_offs, sub_lens, records=sub_recs, out=obuf)
            if not done:
                raise UnsupportedError("the compiled simulator ran no packet of a batch", hint="use --sim interp")
            lo, hi = k * rt.R_SIZE, (k + done) * rt.R_SIZE
            status = mv[lo + rt.R_STATUS:hi:rt.R_SIZE].tolist()
            r0s = mv[lo + rt.R_R0:hi:rt.R_SIZE].tolist()
            cyc = mv[lo + rt.R_CYCLES:hi:rt.R_SIZE].tolist()
            plen = mv[lo + rt.R_PKT_LEN:hi:rt.R_SIZE].tolist()
            insns += sum(mv[lo + rt.R_INSNS:hi:rt.R_SIZE].tolist())
            cycles += cyc
            for (st, r0), count in Counter(zip(status, r0s)).items():
                if st == rt.STATUS_FAULT:
                    actions["FAULT"] += count
                    faults += count
                else:
                    actions[_action_name(prog_type, r0)] += count
            got = list(ooffs[:done])
            base = len(blocks)
            blocks.append(ctypes.string_at(out, s.ctx[rt.C_OUT_USED]) if done else b"")
            for j in range(done):
                o = got[j]
                out_offs.append((base, o) if o >= 0 else None)
                out_lens.append(plen[j] if o >= 0 else 0)
            for j in range(max(0, min(keep, k + done) - k)):
                results.append(to_run_result(s.result_of(sub_recs, j, out, ooffs)))
            k += done

        def frames():
            views = [memoryview(b) for b in blocks]
            return [b"" if w is None else views[w[0]][w[1]:w[1] + n] for w, n in zip(out_offs, out_lens)]

        return cls(actions, cycles, insns, faults, frames, results, out_lens)


_ACTION_NAMES: dict = {}


def _action_name(prog_type, r0: int) -> str:
    """The verdict name of a run that returned ``r0`` (RunResult.action_name, memoised per value)."""
    key = (prog_type, r0 & 0xFFFF_FFFF)
    name = _ACTION_NAMES.get(key)
    if name is None:
        name = _ACTION_NAMES[key] = RunResult(r0=r0 & 0xFFFF_FFFF_FFFF_FFFF, packet=b"", maps={}, insns=0,
                                              fault=None).action_name(prog_type)
    return name


#: the summary fields that are measurements of this machine, not results (two runs differ in them)
TIMING_FIELDS = ("seconds", "cpu_seconds", "packets_per_second")


class Summary:
    """A run's totals, kept in constant memory: verdict counts, an exact histogram of cycles per packet (integers),
    instructions, bytes, faults, frames the capture cut short, wall time."""

    def __init__(self):
        self.packets = self.insns = self.faults = self.bytes_in = self.bytes_out = self.short = 0
        self.actions: Counter = Counter()
        self.cycles: Counter | None = None
        self.seconds = 0.0          # wall time of the packet loop (reading, running, writing)
        self.cpu_seconds = 0.0      # this process's CPU time in it (the figure on a shared machine)

    def add(self, chunk, out: ChunkOut) -> None:
        self.packets += len(chunk)
        self.insns += out.insns
        self.faults += out.faults
        self.actions.update(out.actions)
        self.bytes_in += sum(chunk.lengths)
        self.bytes_out += sum(out.out_lengths)
        if chunk.wire_lengths is not None:
            self.short += sum(1 for c, w in zip(chunk.lengths, chunk.wire_lengths) if w > c)
        if out.cycles is not None:
            if self.cycles is None:
                self.cycles = Counter()
            self.cycles.update(out.cycles)

    def quantile(self, q: float) -> int:
        """The nearest-rank ``q`` quantile of cycles per packet: the least value with at least ``ceil(q * n)``
        packets at or below it."""
        import math

        rank = max(1, math.ceil(q * self.packets))
        seen = 0
        for value in sorted(self.cycles):
            seen += self.cycles[value]
            if seen >= rank:
                return value
        return max(self.cycles)

    def cycle_stats(self) -> dict | None:
        if not self.cycles or not self.packets:
            return None
        total = sum(v * n for v, n in self.cycles.items())
        return {"mean": round(total / self.packets, 2), "min": min(self.cycles), "p50": self.quantile(0.5),
                "p99": self.quantile(0.99), "max": max(self.cycles)}

    def to_json(self, engine: str, simulator: str | None) -> dict:
        return {
            "packets": self.packets, "engine": engine, "simulator": simulator,
            "actions": dict(sorted(self.actions.items())), "faults": self.faults, "insns": self.insns,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "short_captures": self.short,
            "cycles": self.cycle_stats(), "seconds": round(self.seconds, 6), "cpu_seconds": round(self.cpu_seconds, 6),
            "packets_per_second": round(self.packets / self.seconds, 1) if self.seconds > 0 else None,
        }

    def text(self, engine: str) -> str:
        noun = "packet" if self.packets == 1 else "packets"
        verdicts = ", ".join(f"{name} {count}" for name, count in sorted(self.actions.items()))
        line = f"{self.packets} {noun} ({engine}): {verdicts or 'none'}; {self.insns} insns executed"
        st = self.cycle_stats()
        if st is not None:
            line += (f", {st['mean']:.1f} cycles per packet (p50 {st['p50']}, p99 {st['p99']}, max {st['max']})")
        if self.seconds > 0 and self.packets:
            line += f"; {self.seconds:.3f} s, {self.packets / self.seconds:,.0f} packets/s"
        return line


class _FrameList:
    """``--packet`` frames as one chunk (the shape of :class:`nfpjit.pcapio.PcapChunk`)."""

    def __init__(self, frames: list[bytes]):
        from nfpjit.pcapio import PcapChunk

        offsets, pos = [], 0
        for f in frames:
            offsets.append(pos)
            pos += len(f)
        self.size = pos
        self.nano = False
        self.chunk = PcapChunk(b"".join(frames), offsets, [len(f) for f in frames], None, None, 0, pos)

    def chunks(self, **_):
        if len(self.chunk):
            yield self.chunk

    def close(self) -> None:
        pass


def _source(args):
    """The packets: a streaming pcap reader, or the ``--packet`` frames."""
    if args.pcap:
        from nfpjit.pcapio import PcapReader

        return PcapReader(args.pcap)
    if args.packet:
        return _FrameList([_hex(h, f"--packet {n}") for n, h in enumerate(args.packet)])
    raise UsageError("no packets to run", hint="give --packet HEX (repeatable) or --pcap IN.pcap")


def _check_sizes(chunk, limit: int, where: str, buffer: int | None) -> None:
    """Frames longer than the MTU allows (or than the simulator's packet buffer) stop the run."""
    if not chunk.lengths:
        return
    longest = max(chunk.lengths)
    if longest > limit:
        k = next(i for i, n in enumerate(chunk.lengths) if n > limit)
        raise LoadError(f"packet {chunk.first + k} has {chunk.lengths[k]} bytes, more than the MTU allows ({limit})",
                        where=where, hint="raise --mtu for jumbo frames")
    if buffer is not None and longest > buffer:
        k = next(i for i, n in enumerate(chunk.lengths) if n > buffer)
        raise LoadError(f"packet {chunk.first + k} has {chunk.lengths[k]} bytes, more than the NIC simulator's "
                        f"{buffer}-byte packet buffer", where=where, hint="use --engine ref for such frames")


class _Progress:
    """A rich progress bar on stderr when it is a terminal (bytes of the capture read); nothing otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                                TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[packets]:,} packets"),
                                TextColumn("{task.fields[pps]:,.0f} pkt/s"), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("running", total=total, packets=0, pps=0.0)

    def update(self, done_bytes: int, packets: int, seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done_bytes, packets=packets,
                            pps=packets / seconds if seconds > 0 else 0.0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class _Records:
    """Per-packet records, written as they come (``all``), never (``none``), or kept for the end while there are at
    most AUTO_RECORDS of them (``auto``)."""

    def __init__(self, mode: str, as_json: bool, out):
        self.mode, self.json, self.out = mode, as_json, out
        self.kept: list[dict] | None = [] if mode == "auto" else None
        self.count = 0
        self.dropped = False
        if mode == "all" and as_json:
            out.write('{"packets": [')

    def want(self) -> int:
        """How many records the next chunk should produce at most."""
        if self.mode == "none" or self.dropped:
            return 0
        if self.mode == "all":
            return 1 << 62
        return AUTO_RECORDS + 1 - self.count

    def add(self, rec: dict) -> None:
        if self.mode == "all":
            self._emit(rec)
        elif self.kept is not None:
            self.kept.append(rec)
            if len(self.kept) > AUTO_RECORDS:
                self.kept, self.dropped = None, True
        self.count += 1

    def _emit(self, rec: dict) -> None:
        out = self.out
        if self.json:
            out.write(("\n  " if self.count == 0 else ",\n  ") + json.dumps(rec))
            return
        for line in rec.get("trace", []):
            out.write(f"    {line}\n")
        fault = f"  fault: {rec['fault']}" if rec["fault"] else ""
        cycles = f"  cycles {rec['cycles']}" if "cycles" in rec else ""
        skb = "".join(f"  {k} {v:#x}" for k, v in rec.get("skb", {}).items() if v)
        out.write(f"{rec['index']}: {rec['action']}  len {rec['len_in']} -> {rec['len_out']}  "
                  f"insns {rec['insns']}{cycles}{skb}{fault}\n")

    def finish(self) -> bool:
        """Write what was kept; True when the records are part of the output."""
        if self.kept is not None:
            if self.json:
                self.out.write('{"packets": [')
            for n, rec in enumerate(self.kept):
                self.count = n
                self._emit(rec)
            self.count = len(self.kept)
            return True
        return self.mode == "all"


def run_command(args) -> int:
    from nfpjit.cli.dump import load_from_args

    if args.mtu <= 0:
        raise UsageError(f"--mtu must be positive, not {args.mtu}")
    if args.mem is not None and not args.raw_context:
        raise UsageError("--mem needs --raw-context")
    if args.raw_context and (args.packet or args.pcap or args.out):
        raise UsageError("--raw-context runs on --mem, not on packets")
    _check_engine_options(args)
    from nfpjit.cli.dump_jited import is_image_file

    image_input = is_image_file(args.obj)
    program = None if image_input else load_from_args(args)
    source = None if args.raw_context else _source(args)
    try:
        return _run(args, program, image_input, source)
    finally:
        if source is not None:
            source.close()


def _make_engine(args, program, image_input):
    factory = ENGINES[args.engine]
    if image_input:
        return _image_engine(args)
    if factory is SimEngine:
        from nfpjit.cli.passopts import compile_options, report

        engine = SimEngine(program, args.maps_in, raw_context=args.raw_context, compile_options=compile_options(args),
                           seed=args.seed or 0)
        report(args, engine.result)  # --print-after / --time-passes, to stderr
        return engine
    if factory is RefEngine:
        net = _load_net(args.net) if args.net else None
        return RefEngine(program, args.maps_in, seed=args.seed or 0, clock_ns=args.clock or 0, net=net)
    return factory(program, args.maps_in)


def _run(args, program, image_input, source) -> int:
    import time

    engine = _make_engine(args, program, image_input)
    prog_type = engine.prog_type if program is None else program.prog_type
    simulator = None
    if isinstance(engine, ImageEngine):
        engine.sim = simulator = _sim_engine(args)
    out = sys.stdout
    if args.raw_context:
        try:
            memory = _hex(args.mem or "", "--mem")
            res = engine.run_raw(memory, trace=args.trace)
            state = engine.maps()
        finally:
            engine.close()
        rec = _record(0, memory, res, prog_type, args.trace)
        rec["action"] = "FAULT" if res.fault is not None else f"r0={res.r0}"
        summary = Summary()
        summary.packets, summary.insns, summary.faults = 1, res.insns, int(res.fault is not None)
        summary.actions[rec["action"]] += 1
        if res.cycles is not None:
            summary.cycles = Counter([res.cycles])
        return _finish_output(args, out, [rec], summary, state, simulator)
    if isinstance(engine, ImageEngine) and simulator == "compiled" and not args.trace:
        engine.session()             # compile to native before the clock starts
        if engine.why_interp is not None:
            sys.stderr.write(f"nfpjit: note: the interpreting simulator runs this image ({engine.why_interp})\n")
            simulator = "interp"
    records = _Records(args.records, args.json, out)
    summary = Summary()
    writer = None
    limit = args.mtu + ETH_OVERHEAD
    where = args.pcap or "--packet"
    progress = _Progress(getattr(source, "size", 0), sys.stderr.isatty() and not args.trace and not
                         (args.records == "all" and not args.json and sys.stdout.isatty()))
    try:
        if args.out:
            from nfpjit.pcapio import PcapWriter

            writer = PcapWriter(args.out, nano=source.nano)
        from nfpjit.isa.sim.memory import MAX_PACKET

        buffer = MAX_PACKET if isinstance(engine, ImageEngine) else None
        start, cpu = time.perf_counter(), time.process_time()
        for chunk in source.chunks(max_frames=CHUNK_FRAMES):
            _check_sizes(chunk, limit, where, buffer)
            keep = records.want()
            if hasattr(engine, "run_chunk"):
                got = engine.run_chunk(chunk, prog_type, keep, trace=args.trace)
            else:
                got = ChunkOut.of_runs(engine, chunk, prog_type, keep, args.trace)
            summary.add(chunk, got)
            for j, res in enumerate(got.results):
                records.add(_record(chunk.first + j, chunk.frame(j), res, prog_type, args.trace))
            if writer is not None:
                writer.write_many(got.frames(), chunk.ts)
            summary.seconds, summary.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            progress.update(chunk.end, summary.packets, summary.seconds)
        state = engine.maps()
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        progress.close()
        engine.close()
    with_records = records.finish()
    if records.dropped:
        sys.stderr.write(f"nfpjit: note: {summary.packets} packets: per-packet records left out (more than "
                         f"{AUTO_RECORDS}; --records all to have them)\n")
    return _finish_output(args, out, None if with_records else [], summary, state, simulator,
                          streamed=with_records)


def _finish_output(args, out, records, summary, state, simulator, *, streamed: bool = False) -> int:
    """The maps file, then the JSON document's end (or the whole of it) or the text summary."""
    if args.maps_out:
        from nfpjit.ebpf.mapfile import write_map_file

        try:
            write_map_file(args.maps_out, state)
        except OSError as exc:
            raise LoadError(f"cannot write map file: {exc.strerror}", where=args.maps_out) from None
    if args.json:
        from nfpjit.ebpf.mapfile import state_to_json

        tail = {}
        if summary is not None:
            tail["summary"] = summary.to_json(args.engine, simulator)
        tail["maps"] = state_to_json(state)
        body = json.dumps(tail, indent=2)
        if streamed:
            out.write("\n],\n" + body[1:] + "\n")
        else:
            doc = {"packets": records} if records else {}
            doc.update(tail)
            json.dump(doc, out, indent=2)
            out.write("\n")
        return 0
    if records:
        r = _Records("all", False, out)
        for rec in records:
            r.add(rec)
    if summary is not None:
        out.write(summary.text(args.engine) + "\n")
    return 0

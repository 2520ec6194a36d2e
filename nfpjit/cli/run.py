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

    def run(self, packet: PacketIn, *, trace: bool = False) -> RunResult:
        from nfpjit.driver import run_sim

        res = run_sim(self.image, packet, maps_in=self.state, trace=trace, map_cache=self.map_cache, seed=self.seed,
                      engine=self.sim)
        self.state = res.maps
        return res

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
    if args.trace:
        if args.sim == "compiled":
            sys.stderr.write("nfpjit: note: --trace runs the interpreting simulator\n")
        return "interp"
    if args.sim == "auto":
        from nfpjit.isa.sim.compiled import available

        return "compiled" if available() else "interp"
    return args.sim


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


def _packets(args) -> list[bytes]:
    if args.pcap:
        from nfpjit.pcapio import read_pcap

        frames = read_pcap(args.pcap)
    elif args.packet:
        frames = [_hex(h, f"--packet {n}") for n, h in enumerate(args.packet)]
    else:
        raise UsageError("no packets to run", hint="give --packet HEX (repeatable) or --pcap IN.pcap")
    limit = args.mtu + ETH_OVERHEAD
    for n, frame in enumerate(frames):
        if len(frame) > limit:
            raise LoadError(f"packet {n} has {len(frame)} bytes, more than the MTU allows ({limit})",
                            where=args.pcap or "--packet", hint="raise --mtu for jumbo frames")
    return frames


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
    if trace:
        rec["trace"] = list(res.trace or [])
    return rec


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
    frames = [] if args.raw_context else _packets(args)
    factory = ENGINES[args.engine]
    if image_input:
        engine = _image_engine(args)
        prog_type = engine.prog_type
    elif factory is SimEngine:
        from nfpjit.cli.passopts import compile_options, report

        engine = SimEngine(program, args.maps_in, raw_context=args.raw_context, compile_options=compile_options(args),
                           seed=args.seed or 0)
        report(args, engine.result)  # --print-after / --time-passes, to stderr
    elif factory is RefEngine:
        net = _load_net(args.net) if args.net else None
        engine = RefEngine(program, args.maps_in, seed=args.seed or 0, clock_ns=args.clock or 0, net=net)
    else:
        engine = factory(program, args.maps_in)
    if program is not None:
        prog_type = program.prog_type
    if isinstance(engine, ImageEngine):
        engine.sim = _sim_engine(args)
    records: list[dict] = []
    outputs: list[bytes] = []
    try:
        if args.raw_context:
            memory = _hex(args.mem or "", "--mem")
            res = engine.run_raw(memory, trace=args.trace)
            rec = _record(0, memory, res, prog_type, args.trace)
            rec["action"] = "FAULT" if res.fault is not None else f"r0={res.r0}"
            records.append(rec)
        else:
            for n, frame in enumerate(frames):
                res = engine.run(PacketIn(frame), trace=args.trace)
                records.append(_record(n, frame, res, prog_type, args.trace))
                outputs.append(res.packet)
        state = engine.maps()
    finally:
        engine.close()
    if args.out:
        from nfpjit.pcapio import write_pcap

        write_pcap(args.out, outputs)
    if args.maps_out:
        from nfpjit.ebpf.mapfile import write_map_file

        try:
            write_map_file(args.maps_out, state)
        except OSError as exc:
            raise LoadError(f"cannot write map file: {exc.strerror}", where=args.maps_out) from None
    out = sys.stdout
    if args.json:
        from nfpjit.ebpf.mapfile import state_to_json

        json.dump({"packets": records, "maps": state_to_json(state)}, out, indent=2)
        out.write("\n")
        return 0
    for rec in records:
        for line in rec.get("trace", []):
            out.write(f"    {line}\n")
        fault = f"  fault: {rec['fault']}" if rec["fault"] else ""
        cycles = f"  cycles {rec['cycles']}" if "cycles" in rec else ""
        out.write(f"{rec['index']}: {rec['action']}  len {rec['len_in']} -> {rec['len_out']}  "
                  f"insns {rec['insns']}{cycles}{fault}\n")
    counts = Counter(r["action"] for r in records)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    total = sum(r["insns"] for r in records)
    noun = "packet" if len(records) == 1 else "packets"
    timed = [r["cycles"] for r in records if "cycles" in r]
    cycles = f", {sum(timed) / len(timed):.1f} cycles per packet (max {max(timed)})" if timed else ""
    out.write(f"{len(records)} {noun} ({args.engine}): {summary or 'none'}; {total} insns executed{cycles}\n")
    return 0

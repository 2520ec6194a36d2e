"""``nfpjit stats``: what the optimisation levels and passes do to programs, in code size and cycles.

``nfpjit stats OBJ... [-s SEC] [--pcap P] [--profile P] [--json|--csv] [--plot FILE.png] [--jobs N | --cluster ADDR]``

For every program of every OBJ (all program sections of an ELF object unless ``-s`` picks
one; ``.s`` eBPF assembly): the eBPF instructions; the NFP instructions at -O0, -O1 and -O2
and what each -O2 pass saves (:func:`nfpjit.driver.pass_deltas`, by ablation); NFP/eBPF
ratios; simulated cycles per packet of the -O2 image (mean and max over the packets of
``--pcap``, or :func:`nfpjit.testing.crafted_packets`, maps persisting across packets) split
into ALU/issue, packet memory (CTM), map lookups and other firmware calls, and other memory;
map-cache hits and misses; compile time per phase.  The program is analysed once and the
analysis reused for every level.  A totals row gives sums and geometric means (of ratios and
of cycles per packet).  Programs the profile (or the lowering) refuses are listed with the
reason.  Output: a table, ``--json`` (schema in docs/passes.md, "nfpjit stats") or ``--csv``;
``--plot`` also draws the per-pass savings as bars per program (needs ``nfpjit[plot]``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

from nfpjit.errors import NfpjitError, UnsupportedError, UsageError

LEVELS = (0, 1, 2)
#: cycle categories of the report: resource names of ``nfpjit.isa.sim.cycles.Resource`` in each
#: (a resource not named here is counted as other memory)
CATEGORIES = {"alu": ("ISSUE", "BRANCH"), "packet": ("CTM",), "maps": ("FIRMWARE",)}
OTHER = "other_memory"
SCHEMA_VERSION = 1


def register(subparsers) -> None:
    p = subparsers.add_parser("stats", help="code size per -O level and pass, simulated cycles per packet",
                              description="Per program: eBPF and NFP instructions at -O0/-O1/-O2, what each -O2 "
                              "pass saves, simulated cycles per packet by resource, compile time per phase; "
                              "totals with geometric means.")
    p.add_argument("objs", metavar="OBJ", nargs="+", help="ELF objects and eBPF assembly (.s) files")
    p.add_argument("-s", "--section", metavar="SECTION[:FUNC]", help="only this program section of each OBJ")
    p.add_argument("--pcap", metavar="P", help="packets to simulate (default: nfpjit.testing.crafted_packets())")
    p.add_argument("--packets", type=int, metavar="N", help="use only the first N packets")
    p.add_argument("--sim", choices=("auto", "compiled", "interp"), default="auto",
                   help="the simulator that counts the cycles: compiled to native code (auto: where llvmlite's JIT "
                   "works) or the interpreting one; both count the same cycles")
    p.add_argument("--profile", default="default", metavar="NAME|FILE",
                   help="NIC capability profile: shipped name or .toml path (default: %(default)s)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output (docs/passes.md, 'nfpjit stats')")
    fmt.add_argument("--csv", action="store_true", help="one CSV row per program and a totals row")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the savings of each pass per program "
                   "(needs matplotlib: pip install 'nfpjit[plot]')")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="spread the programs over N processes of this machine")
    p.add_argument("--cluster", metavar="tcp://HOST:8786",
                   help="spread the programs over a Dask distributed cluster (needs nfpjit[dask])")
    p.set_defaults(func=run)


# -- gathering ------------------------------------------------------------------------------


def _programs(paths, section):
    """(label, path, section, Program or None, reason, load seconds) for every program asked for."""
    import nfpjit
    from nfpjit.ebpf.loader import list_programs

    out = []
    for path in paths:
        stem = Path(path).stem
        try:
            sections = [section] if section is not None else [s for s, _ in list_programs(path)]
        except NfpjitError as exc:
            out.append((stem, str(path), section, None, str(exc), 0.0))
            continue
        for sec in sections:
            label = f"{stem}:{sec}" if sec else stem
            start = time.perf_counter()
            try:
                program = nfpjit.load(path, section=sec or None)
            except NfpjitError as exc:
                out.append((label, str(path), sec or None, None, str(exc), 0.0))
            else:
                out.append((label, str(path), sec or None, program, None, time.perf_counter() - start))
    return out


def _category(resource_name: str) -> str:
    for cat, names in CATEGORIES.items():
        if resource_name in names:
            return cat
    return OTHER


def simulate_cycles(image, program, frames, *, engine: str | None = None) -> dict:
    """Cycles per packet of ``image`` over ``frames`` (maps persisting), by category and resource.

    As on the NIC, the map contents and the NIC-side map lookup cache stay from packet to packet.
    The frames run twice: the figures are those of the first pass, from empty maps and a cold map
    cache; ``warm`` gives the mean and max of the second pass, which meets the maps and the cache
    as the first left them (a NIC in steady state: entries exist, hot keys are cached).
    ``engine``: the simulator (``driver.SIM_ENGINES``; None: the compiled one where llvmlite's JIT works, all
    packets in one native session); both count the same cycles.
    """
    from nfpjit.driver import default_sim_engine, simulate_many
    from nfpjit.ebpf.maps import MapStore
    from nfpjit.isa.sim import DEFAULT_MAP_CACHE_SIZE
    from nfpjit.isa.sim.firmware import MapCache

    cache = MapCache(DEFAULT_MAP_CACHE_SIZE)

    names = {m.name for m in image.maps}
    state = {k: v for k, v in MapStore.from_program(program).dump().items() if k in names}
    per_packet, faults, hits, misses, cache_seen = [], 0, 0, 0, False
    by_resource: dict[str, int] = {}
    insns = 0
    warm: list[int] = []
    runs = simulate_many(image, [*frames, *frames], maps_in=state, map_cache=cache, engine=engine or default_sim_engine())
    for i, sim in enumerate(runs):
        if i >= len(frames):
            warm.append(sim.cycles)
            continue
        per_packet.append(sim.cycles)
        insns += sim.insns
        faults += sim.fault is not None
        for res, use in sim.breakdown.items():
            by_resource[res.name.lower()] = by_resource.get(res.name.lower(), 0) + use.cycles
        if hasattr(sim, "map_cache_hits"):
            cache_seen = True
            hits += sim.map_cache_hits
            misses += sim.map_cache_misses
    n = len(frames)
    cats = {c: 0.0 for c in (*CATEGORIES, OTHER)}
    for name, cyc in by_resource.items():
        cats[_category(name.upper())] += cyc
    return {
        "mean": round(sum(per_packet) / n, 2), "max": max(per_packet), "min": min(per_packet),
        "warm": {"mean": round(sum(warm) / n, 2), "max": max(warm)},
        **{c: round(v / n, 2) for c, v in cats.items()},
        "by_resource": {k: round(v / n, 2) for k, v in sorted(by_resource.items())},
        "nfp_insns_per_packet": round(insns / n, 2), "faults": faults,
        "map_cache": {"hits": hits, "misses": misses} if cache_seen else None,
    }


def _copy_unit(unit):
    """A copy of a machine program that passes may rewrite without touching ``unit`` (MInstrs are immutable)."""
    import dataclasses

    return dataclasses.replace(unit, functions=[dataclasses.replace(f, body=list(f.body)) for f in unit.functions])


def pass_savings(result) -> list[tuple[str, str, int]]:
    """:func:`nfpjit.driver.pass_deltas` of ``result`` with less work, same numbers.

    Leaving out nfp pass *j* changes nothing before it: the code before pass *j* is kept from
    one run of the pipeline, and only the passes after *j* are run again on a copy of it (the
    ablation of a lower-level pass still lowers again).
    """
    from nfpjit.driver import machine_size, pass_deltas
    from nfpjit.jit.lower import lower
    from nfpjit.passes.manager import PassContext, PassManager, split_levels

    program, analysis = result.program, result.analysis
    if getattr(analysis, "raw_context", False):
        return pass_deltas(result)
    pipeline = list(result.pipeline)
    full = result.mprogram.size()
    lower_level, nfp_level = split_levels(pipeline)
    unit = lower(program, analysis, passes=lower_level)
    unit.context = PassContext(program, analysis, False)
    before = []  # the code before each nfp pass
    for p in nfp_level:
        before.append(_copy_unit(unit))
        PassManager([p]).run(unit)
    if unit.size() != full:  # not the compilation's code: take the plain ablation
        return pass_deltas(result)
    nfp_saves = []
    for j in range(len(nfp_level)):
        rest = before[j]
        PassManager(nfp_level[j + 1:]).run(rest)
        nfp_saves.append(rest.size() - full)
    saves = iter(nfp_saves)
    out = []
    for i, p in enumerate(pipeline):
        if p.level == "lower":
            others = pipeline[:i] + pipeline[i + 1:]
            out.append((p.name, p.level, machine_size(program, analysis, others) - full))
        else:
            out.append((p.name, p.level, next(saves)))
    return out


def _keyed(deltas) -> list[dict]:
    """Per pass run: name, level, saves and a key unique in the pipeline (``dce#2``: its second run)."""
    seen: dict[str, int] = {}
    out = []
    for name, level, saves in deltas:
        seen[name] = seen.get(name, 0) + 1
        out.append({"name": name, "key": name if seen[name] == 1 else f"{name}#{seen[name]}", "level": level,
                    "saves": saves})
    return out


def program_stats(program, *, profile="default", frames, load_seconds: float = 0.0, engine: str | None = None) -> dict:
    """Everything ``nfpjit stats`` reports for one program (raises NfpjitError when it is not compiled)."""
    from nfpjit.analysis import analyze
    from nfpjit.driver import compile, machine_size, pipeline
    from nfpjit.ebpf.opcodes import ProgType

    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        raise UnsupportedError(f"a {program.prog_type.name} program: the NIC runs XDP and TC programs")
    t0 = time.perf_counter()
    analysis = analyze(program)
    analysis_s = time.perf_counter() - t0
    result = compile(program, opt_level=2, profile=profile, analysis=analysis)  # raises when rejected
    sizes = {lvl: machine_size(program, analysis, pipeline(lvl)) for lvl in LEVELS if lvl != 2}
    sizes[2] = result.stats.nfp_insns
    e = len(program.insns)
    phases = {"load": load_seconds, "analysis": analysis_s}
    for name, seconds in result.stats.phases:
        if name == "load":  # of a loaded Program: the profile and the pipeline
            name = "setup"
        if name != "analysis":  # reused: ~0 in the compile itself
            phases[name] = phases.get(name, 0.0) + seconds
    return {
        "name": program.name,
        "prog_type": program.prog_type.name.lower(),
        "ebpf_insns": e,
        "nfp_insns": {f"O{lvl}": sizes[lvl] for lvl in LEVELS},
        "ratio": {f"O{lvl}": round(sizes[lvl] / e, 4) for lvl in LEVELS},
        "passes": _keyed(pass_savings(result)),
        "cycles": simulate_cycles(result.image, program, frames, engine=engine),
        "compile_ms": {k: round(v * 1000, 3) for k, v in phases.items()} | {"total": round(sum(phases.values()) * 1000, 3)},
    }


def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return round(math.exp(sum(math.log(v) for v in vals) / len(vals)), 4)


def totals(rows: list[dict]) -> dict:
    passes: dict[str, int] = {}
    for r in rows:
        for p in r["passes"]:
            passes[p["key"]] = passes.get(p["key"], 0) + p["saves"]
    e = sum(r["ebpf_insns"] for r in rows)
    return {
        "programs": len(rows),
        "ebpf_insns": e,
        "nfp_insns": {f"O{lvl}": sum(r["nfp_insns"][f"O{lvl}"] for r in rows) for lvl in LEVELS},
        "ratio_geomean": {f"O{lvl}": geomean(r["ratio"][f"O{lvl}"] for r in rows) for lvl in LEVELS},
        "cycles_geomean": {"mean": geomean(r["cycles"]["mean"] for r in rows),
                           "max": geomean(r["cycles"]["max"] for r in rows),
                           "warm": geomean(r["cycles"]["warm"]["mean"] for r in rows)},
        "passes": passes,
        "compile_ms": round(sum(r["compile_ms"]["total"] for r in rows), 3),
    }


def _program_result(todo_item, prof, frames, engine=None) -> tuple[str, dict]:
    """``("row", row)`` or ``("rejected", entry)`` for one program (a top-level function: executors pickle it)."""
    label, path, sec, program, reason, load_s = todo_item
    if program is None:
        return "rejected", {"program": label, "file": path, "section": sec, "reason": reason, "codes": [],
                            "load_error": True}
    try:
        row = program_stats(program, profile=prof, frames=frames, load_seconds=load_s, engine=engine)
    except NfpjitError as exc:
        report = getattr(exc, "report", None)
        codes = sorted({d.code for d in report.diagnostics if d.severity.name == "ERROR"}) if report else []
        return "rejected", {"program": label, "file": path, "section": sec, "reason": str(exc), "codes": codes}
    return "row", {"program": label, "file": path, "section": sec, **row}


def gather(paths, *, section=None, profile="default", frames, progress=None, executor=None,
           engine: str | None = None) -> dict:
    """The ``nfpjit stats --json`` document for ``paths``; ``progress(done, total, label)`` before each program;
    ``engine``: the simulator that counts the cycles (None: the compiled one where it works).

    ``executor``: a ``concurrent.futures.Executor`` (:func:`nfpjit.fuzz.executor.make_executor`: local
    processes or a Dask cluster) the programs are mapped over; the rows keep their order.
    """
    import functools

    from nfpjit.driver import _load_profile

    prof = _load_profile(profile)  # a bad --profile fails once, before any program
    start = time.perf_counter()
    rows, rejected = [], []
    todo = _programs(paths, section)
    one = functools.partial(_program_result, prof=prof, frames=frames, engine=engine)
    results = map(one, todo) if executor is None else executor.map(one, todo)
    for done, (item, (kind, entry)) in enumerate(zip(todo, results)):
        if progress is not None:
            progress(done, len(todo), item[0])
        (rows if kind == "row" else rejected).append(entry)
    return {"version": SCHEMA_VERSION, "profile": prof.name, "packets": len(frames), "programs": rows,
            "rejected": rejected, "totals": totals(rows), "wall_seconds": round(time.perf_counter() - start, 3)}


# -- output -------------------------------------------------------------------------------


def csv_rows(doc: dict) -> tuple[list[str], list[list]]:
    pass_names = list(doc["totals"]["passes"])
    head = ["program", "ebpf_insns", *(f"nfp_O{lvl}" for lvl in LEVELS), *(f"ratio_O{lvl}" for lvl in LEVELS),
            "cycles_mean", "cycles_max", "cycles_warm_mean", "cycles_alu", "cycles_packet", "cycles_maps", "cycles_other_memory",
            "map_cache_hits", "map_cache_misses", "faults", "compile_ms", *(f"saves_{n}" for n in pass_names)]
    rows = []
    for r in doc["programs"]:
        c, mc = r["cycles"], r["cycles"]["map_cache"] or {}
        saves = {p["key"]: p["saves"] for p in r["passes"]}
        rows.append([r["program"], r["ebpf_insns"], *(r["nfp_insns"][f"O{lvl}"] for lvl in LEVELS),
                     *(r["ratio"][f"O{lvl}"] for lvl in LEVELS), c["mean"], c["max"], c["warm"]["mean"],
                     c["alu"], c["packet"],
                     c["maps"], c[OTHER], mc.get("hits", ""), mc.get("misses", ""), c["faults"],
                     r["compile_ms"]["total"], *(saves.get(n, "") for n in pass_names)])
    t = doc["totals"]
    rows.append(["total (geomean of ratios and cycles)", t["ebpf_insns"], *(t["nfp_insns"][f"O{lvl}"] for lvl in LEVELS),
                 *(t["ratio_geomean"][f"O{lvl}"] for lvl in LEVELS), t["cycles_geomean"]["mean"],
                 t["cycles_geomean"]["max"], t["cycles_geomean"]["warm"], "", "", "", "", "", "", "", t["compile_ms"],
                 *(t["passes"][n] for n in pass_names)])
    return head, rows


def _fmt(v, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def print_tables(doc: dict, out) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=None if out.isatty() else 200)
    rows, t = doc["programs"], doc["totals"]
    table = Table(title=f"nfpjit stats: profile {doc['profile']}, {doc['packets']} packets per program "
                  "(cycles: -O2 image, mean per packet)")
    cols = ["program", "eBPF", "NFP -O0", "-O1", "-O2", "ratio -O0", "-O2", "cycles", "max", "warm",
            "ALU", "packet", "maps/fw", "other mem", "map$ hit/miss", "compile ms"]
    for col in cols:
        table.add_column(col, justify="left" if col == "program" else "right")
    for r in rows:
        c = r["cycles"]
        mc = c["map_cache"]
        table.add_row(r["program"], str(r["ebpf_insns"]), *(str(r["nfp_insns"][f"O{lvl}"]) for lvl in LEVELS),
                      f"{r['ratio']['O0']:.2f}", f"{r['ratio']['O2']:.2f}", f"{c['mean']:.0f}", str(c["max"]),
                      f"{c['warm']['mean']:.0f}",
                      f"{c['alu']:.0f}", f"{c['packet']:.0f}", f"{c['maps']:.0f}", f"{c[OTHER]:.0f}",
                      f"{mc['hits']}/{mc['misses']}" if mc and (mc["hits"] or mc["misses"]) else "",
                      f"{r['compile_ms']['total']:.1f}")
    if rows:
        table.add_section()
        table.add_row(f"total ({t['programs']}; geomean)", str(t["ebpf_insns"]),
                      *(str(t["nfp_insns"][f"O{lvl}"]) for lvl in LEVELS), _fmt(t["ratio_geomean"]["O0"], ".2f"),
                      _fmt(t["ratio_geomean"]["O2"], ".2f"), _fmt(t["cycles_geomean"]["mean"], ".0f"),
                      _fmt(t["cycles_geomean"]["max"], ".0f"), _fmt(t["cycles_geomean"]["warm"], ".0f"),
                      "", "", "", "", "", f"{t['compile_ms']:.1f}")
    console.print(table)
    if rows and t["passes"]:
        console.print(_pass_table(rows, t))
    phases: dict[str, float] = {}
    for r in rows:
        for k, v in r["compile_ms"].items():
            if k != "total":
                phases[k] = phases.get(k, 0.0) + v
    if phases:
        console.print("compile time by phase (-O2, all programs): "
                      + ", ".join(f"{k} {v:.1f} ms" for k, v in phases.items()), markup=False)
    if doc["rejected"]:
        console.print(f"{len(doc['rejected'])} program(s) not compiled:", markup=False)
        for s in doc["rejected"]:
            console.print(f"  {s['program']}: {s['reason']}", markup=False, no_wrap=True, overflow="ellipsis")
    console.print(f"{doc['wall_seconds']:.1f} s", markup=False, style="dim")


def _pass_table(rows: list[dict], t: dict):
    """One row per -O2 pass: its total saving, then per program (few programs) or a summary (many)."""
    from rich.table import Table

    keys = list(t["passes"])
    saves = [{p["key"]: p["saves"] for p in r["passes"]} for r in rows]
    levels = {p["key"]: p["level"] for r in rows for p in r["passes"]}
    pt = Table(title="NFP instructions each -O2 pass saves (size without it - size with it)")
    pt.add_column("pass")
    pt.add_column("level")
    pt.add_column("total", justify="right")
    few = len(rows) <= 6
    if few:
        for r in rows:
            pt.add_column(r["program"], justify="right")
    else:
        for col in ("programs it shrinks", "grows", "most saved"):
            pt.add_column(col, justify="right" if col != "most saved" else "left")
    for k in keys:
        vals = [sv.get(k, 0) for sv in saves]
        if few:
            cells = [str(v) for v in vals]
        else:
            best = max(range(len(rows)), key=lambda i: vals[i])
            cells = [str(sum(v > 0 for v in vals)), str(sum(v < 0 for v in vals)),
                     f"{rows[best]['program']} ({vals[best]})" if vals[best] > 0 else ""]
        pt.add_row(k, levels.get(k, ""), str(t["passes"][k]), *cells)
    return pt


def _need_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed",
                         hint="pip install 'nfpjit[plot]'") from None
    return plt


def plot(doc: dict, path: str, plt=None) -> None:
    """Grouped bars: per program, the NFP instructions each -O2 pass saves."""
    plt = plt or _need_matplotlib()
    rows = doc["programs"]
    names = list(doc["totals"]["passes"])
    fig, ax = plt.subplots(figsize=(min(18.0, max(6.0, 0.5 * len(rows) + 2)), 5.0))
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        ys = [next((p["saves"] for p in r["passes"] if p["key"] == n), 0) for r in rows]
        ax.bar([x + (i - (len(names) - 1) / 2) * width for x in range(len(rows))], ys, width, label=n)
    ax.set_xticks(range(len(rows)), [r["program"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("NFP instructions saved")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(f"what each -O2 pass saves (profile {doc['profile']})")
    if names:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def _frames(args) -> list[bytes]:
    if args.pcap:
        from nfpjit.pcapio import read_pcap

        frames = read_pcap(args.pcap)
    else:
        from nfpjit.testing.packets import crafted_packets

        frames = crafted_packets()
    if args.packets is not None:
        if args.packets <= 0:
            raise UsageError(f"--packets must be positive, not {args.packets}")
        frames = frames[:args.packets]
    if not frames:
        raise UsageError(f"no packets in {args.pcap}" if args.pcap else "no packets")
    return frames


def run(args) -> int:
    plt = _need_matplotlib() if args.plot else None  # before the long part
    frames = _frames(args)
    if args.jobs != 1 or args.cluster:
        from nfpjit.fuzz.executor import make_executor

        executor, _workers, _what, close = make_executor(args.jobs, args.cluster)
        try:
            return _run(args, plt, frames, executor)
        finally:
            close()
    return _run(args, plt, frames, None)


def _run(args, plt, frames, executor) -> int:
    from nfpjit.driver import default_sim_engine

    engine = default_sim_engine() if args.sim == "auto" else args.sim
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("stats", total=None)

            def step(done: int, total: int, label: str) -> None:
                bar.update(task, description=label, completed=done, total=total)

            doc = gather(args.objs, section=args.section, profile=args.profile, frames=frames, progress=step,
                         executor=executor, engine=engine)
    else:
        doc = gather(args.objs, section=args.section, profile=args.profile, frames=frames, executor=executor,
                     engine=engine)
    out = sys.stdout
    if args.json:
        json.dump(doc, out, indent=1)
        out.write("\n")
    elif args.csv:
        head, rows = csv_rows(doc)
        w = csv.writer(out, lineterminator="\n")
        w.writerow(head)
        w.writerows(rows)
    else:
        print_tables(doc, out)
    if args.plot:
        plot(doc, args.plot, plt)
    # a file that cannot be read is bad input (status 1); a program the profile refuses is a result
    return 1 if any(r.get("load_error") for r in doc["rejected"]) else 0

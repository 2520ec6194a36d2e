"""What the JIT makes of the corpus: code size, simulated cycles per packet, compile speed.

For every corpus program (tests/corpus/*.o sections and tests/corpus/asm/*.s) the
profile accepts, compiles it at the chosen level, then runs the crafted packets
through the simulator with maps persisting across packets.  Prints a table and
writes the numbers as JSON.  Programs the profile rejects, or the lowering refuses,
are listed with the reason.  No test asserts on these numbers.

    python tools/bench/corpus.py [-O 2] [--profile default] [--packets 50] [--json corpus_bench.json]
    python tools/bench/corpus.py --acceptance [--json corpus_acceptance.json]

``--acceptance`` prints, for every shipped profile, how many of the corpus programs the Linux
kernel loads (BPF_PROG_LOAD through nfpjit.kernel, where bpf() works; otherwise it says so and
counts every program) compile under that profile, with the refused ones and their codes.
JSON: {"kernel": "bpf()" | reason it is unavailable, "programs": int, "kernel_loads": [label],
"kernel_refuses": {label: last log line}, "profiles": {name: {"compiles": int, "of": int,
"rate": float, "refused": {label: [code] | reason}}}}

The totals give the geometric means of the NFP/eBPF ratio and of cycles per packet over the
programs (the figures issue 9 states its targets in), besides the sums.

JSON schema: {"machine": str, "python": str, "opt_level": int, "profile": str, "packets": int,
"results": [{"program": str, "ebpf_insns": int, "nfp_insns": int, "ratio": float,
"cycles_per_packet": float, "nfp_insns_per_packet": float, "faults": int, "compile_seconds": float,
"ebpf_insns_per_second": float, "phases": {phase: seconds}}], "skipped": [{"program": str, "reason": str}],
"total": {"ebpf_insns": int, "nfp_insns": int, "ratio": float, "ratio_geomean": float,
"cycles_per_packet_geomean": float, "compile_seconds": float, "ebpf_insns_per_second": float,
"phases": {phase: seconds}}}
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import nfpjit
from nfpjit.driver import compile, run_sim
from nfpjit.isa.sim import DEFAULT_MAP_CACHE_SIZE, MapCache
from nfpjit.ebpf.loader import list_programs
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.testing import crafted_packets

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"


def corpus_programs() -> list[tuple[str, object]]:
    """(label, Program) for every loadable XDP/TC corpus program."""
    out = []
    for obj in sorted(CORPUS.glob("*.o")):
        try:
            sections = list_programs(obj)
        except nfpjit.errors.NfpjitError:
            continue
        for section, _ in sections:
            try:
                out.append((f"{obj.stem}:{section}", nfpjit.load(obj, section=section)))
            except nfpjit.errors.NfpjitError:
                continue
    for path in sorted((CORPUS / "asm").glob("*.s")):
        try:
            out.append((f"asm/{path.stem}", nfpjit.load(path)))
        except nfpjit.errors.NfpjitError:
            continue
    return [(label, p) for label, p in out if p.prog_type in (ProgType.XDP, ProgType.SCHED_CLS)]


def bench_one(program, *, opt_level: int, profile: str, frames: list[bytes], repeat: int = 3) -> dict:
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = compile(program, opt_level=opt_level, profile=profile)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    image = result.image
    state = {k: v for k, v in MapStore.from_program(program).dump().items() if k in {m.name for m in image.maps}}
    cycles = insns = faults = 0
    cache = MapCache(DEFAULT_MAP_CACHE_SIZE)  # warm across packets, as on the NIC
    for frame in frames:
        res = run_sim(image, frame, maps_in=state, map_cache=cache)
        state = res.maps
        cycles += res.cycles or 0
        insns += res.insns
        faults += res.fault is not None
    st = result.stats
    return {"ebpf_insns": st.ebpf_insns, "nfp_insns": st.nfp_insns, "ratio": round(st.ratio, 3),
            "cycles_per_packet": round(cycles / len(frames), 1), "nfp_insns_per_packet": round(insns / len(frames), 1),
            "faults": faults, "compile_seconds": round(best, 6),
            "ebpf_insns_per_second": round(st.ebpf_insns / best, 1) if best else 0.0,
            "phases": {name: round(t, 6) for name, t in st.phases}}


def geomean(values) -> float:
    """Geometric mean of the positive values (0.0 when there are none)."""
    vals = [v for v in values if v > 0]
    return round(math.exp(sum(math.log(v) for v in vals) / len(vals)), 3) if vals else 0.0


def kernel_verdicts(programs) -> tuple[str, list[str], dict[str, str]]:
    """Which programs the kernel loads: (how it was decided, loaded labels, refused label -> reason)."""
    from nfpjit.kernel import KernelProgram, KernelRejected, kernel_available

    ok, why = kernel_available()
    if not ok:
        return f"unavailable ({why}): every program counted", [label for label, _ in programs], {}
    loads, refuses = [], {}
    for label, program in programs:
        try:
            with KernelProgram(program):
                pass
            loads.append(label)
        except KernelRejected as exc:
            refuses[label] = (exc.log.strip().splitlines() or [str(exc)])[-1]
        except nfpjit.errors.NfpjitError as exc:  # maps the kernel here cannot create, ...
            refuses[label] = str(exc).splitlines()[0]
    return "bpf()", loads, refuses


def acceptance(args) -> int:
    from nfpjit.driver import CompileError
    from nfpjit.offload import builtin_profiles

    programs = corpus_programs()
    how, loads, refuses = kernel_verdicts(programs)
    loaded = [(label, p) for label, p in programs if label in set(loads)]
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(f"corpus: {len(programs)} XDP/TC programs; the kernel ({how}) loads {len(loaded)}", markup=False)
    for label, reason in refuses.items():
        console.print(f"  kernel refuses {label}: {reason}", style="dim", markup=False, no_wrap=True,
                      overflow="ellipsis")
    table = Table(title="of the programs the kernel loads, how many compile under each profile")
    for col in ("profile", "compile", "of", "rate", "refused (codes)"):
        table.add_column(col, justify="left" if col in ("profile", "refused (codes)") else "right")
    doc = {"kernel": how, "programs": len(programs), "kernel_loads": loads, "kernel_refuses": refuses,
           "profiles": {}}
    for name in builtin_profiles():
        refused = {}
        for label, program in loaded:
            try:
                compile(program, opt_level=args.opt_level, profile=name)
            except CompileError as exc:
                report = exc.report
                refused[label] = sorted(d for d in report.codes) if report is not None else str(exc).splitlines()[0]
            except nfpjit.errors.NfpjitError as exc:
                refused[label] = str(exc).splitlines()[0]
        n = len(loaded) - len(refused)
        rate = round(n / len(loaded), 3) if loaded else 0.0
        doc["profiles"][name] = {"compiles": n, "of": len(loaded), "rate": rate, "refused": refused}
        table.add_row(name, str(n), str(len(loaded)), f"{100 * rate:.0f}%",
                      "; ".join(f"{k} ({','.join(v) if isinstance(v, list) else v})" for k, v in refused.items()))
    console.print(table)
    Path(args.json or "corpus_acceptance.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acceptance", action="store_true",
                    help="per profile: how many corpus programs the kernel loads compile (see the module doc)")
    ap.add_argument("-O", dest="opt_level", type=int, choices=(0, 1, 2), default=2)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--packets", type=int, default=50, help="crafted packets per program (at least 50 exist)")
    ap.add_argument("--json", metavar="FILE", default=None,
                    help="where to write the numbers (corpus_bench.json; with --acceptance corpus_acceptance.json)")
    args = ap.parse_args(argv)
    if args.acceptance:
        return acceptance(args)
    args.json = args.json or "corpus_bench.json"
    frames = crafted_packets()[:max(1, args.packets)]
    results, skipped = [], []
    for label, program in corpus_programs():
        try:
            row = bench_one(program, opt_level=args.opt_level, profile=args.profile, frames=frames)
        except nfpjit.errors.NfpjitError as exc:
            skipped.append({"program": label, "reason": str(exc)})
            continue
        results.append({"program": label, **row})
    e = sum(r["ebpf_insns"] for r in results)
    n = sum(r["nfp_insns"] for r in results)
    secs = sum(r["compile_seconds"] for r in results)
    total = {"ebpf_insns": e, "nfp_insns": n, "ratio": round(n / e, 3) if e else 0.0,
             "ratio_geomean": geomean(r["ratio"] for r in results),
             "cycles_per_packet_geomean": geomean(r["cycles_per_packet"] for r in results),
             "compile_seconds": round(secs, 4), "ebpf_insns_per_second": round(e / secs, 1) if secs else 0.0}
    table = Table(title=f"nfpjit corpus at -O{args.opt_level}, profile {args.profile}, {len(frames)} packets each")
    for col in ("program", "eBPF", "NFP", "NFP/eBPF", "cycles/pkt", "NFP insns/pkt", "faults", "compile ms"):
        table.add_column(col, justify="left" if col == "program" else "right")
    for r in results:
        table.add_row(r["program"], str(r["ebpf_insns"]), str(r["nfp_insns"]), f"{r['ratio']:.2f}",
                      f"{r['cycles_per_packet']:.0f}", f"{r['nfp_insns_per_packet']:.0f}", str(r["faults"]),
                      f"{1000 * r['compile_seconds']:.1f}")
    table.add_row("total (sums)", str(e), str(n), f"{total['ratio']:.2f}", "", "", "", f"{1000 * secs:.1f}")
    if results:
        table.add_row("geometric mean", "", "", f"{total['ratio_geomean']:.2f}",
                      f"{total['cycles_per_packet_geomean']:.0f}", "", "", "")
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    phases: dict[str, float] = {}
    for r in results:
        for name, t in r["phases"].items():
            phases[name] = phases.get(name, 0.0) + t
    total["phases"] = {k: round(v, 4) for k, v in phases.items()}
    console.print(f"compile throughput: {total['ebpf_insns_per_second']:.0f} eBPF insns/s; time by phase: "
                  + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in phases.items()), markup=False)
    console.print(f"{len(skipped)} program(s) not compiled:", markup=False)
    for s in skipped:
        console.print(f"  {s['program']}: {s['reason']}", style="dim", markup=False, no_wrap=True,
                      overflow="ellipsis")
    doc = {"machine": platform.machine(), "python": sys.version.split()[0], "opt_level": args.opt_level,
           "profile": args.profile, "packets": len(frames), "results": results, "skipped": skipped, "total": total}
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

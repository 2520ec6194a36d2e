"""How long a whole ``nfpjit compile`` process takes, and where the time goes.

Runs ``nfpjit compile OBJ -o TMP`` as a fresh process ``--runs`` times and reports the median
(and fastest) wall-clock time, first with Python's bytecode cache (the normal case: a private
cache folder, warmed by one run) and, with ``--no-bytecode`` too, without one (every module
compiled from source on each start, as under ``PYTHONDONTWRITEBYTECODE=1``).  Then, in one more
fresh process, the time of each step (interpreter start, imports and parser, load, profile,
compile phases, writing the image) and which heavy optional packages got imported (none of rich,
elftools, capstone, llvmlite, hypothesis should be).  No test asserts on these timings.

    python tools/bench/compile_speed.py [OBJ] [--runs 15] [--no-bytecode] [--json compile_speed.json]

JSON schema: {"machine": str, "python": str, "object": str, "runs": int,
"cached": {"median": float, "min": float, "cpu_median": float}, "no_bytecode": {same} | null,
"bare_python": {"median": float}, "steps_ms": {step: float}, "phases_ms": {phase: float},
"heavy_imports": [str]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OBJ = ROOT / "examples" / "xdp_drop_tcp_ports.o"
HEAVY = ("rich", "elftools", "capstone", "llvmlite", "hypothesis", "matplotlib")

# One compile in a fresh interpreter, timing each step the way the CLI does it.
_STEPS = r"""
import json, sys, time
t0 = time.perf_counter()
from nfpjit.cli import build_parser
argv = ["compile", sys.argv[1], "-o", sys.argv[2]]
args = build_parser(argv).parse_args(argv)
t1 = time.perf_counter()
import nfpjit
program = nfpjit.load(args.obj)
t2 = time.perf_counter()
from nfpjit.offload import load_profile
profile = load_profile(args.profile)
t3 = time.perf_counter()
from nfpjit.driver import compile
t4 = time.perf_counter()
result = compile(program, profile=profile, opt_level=args.opt_level)
t5 = time.perf_counter()
from nfpjit.isa.image import write_image
write_image(args.output, result.image)
t6 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps({"steps_ms": {"cli imports and parser": 1000 * (t1 - t0), "load": 1000 * (t2 - t1),
                               "profile (and the offload/analysis imports)": 1000 * (t3 - t2),
                               "driver import": 1000 * (t4 - t3), "compile": 1000 * (t5 - t4),
                               "write image": 1000 * (t6 - t5)},
                  "phases_ms": {n: 1000 * s for n, s in result.stats.phases}, "heavy_imports": heavy}))
"""


def nfpjit_command() -> list[str]:
    """The installed console script next to this interpreter, else the same entry point through -c."""
    script = Path(sys.executable).with_name("nfpjit")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from nfpjit.cli import entry; entry()"]


def timed(cmd: list[str], env: dict, runs: int, cpu: list | None = None) -> list[float]:
    """Wall-clock seconds of each run; ``cpu`` collects user+system seconds (steadier on a busy machine)."""
    out = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obj", nargs="?", default=str(DEFAULT_OBJ))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-bytecode", action="store_true", help="also time starts without a bytecode cache")
    ap.add_argument("--json", metavar="FILE", default="compile_speed.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.nffw")
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        cmd = [*nfpjit_command(), "compile", args.obj, "-o", out]
        timed(cmd, env, 1)  # fills the cache
        cached_cpu: list[float] = []
        cached = timed(cmd, env, args.runs, cached_cpu)
        bare = timed([sys.executable, "-c", "pass"], env, args.runs)
        cold = None
        if args.no_bytecode:
            cold_env = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
            cold_env["PYTHONDONTWRITEBYTECODE"] = "1"
            cold_env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "empty-pycache")  # never written
            cold_cpu: list[float] = []
            cold = timed(cmd, cold_env, args.runs, cold_cpu)
        steps = json.loads(subprocess.run([sys.executable, "-c", _STEPS, args.obj, out, ",".join(HEAVY)], env=env,
                                          check=True, capture_output=True, text=True).stdout)
    doc = {"machine": platform.machine(), "python": sys.version.split()[0], "object": args.obj, "runs": args.runs,
           "cached": {"median": round(statistics.median(cached), 4), "min": round(min(cached), 4),
                      "cpu_median": round(statistics.median(cached_cpu), 4)},
           "no_bytecode": {"median": round(statistics.median(cold), 4), "min": round(min(cold), 4),
                           "cpu_median": round(statistics.median(cold_cpu), 4)} if cold else None,
           "bare_python": {"median": round(statistics.median(bare), 4)},
           "steps_ms": {k: round(v, 2) for k, v in steps["steps_ms"].items()},
           "phases_ms": {k: round(v, 2) for k, v in steps["phases_ms"].items()},
           "heavy_imports": steps["heavy_imports"]}
    print(f"nfpjit compile {args.obj}: median {doc['cached']['median'] * 1000:.0f} ms, fastest "
          f"{doc['cached']['min'] * 1000:.0f} ms, CPU {doc['cached']['cpu_median'] * 1000:.0f} ms, over "
          f"{args.runs} runs (bytecode cached; bare python "
          f"{doc['bare_python']['median'] * 1000:.0f} ms)")
    if cold:
        print(f"  without a bytecode cache: median {doc['no_bytecode']['median'] * 1000:.0f} ms, fastest "
              f"{doc['no_bytecode']['min'] * 1000:.0f} ms, CPU {doc['no_bytecode']['cpu_median'] * 1000:.0f} ms")
    print("  steps of one run: " + ", ".join(f"{k} {v:.1f} ms" for k, v in doc["steps_ms"].items()))
    print("  compile phases: " + ", ".join(f"{k} {v:.1f} ms" for k, v in doc["phases_ms"].items()))
    print("  heavy optional packages imported: " + (", ".join(doc["heavy_imports"]) or "none"))
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

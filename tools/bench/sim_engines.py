"""Packets per second of the interpreting and the compiled NFP-32 simulator, and compile-to-native time.

For every corpus program the permissive profile compiles (tests/corpus/*.o) and for
examples/xdp_drop_tcp_ports.o, on the crafted packets (nfpjit.testing.crafted_packets, repeated)
with maps persisting and a cold map cache per packet (what ``simulate`` does):

* ``interp``: ``nfpjit.isa.sim.simulate`` per packet (the reference); ``run_sim``: the same through
  ``nfpjit.driver.run_sim`` (what ``nfpjit run --engine sim`` does today, maps as ``RunResult.maps``);
* ``compiled native``: ``Session.run_columns`` -- the whole packet loop in native code, raw result
  records, no Python per packet (what a NIC daemon or a pcap run needs);
* ``compiled results``: ``run_batch`` -- the same loop, plus one ``SimResult`` (and a map dump after
  each packet that changed the maps) built in Python per packet;
* ``compiled simulate``: ``compiled.simulate`` per packet (a fresh native session each call);
* ``compile``: translation to LLVM IR + LLVM optimisation and code generation, per image (first time).

No test asserts on these timings.

    python tools/bench/sim_engines.py [--seconds 1.0] [-O 2] [--packets 200000] [--only NAME] [--json out.json]

JSON schema: {"machine": str, "python": str, "opt_level": int, "results": [{"program": str,
"nfp_insns": int, "cycles_per_packet": float, "compile_seconds": float, "translate_seconds": float,
"interp_pps": float, "run_sim_pps": float, "native_pps": float, "results_pps": float, "simulate_pps": float,
"speedup_native": float, "speedup_results": float}]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import nfpjit
from nfpjit.ebpf.loader import list_programs
from nfpjit.errors import NfpjitError
from nfpjit.isa.sim import compiled, simulate
from nfpjit.isa.sim.compiled import engine
from nfpjit.testing import crafted_packets

ROOT = Path(__file__).resolve().parents[2]


def _programs(opt_level: int, only: str | None):
    objs = [ROOT / "examples" / "xdp_drop_tcp_ports.o"] + sorted((ROOT / "tests" / "corpus").glob("*.o"))
    for obj in objs:
        try:
            sections = list_programs(obj)
        except NfpjitError:
            continue
        for section, _ in sections:
            label = f"{obj.stem}:{section}" if len(sections) > 1 else obj.stem
            if obj.parent.name == "examples":
                label = f"examples/{label}"
            if only and only not in label:
                continue
            try:
                image = nfpjit.compile(obj, section=section, profile="permissive", opt_level=opt_level).image
            except NfpjitError:
                continue
            yield label, image


def _rate(fn, seconds: float) -> float:
    """Calls of ``fn`` (which returns how many packets it ran) per second, for about ``seconds``."""
    n, start = 0, time.perf_counter()
    while True:
        n += fn()
        dt = time.perf_counter() - start
        if dt >= seconds:
            return n / dt


def measure(label: str, image, seconds: float, npackets: int) -> dict:
    frames = crafted_packets()
    # compile to native (first time for this image in this process)
    engine._CACHE.pop(engine.image_key(engine._prepare(image, 0, 0, None)), None)   # measure a first compile
    c = compiled.compile_image(engine._prepare(image, 0, 0, None))

    state = {"maps": None, "k": 0}

    def interp_one():
        r = simulate(image, frames[state["k"] % len(frames)], maps_in=state["maps"])
        state["maps"], state["k"] = r.maps, state["k"] + 1
        return 1

    interp_pps = _rate(interp_one, seconds)
    from nfpjit.driver import run_sim

    dstate = {"maps": None, "k": 0}

    def driver_one():
        r = run_sim(image, frames[dstate["k"] % len(frames)], dstate["maps"])
        dstate["maps"], dstate["k"] = r.maps, dstate["k"] + 1
        return 1

    driver_pps = _rate(driver_one, seconds)

    s = compiled.session(image)
    stream = (frames * (npackets // len(frames) + 1))[:npackets]
    packed = engine.pack(stream)
    import ctypes

    from nfpjit.isa.sim.compiled import runtime

    recs = (ctypes.c_int64 * (runtime.R_SIZE * npackets))()
    out = ctypes.create_string_buffer(len(packed[0]) + 8192 * 4)

    def native():
        done, *_ = s.run_columns(*packed, records=recs, out=out)
        return done

    native_pps = _rate(native, seconds)
    chunk = frames * 20

    def results():
        return len(compiled.run_batch(image, chunk))

    results_pps = _rate(results, seconds)
    cstate = {"maps": None, "k": 0}

    def simulate_one():
        r = compiled.simulate(image, frames[cstate["k"] % len(frames)], maps_in=cstate["maps"])
        cstate["maps"], cstate["k"] = r.maps, cstate["k"] + 1
        return 1

    simulate_pps = _rate(simulate_one, seconds)
    cycles = sum(r.cycles for r in compiled.run_batch(image, frames)) / len(frames)
    return {"program": label, "nfp_insns": len(image.code), "cycles_per_packet": round(cycles, 1),
            "compile_seconds": round(c.seconds, 3), "translate_seconds": round(c.translate_seconds, 3),
            "interp_pps": round(interp_pps), "run_sim_pps": round(driver_pps), "native_pps": round(native_pps), "results_pps": round(results_pps),
            "simulate_pps": round(simulate_pps), "speedup_native": round(native_pps / interp_pps, 1),
            "speedup_results": round(results_pps / interp_pps, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1)")
    ap.add_argument("-O", dest="opt_level", type=int, default=2, help="compiler optimisation level (default 2)")
    ap.add_argument("--packets", type=int, default=200_000, help="packets per native batch (default 200000)")
    ap.add_argument("--only", help="only programs whose label contains this")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if not compiled.available():
        print("llvmlite's JIT does not work here", file=sys.stderr)
        return 1
    rows = [measure(label, image, args.seconds, args.packets) for label, image in _programs(args.opt_level, args.only)]
    table = Table(title=f"simulator engines, -O{args.opt_level} (packets/s; load {os.getloadavg()[0]:.1f})")
    for col in ("program", "NFP insns", "cycles/pkt", "compile s", "interp", "run_sim", "native", "x", "SimResults",
                "x", "simulate()"):
        table.add_column(col, justify="left" if col == "program" else "right")
    for r in rows:
        table.add_row(r["program"], str(r["nfp_insns"]), f"{r['cycles_per_packet']:.0f}", f"{r['compile_seconds']:.2f}",
                      f"{r['interp_pps']:,}", f"{r['run_sim_pps']:,}", f"{r['native_pps']:,}", f"{r['speedup_native']:.0f}",
                      f"{r['results_pps']:,}", f"{r['speedup_results']:.1f}", f"{r['simulate_pps']:,}")
    Console(width=max(160, Console().width)).print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "python": sys.version.split()[0],
                                         "opt_level": args.opt_level, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Packets per second of the interpreting simulator and of the compiled engine, per corpus program.

For examples/xdp_drop_tcp_ports.o and every tests/corpus program the permissive profile compiles
(-O2), on the crafted packets (``nfpjit.testing.crafted_packets``, repeated) with the maps
persisting from packet to packet:

* ``interp``: ``nfpjit.isa.sim.simulate`` per packet, maps_in = the previous result's maps (the reference);
* ``results``: the compiled engine's per-result path, ``Session.run_many`` on one session: a
  ``SimResult`` per packet (what ``run_batch``, ``nfpjit stats`` and the tests use), each result's
  ``action``, ``cycles`` and ``packet`` read;
* ``native``: ``Session.run_columns``, the native batch loop with raw result records (what
  ``nfpjit run --pcap`` and the NIC daemon use).

Rates are packets per CPU second of this process (``time.process_time``), so that other work
on a shared machine does not count; ``--wall`` uses wall time instead.  The issue's targets are
printed with each row: at least 20x the interpreter in both compiled paths on every program,
and at least 1,000,000 packets/s for xdp_drop_tcp_ports.  No test asserts on these timings.

    python tools/bench/sim_speed.py [--seconds 1.0] [--only NAME] [--packets 4096] [--wall] [--json F]

JSON schema: {"machine": str, "python": str, "clock": "cpu"|"wall", "results": [{"program": str,
"nfp_insns": int, "cycles_per_packet": float, "interp_pps": float, "results_pps": float,
"native_pps": float, "speedup_results": float, "speedup_native": float}]}
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_engines import _programs  # noqa: E402  (the program list: one place)

from nfpjit.isa.sim import compiled, simulate  # noqa: E402
from nfpjit.isa.sim.compiled import engine, runtime  # noqa: E402
from nfpjit.testing import crafted_packets  # noqa: E402

TARGET_SPEEDUP = 20
TARGET_PPS = {"xdp_drop_tcp_ports": 1_000_000}


def _rate(fn, seconds: float, clock) -> float:
    """Packets per second of ``fn`` (which returns how many packets it ran), run for about ``seconds``."""
    n, start = 0, clock()
    while True:
        n += fn()
        dt = clock() - start
        if dt >= seconds:
            return n / dt


def measure(label: str, image, seconds: float, npackets: int, clock) -> dict:
    frames = crafted_packets()
    stream = (frames * (npackets // len(frames) + 1))[:npackets]
    state = {"maps": None, "k": 0}

    def interp_one():
        r = simulate(image, frames[state["k"] % len(frames)], maps_in=state["maps"])
        state["maps"], state["k"] = r.maps, state["k"] + 1
        return 1

    interp_pps = _rate(interp_one, seconds, clock)
    s = compiled.session(image)

    def results():
        rs = s.run_many(stream)
        for r in rs:
            r.action, r.cycles, r.packet   # noqa: B018 - what a caller reads
        return len(rs)

    results_pps = _rate(results, seconds, clock)
    n = len(stream)
    packed = engine.pack(stream)
    recs = (ctypes.c_int64 * (runtime.R_SIZE * n))()
    out = ctypes.create_string_buffer(len(packed[0]) + 8192 * 4)
    native_s = compiled.session(image)

    def native():
        done, *_ = native_s.run_columns(*packed, records=recs, out=out)
        return done

    native_pps = _rate(native, seconds, clock)
    cycles = sum(r.cycles for r in compiled.run_batch(image, frames)) / len(frames)
    return {"program": label, "nfp_insns": len(image.code), "cycles_per_packet": round(cycles, 1),
            "interp_pps": round(interp_pps), "results_pps": round(results_pps), "native_pps": round(native_pps),
            "speedup_results": round(results_pps / interp_pps, 1), "speedup_native": round(native_pps / interp_pps, 1)}


def _verdict(row: dict) -> str:
    short = row["program"].split("/")[-1]
    misses = [what for what, x in (("results", row["speedup_results"]), ("native", row["speedup_native"]))
              if x < TARGET_SPEEDUP]
    want = TARGET_PPS.get(short)
    if want and row["native_pps"] < want:
        misses.append(f"native < {want:,}/s")
    return "ok" if not misses else "below: " + ", ".join(misses)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    ap.add_argument("--packets", type=int, default=4096, help="packets per compiled batch (default 4096)")
    ap.add_argument("--only", help="only programs whose label contains this")
    ap.add_argument("--wall", action="store_true", help="wall time instead of this process's CPU time")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if not compiled.available():
        print("llvmlite's JIT does not work here", file=sys.stderr)
        return 1
    clock = time.perf_counter if args.wall else time.process_time
    rows = [measure(label, image, args.seconds, args.packets, clock) for label, image in _programs(2, args.only)]
    table = Table(title=f"simulators, -O2, packets per {'wall' if args.wall else 'CPU'} second "
                        f"(load {os.getloadavg()[0]:.1f})")
    for col in ("program", "NFP insns", "cycles/pkt", "interp", "results", "x", "native", "x", "targets"):
        table.add_column(col, justify="left" if col in ("program", "targets") else "right")
    for r in rows:
        table.add_row(r["program"], str(r["nfp_insns"]), f"{r['cycles_per_packet']:.0f}", f"{r['interp_pps']:,}",
                      f"{r['results_pps']:,}", f"{r['speedup_results']:.0f}", f"{r['native_pps']:,}",
                      f"{r['speedup_native']:.0f}", _verdict(r))
    Console(width=max(150, Console().width)).print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "python": sys.version.split()[0],
                                         "clock": "wall" if args.wall else "cpu", "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

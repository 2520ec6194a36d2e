"""Simulated NFP-32 instructions per second on this machine.

Runs the hand-written programs of tests/nfp_asm/ (and a long counting loop that
measures the bare dispatch loop) through the simulator, prints a table and
writes the numbers as JSON.  No test asserts on these timings.

    python tools/bench/sim_speed.py [--seconds 1.0] [--json sim_speed.json] [--trace]

JSON schema: {"machine": str, "python": str, "trace": bool, "results": [{"program": str,
"runs": int, "insns_per_run": int, "cycles_per_run": int, "seconds": float,
"insns_per_second": float, "runs_per_second": float}]}
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nfpjit.isa.asm import assemble
from nfpjit.isa.image import image_from_asm
from nfpjit.isa.sim import simulate

ROOT = Path(__file__).resolve().parents[2]
ASM = ROOT / "tests" / "nfp_asm"

LOOP = """
; count b1 down from 100000: the dispatch loop with no memory traffic
    immed b1, 0x86a0
    immed b1, 0x1, byte=2, width=hi
loop:
    sub b1, b1, 1
    br.ne loop, defer=1
    add a2, a2, 1
    halt 2
"""


def _packet() -> bytes:
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, bytes([10, 1, 2, 3]), bytes([10, 0, 0, 1]))
    return eth + ip + bytes(64)


def _programs():
    for path in sorted(ASM.glob("*.s")):
        yield path.stem, image_from_asm(assemble(path.read_text(), str(path)))
    yield "count_loop_100k", image_from_asm(assemble(LOOP, "<loop>"))


def measure(seconds: float, trace: bool) -> list[dict]:
    pkt = _packet()
    maps = {"verdicts": {bytes([10, 1, 2, 3]): struct.pack("<II", 1, 0)}}
    rows = []
    for name, image in _programs():
        maps_in = {k: v for k, v in maps.items() if any(m.name == k for m in image.maps)}
        first = simulate(image, pkt, maps_in=maps_in, trace=trace)
        if first.fault is not None:
            raise SystemExit(f"{name}: {first.fault}")
        runs, start = 0, time.perf_counter()
        while True:
            simulate(image, pkt, maps_in=maps_in, trace=trace)
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        rows.append({"program": name, "runs": runs, "insns_per_run": first.insns, "cycles_per_run": first.cycles,
                     "seconds": elapsed, "insns_per_second": runs * first.insns / elapsed,
                     "runs_per_second": runs / elapsed})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per program (default 1.0)")
    ap.add_argument("--json", type=Path, default=Path("sim_speed.json"), help="where to write the JSON report")
    ap.add_argument("--trace", action="store_true", help="measure with trace mode on")
    args = ap.parse_args(argv)
    rows = measure(args.seconds, args.trace)
    table = Table(title=f"NFP-32 simulator speed{' (trace on)' if args.trace else ''}")
    for col in ("program", "NFP insns/run", "cycles/run", "runs/s", "NFP insns/s"):
        table.add_column(col, justify="left" if col == "program" else "right")
    for r in rows:
        table.add_row(r["program"], str(r["insns_per_run"]), str(r["cycles_per_run"]),
                      f"{r['runs_per_second']:,.0f}", f"{r['insns_per_second']:,.0f}")
    Console().print(table)
    report = {"machine": platform.machine() + " " + platform.processor(), "python": sys.version.split()[0],
              "trace": args.trace, "results": rows}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Frames per second through a virtual NIC (needs root and /dev/net/tun).

Brings up a NIC of its own, loads and attaches ``examples/xdp_drop_tcp_ports.o``, then sends a
bounded burst of frames from the wire namespace with a raw AF_PACKET socket (paced so the NIC's
receive queue never overflows) and measures how fast the daemon works through them: each frame
is read from the wire port, run in the simulator with the NIC's map tables, and dropped (TCP SYN
to port 80: lookup + update of the drop counter, the program's longest path) or passed to the
host (UDP: the short path).  The same burst with no program attached gives the daemon's bare
forwarding rate.  Frames per second = frames / (time from the first frame sent to the NIC's
counter reaching the burst), so the figure includes sending and the control-message polling.
The NIC is always brought down at the end.  No test asserts on these timings.

    python tools/bench/nic_speed.py [--frames 3000] [--json nic_speed.json]

JSON schema: {"machine": str, "cpu": str, "cores": int, "python": str, "kernel": str,
"results": [{"case": str, "frames": int, "seconds": float, "fps": float, "drops": int,
"passes": int, "cycles_mean": float}]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DROP = ROOT / "examples" / "xdp_drop_tcp_ports.o"

SENDER = r"""
import socket, struct, sys, time
from pyroute2 import netns
ns, ifname, dst_mac, src_ip, dst_ip, n, kind = sys.argv[1:8]
n = int(n)
netns.setns(ns)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind((ifname, 0))
src_mac = tx.getsockname()[4]
src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
frames = []
for i in range(n):
    if kind == "syn80":
        proto, l4 = 6, struct.pack("!HHIIBBHHH", 40000 + i % 1000, 80, i, 0, 0x50, 0x02, 1024, 0, 0)
    else:
        proto, l4 = 17, struct.pack("!HHHH", 40000 + i % 1000, 9, 8 + 18, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64, proto, 0, src, dst)
    c = sum(struct.unpack("!10H", ip)); c = (c >> 16) + (c & 0xFFFF); c += c >> 16
    frames.append(bytes.fromhex(dst_mac) + src_mac + b"\x08\x00" + ip[:10] + struct.pack("!H", ~c & 0xFFFF) + ip[12:] + l4)
print(time.time(), flush=True)
for i, f in enumerate(frames):
    tx.send(f)
    if i % 500 == 499:
        time.sleep(0.02)
"""


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count() or 0,
            "python": sys.version.split()[0], "kernel": platform.release()}


def run_case(dev, name: str, host: str, wire: str, frames: int, kind: str) -> dict:
    before = dev.show()["counters"]
    mac = Path(f"/sys/class/net/{name}/address").read_text().strip().replace(":", "")
    proc = subprocess.Popen([sys.executable, "-c", SENDER, f"{name}-wire", f"{name}-w", mac, wire, host,
                             str(frames), kind], stdout=subprocess.PIPE, text=True)
    start = float(proc.stdout.readline())
    want = before["wire_rx_packets"] + frames
    deadline = time.time() + 120
    while time.time() < deadline:
        c = dev.show()["counters"]
        if c["wire_rx_packets"] >= want:
            break
        time.sleep(0.01)
    end = time.time()
    proc.wait(timeout=30)
    c = dev.show()["counters"]
    got = c["wire_rx_packets"] - before["wire_rx_packets"]
    runs = c["runs"] - before["runs"]
    cycles = (c["cycles"] - before["cycles"]) / runs if runs else 0.0
    seconds = end - start
    return {"frames": got, "seconds": round(seconds, 3), "fps": round(got / seconds, 1) if seconds > 0 else 0.0,
            "drops": c["actions"]["drop"] - before["actions"]["drop"],
            "passes": c["actions"]["pass"] - before["actions"]["pass"] + c["no_program"] - before["no_program"],
            "cycles_mean": round(cycles, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames per burst (default 3000)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args()

    from nfpjit.nic.errors import OffloadError
    from nfpjit.offload import Device
    from nfpjit.offload.device import nic_down, nic_up

    name = f"nfpb{os.getpid() % 10000}"
    host, wire = "10.16.77.1", "10.16.77.2"
    results = []
    try:
        nic_up(name, host_addr=f"{host}/24", wire_addr=f"{wire}/24")
        with Device(name) as dev:
            results.append({"case": "no program (bare forwarding)", **run_case(dev, name, host, wire, args.frames,
                                                                              "udp")})
            prog = dev.load(DROP)
            dev.attach(prog)
            results.append({"case": "xdp_drop_tcp_ports, TCP SYN to 80 (drop, map update)",
                             **run_case(dev, name, host, wire, args.frames, "syn80")})
            results.append({"case": "xdp_drop_tcp_ports, UDP (pass to host)",
                            **run_case(dev, name, host, wire, args.frames, "udp")})
    except OffloadError as exc:
        print(f"nic_speed: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            nic_down(name)
        except OffloadError:
            pass
    report = {**machine(), "results": results}
    print(f"{report['cpu']} ({report['cores']} cores), Python {report['python']}, Linux {report['kernel']}")
    for r in results:
        print(f"  {r['case']:<52} {r['fps']:>9.1f} frames/s  ({r['frames']} frames in {r['seconds']:.3f} s, "
              f"drop {r['drops']}, pass {r['passes']}, {r['cycles_mean']:.0f} sim cycles/frame)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

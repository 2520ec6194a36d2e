"""The classic first XDP program end to end on real sockets, through a virtual NIC.

``examples/xdp_drop_tcp_ports.o`` is loaded and attached (through the CLI) onto a NIC; from the
wire namespace, TCP connections to the host on ports 80 and 8080 fail (their SYNs are dropped on
the NIC) while a listener on another port accepts and exchanges data and ICMP echo passes.  Then
``nfpjit map dump`` shows per-port drop counts equal to the SYNs that left the wire namespace for
that port, counted independently by a packet capture on the wire (retransmissions included), and
equal to the NIC's own XDP_DROP counter.  Finally several host processes update map counters
while a bounded burst of SYN frames flows: no update from either side is lost.

Needs root and /dev/net/tun (skipped with the reason otherwise).  Bounded traffic only, short
timeouts, nothing leaves the machine (the addresses live on the devices made here).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for virtual NICs")

from nfpjit.nic import registry  # noqa: E402

_PROBLEM = registry.support_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=f"virtual NICs unavailable: {_PROBLEM}")

from nfpjit.nic.errors import OffloadError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DROP = ROOT / "examples" / "xdp_drop_tcp_ports.o"
NAME = f"nfpt{os.getpid() % 1000}t"
NET = 100 + os.getpid() % 100
HOST, WIRE = f"10.14.{NET}.1", f"10.14.{NET}.2"
LISTEN_PORT = 2222
PIN = f"drop-{os.getpid()}"   # pins are machine-wide, as bpffs pins are

# Runs inside the wire namespace: capture what leaves NAME-w, try the connections, ping, report.
WIRE_SIDE = r"""
import json, os, select, socket, struct, sys, time
from pyroute2 import netns
ns, ifname, host, listen_port, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
netns.setns(ns)
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)   # SO_RCVBUFFORCE: the capture must not overflow
cap.bind((ifname, 3))
cap.setblocking(False)
out = {}

def tcp_try(port, timeout):
    s = socket.socket()
    s.settimeout(timeout)
    t = time.monotonic()
    try:
        s.connect((host, port))
        s.sendall(b"hello nic " * 50)
        data = b""
        while len(data) < 500:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return {"result": "connected", "echo": data.decode(errors="replace")}
    except socket.timeout:
        return {"result": "timeout", "seconds": round(time.monotonic() - t, 3)}
    except OSError as exc:
        return {"result": type(exc).__name__}
    finally:
        s.close()

def ping(timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"nfpjit-ping"
    c = sum(struct.unpack("!%dH" % (len(body) // 2), body[: len(body) // 2 * 2])) + (body[-1] << 8 if len(body) % 2 else 0)
    c = (c >> 16) + (c & 0xFFFF); c += c >> 16
    body = body[:2] + struct.pack("!H", ~c & 0xFFFF) + body[4:]
    s.sendto(body, (host, 0))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 15) * 4
            t, _, _, rid, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if t == 0 and rid == ident and addr[0] == host:
                return True
    except socket.timeout:
        return False
    return False

def drain():
    syns, frames = {}, 0
    while True:
        r, _, _ = select.select([cap], [], [], 0.2)
        if not r:
            return syns, frames
        data, addr = cap.recvfrom(65535)
        if addr[2] != 4:              # PACKET_OUTGOING: what NAME-w sent to the NIC
            continue
        frames += 1
        if len(data) >= 34 and data[12:14] == b"\x08\x00" and data[23] == 6:
            ihl = (data[14] & 15) * 4
            tcp = data[14 + ihl:]
            if len(tcp) >= 14 and tcp[13] & 0x02 and not tcp[13] & 0x10:   # SYN without ACK
                port = struct.unpack("!H", tcp[2:4])[0]
                syns[str(port)] = syns.get(str(port), 0) + 1

if mode == "classic":
    out["tcp"] = {str(p): tcp_try(p, 1.0 if p != listen_port else 3.0) for p in (80, 8080, listen_port)}
    out["ping"] = ping()
elif mode.startswith("burst"):
    n = int(mode.split(":")[1])
    dst_mac, port = bytes.fromhex(sys.argv[6]), int(sys.argv[7])
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((ifname, 0))
    src_mac = tx.getsockname()[4]       # NAME-w's MAC (sysfs still shows the root namespace)
    src = socket.inet_aton(sys.argv[8]); dst = socket.inet_aton(host)
    sent = 0
    for i in range(n):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, dst)
        c = sum(struct.unpack("!10H", ip)); c = (c >> 16) + (c & 0xFFFF); c += c >> 16
        ip = ip[:10] + struct.pack("!H", ~c & 0xFFFF) + ip[12:]
        tcp = struct.pack("!HHIIBBHHH", 40000 + (i % 1000), port, i, 0, 0x50, 0x02, 1024, 0, 0)
        tx.send(dst_mac + src_mac + b"\x08\x00" + ip + tcp)
        sent += 1
        if i % 200 == 199:
            time.sleep(0.01)          # pace: the NIC's receive queue is bounded
    out["sent"] = sent
elif mode == "tx":
    dst_mac = bytes.fromhex(sys.argv[6])
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((ifname, 0))
    src_mac = tx.getsockname()[4]
    payload = b"nfpjit XDP_TX probe " + os.urandom(8)
    tx.send(dst_mac + src_mac + b"\x88\xb5" + payload)
    deadline, out["bounced"] = time.monotonic() + 1.0, False
    while time.monotonic() < deadline and not out["bounced"]:
        r, _, _ = select.select([cap], [], [], 0.1)
        if r:
            data, addr = cap.recvfrom(65535)
            if addr[2] != 4 and data[14:14 + len(payload)] == payload:
                out["bounced"] = data[:6] == src_mac and data[6:12] == dst_mac
out["syns"], out["frames"] = drain()
print(json.dumps(out))
"""


def _wire(mode: str, *extra: str, timeout: float = 30.0) -> dict:
    cmd = [sys.executable, "-c", WIRE_SIDE, f"{NAME}-wire", f"{NAME}-w", HOST, str(LISTEN_PORT), mode, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def nic():
    from nfpjit.cli import main
    from nfpjit.offload.device import nic_down, nic_up

    if registry.state_dir(NAME).exists():
        nic_down(NAME)
    try:
        nic_up(NAME, host_addr=f"{HOST}/24", wire_addr=f"{WIRE}/24")
        assert main(["prog", "load", str(DROP), "--dev", NAME, "--pin", PIN]) == 0
        assert main(["net", "attach", "--dev", NAME, "--pin", PIN]) == 0
        yield NAME
    finally:
        try:
            nic_down(NAME)
        except OffloadError:
            pass


def _echo_server(ready: threading.Event, result: dict):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, LISTEN_PORT))
    srv.listen(1)
    srv.settimeout(8)
    ready.set()
    try:
        conn, addr = srv.accept()
        with conn:
            conn.settimeout(3)
            data = b""
            while len(data) < 500:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(data.upper())
            result["peer"], result["got"] = addr[0], len(data)
    except OSError as exc:
        result["error"] = repr(exc)
    finally:
        srv.close()


def _dump(capsys, name: str) -> dict[int, int]:
    from nfpjit.cli import main

    capsys.readouterr()
    assert main(["map", "dump", "drop_count", "--dev", name, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    return {e["key_le"]: e["value_le"] for e in entries}


def _settled(dev, want_rx: int | None = None, timeout: float = 20.0) -> dict:
    """NIC stats once the daemon has worked through what arrived (frame counters stop moving)."""
    last, stable = None, 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = dev.show()
        rx = s["counters"]["wire_rx_packets"]
        if rx == last and (want_rx is None or rx >= want_rx):
            stable += 1
            if stable >= 3:
                return s
        else:
            stable = 0
        last = rx
        time.sleep(0.1)
    return dev.show()


def test_classic_drop_tcp_ports_end_to_end(nic, capsys):
    from nfpjit.offload import Device

    ready, served = threading.Event(), {}
    server = threading.Thread(target=_echo_server, args=(ready, served), daemon=True)
    server.start()
    assert ready.wait(5)
    out = _wire("classic")
    server.join(10)
    tcp = out["tcp"]
    assert tcp["80"]["result"] == "timeout" and tcp["8080"]["result"] == "timeout", tcp
    assert tcp[str(LISTEN_PORT)]["result"] == "connected", tcp
    assert tcp[str(LISTEN_PORT)]["echo"] == ("hello nic " * 50).upper()
    assert served.get("peer") == WIRE and served.get("got") == 500, served
    assert out["ping"] is True
    syns = out["syns"]                           # SYNs that left the wire namespace, per port
    assert syns.get("80", 0) >= 1 and syns.get("8080", 0) >= 1
    with Device(nic) as dev:
        stats = _settled(dev)
    counts = _dump(capsys, nic)
    assert counts.get(80, 0) == syns["80"] and counts.get(8080, 0) == syns["8080"], (counts, syns)
    assert stats["counters"]["actions"]["drop"] == syns["80"] + syns["8080"]
    assert stats["counters"]["actions"]["pass"] > 0 and stats["counters"]["faults"] == 0
    assert stats["counters"]["host_rx_packets"] > 0          # replies went back out on the wire
    c = stats["counters"]                                    # every frame since the attach ran the program
    assert stats["program"]["runs"] == c["wire_rx_packets"] - c["no_program"] == sum(c["actions"].values())


_UPDATER = r"""
import select, struct, sys
from nfpjit.offload import Device
name, port = sys.argv[1], int(sys.argv[2])
key = struct.pack("<H", port)
with Device(name) as dev:
    tid = dev.map_id("drop_count")
    dev.maps.update(tid, key, struct.pack("<Q", 0), "noexist")
    print("ready", flush=True)
    done = 0
    while not select.select([sys.stdin], [], [], 0)[0]:       # until the test says stop
        value = struct.unpack("<Q", dev.maps.lookup(tid, key))[0]
        dev.maps.update(tid, key, struct.pack("<Q", value + 1), "exist")
        done += 1
print(done, flush=True)
"""


def test_concurrent_host_updates_while_traffic_flows_lose_nothing(nic):
    """Host processes increment their own counters (lookup + update) for as long as a burst of SYNs
    to port 80 runs through the program, which increments key 80 in the same table: at the end
    every counter holds exactly the number of increments made, host side and NIC side."""
    from nfpjit.offload import Device

    with Device(nic) as dev:
        before = _settled(dev)
        key80 = struct.pack("<H", 80)
        base80 = int.from_bytes(dev.map_dump("drop_count").get(key80, bytes(8)), "little")
        mac = Path(f"/sys/class/net/{nic}/address").read_text().strip().replace(":", "")
        n_frames, workers = 1500, 4
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        procs = [subprocess.Popen([sys.executable, "-c", _UPDATER, nic, str(9000 + w)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for w in range(workers)]
        try:
            for p in procs:
                assert p.stdout.readline().strip() == "ready", p.stderr.read()
            out = _wire(f"burst:{n_frames}", mac, "80", WIRE)
            assert out["sent"] == n_frames and out["syns"].get("80") == n_frames
            want_rx = before["counters"]["wire_rx_packets"] + out["frames"]
            stats = _settled(dev, want_rx=want_rx)      # the updaters keep going meanwhile
        finally:
            counts = []
            for p in procs:
                stdout, stderr = p.communicate("stop\n", timeout=60)
                assert p.returncode == 0, stderr
                counts.append(int(stdout.split()[-1]))
        # the NIC saw every frame of the burst (an ARP refresh outside the capture window may add one)
        assert stats["counters"]["wire_rx_packets"] >= want_rx
        assert stats["counters"]["actions"]["drop"] - before["counters"]["actions"]["drop"] == n_frames
        dump = dev.map_dump("drop_count")
        assert min(counts) > 0
        for w in range(workers):                  # every host update is there ...
            assert int.from_bytes(dump[struct.pack("<H", 9000 + w)], "little") == counts[w]
        # ... and so is every one of the program's own increments
        assert int.from_bytes(dump[key80], "little") == base80 + n_frames


def test_xdp_tx_bounces_the_frame_back_on_the_wire(nic):
    """XDP_TX: mac_swap_tx sends each frame back out of the wire port with its MACs swapped (the
    frame as the program left it); the host sees none of it.  Runs last: it replaces the program."""
    from nfpjit.offload import Device

    with Device(nic) as dev:
        prog = dev.load(ROOT / "tests" / "corpus" / "mac_swap_tx.o")
        dev.attach(prog, replace=True)
        before = _settled(dev)
        mac = Path(f"/sys/class/net/{nic}/address").read_text().strip().replace(":", "")
        out = _wire("tx", mac)
        assert out["bounced"] is True
        after = _settled(dev)
        assert after["counters"]["actions"]["tx"] > before["counters"]["actions"]["tx"]
        assert after["counters"]["host_tx_packets"] == before["counters"]["host_tx_packets"]


def test_out_of_range_action_aborts_drops_and_counts(nic, tmp_path):
    """An XDP return value the NIC has no action for (7) is XDP_ABORTED: dropped, counted."""
    from nfpjit.offload import Device

    src = tmp_path / "ret7.s"
    src.write_text("mov r0, 7\nexit\n")
    with Device(nic) as dev:
        prog = dev.load(src)
        dev.attach(prog, replace=True)
        before = _settled(dev)
        mac = Path(f"/sys/class/net/{nic}/address").read_text().strip().replace(":", "")
        out = _wire("tx", mac)
        assert out["bounced"] is False
        after = _settled(dev)
        c0, c1 = before["counters"], after["counters"]
        assert c1["actions"]["aborted"] - c0["actions"]["aborted"] == c1["wire_rx_packets"] - c0["wire_rx_packets"] >= 1
        assert c1["host_tx_packets"] == c0["host_tx_packets"]
        assert after["program"]["id"] == prog.id

"""``nfpjit run``: text and JSON output against the interpreter/kernel results, pcap in/out, map files, errors."""

from __future__ import annotations

import json
import struct

import pytest

import nfpjit
from nfpjit.cli import main
from nfpjit.cli.run import TIMING_FIELDS
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.kernel import kernel_available
from nfpjit.pcapio import read_pcap, write_pcap
from nfpjit.testing import crafted_packets

from conftest import CORPUS

PORTS = CORPUS / "xdp_drop_tcp_ports.o"
COUNTER = CORPUS / "array_counter.o"
MACSWAP = CORPUS / "mac_swap_tx.o"
FRAMES = crafted_packets()
kernel_ok, kernel_reason = kernel_available()


def tcp_to(port: int) -> bytes:
    from nfpjit.testing import PacketSpec, build_packet

    return build_packet(PacketSpec(l4="tcp", dst_port=port))


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def expected(obj, frames):
    """The interpreter's results with maps carried across packets, and the final map dump."""
    program = nfpjit.load(obj)
    store = MapStore.from_program(program)
    results = [run(program, f, maps=store) for f in frames]
    return program, results, store.dump()


def test_text_output_one_line_per_packet_and_summary(capsys):
    frames = [tcp_to(80), tcp_to(22), tcp_to(8080)]
    program, results, _ = expected(PORTS, frames)
    status, out, err = cli(capsys, "run", PORTS, *sum((["--packet", f.hex()] for f in frames), []))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == len(frames) + 1
    for n, (line, res, frame) in enumerate(zip(lines, results, frames)):
        assert line.startswith(f"{n}: {res.action_name(program.prog_type)} ")
        assert f"len {len(frame)} -> {len(res.packet)}" in line
        assert line.endswith(f"insns {res.insns}")
    actions = [r.action_name(program.prog_type) for r in results]
    assert actions.count("XDP_DROP") == 2  # ports 80 and 8080 are dropped by that program
    assert lines[-1].startswith("3 packets (ref): ")
    assert "XDP_DROP 2" in lines[-1] and "XDP_PASS 1" in lines[-1]
    assert f"{sum(r.insns for r in results)} insns executed" in lines[-1]


def test_json_schema_and_values(capsys, tmp_path):
    frames = FRAMES[:20]
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, frames)
    program, results, state = expected(COUNTER, frames)
    status, out, _ = cli(capsys, "run", COUNTER, "--pcap", pcap, "--json")
    assert status == 0
    doc = json.loads(out)
    assert set(doc) == {"packets", "summary", "maps"}
    assert len(doc["packets"]) == len(frames)
    summary = doc["summary"]
    assert summary["packets"] == len(frames) and summary["engine"] == "ref" and summary["simulator"] is None
    from collections import Counter

    assert summary["actions"] == dict(Counter(r.action_name(program.prog_type) for r in results))
    assert summary["insns"] == sum(r.insns for r in results) and summary["faults"] == 0
    assert summary["bytes_in"] == sum(map(len, frames)) and summary["cycles"] is None
    for n, (rec, res, frame) in enumerate(zip(doc["packets"], results, frames)):
        assert set(rec) == {"index", "action", "r0", "data", "len_in", "len_out", "insns", "fault"}
        assert rec["index"] == n
        assert rec["action"] == res.action_name(program.prog_type)
        assert rec["r0"] == res.r0
        assert bytes.fromhex(rec["data"]) == res.packet
        assert rec["len_in"] == len(frame) and rec["len_out"] == len(res.packet)
        assert rec["insns"] == res.insns and rec["insns"] > 0
        assert rec["fault"] is None
    assert doc["maps"] == {name: [{"key": k.hex(), "value": v.hex()} for k, v in entries.items()]
                           for name, entries in state.items()}
    # the counter program counts packets and bytes: maps persisted across all 20 packets
    values = {bytes.fromhex(e["key"]): int.from_bytes(bytes.fromhex(e["value"]), "little")
              for e in doc["maps"]["stats"]}
    assert values[struct.pack("<I", 0)] == len(frames)
    assert values[struct.pack("<I", 1)] == sum(len(f) for f in frames)


def test_pcap_out_holds_the_output_packets(capsys, tmp_path):
    frames = FRAMES[:10]
    pcap_in, pcap_out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(pcap_in, frames)
    _, results, _ = expected(MACSWAP, frames)
    status, _, _ = cli(capsys, "run", MACSWAP, "--pcap", pcap_in, "--out", pcap_out)
    assert status == 0
    got = read_pcap(pcap_out)
    assert got == [r.packet for r in results]
    # mac_swap_tx swaps the Ethernet addresses: check against the input directly
    assert any(g[:6] == f[6:12] and g[6:12] == f[:6] and f[:6] != f[6:12] for g, f in zip(got, frames))


def test_maps_in_and_out(capsys, tmp_path):
    maps_in = tmp_path / "in.json"
    maps_in.write_text(json.dumps({"stats": [{"key": 0, "value": 1000}]}))
    maps_out = tmp_path / "out.json"
    frame = FRAMES[0]
    status, _, _ = cli(capsys, "run", COUNTER, "--packet", frame.hex(), "--maps-in", maps_in, "--maps-out", maps_out)
    assert status == 0
    doc = json.loads(maps_out.read_text())
    values = {e["key"]: int.from_bytes(bytes.fromhex(e["value"]), "little") for e in doc["stats"]}
    assert values["00000000"] == 1001
    assert values["01000000"] == len(frame)


@pytest.mark.skipif(not kernel_ok, reason=f"kernel bpf() unusable: {kernel_reason}")
def test_kernel_engine_matches_ref_engine(capsys, tmp_path):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, FRAMES)
    maps_in = tmp_path / "in.json"
    maps_in.write_text(json.dumps({"stats": [{"key": 1, "value": 7}]}))
    docs = {}
    for engine in ("ref", "kernel"):
        status, out, _ = cli(capsys, "run", COUNTER, "--pcap", pcap, "--json", "--engine", engine, "--maps-in", maps_in)
        assert status == 0
        docs[engine] = json.loads(out)
    strip = lambda d: [{k: v for k, v in p.items() if k != "insns"} for p in d["packets"]]  # noqa: E731
    assert strip(docs["ref"]) == strip(docs["kernel"])
    assert docs["ref"]["maps"] == docs["kernel"]["maps"]


def test_trace_prints_instructions(capsys):
    frame = FRAMES[0]
    program, results, _ = expected(COUNTER, [frame])
    status, out, _ = cli(capsys, "run", COUNTER, "--packet", frame.hex(), "--trace", "--json")
    assert status == 0
    rec = json.loads(out)["packets"][0]
    assert len(rec["trace"]) == results[0].insns


def test_raw_context(capsys, tmp_path):
    src = tmp_path / "sum.s"
    src.write_text("ldxb r0, [r1+0]\nldxb r3, [r1+1]\nadd r0, r3\nadd r0, r2\nexit\n")
    status, out, _ = cli(capsys, "run", src, "--raw-context", "--mem", "0507", "--json")
    assert status == 0
    rec = json.loads(out)["packets"][0]
    assert rec["r0"] == 5 + 7 + 2  # two bytes plus the length in r2
    assert rec["fault"] is None


@pytest.mark.parametrize("argv,status,message", [
    (["--packet", "zz"], 2, "not a hex string"),
    ([], 2, "no packets"),
    (["--packet", "00" * 1519], 1, "more than the MTU allows (1518)"),
    (["--packet", "00" * 1519, "--mtu", "9000"], 0, ""),
    (["--packet", "00" * 60, "--mtu", "0"], 2, "--mtu must be positive"),
    (["--mem", "00"], 2, "--mem needs --raw-context"),
    (["--pcap", "/nonexistent/x.pcap"], 1, "cannot read pcap"),
])
def test_errors(capsys, argv, status, message):
    got, out, err = cli(capsys, "run", COUNTER, *argv)
    assert got == status
    if message:
        assert err.startswith("nfpjit: error: ") and message in err
        assert "Traceback" not in err


def test_malformed_pcap_and_map_file(capsys, tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    status, _, err = cli(capsys, "run", COUNTER, "--pcap", bad)
    assert status == 1 and "not a pcap file" in err
    good = tmp_path / "good.pcap"
    write_pcap(good, FRAMES[:3])
    truncated = tmp_path / "trunc.pcap"
    truncated.write_bytes(good.read_bytes()[:-3])
    status, _, err = cli(capsys, "run", COUNTER, "--pcap", truncated)
    assert status == 1 and "truncated" in err
    for engine in ("ref",) + (("kernel",) if kernel_ok else ()):
        maps = tmp_path / "maps.json"
        maps.write_text("{not json")
        status, _, err = cli(capsys, "run", COUNTER, "--packet", FRAMES[0].hex(), "--maps-in", maps, "--engine", engine)
        assert status == 1 and "invalid JSON" in err
        maps.write_text(json.dumps({"nosuch": []}))
        status, _, err = cli(capsys, "run", COUNTER, "--packet", FRAMES[0].hex(), "--maps-in", maps, "--engine", engine)
        assert status == 1 and "no map named 'nosuch'" in err
        maps.write_text(json.dumps({"stats": [{"key": "00", "value": 1}]}))
        status, _, err = cli(capsys, "run", COUNTER, "--packet", FRAMES[0].hex(), "--maps-in", maps, "--engine", engine)
        assert status == 1 and "key has 1 bytes, the map needs 4" in err


def test_pcap_round_trip(tmp_path):
    path = tmp_path / "x.pcap"
    write_pcap(path, FRAMES)
    assert read_pcap(path) == FRAMES
    write_pcap(path, [])
    assert read_pcap(path) == []


# -- --seed, --clock, --net: the interpreter's reproducibility and network options --------------------

RANDOM_VERDICT = ".type xdp\n.license GPL\ncall get_prandom_u32\nand r0, 3\nexit\n"


def _json(capsys, *argv):
    status, out, err = cli(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def test_seed_is_the_interpreters_seed(capsys, tmp_path):
    from nfpjit.ebpf.asm import assemble

    src = tmp_path / "rnd.s"
    src.write_text(RANDOM_VERDICT)
    program = assemble(RANDOM_VERDICT, filename=str(src))
    frames = FRAMES[:3]
    packets = sum((["--packet", f.hex()] for f in frames), [])
    seen = set()
    for seed in range(8):
        doc = _json(capsys, "run", src, *packets, "--seed", seed)
        want = [run(program, f, seed=seed).r0 for f in frames]  # the API with the same seed
        got = [p["r0"] for p in doc["packets"]]
        assert got == want
        assert len(set(got)) == 1   # every packet starts the generator from the seed
        seen.add(got[0])
    assert len(seen) > 1            # and the seed matters
    # no --seed is seed 0
    assert _json(capsys, "run", src, *packets)["packets"][0]["r0"] == run(program, frames[0], seed=0).r0


@pytest.mark.parametrize("ns", [0, 123456789, (1 << 64) - 1])
def test_clock_fixes_ktime(capsys, ns):
    # tests/corpus/ktime.c stores bpf_ktime_get_ns() into last_seen[0]
    doc = _json(capsys, "run", CORPUS / "ktime.o", "--packet", FRAMES[0].hex(), "--packet", FRAMES[1].hex(),
                "--clock", ns)
    assert doc["maps"]["last_seen"] == [{"key": "00000000", "value": ns.to_bytes(8, "little").hex()}]


ROUTER = {
    "devices": [{"ifindex": 1, "name": "lo", "mtu": 65536, "forwarding": True},
                {"ifindex": 2, "name": "eth0", "mac": "02:00:00:00:00:02", "addrs": ["10.0.0.1"]}],
    "routes": [{"dst": "0.0.0.0/0", "dev": 2, "via": "10.0.0.254"}],
    "neighbours": [{"dev": 2, "ip": "10.0.0.254", "mac": "02:00:00:00:00:fe"}],
}


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_net_file_is_the_namespace_fib_lookup_sees(capsys, tmp_path, fmt):
    from nfpjit.ebpf.net import Net
    from nfpjit.testing import PacketSpec, build_packet

    path = tmp_path / f"net.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(ROUTER))
    else:
        lines = []
        for table, rows in ROUTER.items():
            for row in rows:
                lines.append(f"[[{table}]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in row.items()]
        path.write_text("\n".join(lines).replace("True", "true") + "\n")
    frame = build_packet(PacketSpec(l4="tcp", dst_port=80))
    program = nfpjit.load(CORPUS / "fib_router.o")
    # tests/corpus/fib_router.c: a fresh namespace does not forward (pass to the stack) ...
    plain = _json(capsys, "run", CORPUS / "fib_router.o", "--packet", frame.hex())["packets"][0]
    assert plain["action"] == "XDP_PASS" and plain["data"] == frame.hex()
    # ... the router forwards through eth0 to the gateway's MAC, from eth0's
    doc = _json(capsys, "run", CORPUS / "fib_router.o", "--packet", frame.hex(), "--net", path)
    rec = doc["packets"][0]
    assert rec["action"] == "XDP_REDIRECT"
    out = bytes.fromhex(rec["data"])
    assert out[:6] == bytes.fromhex("0200000000fe") and out[6:12] == bytes.fromhex("020000000002")
    assert out[12:] == frame[12:]
    want = run(program, frame, net=Net.from_dict(ROUTER))
    assert (rec["r0"], out) == (want.r0, want.packet)


@pytest.mark.parametrize("argv, message", [(["--seed", "x"], "is not a number"), (["--clock", "-1"], "unsigned 64-bit")])
def test_option_values_are_checked(capsys, argv, message):
    with pytest.raises(SystemExit) as info:  # argparse: usage error
        main(["run", str(PORTS), "--packet", FRAMES[0].hex(), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--engine", "kernel", "--clock", "5"], "kernel engine"),
    (["--engine", "kernel", "--seed", "5"], "kernel engine"),
    (["--engine", "sim", "--net", "n.json"], "no clock or FIB"),
])
def test_engine_option_errors(capsys, argv, message):
    status, out, err = cli(capsys, "run", PORTS, "--packet", FRAMES[0].hex(), *argv)
    assert status == 2 and message in err and out == ""


def test_bad_net_file(capsys, tmp_path):
    bad = tmp_path / "net.json"
    for text, message in [("{", "invalid JSON"), ("[1]", "an object with devices"),
                          ('{"routes": [{"dst": "10.0.0.0/8", "type": "weird"}]}', "bad network description")]:
        bad.write_text(text)
        status, out, err = cli(capsys, "run", PORTS, "--packet", FRAMES[0].hex(), "--net", bad)
        assert status == 1 and message in err and err.startswith("nfpjit: error: "), err
    status, _, err = cli(capsys, "run", PORTS, "--packet", FRAMES[0].hex(), "--net", tmp_path / "missing.json")
    assert status == 1 and "cannot read network file" in err


def test_sim_engines_agree_packet_for_packet(capsys, tmp_path):
    """--sim compiled (native code) and --sim interp (the reference simulator): the same records, cycles included."""
    from nfpjit.isa.sim.compiled import available

    if not available():
        pytest.skip("llvmlite's JIT does not work here")
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, FRAMES[:20] + [tcp_to(80), tcp_to(8080), tcp_to(80)])
    docs = {}
    for sim in ("compiled", "interp"):
        status, out, _ = cli(capsys, "run", PORTS, "--engine", "sim", "--sim", sim, "--pcap", pcap, "--json")
        assert status == 0
        docs[sim] = json.loads(out)
        summary = docs[sim].pop("summary")
        assert summary["simulator"] == sim and summary["packets"] == 23
        docs[sim]["summary"] = {k: v for k, v in summary.items() if k not in TIMING_FIELDS + ("simulator",)}
    assert docs["compiled"] == docs["interp"]
    assert any(p["cycles"] > 300 for p in docs["interp"]["packets"])  # the map lookups are in there
    status, _, err = cli(capsys, "run", PORTS, "--engine", "sim", "--sim", "compiled", "--trace",
                         "--packet", FRAMES[0].hex())
    assert status == 0 and "--trace runs the interpreting simulator" in err

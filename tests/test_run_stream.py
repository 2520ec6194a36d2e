"""``nfpjit run --pcap`` streaming: chunked reading, the compiled engine's batches against the interpreting
simulator and the reference interpreter, the summary's figures against the per-packet records, --out, --records,
bad captures (never a traceback), and tools/make_pcap.py."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.cli import main
from nfpjit.cli import run as runcli
from nfpjit.cli.run import TIMING_FIELDS
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.errors import LoadError
from nfpjit.pcapio import PcapReader, PcapWriter, read_pcap, write_pcap
from nfpjit.testing import crafted_packets

from conftest import CORPUS

ROOT = Path(__file__).resolve().parents[1]
PORTS = CORPUS / "xdp_drop_tcp_ports.o"
COUNTER = CORPUS / "array_counter.o"
HASH = CORPUS / "hash_counter.o"


def _make_pcap_module():
    spec = importlib.util.spec_from_file_location("make_pcap", ROOT / "tools" / "make_pcap.py")
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = mod          # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


MAKE_PCAP = _make_pcap_module()


def traffic(n: int, seed: int = 7) -> list[bytes]:
    t = MAKE_PCAP.Traffic(seed, 50)
    return [t.next()[1] for _ in range(n)]


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def compiled_ok() -> bool:
    from nfpjit.isa.sim.compiled import available

    return available()


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 frames, so that a few dozen packets cross several chunk and batch boundaries."""
    monkeypatch.setattr(runcli, "CHUNK_FRAMES", 7)


# -- the engines agree, chunk by chunk ------------------------------------------------------------------


@pytest.mark.parametrize("obj, image", [(PORTS, False), (CORPUS / "atomic_add.o", False),
                                        (CORPUS / "ipip_encap.o", False), (HASH, True), (COUNTER, True)],
                         ids=lambda p: getattr(p, "stem", str(p)))
def test_compiled_stream_equals_the_interpreting_simulator(tmp_path, small_chunks, obj, image):
    """Object files (compiled by run) and images (the permissive profile: map writes, hash updates)."""
    if not compiled_ok():
        pytest.skip("llvmlite's JIT does not work here")
    frames = traffic(60) + crafted_packets()
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, frames)
    what = obj
    if image:
        from nfpjit.isa.image import write_image

        what = tmp_path / "prog.nfp"
        write_image(what, nfpjit.compile(obj, profile="permissive").image)
    docs = {}
    for sim in ("compiled", "interp"):
        out_pcap = tmp_path / f"{sim}.pcap"
        status, out, err = cli("run", what, "--engine", "sim", "--sim", sim, "--pcap", pcap, "--json",
                               "--records", "all", "--out", out_pcap)
        assert status == 0, err
        doc = json.loads(out)
        assert doc["summary"]["simulator"] == sim
        for field in TIMING_FIELDS + ("simulator",):
            del doc["summary"][field]
        docs[sim] = doc
        assert read_pcap(out_pcap) == [bytes.fromhex(p["data"]) for p in doc["packets"]]
    assert docs["compiled"] == docs["interp"]
    # the summary alone (no per-packet SimResult at all on the compiled engine) is the same
    status, out, err = cli("run", what, "--engine", "sim", "--pcap", pcap, "--json", "--records", "none")
    assert status == 0, err
    summary = json.loads(out)["summary"]
    assert {k: v for k, v in summary.items() if k not in TIMING_FIELDS + ("simulator",)} == docs["interp"]["summary"]
    # and the verdicts are the reference interpreter's, maps carried across packets
    program = nfpjit.load(obj)
    store = MapStore.from_program(program)
    want = [run(program, f, maps=store).action_name(program.prog_type) for f in frames]
    assert [p["action"] for p in docs["compiled"]["packets"]] == want
    assert len(docs["compiled"]["packets"]) == len(frames)


def test_summary_figures_are_the_records(tmp_path, small_chunks):
    frames = traffic(150)
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, frames)
    status, out, err = cli("run", PORTS, "--engine", "sim", "--pcap", pcap, "--json", "--records", "all")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["summary"]["simulator"] == ("compiled" if compiled_ok() else "interp")
    recs, summary = doc["packets"], doc["summary"]
    cycles = sorted(p["cycles"] for p in recs)
    n = len(cycles)
    assert summary["packets"] == n == len(frames)
    assert summary["actions"] == dict(Counter(p["action"] for p in recs))
    assert summary["insns"] == sum(p["insns"] for p in recs)
    assert summary["bytes_in"] == sum(map(len, frames))
    assert summary["bytes_out"] == sum(p["len_out"] for p in recs)

    def nearest_rank(q):
        return cycles[max(1, math.ceil(q * n)) - 1]

    c = summary["cycles"]
    assert c["mean"] == round(sum(cycles) / n, 2)
    assert (c["min"], c["p50"], c["p99"], c["max"]) == (cycles[0], nearest_rank(0.5), nearest_rank(0.99), cycles[-1])
    assert c["p50"] < c["max"]              # the mix has short and long paths
    assert summary["seconds"] > 0 and summary["packets_per_second"] > 0


def test_records_auto_leaves_them_out_for_big_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runcli, "AUTO_RECORDS", 5)
    frames = crafted_packets()[:12]
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, frames)
    status, out, err = cli("run", COUNTER, "--pcap", pcap, "--json")
    assert status == 0
    doc = json.loads(out)
    assert "packets" not in doc and doc["summary"]["packets"] == 12
    assert "per-packet records left out" in err and "--records all" in err
    status, out, err = cli("run", COUNTER, "--pcap", pcap)
    assert status == 0 and out.count("\n") == 1 and out.startswith("12 packets (ref): ")
    status, out, _ = cli("run", COUNTER, "--pcap", pcap, "--json", "--records", "all")
    assert len(json.loads(out)["packets"]) == 12
    write_pcap(pcap, frames[:5])
    status, out, err = cli("run", COUNTER, "--pcap", pcap, "--json")
    assert len(json.loads(out)["packets"]) == 5 and err == ""
    status, out, _ = cli("run", COUNTER, "--pcap", pcap, "--json", "--records", "none")
    assert "packets" not in json.loads(out)


def test_text_summary_line(tmp_path):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, traffic(40))
    status, out, err = cli("run", PORTS, "--engine", "sim", "--pcap", pcap, "--records", "none")
    assert status == 0, err
    (line,) = out.splitlines()
    assert line.startswith("40 packets (sim): ") and "cycles per packet (p50 " in line and "packets/s" in line


def test_out_keeps_the_input_timestamps(tmp_path):
    frames = crafted_packets()[:4]
    pcap = tmp_path / "in.pcap"
    with PcapWriter(pcap, nano=True) as w:
        for k, f in enumerate(frames):
            w.write(f, (1_700_000_000 + k, 123_456_789))
    out = tmp_path / "out.pcap"
    status, _, err = cli("run", COUNTER, "--pcap", pcap, "--out", out)
    assert status == 0, err
    with PcapReader(out) as r:
        assert r.nano
        (chunk,) = list(r.chunks())
    assert chunk.ts == [(1_700_000_000 + k, 123_456_789) for k in range(4)]
    assert chunk.frames() == frames       # the counter program leaves packets alone


def test_failed_run_leaves_no_output_file(tmp_path):
    good = tmp_path / "good.pcap"
    write_pcap(good, crafted_packets()[:3] + [bytes(3000)])          # the last frame is over the MTU
    out = tmp_path / "out.pcap"
    status, _, err = cli("run", COUNTER, "--pcap", good, "--out", out)
    assert status == 1 and "packet 3 has 3000 bytes" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [good]


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, crafted_packets())
    made = []
    real = runcli._Progress

    def spy(total, enabled):
        made.append(enabled)
        return real(total, enabled)

    monkeypatch.setattr(runcli, "_Progress", spy)
    status, _, err = cli("run", COUNTER, "--pcap", pcap)
    assert status == 0 and made == [False] and err == ""
    bar = real(1000, True)       # a terminal: rich draws it (to stderr) and stops cleanly
    bar.update(500, 10, 0.1)
    bar.close()


# -- the reader -------------------------------------------------------------------------------------------------


def test_reader_chunks_any_buffer_size(tmp_path):
    frames = traffic(80, seed=3)
    pcap = tmp_path / "x.pcap"
    write_pcap(pcap, frames)
    for max_bytes, max_frames in ((64, 3), (1500, 1), (100_000, 4096)):
        with PcapReader(pcap) as r:
            chunks = list(r.chunks(max_frames=max_frames, max_bytes=max_bytes))
        assert [f for c in chunks for f in c.frames()] == frames
        assert [c.first for c in chunks] == [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
        assert all(len(c) <= max_frames for c in chunks) and chunks[-1].end == pcap.stat().st_size


def test_reader_big_endian_and_short_captures(tmp_path):
    frames = crafted_packets()[:3]
    raw = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 100, 1)
    for k, f in enumerate(frames):
        raw += struct.pack(">IIII", k, 0, len(f[:60]), len(f)) + f[:60]
    pcap = tmp_path / "be.pcap"
    pcap.write_bytes(raw)
    assert read_pcap(pcap) == [f[:60] for f in frames]
    status, out, err = cli("run", COUNTER, "--pcap", pcap, "--json")
    assert status == 0, err
    assert json.loads(out)["summary"]["short_captures"] == sum(len(f) > 60 for f in frames)


def _valid_pcap() -> bytes:
    buf = io.BytesIO()
    import dpkt

    w = dpkt.pcap.Writer(buf, snaplen=2000)
    for k, f in enumerate(crafted_packets()[:4]):
        w.writepkt(f, ts=k)
    return buf.getvalue()


VALID = _valid_pcap()


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:10], "shorter than a pcap header"),
    (lambda b: b"\x00\x00\x00\x00" + b[4:], "not a pcap file"),
    (lambda b: b"\x0a\x0d\x0d\x0a" + b[4:], "pcapng"),
    (lambda b: b[:20] + struct.pack("<I", 105) + b[24:], "link type 105"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:24 + 7], "truncated: its header needs 16 bytes"),
    (lambda b: b[:16] + struct.pack("<I", 30) + b[20:], "more than the file's snaplen (30)"),
    (lambda b: b[:24 + 8] + struct.pack("<I", 300_000) + b[24 + 12:], "more than any capture can hold"),
])
def test_bad_pcaps_are_one_message(tmp_path, mutate, message):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(mutate(VALID))
    status, _, err = cli("run", COUNTER, "--pcap", bad)
    assert status == 1 and err.startswith("nfpjit: error: ") and message in err, err
    assert "Traceback" not in err and err.count("\n") <= 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_pcaps_never_a_traceback(tmp_path, data):
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(("flip", "cut", "grow")))
        if what == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif what == "cut":
            del raw[data.draw(st.integers(0, len(raw))):]
        else:
            raw += data.draw(st.binary(max_size=40))
    bad = tmp_path / "m.pcap"
    bad.write_bytes(bytes(raw))
    try:
        frames = read_pcap(bad)
    except LoadError as exc:
        assert str(exc)
        frames = None
    status, out, err = cli("run", COUNTER, "--pcap", bad, "--json", "--mtu", "9000")
    assert "Traceback" not in err
    if frames is None:
        assert status == 1 and err.startswith("nfpjit: error: ")
    else:
        assert status == 0, err
        assert json.loads(out)["summary"]["packets"] == len(frames)


# -- tools/make_pcap.py -----------------------------------------------------------------------------------------


def test_make_pcap_is_deterministic_and_mixed(tmp_path, capsys):
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    assert MAKE_PCAP.main([str(a), "--frames", "3000", "--seed", "11"]) == 0
    assert MAKE_PCAP.main([str(b), "--frames", "3000", "--seed", "11"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert MAKE_PCAP.main([str(b), "--frames", "3000", "--seed", "12"]) == 0
    assert a.read_bytes() != b.read_bytes()
    capsys.readouterr()
    import dpkt

    frames = read_pcap(a)
    assert len(frames) == 3000 and max(map(len, frames)) <= 1514
    kinds = Counter()
    flows = Counter()
    for f in frames:
        if len(f) < 14:
            kinds["runt"] += 1
            continue
        eth = dpkt.ethernet.Ethernet(f)
        kinds[type(eth.data).__name__] += 1
        if getattr(eth, "vlan_tags", None):
            kinds["vlan"] += 1
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
            flows[(ip.src, ip.dst, ip.data.sport, ip.data.dport)] += 1
    for kind in ("IP", "IP6", "ARP", "vlan", "runt"):
        assert kinds[kind] > 0, kinds
    assert kinds["IP"] > kinds["IP6"] > kinds["ARP"]
    assert flows.most_common(1)[0][1] >= 20          # heavy hitters repeat
    sizes = sorted(map(len, frames))
    assert sizes[len(sizes) // 10] <= 64 and sizes[-len(sizes) // 10] >= 1400


def test_make_pcap_checksums_are_right():
    import dpkt

    ok = 0
    for f in traffic(400, seed=5):
        try:
            eth = dpkt.ethernet.Ethernet(f)
        except dpkt.dpkt.UnpackError:
            continue
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP) or ip.v != 4 or ip.hl < 5:
            continue
        at = 14 + 4 * len(getattr(eth, "vlan_tags", None) or [])
        hdr = f[at:at + 4 * ip.hl]
        if ip.len != len(f) - at or ip.mf or ip.offset:      # the malformed ones, fragments
            continue
        assert dpkt.in_cksum(hdr) == 0
        l4 = f[at + 4 * ip.hl:]
        if ip.p in (6, 17):
            pseudo = ip.src + ip.dst + struct.pack("!HH", ip.p, len(l4))
            assert dpkt.in_cksum(pseudo + l4) == 0
            assert MAKE_PCAP.csum(pseudo + l4) == 0
        ok += 1
    assert ok > 200

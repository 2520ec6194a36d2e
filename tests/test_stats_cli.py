"""`nfpjit stats` (and the cycles of `nfpjit run --engine sim`) against the public API computed independently."""

from __future__ import annotations

import builtins
import csv
import io
import json
import math
from pathlib import Path

import pytest

import nfpjit
from nfpjit.cli import main
from nfpjit.driver import compile, pass_deltas, run_sim
from nfpjit.ebpf.maps import MapStore
from nfpjit.testing import crafted_packets

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "xdp_drop_tcp_ports.o"
REJECTED = ROOT / "tests" / "corpus" / "lpm_trie.o"   # default has no LPM trie routine yet
MAC_SWAP = ROOT / "tests" / "corpus" / "mac_swap_tx.o"


def _stats(capsys, *argv) -> dict:
    assert main(["stats", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _sim_cycles(image, program, frames, *, warm_cache: bool = True) -> list[int]:
    """Cycles of each frame, maps persisting (and, with ``warm_cache``, one NIC map cache for all)."""
    from nfpjit.isa.sim import DEFAULT_MAP_CACHE_SIZE
    from nfpjit.isa.sim.firmware import MapCache

    cache = {"map_cache": MapCache(DEFAULT_MAP_CACHE_SIZE)} if warm_cache else {}
    state = {k: v for k, v in MapStore.from_program(program).dump().items() if k in {m.name for m in image.maps}}
    out = []
    for f in frames:
        res = run_sim(image, f, maps_in=state, **cache)
        state = res.maps
        out.append(res.cycles)
    return out


@pytest.fixture(scope="module")
def doc():
    buf = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(buf):
        assert main(["stats", str(EXAMPLE), str(MAC_SWAP), str(REJECTED), "--json"]) == 0
    return json.loads(buf.getvalue())


def test_sizes_and_pass_savings_match_the_compiler(doc):
    rows = {r["program"]: r for r in doc["programs"]}
    assert set(rows) == {"xdp_drop_tcp_ports:xdp", "mac_swap_tx:xdp"}
    for path, label in ((EXAMPLE, "xdp_drop_tcp_ports:xdp"), (MAC_SWAP, "mac_swap_tx:xdp")):
        row = rows[label]
        program = nfpjit.load(path)
        assert row["ebpf_insns"] == len(program.insns)
        for level in (0, 1, 2):  # a full compilation of its own at each level (no shared analysis)
            assert row["nfp_insns"][f"O{level}"] == compile(path, opt_level=level).stats.nfp_insns
            assert row["ratio"][f"O{level}"] == pytest.approx(row["nfp_insns"][f"O{level}"] / len(program.insns),
                                                             abs=1e-4)
        saves = [(p["name"], p["level"], p["saves"]) for p in row["passes"]]
        assert saves == pass_deltas(compile(path))
        assert set(row["compile_ms"]) >= {"load", "analysis", "check", "lower", "assemble", "total"}


def test_cycles_match_the_simulator(doc):
    frames = crafted_packets()
    assert doc["packets"] == len(frames)
    for row in doc["programs"]:
        program = nfpjit.load(row["file"], section=row["section"])
        both = _sim_cycles(compile(program).image, program, frames + frames)
        cycles, warm = both[:len(frames)], both[len(frames):]
        c = row["cycles"]
        assert c["mean"] == pytest.approx(sum(cycles) / len(cycles), abs=0.01)
        assert c["max"] == max(cycles)
        # warm: the same packets again, meeting the maps and the map cache the first pass left
        assert c["warm"] == {"mean": pytest.approx(sum(warm) / len(warm), abs=0.01), "max": max(warm)}
        parts = c["alu"] + c["packet"] + c["maps"] + c["other_memory"]
        assert parts == pytest.approx(c["mean"], abs=0.05)
        assert sum(c["by_resource"].values()) == pytest.approx(c["mean"], abs=0.05)
    mac = next(r for r in doc["programs"] if r["program"].startswith("mac_swap_tx"))
    assert mac["cycles"]["packet"] > mac["cycles"]["alu"]  # packet stores are CTM read-modify-writes


def test_rejected_program_is_listed_with_its_reason(doc):
    (rej,) = doc["rejected"]
    assert rej["program"] == "lpm_trie:xdp"
    assert "rejects" in rej["reason"] and "map-type" in rej["codes"]


def test_totals_are_sums_and_geometric_means(doc):
    rows, t = doc["programs"], doc["totals"]
    assert t["programs"] == len(rows)
    assert t["ebpf_insns"] == sum(r["ebpf_insns"] for r in rows)
    for level in ("O0", "O1", "O2"):
        assert t["nfp_insns"][level] == sum(r["nfp_insns"][level] for r in rows)
        ratios = [r["ratio"][level] for r in rows]
        assert t["ratio_geomean"][level] == pytest.approx(math.prod(ratios) ** (1 / len(ratios)), rel=1e-3)
    means = [r["cycles"]["mean"] for r in rows]
    assert t["cycles_geomean"]["mean"] == pytest.approx(math.prod(means) ** (1 / len(means)), rel=1e-3)
    assert t["passes"] == {p["key"]: sum(q["saves"] for r in rows for q in r["passes"] if q["key"] == p["key"])
                           for p in rows[0]["passes"]}


@pytest.mark.parametrize("name", ["ipip_encap", "bpf2bpf_call", "alu32_heavy", "xdp_drop_tcp_ports"])
def test_pass_savings_are_the_drivers_ablation(name):
    """stats' shortcut (reusing the code before each nfp pass) gives driver.pass_deltas' numbers."""
    from nfpjit.cli.stats import pass_savings

    result = compile(ROOT / "tests" / "corpus" / f"{name}.o", profile="permissive")
    assert pass_savings(result) == pass_deltas(result)


def test_analysis_runs_once_per_program(capsys, monkeypatch):
    import nfpjit.analysis

    calls = []
    real = nfpjit.analysis.analyze
    monkeypatch.setattr(nfpjit.analysis, "analyze", lambda *a, **k: calls.append(1) or real(*a, **k))
    _stats(capsys, EXAMPLE, "--packets", "2")
    assert len(calls) == 1


def test_pcap_and_packet_limit(capsys, tmp_path):
    from nfpjit.pcapio import write_pcap

    frames = crafted_packets()[3:6]
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, frames)
    d = _stats(capsys, EXAMPLE, "--pcap", pcap)
    assert d["packets"] == 3
    program = nfpjit.load(EXAMPLE)
    assert d["programs"][0]["cycles"]["max"] == max(_sim_cycles(compile(program).image, program, frames))
    assert _stats(capsys, EXAMPLE, "--packets", "1")["packets"] == 1


def test_csv_and_table(capsys):
    assert main(["stats", str(EXAMPLE), str(REJECTED), "--csv", "--packets", "3"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    head, body = rows[0], rows[1:]
    assert head[:2] == ["program", "ebpf_insns"] and any(h.startswith("saves_") for h in head)
    assert [r[0] for r in body] == ["xdp_drop_tcp_ports:xdp", "total (geomean of ratios and cycles)"]
    assert all(len(r) == len(head) for r in body)
    assert main(["stats", str(EXAMPLE), str(REJECTED), "--packets", "3"]) == 0
    out = capsys.readouterr().out
    assert "xdp_drop_tcp_ports:xdp" in out and "total" in out and "lpm_trie:xdp" in out
    assert "zext-elim" in out  # the per-pass table


def test_section_option_and_bad_input(capsys, tmp_path):
    d = _stats(capsys, ROOT / "tests" / "corpus" / "two_programs.o", "-s", "xdp.frags", "--packets", "1",
               "--profile", "permissive")
    assert [r["program"] for r in d["programs"]] == ["two_programs:xdp.frags"] and d["profile"] == "permissive"
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF-not-really")
    assert main(["stats", str(bad), "--packets", "1", "--json"]) == 1    # unreadable input: status 1
    d = json.loads(capsys.readouterr().out)
    assert not d["programs"] and d["rejected"] and d["rejected"][0]["reason"]


def test_plot_without_matplotlib_says_what_to_install(capsys, monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["stats", str(EXAMPLE), "--plot", str(tmp_path / "p.png")]) == 2
    assert "pip install 'nfpjit[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "passes.png"
    assert main(["stats", str(EXAMPLE), str(MAC_SWAP), "--packets", "2", "--json", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_engine_sim_reports_cycles_per_packet(capsys):
    frames = crafted_packets()[:4]
    args = ["run", str(EXAMPLE), "--engine", "sim", *[a for f in frames for a in ("--packet", f.hex())]]
    assert main([*args, "--json"]) == 0
    got = [p["cycles"] for p in json.loads(capsys.readouterr().out)["packets"]]
    program = nfpjit.load(EXAMPLE)
    assert got == _sim_cycles(compile(program).image, program, frames, warm_cache=False)  # a cold cache per run
    assert main([*args, "-O0"]) == 0
    text = capsys.readouterr().out
    want0 = _sim_cycles(compile(program, opt_level=0).image, program, frames, warm_cache=False)
    assert f"cycles {want0[0]}" in text and "cycles per packet" in text
    assert main(["run", str(EXAMPLE), "--packet", frames[0].hex()]) == 0
    assert "cycles" not in capsys.readouterr().out  # the interpreter counts no cycles


def test_unreadable_inputs_make_the_status_1_but_the_rest_is_reported(tmp_path, capsys):
    from nfpjit.cli import main

    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF" + bytes(40))
    status = main(["stats", "examples/xdp_drop_tcp_ports.o", str(bad), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert status == 1
    assert [r["program"] for r in doc["programs"]] == ["xdp_drop_tcp_ports:xdp"]
    assert [r.get("load_error") for r in doc["rejected"]] == [True]
    # a program the profile refuses is a result, not an error
    assert main(["stats", "tests/corpus/lpm_trie.o", "--json"]) == 0

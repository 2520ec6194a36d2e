"""``nfpjit stats`` counts cycles on the compiled simulator: the same figures as the interpreting one, to the cycle
(maps and the NIC-side map cache persisting across the packets)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from nfpjit.cli import main
from nfpjit.testing import crafted_packets

from conftest import CORPUS, ROOT


def _stats(*argv) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["stats", *map(str, argv), "--json"])
    assert status == 0, err.getvalue()
    return json.loads(out.getvalue())


@pytest.mark.parametrize("obj", [ROOT / "examples" / "xdp_drop_tcp_ports.o", CORPUS / "hash_counter.o",
                                 CORPUS / "ipip_encap.o"], ids=lambda p: p.stem)
def test_stats_cycles_are_the_same_on_both_simulators(tmp_path, obj):
    from nfpjit.isa.sim.compiled import available

    if not available():
        pytest.skip("llvmlite's JIT does not work here")
    from nfpjit.pcapio import write_pcap

    pcap = tmp_path / "in.pcap"
    frames = crafted_packets()
    write_pcap(pcap, frames * 3)                   # repeated keys: map-cache hits on the later rounds
    docs = {sim: _stats(obj, "--pcap", pcap, "--profile", "permissive", "--sim", sim) for sim in ("compiled", "interp")}
    (a,), (b,) = docs["compiled"]["programs"], docs["interp"]["programs"]
    assert a["cycles"] == b["cycles"]
    assert a["cycles"]["mean"] > 0 and a["cycles"]["max"] >= a["cycles"]["min"]
    if a["cycles"]["map_cache"] is not None and obj.stem != "ipip_encap":
        assert a["cycles"]["map_cache"]["hits"] > 0       # the cache stayed warm from packet to packet


def test_stats_uses_the_compiled_simulator_by_default(monkeypatch):
    from nfpjit.isa.sim import compiled

    if not compiled.available():
        pytest.skip("llvmlite's JIT does not work here")
    calls = []
    real = compiled.run_batch

    def spy(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(compiled, "run_batch", spy)
    doc = _stats(CORPUS / "xdp_drop_tcp_ports.o", "--packets", "5")
    assert calls == [10] and doc["programs"][0]["cycles"]["mean"] > 0     # both passes over the 5 in one session

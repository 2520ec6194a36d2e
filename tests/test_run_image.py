"""``nfpjit run IMAGE --engine sim``: a firmware image runs without its eBPF object."""

from __future__ import annotations

import json

import pytest

import nfpjit
from nfpjit.cli import main
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.isa.image import write_image
from nfpjit.cli.run import TIMING_FIELDS
from nfpjit.pcapio import write_pcap
from nfpjit.testing import crafted_packets

from conftest import CORPUS

FRAMES = crafted_packets()


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _image(tmp_path, obj, **kw):
    path = tmp_path / (obj.stem + ".nffw")
    write_image(path, nfpjit.compile(obj, **kw).image)
    return path


def _strip(doc):
    """Packets without the engine-specific counts (and r0's high word, which XDP/TC do not look at), and the maps."""
    return [{**{k: v for k, v in p.items() if k not in ("insns", "cycles")}, "r0": p["r0"] & 0xFFFFFFFF}
            for p in doc["packets"]], doc["maps"]


@pytest.mark.parametrize("name", ["xdp_drop_tcp_ports.o", "array_counter.o", "mac_swap_tx.o", "global_data.o"])
def test_image_runs_like_the_interpreter_runs_its_object(capsys, tmp_path, name):
    obj = CORPUS / name
    image = _image(tmp_path, obj, profile="permissive")
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, FRAMES)
    status, out, err = cli(capsys, "run", image, "--engine", "sim", "--pcap", pcap, "--json")
    assert status == 0, err
    got = json.loads(out)
    assert all("cycles" in p for p in got["packets"])
    status, out, err = cli(capsys, "run", obj, "--engine", "ref", "--pcap", pcap, "--json")
    assert status == 0, err
    assert _strip(got) == _strip(json.loads(out))
    # and the verdicts, computed directly
    program = nfpjit.load(obj)
    store = MapStore.from_program(program)
    want = [run(program, f, maps=store).action_name(program.prog_type) for f in FRAMES]
    assert [p["action"] for p in got["packets"]] == want


def test_image_and_object_agree_in_the_simulator(capsys, tmp_path):
    obj = CORPUS / "xdp_drop_tcp_ports.o"
    image = _image(tmp_path, obj)
    docs = []
    for what in (obj, image):
        status, out, err = cli(capsys, "run", what, "--engine", "sim", "--json",
                               *sum((["--packet", f.hex()] for f in FRAMES[:6]), []))
        assert status == 0, err
        doc = json.loads(out)
        for field in TIMING_FIELDS:       # wall and CPU time
            del doc["summary"][field]
        docs.append(doc)
    assert docs[0] == docs[1]


def test_image_text_output_and_maps_in(capsys, tmp_path):
    obj = CORPUS / "array_counter.o"
    image = _image(tmp_path, obj, profile="permissive")
    maps_in = tmp_path / "in.json"
    maps_in.write_text(json.dumps({"stats": [{"key": 0, "value": 1000}]}))
    maps_out = tmp_path / "out.json"
    status, out, err = cli(capsys, "run", image, "--engine", "sim", "--packet", FRAMES[0].hex(), "--maps-in", maps_in,
                           "--maps-out", maps_out)
    assert status == 0, err
    assert out.splitlines()[-1].startswith("1 packet (sim): ")
    values = {e["key"]: int.from_bytes(bytes.fromhex(e["value"]), "little")
              for e in json.loads(maps_out.read_text())["stats"]}
    assert values["00000000"] == 1001 and values["01000000"] == len(FRAMES[0])


def test_image_errors(capsys, tmp_path):
    image = _image(tmp_path, CORPUS / "xdp_drop_tcp_ports.o")
    frame = FRAMES[0].hex()
    status, _, err = cli(capsys, "run", image, "--packet", frame)  # default engine: ref
    assert status == 2 and "only the simulator runs it" in err and "--engine sim" in err
    status, _, err = cli(capsys, "run", image, "--engine", "sim", "--packet", frame, "-s", "xdp")
    assert status == 2 and "section" in err
    status, _, err = cli(capsys, "run", image, "--engine", "sim", "--packet", frame, "--passes", "x")
    assert status == 2 and "already compiled" in err
    broken = tmp_path / "broken.nffw"
    broken.write_bytes(image.read_bytes()[:200])
    status, _, err = cli(capsys, "run", broken, "--engine", "sim", "--packet", frame)
    assert status == 1 and err.startswith("nfpjit: error:")

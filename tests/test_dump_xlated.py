"""``nfpjit dump xlated`` on every corpus program: text and JSON checked against the loaded Program and the C sources."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from nfpjit.cli import main
from nfpjit.ebpf.loader import list_programs, load
from nfpjit.ebpf.opcodes import PseudoSrc
from tests.conftest import CORPUS, ROOT

ENTRIES = [(p, s) for p in sorted(CORPUS.glob("*.o")) for s, _ in list_programs(p)]
_INSN_LINE = re.compile(r"^\s*(\d+): \(([0-9a-f]{2})\) (.+)$")


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["dump", "xlated", *map(str, argv)])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("path,section", ENTRIES, ids=lambda v: getattr(v, "name", v))
def test_text_and_json_agree_with_program(path, section, capsys):
    prog = load(path, section=section)
    status, text, _ = run(capsys, path, "-s", section, "--opcodes")
    assert status == 0
    lines = text.splitlines()
    insn_lines = [(i, m) for i, line in enumerate(lines) if (m := _INSN_LINE.match(line))]
    assert [int(m.group(1)) for _, m in insn_lines] == list(prog.pcs)
    for (i, m), insn in zip(insn_lines, prog.insns):
        assert int(m.group(2), 16) == insn.code
        assert bytes.fromhex(lines[i + 1].replace(" ", "")) == insn.encode()  # --opcodes line
    for m in prog.maps:
        assert any(line.strip().startswith("[") and f"{m.name}: {m.type.kernel_name}" in line for line in lines)

    status, out, _ = run(capsys, path, "-s", section, "--json")
    doc = json.loads(out)
    assert doc["section"] == prog.section and doc["name"] == prog.name
    assert doc["maps"] == [m.to_json() for m in prog.maps]
    assert [e["index"] for e in doc["insns"]] == list(prog.pcs)
    for e, (pc, insn) in zip(doc["insns"], prog.slots()):
        assert (e["code"], e["dst"], e["src"], e["off"]) == (insn.code, insn.dst, insn.src, insn.off)
        if insn.is_ld_imm64:
            assert e["imm"] == (insn.imm2 & 0xFFFFFFFF) << 32 | (insn.imm & 0xFFFFFFFF)
        else:
            assert e["imm"] == insn.imm
        assert isinstance(e["text"], str) and e["text"]
        loc = prog.line_info.get(pc)
        assert e["source"] == (None if loc is None else
                               {"file": loc.file, "line": loc.line, "col": loc.col, "text": loc.text})
        if insn.is_ld_imm64 and insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE):
            assert e["map"] == prog.maps[insn.imm].name
            assert ("map_offset" in e) == (insn.src == PseudoSrc.MAP_VALUE)
        else:
            assert "map" not in e


def test_source_line_sits_above_its_instructions(capsys):
    path = CORPUS / "xdp_drop_tcp_ports.o"
    src = (CORPUS / "xdp_drop_tcp_ports.c").read_text().splitlines()
    lineno = next(n for n, t in enumerate(src, 1) if "bpf_map_lookup_elem(&drop_count" in t)
    status, text, _ = run(capsys, path, "--linum")
    assert status == 0
    lines = text.splitlines()
    want = f"; {src[lineno - 1].strip()} [xdp_drop_tcp_ports.c:{lineno}:"
    idx = next(i for i, line in enumerate(lines) if line.startswith(want))
    first = _INSN_LINE.match(lines[idx + 1])
    prog = load(path)
    assert int(first.group(1)) == min(pc for pc, loc in prog.line_info.items() if loc.line == lineno)
    # the helper call that does the lookup comes after this comment and before the next one
    block = []
    for line in lines[idx + 1:]:
        if line.startswith(";"):
            break
        block.append(line)
    call_pc = next(pc for pc, i in prog.slots() if i.is_helper_call and i.imm == 1)
    assert any((m := _INSN_LINE.match(b)) and int(m.group(1)) == call_pc for b in block)
    # a comment is printed only when the line changes
    comments = [line for line in lines if line.startswith(";")]
    assert all(a != b for a, b in zip(comments, comments[1:]))


def test_map_reference_is_named(capsys):
    status, text, _ = run(capsys, CORPUS / "global_data.o")
    assert status == 0
    assert re.search(r"; map \.rodata \+ 4$", text, re.MULTILINE)
    status, text, _ = run(capsys, CORPUS / "hash_counter.o")
    assert re.search(r"; map by_ethertype$", text, re.MULTILINE)


def test_functions_are_labelled(capsys):
    _, text, _ = run(capsys, CORPUS / "bpf2bpf_call.o")
    labels = [line[:-1] for line in text.splitlines() if re.fullmatch(r"\w+:", line)]
    assert labels == [f.name for f in load(CORPUS / "bpf2bpf_call.o").functions]


def test_errors_are_one_line(capsys, tmp_path):
    status, out, err = run(capsys, CORPUS / "two_programs.o")
    assert status == 1 and out == ""
    assert err.startswith("nfpjit: error: ") and "xdp/ingress" in err and "xdp.frags" in err
    assert len(err.strip().splitlines()) == 1
    status, _, err = run(capsys, tmp_path / "nope.o")
    assert status == 1 and "cannot read" in err


def test_raw_input(capsys, tmp_path):
    p = tmp_path / "p.bin"
    prog = load(CORPUS / "xdp_drop.o")
    p.write_bytes(b"".join(i.encode() for i in prog.insns))
    status, out, _ = run(capsys, p, "--raw", "--json")
    assert status == 0
    doc = json.loads(out)
    assert [(e["code"], e["imm"]) for e in doc["insns"]] == [(i.code, i.imm) for i in prog.insns]
    assert doc["maps"] == [] and all(e["source"] is None for e in doc["insns"])


def test_real_entry_point_on_the_example():
    res = subprocess.run([sys.executable, "-m", "nfpjit.cli", "dump", "xlated",
                          str(ROOT / "examples" / "xdp_drop_tcp_ports.o")], capture_output=True, text=True)
    if res.returncode != 0 and "No module named nfpjit.cli.__main__" in res.stderr:
        res = subprocess.run([sys.executable, "-c", "import sys; from nfpjit.cli import entry; entry()", "dump",
                              "xlated", str(ROOT / "examples" / "xdp_drop_tcp_ports.o")],
                             capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "drop_count: hash" in res.stdout
    assert len([line for line in res.stdout.splitlines() if _INSN_LINE.match(line)]) == \
        len(load(ROOT / "examples" / "xdp_drop_tcp_ports.o").insns)


ASM_FILES = sorted((CORPUS / "asm").glob("*.s")) if (CORPUS / "asm").is_dir() else []


@pytest.mark.skipif(not ASM_FILES, reason="no assembly corpus yet")
def test_assembly_corpus_dumps(capsys):
    for path in ASM_FILES:
        prog = load(path)
        status, out, err = run(capsys, path, "--json")
        assert status == 0, (path.name, err)
        doc = json.loads(out)
        assert [(e["index"], e["code"]) for e in doc["insns"]] == [(pc, i.code) for pc, i in prog.slots()]

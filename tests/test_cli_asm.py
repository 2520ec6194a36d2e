"""``nfpjit asm``: bytecode output, listings, disassembly of raw files, error lines and exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfpjit.cli import main
from nfpjit.ebpf.asm import assemble_file
from nfpjit.ebpf.insn import decode, encode_program

CORPUS = Path(__file__).parent / "corpus" / "asm"
SOURCES = sorted(CORPUS.glob("*.s"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_output_is_raw_bytecode(path, tmp_path):
    out = tmp_path / "prog.bin"
    assert main(["asm", str(path), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data == encode_program(assemble_file(path).insns)
    assert len(data) % 8 == 0 and decode(data)  # and the decoder takes it


def test_listing_shows_slots_bytes_and_text(capsys):
    path = CORPUS / "gotol.s"
    assert main(["asm", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    insns = assemble_file(path).insns
    assert len(lines) == sum(i.width for i in insns)
    first = lines[0].split()
    assert first[0] == "0:" and bytes.fromhex("".join(first[1:9])) == insns[0].encode()
    assert lines[0].endswith("mov %r0, 1")


def test_lddw_listing_has_two_slots(tmp_path, capsys):
    src = tmp_path / "w.s"
    src.write_text("lddw r1, 0x1122334455667788\nmov r0, 0\nexit\n")
    assert main(["asm", str(src)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["0", "1", "2", "3"]
    assert lines[1].split(":", 1)[1].split() == ["00", "00", "00", "00", "44", "33", "22", "11"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_disassemble_round_trip(path, tmp_path):
    raw, text = tmp_path / "p.bin", tmp_path / "p.s"
    assert main(["asm", str(path), "-o", str(raw)]) == 0
    assert main(["asm", "--disassemble", str(raw), "-o", str(text)]) == 0
    again = tmp_path / "again.bin"
    assert main(["asm", str(text), "-o", str(again)]) == 0
    assert again.read_bytes() == raw.read_bytes()


def _one_error_line(capsys, status):
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nfpjit: error: "), captured.err
    return lines[0]


def test_garbage_is_one_error_line(tmp_path, capsys):
    src = tmp_path / "bad.s"
    src.write_text("mov r0, 1\n  jeq r1, 0, nowhere\nexit\n")
    line = _one_error_line(capsys, main(["asm", str(src)]))
    assert f"{src}:2:14: undefined label 'nowhere'" in line


def test_missing_file_and_bad_bytecode(tmp_path, capsys):
    _one_error_line(capsys, main(["asm", str(tmp_path / "none.s")]))
    raw = tmp_path / "odd.bin"
    raw.write_bytes(b"\x95" + bytes(10))
    line = _one_error_line(capsys, main(["asm", "--disassemble", str(raw)]))
    assert "not a multiple of 8" in line
    raw.write_bytes(bytes.fromhex("bf b1 00 00 00 00 00 00 95 00 00 00 00 00 00 00"))
    line = _one_error_line(capsys, main(["asm", "--disassemble", str(raw)]))
    assert "insn 0" in line and "r11" in line
    binary = tmp_path / "bin.s"
    binary.write_bytes(b"\xff\xfe\xfa")
    assert "UTF-8" in _one_error_line(capsys, main(["asm", str(binary)]))


def test_usage_errors(tmp_path, capsys):
    src = tmp_path / "a.s"
    src.write_text("exit\n")
    with pytest.raises(SystemExit) as info:
        main(["asm", str(src), "--target", "arm"])
    assert info.value.code == 2
    capsys.readouterr()
    assert main(["asm", "--disassemble", "--target", "nfp32", str(src)]) == 2
    assert "nfpjit disasm" in capsys.readouterr().err


def test_nfp32_target_without_the_isa_package(tmp_path, capsys, monkeypatch):
    src = tmp_path / "a.s"
    src.write_text("whatever\n")
    monkeypatch.setitem(sys.modules, "nfpjit.isa.asm", None)  # import now raises ModuleNotFoundError
    line = _one_error_line(capsys, main(["asm", "--target", "nfp32", str(src)]))
    assert "NFP-32 assembler is not available" in line


def test_nfp32_target_garbage_is_one_error_line(tmp_path, capsys):
    pytest.importorskip("nfpjit.isa.asm")
    src = tmp_path / "a.s"
    src.write_text("this is not nfp assembly ]]\n")
    _one_error_line(capsys, main(["asm", "--target", "nfp32", str(src)]))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_fuzz_cli_never_tracebacks(tmp_path, capsys, text):
    src = tmp_path / "f.s"
    src.write_text(text, encoding="utf-8")
    status = main(["asm", str(src), "-o", str(tmp_path / "f.bin")])
    captured = capsys.readouterr()
    if status == 0:
        assert captured.err == ""
    else:
        assert status == 1 and len(captured.err.splitlines()) == 1

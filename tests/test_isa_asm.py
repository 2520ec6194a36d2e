"""NFP-32 assembler and ``nfpjit disasm``: directives, labels, error positions, fuzzing, images."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.isa import TABLE, Bank, Cond, Gpr, Imm, Instruction, IsaError, Op, encode
from nfpjit.isa.asm import AsmData, AsmMap, assemble, assemble_image, parse
from nfpjit.isa.disasm import disassemble
from nfpjit.isa.table import COND_ALIASES

PROGRAM = """\
; a small program with every directive
.prog_type xdp
.stack 64
.map counters array key=4 value=8 entries=16
.map flows hash key=12 value=4 entries=1024 flags=1
.data tbl 1, 2, 0xff
.entry start

helper: rtn a5, defer=3
    nop
    nop
    nop
start:
    immed a1, map(flows)       ; index 1
    add a0, b1, 4
loop: sub --, a0, b1
    br.lo loop
    br.cs done, defer=1
    nop
done:
    halt 2
"""


def test_program_with_directives():
    r = assemble(PROGRAM, "prog.s")
    assert r.prog_type == "xdp" and r.stack_size == 64
    assert r.maps == (AsmMap("counters", "array", 4, 8, 16, 0, 0), AsmMap("flows", "hash", 12, 4, 1024, 1, 1))
    assert r.data == (AsmData("tbl", bytes([1, 2, 255])),)
    assert r.labels == {"helper": 0, "start": 4, "loop": 6, "done": 10}
    assert r.entry == 4
    assert len(r.words) == 11 and r.lines[0] == 9 and r.lines[-1] == 21
    a0, a1, b1 = Gpr(Bank.A, 0), Gpr(Bank.A, 1), Gpr(Bank.B, 1)
    assert r.instructions[4] == Instruction(Op.IMMED, dest=a1, imm=1)
    assert r.instructions[5] == Instruction(Op.ADD, dest=a0, a=b1, b=Imm(4))
    assert r.instructions[7] == Instruction(Op.BR, cond=Cond.LO, target=6)
    assert r.instructions[8] == Instruction(Op.BR, cond=Cond.HS, target=10, defer=1)
    assert r.map_refs == ((4, "flows"),)
    assert r.words == tuple(encode(i) for i in r.instructions)


def test_condition_aliases_resolve_to_the_canonical_condition():
    for alias, cond in COND_ALIASES.items():
        assert parse(f"br.{alias} 3") == parse(f"br.{cond.name.lower()} 3")


def test_mnemonics_and_suffixes_are_case_insensitive():
    assert parse("ADD a0, b1, 4") == parse("add a0, b1, 4")
    assert parse("br.EQ 1") == Instruction(Op.BR, cond=Cond.EQ, target=1)


def test_labels_may_share_a_line_and_stack_up():
    r = assemble("a: b: c: nop\n br.always a\n", "x.s")
    assert r.labels == {"a": 0, "b": 0, "c": 0}
    assert r.instructions[1].target == 0


def test_disassembly_roundtrips_a_program():
    r = assemble(PROGRAM)
    text = disassemble(r.words)
    assert assemble(text).words == r.words


@pytest.mark.parametrize("source,pos,needle", [
    ("frob a0", "1:1", "unknown mnemonic"),
    ("nop\n   add a0, a1", "2:4", "needs 3 operand"),
    ("add a0, a1, q7", "1:13", "expected an operand"),
    ("add a0, a99, b0", "1:9", "GPR index 99"),
    ("br.xx 0", "1:4", "unknown cond"),
    ("br 0", "1:1", "needs a .cond suffix"),
    ("nop.eq", "1:1", "takes no suffix"),
    ("br.eq nowhere", "1:7", "undefined label"),
    ("x: nop\nx: nop", "2:1", "defined twice"),
    ("br.eq 0, defer", "1:10", "needs a value"),
    ("br.eq 0, speed=2", "1:10", "unexpected operand"),
    ("br.eq 0, defer=1, defer=2", "1:19", "given twice"),
    ("alu_shf a0, a1, add, b2, shl", "1:26", "KIND AMOUNT"),
    ("alu_shf a0, a1, add, b2, sideways 3", "1:26", "unknown shift"),
    ("mem_read.ctm $in0, a1, b1, 0", "1:28", "count must be 1..8"),
    ("immed a0, map(nope)", "1:11", "unknown map"),
    (".map m hash key=4 value=4", "1:13", "needs entries"),
    (".map m cuckoo key=4 value=4 entries=1", "1:8", "unknown map type"),
    (".map m hash key=4 value=4 entries=x", "1:35", "expected entries"),
    (".map m hash key=4 value=4 entries=1\n.map m hash key=4 value=4 entries=1", "2:6", "declared twice"),
    (".data d 1, 256", "1:12", "out of range 0..255"),
    (".prog_type socket", "1:12", "unknown program type"),
    (".stack 8\n.stack 9", "2:1", "given twice"),
    (".entry nowhere\nnop", "1:8", "undefined entry label"),
    (".bogus 1", "1:1", "unknown directive"),
    ("add a0, b0 b1, 1", "1:9", "expected an operand"),
])
def test_errors_have_file_line_col(source, pos, needle):
    with pytest.raises(IsaError) as info:
        assemble(source, "bad.s")
    assert info.value.where == f"bad.s:{pos}", str(info.value)
    assert needle in info.value.message, str(info.value)


def test_label_target_beyond_the_code_is_reported():
    # a full 2**14-word program: the label after it is address 2**14, which 14 bits cannot hold
    with pytest.raises(IsaError) as info:
        assemble("br.always end\n" + "nop\n" * ((1 << 14) - 1) + "end:\n", "big.s")
    assert info.value.where == "big.s:1:1" and "target 16384 out of range" in info.value.message


def test_program_longer_than_the_code_space_is_reported():
    with pytest.raises(IsaError) as info:
        assemble("nop\n" * ((1 << 14) + 1), "big.s")
    assert info.value.where == f"big.s:{(1 << 14) + 1}:1" and "longer than" in info.value.message


# -- fuzzing: garbage in, only IsaError out ----------------------------------------------

VOCAB = sorted({e.mnemonic for e in TABLE} | {"a0", "b31", "a32", "$in3", "$out9", "n4", "*l$index1[3]",
                                              "*l$index0++", "*l$index9", "--", "0", "255", "256", "0x10000",
                                              "0b101", "007", ".map", ".data", ".entry", ".stack", ".prog_type",
                                              "hash", "key=4", "value=", "entries=1", "xdp", "defer=2", "signal=3",
                                              "ctx_swap", "invert", "width=hi", "byte=2", "shl 3", "ror indirect",
                                              "indirect", "map(m)", "L1", "L1:", ".eq", ".ctm", ".16x16", "add",
                                              "mov", ":", ",", ";", "=", "[", "]", "(", ")", "\t", "é", "\x00"})


@settings(max_examples=400)
@given(st.lists(st.lists(st.sampled_from(VOCAB), max_size=8).map(" ".join), max_size=6).map("\n".join))
def test_token_soup_raises_only_isa_errors(text):
    try:
        result = assemble(text, "fuzz.s")
    except IsaError as exc:
        assert exc.where and exc.where.startswith("fuzz.s:")
        return
    # whatever assembles must disassemble and reassemble to the same words
    assert assemble(disassemble(result.words)).words == result.words


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_isa_errors(text):
    try:
        assemble(text, "fuzz.s")
    except IsaError:
        pass


@settings(max_examples=200)
@given(st.sampled_from([e.mnemonic for e in TABLE]), st.text(max_size=40))
def test_mnemonic_with_garbage_operands_raises_only_isa_errors(mnemonic, rest):
    try:
        parse(f"{mnemonic} {rest}")
    except IsaError:
        pass


def test_parse_rejects_labels():
    with pytest.raises(IsaError, match="label"):
        parse("br.eq somewhere")


# -- images and the CLI ----------------------------------------------------------------------


def test_assemble_image_holds_code_maps_and_relocations(tmp_path):
    from nfpjit.isa.image import Image, RelocKind, relocate

    blob = assemble_image(PROGRAM.replace(".prog_type xdp", ".prog_type tc"), "prog.s", name="prog")
    image = Image.from_bytes(blob)
    r = assemble(PROGRAM)
    assert image.code == r.words
    assert image.metadata.entry == 4 and image.metadata.stack_size == 64
    assert image.metadata.prog_type.name == "TC"
    assert [m.name for m in image.maps] == ["counters", "flows"]
    assert [(x.address, x.kind, x.symbol) for x in image.relocations] == [(4, RelocKind.MAP_ID, "flows")]
    patched = relocate(image, {"flows": 1234}, {})
    from nfpjit.isa import decode

    assert decode(patched.code[4]).imm == 1234


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "prog.img"
    path.write_bytes(assemble_image(PROGRAM, "prog.s", name="prog"))
    return path


def _run_cli(*args):
    from nfpjit.cli import main
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def test_cli_disasm_text_reassembles(image_file):
    status, out, err = _run_cli("disasm", str(image_file))
    assert status == 0, err
    again = assemble(out, "out.s")
    original = assemble(PROGRAM)
    assert again.words == original.words
    assert again.entry == original.entry and again.stack_size == 64
    assert [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags) for m in again.maps] == \
        [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags) for m in original.maps]
    assert "map(flows)" in out
    assert "; prog.s:15:1" in out  # the line table points back at the source of each word


def test_cli_disasm_json(image_file):
    status, out, _ = _run_cli("disasm", str(image_file), "--json")
    assert status == 0
    doc = json.loads(out)
    r = assemble(PROGRAM)
    assert [int(i["word"], 16) for i in doc["instructions"]] == list(r.words)
    assert [i["address"] for i in doc["instructions"]] == list(range(len(r.words)))
    assert doc["instructions"][4]["text"] == "immed a1, map(flows)"
    assert doc["instructions"][5]["source"] == "prog.s:15:1"
    assert doc["entry"] == 4 and doc["prog_type"] == "xdp" and doc["isa"] == "nfp32"
    assert {m["name"] for m in doc["maps"]} == {"counters", "flows"}


def test_cli_disasm_raw_words(tmp_path):
    words = [encode(Instruction(Op.ADD, dest=Gpr(Bank.A, 0), a=Gpr(Bank.B, 1), b=Imm(4))), 0]
    path = tmp_path / "code.bin"
    path.write_bytes(b"".join(w.to_bytes(8, "little") for w in words))
    status, out, _ = _run_cli("disasm", "--raw", str(path))
    assert status == 0
    assert assemble(out).words == tuple(words)


@pytest.mark.parametrize("content,args,needle", [
    (b"garbage", (), "not an NFP-32 image"),
    (b"1234567", ("--raw",), "not a multiple of 8"),
    ((0xFF << 56).to_bytes(8, "little"), ("--raw",), "unknown opcode"),
])
def test_cli_disasm_errors_are_one_line(tmp_path, content, args, needle):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    status, out, err = _run_cli("disasm", *args, str(path))
    assert status == 1 and out == ""
    assert err.startswith("nfpjit: error: ") and needle in err and err.count("\n") == 1


def test_cli_missing_file():
    status, _, err = _run_cli("disasm", "/nonexistent/image")
    assert status == 1 and "cannot read" in err

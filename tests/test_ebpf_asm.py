"""The eBPF assembler and our disassembler: encodings, round trips, labels, maps, errors, fuzzing."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.asm import assemble, assemble_file
from nfpjit.ebpf.disasm import ALIASES, BY_MNEMONIC, disassemble, format_insn, spelling_of
from nfpjit.ebpf.insn import decode, encode_program
from nfpjit.ebpf.opcodes import MapType, ProgType
from nfpjit.errors import AsmError
from nfpjit.kernel import KernelError, KernelProgram, KernelRejected, kernel_available
from test_ebpf_decoder import valid_program

CORPUS = Path(__file__).parent / "corpus" / "asm"


def _hex(text: str) -> bytes:
    return encode_program(assemble(text).insns)


def _raw(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


# Expected encodings worked out by hand from RFC 9669's tables (opcode = op | source | class).
ENCODINGS = [
    ("mov %r0, 1", _raw(0xB7, 0, 0, 0, 1)),
    ("mov r0, 1", _raw(0xB7, 0, 0, 0, 1)),
    ("mov64 %r0, -1", _raw(0xB7, 0, 0, 0, -1)),
    ("mov32 %r3, %r4", _raw(0xBC, 3, 4)),
    ("add64 %r1, 0xffffffff", _raw(0x07, 1, 0, 0, -1)),
    ("add32 %r1, %r2", _raw(0x0C, 1, 2)),
    ("sub %r1, 3", _raw(0x17, 1, 0, 0, 3)),
    ("mul32 %r1, 3", _raw(0x24, 1, 0, 0, 3)),
    ("div %r1, %r2", _raw(0x3F, 1, 2)),
    ("sdiv %r1, %r2", _raw(0x3F, 1, 2, 1)),
    ("sdiv32 %r1, -3", _raw(0x34, 1, 0, 1, -3)),
    ("mod32 %r1, 7", _raw(0x94, 1, 0, 0, 7)),
    ("smod %r1, 7", _raw(0x97, 1, 0, 1, 7)),
    ("or %r1, 0x10", _raw(0x47, 1, 0, 0, 16)),
    ("and32 %r1, %r9", _raw(0x5C, 1, 9)),
    ("lsh %r1, 4", _raw(0x67, 1, 0, 0, 4)),
    ("rsh32 %r1, %r2", _raw(0x7C, 1, 2)),
    ("arsh %r1, 63", _raw(0xC7, 1, 0, 0, 63)),
    ("xor %r1, %r1", _raw(0xAF, 1, 1)),
    ("neg %r1", _raw(0x87, 1)),
    ("neg32 %r1", _raw(0x84, 1)),
    ("le16 %r1", _raw(0xD4, 1, 0, 0, 16)),
    ("be64 %r1", _raw(0xDC, 1, 0, 0, 64)),
    ("bswap32 %r1", _raw(0xD7, 1, 0, 0, 32)),
    ("swap16 %r1", _raw(0xD7, 1, 0, 0, 16)),
    ("movsx864 %r1, %r2", _raw(0xBF, 1, 2, 8)),
    ("movsx1664 %r1, %r2", _raw(0xBF, 1, 2, 16)),
    ("movsx3264 %r1, %r2", _raw(0xBF, 1, 2, 32)),
    ("movsx832 %r1, %r2", _raw(0xBC, 1, 2, 8)),
    ("movsx1632 %r1, %r2", _raw(0xBC, 1, 2, 16)),
    ("movsx16 %r1, %r2", _raw(0xBF, 1, 2, 16)),
    ("ldxw %r2, [%r1+4]", _raw(0x61, 2, 1, 4)),
    ("ldxdw %r2, [%r1]", _raw(0x79, 2, 1, 0)),
    ("ldxb %r2, [%r1 + 0x10]", _raw(0x71, 2, 1, 16)),
    ("ldxsh %r2, [%r10-2]", _raw(0x89, 2, 10, -2)),
    ("ldxsw %r2, [%r1+4]", _raw(0x81, 2, 1, 4)),
    ("ldxsb %r2, [%r1+4]", _raw(0x91, 2, 1, 4)),
    ("stxdw [%r10-8], %r1", _raw(0x7B, 10, 1, -8)),
    ("stxh [%r1+2], %r3", _raw(0x6B, 1, 3, 2)),
    ("stw [%r1+2], 5", _raw(0x62, 1, 0, 2, 5)),
    ("stb [%r1], -1", _raw(0x72, 1, 0, 0, -1)),
    ("lock add [%r1+0], %r2", _raw(0xDB, 1, 2, 0, 0x00)),
    ("lock add32 [%r1+4], %r2", _raw(0xC3, 1, 2, 4, 0x00)),
    ("stxxadddw [%r1+0], %r2", _raw(0xDB, 1, 2, 0, 0x00)),
    ("stxxaddw [%r1+0], %r2", _raw(0xC3, 1, 2, 0, 0x00)),
    ("lock fetch add [%r1+0], %r2", _raw(0xDB, 1, 2, 0, 0x01)),
    ("lock or [%r1+0], %r2", _raw(0xDB, 1, 2, 0, 0x40)),
    ("lock fetch and32 [%r1+0], %r2", _raw(0xC3, 1, 2, 0, 0x51)),
    ("lock xor [%r1+0], %r2", _raw(0xDB, 1, 2, 0, 0xA0)),
    ("lock xchg [%r1+8], %r2", _raw(0xDB, 1, 2, 8, 0xE1)),
    ("lock cmpxchg32 [%r1+0], %r2", _raw(0xC3, 1, 2, 0, 0xF1)),
    ("ldabsb 12", _raw(0x30, 0, 0, 0, 12)),
    ("ldabsh 12", _raw(0x28, 0, 0, 0, 12)),
    ("ldabsw [14]", _raw(0x20, 0, 0, 0, 14)),
    ("ldindb %r2, 0", _raw(0x50, 0, 2, 0, 0)),
    ("ldindw [%r3+4]", _raw(0x40, 0, 3, 0, 4)),
    ("call 5", _raw(0x85, 0, 0, 0, 5)),
    ("call ktime_get_ns", _raw(0x85, 0, 0, 0, 5)),
    ("call bpf_map_lookup_elem", _raw(0x85, 0, 0, 0, 1)),
    ("call helper 7", _raw(0x85, 0, 0, 0, 7)),
    ("call kfunc 1234", _raw(0x85, 0, 2, 0, 1234)),
    ("call runtime 9", _raw(0x85, 0, 2, 0, 9)),
    ("exit", _raw(0x95)),
    ("lddw %r1, 0x1122334455667788", _raw(0x18, 1, 0, 0, 0x55667788) + _raw(0, 0, 0, 0, 0x11223344)),
    ("lddw %r1, -1", _raw(0x18, 1, 0, 0, -1) + _raw(0, 0, 0, 0, -1)),
    ("lddw %r1, map_fd(3)", _raw(0x18, 1, 1, 0, 3) + _raw(0)),
    ("lddw %r1, map_value(3, 16)", _raw(0x18, 1, 2, 0, 3) + _raw(0, 0, 0, 0, 16)),
    ("lddw %r1, btf_id(77)", _raw(0x18, 1, 3, 0, 77) + _raw(0)),
    ("lddw %r1, map_idx(2)", _raw(0x18, 1, 5, 0, 2) + _raw(0)),
    ("lddw %r1, map_idx_value(2, 4)", _raw(0x18, 1, 6, 0, 2) + _raw(0, 0, 0, 0, 4)),
]


@pytest.mark.parametrize("text, expected", ENCODINGS, ids=[t for t, _ in ENCODINGS])
def test_encoding(text, expected):
    # Follow with enough exits that any branch in the line has somewhere to go.
    assert _hex(text + "\nexit") == expected + _raw(0x95)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("jeq %r1, 0x8, +1\nexit\nexit", _raw(0x15, 1, 0, 1, 8)),
        ("jne %r1, %r2, +0\nexit", _raw(0x5D, 1, 2, 0)),
        ("jset %r1, 3, +0\nexit", _raw(0x45, 1, 0, 0, 3)),
        ("jlt %r1, 3, +0\nexit", _raw(0xA5, 1, 0, 0, 3)),
        ("jsle %r1, -3, +0\nexit", _raw(0xD5, 1, 0, 0, -3)),
        ("jsge32 %r1, %r2, +0\nexit", _raw(0x7E, 1, 2, 0)),
        ("jeq32 %r1, 0, +0\nexit", _raw(0x16, 1, 0, 0, 0)),
        ("ja +1\nexit\nexit", _raw(0x05, 0, 0, 1)),
        ("ja32 +1\nexit\nexit", _raw(0x06, 0, 0, 0, 1)),
        ("gotol +0\nexit", _raw(0x06, 0, 0, 0, 0)),
        ("start: ja +0\njgt %r1, 2, start", _raw(0x05) + _raw(0x25, 1, 0, -2, 2)),
        ("jeq %r1, 0, out\nmov %r0, 1\nout: exit", _raw(0x15, 1, 0, 1, 0)),
        ("jeq %r1, 0, exit\nmov %r0, 1\nexit", _raw(0x15, 1, 0, 1, 0)),  # bpf_conformance's implicit label
        ("call fn\nexit\nfn: exit", _raw(0x85, 0, 1, 0, 1)),
        ("call local fn\nexit\nfn: exit", _raw(0x85, 0, 1, 0, 1)),
        ("call +1\nexit\nexit", _raw(0x85, 0, 1, 0, 1)),
        ("lddw %r2, func(cb)\nexit\ncb: exit", _raw(0x18, 2, 4, 0, 2) + _raw(0)),  # target = pc + imm + 1
        ("jeq %r1, 0, far\nlddw %r1, 5\nfar: exit", _raw(0x15, 1, 0, 2, 0)),
    ],
)
def test_jumps_and_labels(text, expected):
    assert _hex(text).startswith(expected)


@settings(max_examples=300)
@given(valid_program(max_len=10))
def test_assemble_disassemble_round_trip(insns):
    text = disassemble(insns)
    assert encode_program(assemble(text).insns) == encode_program(insns)


def test_every_mnemonic_and_alias_assembles():
    """Each mnemonic of the shared table (and each alias) turns into its own opcode."""
    shapes = {
        "alu": "{m} %r1, %r2", "movsx": "{m} %r1, %r2", "neg": "{m} %r1", "end": "{m} %r1",
        "jcond": "{m} %r1, 1, +0", "ja": "{m} +0", "gotol": "{m} +0", "call": "{m} 1", "exit": "{m}",
        "lddw": "{m} %r1, 1", "ldx": "{m} %r1, [%r2+0]", "st": "{m} [%r1+0], 1", "stx": "{m} [%r1+0], %r2",
        "atomic": "{m} [%r1+0], %r2", "ldabs": "{m} 1", "ldind": "{m} %r2, 1",
    }
    for name, sp in BY_MNEMONIC.items():
        insn = assemble(shapes[sp.form.value].format(m=name) + "\nexit").insns[0]
        assert spelling_of(insn).mnemonic == name
        assert format_insn(insn).startswith(name)
    for alias, canonical in ALIASES.items():
        sp = BY_MNEMONIC[canonical]
        a = assemble(shapes[sp.form.value].format(m=alias) + "\nexit").insns[0]
        b = assemble(shapes[sp.form.value].format(m=canonical) + "\nexit").insns[0]
        assert a == b


def test_program_metadata():
    prog = assemble(
        """
        ; a program with a map and a subprogram
        .type tc
        .section classifier
        .license GPL
        .map counters percpu_array key=4 value=8 entries=16
        .map flows hash key=16 value=8 entries=1024 flags=1
            lddw r1, map:flows
            lddw r2, map_value:counters+8
            call helper_fn
            exit
        helper_fn:
            mov r0, 0
            exit
        """,
        filename="dir/my_prog.s",
    )
    assert prog.name == "my_prog"
    assert prog.prog_type == ProgType.SCHED_CLS
    assert prog.section == "classifier"
    assert prog.license == "GPL"
    assert [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.origin) for m in prog.maps] == [
        ("counters", MapType.PERCPU_ARRAY, 4, 8, 16, 0, "asm"),
        ("flows", MapType.HASH, 16, 8, 1024, 1, "asm"),
    ]
    assert (prog.insns[0].src, prog.insns[0].imm) == (1, 1)       # MAP_FD, index of "flows"
    assert (prog.insns[1].src, prog.insns[1].imm, prog.insns[1].imm2) == (2, 0, 8)
    assert [(f.name, f.start_pc) for f in prog.functions] == [("my_prog", 0), ("helper_fn", 6)]
    assert prog.line_info[4].line == 10 and prog.line_info[4].text == "call helper_fn"
    # The result passes the decoder's checks.
    assert decode(encode_program(prog.insns)) == list(prog.insns)


# -- errors ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, where, message, hint",
    [
        ("mvo %r0, 1\nexit", "t.s:1:1", "unknown mnemonic 'mvo'", "did you mean mov"),
        ("exit\n  ldxq %r0, [%r1]", "t.s:2:3", "unknown mnemonic 'ldxq'", "ldx"),
        ("mov %r11, 1\nexit", "t.s:1:5", "bad register r11", "r0 .. r10"),
        ("mov %r0, %x1\nexit", "t.s:1:10", "expected a 32-bit immediate", None),
        ("mov %r0, 0x100000000\nexit", "t.s:1:10", "out of range", "lddw"),
        ("ldxw %r0, [%r1+40000]\nexit", "t.s:1:15", "out of range", "signed 16-bit"),
        ("jeq %r1, 0, nowhere\nexit", "t.s:1:13", "undefined label 'nowhere'", None),
        ("jeq %r1, 0, +5\nexit", "t.s:1:1", "outside the program", None),
        ("a: exit\na: exit", "t.s:2:1", "defined twice", "line 1"),
        ("mov %r0\nexit", "t.s:1:1", "takes 2 operands, got 1", "mov %rD"),
        ("lddw %r1, map:nope\nexit", "t.s:1:11", "undefined map 'nope'", None),
        # found by `nfpjit fuzz --target ebpf-asm` (an AttributeError before): a map name with a space in it
        ("lddw %r1, map:n v\nexit", "t.s:1:11", "bad map reference", "map:NAME"),
        (".map m hsah key=4 value=4 entries=1\nexit", "t.s:1:1", "unknown map type", "hash"),
        (".bogus\nexit", "t.s:1:1", "unknown directive", None),
        ("movsx864 %r1, 5\nexit", "t.s:1:15", "not an immediate", None),
        ("le8 %r1\nexit", "t.s:1:1", "unknown mnemonic", None),
        ("", "t.s:1:1", "no instructions", None),
        ("lock nand [%r1+0], %r2\nexit", "t.s:1:1", "unknown mnemonic 'lock nand'", None),
    ],
)
def test_errors(text, where, message, hint):
    with pytest.raises(AsmError) as info:
        assemble(text, filename="t.s")
    err = info.value
    assert err.where == where
    assert message in err.message
    if hint:
        assert hint in (err.hint or "")
    assert str(err).startswith(f"{where}: ")


def test_assemble_file_errors(tmp_path):
    with pytest.raises(AsmError, match="cannot read"):
        assemble_file(tmp_path / "missing.s")
    (tmp_path / "bin.s").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AsmError):
        assemble_file(tmp_path / "bin.s")


# -- fuzzing: only AsmError ever escapes ---------------------------------------------

_ALPHABET = st.sampled_from(list("%r0123456789abcdefxlmovjqe[]+-,:;# \t\n.()_") + ["lock ", "map:", "0x"])


@settings(max_examples=400)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fuzz_random_text(text):
    try:
        assemble(text)
    except AsmError:
        pass


def _corpus_sources() -> list[str]:
    return [p.read_text() for p in sorted(CORPUS.glob("*.s"))]


@settings(max_examples=300)
@given(st.data())
def test_fuzz_mutated_sources(data):
    sources = _corpus_sources() or [disassemble(assemble("mov %r0, 1\nexit").insns)]
    text = data.draw(st.sampled_from(sources))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    chars = list(text)
    for _ in range(rng.randint(1, 8)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        action = rng.randrange(4)
        if action == 0:
            del chars[i]
        elif action == 1:
            chars.insert(i, rng.choice("%r[]+-,:;#x0123456789 \n"))
        elif action == 2:
            chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz019")
        else:
            j = rng.randrange(len(chars))
            chars[i], chars[j] = chars[j], chars[i]
    try:
        assemble("".join(chars))
    except AsmError as exc:
        assert re.match(r"<input>:\d+:\d+: ", str(exc))


def test_corpus_assembles_and_round_trips():
    files = sorted(CORPUS.glob("*.s"))
    assert files, "tests/corpus/asm/ is empty"
    for path in files:
        prog = assemble_file(path)
        again = assemble(disassemble(prog))
        assert encode_program(again.insns) == encode_program(prog.insns), path.name


# -- the corpus headers, checked by the kernel (an independent oracle) -----------------

def _kernel_run(prog, packet: bytes):
    """Load ``prog`` in the kernel and run it once with BPF_PROG_TEST_RUN: (retval, "") or (None, why)."""
    try:
        with KernelProgram(prog) as kp:
            return kp.run(packet).r0, ""
    except KernelRejected as exc:
        return None, f"rejected: {exc.log[-800:]}"
    except KernelError as exc:
        return None, str(exc)


def _kernel_usable() -> bool:
    return kernel_available()[0]


def _header(text: str, key: str) -> str | None:
    m = re.search(rf"^# {key}: (.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


@pytest.mark.kernel
@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.s")), ids=lambda p: p.name)
def test_corpus_results_agree_with_kernel(path):
    text = path.read_text()
    result = _header(text, "result")
    assert result is not None, f"{path.name} has no '# result:' header"
    if not _kernel_usable():
        pytest.skip(f"bpf() with BPF_PROG_TEST_RUN is not usable here: {kernel_available()[1]}")
    packet = bytes.fromhex(_header(text, "packet") or "00" * 64)
    retval, log = _kernel_run(assemble_file(path), packet)
    assert retval is not None, log
    # The kernel reports the low 32 bits of r0.
    assert retval == int(result, 0) & 0xFFFF_FFFF


# -- conformance .data files -------------------------------------------------------------

CONFORMANCE = Path(__file__).parent / "conformance"


def test_conformance_files_load_and_match_their_derivation():
    import importlib.util

    from nfpjit.testing.conformance import load_directory

    spec = importlib.util.spec_from_file_location("derive_results", CONFORMANCE / "derive_results.py")
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    cases = {c.name: c for c in load_directory(CONFORMANCE)}
    assert len(cases) >= 40
    derived = {name: (asm, mem, expected) for name, _c, asm, mem, expected in derive.CASES}
    assert set(cases) == set(derived)
    for name, case in cases.items():
        asm, mem, expected = derived[name]
        assert case.memory == bytes.fromhex(mem.replace(" ", ""))
        assert case.program.insns == assemble(asm).insns
        if isinstance(expected, str):
            assert case.result is None and case.error
        else:
            assert case.error is None and case.result == expected
    # The set covers the instruction groups it promises.
    mnemonics = {format_insn(i).split(" [")[0].split(" %")[0].split(" +")[0]
                 for c in cases.values() for i in c.program.insns}
    for needed in ("sdiv", "smod32", "movsx864", "ldxsb", "bswap16", "ja32", "lock cmpxchg", "lock xchg32",
                   "lock fetch add", "jeq32", "call", "arsh32", "be16", "le32", "mod32"):
        assert any(m.startswith(needed) for m in mnemonics), needed


def test_conformance_parse_forms_and_errors():
    from nfpjit.errors import LoadError
    from nfpjit.testing.conformance import parse_data

    case = parse_data("# c\n-- asm\nmov %r0, %r2\nexit\n-- mem\n00 01\n02\n-- result 0x3\n", filename="x/two.data")
    assert (case.name, case.memory, case.result, case.error) == ("two", b"\x00\x01\x02", 3, None)
    case = parse_data("-- asm\nexit\n-- error\nout of bounds\n")
    assert case.result is None and case.error_matches("load OUT OF BOUNDS at 0x10")
    assert not case.error_matches("division")
    bad = [
        ("-- mem\n00\n", "no '-- asm'"),
        ("-- asm\nexit\n", "exactly one of"),
        ("-- asm\nexit\n-- result 1\n-- error x\n", "exactly one of"),
        ("-- asm\nexit\n-- mem\n0g\n-- result 1\n", "bad memory byte"),
        ("-- asm\nexit\n-- result banana\n", "bad result"),
        ("-- asm\nexit\n-- frob\n", "unknown section"),
        ("mov r0, 1\n-- asm\nexit\n-- result 1\n", "before the first section"),
        ("-- asm\nexit\n-- error (\n", "bad error pattern"),
    ]
    for text, message in bad:
        with pytest.raises(LoadError, match=re.escape(message)):
            parse_data(text, filename="bad.data")
    # Assembly errors point at the line of the .data file.
    with pytest.raises(AsmError) as info:
        parse_data("# header\n-- asm\nmov %r0, 1\nmvo %r0, 2\nexit\n-- result 1\n", filename="f.data")
    assert info.value.where == "f.data:4:1"


# -- whole programs from clang objects -------------------------------------------------------

def _elf_programs():
    from nfpjit.ebpf.loader import list_programs

    out = []
    for obj in sorted((Path(__file__).parent / "corpus").glob("*.o")):
        for section, _name in list_programs(obj):
            out.append((obj, section))
    return out


@pytest.mark.parametrize("obj, section", _elf_programs(), ids=lambda v: getattr(v, "name", v))
def test_program_text_round_trips_clang_objects(obj, section):
    """program_text of a loaded ELF program assembles back to the same code, maps, functions and metadata."""
    from nfpjit.ebpf.disasm import program_text
    from nfpjit.ebpf.loader import load

    prog = load(obj, section=section)
    again = assemble(program_text(prog), filename=f"{prog.name}.s")
    assert again.insns == prog.insns
    fields = lambda m: (m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.initial)  # noqa: E731
    assert [fields(m) for m in again.maps] == [fields(m) for m in prog.maps]
    assert again.functions == prog.functions
    assert (again.name, again.prog_type, again.license) == (prog.name, prog.prog_type, prog.license)
    assert again.section == prog.section


def test_conformance_runner_sections_are_skipped():
    from nfpjit.testing.conformance import parse_data

    text = ("# header\n-- asm\n# comment inside\nmov %r0, 0\nmov %r1, 0x42\ncall local f\nexit\n\nf:\n"
            "mov %r0, %r1\nexit\n-- result\n0x42\n-- no register offset\ncall instruction\n-- no jit\nwhy\n")
    case = parse_data(text, filename="c.data")
    assert case.result == 0x42 and case.program.insns[2].is_local_call


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["-- asm\n", "-- mem\n", "-- result\n", "-- error\n", "-- result 0x5\n",
                                 "exit\n", "mov %r0, 1\n", "00 11\n", "0x3\n", "zz\n", "# c\n", "(\n",
                                 "-- no jit\n", "-- bogus\n", "jeq %r1, 0, +9\n"]), max_size=12).map("".join))
def test_fuzz_conformance_parser(text):
    from nfpjit.errors import LoadError
    from nfpjit.testing.conformance import parse_data

    try:
        case = parse_data(text)
    except (LoadError, AsmError):
        return
    assert (case.result is None) != (case.error is None)


def test_corpus_covers_v4_alu32_jmp32_packet_loads_and_calls():
    from nfpjit.ebpf.disasm import SPELLINGS, Form

    used = set()
    local_call = False
    for path in sorted(CORPUS.glob("*.s")):
        for insn in assemble_file(path).insns:
            used.add(spelling_of(insn).mnemonic)
            local_call |= insn.is_local_call
    wanted = {s.mnemonic for s in SPELLINGS
              if s.form in (Form.MOVSX, Form.ATOMIC, Form.GOTOL, Form.LDABS, Form.LDIND)
              or s.mnemonic.startswith(("sdiv", "smod", "ldxs", "bswap"))
              or (s.form is Form.JCOND and s.mnemonic.endswith("32"))
              or (s.form is Form.ALU and s.mnemonic.endswith("32") and s.off == 0)}
    assert wanted - used == set()
    assert local_call


def _conformance_in_kernel(case, high: bool):
    """Run a conformance case in the kernel: an XDP wrapper copies the memory block onto its stack,
    calls the case's program as a BPF-to-BPF function with r1 = block (0 if empty), r2 = length, and
    returns the low or the high half of r0 (the kernel reports 32 bits)."""
    from nfpjit.ebpf.insn import Insn
    from nfpjit.ebpf.program import Program

    mem = case.memory
    pro = []
    if mem:
        padded = mem + bytes(-len(mem) % 8)
        base = -len(padded)
        for i in range(0, len(padded), 8):
            pro.append(Insn.ld_imm64(3, int.from_bytes(padded[i:i + 8], "little")))
            pro.append(Insn(0x7B, 10, 3, base + i))                      # stxdw [r10+off], r3
        pro += [Insn(0xBF, 1, 10), Insn(0x07, 1, 0, 0, base)]             # r1 = r10 + base
    else:
        pro.append(Insn(0xB7, 1, 0, 0, 0))
    pro.append(Insn(0xB7, 2, 0, 0, len(mem)))
    pro.append(Insn(0x85, 0, 1, 0, 2))                                    # call the case's program
    pro.append(Insn(0x77, 0, 0, 0, 32) if high else Insn(0xBC, 0, 0))     # rsh r0, 32 | mov32 r0, r0
    pro.append(Insn(0x95))
    prog = Program("conformance", tuple(pro) + case.program.insns)
    return _kernel_run(prog, bytes(64))


@pytest.mark.kernel
def test_conformance_results_agree_with_kernel():
    from nfpjit.testing.conformance import load_directory

    if not _kernel_usable():
        pytest.skip(f"bpf() with BPF_PROG_TEST_RUN is not usable here: {kernel_available()[1]}")
    for case in load_directory(CONFORMANCE):
        lo, log = _conformance_in_kernel(case, high=False)
        if case.error is not None:
            assert lo is None, f"{case.name}: the kernel accepted a program expected to fault"
            continue
        assert lo is not None, f"{case.name}: {log}"
        hi, log = _conformance_in_kernel(case, high=True)
        assert (hi << 32 | lo) == case.result, case.name


@pytest.mark.slow
@settings(max_examples=5000)
@given(valid_program(max_len=16))
def test_assemble_disassemble_round_trip_big(insns):
    assert encode_program(assemble(disassemble(insns)).insns) == encode_program(insns)


@pytest.mark.slow
@settings(max_examples=5000)
@given(st.lists(_ALPHABET, max_size=120).map("".join))
def test_fuzz_random_text_big(text):
    try:
        assemble(text)
    except AsmError:
        pass

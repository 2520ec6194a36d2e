"""The driver (image building, simulator adapter, compile()) and the compile / dump jited / coverage CLIs.

Image-building tests use hand-written NFP-32 assembly next to an eBPF program with the same
meaning, so they do not depend on the lowering; the end-to-end tests compile real programs and
check the simulator against the reference interpreter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar  # module level: dataclasses resolves string annotations here

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.cli import main
from nfpjit.driver import CompileError, build_image, line_table, run_sim, to_run_result
from nfpjit.ebpf.asm import assemble as ebpf_assemble
from nfpjit.ebpf.insn import encode_program
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.opcodes import InsnClass
from nfpjit.ebpf.program import SourceLoc
from nfpjit.isa.asm import assemble as nfp_assemble
from nfpjit.isa.image import Image, RelocKind, Relocation, SymbolKind, read_image
from nfpjit.isa.sim import simulate
from nfpjit.testing import compare_results, crafted_packets

from conftest import CORPUS, ROOT

EXAMPLE = ROOT / "examples" / "xdp_drop_tcp_ports.o"


@dataclass(frozen=True)
class FakeAssembled:
    """The shape of MProgram.assemble()'s result, filled from the NFP-32 assembler."""

    words: tuple
    line_pcs: tuple = ()
    relocations: tuple = ()
    symbols: tuple = ()
    entry: int = 0


COUNTER_EBPF = """
.type xdp
.map counters array key=4 value=8 entries=4
    ldxw r2, [r1+16]
    stxw [r10-4], r2
    mov r2, r10
    add r2, -4
    lddw r1, map:counters
    call 1
    mov r1, 1
    jeq r0, 0, drop
    mov r2, 1
    lock add [r0+0], r2
    mov r0, 2
    exit
drop:
    mov r0, 1
    exit
"""


def _counter_ebpf():
    try:
        return ebpf_assemble(COUNTER_EBPF, filename="counter.s")
    except nfpjit.errors.NfpjitError as exc:  # the eBPF assembler spells atomics its own way
        pytest.skip(f"eBPF assembler syntax differs: {exc}")


# What the JIT could make of COUNTER_EBPF (after tests/nfp_asm/packet_counter.s, with r0 = a1:a0 set).
COUNTER_NFP = """
.prog_type xdp
.stack 8
.map counters array key=4 value=8 entries=4
    csr_rd a5, rx_queue
    mov *l$index0, a5
    immed a4, 0
    immed a2, map(counters)
    br.always 0x3f00, defer=1
    load_addr a30, back
back:
    or --, a0, b1
    br.eq drop
    immed $out0, 1
    immed $out1, 0
    mem_add64.emem $out0, a1, b0, 2, ctx_swap
    immed a0, 2
    immed a1, 0
    halt 2
drop:
    immed a0, 1
    immed a1, 0
    halt 1
"""


def _counter_image():
    """COUNTER_NFP as if the JIT had produced it: map ids by relocation."""
    asm = nfp_assemble(COUNTER_NFP, "counter_nfp.s")
    program = _counter_ebpf()
    relocs = tuple(Relocation(addr, RelocKind.MAP_ID, name) for addr, name in asm.map_refs)
    # NFP addresses 0.. from eBPF pc 0, the XDP_PASS tail from pc 10, the drop path from pc 13
    n = len(asm.words)
    lines = tuple((a, 0 if a < n - 6 else 10 if a < n - 3 else 13) for a in range(n))
    fake = FakeAssembled(words=asm.words, line_pcs=lines, relocations=relocs)
    return program, asm, build_image(program, fake, stack_size=8)


def test_build_image_maps_metadata_symbols_and_roundtrip():
    program, asm, image = _counter_image()
    assert [m.name for m in image.maps] == [m.name for m in program.maps]
    (m,) = image.maps
    d = program.maps[0]
    assert (m.id, m.key_size, m.value_size, m.max_entries, m.type.name.lower()) == \
        (0, d.key_size, d.value_size, d.max_entries, d.type.kernel_name)
    assert image.metadata.source_tag == hashlib.sha256(encode_program(program.insns)).digest()
    assert image.metadata.stack_size == 8 and image.metadata.name == program.name
    assert image.symbol("counters").kind == SymbolKind.MAP
    subs = [s for s in image.symbols if s.kind == SymbolKind.SUBPROG]
    assert len(subs) == 1 and subs[0].address == 0 and subs[0].size == len(asm.words)
    again = Image.from_bytes(image.to_bytes())
    assert again == image


def test_run_sim_matches_interpreter_with_persistent_maps():
    program, _asm, image = _counter_image()
    from nfpjit.ebpf.maps import MapStore
    from nfpjit.ebpf.result import PacketIn

    store = MapStore.from_program(program)
    state = None
    for q in (0, 1, 1, 3, 7):
        pin = PacketIn(crafted_packets(1)[0], rx_queue_index=q)
        want = run(program, pin, maps=store)
        got = run_sim(image, pin, maps_in=state)
        state = got.maps
        assert got.fault is None
        assert compare_results(want, got) == []
        assert got.cycles and got.cycles > 0


def test_line_table_from_line_pcs_and_source():
    program, _asm, _image = _counter_ebpf(), None, None
    program = nfpjit.ebpf.program.Program(program.name, program.insns, maps=program.maps, functions=program.functions,
                                          line_info={0: SourceLoc("c.c", 3, 5, "x = 1;"), 5: SourceLoc("c.c", 4, 2, "y")})
    table = line_table(program, [(0, -1), (1, 0), (2, 0), (3, 2), (4, 5), (5, 5), (6, 6)])
    assert [(e.address, e.insn_index) for e in table] == [(0, -1), (1, 0), (3, 2), (4, 5), (6, 6)]
    assert [(e.file, e.line) for e in table] == [("", 0), ("c.c", 3), ("c.c", 3), ("c.c", 4), ("c.c", 4)]
    # with the code size, addresses the lowering gave no pc are nobody's (-1)
    table = line_table(program, [(1, 0), (2, 0), (3, 2), (5, 5), (6, 6)], 8)
    assert [(e.address, e.insn_index) for e in table] == [(0, -1), (1, 0), (3, 2), (4, -1), (5, 5), (6, 6), (7, -1)]


def test_to_run_result_keeps_fault_position():
    # an EMEM read from address 0 faults; the line table says which eBPF insn it came from
    asm = nfp_assemble("immed a0, 0\nmem_read.emem $in0, a0, b0, 1, ctx_swap\nhalt 2\n", "f.s")
    program = _counter_ebpf()
    image = build_image(program, FakeAssembled(words=asm.words, line_pcs=((0, 3), (1, 7), (2, 8))))
    sim = simulate(image, b"\0" * 64)
    if sim.fault is None:
        pytest.skip("the simulator accepts an EMEM read at 0")
    res = to_run_result(sim)
    assert res.fault is not None and res.fault.pc == 7 and sim.fault.kind.name.lower() in res.fault.reason


def test_compile_rejects_bad_arguments():
    with pytest.raises(nfpjit.errors.UsageError):
        nfpjit.compile(42)
    with pytest.raises(nfpjit.errors.UsageError):
        nfpjit.compile(_counter_ebpf(), opt_level=7)


# -- end to end (needs the lowering) ---------------------------------------------------------

def _jit_ready() -> bool:
    try:
        from nfpjit.jit.lower import supported_opcodes
    except ImportError:
        return False
    return bool(supported_opcodes())


need_jit = pytest.mark.skipif(not _jit_ready(), reason="nfpjit.jit lowering not available yet")

SIMPLE = """
.type xdp
    mov r0, 2
    exit
"""


@need_jit
def test_compile_cli_writes_image_and_summary(tmp_path, capsys):
    src = tmp_path / "pass.s"
    src.write_text(SIMPLE)
    out = tmp_path / "pass.nffw"
    assert main(["compile", str(src), "-o", str(out)]) == 0
    line = capsys.readouterr().out
    image = read_image(out)
    program = nfpjit.load(src)
    assert f"{len(program.insns)} eBPF insns" in line and f"{len(image.code)} NFP insns" in line
    pkt = crafted_packets(1)[0]
    assert compare_results(run(program, pkt), run_sim(image, pkt)) == []


@need_jit
def test_compile_cli_json_and_default_output(tmp_path, capsys):
    src = tmp_path / "p.s"
    src.write_text(SIMPLE)
    assert main(["compile", str(src), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    image = read_image(tmp_path / "p.nffw")
    assert doc["ok"] and doc["nfp_insns"] == len(image.code) and doc["ebpf_insns"] == 2
    assert doc["tag"] == image.metadata.source_tag.hex()
    # the schema documented in docs/jit.md
    assert set(doc) == {"ok", "output", "program", "section", "profile", "opt_level", "passes", "tag", "ebpf_insns",
                        "nfp_insns", "stack", "maps", "relocations", "seconds", "diagnostics"}
    assert doc["stack"] == image.metadata.stack_size and doc["relocations"] == len(image.relocations)


def test_compile_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "missing.o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nfpjit: error:") and "Traceback" not in err
    bad = tmp_path / "bad.s"
    bad.write_text(".type xdp\n    frob r0\n")
    assert main(["compile", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("nfpjit: error:")
    assert main(["compile", str(bad), "--profile", str(tmp_path / "nope.toml")]) == 2


@need_jit
def test_compile_rejection_lists_diagnostics(capsys):
    obj = CORPUS / "percpu_array.o"
    if not obj.exists():
        pytest.skip("corpus object percpu_array.o missing")
    with pytest.raises(CompileError) as info:
        nfpjit.compile(obj, profile="nfp-kernel")  # per-CPU maps: the real card's rule
    report = info.value.report
    assert report is not None and not report.ok
    assert "map-type" in str(info.value)
    assert main(["compile", str(obj), "--json", "-o", "/dev/null", "--profile", "nfp-kernel"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["report"]["ok"] is False


@need_jit
def test_dump_jited_from_object_and_image_agree(tmp_path, capsys):
    src = tmp_path / "p.s"
    src.write_text(SIMPLE)
    out = tmp_path / "p.nffw"
    assert main(["compile", str(src), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["dump", "jited", str(src), "--json"]) == 0
    from_obj = json.loads(capsys.readouterr().out)
    assert main(["dump", "jited", str(out), "--json"]) == 0
    from_img = json.loads(capsys.readouterr().out)
    image = read_image(out)
    # every code word is listed exactly once, in order, in both views
    for doc in (from_obj, from_img):
        words = [int(n["word"], 16) for b in doc["insns"] for n in b["nfp"]]
        assert words == list(image.code)
    assert [b["index"] for b in from_obj["insns"]] == [b["index"] for b in from_img["insns"]]
    # the object view names the eBPF instructions; each one comes from the program
    program = nfpjit.load(src)
    for b in from_obj["insns"]:
        if b["index"] >= 0:
            assert b["index"] in program.index_at_pc and b["text"].startswith(f"({program.at(b['index']).code:02x})")
    assert main(["dump", "jited", str(out), "--opcodes"]) == 0
    text = capsys.readouterr().out
    assert all(f"{w:016x}" in text for w in image.code)


def test_dump_jited_rejects_corrupt_image(tmp_path, capsys):
    _program, _asm, image = _counter_image()
    data = bytearray(image.to_bytes())
    data[-40] ^= 0xFF
    bad = tmp_path / "bad.nffw"
    bad.write_bytes(bytes(data))
    assert main(["dump", "jited", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("nfpjit: error:")


def test_dump_jited_image_without_program_shows_listing(tmp_path, capsys):
    _program, asm, image = _counter_image()
    path = tmp_path / "c.nffw"
    path.write_bytes(image.to_bytes())
    assert main(["dump", "jited", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [int(n["word"], 16) for b in doc["insns"] for n in b["nfp"]] == list(asm.words)
    assert [b["index"] for b in doc["insns"]] == [0, 10, 13]
    assert doc["maps"][0]["name"] == "counters"
    texts = [n["text"] for b in doc["insns"] for n in b["nfp"]]
    assert any("map(counters)" in t for t in texts)


def test_coverage_lists_every_opcode_the_corpus_uses(capsys):
    from nfpjit.cli.coverage import all_opcodes
    from nfpjit.ebpf.loader import list_programs

    codes = all_opcodes()
    seen = set()
    for obj in sorted(CORPUS.glob("*.o")):
        try:
            for section, _ in list_programs(obj):
                seen |= {i.code for i in nfpjit.load(obj, section=section).insns}
        except nfpjit.errors.NfpjitError:
            continue
    for path in sorted((CORPUS / "asm").glob("*.s")):
        try:
            seen |= {i.code for i in nfpjit.load(path).insns}
        except nfpjit.errors.NfpjitError:
            continue
    assert seen and seen <= set(codes), sorted(hex(c) for c in seen - set(codes))
    for code, (cls, _name) in codes.items():
        assert code & 0x07 == cls
    if not _jit_ready():
        return
    assert main(["coverage", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    from nfpjit.jit.lower import supported_opcodes

    assert doc["total"] == len(codes)
    assert doc["supported"] == len(supported_opcodes() & set(codes))
    assert {o["code"] for o in doc["opcodes"] if o["supported"]} == supported_opcodes() & set(codes)
    assert InsnClass.JMP | 0x90 in supported_opcodes()  # exit


@need_jit
def test_run_engine_sim_matches_ref_engine(capsys):
    obj = CORPUS / "mac_swap_tx.o"
    if not obj.exists() or not nfpjit.check(obj).ok:
        pytest.skip("mac_swap_tx.o missing or not offloadable")
    frames = [f.hex() for f in crafted_packets()[:8]]
    args = ["run", str(obj), "--json"] + [a for f in frames for a in ("--packet", f)]
    docs = {}
    for engine in ("ref", "sim"):
        assert main(args + ["--engine", engine]) == 0
        docs[engine] = json.loads(capsys.readouterr().out)
    for ref, sim in zip(docs["ref"]["packets"], docs["sim"]["packets"], strict=True):
        assert (sim["action"], sim["data"], sim["fault"]) == (ref["action"], ref["data"], ref["fault"])
        assert sim["r0"] & 0xFFFF_FFFF == ref["r0"] & 0xFFFF_FFFF
    assert docs["sim"]["maps"] == docs["ref"]["maps"]


@need_jit
def test_run_engine_sim_refuses_what_the_profile_rejects(capsys):
    obj = CORPUS / "lpm_trie.o"     # default has no LPM trie routine yet
    if not obj.exists():
        pytest.skip("lpm_trie.o missing")
    assert main(["run", str(obj), "--engine", "sim", "--packet", "00" * 60]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nfpjit: error:") and "map-type" in err


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_compile_random_bytecode_never_crashes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "r.bin"
    path.write_bytes(data)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["compile", "--raw", str(path), "-o", str(path.with_suffix(".nffw"))])
    if status:
        assert err.getvalue().startswith("nfpjit: error:")
    else:
        read_image(path.with_suffix(".nffw"))


@need_jit
def test_a_crash_in_the_lowering_is_a_compiler_bug_not_a_traceback(monkeypatch, tmp_path, capsys):
    import importlib

    from nfpjit.driver import CompilerBug

    lower_mod = importlib.import_module("nfpjit.jit.lower")  # the package re-exports a function of that name

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(lower_mod, "lower", broken)
    src = tmp_path / "p.s"
    src.write_text(SIMPLE)
    with pytest.raises(CompilerBug, match="ZeroDivisionError: boom"):
        nfpjit.compile(src)
    assert not isinstance(CompilerBug("x"), nfpjit.errors.UnsupportedError)  # never counted as "not supported"
    assert main(["compile", str(src)]) == 1
    assert "internal error in the lowering" in capsys.readouterr().err


@need_jit
def test_dump_jited_names_relocated_maps_and_routines(capsys):
    obj = CORPUS / "hash_counter.o"
    if not obj.exists():
        pytest.skip("hash_counter.o missing")
    try:
        image = nfpjit.compile(obj, profile="permissive").image
    except nfpjit.errors.UnsupportedError as exc:
        pytest.skip(f"not compiled yet: {exc}")
    assert image.relocations
    assert main(["dump", "jited", str(obj), "--profile", "permissive", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    text_at = {n["address"]: n["text"] for b in doc["insns"] for n in b["nfp"]}
    for r in image.relocations:
        want = f"map({r.symbol})" if r.kind == RelocKind.MAP_ID else r.symbol
        assert want in text_at[r.address], (r, text_at[r.address])


@need_jit
def test_passes_run_and_are_recorded_and_verified(tmp_path):
    from dataclasses import dataclass as _dc

    from nfpjit.passes.manager import Pass, PassError

    @_dc(frozen=True)
    class DropFirst(Pass):
        """Deletes the first instruction: the image must show it gone and the pass recorded."""

        name: ClassVar[str] = "drop-first"

        def run(self, unit) -> bool:
            body = unit.functions[0].body
            i = next(k for k, m in enumerate(body) if m.instr is not None)
            del body[i]
            return True

    @_dc(frozen=True)
    class BreakLabels(Pass):
        name: ClassVar[str] = "break-labels"

        def run(self, unit) -> bool:
            for f in unit.functions:
                f.body[:] = [m for m in f.body if m.label is None]
            return True

    src = tmp_path / "p.s"
    src.write_text(".type xdp\n    mov r0, 1\n    jeq r0, 1, out\n    mov r0, 2\nout:\n    exit\n")
    plain = nfpjit.compile(src, opt_level=0)
    dropped = nfpjit.driver.compile(src, passes=[DropFirst()])
    assert len(dropped.image.code) == len(plain.image.code) - 1
    assert dropped.image.code[0] == plain.image.code[1]  # (later words differ: branch targets moved up by one)
    assert dropped.image.metadata.passes == ("drop-first",)
    assert [s.name for s in dropped.stats.passes] == ["drop-first"] and dropped.stats.passes[0].changed
    with pytest.raises(PassError, match="break-labels"):
        nfpjit.driver.compile(src, passes=[BreakLabels()], verify_each=True)
    # without --verify-each the broken code is caught when the image is assembled, with a hint
    with pytest.raises(nfpjit.errors.UnsupportedError, match="verify-each"):
        nfpjit.driver.compile(src, passes=[BreakLabels()])

"""The committed corpus objects are what tools/build_corpus.py builds from the sources.

Rebuilding every .c with the local clang must give the same instructions,
maps and line info as the committed .o (the objects are the test inputs of
everybody else, so a drifted source would silently test something else).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from nfpjit.ebpf.loader import list_programs, load
from nfpjit.ebpf.opcodes import InsnClass
from tests.conftest import CORPUS, ROOT, need_tool

SOURCES = sorted(CORPUS.glob("*.c"))


def _builder():
    spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "tools" / "build_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_source_has_an_object_and_back():
    assert {p.stem for p in SOURCES} == {p.stem for p in CORPUS.glob("*.o")}
    assert (ROOT / "examples" / "xdp_drop_tcp_ports.o").read_bytes() == (CORPUS / "xdp_drop_tcp_ports.o").read_bytes()


def test_sources_use_only_the_corpus_header():
    for src in SOURCES:
        includes = re.findall(r'#include\s*[<"]([^>"]+)[>"]', src.read_text())
        assert includes == ["bpf_defs.h"], src.name


def test_build_flags_from_comment_line():
    b = _builder()
    assert b.extra_flags(CORPUS / "alu32_heavy.c") == ["-mcpu=v3"]
    assert b.extra_flags(CORPUS / "xdp_pass.c") == []
    cmd = b.command(CORPUS / "alu32_heavy.c", Path("/tmp/x.o"))
    assert cmd[-4:] == ["-c", "alu32_heavy.c", "-o", "/tmp/x.o"] and "-mcpu=v3" in cmd and "-g" in cmd


def test_alu32_object_really_uses_32bit_ops():
    prog = load(CORPUS / "alu32_heavy.o")
    classes = {i.cls for i in prog.insns}
    assert InsnClass.ALU in classes and InsnClass.JMP32 in classes


def _clang_version(text: str) -> str | None:
    m = re.search(r"clang version (\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_rebuild_gives_identical_programs(src, tmp_path):
    import subprocess

    clang = need_tool("clang")
    # the DWARF producer string says which clang built the committed object
    built_with = _clang_version((CORPUS / (src.stem + ".o")).read_bytes().decode("latin-1"))
    local = _clang_version(subprocess.run([clang, "--version"], capture_output=True, text=True).stdout)
    if built_with != local:
        pytest.skip(f"corpus was built with clang {built_with}, this is clang {local}: code may differ")
    out = tmp_path / (src.stem + ".o")
    _builder().build(src, out, clang)
    committed = CORPUS / (src.stem + ".o")
    assert list_programs(out) == list_programs(committed)
    for section, _name in list_programs(committed):
        a, b = load(committed, section=section), load(out, section=section)
        assert a.insns == b.insns
        assert a.maps == b.maps
        assert a.functions == b.functions
        assert a.line_info == b.line_info


def test_corpus_programs_contain_what_their_names_promise():
    from nfpjit.ebpf.opcodes import AluOp, Helper, Mode, Source

    def helpers(name, section=None):
        return {i.imm for i in load(CORPUS / f"{name}.o", section=section).insns if i.is_helper_call}

    loop = load(CORPUS / "bounded_loop.o")
    assert any(i.is_branch and i.jump_offset() < 0 for i in loop.insns), "bounded_loop must keep a back edge"
    assert any(i.cls == InsnClass.STX and i.mode == Mode.ATOMIC for i in load(CORPUS / "atomic_add.o").insns)
    assert Helper.xdp_adjust_head in helpers("ipip_encap")
    assert Helper.ktime_get_ns in helpers("ktime")
    assert Helper.tail_call in helpers("tail_call")
    assert Helper.redirect in helpers("redirect")
    assert {m.type.kernel_name for m in load(CORPUS / "percpu_array.o").maps} == {"percpu_array"}
    assert {m.type.kernel_name for m in load(CORPUS / "lpm_trie.o").maps} == {"lpm_trie"}
    assert {m.type.kernel_name for m in load(CORPUS / "tail_call.o").maps} == {"prog_array"}
    # the tutorial-style programs (issue 11) keep the features they were written for
    assert {m.type.kernel_name for m in load(CORPUS / "pcpu_port_filter.o").maps} == {"percpu_array"}
    assert "lpm_trie" in {m.type.kernel_name for m in load(CORPUS / "lpm_auto_block.o").maps}
    for name in ("maglev_lb", "conntrack_lite", "syn_flood_guard", "dns_filter"):
        assert "lru_hash" in {m.type.kernel_name for m in load(CORPUS / f"{name}.o").maps}, name
    assert Helper.ktime_get_ns in helpers("token_bucket_police") and Helper.ktime_get_ns in helpers("cls_rate_marker")
    assert Helper.get_prandom_u32 in helpers("prandom_sampler")
    assert Helper.l3_csum_replace in helpers("cls_dscp_marker")
    for name in ("vlan_push", "vlan_pop", "gre_decap", "gre_encap", "vxlan_decap", "ipip_decap"):
        assert Helper.xdp_adjust_head in helpers(name), name
    assert any(i.cls == InsnClass.ALU64 and i.alu_op == AluOp.DIV and i.source == Source.X
               for i in load(CORPUS / "jump_hash_lb.o").insns), "the jump step divides by a register"
    atomics = [i for i in load(CORPUS / "atomic_flow_stats.o").insns if i.cls == InsnClass.STX and i.mode == Mode.ATOMIC]
    assert len({i.imm for i in atomics}) >= 5, "fetch-add, or, and, xor, xchg, cmpxchg"
    loops = ("dns_filter", "ipv6_ext_parser", "maglev_lb", "jump_hash_lb")
    for name in loops:
        assert any(i.is_branch and i.jump_offset() < 0 for i in load(CORPUS / f"{name}.o").insns), name


# Objects libbpf 1.x refuses to open by design; nfpjit reads them (tested in test_elf_loader.py).
LIBBPF_REFUSES = {
    "legacy_maps": "legacy SEC(\"maps\") definitions",
    "tc_sections": "static function inside a program section",
    "two_programs": "section name xdp/ingress",
}


@pytest.mark.kernel
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_corpus_objects_pass_the_kernel_verifier(src):
    """Every corpus object libbpf can open must load into the running kernel (bpftool prog loadall)."""
    import os
    import shutil
    import subprocess

    if src.stem in LIBBPF_REFUSES:
        pytest.skip(f"libbpf refuses: {LIBBPF_REFUSES[src.stem]}")
    bpftool = need_tool("bpftool")
    if os.geteuid() != 0 or not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("needs root and a mounted bpffs to load programs")
    pin = f"/sys/fs/bpf/nfpjit_test_{os.getpid()}_{src.stem}"
    try:
        res = subprocess.run([bpftool, "prog", "loadall", str(src.with_suffix(".o")), pin],
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0 and ("Operation not permitted" in res.stderr or "unknown func" in res.stderr):
            pytest.skip(f"kernel refuses program loading here: {res.stderr.strip().splitlines()[-1]}")
        assert res.returncode == 0, res.stderr[-2000:]
    finally:
        shutil.rmtree(pin, ignore_errors=True)

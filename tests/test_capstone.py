"""capstone as an independent disassembler: capstone_text, insn_text and the quirks we route around."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from nfpjit.ebpf.asm import assemble, assemble_file
from nfpjit.ebpf.disasm import capstone_faithful, capstone_signed_offsets, capstone_text, format_insn, insn_text
from nfpjit.ebpf.insn import Insn
from test_ebpf_decoder import valid_program


def _one(text: str) -> Insn:
    return assemble(text + "\nexit\nexit").insns[0]


@pytest.mark.parametrize(
    "text, expected, listed",
    [
        ("stxdw [%r10-8], %r1", "stxdw [r10+0xfff8], r1", "stxdw [r10-0x8], r1"),
        ("ldxh %r1, [%r2-32768]", "ldxh r1, [r2+0x8000]", "ldxh r1, [r2-0x8000]"),
        ("stw [%r1+32767], 1", "stw [r1+0x7fff], 0x1", "stw [r1+0x7fff], 0x1"),
        ("jeq %r1, 8, -2", "jeq r1, 0x8, +0xfffe", "jeq r1, 0x8, -0x2"),
        ("ja -1", "jmp +0xffff", "jmp -0x1"),
        ("ldindw %r3, -2", "ldw [r3+0xfffffffe]", "ldw [r3+0xfffffffe]"),
    ],
)
def test_insn_text_shows_offsets_signed(text, expected, listed):
    """capstone prints 16-bit offsets unsigned; listings show them signed (imm fields are left alone)."""
    insn = assemble("exit\nexit\n" + text + "\nexit\nexit").insns[2]
    assert capstone_text(insn) == expected
    assert insn_text(insn, 2) == listed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mov %r1, 5", "mov64 r1, 0x5"),
        ("mov32 %r1, %r2", "mov r1, r2"),
        ("add %r1, -1", "add64 r1, 0xffffffff"),
        ("ldxw %r2, [%r1+4]", "ldxw r2, [r1+0x4]"),
        ("jeq %r1, 8, +1", "jeq r1, 0x8, +0x1"),
        ("ja +1", "jmp +0x1"),
        ("call 1", "call 0x1"),
        ("exit", "exit"),
        ("be16 %r3", "be16 r3"),
        ("lddw %r1, 0x1122334455667788", "lddw r1, 0x1122334455667788"),
        ("lock add [%r1+0], %r2", "xadddw [r1], r2"),
        ("ldabsh 12", "ldh [0xc]"),
    ],
)
def test_capstone_text_of_classic_instructions(text, expected):
    insn = _one(text)
    assert capstone_text(insn) == expected
    assert insn_text(insn, 0) == expected


@pytest.mark.parametrize(
    "text",
    ["jeq32 %r1, 0, +0", "ja32 +0", "ldxsb %r1, [%r2+0]", "bswap64 %r1"],
)
def test_capstone_cannot_decode_jmp32_and_some_v4_forms(text):
    insn = _one(text)
    assert capstone_text(insn) is None
    assert insn_text(insn, 3) == format_insn(insn, 3) == text


@pytest.mark.parametrize(
    "ours, classic",
    [
        ("sdiv %r1, %r2", "div %r1, %r2"),
        ("smod32 %r1, 3", "mod32 %r1, 3"),
        ("movsx864 %r1, %r2", "mov %r1, %r2"),
        ("lock fetch add [%r1+0], %r2", "lock add [%r1+0], %r2"),
        ("lock cmpxchg32 [%r1+0], %r2", "lock add32 [%r1+0], %r2"),
        ("lddw %r1, map_fd(0)", "lddw %r1, 0"),
        ("call +1", "call 1"),
    ],
)
def test_capstone_ignores_fields_so_ours_is_used(ours, classic):
    """capstone 5 prints these exactly like their classic twins; insn_text must not."""
    a, b = _one(ours), _one(classic)
    assert a.encode() != b.encode()
    assert capstone_text(a) == capstone_text(b) is not None  # the quirk (update this test if capstone learns)
    assert not capstone_faithful(a) and capstone_faithful(b)
    assert insn_text(a, 0) == ours
    assert insn_text(b, 0) == capstone_text(b)


@settings(max_examples=300)
@given(valid_program(max_len=1))
def test_insn_text_is_total(insns):
    """insn_text works for every valid instruction and picks capstone only when it is faithful."""
    insn = insns[0]
    text = insn_text(insn, 0)
    assert text
    cs = capstone_text(insn)
    if cs is not None and capstone_faithful(insn):
        assert text == capstone_signed_offsets(insn, cs)
        offset_shown = insn.cls in (1, 2, 3) or (insn.is_branch and insn.cls == 5)
        if offset_shown and insn.off < 0:
            assert f"-0x{-insn.off:x}" in text and text != cs
        else:
            assert text == cs
    else:
        assert text == format_insn(insn, 0)


def test_corpus_listings():
    """Every instruction of the assembly corpus gets a listing line; capstone covers the classic ones."""
    total = by_capstone = 0
    for path in sorted((Path(__file__).parent / "corpus" / "asm").glob("*.s")):
        for insn in assemble_file(path).insns:
            total += 1
            cs = capstone_text(insn)
            by_capstone += cs is not None and insn_text(insn, 0) == capstone_signed_offsets(insn, cs)
    assert total > 200 and 0 < by_capstone < total

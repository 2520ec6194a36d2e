"""The verifier: accepts the safe corpus, rejects unsafe programs with the right problem codes,
and hands the lowering correct per-instruction facts.

Expected facts are derived by reading each small program (comments say why).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nfpjit
from nfpjit.analysis import RegKind, RegState, VerificationError, analyze
from nfpjit.ebpf.asm import assemble
from tests.corpus_cases import corpus_cases

CORPUS = Path(__file__).resolve().parent / "corpus"


def asm(text: str, kind: str = "xdp"):
    return assemble(f".type {kind}\n" + text, filename="t.s")


def codes(a):
    return [p.code for p in a.problems]


def load_corpus(path, section):
    if section is None:
        return assemble(path.read_text(), filename=str(path))
    return nfpjit.load(path, section=section)


@pytest.mark.parametrize("path,section", corpus_cases(asm=True))
def test_corpus_is_accepted(path, section):
    prog = load_corpus(path, section)
    a = analyze(prog, allow_uninit_stack=True)
    assert a.ok, [str(p) for p in a.problems]
    # every instruction the kernel's check_cfg reaches got facts, and the entry is reachable
    assert a.facts[0].reachable
    assert set(a.facts) == set(prog.pcs)


UNSAFE = {
    "uninit_reg": ("mov r0, r3\nexit", "uninit_reg", 0),
    "packet_oob": ("ldxw r2, [r1]\nldxb r0, [r2]\nexit", "packet_oob", 1),
    "null_deref": (""".map m hash key=4 value=8 entries=4
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:m
        call map_lookup_elem
        ldxdw r0, [r0]
        exit""", "null_deref", 6),
    "unbounded_loop": ("ldxw r2, [r1]\nmov r0, 0\nl: add r0, 1\njlt r0, r2, l\nexit", "unbounded_loop", 3),
    "infinite_loop": ("mov r0, 0\nl: jeq r0, 0, l\nexit", "unbounded_loop", 1),
    "stack_oob": ("stdw [r10-520], 1\nmov r0, 0\nexit", "invalid_stack", 0),
    "stack_above_fp": ("stdw [r10+0], 1\nmov r0, 0\nexit", "invalid_stack", 0),
    "uninit_stack": ("ldxdw r0, [r10-8]\nexit", "uninit_stack", 0),
    "misaligned_stack": ("stdw [r10-12], 1\nmov r0, 0\nexit", "misaligned_stack", 0),
    "div_by_zero": ("mov r0, 1\ndiv r0, 0\nexit", "div_by_zero", 1),
    "frame_write": ("mov r10, 0\nmov r0, 0\nexit", "frame_write", 0),
    "ctx_write": ("stw [r1+0], 0\nmov r0, 0\nexit", "ctx_access", 0),
    "ptr_arith_null": (""".map m hash key=4 value=8 entries=4
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:m
        call map_lookup_elem
        add r0, 8
        mov r0, 0
        exit""", "ptr_arith", 6),
    "ptr_arith_32": ("ldxw r2, [r1]\nadd32 r2, 1\nmov r0, 0\nexit", "ptr_arith", 1),
    "map_value_oob": (""".map m array key=4 value=8 entries=4
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:m
        call map_lookup_elem
        jeq r0, 0, out
        ldxdw r1, [r0+4]
    out: mov r0, 0
        exit""", "map_value_oob", 7),
    "helper_arg": ("mov r1, 0\nmov r2, r10\ncall map_lookup_elem\nmov r0, 0\nexit", "arg_type", 2),
    "packet_after_adjust_head": ("""
        mov r6, r1
        ldxw r2, [r6]
        ldxw r3, [r6+4]
        mov r4, r2
        add r4, 14
        jgt r4, r3, out
        mov r1, r6
        mov r7, r2
        mov r2, 4
        call xdp_adjust_head
        ldxb r0, [r7]
    out: mov r0, 2
        exit""", "invalid_mem_access", 10),
    "unknown_helper_for_type": ("mov r1, 0\nmov r2, 0\ncall skb_pull_data\nmov r0, 0\nexit", "unknown_helper", 2),
    "ld_abs_in_xdp": ("mov r6, r1\nldabsb 12\nexit", "ld_abs", 1),
    "return_uninit": ("exit", "uninit_reg", 0),
    "return_pointer": ("mov r0, r10\nexit", "return_pointer", 1),
}


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_program_is_rejected_with_code(name):
    text, code, pc = UNSAFE[name]
    a = analyze(asm(text), max_loop_iterations=512)
    assert not a.ok
    assert (pc, code) in [(p.pc, p.code) for p in a.problems], [str(p) for p in a.problems]


def test_strict_raises_with_all_problems():
    prog = asm("mov r0, r3\nexit")
    with pytest.raises(VerificationError) as info:
        analyze(prog, strict=True)
    assert "R3 !read_ok" in str(info.value)
    assert info.value.problems[0].code == "uninit_reg"
    assert analyze(asm("mov r0, 2\nexit"), strict=True).ok


PACKET = """
    ldxw r2, [r1]          ; 0  data
    ldxw r3, [r1+4]        ; 1  data_end
    mov r4, r2             ; 2
    add r4, 14             ; 3
    jgt r4, r3, drop       ; 4  fall-through proves 14 bytes
    ldxh r5, [r2+12]       ; 5  ethertype: packet bytes 12..13
    jne r5, 8, pass        ; 6
    mov r0, 1              ; 7
    exit                   ; 8
pass: mov r0, 2            ; 9
    exit                   ; 10
drop: mov r0, 1            ; 11
    exit                   ; 12
"""


def test_packet_facts():
    a = analyze(asm(PACKET))
    assert a.ok
    f0 = a.facts[0]
    assert f0.reg(1).kind == RegKind.CTX and f0.reg(10).kind == RegKind.STACK
    assert f0.mem.kind == RegKind.CTX and f0.mem.offset == (0, 0) and f0.mem.size == 4
    f5 = a.facts[5]
    assert f5.reg(2).kind == RegKind.PACKET and f5.reg(2).range == 14
    assert a.facts[4].reg(3).kind == RegKind.PACKET_END and a.facts[4].reg(4).kind == RegKind.PACKET
    # r3 (data_end) is dead after the check: the facts say nothing about it
    assert f5.reg(3).kind == RegKind.NOT_INIT
    assert f5.mem.kind == RegKind.PACKET and f5.mem.offset == (12, 12) and f5.mem.size == 2 and not f5.mem.write
    # a 2-byte load is at most 0xffff: its high word is known zero
    assert a.facts[5].dst_hi32_zero is True
    assert a.facts[6].reg(5).var.umax == 0xFFFF
    assert a.stack_depth == {next(iter(a.stack_depth)): 0}


def test_packet_range_needs_the_right_side_of_the_check():
    # reading on the taken side of "data+14 > data_end" is the unsafe side
    a = analyze(asm("""
        ldxw r2, [r1]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 14
        jgt r4, r3, bad
        mov r0, 2
        exit
    bad: ldxb r0, [r2]
        exit"""))
    assert codes(a) == ["packet_oob"] and a.problems[0].pc == 7
    # "data_end >= data+14" (operands swapped, right-open): taken side proves 14 bytes
    a = analyze(asm("""
        ldxw r2, [r1]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 14
        jge r3, r4, ok
        mov r0, 2
        exit
    ok: ldxb r0, [r2+13]
        exit"""))
    assert a.ok, [str(p) for p in a.problems]


def test_null_check_propagates_to_copies():
    a = analyze(asm(""".map m hash key=4 value=16 entries=4
        stw [r10-4], 0         ; 0
        mov r2, r10            ; 1
        add r2, -4             ; 2
        lddw r1, map:m         ; 3
        call map_lookup_elem   ; 5
        mov r6, r0             ; 6  copy before the check
        jeq r0, 0, out         ; 7
        ldxdw r1, [r6+8]       ; 8  the copy is non-NULL too
        stdw [r6+0], 1         ; 9
    out: mov r0, 2             ; 10
        exit                   ; 11
    """))
    assert a.ok, [str(p) for p in a.problems]
    f8 = a.facts[8]
    assert f8.reg(6).kind == RegKind.MAP_VALUE and a.facts[7].reg(0).kind == RegKind.MAP_VALUE_OR_NULL
    assert f8.mem.kind == RegKind.MAP_VALUE and f8.mem.map == "m" and f8.mem.offset == (8, 8)
    assert a.facts[6].reg(0).kind == RegKind.MAP_VALUE_OR_NULL
    # joining a map value (one path) with NULL (the other) has no single kind
    from nfpjit.analysis.state import join_regs
    assert join_regs(f8.reg(6), RegState.const(0)).kind == RegKind.MIXED
    assert a.facts[9].mem.write and a.stack_depth[next(iter(a.stack_depth))] == 8


def test_constants_and_dead_branches():
    a = analyze(asm("""
        mov r1, 6              ; 0
        mov r2, r1             ; 1
        mul r2, 7              ; 2  42
        jeq r2, 42, yes        ; 3  always taken
        mov r0, 1              ; 4  dead
        exit                   ; 5
    yes: lsh r2, r1            ; 6  shift by a known 6
        mov r0, r2             ; 7
        exit                   ; 8
    """))
    assert a.ok
    assert a.facts[2].src_const == 7 and a.facts[2].reg(2).const_value == 6
    assert a.facts[3].reg(2).const_value == 42 and a.facts[3].branch_taken is True
    assert not a.facts[4].reachable and not a.reachable(5)
    assert a.facts[6].src_const == 6 and a.facts[7].reg(2).const_value == 42 << 6


def test_ranges_for_lowering():
    a = analyze(asm("""
        ldxw r2, [r1]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 2
        jgt r4, r3, out
        ldxb r5, [r2]          ; 5  0..255
        ldxb r6, [r2+1]        ; 6  0..255
        mul r5, r6             ; 7  both <= 0xffff: 16x16 multiply is enough
        and r6, 7              ; 8
        rsh r5, r6             ; 9  shift amount 0..7
    out: mov r0, 2
        exit
    """))
    assert a.ok
    assert a.facts[7].src_range == (0, 255) and a.facts[7].reg(5).var.umax == 255
    assert a.facts[9].src_range == (0, 7)
    assert a.facts[8].reg(6).var.umax == 255


def test_bounded_loop_is_accepted_and_joined():
    a = analyze(asm("""
        mov r0, 0              ; 0
        mov r1, 0              ; 1
    l:  add r0, r1             ; 2
        add r1, 1              ; 3
        jlt r1, 10, l          ; 4
        exit                   ; 5
    """))
    assert a.ok
    r1 = a.facts[2].reg(1).var
    assert (r1.umin, r1.umax) == (0, 9)   # joined over the ten trips
    assert a.facts[5].reg(0).const_value == sum(range(10))
    assert a.facts[4].branch_taken is None


def test_bpf_to_bpf_call_frames():
    a = analyze(asm("""
        mov r6, 7              ; 0  callee-saved across the call
        stdw [r10-8], 3        ; 1
        mov r1, r10            ; 2
        add r1, -8             ; 3  pointer into the caller's frame
        call fn                ; 4
        add r0, r6             ; 5
        exit                   ; 6
    fn: ldxdw r0, [r1]         ; 7  reads the caller's stack slot: 3
        stdw [r10-16], 0       ; 8  its own frame
        exit                   ; 9
    """))
    assert a.ok, [str(p) for p in a.problems]
    assert a.facts[7].mem.frame == 0 and a.facts[8].mem.frame == 1
    assert a.facts[5].reg(0).const_value == 3 and a.facts[5].reg(6).const_value == 7
    assert a.facts[7].reg(6).kind == RegKind.NOT_INIT   # a callee starts without r6
    names = list(a.stack_depth)
    assert a.stack_depth[names[0]] == 8 and a.stack_depth[names[1]] == 16


def test_stack_spill_and_fill_keeps_pointers():
    a = analyze(asm("""
        ldxw r2, [r1]
        stxdw [r10-8], r2      ; spill a packet pointer
        ldxdw r3, [r10-8]      ; fill it back
        ldxw r4, [r1+4]
        mov r5, r3
        add r5, 1
        jgt r5, r4, out
        ldxb r0, [r3]
        exit
    out: mov r0, 2
        exit
    """))
    assert a.ok, [str(p) for p in a.problems]
    assert a.facts[3].reg(3).kind == RegKind.PACKET


def test_too_complex_is_reported():
    a = analyze(asm("ldxw r2, [r1]\nmov r0, 0\nl: add r0, 1\njlt r0, r2, l\nexit"), max_insns=200,
                max_loop_iterations=10**6)
    assert "too_complex" in codes(a)


# -- robustness: any decodable program gets an Analysis, never a Python exception ------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nfpjit.ebpf.insn import Insn  # noqa: E402
from nfpjit.ebpf.opcodes import (AluOp, AtomicOp, InsnClass, JmpOp, MapType, Mode, ProgType,  # noqa: E402
                                 PseudoSrc, Size, Source)
from nfpjit.ebpf.program import MapDef, Program  # noqa: E402

reg = st.integers(0, 10)
small = st.sampled_from([0, 1, 2, 4, 8, 13, 14, 16, 60, 255, -1, -4, -8, -16, -520, 0x7FFFFFFF])
offs = st.sampled_from([0, 1, 2, 4, 8, 12, 16, -1, -2, -4, -8, -16, -512])


@st.composite
def insn(draw):
    kind = draw(st.sampled_from(["alu", "alu", "jmp", "ldx", "st", "stx", "call", "lddw", "exit", "atomic"]))
    if kind == "alu":
        cls = draw(st.sampled_from([InsnClass.ALU, InsnClass.ALU64]))
        op = draw(st.sampled_from([o for o in AluOp if o not in (AluOp.END, AluOp.NEG)]))
        if draw(st.booleans()):
            return Insn(cls | op | Source.X, draw(reg), draw(reg))
        return Insn(cls | op | Source.K, draw(reg), 0, 0, draw(small))
    if kind == "jmp":
        cls = draw(st.sampled_from([InsnClass.JMP, InsnClass.JMP32]))
        op = draw(st.sampled_from([o for o in JmpOp if o not in (JmpOp.CALL, JmpOp.EXIT, JmpOp.JA)]))
        off = draw(st.integers(-4, 4))
        if draw(st.booleans()):
            return Insn(cls | op | Source.X, draw(reg), draw(reg), off)
        return Insn(cls | op | Source.K, draw(reg), 0, off, draw(small))
    if kind == "ldx":
        return Insn(InsnClass.LDX | Mode.MEM | draw(st.sampled_from(list(Size))), draw(reg), draw(reg), draw(offs))
    if kind == "st":
        return Insn(InsnClass.ST | Mode.MEM | draw(st.sampled_from(list(Size))), draw(reg), 0, draw(offs), draw(small))
    if kind == "stx":
        return Insn(InsnClass.STX | Mode.MEM | draw(st.sampled_from(list(Size))), draw(reg), draw(reg), draw(offs))
    if kind == "atomic":
        return Insn(InsnClass.STX | Mode.ATOMIC | draw(st.sampled_from([Size.W, Size.DW])), draw(reg), draw(reg),
                    draw(offs), draw(st.sampled_from(list(AtomicOp))))
    if kind == "call":
        return Insn(InsnClass.JMP | JmpOp.CALL, imm=draw(st.sampled_from([1, 2, 3, 5, 7, 23, 44, 65, 999])))
    if kind == "lddw":
        src = draw(st.sampled_from([PseudoSrc.IMM64, PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE]))
        return Insn(InsnClass.LD | Mode.IMM | Size.DW, draw(st.integers(0, 9)), src, 0,
                    draw(st.sampled_from([0, 1, 5])), draw(st.sampled_from([0, 4, 100])))
    return Insn(InsnClass.JMP | JmpOp.EXIT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(insn(), min_size=1, max_size=14), tc=st.booleans())
def test_random_programs_never_crash(body, tc):
    insns = tuple(body) + (Insn(InsnClass.ALU64 | AluOp.MOV, 0, 0, 0, 2), Insn(InsnClass.JMP | JmpOp.EXIT))
    prog = Program("fuzz", insns, prog_type=ProgType.SCHED_CLS if tc else ProgType.XDP,
                   maps=(MapDef("m", MapType.HASH, 4, 8, 4),))
    a = analyze(prog, max_insns=20_000, max_loop_iterations=64)
    assert all(p.code and p.message for p in a.problems)
    assert set(a.facts) == set(prog.pcs)


# -- soundness against the reference interpreter ----------------------------------------------

import random  # noqa: E402
import re  # noqa: E402

from nfpjit.analysis import RegKind as _RK  # noqa: E402

_CHANGE = re.compile(r"r(\d+)=(\?|0x[0-9a-f]+)")


def _packets():
    import dpkt

    rng = random.Random(7)
    out = [bytes(rng.randrange(256) for _ in range(n)) for n in (0, 13, 14, 20, 34, 54, 64, 100)]
    for proto, l4 in ((6, dpkt.tcp.TCP(sport=1234, dport=80)), (6, dpkt.tcp.TCP(sport=9, dport=22)),
                      (17, dpkt.udp.UDP(sport=53, dport=4789)), (1, dpkt.icmp.ICMP())):
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=proto, ttl=rng.choice([1, 64]),
                        data=l4)
        ip.len = len(ip)
        out.append(bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)))
    return out


@pytest.mark.parametrize("path,section", corpus_cases(asm=True))
def test_facts_hold_on_concrete_runs(path, section):
    """Every value the interpreter computes lies inside the facts; executed code is reachable;
    branches called always/never taken go the stated way."""
    from nfpjit.ebpf.interp import run

    prog = load_corpus(path, section)
    a = analyze(prog, allow_uninit_stack=True)
    checked = 0
    for packet in _packets():
        result = run(prog, packet, trace=True)
        regs: dict[int, int | None] = {}
        lines = result.trace or []
        pcs = [int(line.split(":", 1)[0]) for line in lines]
        for n, line in enumerate(lines):
            pc = pcs[n]
            fact = a.facts[pc]
            assert fact.reachable, f"insn {pc} ran but was called unreachable"
            for r, value in regs.items():
                f = fact.reg(r)
                if value is not None and f.kind == _RK.SCALAR:
                    assert f.var.contains(value), f"insn {pc}: r{r}={value:#x} outside {f.var}"
                    checked += 1
            insn = prog.at(pc)
            if fact.branch_taken is not None and n + 1 < len(lines):
                want = insn.jump_target(pc) if fact.branch_taken else pc + 1
                assert pcs[n + 1] == want, f"insn {pc}: branch went to {pcs[n + 1]}"
            for r, v in _CHANGE.findall(line.split(";", 1)[1] if ";" in line else ""):
                regs[int(r)] = None if v == "?" else int(v, 16)
    assert checked > 0


def test_atomic_on_map_value_facts():
    a = analyze(asm(""".map m array key=4 value=8 entries=1
        stw [r10-4], 0         ; 0
        mov r2, r10            ; 1
        add r2, -4             ; 2
        lddw r1, map:m         ; 3
        call map_lookup_elem   ; 5
        jeq r0, 0, out         ; 6
        mov r1, 1              ; 7
        xadddw [r0+0], r1      ; 8
    out: mov r0, 2             ; 9
        exit                   ; 10
    """))
    assert a.ok, [str(p) for p in a.problems]
    m = a.facts[8].mem
    assert (m.kind, m.map, m.offset, m.size, m.write) == (RegKind.MAP_VALUE, "m", (0, 0), 8, True)


def test_every_problem_code_is_documented():
    """docs/analysis.md lists each code the verifier can report (checked against the source)."""
    import re as _re

    root = Path(__file__).resolve().parent.parent
    source = "".join((root / "nfpjit" / "analysis" / f).read_text() for f in ("verifier.py", "cfg.py", "__init__.py"))
    used = set(_re.findall(r'fail\("([a-z_0-9]+)"', source))
    used |= set(_re.findall(r'(?:VerifierProblem|CfgProblem)\([^,]+, "([a-z_]+)"', source))
    docs = (root / "docs" / "analysis.md").read_text()
    assert used and all(f"`{code}`" in docs for code in used), sorted(c for c in used if f"`{c}`" not in docs)

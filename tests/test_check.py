"""The offload capability report: one hand-built program per diagnostic code, the corpus, rendering, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from nfpjit.ebpf.insn import Insn, decode
from nfpjit.ebpf.opcodes import (
    AluOp, AtomicOp, CallKind, Helper, InsnClass, JmpOp, MapType, Mode, ProgType, PseudoSrc, Size, Source,
    TcAction, XdpAction,
)
from nfpjit.ebpf.program import Function, MapDef, Program, SourceLoc
from nfpjit.errors import DecodeError
from nfpjit.offload import Code, Severity, check, load_profile, render_json, render_text
from nfpjit.offload.report import EXPANSION, estimate_nfp_insns

from conftest import CORPUS

# the real card's rules: these tests assert what the Linux nfp driver refuses, so they use nfp-kernel
# (the default profile, our simulated NIC, is widened as lowering lands)
KERNEL = load_profile("nfp-kernel")
PERMISSIVE = load_profile("permissive")


# -- a tiny instruction builder (only what these tests need) -----------------------------------

def mov(dst, imm):
    return Insn(InsnClass.ALU64 | AluOp.MOV | Source.K, dst, imm=imm)


def movr(dst, src):
    return Insn(InsnClass.ALU64 | AluOp.MOV | Source.X, dst, src)


def alu(op, dst, imm, cls=InsnClass.ALU64):
    return Insn(cls | op | Source.K, dst, imm=imm)


def alur(op, dst, src, off=0, cls=InsnClass.ALU64):
    return Insn(cls | op | Source.X, dst, src, off)


def ldx(size, dst, src, off):
    return Insn(InsnClass.LDX | Mode.MEM | size, dst, src, off)


def stx(size, dst, src, off):
    return Insn(InsnClass.STX | Mode.MEM | size, dst, src, off)


def st(size, dst, off, imm):
    return Insn(InsnClass.ST | Mode.MEM | size, dst, 0, off, imm)


def atomic(size, dst, src, off, op=AtomicOp.ADD):
    return Insn(InsnClass.STX | Mode.ATOMIC | size, dst, src, off, int(op))


def call(helper):
    return Insn(InsnClass.JMP | JmpOp.CALL, imm=int(helper))


def jeq(dst, imm, off):
    return Insn(InsnClass.JMP | JmpOp.JEQ | Source.K, dst, 0, off, imm)


def ja(off):
    return Insn(InsnClass.JMP | JmpOp.JA, off=off)


EXIT = Insn(InsnClass.JMP | JmpOp.EXIT)
RET_PASS = [mov(0, 2), EXIT]


def rand(dst):
    """An unknown 32-bit number in ``dst`` (bpf_get_prandom_u32 is offloadable; r1-r5 are clobbered)."""
    return [call(Helper.get_prandom_u32), movr(dst, 0)]


def lookup(map_index=0):
    """r0 = bpf_map_lookup_elem(map, &key on stack at -4); leaves the value pointer in r0 and exits if null."""
    return [
        st(Size.W, 10, -4, 0),
        Insn.ld_imm64(1, map_index, PseudoSrc.MAP_FD),
        movr(2, 10),
        alu(AluOp.ADD, 2, -4),
        call(Helper.map_lookup_elem),
        jeq(0, 0, 100),  # patched by prog(): jump to the final exit
    ]


def prog(insns, *, maps=(), prog_type=ProgType.XDP, line_info=None, functions=()):
    """A Program from insns + RET_PASS; 'jeq r0, 0, 100' placeholders jump to the final mov/exit."""
    body = list(insns)
    out = []
    for i, insn in enumerate(body):
        if insn.code == (InsnClass.JMP | JmpOp.JEQ) and insn.off == 100:
            insn = replace(insn, off=sum(x.width for x in body[i + 1:]))  # slots up to the final mov
        out.append(insn)
    out += RET_PASS
    return Program("t", tuple(out), section="xdp", prog_type=prog_type, maps=tuple(maps),
                   line_info=line_info or {}, functions=tuple(functions), source_path="t.o")


def codes(program, profile=KERNEL, **kw):
    return check(program, profile, **kw).codes


def errors_of(program, code, profile=KERNEL, **kw):
    return [d for d in check(program, profile, **kw).diagnostics if d.code == code]


ARRAY = MapDef("arr", MapType.ARRAY, 4, 8, 4)
PERCPU = MapDef("pcpu", MapType.PERCPU_ARRAY, 4, 8, 4)


def test_placeholder_jump_lands_on_the_final_exit():
    p = prog(lookup())
    decode(b"".join(i.encode() for i in p.insns))  # jump targets valid
    pc_jeq = p.pcs[-3]
    assert p.at(pc_jeq).jump_target(pc_jeq) == p.pcs[-2]


def test_clean_program_is_ok():
    # reads the first word of the value, counts atomically in the second
    p = prog([*lookup(), ldx(Size.W, 1, 0, 0), mov(1, 1), atomic(Size.W, 0, 1, 4)], maps=[ARRAY])
    report = check(p, KERNEL)
    assert report.ok and report.diagnostics == ()


# -- one test per code ----------------------------------------------------------------------------

def test_unsupported_helper():
    p = prog([call(Helper.ktime_get_ns), call(Helper.get_prandom_u32)])
    [d] = errors_of(p, Code.UNSUPPORTED_HELPER)
    assert d.insn == 0 and d.severity == Severity.ERROR and "ktime" in d.hint and "counter" in d.hint
    # our NIC (default, permissive) reads its timestamp counter, but has no trace_printk;
    # redirect hint names the allowed actions
    assert Code.UNSUPPORTED_HELPER not in codes(p, PERMISSIVE) | codes(p, load_profile("default"))
    assert Code.UNSUPPORTED_HELPER in codes(prog([mov(1, 0), mov(2, 0), call(Helper.trace_printk)]), PERMISSIVE)
    [d] = errors_of(prog([mov(1, 2), mov(2, 0), call(Helper.redirect)]), Code.UNSUPPORTED_HELPER)
    assert "PASS, DROP, TX or ABORT" in d.hint


def test_adjust_head_follows_feature():
    p = prog([mov(2, -14), call(Helper.xdp_adjust_head)])
    assert Code.UNSUPPORTED_HELPER not in codes(p)
    off = replace(KERNEL, features=replace(KERNEL.features, adjust_head=False))
    assert Code.UNSUPPORTED_HELPER in codes(p, off)


def test_map_type_reported_at_definition_and_use():
    p = prog([*lookup(), ldx(Size.DW, 1, 0, 0)], maps=[PERCPU])
    found = errors_of(p, Code.MAP_TYPE)
    assert [(d.severity, d.insn) for d in found] == [(Severity.ERROR, None), (Severity.NOTE, 5)]  # the call
    assert "one slot per queue" in found[0].hint and "bpf_map_lookup_elem" in found[1].message
    assert Code.MAP_TYPE not in codes(p, PERMISSIVE)


def test_map_type_without_helper_use_points_at_reference():
    p = prog([Insn.ld_imm64(1, 0, PseudoSrc.MAP_FD)], maps=[MapDef("lpm", MapType.LPM_TRIE, 8, 4, 16, 1)])
    found = errors_of(p, Code.MAP_TYPE)
    assert [(d.severity, d.insn) for d in found] == [(Severity.ERROR, None), (Severity.NOTE, 0)]


def test_map_flags():
    assert Code.MAP_FLAGS in codes(prog([], maps=[replace(ARRAY, flags=1)]))
    assert Code.MAP_FLAGS not in codes(prog([], maps=[ARRAY]))
    assert Code.MAP_FLAGS not in codes(prog([], maps=[replace(ARRAY, flags=1)]), PERMISSIVE)
    assert Code.MAP_FLAGS in codes(prog([], maps=[replace(ARRAY, flags=0x10)]), PERMISSIVE)  # WRONLY


@pytest.mark.parametrize("key, value, expected", [
    (4, 8, set()),
    (64, 8, {Code.MAP_ENTRY_SIZE}),       # 64 + 8 > 64 after rounding
    (60, 4, {Code.MAP_ENTRY_SIZE}),       # 64 + 8: each rounds up to 8
    (28, 32, set()),                      # 32 + 32 = 64 fits exactly
    # the driver checks the element size first and independently: a too-long key breaks both rules
    (65, 8, {Code.MAP_KEY_SIZE, Code.MAP_ENTRY_SIZE}),
    (4, 65, {Code.MAP_VALUE_SIZE, Code.MAP_ENTRY_SIZE}),
    (100, 100, {Code.MAP_KEY_SIZE, Code.MAP_VALUE_SIZE, Code.MAP_ENTRY_SIZE}),
])
def test_map_sizes(key, value, expected):
    size_codes = {Code.MAP_KEY_SIZE, Code.MAP_VALUE_SIZE, Code.MAP_ENTRY_SIZE}
    got = codes(prog([], maps=[MapDef("h", MapType.HASH, key, value, 16)]))
    assert got & size_codes == expected
    # independent oracle for the firmware rule
    rounded = -(-key // 8) * 8 + -(-value // 8) * 8
    assert (Code.MAP_ENTRY_SIZE in got) == (rounded > 64)
    assert all(d.kernel.startswith("NFP net bpf: map ") for d in check(prog([], maps=[MapDef("h", MapType.HASH, key,
               value, 16)]), KERNEL).diagnostics)


def test_map_entries_per_map_and_total():
    big = MapDef("big", MapType.HASH, 4, 4, KERNEL.max_entries_per_map + 1)
    assert [d.insn for d in errors_of(prog([], maps=[big]), Code.MAP_ENTRIES)] == [None]
    half = MapDef("half", MapType.HASH, 4, 4, KERNEL.max_total_entries // 2 + 1)
    [d] = errors_of(prog([], maps=[half, replace(half, name="other")]), Code.MAP_ENTRIES)
    assert "in total" in d.message
    assert Code.MAP_ENTRIES not in codes(prog([], maps=[replace(half, max_entries=1000)] * 2))


def test_too_many_maps():
    maps = [replace(ARRAY, name=f"m{i}") for i in range(KERNEL.max_maps + 1)]
    assert Code.TOO_MANY_MAPS in codes(prog([], maps=maps))
    assert Code.TOO_MANY_MAPS not in codes(prog([], maps=maps[:-1]))


def test_division_by_variable_vs_known_constant():
    unknown = prog([*rand(2), mov(3, 100), alur(AluOp.DIV, 3, 2)])
    [d] = errors_of(unknown, Code.DIV_BY_VARIABLE)
    assert d.insn == 3 and "divide by a constant or use a shift" in d.hint
    known = prog([mov(2, 10), mov(3, 100), alur(AluOp.DIV, 3, 2), alu(AluOp.DIV, 3, 7)])
    assert Code.DIV_BY_VARIABLE not in codes(known)
    # a constant that differs between paths is not a constant
    joined = prog([*rand(4), mov(2, 10), jeq(4, 0, 1), mov(2, 20), mov(3, 1), alur(AluOp.DIV, 3, 2)])
    assert Code.DIV_BY_VARIABLE in codes(joined)
    assert Code.DIV_BY_VARIABLE not in codes(unknown, PERMISSIVE)


def test_mod():
    assert Code.MOD in codes(prog([mov(3, 100), alu(AluOp.MOD, 3, 8, InsnClass.ALU)]))
    assert Code.MOD not in codes(prog([mov(3, 100), alu(AluOp.MOD, 3, 8)]), PERMISSIVE)
    by_const_only = replace(KERNEL, features=replace(KERNEL.features, modulo=True))
    assert Code.MOD not in codes(prog([mov(3, 100), alu(AluOp.MOD, 3, 8)]), by_const_only)
    assert Code.MOD in codes(prog([*rand(2), mov(3, 9), alur(AluOp.MOD, 3, 2)]), by_const_only)


def test_signed_div():
    p = prog([mov(3, 100), Insn(InsnClass.ALU64 | AluOp.DIV | Source.K, 3, 0, 1, 7)])
    assert codes(p) == {Code.SIGNED_DIV}
    assert Code.SIGNED_DIV not in codes(p, PERMISSIVE)


def test_atomic_op_only_add():
    for op in (AtomicOp.FETCH_ADD, AtomicOp.OR, AtomicOp.XCHG, AtomicOp.CMPXCHG):
        p = prog([*lookup(), mov(1, 1), atomic(Size.DW, 0, 1, 0, op)], maps=[ARRAY])
        # (the kernel also refuses this cmpxchg, whose comparand r0 is the pointer: left out here)
        assert codes(p, verifier_problems=False) == {Code.ATOMIC_OP}, op
        assert Code.ATOMIC_OP not in codes(p, PERMISSIVE)
    ok = prog([*lookup(), mov(1, 1), atomic(Size.W, 0, 1, 0)], maps=[ARRAY])
    assert codes(ok) == set()
    no32 = replace(KERNEL, features=replace(KERNEL.features, atomic_add32=False))
    assert codes(ok, no32) == {Code.ATOMIC_OP}


def test_atomic_target():
    on_stack = prog([st(Size.DW, 10, -8, 0), mov(1, 1), atomic(Size.DW, 10, 1, -8)])
    [d] = errors_of(on_stack, Code.ATOMIC_TARGET)
    assert d.severity == Severity.ERROR and "stack" in d.message
    # pointer of unknown origin: a warning, not an error
    p = prog([movr(6, 1), *rand(3), movr(2, 10), jeq(3, 0, 1), movr(2, 6), mov(1, 1), atomic(Size.DW, 2, 1, 0)])
    [d] = errors_of(p, Code.ATOMIC_TARGET)  # stack on one path, context on the other
    assert d.severity == Severity.WARNING


def test_map_value_write():
    p = prog([*lookup(), ldx(Size.DW, 1, 0, 0), alu(AluOp.ADD, 1, 1), stx(Size.DW, 0, 1, 0)], maps=[ARRAY])
    [d] = errors_of(p, Code.MAP_VALUE_WRITE)
    assert d.insn == p.pcs[8] == 9 and "'arr'" in d.message  # the stx (ld_imm64 takes two slots)
    assert Code.MAP_VALUE_WRITE not in codes(p, PERMISSIVE)
    # through a pointer spilled to the stack and reloaded
    spilled = prog([*lookup(), stx(Size.DW, 10, 0, -16), ldx(Size.DW, 3, 10, -16), st(Size.W, 3, 4, 0)],
                   maps=[ARRAY])
    assert Code.MAP_VALUE_WRITE in codes(spilled)


def test_ctx_load_only_the_fields_the_nic_provides():
    assert codes(prog([ldx(Size.W, 2, 1, 0), ldx(Size.W, 3, 1, 4)])) == set()
    [d] = errors_of(prog([ldx(Size.W, 2, 1, 16)]), Code.CTX_LOAD)
    assert "xdp_md.rx_queue_index" in d.message and "data, data_end" in d.hint
    assert codes(prog([ldx(Size.W, 2, 1, 16)]), PERMISSIVE) == set()
    tc = [ldx(Size.W, 2, 1, 0), ldx(Size.W, 3, 1, 76), ldx(Size.W, 4, 1, 80)]  # len, data, data_end
    assert codes(prog(tc, prog_type=ProgType.SCHED_CLS)) == set()
    [d] = errors_of(prog([ldx(Size.H, 2, 1, 16)], prog_type=ProgType.SCHED_CLS), Code.CTX_LOAD)
    assert "__sk_buff.protocol" in d.message  # a narrow load inside the field
    more = replace(KERNEL, xdp_context_reads=KERNEL.xdp_context_reads | {"rx_queue_index"})
    assert codes(prog([ldx(Size.W, 2, 1, 16)]), more) == set()


def test_ctx_store_queue_select_allowed_only_on_xdp():
    queue = prog([st(Size.W, 1, 16, 3)])
    assert codes(queue) == set()
    # stores the kernel verifier refuses too are also reported as 'verifier' problems
    assert codes(prog([st(Size.W, 1, 12, 3)])) == {Code.CTX_STORE, Code.VERIFIER}
    assert codes(prog([st(Size.H, 1, 16, 3)])) == {Code.CTX_STORE, Code.VERIFIER}  # queue select is 4 bytes
    no_qs = replace(KERNEL, features=replace(KERNEL.features, queue_select=False))
    assert codes(queue, no_qs) == {Code.CTX_STORE, Code.VERIFIER}
    tc = prog([st(Size.W, 1, 8, 1)], prog_type=ProgType.SCHED_CLS)  # skb->mark
    [d] = errors_of(tc, Code.CTX_STORE)
    assert "__sk_buff.mark" in d.message
    # a ctx pointer copied to another register is still the ctx
    assert codes(prog([movr(6, 1), st(Size.W, 6, 0, 0)])) == {Code.CTX_STORE, Code.VERIFIER}
    # ... also when spilled to the stack and reloaded after a helper call clobbered r1
    spilled = prog([stx(Size.DW, 10, 1, -8), *rand(0), ldx(Size.DW, 3, 10, -8), st(Size.W, 3, 12, 0)])
    assert [(d.code, d.insn) for d in check(spilled, KERNEL, verifier_problems=False).diagnostics] == [
        (Code.CTX_STORE, 4)]


def test_stack_size():
    small = replace(KERNEL, stack_size=64)
    p = prog([st(Size.DW, 10, -128, 0)])
    [d] = errors_of(p, Code.STACK_SIZE, small)
    assert "128" in d.message
    assert Code.STACK_SIZE not in codes(p)


def test_stack_size_across_bpf_calls():
    # frames are 64-byte aligned; a callee's frame adds its 4-byte return address (and 32 bytes for
    # R6-R9 when it writes them): main 8 -> 64, callee 480 + 4 -> 512, in all 576 > 512
    def two(callee_depth, callee_body=()):
        insns = (
            st(Size.DW, 10, -8, 0),
            Insn(InsnClass.JMP | JmpOp.CALL, src=CallKind.LOCAL, imm=2),
            mov(0, 2), EXIT,
            st(Size.DW, 10, -callee_depth, 0), *callee_body, mov(0, 0), EXIT,
        )
        return Program("t", insns, functions=(Function("main", 0), Function("callee", 4)))

    [d] = errors_of(two(480), Code.STACK_SIZE)
    assert "576" in d.message
    assert Code.STACK_SIZE not in codes(two(440))  # 440 + 4 -> 448, + 64 = 512 fits
    assert Code.STACK_SIZE in codes(two(440, [mov(6, 1)]))  # + 32 saved registers -> 512 + 64
    # the oracle: the same arithmetic written out
    for depth, saves in ((8, False), (440, False), (440, True), (100, True)):
        body = [mov(7, 0)] if saves else []
        expected = 64 + -(-(depth + 4 + (32 if saves else 0)) // 64) * 64
        assert (Code.STACK_SIZE in codes(two(depth, body))) == (expected > 512)


def test_variable_stack_pointer():
    # r2 = r10 - 8 on one path, r10 - 16 on the other: the access has no single offset
    p = prog([*rand(3), movr(2, 10), alu(AluOp.ADD, 2, -8), jeq(3, 0, 1), alu(AluOp.ADD, 2, -8),
              st(Size.DW, 2, 0, 0)])
    [d] = errors_of(p, Code.VARIABLE_STACK_POINTER)
    assert d.insn == 6
    constant = prog([movr(2, 10), alu(AluOp.ADD, 2, -8), st(Size.DW, 2, 0, 0)])
    assert Code.VARIABLE_STACK_POINTER not in codes(constant)
    indexed = prog([*rand(3), movr(2, 10), alu(AluOp.ADD, 2, -64), alur(AluOp.ADD, 2, 3),
                    st(Size.B, 2, 0, 0)])
    assert Code.VARIABLE_STACK_POINTER in codes(indexed)


def test_program_too_long_estimate_and_exact():
    per_alu = EXPANSION["alu64"]
    n = KERNEL.instruction_store // per_alu + 1
    long = prog([mov(1, 1)] * n)
    [d] = errors_of(long, Code.PROGRAM_TOO_LONG)
    assert "estimate" in d.message
    assert estimate_nfp_insns(long) == n * per_alu + EXPANSION["alu64"] + EXPANSION["exit"]
    assert Code.PROGRAM_TOO_LONG not in codes(long, nfp_insn_count=KERNEL.instruction_store)
    [d] = errors_of(prog([]), Code.PROGRAM_TOO_LONG, nfp_insn_count=KERNEL.instruction_store + 1)
    assert "estimate" not in d.message
    assert Code.PROGRAM_TOO_LONG not in codes(prog([mov(1, 1)] * (n - 3)))


def test_packet_split():
    split = KERNEL.packet_split
    data = [ldx(Size.W, 2, 1, 0)]  # r2 = ctx->data
    beyond = prog([*data, ldx(Size.B, 3, 2, split)])
    [d] = errors_of(beyond, Code.PACKET_SPLIT)
    assert str(split) in d.message
    assert Code.PACKET_SPLIT not in codes(prog([*data, ldx(Size.B, 3, 2, split - 1)]))
    # straddling the boundary, and an offset built with pointer arithmetic
    assert Code.PACKET_SPLIT in codes(prog([*data, ldx(Size.W, 3, 2, split - 2)]))
    assert Code.PACKET_SPLIT in codes(prog([*data, alu(AluOp.ADD, 2, split), st(Size.B, 2, 0, 0)]))
    assert Code.PACKET_SPLIT not in codes(beyond, PERMISSIVE)
    # the same offsets on a TC program (data at __sk_buff offset 76)
    tc = prog([ldx(Size.W, 2, 1, 76), ldx(Size.B, 3, 2, split)], prog_type=ProgType.SCHED_CLS)
    assert Code.PACKET_SPLIT in codes(tc)


def test_tail_call():
    pa = MapDef("jmp", MapType.PROG_ARRAY, 4, 4, 4)
    p = prog([Insn.ld_imm64(2, 0, PseudoSrc.MAP_FD), mov(3, 0), call(Helper.tail_call)], maps=[pa])
    found = check(p, KERNEL).diagnostics
    assert {(d.code, d.severity, d.insn) for d in found} == {
        (Code.MAP_TYPE, Severity.ERROR, None), (Code.MAP_TYPE, Severity.NOTE, 3),
        (Code.TAIL_CALL, Severity.ERROR, 3)}
    assert codes(p, PERMISSIVE) == set()


def test_kfunc():
    p = prog([Insn(InsnClass.JMP | JmpOp.CALL, src=CallKind.KFUNC, imm=12345)])
    assert codes(p) == {Code.KFUNC, Code.VERIFIER} and codes(p, PERMISSIVE) == {Code.KFUNC, Code.VERIFIER}
    assert codes(p, verifier_problems=False) == {Code.KFUNC}


def test_bpf_call_feature():
    insns = (Insn(InsnClass.JMP | JmpOp.CALL, src=CallKind.LOCAL, imm=2), mov(0, 2), EXIT, mov(0, 1), EXIT)
    p = Program("t", insns, functions=(Function("main", 0), Function("f", 3)))
    assert codes(p) == set()
    no_calls = replace(KERNEL, features=replace(KERNEL.features, bpf_to_bpf_calls=False))
    assert codes(p, no_calls) == {Code.BPF_CALL}


def test_ld_abs():
    p = prog([movr(6, 1), Insn(InsnClass.LD | Mode.ABS | Size.H, imm=12)], prog_type=ProgType.SCHED_CLS)
    assert Code.LD_ABS not in codes(p)
    no = replace(KERNEL, features=replace(KERNEL.features, ld_abs=False))
    assert codes(p, no) == {Code.LD_ABS}


def test_unsupported_opcode_hook_and_v4():
    p = prog([mov(1, 5), alu(AluOp.LSH, 1, 3)])
    lsh = InsnClass.ALU64 | AluOp.LSH | Source.K
    [d] = errors_of(p, Code.UNSUPPORTED_OPCODE, unsupported_opcodes={lsh})
    assert d.insn == 1 and "0x67" in d.message
    assert codes(p) == set()
    movsx = prog([*rand(2), alur(AluOp.MOV, 3, 2, off=8)])
    assert codes(movsx) == {Code.UNSUPPORTED_OPCODE}
    assert codes(movsx, PERMISSIVE) == set()
    ldsx = prog([movr(2, 10), st(Size.W, 10, -4, 0), Insn(InsnClass.LDX | Mode.MEMSX | Size.B, 3, 10, -4)])
    assert codes(ldsx) == {Code.UNSUPPORTED_OPCODE}


def test_verifier_problems_from_the_analysis():
    class Problem:
        def __init__(self, pc, code, message):
            self.pc, self.code, self.message = pc, code, message

    from nfpjit.analysis import analyze

    p = prog([movr(1, 5)])
    # the caller's analysis is used as given: its problems and its stack depths
    given = replace(analyze(p), problems=[Problem(0, "uninit-reg", "r5 is read before it is written")],
                    stack_depth={"t": 600})
    report = check(p, KERNEL, analysis=given)
    assert {(d.code, d.insn) for d in report.diagnostics} == {(Code.VERIFIER, 0), (Code.STACK_SIZE, None)}
    assert "uninit-reg" in [d for d in report.diagnostics if d.code == Code.VERIFIER][0].message


def test_exit_action():
    assert codes(prog([], prog_type=ProgType.SCHED_CLS)) == set()  # RET_PASS returns 2 = TC_ACT_SHOT
    shot = Program("t", (mov(0, TcAction.SHOT), EXIT), prog_type=ProgType.SCHED_CLS)
    unspec = Program("t", (mov(0, -1), EXIT), prog_type=ProgType.SCHED_CLS)
    ok = Program("t", (mov(0, TcAction.OK), EXIT), prog_type=ProgType.SCHED_CLS)
    unknown = Program("t", (ldx(Size.W, 0, 1, 0), EXIT), prog_type=ProgType.SCHED_CLS)
    assert codes(shot) == set() and codes(unspec) == set()
    assert codes(ok) == {Code.EXIT_ACTION} and codes(unknown) == {Code.EXIT_ACTION}
    # two paths, two constants: the NIC-less one is found after the join
    both = Program("t", (ldx(Size.W, 2, 1, 0), mov(0, TcAction.SHOT), jeq(2, 0, 1), mov(0, TcAction.OK), EXIT),
                   prog_type=ProgType.SCHED_CLS)
    [d] = errors_of(both, Code.EXIT_ACTION)
    assert d.message.startswith("may return TC_ACT_OK")
    shot_or_stolen = replace(both, insns=(*both.insns[:3], mov(0, TcAction.STOLEN), EXIT))
    assert codes(shot_or_stolen) == set()
    # the kernel's words: reg type 1 (scalar) and the verdict in hex
    assert [d.kernel for d in errors_of(ok, Code.EXIT_ACTION)] == ["[nfp] unsupported exit state: 1, imm: 0"]
    # a profile may accept more verdicts, or a verdict that is not a constant
    wider = replace(KERNEL, tc_actions=KERNEL.tc_actions | {TcAction.OK},
                    features=replace(KERNEL.features, tc_variable_verdict=True))
    assert codes(ok, wider) == set() and codes(unknown, wider) == set()
    # the driver takes any XDP return value and its JIT aborts what is above XDP_TX: a warning
    redirect = Program("t", (mov(0, XdpAction.REDIRECT), EXIT))
    [d] = errors_of(redirect, Code.EXIT_ACTION)
    assert d.severity == Severity.WARNING and "XDP_ABORTED" in d.message and "XDP_TX" in d.hint
    assert "accepts every XDP return value" in d.kernel
    assert codes(redirect, replace(KERNEL, xdp_actions=KERNEL.xdp_actions | {XdpAction.REDIRECT})) == set()
    [d] = errors_of(Program("t", (mov(0, 9), EXIT)), Code.EXIT_ACTION)
    assert d.severity == Severity.WARNING
    # only the entry function's exits are verdicts
    callee_returns_7 = Program("t", (Insn(InsnClass.JMP | JmpOp.CALL, src=CallKind.LOCAL, imm=2), mov(0, 2), EXIT,
                                     mov(0, 7), EXIT), functions=(Function("main", 0), Function("f", 3)))
    assert codes(callee_returns_7) == set()


def test_helper_args_must_be_on_the_stack():
    from_packet = prog([ldx(Size.W, 2, 1, 0), Insn.ld_imm64(1, 0, PseudoSrc.MAP_FD), call(Helper.map_lookup_elem)],
                       maps=[ARRAY])
    [d] = errors_of(from_packet, Code.HELPER_ARG)
    assert "key" in d.message and "packet" in d.message
    assert codes(prog(lookup(), maps=[ARRAY])) == set()


def test_perf_event_output_flags():
    def out(flags):
        return prog([movr(6, 1), st(Size.DW, 10, -8, 0), movr(1, 6), Insn.ld_imm64(2, 0, PseudoSrc.MAP_FD),
                     Insn.ld_imm64(3, flags), movr(4, 10), alu(AluOp.ADD, 4, -8), mov(5, 8),
                     call(Helper.perf_event_output)],
                    maps=[MapDef("events", MapType.PERF_EVENT_ARRAY, 4, 4, 0)])

    good = check(out(0xFFFF_FFFF), KERNEL).diagnostics
    assert [(d.code, d.severity) for d in good] == [(Code.HELPER_ARG, Severity.NOTE)]
    assert any(d.severity == Severity.ERROR and d.code == Code.HELPER_ARG for d in check(out(3), KERNEL).diagnostics)


def test_map_value_use_read_and_atomic_on_one_word():
    p = prog([*lookup(), ldx(Size.W, 1, 0, 4), mov(1, 1), atomic(Size.DW, 0, 1, 0)], maps=[ARRAY])
    [d] = errors_of(p, Code.MAP_VALUE_USE)
    assert d.insn == p.pcs[8] and "bytes 4..7" in d.message and f"insn {p.pcs[6]}" in d.message
    apart = prog([*lookup(), ldx(Size.W, 1, 0, 4), mov(1, 1), atomic(Size.W, 0, 1, 0)], maps=[ARRAY])
    assert codes(apart) == set()


def test_map_value_offset():
    # r1 is 0 or 4: the value pointer (kept in r6 across the helper call) has no one offset
    p = prog([*lookup(), movr(6, 0), *rand(1), alu(AluOp.AND, 1, 4), alur(AluOp.ADD, 6, 1), ldx(Size.W, 2, 6, 0)],
             maps=[ARRAY])
    assert codes(p) == {Code.MAP_VALUE_OFFSET}


def test_div_and_mul_operands():
    assert codes(prog([mov(3, 9), alu(AluOp.DIV, 3, -3)])) == {Code.DIV_OPERAND}
    assert codes(prog([mov(3, 9), alu(AluOp.MUL, 3, -3)])) == {Code.MUL_OPERAND}
    assert codes(prog([mov(3, 9), alu(AluOp.MUL, 3, -3, InsnClass.ALU)])) == set()  # low word is the same
    assert codes(prog([mov(3, 9), alu(AluOp.MUL, 3, 3)])) == set()


def test_wide_multiplication_and_division_operands():
    from nfpjit.analysis import analyze

    big = prog([Insn.ld_imm64(1, 1 << 32), alu(AluOp.MUL, 1, 3)])
    [d] = errors_of(big, Code.MUL_OPERAND)
    assert "multiplier r1 may exceed 32 bits (up to 0x100000000)" in d.message
    assert codes(prog([mov(1, 5), alu(AluOp.MUL, 1, 3), alu(AluOp.DIV, 1, 3)])) == set()
    assert codes(prog([Insn.ld_imm64(1, 1 << 40), alu(AluOp.DIV, 1, 3)])) == {Code.DIV_OPERAND}
    assert codes(big, PERMISSIVE) == set()
    # an unknown 32-bit number shifted left by 20 may exceed 32 bits; masked it may not
    shifted = prog([*rand(1), alu(AluOp.LSH, 1, 20), alu(AluOp.MUL, 1, 3)])
    assert codes(shifted) == {"mul-operand"}
    assert check(shifted, KERNEL, analysis=analyze(shifted)).codes == {"mul-operand"}
    masked = prog([*rand(1), alu(AluOp.LSH, 1, 20), alu(AluOp.AND, 1, 0x7FFF_FFFF), alu(AluOp.MUL, 1, 3)])
    assert check(masked, KERNEL, analysis=analyze(masked)).codes == set()


def test_prog_type():
    assert codes(prog([], prog_type=ProgType.KPROBE)) == {Code.PROG_TYPE}
    assert codes(prog([], prog_type=ProgType.SCHED_CLS)) == set()
    assert codes(prog([], prog_type=ProgType.SCHED_ACT)) == {Code.PROG_TYPE}


def test_all_problems_are_collected_in_order():
    # the real driver would stop at the first of these
    p = prog([movr(6, 1), *lookup(), call(Helper.ktime_get_ns), mov(3, 9), alu(AluOp.MOD, 3, 4), st(Size.W, 6, 0, 0)],
             maps=[PERCPU, replace(ARRAY, name="big", value_size=128)])
    report = check(p, KERNEL)
    # the store to xdp_md.data is refused by the kernel verifier too
    assert report.codes == {"map-type", "map-value-size", "map-entry-size", "unsupported-helper", "mod", "ctx-store",
                            "verifier"}
    insns = [d.insn for d in report.diagnostics]
    assert insns[:3] == [None, None, None] and insns[3:] == sorted(insns[3:])
    assert report.errors == 7 and report.count(Severity.NOTE) == 1 and not report.ok


# -- rendering ----------------------------------------------------------------------------------

def _rendered_program(tmp_path):
    src = tmp_path / "demo.c"
    src.write_text("int f(void)\n{\n\tunsigned long t = bpf_ktime_get_ns();\n\treturn t % 7;\n}\n")
    line_info = {
        0: SourceLoc("demo.c", 3, 20, "unsigned long t = bpf_ktime_get_ns();"),
        1: SourceLoc("demo.c", 4, 11, "return t % 7;"),
    }
    insns = (call(Helper.ktime_get_ns), alu(AluOp.MOD, 0, 7), EXIT)
    return Program("demo", insns, section="xdp", line_info=line_info, source_path=str(tmp_path / "demo.o"))


def test_text_rendering_golden(tmp_path, golden):
    p = _rendered_program(tmp_path)
    text = render_text(check(p, KERNEL), p)
    golden("check/render_demo.txt", text.replace(str(tmp_path), "<tmp>"))
    lines = text.splitlines()
    # the caret sits under column 20 of the tab-indented line: 'b' of bpf_ktime_get_ns
    i = lines.index(" 3 | unsigned long t = bpf_ktime_get_ns();")
    assert lines[i + 1].index("^") - lines[i].index("u") == lines[i].split("| ")[1].index("bpf")
    assert lines[0] == "demo.c:3:20: error: helper bpf_ktime_get_ns (id 5) is not available on the NIC " \
                       "[unsupported-helper]"
    assert lines[-1] == "demo (xdp): not offloadable with profile 'nfp-kernel': 3 errors, 0 warnings"


def test_no_caret_without_source(tmp_path):
    p = _rendered_program(tmp_path)
    (tmp_path / "demo.c").unlink()
    text = render_text(check(p, KERNEL), p)
    assert " 3 | unsigned long t" in text and "^" not in text


def test_json_schema(tmp_path):
    p = _rendered_program(tmp_path)
    data = json.loads(render_json(check(p, KERNEL)))
    assert set(data) == {"ok", "program", "section", "profile", "diagnostics", "resources"}
    res = data["resources"]
    assert res == {"stack": 0, "stack_limit": 512, "nfp_insns": sum(EXPANSION[k] for k in ("call", "div", "exit")),
                   "nfp_insns_estimated": True, "nfp_insn_limit": KERNEL.instruction_store,
                   "maps": 0, "map_limit": 128, "map_entries": 0, "map_entry_limit": KERNEL.max_total_entries}
    assert (data["ok"], data["program"], data["section"], data["profile"]) == (False, "demo", "xdp", "nfp-kernel")
    keys = {"code", "severity", "insn", "file", "line", "col", "message", "hint", "kernel"}
    for d in data["diagnostics"]:
        assert set(d) == keys
        assert d["severity"] in ("error", "warning", "note")
        assert d["code"] in {c.value for c in Code}
        assert d["insn"] is None or isinstance(d["insn"], int)
    assert [(d["code"], d["insn"], d["line"], d["col"]) for d in data["diagnostics"]] == [
        ("unsupported-helper", 0, 3, 20), ("div-operand", 1, 4, 11), ("mod", 1, 4, 11)]


def test_every_code_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "check-json.md").read_text()
    for code in Code:
        assert f"`{code.value}`" in doc, code


def test_ok_summary():
    report = check(prog([]), KERNEL)
    assert render_text(report).splitlines()[-1] == "t (xdp): ok, offloadable with profile 'nfp-kernel'"


def test_resources():
    p = prog([*lookup(), st(Size.DW, 10, -72, 0)], maps=[ARRAY, replace(ARRAY, name="b", max_entries=100)])
    res = check(p, KERNEL).resources
    assert (res.stack, res.maps, res.map_entries) == (128, 2, 104)  # 72 bytes -> two 64-byte units
    assert res.nfp_insns == estimate_nfp_insns(p) and res.nfp_insns_estimated
    exact = check(p, KERNEL, nfp_insn_count=77).resources
    assert exact.nfp_insns == 77 and not exact.nfp_insns_estimated
    assert "NFP instructions 77/4096, maps 2/128" in str(exact)


# -- robustness ----------------------------------------------------------------------------------

def _plausible_codes() -> list[int]:
    """Opcodes that decode with some field choice: the fuzzer draws from these, not from 256 random bytes."""
    found = set()
    for code in range(256):
        for src, off, imm in ((0, 0, 0), (1, 0, 0), (0, 0, 16), (0, 1, 0), (0, 8, 0), (0, 0, 1)):
            try:
                decode(Insn(code, 1, src, off, imm).encode() + EXIT.encode())
                found.add(code)
            except DecodeError:
                pass
    return sorted(found)


PLAUSIBLE = _plausible_codes()
_INSN = hst.builds(Insn, hst.sampled_from(PLAUSIBLE), hst.integers(0, 10), hst.integers(0, 10),
                   hst.integers(-4, 4) | hst.sampled_from([0, 1, 8, 16, -8, -512, 300]),
                   hst.integers(-3, 3) | hst.sampled_from([0, 1, 16, 44, 65, 0xE1, 0xF1, 12, 23, 5]))


@settings(max_examples=300)
@given(hst.lists(_INSN, min_size=1, max_size=20), hst.sampled_from([ProgType.XDP, ProgType.SCHED_CLS]))
def test_any_decodable_program_checks_without_exceptions(insns, prog_type):
    try:
        decoded = decode(b"".join(i.encode() for i in insns) + EXIT.encode())
    except DecodeError:
        return
    p = Program("fuzz", tuple(decoded), prog_type=prog_type, maps=(ARRAY, PERCPU))
    from nfpjit.analysis import analyze

    for report in (check(p, KERNEL), check(p, KERNEL, analysis=analyze(p))):
        assert all(d.code in set(Code) for d in report.diagnostics)
        assert all(d.insn is None or d.insn in p.index_at_pc for d in report.diagnostics)
        assert render_text(report, p).endswith("\n")
        json.loads(render_json(report))


def test_fuzzer_draws_valid_programs():
    # the property above is only meaningful if drawn programs decode often enough
    assert len(PLAUSIBLE) > 100
    import random

    rng = random.Random(1)
    ok = 0
    for _ in range(300):
        insn = Insn(rng.choice(PLAUSIBLE), rng.randint(0, 10), rng.choice([0, 1]), rng.choice([0, 1]),
                    rng.choice([0, 1, 16]))
        try:
            decode(insn.encode() + EXIT.encode())
            ok += 1
        except DecodeError:
            pass
    assert ok > 50


# -- the C corpus -------------------------------------------------------------------------------

# What the nfp-kernel (real-card) profile must say about each corpus program, from reading its C source
# against the NFP offload rules: per-CPU/LPM/prog-array maps, non-NIC helpers, in-place writes to map
# values (the real driver allows only atomic add there), map flags, context stores on TC.
CORPUS_EXPECTED = {
    "af_xdp": {"map-type", "ctx-load", "unsupported-helper"},   # xskmap, rx_queue_index, bpf_redirect_map
    "alu32_heavy": set(),
    "array_counter": {"map-value-write"},         # *packets += 1 through the lookup result
    "atomic_add": set(),                          # __sync_fetch_and_add on a map value: fine
    "bounded_loop": {"map-value-write"},          # *out = sum
    "bpf2bpf_call": set(),
    "fib_router": {"ctx-load", "unsupported-helper"},  # ingress_ifindex; bpf_fib_lookup, bpf_redirect
    "global_data": {"map-flags", "map-value-write"},  # .data/.bss are mmapable arrays; seen_packets += 1
    # BPF_F_NO_PREALLOC; *count += 1; the __u16 key sits at r10-2: "unaligned stack pointer 2"
    "hash_counter": {"map-flags", "map-value-write", "helper-arg"},
    "ipip_encap": set(),                          # bpf_xdp_adjust_head is offloadable
    "ipv4_csum_update": set(),
    "katran_lb": {"map-type", "ctx-load", "map-value-write"},  # array/hash of maps; rx_queue_index; *backend += 1
    "ktime": {"unsupported-helper"},
    "legacy_maps": {"map-flags", "map-value-write", "ctx-load"},  # rx_queue_index, ingress_ifindex
    "loop_parser": {"unsupported-helper"},        # bpf_loop (its callback), bpf_xdp_load_bytes
    "lpm_trie": {"map-type", "map-flags"},        # LPM tries need BPF_F_NO_PREALLOC as well
    "mac_swap_tx": set(),
    "parse_l2_l3_l4": {"map-value-write"},
    "percpu_array": {"map-type", "map-value-write"},
    "queue_user": {"map-type", "map-value-write", "unsupported-helper"},  # queue, stack; ++*pkts; push/pop/peek
    "redirect_maps": {"map-type", "unsupported-helper"},  # devmap, devmap_hash, cpumap; bpf_redirect_map
    "redirect": {"unsupported-helper", "ctx-load"},  # ctx->ingress_ifindex: the NIC gives data/data_end only
    # ringbuf map and helpers; (*seq)++; n % 3 becomes a 64-bit multiply
    "ringbuf_sampler": {"map-type", "map-value-write", "mul-operand", "unsupported-helper"},
    "tail_call": {"tail-call", "map-type", "ctx-load"},  # ctx->rx_queue_index
    # skb->mark and skb->tc_classid; TC_ACT_OK is no verdict the NIC can carry out
    "tc_classifier": {"ctx-store", "exit-action", "ctx-load"},  # skb->protocol, vlan_*, ingress_ifindex
    "tc_sections:classifier": {"ctx-store", "exit-action"},  # skb->priority; skb->len is readable
    "tc_sections:action": {"ctx-store", "exit-action", "ctx-load"},  # skb->mark = skb->hash
    "tc_dscp_priority": {"ctx-store", "exit-action", "ctx-load"},  # skb->protocol; priority, classid, cb
    "tc_flow_marker": {"ctx-store", "exit-action", "ctx-load"},  # skb->hash, mark, protocol; TC_ACT_OK
    "tc_queue_pick": {"ctx-store", "exit-action", "ctx-load"},  # pkt_type, queue_mapping, cb; TC_ACT_UNSPEC ok
    # skb->protocol; skb->mark; TC_ACT_OK/SHOT; skb_load/store_bytes, l3/l4_csum_replace
    "tc_nat_port": {"ctx-load", "ctx-store", "exit-action", "unsupported-helper"},
    "two_programs:xdp/ingress": {"map-value-write"},
    "two_programs:xdp.frags": {"map-value-write"},  # both call note(), which does *v += 1
    "xdp_drop": set(),
    "xdp_drop_tcp_ports": {"helper-arg"},  # counts with an atomic add, but its __u16 key is at r10-2
    "xdp_pass": set(),
    # -- programs of the kinds public XDP/TC tutorials and tools carry (issue 11) --
    "arp_responder": {"map-value-write"},         # *n += 1 on the reply counter
    "atomic_flow_stats": {"atomic-op"},           # fetch_add/and/or/xor, xchg, cmpxchg (v3 atomics)
    "cls_dscp_marker": {"ctx-store", "exit-action", "unsupported-helper"},  # skb->priority/mark; TC_ACT_OK; l3_csum_replace
    # skb->protocol; ktime; bucket fields; 64-bit elapsed / constant; tc_classid; TC_ACT_OK
    "cls_rate_marker": {"ctx-load", "ctx-store", "div-operand", "exit-action", "map-value-write", "unsupported-helper"},
    "cls_port_policy": {"ctx-load", "ctx-store", "exit-action", "map-value-write"},  # skb->protocol; tc_classid
    "conntrack_lite": {"map-type", "map-value-write"},   # LRU hash; ct->state = ...
    # LRU hash; FNV-1a multiply in 64 bits; u16 qtype key at r10-6; *tc += 1
    "dns_filter": {"helper-arg", "map-type", "map-value-write", "mul-operand"},
    "flow_counter": {"map-entry-size", "map-value-write"},  # 40-byte key + 32-byte value > 64; r->packets += 1
    "gre_decap": set(),                           # atomic add counters and adjust_head only
    "gre_encap": {"map-value-write"},             # *bytes += inner_len
    "icmp_echo_responder": {"map-value-write"},
    "ipip_decap": {"map-value-write"},
    "ipv6_ext_parser": {"map-value-write", "packet-split"},  # the header walk reaches past the split
    # .rodata backend table (mmapable, variable index); 64-bit hash multiplies and the jump division
    "jump_hash_lb": {"div-by-variable", "div-operand", "map-flags", "map-value-offset", "map-value-write",
                     "mul-operand"},
    "lpm_auto_block": {"map-flags", "map-type", "map-value-write"},  # LPM trie (NO_PREALLOC); hit->hits += 1
    "maglev_lb": {"map-type", "map-value-write", "mul-operand"},  # LRU conns; *entry = owner; % 251 as a multiply
    "pcpu_port_filter": {"map-type", "map-value-write"},  # per-CPU array; s->packets += 1
    "prandom_sampler": {"map-value-write"},       # get_prandom_u32 is offloadable; s->seen += 1
    # .rodata bucket width: division by a variable, 64-bit mean division, variable-index quarter[q]
    "size_histogram": {"div-by-variable", "div-operand", "map-flags", "map-value-offset", "map-value-write",
                       "mul-operand"},
    "syn_flood_guard": {"map-type", "map-value-write"},  # LRU hash; st->syns += 1
    # ktime; u16 port key at r10-2; b->tokens = ...; elapsed / NS_PER_TOKEN in 64 bits
    "token_bucket_police": {"div-operand", "helper-arg", "map-value-write", "unsupported-helper"},
    "udp_echo_reflector": {"map-value-write"},
    "vlan_pop": {"helper-arg", "map-value-write"},   # u16 VID key at r10-2; s->frames += 1
    "vlan_push": {"map-value-write"},
    "vxlan_decap": {"map-value-write"},
}

UNFRIENDLY = {"percpu_array", "lpm_trie", "ktime", "tail_call", "redirect", "af_xdp", "fib_router", "redirect_maps",
              "katran_lb", "ringbuf_sampler", "queue_user", "loop_parser", "pcpu_port_filter", "lpm_auto_block",
              "maglev_lb", "conntrack_lite", "token_bucket_police", "cls_rate_marker"}


def _corpus_programs():
    out = []
    for obj in sorted(CORPUS.glob("*.o")):
        out.append(obj.stem)
    return out


def _load_corpus(key):
    import nfpjit

    stem, _, section = key.partition(":")
    return nfpjit.load(CORPUS / f"{stem}.o", section=section or None)


def test_every_corpus_object_has_an_expectation():
    named = {k.partition(":")[0] for k in CORPUS_EXPECTED}
    assert named == set(_corpus_programs()), "add the new corpus program to CORPUS_EXPECTED"
    from nfpjit.ebpf.loader import list_programs

    for stem in named:
        sections = list_programs(CORPUS / f"{stem}.o")
        keys = {k for k in CORPUS_EXPECTED if k.partition(":")[0] == stem}
        if len(sections) > 1:
            assert keys == {f"{stem}:{sec}" for sec, _ in sections}


@pytest.mark.parametrize("key", sorted(CORPUS_EXPECTED))
def test_corpus_program(key, golden):
    program = _load_corpus(key)
    report = check(program, KERNEL)
    assert report.codes == CORPUS_EXPECTED[key]
    assert report.ok == (not any(d.severity == Severity.ERROR for d in report.diagnostics))
    if key in UNFRIENDLY:
        assert not report.ok
    # every diagnostic tied to an instruction points at a real one, with a source line when it has one
    for d in report.diagnostics:
        if d.insn is not None:
            assert d.insn in program.index_at_pc
    text = render_text(report, program)  # carets come from the C sources next to the objects
    assert str(CORPUS) not in text  # locations name the source file as the line info does, no paths
    golden(f"check/{key.replace(':', '--').replace('/', '_')}.txt", text)


def test_corpus_permissive_lifts_map_and_flag_limits():
    for key in ("percpu_array", "lpm_trie", "hash_counter", "tail_call"):
        report = check(_load_corpus(key), PERMISSIVE)
        assert report.ok, (key, report.codes)
    # our NIC has a clock (its timestamp counter) and redirects (to its port: TX); the real card neither
    for key in ("ktime", "redirect"):
        assert check(_load_corpus(key), PERMISSIVE).ok
        assert "unsupported-helper" in check(_load_corpus(key), KERNEL).codes


def test_map_type_note_points_at_the_lookup_call():
    program = _load_corpus("percpu_array")
    [note] = [d for d in check(program, KERNEL).diagnostics if d.severity == Severity.NOTE]
    insn = program.at(note.insn)
    assert insn.is_helper_call and insn.imm == Helper.map_lookup_elem
    assert note.line is not None and "bpf_map_lookup_elem" in note.source_text


# -- the analysis as the source of facts --------------------------------------------------------

@pytest.mark.parametrize("key", sorted(CORPUS_EXPECTED))
def test_corpus_report_uses_the_given_analysis(key):
    # the corpus is verifiable: no 'verifier' diagnostics, and a caller's analysis gives the same report
    from nfpjit.analysis import analyze

    program = _load_corpus(key)
    analysis = analyze(program)
    assert analysis.problems == []
    assert check(program, KERNEL, analysis=analysis).diagnostics == check(program, KERNEL).diagnostics


def _diags(p, profile=KERNEL):
    report = check(p, profile)
    assert Code.VERIFIER not in report.codes, report.diagnostics  # these programs verify
    return [(d.code, d.insn) for d in report.diagnostics]


def test_fact_map_value_pointer_spilled_across_a_call():
    # lookup, NULL check, the value pointer copied to r7, spilled; a helper call clobbers r0-r5;
    # reloaded into r3: the store through r3 writes the map value, the atomic add updates it
    p = prog([*lookup(), movr(7, 0), stx(Size.DW, 10, 7, -16), *rand(0), ldx(Size.DW, 3, 10, -16),
              st(Size.W, 3, 0, 1), mov(1, 1), atomic(Size.W, 3, 1, 4), ldx(Size.W, 2, 3, 4)], maps=[ARRAY])
    store, add, read = p.pcs[11], p.pcs[13], p.pcs[14]
    assert _diags(p) == [(Code.MAP_VALUE_WRITE, store), (Code.MAP_VALUE_USE, add)]
    [use] = [d for d in check(p, KERNEL).diagnostics if d.code == Code.MAP_VALUE_USE]
    assert f"also read (insn {read})" in use.message and "bytes 4..7" in use.message


def test_fact_copied_packet_pointer_past_the_split():
    # r8 = data + 300 (a copy of data moved on), bounds-checked, then read: beyond the 256-byte split
    p = prog([ldx(Size.W, 2, 1, 0), ldx(Size.W, 3, 1, 4), movr(8, 2), alu(AluOp.ADD, 8, 300),
              movr(4, 8), alu(AluOp.ADD, 4, 2), Insn(InsnClass.JMP | JmpOp.JGT | Source.X, 4, 3, 1),
              ldx(Size.H, 5, 8, 0)])
    assert _diags(p) == [(Code.PACKET_SPLIT, 7)]
    [d] = check(p, KERNEL).diagnostics
    assert "packet bytes 300..301" in d.message
    assert _diags(p, replace(KERNEL, packet_split=512)) == []


def test_fact_packet_pointer_spilled_before_its_bounds_check():
    # data spilled, the bounds check made on the register, the load through the reloaded copy
    p = prog([ldx(Size.W, 2, 1, 0), ldx(Size.W, 3, 1, 4), stx(Size.DW, 10, 2, -8),
              movr(4, 2), alu(AluOp.ADD, 4, 270), Insn(InsnClass.JMP | JmpOp.JGT | Source.X, 4, 3, 2),
              ldx(Size.DW, 5, 10, -8), ldx(Size.W, 0, 5, 264)])
    assert _diags(p) == [(Code.PACKET_SPLIT, 7)]


def test_fact_context_pointer_spilled_and_reloaded():
    p = prog([stx(Size.DW, 10, 1, -8), *rand(6), ldx(Size.DW, 3, 10, -8), ldx(Size.W, 4, 3, 16)])
    assert _diags(p) == [(Code.CTX_LOAD, 4)]


def test_facts_in_a_callee_frame():
    # the caller passes a pointer to its own stack and the map value; the callee stores through both
    callee = [stx(Size.DW, 1, 1, 0), st(Size.W, 2, 0, 5), mov(0, 0), EXIT]
    body = [*lookup(), st(Size.DW, 10, -16, 0), movr(1, 10), alu(AluOp.ADD, 1, -16), movr(2, 0),
            Insn(InsnClass.JMP | JmpOp.CALL, src=CallKind.LOCAL, imm=3)]
    p = prog(body)
    p = replace(p, insns=p.insns + tuple(callee), maps=(ARRAY,))
    callee_start = p.nslots - len(callee)
    call_pc = p.pcs[len(body) - 1]
    p = replace(p, insns=tuple(replace(i, imm=callee_start - pc - 1) if pc == call_pc else i
                               for pc, i in zip(p.pcs, p.insns)))
    assert _diags(p) == [(Code.MAP_VALUE_WRITE, callee_start + 1)]


def test_analysis_problems_become_verifier_diagnostics():
    from nfpjit.analysis import analyze

    p = prog([movr(2, 5), ldx(Size.W, 1, 1, 0)])  # r5 read before it is written
    report = check(p, KERNEL, analysis=analyze(p))
    assert [d.code for d in report.diagnostics] == [Code.VERIFIER]
    assert report.diagnostics[0].insn == 0 and not report.ok


def test_queue_select_is_not_a_verifier_problem_for_offload():
    from nfpjit.analysis import analyze

    # the host verifier refuses ctx->rx_queue_index = 3; the offload verifier accepts it
    p = prog([ldx(Size.W, 2, 1, 0), st(Size.W, 1, 16, 3), *rand(3), mov(4, 0), alur(AluOp.DIV, 4, 3)])
    analysis = analyze(p)
    assert [q.code for q in analysis.problems] == ["ctx_access"]
    report = check(p, KERNEL, analysis=analysis)
    # the store is analysed as the NIC's verifier sees it, so the code after it has facts:
    # the division by a random number is still found
    assert [(d.code, d.insn) for d in report.diagnostics] == [(Code.DIV_BY_VARIABLE, 5)]
    no_qs = replace(KERNEL, features=replace(KERNEL.features, queue_select=False))
    assert check(p, no_qs, analysis=analysis).codes == {"ctx-store", "verifier", "div-by-variable"}


def test_mixed_pointer_from_analysis():
    from nfpjit.analysis import analyze

    # r2 is the stack on one path and the packet on the other, then one load reads through it
    p = Program("t", (
        ldx(Size.W, 3, 1, 0), ldx(Size.W, 4, 1, 4),             # r3 = data, r4 = data_end
        movr(5, 3), alu(AluOp.ADD, 5, 8),
        Insn(InsnClass.JMP | JmpOp.JGT | Source.X, 5, 4, 7),     # if data + 8 > data_end goto out
        st(Size.DW, 10, -8, 0),
        movr(2, 10), alu(AluOp.ADD, 2, -8),
        ldx(Size.B, 6, 3, 0), jeq(6, 0, 1),
        movr(2, 3),
        ldx(Size.DW, 0, 2, 0),
        mov(0, 2), EXIT,
    ))
    analysis = analyze(p)
    assert analysis.problems == []
    report = check(p, KERNEL, analysis=analysis)
    assert [(d.code, d.insn) for d in report.diagnostics] == [(Code.MIXED_POINTER, 11)]


def test_packet_split_for_a_range():
    from nfpjit.analysis import analyze

    # a load at data + (byte & 0x3f) * 8: offsets 0..504, some beyond a 256-byte split
    p = Program("t", (
        ldx(Size.W, 3, 1, 0), ldx(Size.W, 4, 1, 4),
        movr(5, 3), alu(AluOp.ADD, 5, 1),
        Insn(InsnClass.JMP | JmpOp.JGT | Source.X, 5, 4, 9),
        ldx(Size.B, 6, 3, 0), alu(AluOp.AND, 6, 0x3F), alu(AluOp.LSH, 6, 3),
        alur(AluOp.ADD, 3, 6),
        movr(5, 3), alu(AluOp.ADD, 5, 1),
        Insn(InsnClass.JMP | JmpOp.JGT | Source.X, 5, 4, 2),
        ldx(Size.B, 0, 3, 0), mov(0, 2),
        mov(0, 2), EXIT,
    ))
    analysis = analyze(p)
    assert analysis.problems == []
    [d] = [d for d in check(p, KERNEL, analysis=analysis).diagnostics if d.code == Code.PACKET_SPLIT]
    # the verifier's max_pkt_offset is the highest offset the access may reach: the driver refuses it
    assert d.severity == Severity.ERROR and "0..504" in d.message and "packet split boundary" in d.kernel
    big = replace(KERNEL, packet_split=1024)
    assert Code.PACKET_SPLIT not in check(p, big, analysis=analysis).codes


# -- the command line ---------------------------------------------------------------------------

def _cli(args, capsys):
    from nfpjit.cli import main

    status = main(["check", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_cli_exit_status_and_text(capsys):
    status, out, err = _cli([str(CORPUS / "ktime.o"), "--profile", "nfp-kernel"], capsys)
    assert status == 1 and "[unsupported-helper]" in out and err == ""
    assert out.rstrip().endswith("1 error, 0 warnings")
    status, out, _ = _cli([str(CORPUS / "xdp_pass.o")], capsys)
    assert status == 0 and "ok, offloadable" in out


def test_cli_json(capsys):
    status, out, _ = _cli([str(CORPUS / "two_programs.o"), "-s", "xdp.frags", "--json", "--profile", "nfp-kernel"], capsys)
    data = json.loads(out)
    assert status == 1 and data["ok"] is False and data["section"] == "xdp.frags"
    assert [d["code"] for d in data["diagnostics"]] == ["map-value-write"]
    status, out, _ = _cli([str(CORPUS / "percpu_array.o"), "--json", "--profile", "permissive"], capsys)
    data = json.loads(out)
    assert status == 0 and data["ok"] is True and data["profile"] == "permissive" and data["diagnostics"] == []


def test_cli_usage_errors(capsys, tmp_path):
    status, _, err = _cli([str(CORPUS / "xdp_pass.o"), "--profile", "nope"], capsys)
    assert status == 2 and "unknown profile 'nope'" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 1\n")
    status, _, err = _cli([str(CORPUS / "xdp_pass.o"), "--profile", str(bad)], capsys)
    assert status == 2 and "bad.toml" in err
    status, _, err = _cli([], capsys)
    assert status == 2 and "missing the object" in err
    with pytest.raises(SystemExit) as exc:
        _cli(["--bogus"], capsys)
    assert exc.value.code == 2


def test_cli_bad_input_is_one_line(capsys, tmp_path):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF" + b"\x00" * 20)
    status, out, err = _cli([str(junk)], capsys)
    assert status == 1 and out == "" and err.startswith("nfpjit: error:") and err.count("\n") == 1
    status, _, err = _cli([str(CORPUS / "two_programs.o")], capsys)
    assert status == 1 and "xdp.frags" in err  # names the sections to pick from


def test_cli_list_profiles(capsys):
    status, out, _ = _cli(["--list-profiles"], capsys)
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == ["default", "nfp-kernel", "permissive"]


def test_public_api_check():
    import nfpjit

    report = nfpjit.check(str(CORPUS / "lpm_trie.o"), profile="nfp-kernel")
    assert report.codes == CORPUS_EXPECTED["lpm_trie"] and not report.ok
    report = nfpjit.check(str(CORPUS / "lpm_trie.o"), profile="permissive")
    assert report.ok
    report = nfpjit.check(_load_corpus("xdp_pass"), analyze=False)
    assert report.ok and report.diagnostics == ()


# -- generated verifiable programs: every planted problem is found, and nothing else ---------

_XDP_CTX_FIELDS = (0, 4, 8, 12, 16)  # data, data_end, data_meta, ingress_ifindex, rx_queue_index
_PKT = (InsnClass.JMP | JmpOp.JGT | Source.X)


def _planted(kind, k, size, via):
    """One verifiable fragment and what the report must say about it: (insns, [(code, index)]).

    r6 holds the context throughout; r0-r5 and r7-r9 are scratch.  ``via`` says how the pointer
    reaches the access: directly, through a register copy, or spilled to the stack and reloaded
    after a helper call, so a report missing any of these facts misses the planted problem."""
    def route(reg, ptr_insns):
        """Insns that leave a copy of ``reg`` in r7 (by ``via``), then ``ptr_insns`` through r7."""
        if via == "copy":
            return [movr(7, reg), *ptr_insns]
        if via == "spill":
            return [stx(Size.DW, 10, reg, -24), *rand(0), ldx(Size.DW, 7, 10, -24), *ptr_insns]
        return [movr(7, reg), *ptr_insns]  # "direct": r7 = r0 is the plain case

    if kind in ("map_write", "map_fetch", "map_read"):
        access = {"map_write": st(size, 7, 0, 7),
                  "map_fetch": atomic(Size.W, 7, 1, 0, AtomicOp.FETCH_ADD),
                  "map_read": ldx(Size.W if size == Size.DW else size, 1, 7, 4)}[kind]  # not the counter
        body = route(0, [mov(1, 1), access])
        head = [st(Size.W, 10, -4, k % 4), Insn.ld_imm64(1, 0, PseudoSrc.MAP_FD), movr(2, 10),
                alu(AluOp.ADD, 2, -4), call(Helper.map_lookup_elem), jeq(0, 0, sum(i.width for i in body))]
        code = {"map_write": Code.MAP_VALUE_WRITE, "map_fetch": Code.ATOMIC_OP, "map_read": None}[kind]
        return head + body, [(code, len(head) + len(body) - 1)] if code else []
    if kind == "packet":
        off, nbytes = (k * 37) % 400, min(size.nbytes, 4)
        load = ldx(Size.W if size == Size.DW else size, 5, 7, off)
        # data copied, or spilled, before the bounds check made on r2; the load goes through the
        # copy (same id) or the slot reloaded after the check (the spill shares the proven range)
        pre, post = ([movr(7, 2)], []) if via != "spill" else ([stx(Size.DW, 10, 2, -24)], [ldx(Size.DW, 7, 10, -24)])
        insns = [ldx(Size.W, 2, 6, 0), *pre, ldx(Size.W, 3, 6, 4), movr(4, 2), alu(AluOp.ADD, 4, off + 8),
                 Insn(_PKT, 4, 3, 1 + len(post)), *post, load]
        return insns, [(Code.PACKET_SPLIT, len(insns) - 1)] if off + nbytes > 256 else []
    if kind == "ctx_read":
        field = _XDP_CTX_FIELDS[k % 5]
        insns = route(6, [ldx(Size.W, 1, 7, field)])
        return insns, [(Code.CTX_LOAD, len(insns) - 1)] if field > 4 else []
    if kind == "div":
        divisor = mov(8, k + 1) if k % 2 else [*rand(8)]
        divisor = divisor if isinstance(divisor, list) else [divisor]
        insns = [*divisor, mov(9, 1000), alur(AluOp.DIV, 9, 8, cls=InsnClass.ALU)]
        return insns, [] if k % 2 else [(Code.DIV_BY_VARIABLE, len(insns) - 1)]
    raise AssertionError(kind)


_PLANTS = hst.lists(hst.tuples(hst.sampled_from(["map_write", "map_fetch", "map_read", "packet", "ctx_read", "div"]),
                               hst.integers(0, 40), hst.sampled_from([Size.B, Size.H, Size.W, Size.DW]),
                               hst.sampled_from(["direct", "copy", "spill"])),
                    min_size=1, max_size=5)


def _planted_program(plants, verdict):
    insns, expected = [movr(6, 1)], []
    for plant in plants:
        block, found = _planted(*plant)
        base = sum(i.width for i in insns)
        widths = [sum(i.width for i in block[:n]) for n in range(len(block))]
        expected += [(code, base + widths[n]) for code, n in found]
        insns += block
    if verdict == XdpAction.REDIRECT:
        expected.append((Code.EXIT_ACTION, sum(i.width for i in insns) + 1))
    insns += [mov(0, verdict), EXIT]
    return Program("gen", tuple(insns), maps=(ARRAY,)), expected


@settings(max_examples=60, deadline=None)
@given(_PLANTS, hst.sampled_from([0, 1, 2, 3, 4]))
def test_generated_programs_report_exactly_the_planted_problems(plants, verdict):
    p, expected = _planted_program(plants, verdict)
    report = check(p, KERNEL)
    assert sorted((d.code, d.insn) for d in report.diagnostics if d.severity != Severity.NOTE) == sorted(expected)


def test_planted_problems_oracle_sees_each_kind():
    # the property above must not pass vacuously: each kind and route plants what it should
    from nfpjit.analysis import analyze

    seen = set()
    for kind in ("map_write", "map_fetch", "packet", "ctx_read", "div"):
        for via in ("direct", "copy", "spill"):
            k = {"packet": 8, "ctx_read": 4, "div": 2}.get(kind, 0)  # split, rx_queue_index, rand
            p, expected = _planted_program([(kind, k, Size.W, via)], 2)
            assert analyze(p).problems == [], (kind, via)
            assert expected and sorted((d.code, d.insn) for d in check(p, KERNEL).diagnostics) == expected
            seen.add(expected[0][0])
    assert len(seen) == 5


def test_cli_warnings_alone_exit_zero(capsys, tmp_path):
    src = tmp_path / "odd_verdict.s"
    src.write_text("# returns 9: no XDP action, the NIC aborts\n    mov %r0, 9\n    exit\n")
    status, out, _ = _cli([str(src), "--profile", "nfp-kernel"], capsys)
    assert status == 0
    assert "[exit-action]" in out and out.rstrip().endswith("offloadable with profile 'nfp-kernel': 0 errors, 1 warning")
    assert f"{src}:3:5: warning: returns 9" in out  # reported at the exit


def test_no_analysis_only_leaves_out_verifier_problems(capsys, tmp_path):
    import nfpjit

    # xdp_md.ingress_ifindex is read-only: the kernel refuses the store, the NIC cannot do it either
    src = tmp_path / "ctx_store.s"
    src.write_text("    stw [%r1+12], 3\n    mov %r0, 2\n    exit\n")
    status, out, _ = _cli([str(src), "--profile", "nfp-kernel"], capsys)
    assert status == 1 and "[ctx-store]" in out and "[verifier]" in out
    status, out, _ = _cli([str(src), "--no-analysis", "--profile", "nfp-kernel"], capsys)
    assert status == 1 and "[ctx-store]" in out and "[verifier]" not in out
    assert nfpjit.check(str(src), profile="nfp-kernel").codes == {"ctx-store", "verifier"}
    assert nfpjit.check(str(src), profile="nfp-kernel", analyze=False).codes == {"ctx-store"}


def test_default_takes_tc_programs():
    # our NIC hands TC programs the packet metadata (docs/jit.md) and carries out every TC verdict;
    # nfp-kernel (the real driver) refuses each of these
    default = load_profile("default")
    tc = ProgType.SCHED_CLS
    metadata = [ldx(Size.H, 2, 1, 16), ldx(Size.W, 3, 1, 68), ldx(Size.DW, 4, 1, 48), ldx(Size.W, 5, 1, 64)]
    assert codes(prog(metadata, prog_type=tc), default) == set()
    assert codes(prog(metadata, prog_type=tc)) == {Code.CTX_LOAD}
    [d] = errors_of(prog([ldx(Size.DW, 2, 1, 152)], prog_type=tc), Code.CTX_LOAD, default)
    assert "__sk_buff.tstamp" in d.message           # the timestamps are not modelled
    mark = prog([st(Size.W, 1, 8, 1)], prog_type=tc)
    assert codes(mark, default) == set() and codes(mark) == {Code.CTX_STORE}
    cb = prog([st(Size.B, 1, 53, 1), mov(2, 5), stx(Size.DW, 1, 2, 56)], prog_type=tc)
    assert codes(cb, default) == set() and codes(cb) == {Code.CTX_STORE}
    [d] = errors_of(prog([st(Size.W, 1, 0, 1)], prog_type=tc), Code.CTX_STORE, default)
    assert "__sk_buff.len" in d.message and "mark" in d.hint   # len is not writable
    for verdict in (TcAction.OK, TcAction.PIPE, TcAction.REDIRECT, -1):
        p = Program("t", (mov(0, verdict), EXIT), prog_type=tc)
        assert codes(p, default) == set(), verdict
    variable = Program("t", (ldx(Size.W, 0, 1, 0), EXIT), prog_type=tc)
    assert codes(variable, default) == set() and codes(variable) == {Code.EXIT_ACTION}


@pytest.mark.parametrize("key", ["tc_classifier", "tc_sections:classifier", "tc_sections:action", "tc_dscp_priority",
                                 "tc_flow_marker", "tc_queue_pick"])
def test_default_takes_the_tc_corpus(key):
    assert check(_load_corpus(key), load_profile("default")).codes == set()

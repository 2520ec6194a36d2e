"""CFG, dominators, loops and half-register liveness on small hand-written programs.

Expected blocks, dominators and live halves are worked out by hand in the
comments next to each program.
"""

from __future__ import annotations

from nfpjit.analysis import HI, LO, Liveness, analyze, build_cfg
from nfpjit.analysis.liveness import use_def, bit, both
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, Source
from nfpjit.ebpf.program import Program


def asm(text: str) -> Program:
    return assemble(".type xdp\n" + text, filename="t.s")


LOOP = """
    mov r0, 0          ; 0
    mov r1, 10         ; 1
l:  add r0, r1         ; 2  loop header
    sub r1, 1          ; 3
    jne r1, 0, l       ; 4  back edge 4 -> 2
    exit               ; 5
"""


def test_loop_blocks_dominators_and_back_edge():
    cfg = build_cfg(asm(LOOP))
    assert sorted(cfg.blocks) == [0, 2, 5]
    assert cfg.blocks[0].pcs == (0, 1)
    assert cfg.blocks[2].pcs == (2, 3, 4)
    assert set(cfg.blocks[2].succs) == {2, 5}
    assert set(cfg.blocks[2].preds) == {0, 2}
    assert cfg.idom[0] is None and cfg.idom[2] == 0 and cfg.idom[5] == 2
    assert len(cfg.loops) == 1
    loop = cfg.loops[0]
    assert loop.header == 2 and loop.back_edges == ((4, 2),) and loop.blocks == frozenset({2})
    assert not cfg.problems


DIAMOND_CALL = """
    mov r6, r1         ; 0
    jeq r1, 0, two     ; 1
    mov r1, 1          ; 2
    ja join            ; 3
two: mov r1, 2         ; 4
join: call fn          ; 5  local call
    exit               ; 6
fn: mov r0, r1         ; 7
    exit               ; 8
"""


def test_diamond_functions_and_dominance():
    cfg = build_cfg(asm(DIAMOND_CALL))
    assert sorted(cfg.blocks) == [0, 2, 4, 5, 7]
    # the join block is dominated by the entry only, not by either arm
    assert cfg.idom[5] == 0 and cfg.dominates(0, 5)
    assert not cfg.dominates(2, 5) and not cfg.dominates(4, 5)
    assert cfg.dominates(5, 5)
    assert not cfg.loops
    main, callee = cfg.functions
    assert (main.start, main.end) == (0, 7) and main.calls == ((5, 7),) and main.exits == (6,)
    assert (callee.start, callee.end) == (7, 9) and callee.blocks == (7,)
    assert cfg.block_at(3).start == 2 and cfg.function_at(8).start == 7


def test_nested_loops():
    cfg = build_cfg(asm("""
        mov r0, 0              ; 0
        mov r1, 0              ; 1
    outer: mov r2, 0           ; 2
    inner: add r0, 1           ; 3
        add r2, 1              ; 4
        jlt r2, 4, inner       ; 5  back edge to 3
        add r1, 1              ; 6
        jlt r1, 4, outer       ; 7  back edge to 2
        exit                   ; 8
    """))
    loops = {lp.header: lp for lp in cfg.loops}
    assert set(loops) == {2, 3}
    assert loops[3].back_edges == ((5, 3),) and loops[3].blocks == frozenset({3})
    assert loops[2].back_edges == ((7, 2),) and loops[2].blocks == frozenset({2, 3, 6})


def test_structural_problems():
    # jump past the end: build by hand, the assembler would refuse it
    prog = Program("bad", (Insn(InsnClass.JMP | JmpOp.JA, off=5), Insn(InsnClass.JMP | JmpOp.EXIT)))
    a = analyze(prog)
    assert [p.code for p in a.problems][:1] == ["jump_out_of_range"] and not a.ok
    # falling off the end of the program
    a = analyze(Program("fall", (Insn(InsnClass.ALU64 | AluOp.MOV, dst=0, imm=0),)))
    assert "fall_off_end" in {p.code for p in a.problems}
    # an instruction no edge reaches
    a = analyze(asm("mov r0, 0\nexit\nmov r0, 1\nexit"))
    assert [(p.pc, p.code) for p in a.problems] == [(2, "unreachable"), (3, "unreachable")]


def test_use_def_halves():
    mov32 = Insn(InsnClass.ALU | AluOp.MOV | Source.X, dst=2, src=1)
    ud = use_def(mov32)
    assert ud.use == bit(1, LO) and ud.define == both(2)
    add64 = Insn(InsnClass.ALU64 | AluOp.ADD | Source.X, dst=2, src=3)
    assert use_def(add64).use == both(2) | both(3)
    jmp32 = Insn(InsnClass.JMP32 | JmpOp.JGT | Source.X, dst=4, src=5)
    assert use_def(jmp32).use == bit(4, LO) | bit(5, LO)
    call = Insn(InsnClass.JMP | JmpOp.CALL, imm=1)  # map_lookup_elem(map, key)
    ud = use_def(call)
    assert ud.use == both(1) | both(2) and ud.define == both(0)
    assert ud.kill & both(3)


def test_hi32_liveness():
    prog = asm("""
        mov32 r2, r1           ; 0  high word of r2: read later? only by insn 4
        add32 r2, 1            ; 1
        stxw [r10-4], r2       ; 2  a 4-byte store reads the low word only
        mov r3, r2             ; 3  64-bit copy reads both halves ...
        stxw [r10-8], r3       ; 4  ... but r3's high word is never used
        mov r0, 0              ; 5
        exit                   ; 6  XDP verdict: low word of r0 only
    """)
    live = Liveness(prog, build_cfg(prog))
    # insn 1's high-word write is read by insn 3 (64-bit mov), so it is live
    assert live.hi32_live_out(1, 2)
    assert not live.hi32_live_out(3, 3)
    assert not live.hi32_live_out(5, 0)
    assert live.is_live_out(5, 0, LO)
    # r1's high word is never read: the 32-bit mov at 0 reads only its low word
    assert live.live_in[0] & bit(1, LO) and not live.live_in[0] & bit(1, HI)

    prog2 = asm("""
        mov32 r2, r1           ; 0
        add32 r2, 1            ; 1  nothing reads r2's high word after this
        stxw [r10-4], r2       ; 2
        jeq32 r2, 7, out       ; 3  JMP32 reads the low word only
        mov r0, 1              ; 4
        exit                   ; 5
    out: mov r0, 2             ; 6
        exit                   ; 7
    """)
    live2 = Liveness(prog2, build_cfg(prog2))
    assert not live2.hi32_live_out(0, 2) and not live2.hi32_live_out(1, 2)


def test_call_liveness_uses_callee_arguments():
    prog = asm(DIAMOND_CALL)
    live = Liveness(prog, build_cfg(prog))
    # fn reads r1 only: r2-r5 are not live at the call
    assert live.live_in[5] & both(1) == both(1)
    assert not live.live_in[5] & (both(2) | both(3) | both(4) | both(5))
    # the callee's exit returns all of r0
    assert live.live_in[8] & both(0) == both(0)


def test_facts_carry_liveness():
    prog = asm("mov32 r0, 5\nadd32 r0, 1\nexit")
    a = analyze(prog)
    assert a.ok
    f = a.facts[1]
    assert f.dst_hi32_zero is True and f.hi32_live_out is False and f.src_const == 1

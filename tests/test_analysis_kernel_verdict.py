"""Our verdict (safe or not) equals the Linux verifier's, program by program.

The kernel is the oracle: every corpus program and every hand-written variant
below is loaded with BPF_PROG_LOAD (nfpjit.kernel) and analysed by
nfpjit.analysis; the two must agree.  The kernel runs as a privileged loader,
which may read never-written stack, so the analysis is asked to allow that too
(``allow_uninit_stack=True``).  Skips when bpf() is unusable here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nfpjit
from nfpjit.analysis import analyze
from nfpjit.ebpf.asm import assemble
from tests.corpus_cases import corpus_cases

CORPUS = Path(__file__).resolve().parent / "corpus"


def _kernel():
    try:
        from nfpjit.kernel import KernelError, KernelRejected, kernel_available, load_in_kernel
    except ImportError as exc:  # the oracle is not built in this tree
        pytest.skip(f"nfpjit.kernel is not available: {exc}")
    ok, why = kernel_available()
    if not ok:
        pytest.skip(why)
    return load_in_kernel, KernelRejected, KernelError


def kernel_verdict(prog) -> tuple[bool, str]:
    load, rejected, kerror = _kernel()
    try:
        with load(prog):
            return True, ""
    except rejected as exc:
        return False, exc.log[-600:]
    except kerror as exc:  # a map the kernel cannot create here, etc.: not a verifier verdict
        pytest.skip(f"kernel could not set the program up: {exc}")


def ours(prog):
    a = analyze(prog, allow_uninit_stack=True, max_loop_iterations=2048)
    return a.ok, [str(p) for p in a.problems]


def load_corpus(path, section):
    if section is None:
        return assemble(path.read_text(), filename=str(path))
    return nfpjit.load(path, section=section)


@pytest.mark.kernel
@pytest.mark.parametrize("path,section", corpus_cases(asm=True))
def test_corpus_verdict_matches_kernel(path, section):
    prog = load_corpus(path, section)
    k_ok, log = kernel_verdict(prog)
    our_ok, problems = ours(prog)
    assert our_ok == k_ok, f"kernel ok={k_ok} log={log!r}; ours ok={our_ok} {problems}"


MAP = ".map m hash key=4 value=8 entries=4\n"
LOOKUP = """
    stw [r10-4], 0
    mov r2, r10
    add r2, -4
    lddw r1, map:m
    call map_lookup_elem
"""
BOUNDS = """
    ldxw r2, [r1]
    ldxw r3, [r1+4]
    mov r4, r2
    add r4, 14
"""

VARIANTS = {
    # unsafe
    "uninit_reg": "mov r0, r3\nexit",
    "packet_no_check": "ldxw r2, [r1]\nldxb r0, [r2]\nexit",
    "packet_wrong_side": BOUNDS + "jgt r4, r3, bad\nmov r0, 2\nexit\nbad: ldxb r0, [r2]\nexit",
    "packet_past_range": BOUNDS + "jgt r4, r3, out\nldxb r0, [r2+14]\nexit\nout: mov r0, 2\nexit",
    "null_deref": MAP + LOOKUP + "ldxdw r0, [r0]\nexit",
    "null_arith": MAP + LOOKUP + "add r0, 8\nmov r0, 0\nexit",
    "map_value_oob": MAP + LOOKUP + "jeq r0, 0, out\nldxdw r1, [r0+4]\nout: mov r0, 0\nexit",
    "unbounded_loop": "ldxw r2, [r1]\nmov r0, 0\nl: add r0, 1\njlt r0, r2, l\nexit",
    "infinite_loop": "mov r0, 0\nl: jeq r0, 0, l\nexit",
    "stack_oob": "stdw [r10-520], 1\nmov r0, 0\nexit",
    "stack_misaligned": "stdw [r10-12], 1\nmov r0, 0\nexit",
    "div_by_zero_imm": "mov r0, 1\ndiv r0, 0\nexit",
    "frame_write": "mov r10, 0\nmov r0, 0\nexit",
    "ctx_write": "stw [r1+0], 0\nmov r0, 0\nexit",
    "ctx_bad_size": "ldxb r0, [r1+0]\nexit",
    "ptr_arith_32": "ldxw r2, [r1]\nadd32 r2, 1\nmov r0, 0\nexit",
    "ptr_and": "ldxw r2, [r1]\nand r2, 1\nmov r0, 0\nexit",
    "helper_arg_type": "mov r1, 0\nmov r2, r10\ncall map_lookup_elem\nmov r0, 0\nexit",
    "adjust_head_stale": BOUNDS + """jgt r4, r3, out
        mov r7, r2
        mov r2, 4
        call xdp_adjust_head
        ldxb r0, [r7]
    out: mov r0, 2
        exit""",
    "ld_abs_in_xdp": "mov r6, r1\nldabsb 12\nexit",
    "unreachable": "mov r0, 0\nexit\nmov r0, 1\nexit",
    "spill_partial_fill": "stxdw [r10-8], r1\nldxw r0, [r10-8]\nexit",
    # safe
    "ret_const": "mov r0, 2\nexit",
    "packet_checked": BOUNDS + "jgt r4, r3, out\nldxb r0, [r2+13]\nexit\nout: mov r0, 2\nexit",
    "packet_checked_swapped": BOUNDS + "jge r3, r4, ok\nmov r0, 2\nexit\nok: ldxb r0, [r2+13]\nexit",
    "packet_var_offset": BOUNDS + """jgt r4, r3, out
        ldxb r5, [r2+0]
        and r5, 15
        mov r6, r2
        add r6, r5
        mov r7, r6
        add r7, 4
        jgt r7, r3, out
        ldxw r0, [r6+0]
        exit
    out: mov r0, 2
        exit""",
    "null_checked": MAP + LOOKUP + "mov r6, r0\njeq r0, 0, out\nldxdw r1, [r6+0]\nstdw [r6+0], 1\nout: mov r0, 2\nexit",
    "bounded_loop": "mov r0, 0\nmov r1, 0\nl: add r0, r1\nadd r1, 1\njlt r1, 100, l\nexit",
    "uninit_stack_read": "ldxdw r0, [r10-8]\nexit",
    "dead_unsafe_branch": "mov r1, 1\njeq r1, 1, ok\nldxb r0, [r2]\nexit\nok: mov r0, 2\nexit",
    "bpf2bpf": "mov r6, 7\nstdw [r10-8], 3\nmov r1, r10\nadd r1, -8\ncall fn\nadd r0, r6\nexit\n"
               "fn: ldxdw r0, [r1]\nstdw [r10-16], 0\nexit",
    "alu32_zext": "mov32 r0, -1\nadd32 r0, 3\nrsh r0, 1\nexit",
    "packet_store": BOUNDS + "jgt r4, r3, out\nstb [r2+0], 1\nout: mov r0, 2\nexit",
    "linked_scalar_bounds": ".map v array key=4 value=16 entries=1\n" + BOUNDS + """jgt r4, r3, out
        ldxb r6, [r2+0]
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:v
        call map_lookup_elem
        jeq r0, 0, out
        mov r7, r6
        jgt r7, 15, out
        add r0, r6
        ldxb r0, [r0+0]
        exit
    out: mov r0, 2
        exit""",
    "linked_scalar_plus_const": ".map v array key=4 value=16 entries=1\n" + BOUNDS + """jgt r4, r3, out
        ldxb r6, [r2+0]
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:v
        call map_lookup_elem
        jeq r0, 0, out
        mov r7, r6
        add r7, 4
        jgt r7, 19, out
        add r0, r6
        ldxb r0, [r0+0]
        exit
    out: mov r0, 2
        exit""",
    "linked_scalar_plus_const_oob": ".map v array key=4 value=16 entries=1\n" + BOUNDS + """jgt r4, r3, out
        ldxb r6, [r2+0]
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:v
        call map_lookup_elem
        jeq r0, 0, out
        mov r7, r6
        add r7, 4
        jgt r7, 20, out
        add r0, r6
        ldxb r0, [r0+0]
        exit
    out: mov r0, 2
        exit""",
    "unlinked_scalar_bounds": ".map v array key=4 value=16 entries=1\n" + BOUNDS + """jgt r4, r3, out
        mov r9, r2
        ldxb r6, [r2+0]
        stw [r10-4], 0
        mov r2, r10
        add r2, -4
        lddw r1, map:v
        call map_lookup_elem
        jeq r0, 0, out
        ldxb r7, [r9+0]
        jgt r7, 15, out
        add r0, r6
        ldxb r0, [r0+0]
        exit
    out: mov r0, 2
        exit""",
    # an array lookup with a constant in-range key cannot return NULL (the kernel drops the check)
    "array_const_key": ".map a array key=4 value=8 entries=2\nstw [r10-8], 1\nmov r2, r10\nadd r2, -8\n"
                       "lddw r1, map:a\ncall map_lookup_elem\nldxdw r0, [r0]\nexit",
    "array_key_out_of_range": ".map a array key=4 value=8 entries=2\nstw [r10-8], 2\nmov r2, r10\nadd r2, -8\n"
                              "lddw r1, map:a\ncall map_lookup_elem\nldxdw r0, [r0]\nexit",
    "array_key_unaligned_store": ".map a array key=4 value=8 entries=2\nstw [r10-4], 1\nmov r2, r10\n"
                                 "add r2, -4\nlddw r1, map:a\ncall map_lookup_elem\nldxdw r0, [r0]\nexit",
    "array_key_spill_overwritten": ".map a array key=4 value=8 entries=2\nstw [r10-8], 0\nstw [r10-4], 5\n"
                                   "mov r2, r10\nadd r2, -8\nlddw r1, map:a\ncall map_lookup_elem\n"
                                   "ldxdw r0, [r0]\nexit",
    "packet_zero_right_open": BOUNDS.replace("add r4, 14", "add r4, 0") +
                              "jge r4, r3, out\nldxb r0, [r2+0]\nexit\nout: mov r0, 2\nexit",
    "helper_clobbers_after_packet_move": BOUNDS + "jgt r4, r3, out\nmov r2, 0\ncall xdp_adjust_tail\n"
                                         "call xdp_adjust_tail\nout: mov r0, 2\nexit",
    "sub32_on_pointer": "mov r6, r1\nsub32 r6, 4\nmov r0, 2\nexit",
    "narrow_pointer_spill": "stxw [r10-8], r10\nmov r0, 2\nexit",
    "atomic_stack": "stdw [r10-8], 0\nmov r1, 1\nxadddw [r10-8], r1\nmov r0, 2\nexit",
}


TYPED_VARIANTS = {  # (program type, source)
 "tc_ld_abs": ("tc", "mov r6, r1\nldabsh 12\nexit"),
 "tc_ld_ind": ("tc", "mov r6, r1\nmov r7, 2\nldindb r7, 12\nexit"),
 "tc_ld_abs_no_r6": ("tc", "ldabsh 12\nexit"),
 "tc_mark_write": ("tc", "stw [r1+8], 1\nmov r0, 0\nexit"),
 "tc_len_read": ("tc", "ldxw r0, [r1+0]\nexit"),
 "tc_pkt": ("tc", "ldxw r2, [r1+76]\nldxw r3, [r1+80]\nmov r4, r2\nadd r4, 14\njgt r4, r3, out\nldxh r0, [r2+12]\nexit\nout: mov r0, 0\nexit"),
 "tc_pkt_oob": ("tc", "ldxw r2, [r1+76]\nldxw r3, [r1+80]\nmov r4, r2\nadd r4, 14\njgt r4, r3, out\nldxh r0, [r2+13]\nexit\nout: mov r0, 0\nexit"),
 "xdp_meta": ("xdp", "ldxw r2, [r1+8]\nldxw r3, [r1]\nmov r4, r2\nadd r4, 4\njgt r4, r3, out\nldxw r0, [r2]\nexit\nout: mov r0, 2\nexit"),
 "xdp_meta_oob": ("xdp", "ldxw r2, [r1+8]\nldxw r3, [r1]\nmov r4, r2\nadd r4, 4\njgt r4, r3, out\nldxw r0, [r2+2]\nexit\nout: mov r0, 2\nexit"),
 "call_depth_9": ("xdp", "call f1\nexit\nf1: call f2\nexit\nf2: call f3\nexit\nf3: call f4\nexit\nf4: call f5\nexit\nf5: call f6\nexit\nf6: call f7\nexit\nf7: call f8\nexit\nf8: mov r0, 2\nexit"),
 "call_depth_8": ("xdp", "call f1\nexit\nf1: call f2\nexit\nf2: call f3\nexit\nf3: call f4\nexit\nf4: call f5\nexit\nf5: call f6\nexit\nf6: call f7\nexit\nf7: mov r0, 2\nexit"),
 "stack_combined": ("xdp", "stdw [r10-256], 0\ncall f\nexit\nf: stdw [r10-288], 0\nmov r0, 2\nexit"),
 "callee_uninit_r6": ("xdp", "mov r6, 1\ncall f\nexit\nf: mov r0, r6\nexit"),
 "return_callee_stack": ("xdp", "call f\nmov r0, 2\nexit\nf: mov r0, r10\nexit"),
 "modified_ctx_to_helper": ("xdp", "sub r1, 8\nmov r2, 0\ncall xdp_adjust_tail\nmov r0, 2\nexit"),
 "sub_from_fp": ("xdp", "mov r8, r10\nsub r8, 8\nmov r0, 2\nexit"),
 "ctx_plus_unbounded": ("tc", "ldxw r4, [r1]\nadd r4, 14\nadd r1, r4\nmov r0, 2\nexit"),
 "redirect": ("xdp", "mov r1, 1\nmov r2, 0\ncall redirect\nexit"),
 "prandom_index": ("xdp", ".map m array key=4 value=64 entries=1\nstw [r10-8], 0\nmov r2, r10\nadd r2, -8\nlddw r1, map:m\ncall map_lookup_elem\nmov r6, r0\ncall get_prandom_u32\nand r0, 63\nadd r6, r0\nldxb r0, [r6]\nexit"),
 "update_uninit_value": ("xdp", ".map m hash key=4 value=8 entries=4\nstw [r10-8], 0\nmov r2, r10\nadd r2, -8\nmov r3, r10\nadd r3, -16\nmov r4, 0\nlddw r1, map:m\ncall map_update_elem\nmov r0, 2\nexit"),
 "signed_div": ("xdp", "mov r0, -7\nsdiv r0, 2\nmov r0, 2\nexit"),
 "shift_by_64": ("xdp", "mov r0, 1\nlsh r0, 64\nexit"),
 "jmp32_ptr": ("xdp", "ldxw r2, [r1]\nldxw r3, [r1+4]\njgt32 r2, r3, out\nmov r0, 1\nexit\nout: mov r0, 2\nexit"),
 "ptr_cmp_ne": ("xdp", "ldxw r2, [r1]\nldxw r3, [r1+4]\njne r2, r3, out\nmov r0, 1\nexit\nout: mov r0, 2\nexit"),
 "bswap_ptr": ("xdp", "ldxw r2, [r1]\nbe16 r2\nmov r0, 2\nexit"),
 "neg_ptr": ("xdp", "ldxw r2, [r1]\nneg r2\nmov r0, 2\nexit"),
 "movsx_ptr": ("xdp", "ldxw r2, [r1]\nmovsx8 r3, r2\nmov r0, 2\nexit"),
 "scalar_deref": ("xdp", "mov r2, 100\nldxb r0, [r2]\nexit"),
 "map_ptr_deref": ("xdp", ".map m hash key=4 value=8 entries=4\nlddw r1, map:m\nldxw r0, [r1]\nexit"),
 "var_stack": ("xdp", "ldxw r2, [r1]\nldxw r3, [r1+4]\nmov r4, r2\nadd r4, 1\njgt r4, r3, out\nldxb r5, [r2]\nand r5, 7\nmov r6, r10\nadd r6, -16\nadd r6, r5\nstdw [r10-16], 0\nstdw [r10-8], 0\nldxb r0, [r6]\nexit\nout: mov r0, 2\nexit"),
}


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(TYPED_VARIANTS))
def test_typed_variant_verdict_matches_kernel(name):
    kind, text = TYPED_VARIANTS[name]
    prog = assemble(f".type {kind}\n.license GPL\n" + text, filename=f"{name}.s")
    k_ok, log = kernel_verdict(prog)
    our_ok, problems = ours(prog)
    assert our_ok == k_ok, f"kernel ok={k_ok} log={log!r}; ours ok={our_ok} {problems}"


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_verdict_matches_kernel(name):
    prog = assemble(".type xdp\n.license GPL\n" + VARIANTS[name], filename=f"{name}.s")
    k_ok, log = kernel_verdict(prog)
    our_ok, problems = ours(prog)
    assert our_ok == k_ok, f"kernel ok={k_ok} log={log!r}; ours ok={our_ok} {problems}"


# -- templates with random boundaries: the edge of safe is where verdicts can drift ---------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}


@st.composite
def edge_program(draw):
    kind = draw(st.sampled_from(["packet", "map", "stack", "loop", "jmp32", "index", "index"]))
    size = draw(st.sampled_from([1, 2, 4, 8]))
    sfx = SIZES[size]
    if kind == "packet":
        check = draw(st.integers(0, 40))
        off = draw(st.integers(-2, 40))
        op = draw(st.sampled_from(["jgt r4, r3", "jge r4, r3", "jlt r3, r4", "jle r3, r4"]))
        return (f"ldxw r2, [r1]\nldxw r3, [r1+4]\nmov r4, r2\nadd r4, {check}\n{op}, out\n"
                f"ldx{sfx} r0, [r2{off:+d}]\nexit\nout: mov r0, 2\nexit")
    if kind == "map":
        vsize = draw(st.sampled_from([4, 8, 12, 16]))
        off = draw(st.integers(-4, 20))
        check = draw(st.sampled_from(["jeq r0, 0, out", "jne r0, 0, ok\nja out\nok:", ""]))
        return (f".map m array key=4 value={vsize} entries=2\nstw [r10-4], 0\nmov r2, r10\nadd r2, -4\n"
                f"lddw r1, map:m\ncall map_lookup_elem\n{check}\nldx{sfx} r1, [r0{off:+d}]\n"
                "out: mov r0, 2\nexit")
    if kind == "stack":
        woff = -8 * draw(st.integers(0, 65))
        roff = draw(st.integers(-520, 0))
        roff -= roff % size
        return f"stdw [r10{woff:+d}], 7\nldx{sfx} r0, [r10{roff:+d}]\nexit"
    if kind == "loop":
        bound = draw(st.integers(0, 300))
        step = draw(st.sampled_from([1, 2, 0]))
        return f"mov r0, 0\nmov r1, 0\nl: add r0, r1\nadd r1, {step}\njlt r1, {bound}, l\nexit"
    if kind == "index":
        # a packet-derived number shaped by random ALU ops and checks, then used as a map-value index
        # One shaping op and one check, as compiled code does.  (Longer random chains find places
        # where the kernel loses precision we keep, e.g. after JSET; see docs/analysis.md.)
        shape = draw(st.sampled_from(["and", "rsh", "lsh", "add", "sub", "mul", "and32", "rsh32", "mod", "or"]))
        c = draw(st.sampled_from([1, 2, 3, 4, 7, 8, 15, 16, 31, 63, 255]))
        ops = [f"{shape} r6, {c & 31 if 'sh' in shape else c}"]
        check = draw(st.sampled_from(["jgt", "jge", "jlt", "jgt32", "jsgt", "jslt", "jne", "none"]))
        lim = draw(st.sampled_from([0, 1, 7, 8, 15, 16, 63, 64]))
        if check == "jlt":
            ops.append(f"jlt r6, {lim}, ok\nja out\nok:")
        elif check == "jslt":
            ops.append(f"jslt r6, {lim}, ok\nja out\nok:")
        elif check != "none":
            ops.append(f"{check} r6, {lim}, out")
        vsize = draw(st.sampled_from([8, 16, 64]))
        load = draw(st.sampled_from(["ldxw r6, [r1+16]", "ldxw r6, [r1+12]"]))
        return (f".map m array key=4 value={vsize} entries=1\n{load}\nstw [r10-8], 0\nmov r2, r10\n"
                "add r2, -8\nlddw r1, map:m\ncall map_lookup_elem\n" + "\n".join(ops) +
                f"\nadd r0, r6\nldx{sfx} r1, [r0+0]\nout: mov r0, 2\nexit")
    # jmp32 narrowing then a map-value index
    lim = draw(st.integers(0, 20))
    op = draw(st.sampled_from(["jgt32", "jge32", "jsgt32", "jgt"]))
    return (".map m array key=4 value=16 entries=1\nldxw r6, [r1+16]\nstw [r10-4], 0\nmov r2, r10\n"
            "add r2, -4\nlddw r1, map:m\ncall map_lookup_elem\njeq r0, 0, out\n"
            f"{op} r6, {lim}, out\nand r6, 0xff\nadd r0, r6\nldxb r1, [r0+0]\nout: mov r0, 2\nexit")


def _edge_check(text):
    prog = assemble(".type xdp\n.license GPL\n" + text, filename="edge.s")
    k_ok, log = kernel_verdict(prog)
    our_ok, problems = ours(prog)
    assert our_ok == k_ok, f"{text}\nkernel ok={k_ok} log={log!r}; ours ok={our_ok} {problems}"


@pytest.mark.kernel
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=edge_program())
def test_edge_programs_match_kernel(text):
    _edge_check(text)


@pytest.mark.kernel
@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=edge_program())
def test_edge_programs_match_kernel_many(text):
    _edge_check(text)


# -- random instruction soup after a typical prologue ----------------------------------------------

PROLOGUE = """mov r6, r1
ldxw r2, [r1]
ldxw r3, [r1+4]
mov r4, r2
add r4, 14
jgt r4, r3, +0
mov r7, 0
mov r8, r10
add r8, -16
stdw [r10-8], 0
stdw [r10-16], 0"""


def _soup_program(body, tc):
    from nfpjit.ebpf.insn import Insn
    from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, MapType, ProgType
    from nfpjit.ebpf.program import MapDef, Program

    pro = list(assemble(".type xdp\n" + PROLOGUE, filename="prologue.s").insns)
    body = [b for b in body if not (b.is_branch and b.off > 0)]
    tail = [Insn(InsnClass.ALU64 | AluOp.MOV, 0, 0, 0, 2), Insn(InsnClass.JMP | JmpOp.EXIT)]
    insns = pro + body + tail
    nslots = sum(i.width for i in insns)
    jpc = sum(i.width for i in insns[:5])
    insns[5] = Insn(insns[5].code, insns[5].dst, insns[5].src, nslots - 2 - jpc - 1)  # "too short": to the tail
    return Program("soup", tuple(insns), prog_type=ProgType.SCHED_CLS if tc else ProgType.XDP,
                   maps=(MapDef("m", MapType.HASH, 4, 8, 4),), license="GPL")


def _soup_check(body, tc):
    from nfpjit.kernel import KernelRejected, load_in_kernel

    _kernel()
    prog = _soup_program(body, tc)
    try:
        with load_in_kernel(prog):
            k_ok, log = True, ""
    except KernelRejected as exc:
        k_ok, log = False, exc.log[-400:]
    except Exception:  # noqa: BLE001 - set-up the kernel oracle refuses (bad map index ...): no verdict
        return
    our_ok, problems = ours(prog)
    assert our_ok == k_ok, f"kernel ok={k_ok} log={log!r}; ours ok={our_ok} {problems}"


def _insn_strategy():
    import test_analysis_verifier

    return test_analysis_verifier.insn()


@pytest.mark.kernel
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(st.deferred(_insn_strategy), min_size=1, max_size=8), tc=st.booleans())
def test_soup_programs_match_kernel(body, tc):
    _soup_check(body, tc)


@pytest.mark.kernel
@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(st.deferred(_insn_strategy), min_size=1, max_size=10), tc=st.booleans())
def test_soup_programs_match_kernel_many(body, tc):
    _soup_check(body, tc)

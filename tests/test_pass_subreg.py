"""The ``subreg`` pass: golden listings, its refined liveness, and differential runs with and without it.

Every compiled program here is run in the simulator and by the reference interpreter; the pass
must change only the code, never a verdict, a packet, a map or (raw context) any of r0's 64 bits.

- golden listings (tests/golden/passes/subreg_*.txt) with FileCheck-style CHECK / CHECK-NOT
  patterns: the 32-bit forms the pass promises (no ``addc``/``subc`` on pointers, one ``sub``
  + ``br`` per bounds check, one ``mov`` per pointer copy ...);
- the refined liveness never calls a half live that the analysis' liveness calls dead (the
  lowering's other modules keep halves by the analysis' liveness: that is what makes it exact);
- edge values through the pass: raw-context programs (r0 is all 64 bits) whose operands come
  from memory, shaped so the analysis knows ranges or high words (``and``, ``rsh``, ``mov32``),
  then one ALU64 op or 64-bit compare;
- generated XDP programs x packets (``nfpjit.testing``) and the corpus, compiled with the -O1
  pipeline with and without ``subreg``, each against the interpreter.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.analysis import analyze
from nfpjit.bits import MASK64
from nfpjit.driver import compile, run_sim_raw
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run_raw
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.passes.pipelines import O1
from nfpjit.passes.subreg import make_plan
from nfpjit.testing import crafted_packets, packets, programs

from test_jit_differential import CRAFTED, _uses_nondeterminism, corpus_cases, differential
from test_jit_golden import filecheck, listing

WITH = O1 + ",subreg"
WITHOUT = O1

# -- golden listings ------------------------------------------------------------------------------

_BOUNDS = """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, drop
"""

CASES = {
    # a packet pointer copy, add and bounds check: one instruction each, plus the branch
    "subreg_bounds_check": (
        _BOUNDS + """    ldxb r0, [r1+12]
    and r0, 3
    exit
drop:
    mov r0, 1
    exit
""",
        ["mov ab6, b2", "add ab6, a6, 14", "sub --, a6, b4", "br.hi L"],
        ["addc", "subc", "mov ab7", "immed ab7"],
    ),
    # small scalars: 64-bit add/shift/compare of packet bytes in 32 bits, signed compare as unsigned
    "subreg_small_scalars": (
        _BOUNDS + """    ldxh r4, [r1+0]
    ldxb r5, [r1+2]
    add r4, r5
    lsh r4, 2
    mov r0, 2
    jsgt r4, 0x40, drop
    jne r4, r5, drop
    exit
drop:
    mov r0, 1
    exit
""",
        ["add ab8, a8, b10", "alu_shf ab8, --, mov, b8, shl 2", "br.hi L", "sub --, a8, b10", "br.ne L"],
        ["addc", "subc", "dbl_shf", "xor"],
    ),
    # a stack key for a helper: the frame pointer and its offset are one immed and one sub
    "subreg_stack_key": (
        """.type xdp
.map counts hash key=4 value=8 entries=4
    mov r6, 0
    stxw [r10-4], r6
    mov r2, r10
    add r2, -4
    lddw r1, map:counts
    call 1
    mov r0, 2
    exit
""",
        ["immed ab4,", "sub ab4, a4, 4", "reloc routine_addr fw_map_lookup"],
        ["subc", "immed ab5"],
    ),
    # operands the analysis knows exactly: the result is a constant, and unread results vanish
    "subreg_fold": (
        """.type xdp
    mov r1, 1000
    lsh r1, 3
    mov32 r2, 5
    mul32 r2, r1
    mov r0, r2
    div r0, 7
    exit
""",
        ["immed ab0, 0x1652", "halt"],
        ["mul_", "ab2", "ab4"],
    ),
    # mul-const: a multiply by 9 is one alu_shf, by 7 a shift and a sub
    "mul_const": (
        _BOUNDS + """    ldxb r4, [r1+0]
    mul32 r4, 9
    ldxb r0, [r1+1]
    mul r0, 7
    add r0, r4
    and r0, 3
    exit
drop:
    mov r0, 1
    exit
""",
        ["alu_shf ab8, a8, add, b8, shl 3", "alu_shf ab{t}, --, mov, b0, shl 3", "sub ab0, a{t}, b0"],
        ["mul_start", "mul_step"],
    ),
    # a map value pointer keeps its high word (EMEM bits 39..32) through adds inside the value;
    # its NULL check is one branch on a bit of that high word
    "subreg_map_value": (
        """.type xdp
.map counts array key=4 value=16 entries=4
    mov r6, 1
    stxw [r10-4], r6
    mov r2, r10
    add r2, -4
    lddw r1, map:counts
    call 1
    jeq r0, 0, out
    add r0, 8
    ldxdw r1, [r0+0]
    add r0, -4
    ldxw r1, [r0+0]
out:
    mov r0, 2
    exit
""",
        ["br_bclr a1, 4, L", "add ab0, a0, 8", "mem_read.emem $in0, a1, b0", "sub ab0, a0, 4",
         "mem_read.emem $in0, a1, b0"],
        ["addc", "subc", "or --"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, checks, forbidden = CASES[name]
    program = assemble(source)
    analysis = analyze(program)
    passes = WITH + ",mul-const" if name == "mul_const" else WITH
    mprog = nfpjit.jit.lower(program, analysis, passes=nfpjit.passes.parse_pipeline(passes))
    text = listing(program, mprog)
    filecheck(text, checks)
    for bad in forbidden:                            # CHECK-NOT
        assert bad not in text, f"CHECK-NOT {bad!r} matched:\n{text}"
    with_pass = compile(program, passes=passes, profile="permissive")
    without = compile(program, passes=WITHOUT, profile="permissive")
    assert with_pass.stats.nfp_insns < without.stats.nfp_insns
    for image in (with_pass.image, without.image):
        problems = differential(program, image, CRAFTED)
        assert not problems, "\n".join(problems) + "\n" + text
    golden(f"passes/{name}.txt", text)


def test_checks_can_fail():
    """The golden checks are not vacuous: without the pass the first case has the 64-bit forms."""
    source, checks, forbidden = CASES["subreg_bounds_check"]
    program = assemble(source)
    mprog = nfpjit.jit.lower(program, analyze(program), passes=nfpjit.passes.parse_pipeline(WITHOUT))
    text = listing(program, mprog)
    assert "addc" in text and "subc" in text
    with pytest.raises(AssertionError):
        filecheck(text, checks)


# -- the refined liveness ---------------------------------------------------------------------------


def _assert_refined_within_analysis(program) -> None:
    analysis = analyze(program)
    plan = make_plan(program, analysis)
    live = analysis.liveness
    for pc, mask in plan.live_in.items():
        extra = mask & ~live.live_in.get(pc, 0)
        assert not extra, f"pc {pc}: subreg calls halves {extra:#x} live that the analysis calls dead"
    for pc, mask in plan.live_out.items():
        assert not mask & ~live.live_out.get(pc, 0), f"pc {pc}"


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_refined_liveness_within_the_analysis_on_the_corpus(obj, section):
    _assert_refined_within_analysis(nfpjit.load(obj, section=section))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(max_blocks=8))
def test_refined_liveness_within_the_analysis_on_generated_programs(program):
    _assert_refined_within_analysis(program)


def test_refined_liveness_drops_pointer_high_words():
    """In the bounds-check case no high word of r1/r2/r3 is read at all."""
    program = assemble(CASES["subreg_bounds_check"][0])
    analysis = analyze(program)
    plan = make_plan(program, analysis)
    assert not any(plan.hi_live_out(pc, r) for pc, r in ((0, 2), (1, 1), (2, 3), (3, 3)))
    assert analysis.liveness.hi32_live_out(2, 3)     # the analysis' liveness: read by the 64-bit compare
    assert 4 in plan.jmp and plan.alu[3].keep


# -- edge values through the pass (raw context: all 64 bits of r0) -----------------------------------

EDGES = [0, 1, 2, 3, 31, 32, 63, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000,
         0x123456789ABCDEF0, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, MASK64, 0xFFFFFFFF80000000]
#: shaping an operand loaded from memory, so the analysis knows a range or a high word
SHAPES = ["", "and {r}, 0xffff", "and {r}, 0x7fffffff", "rsh {r}, 33", "rsh {r}, 40", "mov32 {r}, {r}",
          "or {r}, 0", "and {r}, 31", "arsh {r}, 63", "lsh {r}, 40"]
ALU = ["add", "sub", "and", "or", "xor", "mov", "mul", "lsh", "rsh", "arsh"]
JMP = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset"]


def _raw_source(shape_a: str, shape_b: str, body: str) -> str:
    lines = ["ldxdw r3, [r1+0]", "ldxdw r4, [r1+8]", shape_a.format(r="r3"), shape_b.format(r="r4"), body]
    return "\n".join(line for line in lines if line) + "\n"


def _raw_agree(source: str, a: int, b: int, passes=(WITH, WITHOUT)) -> None:
    program = assemble(source)
    memory = a.to_bytes(8, "little") + b.to_bytes(8, "little")
    want = run_raw(program, memory, strict_registers=False)
    assert want.fault is None
    for passes in passes:
        image = compile(program, passes=passes, check=False, raw_context=True).image
        got = run_sim_raw(image, memory)
        assert got.fault is None and got.r0 == want.r0, (
            f"{passes}: r0 {got.r0:#x} != interpreter {want.r0:#x} for a={a:#x} b={b:#x}\n{source}")


def _alu_body(op: str, k: int | None) -> str:
    operand = "r4" if k is None else str(k)
    if op in ("lsh", "rsh", "arsh") and k is None:
        return f"and r4, 31\n{op} r3, r4\nmov r0, r3\nexit"    # a register amount the analysis bounds
    return f"{op} r3, {operand}\nmov r0, r3\nexit"


def _jmp_body(op: str, k: int | None) -> str:
    operand = "r4" if k is None else str(k)
    return f"mov r0, 1\n{op} r3, {operand}, +1\nmov r0, 2\nexit"


@pytest.mark.parametrize("op", ALU)
def test_alu64_edge_values_through_the_pass(op):
    for shape in SHAPES[:6]:
        for a in EDGES[::4]:
            for b in EDGES[1::6]:
                _raw_agree(_raw_source(shape, "and {r}, 0xff", _alu_body(op, None)), a, b)


@pytest.mark.parametrize("op", JMP)
def test_jmp64_edge_values_through_the_pass(op):
    for shape_a, shape_b in (("and {r}, 0xffff", "and {r}, 0xffff"), ("mov32 {r}, {r}", "rsh {r}, 32"),
                             ("rsh {r}, 40", "and {r}, 0x7fffffff"), ("", "")):
        for a in EDGES[::4]:
            for b in EDGES[1::4]:
                _raw_agree(_raw_source(shape_a, shape_b, _jmp_body(op, None)), a, b)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SHAPES), st.sampled_from(SHAPES), st.sampled_from(ALU + JMP),
       st.one_of(st.none(), st.sampled_from([0, 1, 2, 7, 31, 32, 0xFF, 0x7FFF, -1, -2, -255, -0x80000000, 0x7FFFFFFF])),
       st.one_of(st.sampled_from(EDGES), st.integers(0, MASK64)), st.one_of(st.sampled_from(EDGES), st.integers(0, MASK64)))
def test_random_shaped_operands_through_the_pass(shape_a, shape_b, op, k, a, b):
    if op in ("lsh", "rsh", "arsh") and k is not None:
        k &= 63
    body = _alu_body(op, k) if op in ALU else _jmp_body(op, k)
    _raw_agree(_raw_source(shape_a, shape_b, body), a, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["add", "sub", "and", "or", "xor", "lsh", "rsh", "mov", "mul"]),
                          st.sampled_from(["r3", "r4", "r5"]), st.sampled_from(["r3", "r4", "r5", "7", "-3", "0x3f"])),
                min_size=1, max_size=8),
       st.sampled_from(SHAPES), st.sampled_from(JMP), st.integers(0, MASK64), st.integers(0, MASK64))
def test_random_alu64_chains_through_the_pass(steps, shape, jop, a, b):
    """Chains of ALU64 ops on shaped values (keep/known/unknown high words meet), ended by a compare."""
    body = ["mov r5, r4", "and r5, 0xfff"]
    for op, dst, src in steps:
        if op in ("lsh", "rsh") and not src.lstrip("-").isdigit() and not src.startswith("0x"):
            body.append(f"and {src}, 15")
        elif op in ("lsh", "rsh"):
            src = str(int(src, 0) & 31)
        body.append(f"{op} {dst}, {src}")
    body += [f"mov r0, r3\n{jop} r4, r5, +1\nadd r0, r4\nexit"]
    _raw_agree(_raw_source(shape, "", "\n".join(body)), a, b)


# -- generated programs and the corpus, with and without the pass ----------------------------------

FEW = crafted_packets()[:4]


def _both_agree(program, frames) -> bool:
    try:
        images = [compile(program, passes=p, profile="permissive").image for p in (WITH, WITHOUT)]
    except nfpjit.errors.UnsupportedError:
        return False
    for passes, image in zip((WITH, WITHOUT), images):
        problems = differential(program, image, frames, limit=3,
                                compare_values=not _uses_nondeterminism(program))
        assert not problems, f"{passes}:\n" + "\n".join(problems)
    return True


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(max_blocks=8), st.lists(packets(max_len=200), min_size=1, max_size=3))
def test_generated_programs_agree_with_and_without_the_pass(program, frames):
    _both_agree(program, FEW + frames)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.lists(packets(), min_size=1, max_size=4))
def test_generated_programs_agree_with_and_without_the_pass_many(program, frames):
    _both_agree(program, FEW + frames)


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_agrees_with_and_without_the_pass(obj, section):
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        pytest.skip(f"{program.prog_type.name} programs are not offloaded")
    if not _both_agree(program, CRAFTED):
        pytest.skip("not compiled (profile or lowering)")


def test_the_pass_shrinks_the_corpus():
    """Measurable: subreg removes instructions from every corpus parser that does 64-bit pointer work."""
    program = nfpjit.load("examples/xdp_drop_tcp_ports.o")
    with_pass = compile(program, passes=WITH).stats.nfp_insns
    without = compile(program, passes=WITHOUT).stats.nfp_insns
    assert with_pass < without


# -- mul-const (passes/alu_lowering.py): multiplies by constants as shifts and adds -----------------

MUL_CONSTS = [0, 1, 2, 3, 5, 6, 7, 9, 10, 12, 15, 17, 24, 31, 40, 63, 96, 255, 257, 0x80000000, 0x7FFFFFFF,
              0xFFFFFFFF, 0x11, 0x300, -1, -2, -3, -8, 0x1001, 1234567]


@pytest.mark.parametrize("width", ["mul", "mul32"])
def test_mul_const_agrees_on_edge_values(width):
    for k in MUL_CONSTS:
        source = f"ldxdw r3, [r1+0]\n{width} r3, {k}\nmov r0, r3\nexit\n"
        for a in EDGES[::3]:
            _raw_agree(source, a, 0, passes=(WITH + ",mul-const",))


def test_mul_const_uses_no_multiplier_for_small_shapes():
    for k, most in ((7, 2), (3, 1), (40, 2), (8, 1), (1, 0), (0, 1)):
        program = assemble(f"ldxdw r3, [r1+0]\nmul32 r3, {k}\nmov r0, r3\nexit\n")
        mprog = nfpjit.jit.lower(program, analyze(program, raw_context=True),
                                 passes=nfpjit.passes.parse_pipeline(WITH + ",mul-const"))
        body = [str(m.instr) for m in mprog.entries() if not m.is_label and m.pc == 1]
        assert len(body) <= most and not any(b.startswith("mul") for b in body), (k, body)


def test_without_an_analysis_the_pass_changes_nothing():
    """An analysis with no CFG or liveness (the ALU-only test mode) proves nothing: -O1 code, not none."""
    from types import SimpleNamespace

    program = assemble("lddw r1, 0x1ffffffff\nadd r1, 1\nmov r0, r1\nexit\n")
    opaque = SimpleNamespace(facts={}, cfg=None)
    with_pass = nfpjit.jit.lower(program, opaque, passes=nfpjit.passes.parse_pipeline(WITH)).listing()
    without = nfpjit.jit.lower(program, opaque, passes=nfpjit.passes.parse_pipeline(WITHOUT)).listing()
    assert with_pass == without and "addc" in with_pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(MUL_CONSTS), st.integers(-(1 << 31), (1 << 31) - 1),
                 st.builds(lambda a, b: (1 << a) + (1 << b), st.integers(0, 30), st.integers(0, 30)),
                 st.builds(lambda a: (1 << a) - 1, st.integers(1, 31))),
       st.sampled_from(["mul", "mul32"]), st.sampled_from(SHAPES[:5]), st.integers(0, MASK64))
def test_mul_const_random(k, width, shape, a):
    source = f"ldxdw r3, [r1+0]\n{shape.format(r='r3')}\n{width} r3, {k}\nmov r0, r3\nexit\n"
    _raw_agree(source, a, 0, passes=(WITH + ",mul-const", WITH))


# -- the conformance cases (raw context: all 64 bits of r0 against the expected result) -------------

from pathlib import Path  # noqa: E402

from nfpjit.testing.conformance import load_data_file  # noqa: E402

CONFORMANCE = sorted((Path(__file__).resolve().parent / "conformance").glob("*.data"))


@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.stem)
def test_conformance_cases_through_the_pass(path):
    case = load_data_file(path)
    want = run_raw(case.program, case.memory, strict_registers=False)
    for passes in (WITH + ",mul-const", "O2"):
        try:
            image = compile(case.program, profile="permissive", raw_context=True,
                            **({"opt_level": 2} if passes == "O2" else {"passes": passes})).image
        except nfpjit.errors.UnsupportedError:
            pytest.skip("not compiled (atomics on the memory block, or an error case refused)")
        got = run_sim_raw(image, case.memory)
        if case.error is not None:
            assert got.fault is not None and want.fault is not None, case.name
            continue
        assert got.fault is None, f"{case.name} ({passes}): {got.fault}"
        assert got.r0 == case.result == want.r0, f"{case.name} ({passes}): r0={got.r0:#x}, expected {case.result:#x}"
        assert got.packet == want.packet, f"{case.name} ({passes}): memory block differs"

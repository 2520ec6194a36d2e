"""The ``pkt-cache`` pass (passes/pkt_cache.py): packet bytes served from transfer registers.

Golden listings (tests/golden/passes/pkt_cache_*.txt) show each case before and after the pass;
CHECK patterns state what must (and must not) be there.  Every case, generated packet programs
(loads and stores of every size at every byte position, joins, early exits, adjust_head/tail,
map helpers (the profile takes only stack keys), variable-offset accesses) on short and long packets, and
the corpus are simulated with and without the pass against the reference interpreter.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.analysis import analyze
from nfpjit.driver import compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn
from nfpjit.passes.pipelines import O1
from nfpjit.passes.pkt_cache import PacketCache
from nfpjit.testing import compare_results, crafted_packets, packets

from tests.test_jit_golden import filecheck, listing

WITH = O1 + ",pkt-cache{early=true}"
WITHOUT = O1
CTM_BUFFER, HEADROOM = 8192, 256
FRAMES = [bytes((i * 7 + k) & 0xFF for i in range(k)) for k in (0, 5, 13, 14, 15, 33, 34, 35, 60, 64, 65, 99, 128)]

# r6 = ctx, r7 = data, r8 = data_end; "out" returns r9 & 3
HEAD = ".type xdp\n.map hsh hash key=4 value=8 entries=8\nmov r6, r1\nmov r9, 0\nldxw r7, [r6]\nldxw r8, [r6+4]\n"
TAIL = "out:\nmov r0, r9\nand r0, 3\nexit\n"


def _check(n: int, label: str = "out") -> str:
    return f"mov r3, r7\nadd r3, {n}\njgt r3, r8, {label}\n"


def _program(body: str):
    return assemble(HEAD + body + TAIL, filename="pkt_cache.s")


# -- the differential harness -----------------------------------------------------------------


def runs(program, image, frames):
    store = MapStore.from_program(program)
    names = {m.name for m in image.maps}
    state = {k: v for k, v in store.dump().items() if k in names}
    want, got = [], []
    for frame in frames:
        pin = PacketIn(frame)
        want.append(run(program, pin, maps=store, tailroom=CTM_BUFFER - HEADROOM - len(frame)))
        sim = simulate_image(image, pin, maps_in=state)
        got.append((to_run_result(sim), sim))
        state = got[-1][0].maps
    return want, got


def mismatches(program, frames) -> list[str]:
    """Compile with and without pkt-cache; each must agree with the interpreter and with the other."""
    problems = []
    results = {}
    for spec in (WITHOUT, WITH):
        image = compile(program, passes=spec, profile="permissive", verify_each=True).image
        want, got = runs(program, image, frames)
        results[spec] = got
        for n, (w, (g, sim)) in enumerate(zip(want, got)):
            if w.fault is not None:
                continue
            problems += [f"{spec}: packet {n} ({len(frames[n])} B): {d}" for d in compare_results(w, g, r0_bits=32)]
            verdict = w.r0 & 0xFFFFFFFF
            if g.fault is None and sim.action != (verdict if verdict <= 4 else 0):
                problems.append(f"{spec}: packet {n}: halt action {sim.action}, r0 {w.r0:#x}")
    for n, ((a, _), (b, _)) in enumerate(zip(results[WITHOUT], results[WITH])):
        if a.fault is None and b.fault is None:
            problems += [f"with vs without: packet {n}: {d}" for d in compare_results(a, b, r0_bits=32)]
    return problems


def plan_of(program, **opts):
    return PacketCache(**opts).plan(program, analyze(program))


def cycles(program, spec: str, frame: bytes) -> int:
    image = compile(program, passes=spec, profile="permissive").image
    return simulate_image(image, PacketIn(frame)).cycles


# -- golden listings ------------------------------------------------------------------------------

# name -> (program body, CHECK lines with the pass, text that must be gone with the pass)
CASES = {
    # loads of every size, one straddling two words, after one bounds check: one fill
    "pkt_cache_loads": (
        _check(34) + "ldxb r4, [r7+12]\nxor r9, r4\nldxh r4, [r7+12]\nxor r9, r4\nldxw r4, [r7+14]\nxor r9, r4\n"
        "ldxdw r4, [r7+1]\nxor r9, r4\nldxh r4, [r7+23]\nxor r9, r4\n",
        ["csr_rd ab{t}, pkt_addr", "mem_read.ctm $in12, a{t}, 0, 7, signal=1", "ctx_wait 1", "ld_field ab8, 0b0001, $in15, 0, clear",
         "ld_field ab8, 0b0011, $in15, 0, clear", "ld_field ab8, 0b0011, $in15, 16, clear",
         "ld_field ab8, 0b1100, $in16, 16", "ld_field ab8, 0b0001, $in17, 24, clear", "ld_field ab8, 0b0010, $in18, 24"],
        "mem_read.ctm $in0",
    ),
    # a MAC swap: byte loads and stores in the window, one write-back before the exit
    "pkt_cache_stores": (
        _check(14) + "ldxb r4, [r7+0]\nldxb r5, [r7+6]\nstxb [r7+0], r5\nstxb [r7+6], r4\n"
        "ldxh r4, [r7+2]\nldxh r5, [r7+8]\nstxh [r7+2], r5\nstxh [r7+8], r4\nsth [r7+12], 0x0008\n",
        ["mem_read.ctm $in12", "ctx_wait 1", "mov n0, $in12", "mov n1, $in13", "mov n2, $in14", "mov n3, $in15",
         "ld_field ab{t}, 0b0001, b10, 0", "mov n0, b{t}", "ld_field ab{t}, 0b0100, b8, 16", "mov n1, b{t}",
         "mov $out12, n0", "mov $out15, n3", "mem_write.ctm $out12, a{t}, 0, 4, ctx_swap", "halt"],
        "mem_read.ctm $in0",
    ),
    # the cache stays valid across a branch and its join: one fill for four loads
    "pkt_cache_join": (
        _check(20) + "ldxb r4, [r7+9]\njne r4, 6, skip\nldxb r5, [r7+19]\nxor r9, r5\n"
        "skip:\nldxh r5, [r7+16]\nxor r9, r5\nldxb r5, [r7+0]\nxor r9, r5\n",
        ["mem_read.ctm $in12, a{t}, 0, 5, signal=1", "ctx_wait 1", "ld_field ab8, 0b0001, $in14, 8, clear",
         "alu_shf ab10, --, mov, $in16, shr 24", "ld_field ab10, 0b0011, $in16, 0, clear",
         "ld_field ab10, 0b0001, $in12, 0, clear"],
        "mem_read.ctm $in0",
    ),
    # adjust_head moves the packet: write back, forget, fill again (only the proven, aligned range)
    "pkt_cache_adjust": (
        _check(14) + "ldxb r4, [r7+13]\nstxb [r7+0], r4\nmov r1, r6\nmov r2, -4\ncall 44\n"
        "ldxw r7, [r6]\nldxw r8, [r6+4]\n" + _check(18) + "ldxw r4, [r7+4]\nstxw [r7+0], r4\nldxb r5, [r7+17]\n"
        "xor r9, r5\n",
        ["mem_read.ctm $in12, a{t}, 0, 5, signal=1", "ctx_wait 1", "mem_write.ctm $out12, a{t}, 0, 1, ctx_swap",
         "fw_adjust_head_fast", "mem_read.ctm $in12, a{t}, 0, 5, ctx_swap", "mov n0, b8",
         "mem_write.ctm $out12, a{t}, 0, 1, ctx_swap"],
        "mem_read.ctm $in0",
    ),
    # a TCP port after a variable IPv4 header length: T_INDEX names the word's register, *$index reads it
    "pkt_cache_variable": (
        _check(34) + "ldxb r4, [r7+14]\nand r4, 15\nlsh r4, 2\nmov r5, r7\nadd r5, r4\nmov r3, r5\n"
        "add r3, 18\njgt r3, r8, out\nldxh r4, [r5+16]\nxor r9, r4\n",
        ["mov --, 19", "mem_read.ctm $in12, a{t}, 0, indirect, signal=1", "ctx_wait 1", "sub ab{t}, a10, b{t}",
         "alu_shf ab{t}, 16, add, b{t}, shr 2", "csr_wr t_index, b{t}", "ld_field ab8, 0b0011, *$index, 0, clear"],
        "br_bset",
    ),
    # the same after a cached store into one of those words (its value is in an NN register, which
    # *$index does not read): bit tests on the offset pick the word
    "pkt_cache_variable_stored": (
        _check(34) + "stb [r7+21], 7\nldxb r4, [r7+14]\nand r4, 15\nlsh r4, 2\nmov r5, r7\nadd r5, r4\n"
        "mov r3, r5\nadd r3, 18\njgt r3, r8, out\nldxh r4, [r5+16]\nxor r9, r4\n",
        ["mem_read.ctm $in12, a{t}, 0, indirect, signal=1", "ctx_wait 1", "sub ab{t}, a10, b{t}", "br_bset a{t}, 5,",
         "br_bset a{t}, 4,", "br_bset a{t}, 3,", "br_bset a{t}, 2,", "br.always .pkd", "ld_field ab8, 0b0011, $in16, 0, clear",
         "ld_field ab8, 0b0011, n{t}, 0, clear", "ld_field ab8, 0b0011, $in31, 0, clear"],
        "*$index",
    ),
}


#: fills each case needs: one per region (the cache is valid across blocks and joins)
FILLS = {"pkt_cache_loads": 1, "pkt_cache_stores": 1, "pkt_cache_join": 1, "pkt_cache_adjust": 2,
         "pkt_cache_variable": 1, "pkt_cache_variable_stored": 1}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    body, checks, gone = CASES[name]
    program = _program(body)
    before = listing(program, compile(program, passes=WITHOUT, profile="permissive").mprogram)
    after = listing(program, compile(program, passes=WITH, profile="permissive").mprogram)
    filecheck(after, checks)
    assert after.count("mem_read.ctm $in12") == FILLS[name], after
    assert "mem_read.ctm $in0" in before
    if gone is not None:
        assert gone not in after, after
    assert not mismatches(program, FRAMES)
    golden(f"passes/{name}.txt", f"; before (-O1)\n{before}; after (-O1 + pkt-cache{{early=true}})\n{after}")


def test_nothing_changes_without_the_pass():
    import re

    for body, _, _ in CASES.values():
        text = compile(_program(body), passes=WITHOUT, profile="permissive").mprogram.listing()
        assert "$in12" not in text and not re.search(r"\bn\d+\b", text)


# -- what the plan decides ----------------------------------------------------------------------------


def test_cached_read_costs_at_most_three_cycles():
    """Each further cached load (any size, any byte position) adds at most 3 simulated cycles."""
    frame = bytes(range(64))
    for size, op in ((1, "ldxb"), (2, "ldxh"), (4, "ldxw"), (8, "ldxdw")):
        for off in range(0, 8):
            base = _check(40) + f"ldxb r4, [r7+20]\nxor r9, r4\n"
            one = _program(base + f"{op} r4, [r7+{off}]\n" + "xor r9, r4\n")
            two = _program(base + f"{op} r4, [r7+{off}]\n{op} r5, [r7+{off + 1}]\n" + "xor r9, r4\n")
            extra = cycles(two, WITH, frame) - cycles(one, WITH, frame)
            limit = 3 if size < 8 else 4      # 8 bytes: two words
            assert extra <= limit, (size, off, extra)


def test_short_packet_never_faults():
    """The fill reads a whole window even for a 14-byte packet; it must not fault where the program does not."""
    program = _program(_check(14) + "ldxb r4, [r7+13]\nxor r9, r4\nstxb [r7+13], r4\n")
    assert not mismatches(program, FRAMES + [bytes(14) * 566 + bytes(12)])   # a 7936-byte packet too


def test_adjust_head_by_odd_delta_fills_only_the_proven_words():
    body = ("mov r1, r6\nmov r2, -3\ncall 44\nldxw r7, [r6]\nldxw r8, [r6+4]\n" + _check(14) +
            "ldxb r4, [r7+13]\nxor r9, r4\nldxb r4, [r7+2]\nxor r9, r4\n")
    plan = plan_of(_program(body))
    assert list(plan.fills.values()) == [3]            # 14 proven bytes, data not word-aligned: 3 words
    assert sorted(a.off for a in plan.accesses.values()) == [2]
    assert not mismatches(_program(body), FRAMES)


def test_variable_offsets_4_apart_take_a_branch_tree_and_see_cached_stores():
    # r5 = data + (byte 0 & 12): one of 4 words, picked by bit tests; it may be the word just stored
    body = (_check(40) + "stb [r7+4], 0x55\nldxb r4, [r7+0]\nand r4, 12\nmov r5, r7\nadd r5, r4\n"
            "mov r3, r5\nadd r3, 8\njgt r3, r8, out\nldxb r4, [r5+4]\nxor r9, r4\n")
    program = _program(body)
    plan = plan_of(program)
    assert sorted((a.off, a.count) for a in plan.accesses.values()) == [(0, 1), (4, 1), (4, 4)]
    text = compile(program, passes=WITH, profile="permissive").mprogram.listing()
    assert text.count("br_bset") == 3 and "mem_read.ctm $in0" not in text
    assert not mismatches(program, FRAMES + [bytes(40), bytes([4] + [0] * 40), bytes([8] + [0] * 40),
                                             bytes([12] + [0] * 40)])


def test_variable_option_leaves_variable_offsets_to_commands():
    program = _program(CASES["pkt_cache_variable"][0])
    assert any(a.count > 1 for a in plan_of(program).accesses.values())
    assert not any(a.count > 1 for a in plan_of(program, variable=False).accesses.values())
    text = compile(program, passes=O1 + ",pkt-cache{variable=false}", profile="permissive").mprogram.listing()
    assert "br_bset" not in text and "mem_read.ctm $in0" in text


def test_variable_offsets_that_move_bytes_within_words_stay_commands():
    # byte 0 & 7: the offset's low bits vary; the store before it must be in memory by then
    body = (_check(40) + "stb [r7+4], 0x55\nldxb r4, [r7+0]\nand r4, 7\nmov r5, r7\nadd r5, r4\n"
            "mov r3, r5\nadd r3, 8\njgt r3, r8, out\nldxb r4, [r5+4]\nxor r9, r4\n")
    program = _program(body)
    plan = plan_of(program)
    assert len(plan.accesses) == 2 and plan.flush_before
    assert not mismatches(program, FRAMES + [bytes([k] + [0] * 40) for k in range(8)])


def test_first_fill_starts_at_the_entry_unless_in_a_loop_or_after_packet_business():
    frame = bytes(range(64))
    body = CASES["pkt_cache_join"][0]
    program = _program(body)
    assert plan_of(program, early=True).early and not plan_of(program).early
    assert cycles(program, WITH, frame) < cycles(program, O1 + ",pkt-cache", frame)
    # a fill inside a loop waits for its own read; so does the one after adjust_head
    looped = _program("mov r5, 0\nagain:\n" + _check(20) + "ldxb r4, [r7+3]\nxor r9, r4\nadd r5, 1\n"
                      "jlt r5, 3, again\n")
    assert not plan_of(looped, early=True).early
    adjust = plan_of(_program(CASES["pkt_cache_adjust"][0]), early=True)
    assert len(adjust.early) == 1 and len(adjust.fills) == 2
    assert not mismatches(looped, FRAMES)


def test_raw_context_programs_are_not_cached():
    program = assemble("ldxb r0, [r1+3]\nexit\n", filename="raw.s")
    assert PacketCache().plan(program, analyze(program, raw_context=True)) is None


def test_options():
    body = CASES["pkt_cache_stores"][0]
    program = _program(body)
    plan = plan_of(program, stores=False)
    assert plan.accesses and not any(a.write for a in plan.accesses.values())
    assert not plan_of(program, window=4).accesses or all(a.off + a.size <= 4 for a in plan_of(program, window=4)
                                                         .accesses.values())
    text = compile(program, passes=O1 + ",pkt-cache{stores=false}", profile="permissive").mprogram.listing()
    assert "mem_write.ctm $out0" in text
    assert not mismatches(program, FRAMES)


# -- differential: generated packet programs --------------------------------------------------------

_SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}


@st.composite
def packet_programs(draw):
    """A bounds check, then loads/stores of every size at any offset inside it, conditional skips
    (joins), early exits (joins at the exit with and without the cache), adjust_head/tail with a
    re-check, map helpers (the profile takes only stack keys) and variable-offset loads."""
    checked = draw(st.integers(1, 72))
    lines = [_check(checked).strip()]
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["load"] * 4 + ["store"] * 3 + ["skip", "exit", "adjust", "lookup", "varload",
                                                                   "recheck"]))
        size = draw(st.sampled_from([1, 2, 4, 8]))
        off = draw(st.integers(0, max(0, checked - size))) if checked >= size else None
        if op == "load" and off is not None:
            sx = size < 8 and draw(st.booleans())
            lines += [f"ldx{'s' if sx else ''}{_SIZES[size]} r4, [r7+{off}]", "xor r9, r4"]
        elif op == "store" and off is not None:
            if draw(st.booleans()):
                lines += [f"st{_SIZES[size]} [r7+{off}], {draw(st.integers(-300, 300))}"]
            else:
                lines += [f"mov r4, {draw(st.integers(-70000, 70000))}", "xor r4, r9",
                          f"stx{_SIZES[size]} [r7+{off}], r4"]
        elif op == "skip" and checked >= 1:
            # skip the next instruction when a packet byte is odd
            lines += [f"ldxb r4, [r7+{draw(st.integers(0, checked - 1))}]", "and r4, 1", "jeq r4, 1, +1",
                      f"stb [r7+{draw(st.integers(0, checked - 1))}], {draw(st.integers(0, 255))}"]
        elif op == "exit" and checked >= 1:
            lines += [f"ldxb r4, [r7+{draw(st.integers(0, checked - 1))}]", f"jgt r4, {draw(st.integers(0, 255))}, out"]
        elif op == "adjust":
            helper = draw(st.sampled_from([44, 65]))
            delta = draw(st.sampled_from([-20, -4, -3, 0, 2, 4, 8, -64]))
            checked = draw(st.integers(1, 40))
            lines += ["mov r1, r6", f"mov r2, {delta}", f"call {helper}", "ldxw r7, [r6]", "ldxw r8, [r6+4]",
                      _check(checked).strip()]
        elif op == "lookup":
            lines += ["stw [r10-4], 3", "lddw r1, map:hsh", "mov r2, r10", "add r2, -4", "call 1",
                      "jeq r0, 0, +1", "xor r9, 1"]
        elif op == "varload" and checked >= 1:
            lines += [f"ldxb r4, [r7+{draw(st.integers(0, checked - 1))}]", "and r4, 12", "mov r5, r7",
                      "add r5, r4", "mov r3, r5", "add r3, 8", "jgt r3, r8, out",
                      f"ldxb r4, [r5+{draw(st.integers(0, 7))}]", "xor r9, r4"]
        elif op == "recheck":
            checked = max(checked, draw(st.integers(1, 72)))
            lines.append(_check(checked).strip())
    return _program("\n".join(lines) + "\n")


def _agree(program, frames):
    try:
        problems = mismatches(program, FRAMES[:6] + frames)
    except nfpjit.errors.UnsupportedError:
        return
    assert not problems, "\n".join(problems)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=packet_programs(), frames=st.lists(packets(max_len=100), min_size=1, max_size=3))
def test_generated_packet_programs_agree(program, frames):
    _agree(program, frames)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=packet_programs(), frames=st.lists(packets(max_len=100), min_size=1, max_size=3))
def test_many_generated_packet_programs_agree(program, frames):
    _agree(program, frames)


def test_check_pass_on_corpus_and_generated_programs():
    """The framework's differential check (the -O2 pipeline with and without the pass)."""
    from nfpjit.testing.passcheck import check_pass

    report = check_pass("pkt-cache", examples=40, seed=9, corpus=True)
    assert report.ok, "\n".join("\n".join(f.problems) for f in report.failures)
    assert report.corpus_checked >= 10


def test_corpus_programs_use_the_cache():
    for name, least in (("mac_swap_tx", 20), ("xdp_drop_tcp_ports", 4), ("ipip_encap", 30)):
        program = nfpjit.load(f"tests/corpus/{name}.o")
        plan = plan_of(program)
        assert len(plan.accesses) >= least, (name, len(plan.accesses))
        frames = crafted_packets()[:20]
        cyc = {spec: sum(cycles(program, spec, f) for f in frames) for spec in (WITHOUT, WITH)}
        assert cyc[WITH] < cyc[WITHOUT], (name, cyc)

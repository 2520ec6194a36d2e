"""The ``memcpy-gather`` pass (passes/memcpy_gather.py): a run of loads through one pointer, one bulk read.

Golden listings (tests/golden/passes/memcpy_gather_*.txt) show each case before and after the
pass; CHECK patterns state what must be there.  Every case, generated copy programs (map value and
packet sources, stack/packet/map destinations, every size, stores into the source kind that end a
run, pointer writes) and the corpus are simulated with and without the pass against the reference
interpreter, with and without the packet cache.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.analysis import analyze
from nfpjit.driver import compile, simulate_image
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.result import PacketIn
from nfpjit.passes.memcpy_gather import MemcpyGather
from nfpjit.passes.pipelines import O1
from nfpjit.testing import crafted_packets, packets

from tests.test_jit_golden import filecheck, listing
from tests.test_pass_pkt_cache import FRAMES, runs
from nfpjit.testing import compare_results

WITH = O1 + ",memcpy-gather"
WITHOUT = O1
SPECS = (WITHOUT, WITH, O1 + ",pkt-cache", O1 + ",pkt-cache,memcpy-gather", O1 + ",pkt-cache{early=true},memcpy-gather")

HEAD = (".type xdp\n.map arr array key=4 value=24 entries=4\n"
        "mov r6, r1\nmov r9, 0\nstw [r10-4], 1\nlddw r1, map:arr\nmov r2, r10\nadd r2, -4\ncall 1\n"
        "jeq r0, 0, out\nmov r7, r0\nldxw r1, [r6]\nldxw r2, [r6+4]\nmov r3, r1\nadd r3, 40\njgt r3, r2, out\n")
TAIL = "ldxdw r4, [r10-24]\nxor r9, r4\nldxdw r4, [r10-16]\nxor r9, r4\nout:\nmov r0, r9\nand r0, 3\nexit\n"


def _program(body: str):
    return assemble(HEAD + "stdw [r10-24], 0\nstdw [r10-16], 0\n" + body + TAIL, filename="gather.s")


def mismatches(program, frames) -> list[str]:
    problems = []
    results = {}
    for spec in SPECS:
        image = compile(program, passes=spec, profile="permissive", verify_each=True).image
        want, got = runs(program, image, frames)
        results[spec] = got
        for n, (w, (g, sim)) in enumerate(zip(want, got)):
            if w.fault is not None:
                continue
            problems += [f"{spec}: packet {n} ({len(frames[n])} B): {d}" for d in compare_results(w, g, r0_bits=32)]
    return problems


def cycles(program, spec, frames) -> int:
    image = compile(program, passes=spec, profile="permissive").image
    return sum(simulate_image(image, PacketIn(f)).cycles for f in frames)


def plan_of(program, **opts):
    return MemcpyGather(**opts).plan(program, analyze(program))


# r7 = map value (24 bytes), r1 = data with 40 bytes proven
CASES = {
    # a map value copied byte by byte, then by words, to the stack: one EMEM read
    "memcpy_gather_map_to_stack": (
        "ldxb r3, [r7+0]\nstxb [r10-24], r3\nldxb r3, [r7+1]\nstxb [r10-23], r3\nldxh r3, [r7+2]\n"
        "stxh [r10-22], r3\nldxw r3, [r7+5]\nstxw [r10-20], r3\nldxdw r3, [r7+9]\nstxdw [r10-16], r3\n",
        ["mem_read.emem $in2, a15, b14, 5, ctx_swap", "ld_field ab6, 0b0001, $in2, 0, clear",
         "ld_field ab6, 0b0001, $in2, 8, clear", "alu_shf ab6, --, mov, $in2, shr 16",
         "ld_field ab6, 0b0111, $in3, 8, clear", "ld_field ab6, 0b1000, $in4, 8"],
        1,
    ),
    # map value to packet (a header template): the loads gathered, the packet stores as usual
    "memcpy_gather_map_to_packet": (
        "ldxw r3, [r7+0]\nstxw [r1+0], r3\nldxw r3, [r7+4]\nstxw [r1+4], r3\nldxh r3, [r7+8]\nstxh [r1+8], r3\n"
        "ldxb r3, [r1+2]\nxor r9, r3\n",
        ["mem_read.emem $in2, a15, b14, 3, ctx_swap", "mov ab6, $in2", "mov ab6, $in3",
         "ld_field ab6, 0b0011, $in4, 0, clear"],
        1,
    ),
    # packet to stack at a variable offset (the packet cache cannot serve it): one CTM read
    "memcpy_gather_packet_to_stack": (
        "ldxb r4, [r1+0]\nand r4, 12\nadd r1, r4\nmov r3, r1\nadd r3, 20\njgt r3, r2, out\n"
        "ldxw r3, [r1+8]\nstxw [r10-24], r3\nldxw r3, [r1+12]\nstxw [r10-20], r3\nldxh r3, [r1+16]\nstxh [r10-16], r3\n",
        ["mem_read.ctm $in2, a2, 8, 3, ctx_swap", "mov ab6, $in2", "mov ab6, $in3", "ld_field ab6, 0b0011, $in4, 0, clear"],
        1,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    body, checks, reads = CASES[name]
    program = _program(body)
    before = listing(program, compile(program, passes=WITHOUT, profile="permissive").mprogram)
    after = listing(program, compile(program, passes=WITH, profile="permissive").mprogram)
    filecheck(after, checks)
    body_after = after.split("call 1", 1)[1]
    assert body_after.count("mem_read") == reads + body_after.count("mem_read.ctm $in0"), after
    assert not mismatches(program, FRAMES)
    assert cycles(program, WITH, FRAMES) < cycles(program, WITHOUT, FRAMES)
    golden(f"passes/{name}.txt", f"; before (-O1)\n{before}; after (-O1 + memcpy-gather)\n{after}")


def test_a_store_into_the_source_kind_ends_the_run():
    # the second store could write the byte the third load reads: two gathers at most, never one
    program = _program("ldxb r3, [r7+0]\nstxb [r10-24], r3\nldxb r3, [r7+1]\nstxb [r7+2], r3\n"
                       "ldxb r3, [r7+2]\nstxb [r10-23], r3\nldxb r3, [r7+3]\nstxb [r10-22], r3\n")
    plan = plan_of(program)
    assert len(plan.gathers) == 2 and all(g.words == 1 for g in plan.gathers.values())
    assert not mismatches(program, FRAMES)


def test_a_pointer_write_ends_the_run():
    program = _program("ldxb r3, [r7+0]\nstxb [r10-24], r3\nadd r7, 1\nldxb r3, [r7+0]\nstxb [r10-23], r3\n")
    assert not plan_of(program).gathers
    assert not mismatches(program, FRAMES)


def test_map_value_runs_stay_inside_the_slot():
    # bytes 21..23 of a 24-byte value: 1 word from 21 would read past the slot's end
    program = _program("ldxb r3, [r7+21]\nstxb [r10-24], r3\nldxb r3, [r7+23]\nstxb [r10-23], r3\n")
    assert not plan_of(program).gathers
    assert not mismatches(program, FRAMES)


def test_cached_packet_loads_are_left_to_the_packet_cache():
    program = _program("ldxw r3, [r1+0]\nstxw [r10-24], r3\nldxw r3, [r1+4]\nstxw [r10-20], r3\n")
    assert plan_of(program).gathers
    text = compile(program, passes=O1 + ",pkt-cache,memcpy-gather", profile="permissive").mprogram.listing()
    assert "$in2" not in text and "mem_read.ctm $in12" in text
    assert not mismatches(program, FRAMES)


def test_max_bytes_option_splits_runs():
    program = _program(CASES["memcpy_gather_map_to_stack"][0])
    assert [g.words for g in plan_of(program, max_bytes=8).gathers.values()] == [1]   # bytes 0..3; 5..8 and 9..16 alone
    assert not plan_of(program, max_bytes=1).gathers


_SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}


@st.composite
def copy_programs(draw):
    """Copies from the map value (r7, 24 bytes) or the packet (r1, 40 bytes; maybe at a variable offset)
    to the stack, the packet or the map value, with stores into the source and pointer moves mixed in."""
    lines = []
    if draw(st.booleans()):
        lines += ["ldxb r4, [r1+0]", "and r4, 12", "mov r8, r1", "add r8, r4", "mov r3, r8", "add r3, 28",
                  "jgt r3, r2, out"]
        limit = {"r8": 28}
    else:
        limit = {}
    limit.update({"r7": 24, "r1": 40})
    for _ in range(draw(st.integers(1, 10))):
        src = draw(st.sampled_from(sorted(limit)))
        size = draw(st.sampled_from([1, 2, 4, 8]))
        off = draw(st.integers(0, limit[src] - size))
        dst = draw(st.sampled_from(["stack", "stack", "packet", "map"]))
        lines.append(f"ldx{_SIZES[size]} r3, [{src}+{off}]")
        if dst == "stack":
            lines.append(f"stx{_SIZES[size]} [r10-{draw(st.integers(1, 32 // size)) * size}], r3")
        elif dst == "packet":
            lines.append(f"stx{_SIZES[size]} [r1+{draw(st.integers(0, 40 - size))}], r3")
        else:
            lines.append(f"stx{_SIZES[size]} [r7+{draw(st.integers(0, 24 - size))}], r3")
        if draw(st.integers(0, 9)) == 0:
            lines.append(f"add {src}, 0")
        lines.append("xor r9, r3")
    return _program("\n".join(lines) + "\n")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=copy_programs(), frames=st.lists(packets(max_len=100), min_size=1, max_size=2))
def test_generated_copy_programs_agree(program, frames):
    _agree(program, frames)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=copy_programs(), frames=st.lists(packets(max_len=100), min_size=1, max_size=2))
def test_many_generated_copy_programs_agree(program, frames):
    _agree(program, frames)


def _agree(program, frames):
    try:
        problems = mismatches(program, FRAMES[:5] + frames)
    except nfpjit.errors.UnsupportedError:
        return
    assert not problems, "\n".join(problems)


# -- packet-to-packet copies inside the packet cache ---------------------------------------------

PKT_COPY = O1 + ",pkt-cache,memcpy-gather"


def test_packet_copy_merges_words_in_the_cache(golden):
    # a MAC-address move (6 bytes, 6 down) as clang writes it, then r3 must hold the last byte
    body = ("ldxb r3, [r1+8]\nstxb [r1+2], r3\nldxb r3, [r1+9]\nstxb [r1+3], r3\nldxb r3, [r1+6]\nstxb [r1+0], r3\n"
            "ldxb r3, [r1+7]\nstxb [r1+1], r3\nldxb r3, [r1+10]\nstxb [r1+4], r3\nldxb r3, [r1+11]\nstxb [r1+5], r3\n"
            "xor r9, r3\n")
    program = _program(body)
    assert [len(c.pairs) for c in plan_of(program).copies.values()] == [6]
    before = listing(program, compile(program, passes=O1 + ",pkt-cache", profile="permissive").mprogram)
    after = listing(program, compile(program, passes=PKT_COPY, profile="permissive").mprogram)
    filecheck(after, ["mov n0, $in12", "mov n1, $in13", "ld_field ab{t}, 0b0011, n1, 16, clear",
                      "ld_field ab{t}, 0b1100, $in14, 16", "mov n0, b{t}", "mov ab{t}, n1",
                      "ld_field ab{t}, 0b0011, $in14, 16", "mov n1, b{t}", "alu_shf ab6, --, mov, $in14, shr 24"])
    assert after.count("ld_field") < before.count("ld_field")
    assert not mismatches(program, FRAMES)
    frames = FRAMES[6:]
    assert cycles(program, PKT_COPY, frames) < cycles(program, O1 + ",pkt-cache", frames)
    golden("passes/memcpy_gather_packet_copy.txt",
           f"; before (-O1 + pkt-cache)\n{before}; after (-O1 + pkt-cache + memcpy-gather)\n{after}")


def test_overlapping_packet_copies_stay_pairs():
    body = "ldxb r3, [r1+0]\nstxb [r1+1], r3\nldxb r3, [r1+1]\nstxb [r1+2], r3\n"
    assert not plan_of(_program(body)).copies
    assert not mismatches(_program(body), FRAMES)


@st.composite
def packet_copies(draw):
    """Runs of load/store pairs inside 40 proven bytes: any delta and size, sometimes overlapping,
    with different temporaries, stores around the run and reads of the temporaries after it."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.sampled_from([1, 1, 2, 4, 8]))
        n = draw(st.integers(2, 6))
        src = draw(st.integers(0, 40 - size))
        delta = draw(st.integers(-20, 20))
        if draw(st.booleans()):
            lines.append(f"stb [r1+{draw(st.integers(0, 39))}], {draw(st.integers(0, 255))}")
        for i in range(n):
            a = src + i * size * draw(st.sampled_from([1, 1, -1]))
            b = a + delta
            if not (0 <= a <= 40 - size and 0 <= b <= 40 - size):
                continue
            reg = draw(st.sampled_from(["r3", "r3", "r4"]))
            lines += [f"ldx{_SIZES[size]} {reg}, [r1+{a}]", f"stx{_SIZES[size]} [r1+{b}], {reg}"]
        lines += ["xor r9, r3", "xor r9, r4"]
    return _program("mov r3, 0\nmov r4, 0\n" + "\n".join(lines) + "\n")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=packet_copies(), frames=st.lists(packets(max_len=100), min_size=1, max_size=2))
def test_generated_packet_copies_agree(program, frames):
    _agree(program, frames)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=packet_copies(), frames=st.lists(packets(max_len=100), min_size=1, max_size=2))
def test_many_generated_packet_copies_agree(program, frames):
    _agree(program, frames)


def test_check_pass_on_corpus_and_generated_programs():
    from nfpjit.testing.passcheck import check_pass

    report = check_pass("memcpy-gather", examples=30, seed=5, corpus=True)
    assert report.ok, "\n".join("\n".join(f.problems) for f in report.failures)
    assert report.corpus_checked >= 10


def test_corpus_packet_parsers_gain_without_the_packet_cache():
    """With pkt-cache the corpus has no run left to gather; without it the parsers' runs are gathered."""
    for name in ("mac_swap_tx", "ipip_encap", "xdp_drop_tcp_ports"):
        program = nfpjit.load(f"tests/corpus/{name}.o")
        assert plan_of(program).gathers, name
        frames = crafted_packets()[:10]
        assert cycles(program, WITH, frames) < cycles(program, WITHOUT, frames), name

"""The ``map-cache`` pass (passes/map_cache.py): map lookups lowered without the firmware call.

Golden listings (tests/golden/passes/map_cache_*.txt) show each case before and after the pass;
CHECK patterns state what must (and must not) be there.  Every case, generated lookup programs
(constant and variable keys, repeated lookups, key changes, updates and deletes between lookups,
joins) and the corpus are simulated with and without the pass against the reference interpreter,
maps persisting across packets.
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
from nfpjit.testing.passcheck import uses_nondeterminism
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.ebpf.result import PacketIn
from nfpjit.passes.map_cache import Direct, Inline, MapCache, Reuse
from nfpjit.passes.pipelines import O1, PIPELINES
from nfpjit.testing import compare_results, crafted_packets, packets, programs

from tests.corpus_cases import corpus_cases
from tests.test_jit_golden import filecheck, listing

WITH = O1 + ",map-cache"
WITHOUT = O1
#: -O2 as it ships, and -O2 less map-cache (the machine passes run after the lowering in both)
O2 = PIPELINES[2]
O2_WITHOUT = ",".join(p for p in O2.split(",") if p != "map-cache")
CRAFTED = crafted_packets()
FRAMES = [bytes((i * 7 + k) & 0xFF for i in range(k)) for k in (14, 33, 60, 61, 64, 99, 128)]
CTM_BUFFER, HEADROOM = 8192, 256

MAPS = (".map arr array key=4 value=8 entries=4\n"
        ".map hsh hash key=4 value=8 entries=8\n"
        ".map wide array key=4 value=24 entries=3\n")


def _program(body: str):
    return assemble(".type xdp\n" + MAPS + body, filename="map_cache.s")


def _lookup(m: str, off: int = -4) -> str:
    return f"lddw r1, map:{m}\nmov r2, r10\nadd r2, {off}\ncall 1\n"


# -- the differential harness -----------------------------------------------------------------


def runs(program, image, frames, store=None):
    """(interpreter results, simulator results) over ``frames`` with maps persisting on both sides."""
    store = store if store is not None else MapStore.from_program(program)
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


def mismatches(program, frames, *, seed_maps=None, pairs=((WITHOUT, WITH), (O2_WITHOUT, O2))) -> list[str]:
    """Compile with and without map-cache (on -O1, and in -O2 as it ships); each must agree with the
    interpreter, and with and without must agree with each other."""
    problems = []
    results = {}
    for spec in {s for pair in pairs for s in pair}:
        image = compile(program, passes=spec, profile="permissive", verify_each=True).image
        store = MapStore.from_program(program)
        for name, entries in (seed_maps or {}).items():
            for k, v in entries.items():
                store.by_name(name).update(k, v, 0)
        want, got = runs(program, image, frames, store)
        results[spec] = got
        for n, (w, (g, sim)) in enumerate(zip(want, got)):
            if w.fault is not None:
                continue
            problems += [f"{spec or '-O0'}: packet {n}: {d}" for d in compare_results(w, g, r0_bits=32)]
            verdict = w.r0 & 0xFFFFFFFF
            if g.fault is None and sim.action != (verdict if verdict <= 4 else 0):
                problems.append(f"{spec}: packet {n}: halt action {sim.action}, r0 {w.r0:#x}")
    for without, with_ in pairs:
        for n, ((a, _), (b, _)) in enumerate(zip(results[without], results[with_])):
            if a.fault is None and b.fault is None:
                problems += [f"with vs without ({with_}): packet {n}: {d}" for d in compare_results(a, b, r0_bits=32)]
    return problems


def plan_of(program) -> dict:
    return MapCache().plan(program, analyze(program)).lookups


def cycles(program, spec: str, frames) -> int:
    image = compile(program, passes=spec, profile="permissive").image
    _, got = runs(program, image, frames)
    return sum(s.cycles for _, s in got)


# -- golden listings ------------------------------------------------------------------------------

# name -> (program body, CHECK lines with the pass, text that must be gone with the pass)
CASES = {
    # key 1 and key 5 (out of range: NULL) as constants: no call at all
    "map_cache_const_key": (
        "stw [r10-4], 1\n" + _lookup("arr") + "jeq r0, 0, +3\nldxdw r1, [r0]\nadd r1, 1\nstxdw [r0], r1\n"
        "mov r1, 5\nstxw [r10-4], r1\n" + _lookup("arr") + "mov r9, r0\n"
        "mov r0, 2\njeq r9, 0, +1\nmov r0, 1\nexit\n",
        ["immed ab0, 0x8", "immed ab1, 0x10", "mem_read.emem", "immed ab0, 0x0", "immed ab1, 0x0"],
        "fw_map_lookup",
    ),
    # a second lookup of the same hash key, nothing in between that could change it: copied
    "map_cache_reuse": (
        "stw [r10-4], 7\n" + _lookup("hsh") + "mov r6, r0\n" + _lookup("hsh") +
        "mov r7, r0\nmov r0, 1\njne r6, r7, +1\nmov r0, 2\nexit\n",
        ["routine_addr fw_map_lookup", "mov n24, b0", "mov n25, b1", "mov ab0, n24", "mov ab1, n25"],
        None,
    ),
    # the key changes between the lookups, or the map is updated: both lookups stay calls
    "map_cache_key_changed": (
        "stw [r10-4], 7\n" + _lookup("hsh") + "stb [r10-3], 1\n" + _lookup("hsh") +
        "stdw [r10-16], 9\nlddw r1, map:hsh\nmov r2, r10\nadd r2, -4\nmov r3, r10\nadd r3, -16\n"
        "mov r4, 0\ncall 2\n" + _lookup("hsh") + "mov r0, 2\nexit\n",
        ["routine_addr fw_map_lookup", "routine_addr fw_map_lookup", "routine_addr fw_map_update",
         "routine_addr fw_map_lookup"],
        "n24",
    ),
    # a key the analysis does not know: bounds check and address inline
    "map_cache_inline": (
        "ldxw r1, [r1+16]\nand r1, 7\nstxw [r10-4], r1\n" + _lookup("arr") +
        "jeq r0, 0, +3\nldxdw r1, [r0]\nadd r1, 1\nstxdw [r0], r1\nmov r0, 2\nexit\n",
        ["csr_wr active_lm_addr_1, b4", "sub --, *l$index1, 4", "br.hs .mc",
         "alu_shf ab0, --, mov, *l$index1, shl 3", "immed ab1, 0x10"],
        "fw_map_lookup",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    body, checks, gone = CASES[name]
    program = _program(body)
    before = listing(program, compile(program, passes=WITHOUT, profile="permissive").mprogram)
    after = listing(program, compile(program, passes=WITH, profile="permissive").mprogram)
    filecheck(after, checks)
    assert "fw_map_lookup" in before
    if gone is not None:
        assert gone not in after, after
    assert not mismatches(program, FRAMES)
    golden(f"passes/{name}.txt", f"; before (-O1)\n{before}; after (-O1 + map-cache)\n{after}")


# -- what the plan proves ------------------------------------------------------------------------------


def test_constant_keys_and_out_of_range_are_direct():
    plan = plan_of(_program(CASES["map_cache_const_key"][0]))
    assert sorted(plan.values(), key=str) == [Direct(0, 1), Direct(0, None)]


def test_wide_values_use_their_rounded_slot():
    program = _program("stw [r10-4], 2\n" + _lookup("wide") + "jeq r0, 0, +1\nstdw [r0+16], 5\nmov r0, 2\nexit\n")
    assert list(plan_of(program).values()) == [Direct(2, 2)]
    listing_text = compile(program, passes=WITH, profile="permissive").mprogram.listing()
    assert "immed ab0, 0x30" in listing_text and "immed ab1, 0x12" in listing_text
    assert not mismatches(program, FRAMES)


@pytest.mark.parametrize("between, merged", [
    ("", True),
    ("stw [r10-8], 3\n", True),                     # another stack slot
    ("stb [r10-1], 3\n", False),                    # a key byte
    ("mov r1, r10\nadd r1, -4\nstb [r1+2], 0\n", False),   # a key byte through another pointer
    ("lddw r1, map:hsh\nmov r2, r10\nadd r2, -4\ncall 3\n", False),          # delete of that map
    ("lddw r1, map:arr\nstw [r10-8], 0\nmov r2, r10\nadd r2, -8\ncall 3\n", True),   # delete elsewhere
    ("call 7\n", True),                              # get_prandom_u32
])
def test_what_separates_two_lookups(between, merged):
    program = _program("stw [r10-4], 1\n" + _lookup("hsh") + "mov r6, r0\n" + between + _lookup("hsh") +
                       "mov r0, 2\nexit\n")
    plan = plan_of(program)
    assert any(isinstance(h, Reuse) for h in plan.values()) == merged, plan
    assert not mismatches(program, FRAMES, seed_maps={"hsh": {(1).to_bytes(4, "little"): bytes(8)}})


def test_a_lookup_on_one_path_only_is_not_reused():
    # the first lookup is skipped for odd packet lengths: the second must call
    program = _program("ldxw r2, [r1+4]\nldxw r1, [r1]\nsub r2, r1\nand r2, 1\nstw [r10-4], 1\n"
                       "jne r2, 0, +5\n" + _lookup("hsh") + _lookup("hsh") + "mov r0, 2\nexit\n")
    assert not any(isinstance(h, Reuse) for h in plan_of(program).values())
    assert not mismatches(program, FRAMES)


def test_keys_joined_from_two_paths():
    # the key is 1 on one path and 2 on the other: not constant (inline); equal on both: constant
    for second, want in ((2, Inline), (1, Direct)):
        program = _program("ldxw r2, [r1+4]\nldxw r1, [r1]\nsub r2, r1\nand r2, 1\nstw [r10-4], 1\n"
                           f"jne r2, 0, +1\nstw [r10-4], {second}\n" + _lookup("arr") +
                           "jeq r0, 0, +3\nldxdw r1, [r0]\nadd r1, 1\nstxdw [r0], r1\nmov r0, 2\nexit\n")
        assert [type(h) for h in plan_of(program).values()] == [want]
        assert not mismatches(program, FRAMES)


def test_loop_lookup_reuses_the_one_before_the_loop():
    program = _program("stw [r10-4], 3\n" + _lookup("hsh") + "mov r6, 0\n"
                       "loop:\n" + _lookup("hsh") + "add r6, 1\njlt r6, 3, loop\nmov r0, 2\nexit\n")
    assert [type(h) for h in plan_of(program).values()] == [Reuse]
    assert not mismatches(program, FRAMES, seed_maps={"hsh": {(3).to_bytes(4, "little"): bytes(8)}})


def test_options_switch_each_part_off():
    body = CASES["map_cache_const_key"][0]
    program = _program(body)
    text = compile(program, passes=O1 + ",map-cache{direct=false,inline=false}",
                   profile="permissive").mprogram.listing()
    assert text.count("fw_map_lookup") == 2


# -- differential: generated lookup programs --------------------------------------------------------

_PKTLEN = "ldxw r2, [r6+4]\nldxw r1, [r6]\nsub r2, r1\n"


@st.composite
def lookup_programs(draw):
    """Sequences of key stores (constant, per-packet, partial), lookups with value updates, map updates
    and deletes, unrelated stores and helpers, and one-instruction conditional skips (joins)."""
    lines = ["mov r6, r1", "mov r9, 0", "stw [r10-4], 0", "stdw [r10-16], 0"]
    callee = False
    target = draw(st.sampled_from([-4, -8]))    # one offset per program: the NIC needs a constant stack pointer
    for _ in range(draw(st.integers(1, 9))):
        op = draw(st.sampled_from(["key", "key", "keyvar", "keybyte", "lookup", "lookup", "lookup",
                                   "update", "delete", "other", "cond", "prandom", "local"]))
        if op == "key":
            lines.append(f"stw [r10-4], {draw(st.integers(0, 9))}")
        elif op == "keyvar":
            lines += [_PKTLEN.strip(), f"and r2, {draw(st.sampled_from([1, 3, 7]))}", "stxw [r10-4], r2"]
        elif op == "keybyte":
            lines.append(f"stb [r10-{draw(st.integers(1, 4))}], {draw(st.integers(0, 3))}")
        elif op == "lookup":
            m = draw(st.sampled_from(["arr", "hsh", "wide"]))
            lines += _lookup(m).strip().split("\n")
            lines += ["jeq r0, 0, +5", "ldxdw r3, [r0]", "add r9, r3", "add r3, 1", "stxdw [r0], r3",
                      "mov r7, r0"]
        elif op == "update":
            m = draw(st.sampled_from(["arr", "hsh"]))
            lines += [f"stdw [r10-16], {draw(st.integers(0, 100))}", f"lddw r1, map:{m}", "mov r2, r10",
                      "add r2, -4", "mov r3, r10", "add r3, -16", f"mov r4, {draw(st.sampled_from([0, 1, 2]))}",
                      "call 2"]
        elif op == "delete":
            lines += ["lddw r1, map:hsh", "mov r2, r10", "add r2, -4", "call 3"]
        elif op == "other":
            lines.append(f"stw [r10-8], {draw(st.integers(0, 9))}")
        elif op == "cond":
            lines += [_PKTLEN.strip(), "and r2, 1", "jeq r2, 0, +1", f"stw [r10-4], {draw(st.integers(0, 9))}"]
        elif op == "local":        # a BPF-to-BPF call that writes the key (or another slot) through r1
            lines += ["mov r1, r10", f"add r1, {target}", "call fn"]
            callee = True
        else:
            lines += ["call 7"]    # get_prandom_u32: r0 is not compared in the result (r9 is)
    lines += ["mov r0, r9", "and r0, 3", "exit"]
    if callee:
        lines += ["fn:", f"stw [r1+0], {draw(st.integers(0, 5))}", "mov r0, 0", "exit"]
    return _program("\n".join(lines) + "\n")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(lookup_programs(), st.lists(st.sampled_from(FRAMES), min_size=2, max_size=5))
def test_generated_lookup_programs_agree(program, frames):
    problems = mismatches(program, frames, seed_maps={"hsh": {(k).to_bytes(4, "little"): bytes(8) for k in (1, 3)}})
    assert not problems, "\n".join(problems[:6])


def test_generated_lookups_exercise_every_way():
    """The generator above must reach each kind of decision (else the property proves little)."""
    seen = set()

    @settings(max_examples=80, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(lookup_programs())
    def probe(program):
        seen.update(type(h) for h in plan_of(program).values())

    probe()
    assert seen == {Direct, Inline, Reuse}


# -- differential: the corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("obj,section", corpus_cases(asm=True))
def test_corpus_agrees_with_and_without(obj, section):
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS) or not program.maps:
        pytest.skip("no maps" if program.maps == () else "not offloaded")
    if uses_nondeterminism(program):
        pytest.skip("uses a nondeterministic helper (a clock read differs with the code's cycles)")
    try:
        compile(program, passes=WITH, profile="permissive")
    except nfpjit.errors.UnsupportedError as exc:
        pytest.skip(f"not compiled: {str(exc)[:120]}")
    problems = mismatches(program, CRAFTED[:25])
    assert not problems, "\n".join(problems[:6])


@pytest.mark.parametrize("stem", ["array_counter", "atomic_add", "two_programs", "parse_l2_l3_l4"])
def test_corpus_array_lookups_make_no_call(stem):
    from conftest import CORPUS

    obj = CORPUS / f"{stem}.o"
    for section, _ in nfpjit.ebpf.loader.list_programs(obj):
        program = nfpjit.load(obj, section=section)
        for spec in (WITH, O2):
            assert "fw_map_lookup" not in compile(program, passes=spec, profile="permissive").mprogram.listing()
        assert cycles(program, WITH, CRAFTED[:10]) < cycles(program, WITHOUT, CRAFTED[:10])


# -- differential: the general program generator --------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_blocks=8), st.lists(packets(max_len=160), min_size=1, max_size=3))
def test_generated_programs_agree_with_and_without(program, frames):
    if any(i.is_helper_call and i.imm in (5, 7, 8) for i in program.insns):   # time, prandom, cpu id
        return
    try:
        problems = mismatches(program, FRAMES[:3] + frames)
    except nfpjit.errors.UnsupportedError:
        return
    assert not problems, "\n".join(problems[:6])


# -- the simulator's NIC-side map cache ----------------------------------------------------------------


def _hash_counter():
    from conftest import CORPUS

    return nfpjit.load(CORPUS / "hash_counter.o")


def test_sim_map_cache_counts_per_run_and_a_shared_cache_stays_warm():
    from nfpjit.isa.sim.cycles import CYCLES
    from nfpjit.isa.sim.firmware import MapCache

    program = _hash_counter()
    image = compile(program, profile="permissive").image
    frames = [f for f in CRAFTED if len(f) >= 14][:8]
    # an independent model of the cache: lookups of (table, key) seen before in this sequence hit,
    # a key is only cached once present (its first packet inserts it with an update)
    cold, warm = [], []
    cache = MapCache(16)
    state = None
    for frame in frames:
        a = simulate_image(image, PacketIn(frame), maps_in=state)
        b = simulate_image(image, PacketIn(frame), maps_in=state, map_cache=cache)
        assert to_run_result(a).maps == to_run_result(b).maps and a.r0 == b.r0 and a.packet == b.packet
        cold.append(a)
        warm.append(b)
        state = to_run_result(a).maps
    assert all(r.map_cache_hits == 0 and r.map_cache_misses == r.routine_calls.get("fw_map_lookup", 0)
               for r in cold)
    # the model: a lookup hits when its key is cached; a miss of a present key caches it; an absent
    # key's miss is followed by its update (BPF_NOEXIST), which adds it to the map and evicts it
    cached: set[bytes] = set()
    in_map: set[bytes] = set()
    saved = CYCLES["fw_map_lookup_miss"] - CYCLES["fw_map_lookup_hit"]
    for frame, c, w in zip(frames, cold, warm):
        key = frame[12:14]
        hit = key in cached
        assert (w.map_cache_hits, w.map_cache_misses) == (int(hit), int(not hit))
        assert c.cycles - w.cycles == (saved if hit else 0)
        if key in in_map:
            cached.add(key)
        else:
            in_map.add(key)
            cached.discard(key)
    assert sum(r.map_cache_hits for r in warm) > 0
    assert cache.hits == sum(r.map_cache_hits for r in warm)


def test_direct_array_lookups_do_not_reach_the_cache():
    from conftest import CORPUS

    program = nfpjit.load(CORPUS / "array_counter.o")
    for spec, lookups in ((WITHOUT, 2), (WITH, 0)):
        sim = simulate_image(compile(program, passes=spec, profile="permissive").image, PacketIn(CRAFTED[0]))
        assert sim.map_cache_hits + sim.map_cache_misses == lookups
        assert sim.map_cache_misses == lookups      # a cold cache per run


def test_inline_lookup_of_a_24_byte_value_shifts_and_adds():
    program = _program("ldxw r1, [r1+16]\nand r1, 3\nstxw [r10-4], r1\n" + _lookup("wide") +
                       "jeq r0, 0, +3\nldxdw r1, [r0+16]\nadd r1, 1\nstxdw [r0+16], r1\nmov r0, 2\nexit\n")
    assert list(plan_of(program).values()) == [Inline(2)]
    text = compile(program, passes=WITH, profile="permissive").mprogram.listing()
    filecheck(text, ["sub --, *l$index1, 3", "alu_shf ab0, --, mov, *l$index1, shl 3",
                     "alu_shf ab0, a0, add, *l$index1, shl 4", "immed ab1, 0x12"])
    frames = [bytes(64)] * 3
    for queue in range(4):     # rx queues 0..3: index 3 is out of range (NULL), the others slots 0..2
        problems = []
        for spec in (WITHOUT, WITH):
            image = compile(program, passes=spec, profile="permissive").image
            store = MapStore.from_program(program)
            state = None
            for frame in frames:
                pin = PacketIn(frame, rx_queue_index=queue)
                want = run(program, pin, maps=store)
                got = to_run_result(simulate_image(image, pin, maps_in=state))
                state = got.maps
                problems += compare_results(want, got, r0_bits=32)
        assert not problems, problems


@pytest.mark.parametrize("m, want", [("hsh", None), ("arr", Inline)])
def test_a_bpf_to_bpf_call_may_change_the_key(m, want):
    # the callee rewrites the caller's key through a pointer: no reuse, and the key is no longer known
    program = _program("stw [r10-4], 1\n" + _lookup(m) + "mov r6, r0\nmov r1, r10\nadd r1, -4\ncall fn\n" +
                       _lookup(m) + "mov r7, r0\nmov r0, 1\njne r6, r7, +1\nmov r0, 2\nexit\n"
                       "fn:\nstw [r1+0], 2\nmov r0, 0\nexit\n")
    plan = plan_of(program)
    assert {pc: type(h) for pc, h in plan.items() if pc > 5} == ({14: want} if want else {})
    assert not mismatches(program, FRAMES, seed_maps={"hsh": {(k).to_bytes(4, "little"): bytes(8) for k in (1, 2)}})


def test_storing_the_same_constant_key_again_keeps_the_first_result():
    body = "stw [r10-4], 7\n" + _lookup("hsh") + "mov r6, r0\n{again}" + _lookup("hsh") + "mov r0, 2\nexit\n"
    for again, merged in (("stw [r10-4], 7\n", True), ("mov r1, 7\nstxw [r10-4], r1\n", True),
                          ("stw [r10-4], 8\n", False), ("stb [r10-4], 7\n", True), ("stb [r10-3], 7\n", False)):
        program = _program(body.format(again=again))
        assert any(isinstance(h, Reuse) for h in plan_of(program).values()) == merged, again
        assert not mismatches(program, FRAMES, seed_maps={"hsh": {(7).to_bytes(4, "little"): bytes(8)}})

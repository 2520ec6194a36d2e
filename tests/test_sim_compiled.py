"""The compiled simulator (nfpjit.isa.sim.compiled) against the interpreting one: every SimResult field.

Oracle: ``nfpjit.isa.sim.simulate`` (the interpreting simulator) on the same image, packets, map
state and options.  Compared: action, r0, output packet, maps, instruction count, cycles, the
per-resource breakdown, faults (kind, pc, message, memory address, eBPF insn, source), firmware
calls and map-cache hits/misses.  Inputs: every corpus program at -O0 and -O2 on the crafted
packets with maps persisting (one ``simulate`` per packet and one ``run_batch``), the same with a
warm map cache shared across packets, generated eBPF programs, random NFP-32 instruction
sequences, the raw-context conformance cases, budgets that stop runs at every point of a
program, and hand-written programs for the corners (LM pointer rule, signals, multiplier,
firmware faults, dynamic jumps the translation has no block for).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.isa.asm import assemble
from nfpjit.isa.encoding import encode_all
from nfpjit.isa.image import Image, image_from_asm
from nfpjit.isa.sim import simulate as interp
from nfpjit.isa.sim.firmware import MapCache
from nfpjit.isa.sim import compiled
from nfpjit.isa.table import Instruction, Op
from nfpjit.testing import crafted_packets, packets, programs

from tests.corpus_cases import corpus_cases

pytestmark = pytest.mark.skipif(not compiled.available(), reason="llvmlite JIT unavailable here")

CRAFTED = crafted_packets()
FEW = CRAFTED[:5] + CRAFTED[-5:]
FIELDS = ("action", "r0", "packet", "maps", "insns", "cycles", "fault", "routine_calls", "map_cache_hits",
          "map_cache_misses")


def differences(ref, got) -> list[str]:
    out = [f"{f}: interp {getattr(ref, f)!r} compiled {getattr(got, f)!r}" for f in FIELDS
           if getattr(ref, f) != getattr(got, f)]
    if dict(ref.breakdown) != dict(got.breakdown):
        out.append(f"breakdown: interp {dict(ref.breakdown)} compiled {dict(got.breakdown)}")
    return out


def chain(image, frames, *, engine, maps_in=None, cache=None, **kw):
    """One simulate per frame, maps (and the cache, when given) persisting."""
    results, state = [], maps_in
    for frame in frames:
        r = engine(image, frame, maps_in=state, map_cache=cache, **kw)
        results.append(r)
        state = r.maps
    return results


def agree(image, frames, *, maps_in=None, label="", batch=True, **kw) -> None:
    ref = chain(image, frames, engine=interp, maps_in=maps_in, **kw)
    got = chain(image, frames, engine=compiled.simulate, maps_in=maps_in, **kw)
    problems = [f"{label} packet {k}: {d}" for k, (a, b) in enumerate(zip(ref, got)) for d in differences(a, b)]
    if batch:
        bat = compiled.run_batch(image, frames, maps_in, **kw)
        problems += [f"{label} batch packet {k}: {d}" for k, (a, b) in enumerate(zip(ref, bat))
                     for d in differences(a, b)]
    assert not problems, "\n".join(problems[:8])


def _compile(obj, section, opt_level):
    try:
        return nfpjit.compile(obj, section=section, profile="permissive", opt_level=opt_level).image
    except nfpjit.errors.NfpjitError as exc:
        pytest.skip(f"not compiled: {str(exc)[:120]}")


def _translated(image):
    why = compiled.why_not(image)
    if any(m.type.lru for m in image.maps):
        # LRU hash tables have no native eviction order yet: the engine must say so and fall back
        assert why is not None and "LRU" in why, why
        return
    from nfpjit.isa.sim.compiled.translate import _NOT_TRANSLATED

    if any(r.symbol in {t.symbol for t in _NOT_TRANSLATED} for r in image.relocations):
        # the byte/checksum routines are not translated (docs/simulator.md): the engine must say so and fall back
        assert why is not None and "is not translated" in why, why
        return
    assert why is None, f"the compiled engine refuses the image: {why}"


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("obj,section", corpus_cases(asm=True))
def test_corpus_program(obj, section, opt_level):
    image = _compile(obj, section, opt_level)
    _translated(image)
    agree(image, CRAFTED, label=f"{Path(obj).name}:{section} -O{opt_level}")


@pytest.mark.parametrize("name", ["xdp_drop_tcp_ports", "hash_counter", "array_counter", "legacy_maps"])
def test_warm_map_cache_across_packets(name):
    """One MapCache for the whole sequence (the NIC's stays warm): hits, evictions and the cache itself agree."""
    obj = Path(__file__).parent / "corpus" / f"{name}.o"
    image = _compile(obj, None, 2)
    for size in (0, 1, 2, 16):
        ref_cache, got_cache = MapCache(size), MapCache(size)
        ref = chain(image, CRAFTED, engine=interp, cache=ref_cache)
        got = compiled.run_batch(image, CRAFTED, map_cache=got_cache)
        problems = [f"size {size} packet {k}: {d}" for k, (a, b) in enumerate(zip(ref, got)) for d in differences(a, b)]
        assert not problems, "\n".join(problems[:8])
        assert list(ref_cache.entries) == list(got_cache.entries)
        assert (ref_cache.hits, ref_cache.misses) == (got_cache.hits, got_cache.misses)
        if size == 16 and name in ("xdp_drop_tcp_ports", "hash_counter"):
            assert sum(r.map_cache_hits for r in ref) > 0, "the sequence should hit the cache"
        # and one simulate per packet with the same cache object
        c2 = MapCache(size)
        single = chain(image, CRAFTED[:12], engine=compiled.simulate, cache=c2)
        assert all(not differences(a, b) for a, b in zip(ref[:12], single))


def test_budget_stops_at_every_point():
    """Budgets from 0 to the run's cycles: the watchdog fault (pc, counts, state) is the interpreter's."""
    image = _compile(Path(__file__).parent.parent / "examples" / "xdp_drop_tcp_ports.o", None, 0)
    frame = CRAFTED[0]
    full = interp(image, frame).cycles
    for budget in list(range(0, 120)) + list(range(120, full + 2, 97)) + [full - 1, full, full + 1]:
        ref = interp(image, frame, budget=budget)
        got = compiled.simulate(image, frame, budget=budget)
        assert not differences(ref, got), (budget, differences(ref, got))
        bat = compiled.run_batch(image, [frame, CRAFTED[1]], budget=budget)
        ref2 = chain(image, [frame, CRAFTED[1]], engine=interp, budget=budget)
        assert all(not differences(a, b) for a, b in zip(ref2, bat)), budget


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(max_blocks=8), st.lists(packets(max_len=200), min_size=1, max_size=3))
def test_generated_programs(program, frames):
    try:
        image = nfpjit.compile(program, profile="permissive").image
    except nfpjit.errors.UnsupportedError:
        assume(False)
    agree(image, FEW[:4] + frames, label="generated")


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.lists(packets(), min_size=1, max_size=4), st.sampled_from([0, 1, 2]))
def test_generated_programs_many(program, frames, opt_level):
    try:
        image = nfpjit.compile(program, profile="permissive", opt_level=opt_level).image
    except nfpjit.errors.UnsupportedError:
        assume(False)
    agree(image, FEW + frames, label="generated")


# -- raw-context conformance cases --------------------------------------------------------------------------

CONFORMANCE = sorted((Path(__file__).parent / "conformance").glob("*.data"))


def _conformance(path, opt_level):
    from nfpjit.driver import CompileError
    from nfpjit.errors import UnsupportedError
    from nfpjit.testing.conformance import load_data_file

    case = load_data_file(path)
    try:
        image = nfpjit.compile(case.program, profile="permissive", raw_context=True, opt_level=opt_level).image
    except (CompileError, UnsupportedError):
        pytest.skip("refused by the compiler (tests/test_conformance_sim.py says which may be)")
    ref = interp(image, case.memory, raw_memory=True)
    got = compiled.simulate(image, case.memory, raw_memory=True)
    assert not differences(ref, got), differences(ref, got)
    bat = compiled.run_batch(image, [case.memory, case.memory], raw_memory=True)
    assert all(not differences(ref, b) for b in bat[:1])


@pytest.mark.parametrize("path", CONFORMANCE[::6], ids=lambda p: p.stem)
def test_conformance_cases_sample(path):
    _conformance(path, 0)


@pytest.mark.slow
@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.stem)
def test_conformance_cases_all(path, opt_level):
    _conformance(path, opt_level)


# -- random NFP-32 code -------------------------------------------------------------------------------------

def _random_code():
    from tests.test_isa_roundtrip import any_instruction

    def fix(instrs, n):
        out = []
        for i in instrs:
            if i.entry.op in (Op.BR, Op.BR_BSET, Op.BR_BCLR, Op.LOAD_ADDR):
                kw = {f.name: getattr(i, f.name) for f in i.entry.fields}
                kw.update(dest=i.dest, a=i.a, b=i.b)
                kw = {k: v for k, v in kw.items() if v is not None or k in ("dest", "a", "b")}
                kw["target"] = i.target % (n + 3) if i.target < 0x3F00 or i.target > 0x3F08 else i.target
                try:
                    i = Instruction(i.op, **{k: v for k, v in kw.items() if v is not None})
                except Exception:
                    continue
            out.append(i)
        return out

    return st.lists(any_instruction, min_size=1, max_size=24).map(lambda xs: fix(xs, len(xs)))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(_random_code(), st.binary(min_size=0, max_size=80), st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_random_nfp_code(instrs, packet, budget, seed):
    """Arbitrary instruction sequences (most fault somewhere): the same fault, at the same point, same counts."""
    from nfpjit.isa.operands import Imm

    words = list(encode_all(instrs + [Instruction(Op.HALT, b=Imm(2))]))
    if seed % 5 == 0:
        words.insert(seed % len(words), 0xFF << 56)     # an undecodable word
    image = Image(code=tuple(words))
    ref = interp(image, packet, budget=budget, seed=seed)
    got = compiled.simulate(image, packet, budget=budget, seed=seed)
    assert not differences(ref, got), differences(ref, got)


# -- hand-written corners -----------------------------------------------------------------------------------

def _asm(text: str) -> Image:
    return image_from_asm(assemble(text, "t.s"))


CORNERS = {
    "lm_pointer_too_soon": """
        immed a1, 64
        csr_wr active_lm_addr_0, a1
        nop
        mov *l$index0, a1
        halt 2
    """,
    "lm_pointer_just_in_time": """
        immed a1, 64
        csr_wr active_lm_addr_0, a1
        nop
        nop
        nop
        mov *l$index0++, a1
        mov a2, *l$index0
        csr_rd a3, active_lm_addr_0
        halt a3
    """,
    "lm_overflow": """
        immed a1, 4094
        csr_wr active_lm_addr_1, a1
        nop
        nop
        nop
        mov *l$index1, a1
        halt 2
    """,
    "async_signal_and_wait": """
        csr_rd a5, pkt_addr
        mem_read.ctm $in0, a5, 0, 2, signal=3
        nop
        nop
        ctx_wait 3
        csr_rd a6, timestamp_lo
        mem_read.ctm $in2, a5, 8, 1, signal=4
        immed a7, 1
        alu_shf a8, --, mov, a7, shl 3
        ctx_wait 4
        mov a9, $in2
        add a0, $in0, a9
        halt a6
    """,
    "wait_on_nothing": """
        ctx_wait 5
        halt 1
    """,
    "multiplier": """
        immed a1, 0x1234
        immed a1, 0x5678, width=hi
        immed b2, 0xfedc
        mul_start a1, b2
        mul_step 32x32
        mul_step 32x32
        mul_step 32x32
        mul_step 32x32
        mul_last a0
        mul_last2 b1
        mov a1, b1
        halt 2
    """,
    "multiplier_wrong_mode": """
        immed a1, 3
        mul_start a1, 4
        mul_step 16x16
        mul_step 24x8
        halt 2
    """,
    "random_and_time": """
        csr_rd a0, pseudo_random
        csr_rd a1, pseudo_random
        br.always 0x3f06, defer=1
        load_addr a30, back
    back:
        csr_rd a2, timestamp_lo
        halt a2
    """,
    "unknown_table": """
        immed a2, 77
        immed a4, 0
        br.always 0x3f00, defer=2
        load_addr a30, back
        nop
    back:
        halt 2
    """,
    "no_such_routine": """
        br.always 0x3f40, defer=1
        load_addr a30, back
    back:
        halt 2
    """,
    "rtn_to_a_computed_address": """
        immed a3, 5
        rtn a3, defer=1
        immed a0, 1
        halt 3
        halt 4
        add a0, a0, 1
        halt a0
    """,
    "branch_in_defer_slot": """
        br.always 3, defer=1
        br.always 3
        halt 1
        halt 2
    """,
    "pc_past_the_code": """
        nop
    """,
    "packet_moves": """
        csr_rd a1, pkt_addr
        add a1, a1, 4
        csr_wr pkt_addr, a1
        csr_rd a2, pkt_len
        sub a2, a2, 4
        csr_wr pkt_len, a2
        immed a4, 0xfffe
        immed a4, 0xffff, width=hi
        br.always 0x3f03, defer=1
        load_addr a30, back
    back:
        immed a4, 20
        br.always 0x3f05, defer=1
        load_addr a30, back2
    back2:
        halt 2
    """,
    "scratch_memories": """
        immed $out0, 7
        immed a1, 0x100
        mem_write.imem $out0, a1, 0, 1, ctx_swap
        mem_add32.cls $out0, a1, 4, 1, ctx_swap
        mem_test_set.cls $out0, a1, 4, 1, ctx_swap
        mem_read.imem $in0, a1, 0, 1, ctx_swap
        mov a2, $in0
        add a0, a2, $in0
        halt 2
    """,
    "atomic_commands": """
        immed $out0, 0x0f0f
        immed $out0, 0x8000, width=hi
        immed $out1, 3
        immed $out2, 0x0f0f
        immed $out3, 7
        immed a1, 0x200
        mem_write.cls $out0, a1, 0, 4, ctx_swap
        mem_atomic32.cls add, $out0, a1, 0, 1, ctx_swap
        mov a2, $in0
        mem_atomic64.cls and, $out0, a1, 4, 2, ctx_swap
        add a2, a2, $in1
        mem_atomic32.imem or, $out1, a1, 0, 1, ctx_swap
        mem_atomic64.cls xor, $out2, a1, 8, 2, ctx_swap
        add a2, a2, $in2
        mem_atomic32.cls swap, $out3, a1, 12, 1, ctx_swap
        mem_atomic32.cls cmp_swap, $out0, a1, 0, 1, ctx_swap
        mem_atomic64.cls cmp_swap, $out0, a1, 0, 2, ctx_swap
        add a2, a2, $in0
        mem_read.cls $in4, a1, 0, 4, ctx_swap
        add a0, a2, $in4
        add a0, a0, $in7
        mem_atomic64.cls cmp_swap, $out30, a1, 0, 2, ctx_swap
        halt 2
    """,
    "indirect_count": """
        immed a1, 3
        mov --, a1
        csr_rd a5, pkt_addr
        mem_read.ctm $in0, a5, 0, indirect, ctx_swap
        mov a0, $in3
        mov --, 31
        mem_read.ctm $in4, a5, 0, indirect, ctx_swap
        halt 2
    """,
}


@pytest.mark.parametrize("name", sorted(CORNERS))
def test_corner(name):
    image = _asm(".prog_type xdp\n.stack 64\n.map t hash key=4 value=8 entries=4\n" + CORNERS[name])
    frames = [CRAFTED[0], CRAFTED[3][:20], b"\x01" * 14]
    for seed in (0, 7):
        agree(image, frames, label=name, seed=seed)


def test_dynamic_jump_without_a_block_hands_off_and_agrees():
    image = _asm(".prog_type xdp\n" + CORNERS["rtn_to_a_computed_address"])
    s = compiled.session(image)
    for _ in range(3):
        got = s.run(CRAFTED[0])
        assert not differences(interp(image, CRAFTED[0]), got)
    assert s.handoffs == 3


def test_trace_falls_back_with_a_reason():
    image = _asm(".prog_type xdp\nhalt 2\n")
    r = compiled.run(image, CRAFTED[0], trace=True)
    assert r.engine == "interp" and "trace" in r.reason and r.result.trace
    r = compiled.run(image, CRAFTED[0])
    assert r.engine == "compiled" and r.reason is None
    r = compiled.run(_asm(".prog_type xdp\n" + CORNERS["rtn_to_a_computed_address"]), CRAFTED[0])
    assert r.engine == "compiled" and "hand-off" in r.reason


def test_maps_in_and_errors_like_the_interpreter():
    image = _asm(".prog_type xdp\n.map t hash key=4 value=8 entries=2\nhalt 2\n")
    maps = {"t": {b"\1\0\0\0": b"\2" * 8, b"\3\0\0\0": b"\4" * 8}}
    assert compiled.simulate(image, b"", maps_in=maps).maps == interp(image, b"", maps_in=maps).maps
    for bad in ({"nope": {}}, {"t": {b"\1": b"\2" * 8}}, {"t": {bytes([i, 0, 0, 0]): b"\0" * 8 for i in range(3)}}):
        with pytest.raises(nfpjit.errors.UsageError) as ref:
            interp(image, b"", maps_in=bad)
        with pytest.raises(nfpjit.errors.UsageError) as got:
            compiled.simulate(image, b"", maps_in=bad)
        assert str(ref.value) == str(got.value)
    with pytest.raises(nfpjit.errors.UsageError):
        compiled.simulate(image, b"\0" * 8000)


def test_image_cache_is_by_content():
    a = _asm(".prog_type xdp\nhalt 2\n")
    b = _asm(".prog_type xdp\nhalt 2\n")
    assert compiled.compile_image(a) is compiled.compile_image(b)
    assert compiled.image_key(a) == compiled.image_key(b) != compiled.image_key(_asm(".prog_type xdp\nhalt 1\n"))


def test_columns_fast_path_matches_results():
    from nfpjit.isa.sim.compiled import runtime as rt
    from nfpjit.isa.sim.compiled.engine import pack

    image = _compile(Path(__file__).parent.parent / "examples" / "xdp_drop_tcp_ports.o", None, 2)
    frames = CRAFTED * 3
    ref = chain(image, frames, engine=interp)
    s = compiled.session(image)
    done, recs, out, ooffs = s.run_columns(*pack(frames))
    assert done == len(frames)
    for k, r in enumerate(ref):
        rec = recs[k * rt.R_SIZE:(k + 1) * rt.R_SIZE]
        assert rec[rt.R_ACTION] == r.action and rec[rt.R_CYCLES] == r.cycles and rec[rt.R_INSNS] == r.insns
        o = ooffs[k]
        assert out.raw[o:o + rec[rt.R_PKT_LEN]] == r.packet
    assert s.maps() == ref[-1].maps


def test_columns_finish_handed_off_runs():
    from nfpjit.isa.sim.compiled import runtime as rt
    from nfpjit.isa.sim.compiled.engine import pack

    image = _asm(".prog_type xdp\n" + CORNERS["rtn_to_a_computed_address"])
    frames = CRAFTED[:7]
    s = compiled.session(image)
    done, recs, out, ooffs = s.run_columns(*pack(frames))
    assert done == len(frames) and s.handoffs == len(frames)
    for k, frame in enumerate(frames):
        ref = interp(image, frame)
        rec = recs[k * rt.R_SIZE:(k + 1) * rt.R_SIZE]
        assert (rec[rt.R_ACTION], rec[rt.R_CYCLES], rec[rt.R_INSNS]) == (ref.action, ref.cycles, ref.insns)
        assert out.raw[ooffs[k]:ooffs[k] + rec[rt.R_PKT_LEN]] == ref.packet


DELETE_THEN_LOOKUP = """
.prog_type xdp
.stack 64
.map t hash key=4 value=8 entries=4
    csr_rd a5, pkt_addr
    mem_read.ctm $in0, a5, 0, 2, ctx_swap
    mov *l$index0, $in0
    mov *l$index0[1], $in1
    immed a4, 0
    immed a2, map(t)
    br.always 0x3f02, defer=1
    load_addr a30, del_back
del_back:
    immed a4, 4
    immed a2, map(t)
    br.always 0x3f00, defer=1
    load_addr a30, back
back:
    halt 2
"""


def test_slots_after_deletes_follow_the_simulate_chain():
    """simulate(maps_in=<previous maps>) rebuilds the tables: after a delete, entries move to the lowest
    slots and lookups return other EMEM addresses; run_batch and a session do the same."""
    image = _asm(DELETE_THEN_LOOKUP)
    a, b, c = (bytes([i, 0, 0, 0]) for i in (1, 2, 3))
    maps = {"t": {a: b"\xaa" * 8, b: b"\xbb" * 8, c: b"\xcc" * 8}}
    frames = [a + c + b"\0" * 20, b"\x09\0\0\0" + c + b"\0" * 20, b + c + b"\0" * 20, c + a + b"\0" * 20]
    ref = chain(image, frames, engine=interp, maps_in=maps)
    assert len({r.r0 for r in ref}) > 1            # the address of c moves: the test can see it
    agree(image, frames, maps_in=maps, label="delete")
    s = compiled.session(image, maps_in=maps)
    assert all(not differences(r, s.run(f)) for r, f in zip(ref, frames))
    from nfpjit.isa.sim.compiled.engine import pack

    s2 = compiled.session(image, maps_in=maps)
    done, recs, out, _ = s2.run_columns(*pack(frames))
    from nfpjit.isa.sim.compiled import runtime as rt

    assert [recs[k * rt.R_SIZE + rt.R_R0] for k in range(done)] == [r.r0 for r in ref]


def test_control_plane_map_edits():
    image = _asm(DELETE_THEN_LOOKUP)
    a, b = bytes([1, 0, 0, 0]), bytes([2, 0, 0, 0])
    s = compiled.session(image, maps_in={"t": {a: b"\1" * 8}}, map_cache=MapCache(4))
    assert s.map_update("t", b, b"\2" * 8, 1) == 0 and s.map_update("t", b, b"\3" * 8, 1) == -17
    assert s.map_lookup("t", b) == b"\2" * 8 and s.map_delete("t", a) == 0 and s.map_delete("t", a) == -2
    assert s.maps() == {"t": {b: b"\2" * 8}}
    with pytest.raises(nfpjit.errors.UsageError):
        s.map_update("nope", a, b"\0" * 8)


def test_result_of_columns_records():
    from nfpjit.isa.sim.compiled.engine import pack

    image = _compile(Path(__file__).parent / "corpus" / "parse_l2_l3_l4.o", None, 2)
    frames = CRAFTED[:20]
    ref = chain(image, frames, engine=interp)
    s = compiled.session(image)
    done, recs, out, ooffs = s.run_columns(*pack(frames))
    for k, r in enumerate(ref):
        got = s.result_of(recs, k, out, ooffs)
        assert not differences(dataclasses_replace(r, maps={}), got)
    assert s.result_of(recs, done - 1, out, ooffs, maps=True).maps == ref[-1].maps


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


# -- random straight-line-ish code that mostly runs: ALU, shifts, fields, multiplier, packet and LM traffic ----

_REGS = [f"a{i}" for i in range(2, 12)] + [f"b{i}" for i in range(2, 12)]
_ALU = ["add", "addc", "sub", "subc", "and", "or", "xor", "andnot"]


@st.composite
def _running_program(draw):
    lines = ["csr_rd a20, pkt_addr", "csr_rd b20, pkt_len", "immed a21, 256", "csr_wr active_lm_addr_2, a21",
             "immed b3, 0x1234", "immed a3, 0xbeef, width=hi"]
    n = draw(st.integers(1, 30))
    labels = []
    for k in range(n):
        kind = draw(st.sampled_from(["alu", "alu", "shf", "dbl", "ldf", "imm", "br", "ctm", "lm", "mul", "csr"]))
        a = draw(st.sampled_from([r for r in _REGS if r[0] == "a"]))
        b_ = draw(st.sampled_from([r for r in _REGS if r[0] == "b"]))
        d = draw(st.sampled_from(_REGS + ["--"]))
        if kind == "alu":
            lines.append(f"{draw(st.sampled_from(_ALU))} {d}, {a}, {draw(st.sampled_from([b_, str(draw(st.integers(0, 255)))]))}")
        elif kind == "shf":
            sh = draw(st.sampled_from(["shl", "shr", "asr", "ror"]))
            amt = "indirect" if draw(st.booleans()) else str(draw(st.integers(0, 31)))
            lines.append(f"alu_shf {d}, {a}, {draw(st.sampled_from(_ALU + ['mov', 'not']))}, {b_}, {sh} {amt}"
                         .replace(f"{a}, mov", "--, mov").replace(f"{a}, not", "--, not"))
        elif kind == "dbl":
            lines.append(f"dbl_shf {d}, {a}, {b_}, {draw(st.integers(0, 31))}")
        elif kind == "ldf":
            clear = ", clear" if draw(st.booleans()) else ""
            lines.append(f"ld_field {d if d != '--' else 'a5'}, {draw(st.integers(1, 15))}, {b_}, "
                         f"{draw(st.integers(0, 31))}{clear}")
        elif kind == "imm":
            w = draw(st.sampled_from(["", ", width=lo", ", width=hi", ", invert", ", byte=1"]))
            lines.append(f"immed {d if d != '--' else 'b5'}, {draw(st.integers(0, 0xFFFF))}{w}")
        elif kind == "br":
            cond = draw(st.sampled_from(["eq", "ne", "mi", "pl", "hs", "lo", "vs", "vc", "ge", "lt", "gt", "le",
                                         "hi", "ls"]))
            labels.append(f"L{k}")
            lines.append(f"br.{cond} L{k}, defer={draw(st.integers(0, 2))}")
        elif kind == "ctm":
            off = draw(st.integers(0, 40))
            op = draw(st.sampled_from(["mem_read.ctm $in0", "mem_write.ctm $out0", "mem_add32.ctm $out0"]))
            cnt = 1 if "add32" in op else draw(st.integers(1, 4))
            lines.append(f"mov $out0, {b_}")
            lines.append(f"{op}, a20, {off}, {cnt}, ctx_swap")
            lines.append(f"mov {d if d != '--' else 'a6'}, $in0")
        elif kind == "lm":
            lines.append(f"mov *l$index2[{draw(st.integers(0, 15))}], {b_}")
            lines.append(f"add {d}, {a}, *l$index2[{draw(st.integers(0, 15))}]")
        elif kind == "mul":
            mode = draw(st.sampled_from([("24x8", 1), ("16x16", 2), ("32x32", 4)]))
            lines.append(f"mul_start {a}, {b_}")
            lines += [f"mul_step {mode[0]}"] * mode[1]
            lines.append(f"mul_last {d}")
            lines.append(f"mul_last2 {d}")
        else:
            lines.append(f"csr_rd {d if d != '--' else 'a7'}, {draw(st.sampled_from(['timestamp_lo', 'pseudo_random', 'pkt_len']))}")
        if labels and draw(st.booleans()):
            lines.append(f"{labels.pop()}:")
    lines += [f"{label}:" for label in labels]
    lines += ["mov ab0, a3", "mov ab1, b3", "halt 2"]
    return ".prog_type xdp\n.stack 512\n" + "\n".join("    " + l if not l.endswith(":") else l for l in lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(_running_program(), st.sampled_from(CRAFTED), st.integers(0, 5))
def test_random_running_code(text, frame, seed):
    try:
        image = _asm(text)
    except nfpjit.errors.NfpjitError:
        assume(False)
    ref = interp(image, frame, seed=seed)
    got = compiled.simulate(image, frame, seed=seed)
    assert not differences(ref, got), (differences(ref, got), text)


def test_packet_context_per_run_and_the_no_llvmlite_fallback():
    image = _asm(".prog_type xdp\ncsr_rd a0, rx_queue\ncsr_rd a1, ingress_ifindex\nhalt 2\n")
    s = compiled.session(image)
    s.set_packet_context(ingress_ifindex=7, rx_queue_index=3)
    assert not differences(interp(image, b"", ingress_ifindex=7, rx_queue_index=3), s.run(b""))
    from nfpjit.isa.sim.compiled import _fallback

    r = _fallback.run(image, b"", rx_queue_index=5)
    assert r.engine == "interp" and "llvmlite" in r.reason and r.result.r0 & 0xFFFFFFFF == 5
    assert _fallback.run_batch(image, [b"", b""]) == [interp(image, b"")] * 2 and not _fallback.available()

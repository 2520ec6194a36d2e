"""-O1 lowering (analysis-driven: no zero-extension or high-word writes nobody reads, decided branches,
shift-amount ranges, no XDP abort check where R0 is proven in range) against the interpreter.

At -O1 the high word of R0 at the entry function's exit is not kept (only the low word is the
verdict), so r0 is compared on its low 32 bits; packets, maps and the halt action on everything.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.driver import compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.opcodes import Helper, ProgType, XdpAction
from nfpjit.ebpf.result import PacketIn
from nfpjit.testing import compare_results, crafted_packets, packets, programs

from tests.corpus_cases import corpus_cases

FRAMES = crafted_packets()[:4]
CTM_BUFFER, HEADROOM = 8192, 256
NONDETERMINISTIC = {Helper.get_prandom_u32, Helper.ktime_get_ns}


def agree(program, frames, opt_level: int = 1) -> list[str]:
    image = compile(program, opt_level=opt_level, profile="permissive").image
    store = MapStore.from_program(program)
    names = {m.name for m in image.maps}
    state = {k: v for k, v in store.dump().items() if k in names}
    problems = []
    for frame in frames:
        pin = PacketIn(frame)
        want = run(program, pin, maps=store, tailroom=CTM_BUFFER - HEADROOM - len(frame))
        sim = simulate_image(image, pin, maps_in=state)
        got = to_run_result(sim)
        state = got.maps
        if want.fault is not None:
            continue
        problems += compare_results(want, got, r0_bits=32)
        ret = want.r0 & 0xFFFF_FFFF
        if program.prog_type == ProgType.XDP and got.fault is None:
            expected = ret if ret in XdpAction._value2member_map_ else XdpAction.ABORTED
            if sim.action != expected:
                problems.append(f"halt action {sim.action}, expected {int(expected)} (r0 {ret})")
    return problems


def _deterministic(program) -> bool:
    return not any(i.is_helper_call and i.imm in NONDETERMINISTIC for i in program.insns)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_blocks=8), st.lists(packets(max_len=200), min_size=1, max_size=2))
def test_generated_programs_at_O1(program, frames):
    if not _deterministic(program):
        return
    try:
        problems = agree(program, FRAMES + frames)
    except nfpjit.errors.UnsupportedError:
        return
    assert not problems, problems


def _size(text: str, opt_level: int) -> int:
    return compile(assemble(text), opt_level=opt_level, check=False).mprogram.size()


def test_O1_is_smaller_where_the_analysis_helps():
    # a 32-bit result whose high word nobody reads, and an exit whose action is proven in range
    text = "mov32 r0, 1\nadd32 r0, 1\nexit\n"
    assert _size(text, 1) < _size(text, 0)
    assert not agree(assemble(text), FRAMES)


@pytest.mark.parametrize("text", [
    "lddw r0, 0x100000002\nexit\n",                              # the low word is the verdict
    "mov r0, 7\nexit\n",                                         # out of range: XDP_ABORTED, check kept
    "mov r1, 40\nlddw r0, 0x8000000000000002\nrsh r0, r1\nand r0, 3\nexit\n",
])
def test_O1_small_programs(text):
    assert not agree(assemble(text), FRAMES)


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_at_O1(obj, section):
    program = nfpjit.load(str(obj), section=section)
    if not _deterministic(program):
        pytest.skip("uses a nondeterministic helper")
    try:
        problems = agree(program, crafted_packets()[:12])
    except nfpjit.errors.UnsupportedError as exc:
        pytest.skip(f"not offloadable: {str(exc)[:80]}")
    assert not problems, problems

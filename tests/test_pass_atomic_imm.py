"""The ``atomic-imm`` pass (passes/atomic_imm.py): small constant atomic adds as posted immediate commands."""

from __future__ import annotations

import pytest

from nfpjit.driver import compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn
from nfpjit.isa.encoding import decode
from nfpjit.isa.sim import Resource
from nfpjit.passes.pipelines import PIPELINES
from nfpjit.testing import compare_results, crafted_packets

from test_pass_machine import differential_case, golden_case

O2 = PIPELINES[2]
O2_WITHOUT = ",".join(p for p in O2.split(",") if p != "atomic-imm")


def _counter(add: str, size: str = "dw") -> str:
    """Look up slot 0 of an array and add ``add`` (an immediate moved into r1) to its first word."""
    return f""".type xdp
.map counts array key=4 value=8 entries=2
    stw [r10-4], 0
    lddw r1, map:counts
    mov r2, r10
    add r2, -4
    call 1
    jeq r0, 0, out
    mov r1, {add}
    xadd{size} [r0+0], r1
out:
    mov r0, 2
    exit
"""


def test_golden_listing(golden):
    golden_case(golden, "atomic_imm_counter", _counter("1"), "copy-prop,dce,const-fold,imm-materialise",
                "atomic-imm,dce", ["mem_addi64.emem"], ["mem_add64", "$out"])


def _runs(program, passes, frames):
    """Simulate ``frames`` one after the other (maps persisting); the interpreter must agree on each."""
    image = compile(program, passes=passes, profile="permissive").image
    store = MapStore.from_program(program)
    state, sims = None, []
    for frame in frames:
        sim = simulate_image(image, PacketIn(frame), maps_in=state)
        got = to_run_result(sim)
        state = got.maps
        sims.append(sim)
        problems = compare_results(run(program, PacketIn(frame), maps=store), got, r0_bits=32)
        assert not problems, problems
    return image, sims


@pytest.mark.parametrize("add,size,posted", [
    ("1", "dw", True), ("0xffff", "dw", True), ("0x10000", "dw", False), ("-1", "dw", False),
    ("7", "w", True), ("0xffff", "w", True), ("-2", "w", False),
])
def test_posted_only_for_16_bit_addends_and_results_agree(add, size, posted):
    program = assemble(_counter(add, size))
    frames = crafted_packets()[:6]
    image, sims = _runs(program, O2, frames)
    text = "\n".join(str(decode(w)) for w in image.code)
    assert ("mem_addi" in text) == posted, text
    _, without = _runs(program, O2_WITHOUT, frames)
    if posted:   # the add is no longer waited for: an EMEM round trip less per packet
        waited = [s.breakdown[Resource.EMEM].cycles for s in sims]
        waited_before = [s.breakdown[Resource.EMEM].cycles for s in without]
        assert all(a < b for a, b in zip(waited, waited_before))


def test_differential_generated():
    differential_case("atomic-imm", examples=15, seed=21)


@pytest.mark.slow
def test_differential_corpus():
    differential_case("atomic-imm", examples=0, corpus=True)

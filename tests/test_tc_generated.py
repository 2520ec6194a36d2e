"""Generated TC programs (nfpjit.testing.strategies.tc_programs) on the __sk_buff metadata.

The reference interpreter against both simulators (-O0 and -O2) on packets with mark, priority, cb
and hash set, and against the kernel's BPF_PROG_TEST_RUN (hash 0: test_run cannot set it): the
verdict (r0's low word), the packet and the metadata handed back must agree.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.interp import run
from nfpjit.testing import compare_results
from nfpjit.testing.strategies import TC_READ_FIELDS, TC_WRITE_FIELDS, tc_packet_ins, tc_programs

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _sim_problems(program, pins, opt_levels=(0, 2)):
    from nfpjit.driver import compile, simulate_image, to_run_result
    from nfpjit.isa.sim import compiled

    engines = ["interp"] + (["compiled"] if compiled.available() else [])
    problems = []
    for opt in opt_levels:
        image = compile(program, opt_level=opt).image
        for pin in pins:
            want = run(program, pin)
            for engine in engines:
                sim = simulate_image(image, pin, engine=engine)
                got = to_run_result(sim)
                diffs = compare_results(want, got)
                if want.fault is None and sim.action != want.r0 & 0xFFFF_FFFF:
                    diffs.append(f"halt action {sim.action:#x} != verdict {want.r0 & 0xFFFF_FFFF:#x}")
                if want.skb != got.skb:
                    diffs.append(f"metadata {got.skb} != {want.skb}")
                problems += [f"-O{opt} {engine} {pin}: {d}" for d in diffs]
    return problems


@settings(max_examples=60, **_SETTINGS)
@given(tc_programs(max_blocks=8), st.lists(tc_packet_ins(), min_size=1, max_size=3))
def test_generated_tc_programs_simulators_agree(program, pins):
    problems = _sim_problems(program, pins, opt_levels=(0, 2))
    assert not problems, "\n".join(problems[:5])


@pytest.mark.slow
@settings(max_examples=2_000, **_SETTINGS)
@given(tc_programs(), st.lists(tc_packet_ins(), min_size=1, max_size=3))
def test_generated_tc_programs_simulators_agree_many(program, pins):
    problems = _sim_problems(program, pins, opt_levels=(0, 1, 2))
    assert not problems, "\n".join(problems[:5])


@pytest.fixture(scope="module")
def kernel_ok():
    from nfpjit.kernel import kernel_available

    ok, why = kernel_available()
    if not ok:
        pytest.skip(why)


@settings(max_examples=40, **_SETTINGS)
@given(tc_programs(max_blocks=8), st.lists(tc_packet_ins(kernel=True), min_size=1, max_size=3))
def test_generated_tc_programs_agree_with_the_kernel(kernel_ok, program, pins):
    from nfpjit.driver import compile, run_sim
    from nfpjit.kernel import KernelProgram, tc_test_run_accepts

    image = compile(program, opt_level=2).image
    with KernelProgram(program) as kp:
        for pin in pins:
            if not tc_test_run_accepts(pin.data):
                continue
            want = kp.run(pin)
            got = run_sim(image, pin)
            mine = run(program, pin)
            assert not compare_results(want, got), (pin, compare_results(want, got))
            assert not compare_results(want, mine), (pin, compare_results(want, mine))


def test_the_family_covers_every_field():
    """The family must reach what it is for: every readable and writable field, every width."""
    seen_reads, seen_writes = set(), set()

    @settings(max_examples=300, database=None, derandomize=True, **_SETTINGS)
    @given(tc_programs())
    def probe(program):
        for insn in program.insns:
            if insn.src == 6 and insn.cls.name == "LDX":
                seen_reads.add(insn.off & ~3)
            if insn.dst == 6 and insn.cls.name in ("ST", "STX"):
                seen_writes.add(insn.off & ~3)

    probe()
    assert {off for off, _ in TC_READ_FIELDS} <= seen_reads
    assert set(TC_WRITE_FIELDS) <= seen_writes

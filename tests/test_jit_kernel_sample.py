"""A sample of the JIT checked against the kernel: simulator(compile(P)) and the kernel's test_run agree.

The main JIT differential test compares with the reference interpreter; this one closes the
triangle where the kernel oracle is available.  Every corpus program the default profile
compiles runs on ~20 crafted packets, and ~100 generated XDP programs that compile run on a
few packets each, with maps persisting across packets on both sides.  The kernel's test_run
returns a u32, so r0 is compared on its low 32 bits (and the NIC's halt action must equal it);
output packet and every map must agree.

The NIC's packet buffer has more tailroom than test_run's page, so growing the tail past the
kernel's limit could legitimately differ.  The frames here are at most ``MAX_FRAME`` bytes, which
leaves the kernel over 3 KiB of tailroom: more than any growth the generated programs ask for
(and than the corpus programs use), so both engines accept the same adjust_tail calls.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.driver import compile, simulate_image, to_run_result
from nfpjit.ebpf.opcodes import Helper, ProgType, XdpAction
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelProgram, KernelRejected, kernel_available, kernel_tailroom, tc_test_run_accepts
from nfpjit.testing import compare_results, crafted_packets, packets, programs

from tests.corpus_cases import corpus_cases

kernel_ok, kernel_reason = kernel_available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not kernel_ok, reason=f"kernel bpf() unusable: {kernel_reason}")]

CRAFTED = crafted_packets()
# ~20 packets spread over the crafted set (it is ordered by kind: keep every kind represented)
SAMPLE = CRAFTED[:: max(1, len(CRAFTED) // 20)][:20]
MAX_FRAME = 400
assert kernel_tailroom(ProgType.XDP, MAX_FRAME) > 3000  # the largest tail growth nfpjit.testing.programs asks for
NONDETERMINISTIC = {Helper.ktime_get_ns, Helper.ktime_get_boot_ns, Helper.ktime_get_coarse_ns,
                    Helper.ktime_get_tai_ns, Helper.get_prandom_u32, Helper.get_smp_processor_id}


def _nondeterministic(program) -> bool:
    return any(i.is_helper_call and i.imm in NONDETERMINISTIC for i in program.insns)


def three_way(program, image, frames, *, compare_values: bool = True, limit: int = 10) -> list[str]:
    """Run ``frames`` in the kernel and in the simulated ``image`` with persistent maps; what differs."""
    if program.prog_type != ProgType.XDP:
        frames = [f for f in frames if tc_test_run_accepts(f)]
    assert all(len(f) <= MAX_FRAME for f in frames), "a longer frame leaves the kernel less tailroom than the NIC"
    problems: list[str] = []
    names = {m.name for m in image.maps}
    with KernelProgram(program) as kp:
        state = {k: v for k, v in kp.dump_maps().items() if k in names}
        for n, frame in enumerate(frames):
            pin = PacketIn(frame)
            want = kp.run(pin)
            sim = simulate_image(image, pin, maps_in=state)
            got = to_run_result(sim)
            state = got.maps
            diffs = compare_results(want, got, maps=compare_values, r0_bits=32 if compare_values else 0)
            ret = want.r0 & 0xFFFF_FFFF
            if program.prog_type == ProgType.XDP and got.fault is None and ret in XdpAction._value2member_map_ \
                    and sim.action != ret:
                diffs.append(f"halt action {sim.action} but the kernel returned {ret}")
            problems += [f"packet {n} ({frame.hex()}): {d}" for d in diffs]
            if len(problems) >= limit:
                break
    return problems


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_program_sim_agrees_with_kernel(obj, section):
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        pytest.skip(f"{program.prog_type.name} programs are not offloaded")
    report = nfpjit.check(program)
    if not report.ok:
        pytest.skip(f"the default profile rejects it: {', '.join(sorted(report.codes))}")
    image = compile(program).image
    assert len(SAMPLE) >= 15 and max(map(len, SAMPLE)) <= MAX_FRAME
    try:
        problems = three_way(program, image, SAMPLE, compare_values=not _nondeterministic(program))
    except KernelRejected as exc:
        pytest.skip(f"the kernel rejects it as loaded here: {exc.log.strip().splitlines()[-1:]}")
    assert not problems, "\n".join(problems)


class Tally:
    compared = 0


def test_generated_xdp_programs_sim_agrees_with_kernel():
    Tally.compared = 0

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(programs(ProgType.XDP, max_blocks=8), st.lists(packets(max_len=MAX_FRAME), min_size=1, max_size=2))
    def check(program, frames):
        try:
            image = compile(program, profile="permissive").image
        except nfpjit.errors.UnsupportedError:
            reject()  # not compiled: does not count towards max_examples
        try:
            problems = three_way(program, image, SAMPLE[:3] + frames, limit=3,
                                 compare_values=not _nondeterministic(program))
        except KernelRejected as exc:
            raise AssertionError(f"the verifier rejected a generated program:\n{exc.log[-2000:]}") from None
        Tally.compared += 1
        assert not problems, "\n".join(problems)

    check()
    assert Tally.compared >= 90, f"only {Tally.compared} generated programs compiled and ran"


def test_three_way_reports_a_wrong_simulator(monkeypatch):
    """The comparison can fail: a simulator whose r0 is off by one is caught."""
    import dataclasses
    import sys

    for param in corpus_cases():
        obj, section = param.values
        program = nfpjit.load(obj, section=section)
        if program.prog_type == ProgType.XDP and nfpjit.check(program).ok and not _nondeterministic(program):
            break
    else:
        pytest.fail("no deterministic XDP corpus program the default profile accepts")
    image = compile(program).image
    module = sys.modules[__name__]
    real = module.to_run_result
    monkeypatch.setattr(module, "to_run_result", lambda sim: dataclasses.replace(real(sim), r0=real(sim).r0 ^ 1))
    assert three_way(program, image, SAMPLE[:2])

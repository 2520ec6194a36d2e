"""The reference interpreter against the Linux kernel (BPF_PROG_TEST_RUN): same verdict, packet and maps.

Every corpus program the kernel accepts runs over the crafted packets with
maps persisting across packets in both engines (as on a device); generated
programs run over crafted and generated packets.  Any difference is a bug in
one of the engines (or in the oracle plumbing): it fails the test and becomes
a named case in tests/test_regressions_interp.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.opcodes import Helper, ProgType
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelProgram, KernelRejected, kernel_available, kernel_tailroom, tc_test_run_accepts
from nfpjit.testing import compare_results, crafted_packets, packets, programs
from nfpjit.testing.strategies import feature_programs

from tests.corpus_cases import corpus_cases

from conftest import CORPUS

kernel_ok, kernel_reason = kernel_available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not kernel_ok, reason=f"kernel bpf() unusable: {kernel_reason}")]

# Helpers whose results differ between any two runs: the maps they feed are not compared.
NONDETERMINISTIC = {Helper.ktime_get_ns, Helper.ktime_get_boot_ns, Helper.ktime_get_coarse_ns,
                    Helper.ktime_get_tai_ns, Helper.get_prandom_u32, Helper.get_smp_processor_id}
CRAFTED = crafted_packets()


def differential(program, frames, *, compare_maps: bool = True) -> list[str]:
    """Run ``frames`` through both engines with persistent maps; the differences, per packet."""
    problems = []
    if program.prog_type != ProgType.XDP:  # frames the kernel's skb test_run refuses outright
        frames = [f for f in frames if tc_test_run_accepts(f)]
    store = MapStore.from_program(program)
    with KernelProgram(program) as kp:
        for n, frame in enumerate(frames):
            pin = PacketIn(frame)
            want = kp.run(pin)
            got = run(program, pin, maps=store, tailroom=kernel_tailroom(program.prog_type, len(frame)))
            for diff in compare_results(want, got, maps=compare_maps):
                problems.append(f"packet {n} ({frame.hex()}): {diff}")
    return problems


def masked_differential(program, frames) -> list[str]:
    """As differential(), but what nondeterministic helpers decided (r0, packet or map bytes) is masked."""
    from nfpjit.testing.nondet import masked_differences

    problems = []
    if program.prog_type != ProgType.XDP:  # frames the kernel's skb test_run refuses outright
        frames = [f for f in frames if tc_test_run_accepts(f)]
    from test_corpus_kernel import NicClockMasking   # also runs whose clock hardly moves between packets

    engine = NicClockMasking(program)
    with KernelProgram(program) as kp:
        for n, frame in enumerate(frames):
            pin = PacketIn(frame)
            want = kp.run(pin)
            got, mask = engine.run(pin, tailroom=kernel_tailroom(program.prog_type, len(frame)))
            problems += [f"packet {n} ({frame.hex()}): {d}" for d in masked_differences(want, got, mask)]
    return problems


#: corpus programs whose verdicts a rate computed from bpf_ktime_get_ns decides
CLOCK_RATE_VERDICTS = frozenset({"token_bucket_police"})


def test_corpus_is_present():
    assert len(corpus_cases()) >= 20


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_program_agrees_with_kernel(obj, section):
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT):
        pytest.skip(f"{program.prog_type.name} programs have no packet test_run here")
    uses_clock = any(i.is_helper_call and i.imm in NONDETERMINISTIC for i in program.insns)
    if obj.stem in CLOCK_RATE_VERDICTS:
        pytest.skip(f"{obj.stem}'s verdicts follow how much real time passes between the kernel's test runs "
                    "(a loaded machine refills its bucket): tests/test_corpus_kernel.py compares it with masks")
    try:
        # bytes that bpf_ktime_get_ns/bpf_get_prandom_u32 decided are masked, everything else compared
        problems = masked_differential(program, CRAFTED) if uses_clock else differential(program, CRAFTED)
    except KernelRejected as exc:
        pytest.skip(f"the kernel rejects {obj.name}:{section} as loaded here: {exc.log.strip().splitlines()[-1:]}")
    assert len(CRAFTED) >= 50
    assert not problems, "\n".join(problems[:10])


def _generated(prog_type: ProgType, examples: int, subprograms: bool = True, xdp_helpers: bool = False,
               strategy=None):
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy or programs(prog_type, subprograms=subprograms, xdp_helpers=xdp_helpers),
           st.lists(packets(max_len=200), min_size=1, max_size=3),
           st.lists(st.sampled_from(CRAFTED), min_size=1, max_size=3))
    def check(program, generated, crafted):
        try:
            problems = differential(program, crafted + generated)
        except KernelRejected as exc:
            raise AssertionError(f"verifier rejected a generated program:\n{exc.log[-2000:]}") from None
        assert not problems, "\n".join(problems[:10])

    check()


def test_generated_xdp_programs_agree_with_kernel():
    _generated(ProgType.XDP, 800)


def test_generated_tc_programs_agree_with_kernel():
    _generated(ProgType.SCHED_CLS, 100)
    _generated(ProgType.SCHED_CLS, 100, subprograms=False)  # with ld_abs/ld_ind


@pytest.mark.slow
def test_generated_programs_agree_with_kernel_big_run():
    _generated(ProgType.XDP, 8000)
    _generated(ProgType.SCHED_CLS, 1000)
    _generated(ProgType.SCHED_CLS, 1000, subprograms=False)


def test_generated_xdp_helper_programs_agree_with_kernel():
    # redirect maps, fib_lookup, check_mtu, queue/stack, ring buffer, perf events, array of maps
    _generated(ProgType.XDP, 100, xdp_helpers=True)


def test_generated_tc_helper_programs_agree_with_kernel():
    # the skb variants of fib_lookup/check_mtu/perf output, queue/stack, ring buffer, array of maps
    _generated(ProgType.SCHED_CLS, 60, xdp_helpers=True)


@pytest.mark.slow
def test_generated_xdp_helper_programs_agree_with_kernel_many():
    _generated(ProgType.XDP, 1000, xdp_helpers=True)   # ~30 s; the big run above has the 10,000
    _generated(ProgType.SCHED_CLS, 300, xdp_helpers=True)


def test_generated_feature_programs_agree_with_kernel():
    # map-value read-modify-write, every atomic, division/modulo by registers, 64-bit multiplication
    _generated(ProgType.XDP, 100, strategy=feature_programs())
    _generated(ProgType.SCHED_CLS, 40, strategy=feature_programs(ProgType.SCHED_CLS))


@pytest.mark.slow
def test_generated_feature_programs_agree_with_kernel_many():
    _generated(ProgType.XDP, 800, strategy=feature_programs())
    _generated(ProgType.SCHED_CLS, 200, strategy=feature_programs(ProgType.SCHED_CLS))


@pytest.mark.parametrize("mutation", ["r0", "packet", "map"])
def test_harness_reports_a_wrong_engine(monkeypatch, mutation):
    """The comparison can fail: an interpreter that gets r0, one packet byte or one map value wrong is caught."""
    import dataclasses
    import sys

    real_run = run

    def wrong(program, pin, **kwargs):
        res = real_run(program, pin, **kwargs)
        if mutation == "r0":
            return dataclasses.replace(res, r0=res.r0 ^ 1)
        if mutation == "packet":
            return dataclasses.replace(res, packet=bytes([res.packet[0] ^ 0x80]) + res.packet[1:])
        maps = {name: dict(entries) for name, entries in res.maps.items()}
        maps["stats"][bytes(4)] = b"\xff" * 8
        return dataclasses.replace(res, maps=maps)

    monkeypatch.setattr(sys.modules[__name__], "run", wrong)
    program = nfpjit.load(CORPUS / "array_counter.o")
    problems = differential(program, CRAFTED[:3])
    assert len(problems) == 3
    assert all({"r0": "r0 differs", "packet": "packet differs", "map": "map 'stats' key 00000000"}[mutation] in p
               for p in problems)

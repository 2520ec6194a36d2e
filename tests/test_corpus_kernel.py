"""The corpus on the NIC against the Linux kernel: simulator(compile(P)) at -O2 and -O0 vs BPF_PROG_TEST_RUN.

For every corpus section (C objects and the hand-written ``.s`` programs) that the running
kernel loads and that the ``default`` profile compiles, the crafted packets run through the
kernel and through both compiled images, with maps persisting across packets in all three
(as on a device); action (the low 32 bits of r0, and the halt action the NIC carries out),
output packet and every map must agree after every packet.  The test iterates over the corpus
and the profile, so it grows by itself as programs are added or the default profile widens.

Programs that call helpers whose results differ between runs (``bpf_ktime_get_ns``,
``bpf_get_prandom_u32``, ...) are compared through :class:`nfpjit.testing.nondet.MaskingInterpreter`:
the interpreter runs in lock-step with several seeds and clocks, and whatever those runs disagree
on (r0, packet bytes, map bytes, helper-decided map keys) is masked on both sides; everything else
must match the kernel exactly.  Three adjustments for the NIC: the ensemble also has runs whose
clock restarts at the same value on every packet, as the simulator's timestamp counter (its cycle
count, from 0 in every run) does, so that what elapsed time decides differs between runs; a masked
map byte masks its whole aligned 8-byte word (a clock-derived counter can agree on its high bytes
in all interpreter runs and still differ on the NIC); and the simulator gets a new seed for every
packet (its bpf_get_prandom_u32 would otherwise repeat one number per packet).

The fast suite runs every program on a spread of 60 crafted packets (every kind of frame is in
it); ``--run-slow`` runs the whole crafted set twice over (maps carried over).
``coverage()`` gives the figure the issue asks for: of the kernel-loadable sections, how many
compile under ``default`` (``pytest tests/test_corpus_kernel.py -k coverage -rP`` shows it).
"""

from __future__ import annotations

import pytest

import nfpjit
from nfpjit.driver import compile, simulate_image, to_run_result
from nfpjit.ebpf.opcodes import Helper, ProgType, XdpAction
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelProgram, KernelRejected, kernel_available, kernel_tailroom, tc_test_run_accepts
from nfpjit.testing import compare_results, crafted_packets
from nfpjit.testing.nondet import RUN_CONFIGS, MaskingInterpreter, masked_differences, uses_nondeterministic_helpers

from tests.corpus_cases import corpus_cases

from conftest import CORPUS

kernel_ok, kernel_reason = kernel_available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not kernel_ok, reason=f"kernel bpf() unusable: {kernel_reason}")]

CRAFTED = crafted_packets()
# the crafted set is ordered by kind: 60 frames spread evenly over it keep every kind
FAST = [CRAFTED[round(i * (len(CRAFTED) - 1) / 59)] for i in range(60)]
LEVELS = (2, 0)
# The NIC's buffer has more tailroom than test_run's page: a program that grows the tail is only
# run on frames short enough that the kernel can grow them as far as the NIC would.
MAX_TAIL_FRAME = 400
TAIL_HELPERS = {Helper.xdp_adjust_tail}


def _calls(program, helpers) -> bool:
    return any(i.is_helper_call and i.imm in helpers for i in program.insns)


def frames_for(program, frames: list[bytes]) -> list[bytes]:
    """``frames`` minus those the kernel's test_run refuses for this program type or whose tailroom differs."""
    if program.prog_type != ProgType.XDP:
        frames = [f for f in frames if tc_test_run_accepts(f)]
    if _calls(program, TAIL_HELPERS):
        frames = [f for f in frames if len(f) <= MAX_TAIL_FRAME]
    return frames


class NicClockMasking(MaskingInterpreter):
    """The interpreter ensemble plus ``NIC_RUNS`` runs whose clock restarts at 0 for every packet (as on the simulator)."""

    NIC_RUNS = 6

    def __init__(self, program):
        nic_like = tuple((1000 + i, 0, 1 + 97 * i) for i in range(self.NIC_RUNS))   # (seed, clock, step per call)
        super().__init__(program, RUN_CONFIGS + nic_like)
        self.restart = range(len(RUN_CONFIGS), len(self.configs))

    def run(self, pin, **kwargs):
        result = super().run(pin, **kwargs)
        for n in self.restart:
            self.clocks[n] = 0
        return result


def widen(mask):
    """``mask`` with every masked map byte widened to its aligned 8-byte word (in place; returned)."""
    for entries in mask.maps.values():
        for key, positions in entries.items():
            if positions is not None:
                entries[key] = {i for p in positions for i in range(p & ~7, (p & ~7) + 8)}
    return mask


def agree_with_kernel(program, images: dict, frames: list[bytes], *, limit: int = 10) -> list[str]:
    """Run ``frames`` in the kernel and in every image of ``images`` (label -> Image); the differences.

    Each engine keeps its own maps across the packets, starting from what the kernel holds after
    loading (global data included).  With nondeterministic helpers the comparison is masked.
    """
    masking = NicClockMasking(program) if uses_nondeterministic_helpers(program) else None
    problems: list[str] = []
    with KernelProgram(program) as kp:
        initial = kp.dump_maps()
        states = {label: {k: v for k, v in initial.items() if k in {m.name for m in image.maps}}
                  for label, image in images.items()}
        for n, frame in enumerate(frames):
            pin = PacketIn(frame)
            want = kp.run(pin)
            mask = None
            if masking is not None:
                _, mask = masking.run(pin, tailroom=kernel_tailroom(program.prog_type, len(frame)))
                widen(mask)
            for label, image in images.items():
                sim = simulate_image(image, pin, maps_in=states[label], seed=n)
                got = to_run_result(sim)
                states[label] = got.maps
                diffs = masked_differences(want, got, mask) if mask is not None else compare_results(want, got)
                ret = want.r0 & 0xFFFF_FFFF
                if program.prog_type == ProgType.XDP and got.fault is None and not (mask and mask.r0) \
                        and ret in XdpAction._value2member_map_ and sim.action != ret:
                    diffs.append(f"halt action {sim.action} but the kernel returned {ret}")
                problems += [f"{label}: packet {n} ({frame.hex()}): {d}" for d in diffs]
            if len(problems) >= limit:
                break
    return problems


def _offloadable(obj, section):
    """(program, {"-O2": image, "-O0": image}) or a pytest.skip with the reason."""
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        pytest.skip(f"{program.prog_type.name} programs are not offloaded")
    report = nfpjit.check(program)
    if not report.ok:
        pytest.skip(f"the default profile rejects it: {', '.join(sorted(report.codes))}")
    # the profile accepted it: the lowering must compile it at every level (a refusal fails here)
    return program, {f"-O{level}": compile(program, opt_level=level).image for level in LEVELS}


def _run(obj, section, frames):
    program, images = _offloadable(obj, section)
    frames = frames_for(program, frames)
    assert len(frames) >= 50, f"only {len(frames)} packets for {obj.name}:{section}"
    try:
        problems = agree_with_kernel(program, images, frames)
    except KernelRejected as exc:
        pytest.skip(f"the kernel rejects it as loaded here: {exc.log.strip().splitlines()[-1:]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("obj,section", corpus_cases(asm=True))
def test_corpus_program_on_the_nic_agrees_with_kernel(obj, section):
    _run(obj, section, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("obj,section", corpus_cases(asm=True))
def test_corpus_program_on_the_nic_agrees_with_kernel_big_run(obj, section):
    _run(obj, section, CRAFTED + CRAFTED)


def coverage() -> tuple[list[str], list[str], dict[str, str]]:
    """(kernel-loadable XDP/TC sections, those the default profile compiles, why each other one does not)."""
    loadable, compiled, why = [], [], {}
    for param in corpus_cases(asm=True):
        obj, section = param.values
        program = nfpjit.load(obj, section=section)
        if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
            continue
        try:
            with KernelProgram(program):
                pass
        except KernelRejected:
            continue
        loadable.append(param.id)
        report = nfpjit.check(program)
        if not report.ok:
            why[param.id] = ", ".join(sorted(report.codes))
            continue
        try:
            compile(program)
        except nfpjit.errors.UnsupportedError as exc:
            why[param.id] = f"lowering: {str(exc).splitlines()[0][:120]}"
            continue
        compiled.append(param.id)
    return loadable, compiled, why


def test_coverage_of_the_kernel_loadable_corpus():
    """The figure behind the parametrised test: most kernel-loadable sections must compile under default."""
    loadable, compiled, why = coverage()
    print(f"{len(compiled)} of {len(loadable)} kernel-loadable corpus sections compile under default "
          f"({100 * len(compiled) / len(loadable):.0f}%); not compiled:")
    for key, reason in sorted(why.items()):
        print(f"  {key}: {reason}")
    assert len(loadable) >= 50, f"only {len(loadable)} corpus sections load into this kernel"
    # a floor, raised as the default profile widens (issue 11 asks for 90%)
    assert len(compiled) >= 50, f"{len(compiled)} of {len(loadable)} compile under default; refused: {why}"


def test_sample_has_every_kind_of_frame():
    assert len(FAST) >= 50
    # the spread reaches the application frames at the end of the crafted set
    assert any(f in FAST for f in CRAFTED[-40:]) and any(f in FAST for f in CRAFTED[:40])


@pytest.mark.parametrize("mutation", ["r0", "packet", "map"])
def test_harness_reports_a_wrong_simulator(monkeypatch, mutation):
    """The comparison can fail: a simulator whose r0, one packet byte or one map value is wrong is caught."""
    import dataclasses
    import sys

    program = nfpjit.load(CORPUS / "gre_decap.o")
    images = {"-O2": compile(program).image}
    frames = frames_for(program, CRAFTED)
    gre = [f for f in frames if len(f) > 34 and f[12:14] == b"\x08\x00" and f[23] == 47][:3]
    assert len(gre) == 3
    module = sys.modules[__name__]
    real = module.to_run_result

    def wrong(sim):
        res = real(sim)
        if mutation == "r0":
            return dataclasses.replace(res, r0=res.r0 ^ 1)
        if mutation == "packet":
            return dataclasses.replace(res, packet=bytes([res.packet[0] ^ 0x80]) + res.packet[1:])
        maps = {name: dict(entries) for name, entries in res.maps.items()}
        maps["per_key"][(0x7F).to_bytes(4, "little")] = bytes(8)
        return dataclasses.replace(res, maps=maps)

    assert not agree_with_kernel(program, images, gre)
    monkeypatch.setattr(module, "to_run_result", wrong)
    problems = agree_with_kernel(program, images, gre)
    want = {"r0": "r0 differs", "packet": "packet differs", "map": "map 'per_key' key 7f000000"}[mutation]
    assert len(problems) >= 3 and all(want in p for p in problems[:3]), problems


def test_masked_comparison_still_compares_what_the_helpers_did_not_decide(monkeypatch):
    """A program with bpf_ktime_get_ns: a wrong r0 (the clock does not decide it) is still reported."""
    import dataclasses
    import sys

    program = nfpjit.load(CORPUS / "ktime.o")
    assert uses_nondeterministic_helpers(program)
    images = {"-O2": compile(program).image}
    frames = CRAFTED[:4]
    assert not agree_with_kernel(program, images, frames)
    module = sys.modules[__name__]
    real = module.to_run_result
    monkeypatch.setattr(module, "to_run_result", lambda sim: dataclasses.replace(real(sim), r0=real(sim).r0 ^ 1))
    assert len(agree_with_kernel(program, images, frames)) >= 4


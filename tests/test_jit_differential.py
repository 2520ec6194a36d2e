"""The JIT against the reference interpreter: simulator(compile(P)) and interp(P) agree.

For every corpus program the default profile accepts, and for generated programs
(nfpjit.testing.programs), both engines run the same frames with maps persisting
across packets (as on a device); verdict (the low 32 bits of r0, and the halt action
the NIC acts on), output packet and every map must agree.  The interpreter gets
the NIC's packet geometry (256 bytes of headroom, tailroom up to the end of the
8 KiB CTM buffer) so adjust_head/tail have the same limits on both sides.

A program the profile rejects is not the JIT's business (nfpjit check reports it);
a program it accepts must compile and agree, so a lowering that refuses it fails here.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.driver import compile
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.testing import crafted_packets, packets, programs
from nfpjit.testing.strategies import feature_programs
from nfpjit.testing.passcheck import NONDETERMINISTIC, differential, nic_tailroom  # noqa: F401 - shared harness
from nfpjit.testing.passcheck import uses_nondeterminism as _uses_nondeterminism

from tests.corpus_cases import corpus_cases as _corpus_cases


def corpus_cases():
    return _corpus_cases(asm=True)


def _jit_ready() -> bool:
    try:
        from nfpjit.jit.lower import supported_opcodes
    except ImportError:
        return False
    return bool(supported_opcodes())


pytestmark = pytest.mark.skipif(not _jit_ready(), reason="nfpjit.jit lowering not available yet")

CRAFTED = crafted_packets()

@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_program_sim_agrees_with_interpreter(obj, section):
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        pytest.skip(f"{program.prog_type.name} programs are not offloaded")
    report = nfpjit.check(program)  # the profile alone decides what the JIT must handle
    if not report.ok:
        pytest.skip(f"the default profile rejects it: {', '.join(sorted(report.codes))}")
    result = compile(program)
    assert len(CRAFTED) >= 50
    problems = differential(program, result.image, CRAFTED, compare_values=not _uses_nondeterminism(program))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_program_beyond_default_profile(obj, section):
    """What the permissive profile lets through: when the lowering takes it, it must agree too."""
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        pytest.skip(f"{program.prog_type.name} programs are not offloaded")
    if nfpjit.check(program).ok:
        pytest.skip("covered by the default-profile test")
    try:
        result = compile(program, profile="permissive")
    except nfpjit.errors.UnsupportedError as exc:
        pytest.skip(f"not compiled: {str(exc)[:200]}")
    problems = differential(program, result.image, CRAFTED, compare_values=not _uses_nondeterminism(program))
    assert not problems, "\n".join(problems)


_COMPILED: dict = {}


def _compiled_corpus() -> list:
    """(label, program, image) for every corpus program the permissive profile and the lowering accept."""
    if not _COMPILED:
        for param in corpus_cases():
            obj, section = param.values
            try:
                program = nfpjit.load(obj, section=section)
                if program.prog_type in (ProgType.XDP, ProgType.SCHED_CLS):
                    _COMPILED[param.id] = (program, compile(program, profile="permissive").image)
            except nfpjit.errors.UnsupportedError:
                continue
    return sorted(_COMPILED.items())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.lists(packets(), min_size=1, max_size=6))
def test_corpus_programs_agree_on_generated_packets(data, frames):
    cases = _compiled_corpus()
    assert cases
    label, (program, image) = data.draw(st.sampled_from(cases), label="program")
    store = MapStore.from_program(program)
    held = {m.name for m in image.maps}
    for m in program.maps:  # some entries present from the start, so lookups also hit
        if m.name not in held or m.type.kernel_name not in ("hash", "array"):
            continue
        if m.flags & 0x80:      # BPF_F_RDONLY_PROG (.rodata): fixed before the program is loaded
            continue
        for _ in range(data.draw(st.integers(0, min(4, m.max_entries)), label=f"{m.name} entries")):
            k = data.draw(st.sampled_from([0, 1, 2, 3, 80, 8080, 0x0800, 0x0008, 0x86DD, 0xDD86]) |
                          st.integers(0, (1 << min(8 * m.key_size, 32)) - 1), label="key")
            if m.type.kernel_name == "array":
                k %= m.max_entries
            key = k.to_bytes(m.key_size, "little") if m.key_size <= 8 else k.to_bytes(8, "little").ljust(m.key_size, b"\0")
            value = data.draw(st.binary(min_size=m.value_size, max_size=m.value_size), label="value")
            store.by_name(m.name).update(key, value, 0)
    problems = differential(program, image, frames, compare_values=not _uses_nondeterminism(program), store=store)
    assert not problems, f"{label}:\n" + "\n".join(problems)


def test_corpus_coverage_is_reported():
    """How many corpus programs the profile accepts: the parametrised test above must run on them."""
    accepted = 0
    for param in corpus_cases():
        obj, section = param.values
        try:
            program = nfpjit.load(obj, section=section)
        except nfpjit.errors.NfpjitError:
            continue
        if program.prog_type in (ProgType.XDP, ProgType.SCHED_CLS) and nfpjit.check(program).ok:
            accepted += 1
    assert accepted >= 5


# -- generated programs ----------------------------------------------------------------------

class Tally:
    compiled = 0
    rejected = 0


# Generated programs use every eBPF feature; the permissive profile (what the NIC could run at all)
# lets most of them through, so the lowering meets far more shapes than the default profile allows.
GENERATED_PROFILE = "permissive"


def _generated(program, frames) -> None:
    try:
        result = compile(program, profile=GENERATED_PROFILE)
    except nfpjit.errors.UnsupportedError:
        # the profile or the lowering refuses it (a coverage gap, reported by `nfpjit coverage`), not a mismatch
        Tally.rejected += 1
        return
    Tally.compiled += 1
    problems = differential(program, result.image, frames, limit=3)
    assert not problems, "\n".join(problems) + "\nprogram:\n" + _listing(program)


def _listing(program) -> str:
    from nfpjit.cli.dump import xlated_text

    return xlated_text(program)


FEW = CRAFTED[:6] + CRAFTED[-6:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(max_blocks=8), st.lists(packets(max_len=200), min_size=1, max_size=3))
def test_generated_xdp_programs_agree(program, frames):
    _generated(program, FEW[:4] + frames)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(ProgType.SCHED_CLS, max_blocks=8), st.lists(packets(max_len=200), min_size=1, max_size=3))
def test_generated_tc_programs_agree(program, frames):
    _generated(program, FEW[:4] + frames)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.lists(packets(), min_size=1, max_size=4))
def test_generated_xdp_programs_agree_many(program, frames):
    _generated(program, FEW + frames)


@pytest.mark.slow
@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(ProgType.SCHED_CLS), st.lists(packets(), min_size=1, max_size=4))
def test_generated_tc_programs_agree_many(program, frames):
    _generated(program, FEW + frames)


# -- generated programs from the features the real NFP JIT refuses (issue 11) ------------------------

class FeatureTally:
    default = 0       # compiled under the default profile
    permissive = 0    # refused by default, compiled under permissive
    rejected = 0      # refused by both (a coverage gap: `nfpjit check` names it)


def _feature_program(program, frames, level: int) -> None:
    """Compile under default where it takes the program, else permissive; must agree with the interpreter."""
    try:
        result = compile(program, opt_level=level)
        FeatureTally.default += 1
    except nfpjit.errors.UnsupportedError:
        try:
            result = compile(program, profile="permissive", opt_level=level)
        except nfpjit.errors.UnsupportedError:
            FeatureTally.rejected += 1
            return
        FeatureTally.permissive += 1
    problems = differential(program, result.image, frames, limit=3)
    assert not problems, f"-O{level}:\n" + "\n".join(problems) + "\nprogram:\n" + _listing(program)


_LEVELS = st.sampled_from([0, 1, 2, 2])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(feature_programs(), st.lists(packets(max_len=200), min_size=1, max_size=2), _LEVELS)
def test_generated_feature_programs_agree(program, frames, level):
    _feature_program(program, FEW[:4] + frames, level)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(feature_programs(ProgType.SCHED_CLS), st.lists(packets(max_len=200), min_size=1, max_size=2), _LEVELS)
def test_generated_tc_feature_programs_agree(program, frames, level):
    _feature_program(program, FEW[:4] + frames, level)


@pytest.mark.slow
@settings(max_examples=1_600, deadline=None, suppress_health_check=list(HealthCheck))
@given(feature_programs(), st.lists(packets(max_len=400), min_size=1, max_size=3), _LEVELS)
def test_generated_feature_programs_agree_many(program, frames, level):
    _feature_program(program, FEW[:4] + frames, level)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(feature_programs(ProgType.SCHED_CLS), st.lists(packets(max_len=400), min_size=1, max_size=3), _LEVELS)
def test_generated_tc_feature_programs_agree_many(program, frames, level):
    _feature_program(program, FEW[:4] + frames, level)


def test_feature_programs_mostly_compile_under_default():
    """The feature stream exercises the default profile's lowering, not only permissive's."""
    FeatureTally.default = FeatureTally.permissive = FeatureTally.rejected = 0
    why: dict[str, int] = {}

    @settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(feature_programs(max_blocks=6))
    def probe(program):
        try:
            compile(program)
            FeatureTally.default += 1
        except nfpjit.errors.UnsupportedError as exc:
            FeatureTally.rejected += 1
            reason = ",".join(sorted(nfpjit.check(program).codes)) or str(exc)[:100]
            why[reason] = why.get(reason, 0) + 1

    probe()
    total = FeatureTally.default + FeatureTally.rejected
    assert total >= 30 and FeatureTally.default >= 0.75 * total, \
        f"only {FeatureTally.default} of {total} feature programs compile under default: {why}"


def test_generated_programs_mostly_offloadable():
    """The generated stream must exercise the JIT: most programs pass the profile and compile."""
    Tally.compiled = Tally.rejected = 0
    start = time.perf_counter()

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(programs(max_blocks=6))
    def probe(program):
        try:
            compile(program, profile=GENERATED_PROFILE)
        except nfpjit.errors.UnsupportedError:
            Tally.rejected += 1
        else:
            Tally.compiled += 1

    probe()
    assert Tally.compiled + Tally.rejected >= 10
    assert Tally.compiled >= (Tally.compiled + Tally.rejected) // 2, \
        f"only {Tally.compiled} of {Tally.compiled + Tally.rejected} generated programs compile"
    assert time.perf_counter() - start < 60


# -- the harness itself can fail -------------------------------------------------------------

def _asm_program(text: str):
    from nfpjit.ebpf.asm import assemble

    return assemble(".type xdp\n" + text, filename="self-test.s")


def test_harness_reports_wrong_r0_and_wrong_halt_action():
    returns_2 = _asm_program("    mov r0, 2\n    exit\n")
    returns_1 = compile(_asm_program("    mov r0, 1\n    exit\n"), check=False).image
    problems = differential(returns_2, returns_1, CRAFTED[:3])
    assert sum("r0 differs" in p for p in problems) == 3
    assert sum("halt action 1 but r0 = 2" in p for p in problems) == 3
    # r0 right but the NIC told to do something else
    from nfpjit.driver import build_image
    from nfpjit.isa.asm import assemble as nfp_assemble

    class Fake:
        words = nfp_assemble("immed ab0, 2\nimmed ab1, 0\nhalt 1\n", "halt.s").words
        line_pcs = ((0, 0), (1, 0), (2, 1))
        relocations = symbols = ()

    problems = differential(returns_2, build_image(returns_2, Fake()), CRAFTED[:2])
    assert problems and all("halt action 1 but r0 = 2" in p for p in problems)


def test_harness_reports_wrong_packet_and_map():
    writes = _asm_program("    ldxw r2, [r1+0]\n    stb [r2+0], 7\n    mov r0, 2\n    exit\n")
    untouched = compile(_asm_program("    ldxw r2, [r1+0]\n    mov r0, 2\n    exit\n"), check=False,
                        profile="permissive").image
    problems = differential(writes, untouched, [bytes(64)])
    assert problems and "packet differs" in problems[0]


# -- mismatches found by the generated runs, kept as regression cases ------------------------------

# Found by test_generated_xdp_programs_agree: the simulator's adjust_head used all 256 bytes of headroom,
# the kernel (and the interpreter) keep sizeof(struct xdp_frame) = 40 of them (isa/sim FRAME_RESERVED).
def test_adjust_head_into_the_xdp_frame_area_fails_as_in_the_kernel():
    program = _asm_program("    mov r6, r1\n    mov r2, -256\n    call 44\n    mov r0, 2\n    exit\n")
    image = compile(program).image
    frame = CRAFTED[0]
    problems = differential(program, image, [frame])
    assert not problems, problems

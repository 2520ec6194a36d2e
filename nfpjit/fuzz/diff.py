"""The differential fuzz target: generated programs x packets through every engine; 0 mismatches.

Programs come from :func:`nfpjit.testing.programs` (XDP and TC), packets from :func:`nfpjit.testing.packets` plus a few crafted frames.  Each
program is compiled at -O2 and -O0 (permissive profile); each image runs the packets in the
simulator (``sim``: the interpreting one, the compiled one, or both) against the reference
interpreter with the NIC's packet geometry (:func:`nfpjit.testing.passcheck.differential`, the
harness the JIT tests use), and, where ``bpf()`` works, the program runs in the kernel
(``BPF_PROG_TEST_RUN``) against the interpreter with the kernel's geometry.

A program the profile or the lowering refuses is counted as refused, not as a mismatch; a crash
anywhere (a :class:`~nfpjit.driver.CompilerBug`, any non-nfpjit exception) is a failure, as is a
generated program the kernel verifier rejects (the generator promises programs it accepts).

Hypothesis drives generation (seeded by the chunk), so a failure is shrunk by hypothesis; the
reproducer is the shrunk program as eBPF assembly (:func:`nfpjit.ebpf.disasm.program_text`) and
its packets.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace

from nfpjit.errors import NfpjitError

__all__ = ["check_program", "run_diff_chunk", "SIM_CHOICES", "replay_diff"]

SIM_CHOICES = ("interp", "compiled", "both")


@dataclass
class DiffTally:
    programs: int = 0       # generated programs run through every engine that takes them
    refused: int = 0        # ... of which the profile or the lowering refused at -O2 (interpreter/kernel only)
    packets: int = 0        # program x packet runs compared
    kernel: int = 0         # programs also run in the kernel


def _engines(sim: str) -> tuple[str, ...]:
    return ("interp", "compiled") if sim == "both" else (sim,)


def kernel_problems(program, frames, *, compare_values: bool) -> list[str]:
    """The interpreter against the kernel on ``frames``, maps persisting across packets."""
    from nfpjit.ebpf.interp import run
    from nfpjit.ebpf.maps import MapStore
    from nfpjit.ebpf.opcodes import ProgType
    from nfpjit.ebpf.result import PacketIn
    from nfpjit.kernel import KernelProgram, KernelRejected, kernel_tailroom, tc_test_run_accepts
    from nfpjit.testing import compare_results

    if program.prog_type != ProgType.XDP:
        frames = [f for f in frames if tc_test_run_accepts(f)]
    problems = []
    store = MapStore.from_program(program)
    try:
        with KernelProgram(program) as kp:
            for n, frame in enumerate(frames):
                pin = PacketIn(frame)
                want = kp.run(pin)
                got = run(program, pin, maps=store, tailroom=kernel_tailroom(program.prog_type, len(frame)))
                for d in compare_results(want, got, maps=compare_values):
                    if compare_values or not d.startswith("r0 differs"):
                        problems.append(f"kernel vs interpreter, packet {n} ({frame.hex()}): {d}")
    except KernelRejected as exc:
        last = exc.log.strip().splitlines()[-1:] if exc.log else []
        problems.append(f"the kernel verifier rejects a generated program: {exc} {last}")
    return problems


def check_program(program, frames, *, sim: str = "interp", kernel: bool = False,
                  tally: DiffTally | None = None) -> list[str]:
    """Every disagreement between the engines on ``program`` x ``frames`` (empty: they all agree)."""
    from nfpjit.driver import CompilerBug, compile
    from nfpjit.errors import UnsupportedError
    from nfpjit.testing.passcheck import differential, uses_nondeterminism

    tally = tally if tally is not None else DiffTally()
    compare_values = not uses_nondeterminism(program)
    problems: list[str] = []
    tally.programs += 1
    try:
        for level in (2, 0):
            try:
                image = compile(program, profile="permissive", opt_level=level).image
            except CompilerBug as exc:
                problems.append(f"-O{level}: the compiler crashed: {exc}")
                continue
            except UnsupportedError:
                if level == 2:
                    tally.refused += 1
                break
            for engine in _engines(sim):
                for p in differential(program, image, frames, compare_values=compare_values, engine=engine, limit=3):
                    problems.append(f"-O{level}, {engine} simulator vs interpreter: {p}")
                tally.packets += len(frames)
        if kernel:
            tally.kernel += 1
            problems += kernel_problems(program, frames, compare_values=compare_values)
    except Exception as exc:  # noqa: BLE001 - any crash is a finding, reported with where it happened
        if isinstance(exc, NfpjitError) and not isinstance(exc, CompilerBug):
            problems.append(f"{type(exc).__name__}: {exc}")
        else:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            problems.append(f"crash: {type(exc).__name__}: {exc} at {frame.filename}:{frame.lineno}")
    return problems


class _Mismatch(AssertionError):
    pass


def _signature(problems: list[str]) -> str:
    """What kind of disagreement: the first problem without its packet bytes and numbers."""
    import re

    first = problems[0]
    first = re.sub(r"\([0-9a-f]{8,}\)", "", first)
    first = re.sub(r"packet \d+", "packet", first)
    first = re.sub(r"0x[0-9a-f]+|\b\d+\b", "N", first)
    return first[:160]


def run_diff_chunk(chunk):
    """One chunk of the differential campaign (``chunk``: :class:`nfpjit.fuzz.campaign.Chunk`)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
    from hypothesis import strategies as st

    from nfpjit.ebpf.opcodes import ProgType
    from nfpjit.fuzz.campaign import ChunkResult, Failure
    from nfpjit.kernel import kernel_available
    from nfpjit.testing import crafted_packets, packets, programs
    from nfpjit.ebpf.disasm import program_text

    kernel = chunk.kernel and kernel_available()[0]
    crafted = crafted_packets()
    few = crafted[:3] + crafted[-3:]
    tally = DiffTally()
    found: dict = {}
    start = time.monotonic()
    cpu0 = time.thread_time()
    limit = chunk.count if chunk.count is not None else 1_000_000

    def out_of_budget() -> bool:
        if chunk.count is not None and tally.programs >= chunk.count:
            return True
        return chunk.seconds is not None and time.monotonic() - start >= chunk.seconds

    # small programs mostly pass the permissive profile (the JIT is what is judged); some larger ones
    # (the programs with redirect/queue/ring-buffer helpers are all refused: interpreter vs kernel
    # tests/test_differential.py covers those)
    small_xdp = programs(max_blocks=6)

    @seed(chunk.seed)
    @settings(max_examples=limit, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink) if chunk.shrink_seconds > 0 else (Phase.generate,),
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False,
              print_blob=False)
    @given(st.one_of(small_xdp, small_xdp, programs(ProgType.SCHED_CLS, max_blocks=6), programs(max_blocks=12)),
           st.lists(packets(max_len=200), min_size=1, max_size=3),
           st.lists(st.sampled_from(few), min_size=1, max_size=2))
    def body(program, generated, chosen):
        if "first" not in found and out_of_budget():
            return
        if "first" in found and time.monotonic() - found["at"] > chunk.shrink_seconds:
            return  # the shrinking budget is spent: no more failures, hypothesis keeps the smallest so far
        frames = chosen + generated
        problems = check_program(program, frames, sim=chunk.sim, kernel=kernel,
                                 tally=tally if "first" not in found else DiffTally())
        if problems:
            found.setdefault("first", problems)
            found.setdefault("at", time.monotonic())
            found["last"] = (program, frames, problems)
            raise _Mismatch(problems[0])

    try:
        body()
    except _Mismatch:
        pass
    except Exception as exc:  # noqa: BLE001 - hypothesis itself complaining is reported, not a traceback
        if "last" not in found:
            found["last"] = (None, [], [f"hypothesis stopped: {type(exc).__name__}: {exc}"])
    failures = []
    if "last" in found:
        program, frames, problems = found["last"]
        text = program_text(program).encode() if program is not None else b""
        failures.append(Failure(
            target="diff", signature=_signature(problems), kind="mismatch", message=problems[0],
            detail="\n".join(problems[:20]), data=text, original_size=len(text), seed=chunk.seed,
            extra={"frames": [f.hex() for f in frames], "sim": chunk.sim, "kernel": kernel,
                   # the assembly says every map is "asm"; global-data maps are not (program_text drops it)
                   "map_origins": {m.name: m.origin for m in program.maps} if program is not None else {}}))
    return ChunkResult(target="diff", inputs=tally.programs, seconds=time.monotonic() - start,
                       cpu_seconds=time.thread_time() - cpu0, failures=failures,
                       counts={"refused": tally.refused, "packets": tally.packets, "kernel": tally.kernel})


def replay_diff(data: bytes, extra: dict) -> list[str]:
    """Run a saved differential reproducer again: the problems it still shows (empty: fixed)."""
    from nfpjit.ebpf.asm import assemble
    from nfpjit.kernel import kernel_available

    program = assemble(data.decode(), filename="reproducer.s")
    origins = extra.get("map_origins", {})
    program = replace(program, maps=tuple(replace(m, origin=origins.get(m.name, m.origin)) for m in program.maps))
    frames = [bytes.fromhex(f) for f in extra.get("frames", [])]
    kernel = bool(extra.get("kernel")) and kernel_available()[0]
    return check_program(program, frames, sim=extra.get("sim", "interp"), kernel=kernel)

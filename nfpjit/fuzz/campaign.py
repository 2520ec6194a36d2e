"""Campaigns: chunks of fuzzing work mapped over an executor, failures shrunk and saved.

A campaign is cut into :class:`Chunk` s (a target, a seed, a number of inputs or seconds); each
chunk runs anywhere -- in this process, in a ``concurrent.futures.ProcessPoolExecutor`` over the
cores of this machine (``jobs``), or on a Dask distributed cluster (``cluster``: an address or a
``distributed.Client``; its ``get_executor()`` is a ``concurrent.futures`` executor too) -- and
returns a picklable :class:`ChunkResult` with its counts and its failures, already shrunk where it
ran.  The campaign merges the results, keeps one failure per (target, signature), and saves each
under ``out`` as a reproducer (:mod:`nfpjit.fuzz.reproducer`).

    >>> report = run_campaign(CampaignConfig(targets=("image", "pcap"), count=2000, jobs=2))
    >>> report.inputs, report.failures
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nfpjit.errors import UsageError
from nfpjit.fuzz.executor import make_executor

__all__ = ["Chunk", "ChunkResult", "Failure", "CampaignConfig", "CampaignReport", "run_campaign", "run_chunk",
           "make_executor", "expand_targets"]

#: the differential target's name; the input targets are nfpjit.fuzz.targets.TARGETS
DIFF = "diff"


def expand_targets(names) -> tuple[str, ...]:
    """Target names with the groups (``asm``, ``inputs``, ``all``) expanded; unknown names are a UsageError."""
    from nfpjit.fuzz.targets import GROUPS, INPUT_TARGETS

    groups = dict(GROUPS, all=INPUT_TARGETS + (DIFF,))
    out: list[str] = []
    for name in names:
        for n in groups.get(name, (name,)):
            if n not in INPUT_TARGETS and n != DIFF:
                known = ", ".join(list(INPUT_TARGETS) + [DIFF] + sorted(groups))
                raise UsageError(f"unknown fuzz target {name!r}", hint=f"use one of {known}")
            if n not in out:
                out.append(n)
    if not out:
        raise UsageError("no fuzz target given", hint="--target elf (or asm, image, pcap, profile, diff, all)")
    return tuple(out)


@dataclass(frozen=True)
class Chunk:
    """One unit of work: ``count`` inputs (or as many as fit in ``seconds``) of ``target`` from ``seed``."""

    target: str
    seed: int
    count: int | None = None
    seconds: float | None = None
    timeout: float = 10.0          # CPU seconds per input (input targets), where a timer can be armed
    shrink_seconds: float = 30.0   # per distinct failure
    sim: str = "interp"            # diff: which simulator(s)
    kernel: bool = True            # diff: also the kernel, where bpf() works


@dataclass(frozen=True)
class Failure:
    target: str
    signature: str          # what identifies the bug: exception type and the innermost nfpjit frame
    kind: str               # "exception", "timeout", "mismatch"
    message: str
    detail: str             # traceback or the list of problems
    data: bytes             # the minimised input
    original_size: int
    seed: int               # the chunk that found it
    extra: dict = field(default_factory=dict)


@dataclass
class ChunkResult:
    target: str
    inputs: int
    seconds: float
    cpu_seconds: float
    failures: list[Failure] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


class FuzzTimeout(BaseException):
    """Raised by the per-input timer: a BaseException so that code catching Exception does not swallow it."""


def _on_alarm(signum, frame):
    raise FuzzTimeout()


class _Timer:
    """A per-input timer of CPU seconds (SIGPROF: a busy machine does not make an input time out).

    Only in a main thread: elsewhere (Dask worker threads) inputs are not timed.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = seconds > 0 and threading.current_thread() is threading.main_thread()
        if self.armed:
            self.previous = signal.signal(signal.SIGPROF, _on_alarm)

    def run(self, fn, *args):
        if not self.armed:
            return fn(*args)
        signal.setitimer(signal.ITIMER_PROF, self.seconds)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    def close(self) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, self.previous)


def signature(exc: BaseException) -> str:
    """``Type at file:function:line`` of the innermost frame inside nfpjit but outside the fuzzer (the last
    frame otherwise)."""
    if isinstance(exc, FuzzTimeout):
        return "timeout"
    cause = exc.__cause__ if exc.__cause__ is not None and type(exc).__name__ == "CompilerBug" else exc
    frames = traceback.extract_tb(cause.__traceback__)
    ours = [f for f in frames if ("/nfpjit/" in f.filename or "/isa/" in f.filename or "/passes/" in f.filename)
            and "/nfpjit/fuzz/" not in f.filename]  # the fuzzer's own frames say nothing about the bug
    where = (ours or frames or [None])[-1]
    loc = f"{_short(where.filename)}:{where.name}:{where.lineno}" if where else "?"
    return f"{type(cause).__name__} at {loc}"


def _short(filename: str) -> str:
    for marker in ("/nfpjit/", "/isa/", "/passes/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    return os.path.basename(filename)


# Per-process memory of what later stages already saw (programs, images, profiles), kept across chunks.
_SEEN: dict[str, set] = {}


def _failing(target, data: bytes, timer: _Timer) -> BaseException | None:
    from nfpjit.fuzz.targets import is_failure

    try:
        timer.run(target.run, data, None)
    except FuzzTimeout as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - classified just below
        return exc if is_failure(exc) else None
    return None


def run_chunk(chunk: Chunk) -> ChunkResult:
    """Run one chunk where it is called (a worker process, a Dask worker, or here)."""
    if chunk.target == DIFF:
        from nfpjit.fuzz.diff import run_diff_chunk

        return run_diff_chunk(chunk)
    from nfpjit.fuzz.shrink import shrink_input
    from nfpjit.fuzz.targets import TARGETS, is_failure

    target = TARGETS[chunk.target]
    pool = [d for _n, d in target.seeds()]
    if not pool:
        raise UsageError(f"no seeds for the {chunk.target} target",
                         hint="run from a source checkout (tests/corpus) or give --corpus DIR")
    rng = random.Random(f"{chunk.target}:{chunk.seed}")
    seen = _SEEN.setdefault(chunk.target, set())
    failures: dict[str, Failure] = {}
    timer = _Timer(chunk.timeout)
    start, cpu0 = time.monotonic(), time.thread_time()
    n, deep0 = 0, len(seen)
    try:
        while True:
            if chunk.count is not None and n >= chunk.count:
                break
            if chunk.seconds is not None and n % 16 == 0 and time.monotonic() - start >= chunk.seconds:
                break
            data = target.mutate(rng, rng.choice(pool), pool)
            n += 1
            try:
                timer.run(target.run, data, seen)
                continue
            except FuzzTimeout as exc:
                err: BaseException = exc
            except Exception as exc:  # noqa: BLE001 - nfpjit errors are fine, anything else is a finding
                if not is_failure(exc):
                    continue
                err = exc
            sig = signature(err)
            if sig in failures:
                continue
            detail = "".join(traceback.format_exception(err))
            # shrink: the smaller input must fail the same way (a timeout only gets a few tries)

            def same(candidate: bytes, sig=sig) -> bool:
                e = _failing(target, candidate, timer)
                return e is not None and signature(e) == sig

            # a timeout is kept whole: every shrinking step would cost up to --timeout seconds
            small = data if sig == "timeout" else shrink_input(
                data, same, text=target.suffix in (".s", ".toml"), seconds=chunk.shrink_seconds)
            failures[sig] = Failure(target=chunk.target, signature=sig,
                                    kind="timeout" if sig == "timeout" else "exception",
                                    message=f"{type(err).__name__}: {err}"[:500], detail=detail[-6000:], data=small,
                                    original_size=len(data), seed=chunk.seed)
    finally:
        timer.close()
    return ChunkResult(target=chunk.target, inputs=n, seconds=time.monotonic() - start,
                       cpu_seconds=time.thread_time() - cpu0, failures=list(failures.values()),
                       counts={"deep": max(0, len(seen) - deep0)})


# -- the campaign ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignConfig:
    targets: tuple[str, ...] = ("all",)
    count: int | None = None          # inputs per target (the diff target: programs)
    seconds: float | None = None      # or: wall time for the whole campaign
    jobs: int = 1
    cluster: object = None            # "tcp://HOST:8786" or a distributed.Client
    seed: int = 0
    out: Path | None = None
    chunk_inputs: int = 2000          # inputs per chunk (input targets)
    chunk_programs: int = 20          # programs per chunk (diff)
    chunk_seconds: float = 20.0       # with ``seconds``: how long one chunk runs at most
    timeout: float = 10.0
    shrink_seconds: float = 30.0
    sim: str = "interp"
    kernel: bool = True
    memory_mb: int = 4096             # address-space limit of each worker process (jobs > 1)


@dataclass
class TargetTally:
    inputs: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    chunks: int = 0
    counts: dict = field(default_factory=dict)

    def per_core(self) -> float:
        return self.inputs / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


@dataclass
class CampaignReport:
    config: CampaignConfig
    executor: str = ""
    workers: int = 1
    elapsed: float = 0.0
    targets: dict[str, TargetTally] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)
    duplicates: int = 0               # failures with a signature already seen
    interrupted: bool = False

    @property
    def inputs(self) -> int:
        return sum(t.inputs for t in self.targets.values())

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {
            "seed": self.config.seed, "executor": self.executor, "workers": self.workers,
            "elapsed_seconds": round(self.elapsed, 3), "inputs": self.inputs, "interrupted": self.interrupted,
            "targets": {name: {"inputs": t.inputs, "chunks": t.chunks, "worker_seconds": round(t.seconds, 3),
                               "cpu_seconds": round(t.cpu_seconds, 3),
                               "inputs_per_second_per_core": round(t.per_core(), 1), **t.counts}
                        for name, t in self.targets.items()},
            "failures": [{"target": f.target, "signature": f.signature, "kind": f.kind, "message": f.message}
                         for f in self.failures],
            "saved": [str(p) for p in self.saved],
        }

    def text(self) -> str:
        lines = [f"nfpjit fuzz: seed {self.config.seed}, {self.executor}, {self.elapsed:.1f} s"
                 + (" (interrupted)" if self.interrupted else "")]
        lines.append(f"{'target':<10} {'inputs':>10} {'failures':>9} {'inputs/s/core':>14}  notes")
        for name, t in self.targets.items():
            nfail = sum(1 for f in self.failures if f.target == name)
            notes = ", ".join(f"{k} {v}" for k, v in t.counts.items())
            lines.append(f"{name:<10} {t.inputs:>10} {nfail:>9} {t.per_core():>14.1f}  {notes}")
        lines.append(f"{'total':<10} {self.inputs:>10} {len(self.failures):>9}")
        if self.failures:
            lines.append("failures (one per distinct signature):")
            for f in self.failures:
                lines.append(f"  {f.target}: {f.signature}: {f.message[:160]}")
        if self.saved:
            folder = self.saved[0].parent
            lines.append(f"reproducers saved under {folder}: " + ", ".join(p.name for p in self.saved if p.suffix == ".json"))
        lines.append("OK: no failure" if self.ok else f"FAILED: {len(self.failures)} distinct failure(s)")
        return "\n".join(lines)


def _plan(config: CampaignConfig, targets: tuple[str, ...]):
    """The chunks of a --count campaign (a finite list) or, with --seconds, an endless round-robin."""
    def chunk(target: str, index: int, count: int | None, seconds: float | None) -> Chunk:
        return Chunk(target=target, seed=config.seed * 1_000_003 + index * 7919 + targets.index(target),
                     count=count, seconds=seconds, timeout=config.timeout, shrink_seconds=config.shrink_seconds,
                     sim=config.sim, kernel=config.kernel)

    if config.count is not None:
        per_target = []
        for target in targets:
            size = config.chunk_programs if target == DIFF else config.chunk_inputs
            counts = [min(size, config.count - start) for start in range(0, config.count, size)]
            per_target.append([chunk(target, i, n, None) for i, n in enumerate(counts)])
        # interleave the targets so that every one makes progress from the start
        rounds = max((len(c) for c in per_target), default=0)
        return iter([c[i] for i in range(rounds) for c in per_target if i < len(c)])

    def endless():
        index = 0
        while True:
            for target in targets:
                yield chunk(target, index, None, config.chunk_seconds)
            index += 1

    return endless()


def run_campaign(config: CampaignConfig, *, progress: Callable[[CampaignReport], None] | None = None,
                 executor=None) -> CampaignReport:
    """Run the campaign; ``progress(report)`` is called as chunks finish (and every half second)."""
    from nfpjit.fuzz.reproducer import save_failure

    if config.count is None and config.seconds is None:
        raise UsageError("a fuzz campaign needs --count N or --time T")
    targets = expand_targets(config.targets)
    if config.sim not in ("interp", "compiled", "both"):
        raise UsageError(f"--sim {config.sim}: use interp, compiled or both")
    report = CampaignReport(config=config, targets={t: TargetTally() for t in targets})
    if executor is None:
        executor, report.workers, report.executor, close = make_executor(config.jobs, config.cluster,
                                                                         config.memory_mb)
    else:
        report.workers, report.executor, close = config.jobs, type(executor).__name__, lambda: None
    chunks = _plan(config, targets)
    start = time.monotonic()
    seen: set[tuple[str, str]] = set()
    in_flight: set = set()
    deadline = start + config.seconds if config.seconds is not None else None
    last_summary = start

    def submit_more() -> None:
        while len(in_flight) < 2 * report.workers:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 1.0:
                    return
            c = next(chunks, None)
            if c is None:
                return
            if deadline is not None and c.seconds is not None:
                c = Chunk(**{**c.__dict__, "seconds": min(c.seconds, max(1.0, deadline - time.monotonic()))})
            in_flight.add(executor.submit(run_chunk, c))

    try:
        submit_more()
        while in_flight:
            done, _ = cf.wait(in_flight, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for future in done:
                in_flight.discard(future)
                result: ChunkResult = future.result()
                tally = report.targets[result.target]
                tally.inputs += result.inputs
                tally.seconds += result.seconds
                tally.cpu_seconds += result.cpu_seconds
                tally.chunks += 1
                for k, v in result.counts.items():
                    tally.counts[k] = tally.counts.get(k, 0) + v
                for f in result.failures:
                    if (f.target, f.signature) in seen:
                        report.duplicates += 1
                        continue
                    seen.add((f.target, f.signature))
                    report.failures.append(f)
                    if config.out is not None:
                        report.saved += save_failure(Path(config.out), f)
            report.elapsed = time.monotonic() - start
            submit_more()
            if progress is not None:
                progress(report)
            if done and config.out is not None and time.monotonic() - last_summary > 30:
                _write_summary(config.out, report)   # a long campaign shows where it is
                last_summary = time.monotonic()
    except KeyboardInterrupt:
        report.interrupted = True
        for future in in_flight:
            future.cancel()
    finally:
        close()
        report.elapsed = time.monotonic() - start
    if config.out is not None:
        _write_summary(config.out, report)
    return report


def _write_summary(out, report: CampaignReport) -> None:
    import json

    Path(out).mkdir(parents=True, exist_ok=True)
    tmp = Path(out) / "summary.json.tmp"
    tmp.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    tmp.replace(Path(out) / "summary.json")

"""``nfpjit fuzz``: input fuzzers and the differential fuzzer, on one core, many, or a Dask cluster.

``nfpjit fuzz --target elf|ebpf-asm|nfp-asm|asm|image|pcap|profile|diff|inputs|all [--time T]
[--count N] [--jobs N] [--cluster tcp://HOST:8786] [--seed S] [--out DIR]``, or
``nfpjit fuzz --replay DIR|FILE.json...`` to run saved reproducers again.

Thin over :mod:`nfpjit.fuzz` (docs/fuzzing.md): prints the summary (inputs, inputs per second
per core, failures, where they were saved), a progress line on a terminal; exit status 1 when
anything failed.
"""

from __future__ import annotations

import re
import signal
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("fuzz", help="fuzz the input readers and the JIT (differential); reproducers",
                              description="Mutated inputs through the public entry points (0 tracebacks) and "
                              "generated programs x packets through interpreter, simulator and kernel "
                              "(0 mismatches); failures are shrunk and saved under --out.")
    p.add_argument("--target", "-t", action="append", metavar="T",
                   help="elf, ebpf-asm, nfp-asm, asm (both), image, pcap, profile, diff, inputs (every input "
                   "target) or all; repeatable or comma-separated (default: inputs)")
    p.add_argument("--time", metavar="T", help="run for T (seconds, or 30s, 10m, 2h)")
    p.add_argument("--count", type=int, metavar="N", help="N inputs per target (diff: N programs)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="worker processes on this machine")
    p.add_argument("--cluster", metavar="tcp://HOST:8786", help="run on a Dask distributed scheduler "
                   "(needs nfpjit[dask])")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="campaign seed (default 0)")
    p.add_argument("--out", metavar="DIR", help="save each failure there as a minimised reproducer + JSON, "
                   "and summary.json")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="an input taking more CPU seconds is a failure (a hang; default %(default)s s)")
    p.add_argument("--shrink-time", type=float, default=30.0, metavar="S",
                   help="time to spend minimising each distinct failure (default %(default)s s)")
    p.add_argument("--sim", choices=("interp", "compiled", "both"), default="interp",
                   help="diff: the simulator(s) running the compiled images (default %(default)s; the "
                   "compiled engine costs ~0.1 s of LLVM time per image)")
    p.add_argument("--no-kernel", action="store_true", help="diff: leave the kernel out even where bpf() works")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--replay", nargs="+", metavar="PATH", help="run saved reproducers (folders or .json) again")
    p.set_defaults(func=run)


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    from nfpjit.errors import UsageError

    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--time {text!r} is not a duration", hint="write seconds (90), or 30s, 10m, 2h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _targets(values) -> tuple[str, ...]:
    names = []
    for v in values or ["inputs"]:
        names += [n.strip() for n in v.split(",") if n.strip()]
    return tuple(names)


class _Progress:
    """One status line on stderr: rewritten in place on a terminal, else a line a minute (for a log)."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.width = 0
        self.last = 0.0

    def __call__(self, report) -> None:
        if not self.tty and report.elapsed - self.last < 60:
            return
        self.last = report.elapsed
        rate = report.inputs / report.elapsed if report.elapsed else 0.0
        parts = " ".join(f"{n} {t.inputs}" for n, t in report.targets.items())
        line = (f"{report.elapsed:7.0f} s  {report.inputs} inputs ({rate:.0f}/s)  "
                f"failures {len(report.failures)}  [{parts}]")
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _replay(paths, timeout: float) -> int:
    from pathlib import Path

    from nfpjit.errors import UsageError
    from nfpjit.fuzz.reproducer import replay, reproducers

    files = []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError("no reproducer there: no such file or folder", where=str(p))
        files += reproducers(p) if p.is_dir() else [p]
    if not files:
        raise UsageError("no reproducer (.json) found", where=", ".join(paths))
    bad = 0
    for f in files:
        problems = replay(f, timeout=timeout)
        print(f"{f}: {'FAILS: ' + problems[0] if problems else 'ok'}")
        bad += bool(problems)
    print(f"{len(files) - bad} passed, {bad} failed")
    return 1 if bad else 0


def run(args) -> int:
    import json
    from pathlib import Path

    from nfpjit.errors import UsageError
    from nfpjit.fuzz.campaign import CampaignConfig, run_campaign
    from nfpjit.fuzz.executor import limit_memory

    if args.replay:
        return _replay(args.replay, args.timeout)
    seconds = parse_duration(args.time) if args.time is not None else None
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: give at least 1")
    if seconds is None and args.count is None:
        raise UsageError("say how long: --time T or --count N", hint="e.g. nfpjit fuzz --target elf --time 60")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give a positive number of seconds")
    config = CampaignConfig(targets=_targets(args.target), count=args.count, seconds=seconds, jobs=args.jobs,
                            cluster=args.cluster, seed=args.seed, out=Path(args.out) if args.out else None,
                            timeout=args.timeout, shrink_seconds=max(0.0, args.shrink_time), sim=args.sim,
                            kernel=not args.no_kernel)
    if args.jobs == 1 and args.cluster is None:
        limit_memory(config.memory_mb)  # a mutated length field must not take the machine's memory
    progress = _Progress(sys.stderr)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a background campaign with a summary
    try:
        report = run_campaign(config, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.done()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok and not report.interrupted else 1

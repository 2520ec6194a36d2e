"""The optimisation options every compiling subcommand shares (compile, dump jited, run, stats).

``-O LEVEL``, ``--passes PIPELINE``, ``--disable-pass NAME``, ``--print-after NAME|all``,
``--print-changed``, ``--verify-each``, ``--time-passes`` (docs/passes.md).  Listings and
timings asked for go to stderr, so stdout keeps the command's own output.
"""

from __future__ import annotations

import sys

from nfpjit.passes.pipelines import DEFAULT_LEVEL


def add_pass_options(parser, *, default_level: int = DEFAULT_LEVEL) -> None:
    g = parser.add_argument_group("optimisation (docs/passes.md)")
    g.add_argument("-O", dest="opt_level", type=int, choices=(0, 1, 2), default=default_level, metavar="LEVEL",
                   help=f"optimisation level 0, 1 or 2 (default {default_level}): the named pipelines")
    g.add_argument("--passes", metavar="PIPELINE", help="run this pass pipeline instead of the level's: a,b{opt=1}")
    g.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                   help="leave a pass out of the pipeline (repeatable, or comma-separated)")
    g.add_argument("--print-after", action="append", default=[], metavar="NAME|all",
                   help="print the NFP listing after this pass (repeatable; 'all': after every pass)")
    g.add_argument("--print-changed", action="store_true", help="print the NFP listing after every pass that changed it")
    g.add_argument("--verify-each", action="store_true", help="check the machine IR invariants after every pass")
    g.add_argument("--time-passes", action="store_true", help="print the time and size effect of each pass")


def compile_options(args) -> dict:
    """Keyword arguments for :func:`nfpjit.driver.compile` from the parsed options."""
    disable = [n.strip() for item in args.disable_pass for n in item.split(",") if n.strip()]
    return {"opt_level": args.opt_level, "passes": args.passes, "disable": disable,
            "print_after": set(args.print_after), "print_changed": args.print_changed,
            "verify_each": args.verify_each}


def report(args, result, out=None) -> None:
    """Print the snapshots and pass timings ``args`` asked for (to stderr)."""
    out = out or sys.stderr
    for name, listing in result.snapshots:
        out.write(f"; *** NFP code after {name} ***\n{listing}")
    if getattr(args, "time_passes", False):
        from nfpjit.driver import pass_deltas

        saved = {name: delta for name, _, delta in pass_deltas(result)}
        timed = {s.name: s for s in result.stats.passes}
        out.write(f"; pass timing and effect ({result.program.name}: {result.stats.nfp_insns} NFP insns)\n")
        out.write(";   pass                  level   ms      saves\n")
        for p in result.pipeline:
            s = timed.get(p.name)
            ms = f"{s.seconds * 1000:6.2f}" if s is not None else "   (in lower)"
            out.write(f";   {p.spelling():<21} {p.level:<7} {ms:>6}  {saved.get(p.name, 0):>5}\n")
        for phase, seconds in result.stats.phases:
            out.write(f";   phase {phase:<15} {seconds * 1000:8.2f} ms\n")

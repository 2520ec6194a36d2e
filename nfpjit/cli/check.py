"""``nfpjit check``: the offload capability report for one program against a NIC profile.

Exit status: 0 when the program is offloadable (warnings and notes allowed),
1 when any diagnostic is an error or the input does not load, 2 for usage
errors (bad options, unknown profile).
"""

from __future__ import annotations

import argparse
import sys

from nfpjit.errors import LoadError, UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="report every reason a program cannot be offloaded to the NIC",
        description="Check an eBPF object against a NIC capability profile and report every problem "
        "with its source line and a hint.  Exit 1 when anything would stop the offload.",
    )
    p.add_argument("object", nargs="?", help="eBPF ELF object (or other input nfpjit.load reads)")
    p.add_argument("-s", "--section",
                   help="program section (SECTION or SECTION:FUNCTION; needed when the object has several)")
    p.add_argument("--profile", default="default", metavar="NAME|FILE",
                   help="shipped profile name or path to a profile .toml (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/check-json.md)")
    p.add_argument("--no-analysis", action="store_true",
                   help="leave out the 'verifier' diagnostics (problems the kernel verifier would reject too); "
                   "the NIC's limits are still checked with the analysis's facts")
    p.add_argument("--list-profiles", action="store_true", help="list the shipped profiles and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nfpjit.offload import builtin_profiles, check_program, load_profile, render_json, render_text

    if args.list_profiles:
        for name in builtin_profiles():
            print(f"{name:12} {load_profile(name).description}")
        return 0
    if not args.object:
        raise UsageError("missing the object to check", hint="nfpjit check OBJ [--profile NAME|FILE] [--json]")
    try:
        profile = load_profile(args.profile)
    except LoadError as exc:  # a broken --profile file is a bad option: status 2
        raise UsageError(exc.message, where=exc.where, hint=exc.hint) from None
    import nfpjit

    program = nfpjit.load(args.object, section=args.section)
    report = check_program(program, profile=profile, analyze=not args.no_analysis)
    sys.stdout.write(render_json(report) if args.json else render_text(report, program))
    return 0 if report.ok else 1

"""``nfpjit test-pass``: the differential check of one registered pass.

``nfpjit test-pass NAME [--examples N] [--seed S] [--corpus] [--corpus-path P]... [--profile P]``
compiles generated programs (and with ``--corpus`` the corpus) with and without the pass,
runs them in the simulator against the reference interpreter and prints what it found
(:func:`nfpjit.testing.passcheck.check_pass`); a mismatch is shrunk and shown as the eBPF
listing and the NFP code without and with the pass.  Exit status 1 on a mismatch.
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("test-pass", help="differential check of one pass (generated programs, corpus)",
                              description="Compile generated programs (and the corpus) with and without a pass, "
                              "simulate them against the reference interpreter; exit 1 on a mismatch.")
    p.add_argument("name", metavar="NAME", help="a registered pass, optionally with options: name{opt=value}")
    p.add_argument("--examples", type=int, default=100, metavar="N", help="generated programs (default 100)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the generated programs (default 0)")
    p.add_argument("--corpus", action="store_true", help="also the corpus programs (of a source checkout, or "
                   "--corpus-path)")
    p.add_argument("--corpus-path", action="append", metavar="P",
                   help="an ELF object or .s file for --corpus (repeatable; default tests/corpus, examples)")
    p.add_argument("--profile", default="permissive", metavar="NAME|FILE",
                   help="NIC capability profile to compile under (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from nfpjit.errors import UsageError
    from nfpjit.testing.passcheck import check_pass

    if args.examples < 0:
        raise UsageError(f"--examples must be 0 or more, not {args.examples}")
    if args.corpus_path and not args.corpus:
        args.corpus = True
    report = check_pass(args.name, examples=args.examples, seed=args.seed, corpus=args.corpus,
                        corpus_paths=args.corpus_path, profile=args.profile)
    sys.stdout.write(report.text())
    return 0 if report.ok else 1

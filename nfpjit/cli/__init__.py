"""The ``nfpjit`` command line: a thin layer over the public Python API.

Each subcommand lives in its own module of this package with a
``register(subparsers)`` function that adds its parser and sets ``func``;
``COMMANDS`` lists them in help order.  Handlers return an exit status.
Errors a user can act on (:class:`~nfpjit.errors.NfpjitError`) become one line
on stderr and a non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nfpjit.errors import NfpjitError

COMMANDS = ("dump", "asm", "disasm", "run", "compile", "check", "coverage", "nic")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors: status 2, like every UsageError
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nfpjit",
        description="Compile eBPF programs for offload onto an NFP-like 32-bit SmartNIC, "
        "inspect what they turn into, and run them in a simulator.",
    )
    from nfpjit import __version__

    parser.add_argument("--version", action="version", version=f"nfpjit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"nfpjit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except NfpjitError as exc:
        print(f"nfpjit: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:  # e.g. `nfpjit dump ... | head`
        return 0
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


def entry() -> None:
    sys.exit(main())

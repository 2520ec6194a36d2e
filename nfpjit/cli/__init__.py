"""The ``nfpjit`` command line: a thin layer over the public Python API.

Each subcommand lives in its own module of this package with a
``register(subparsers)`` function that adds its parser and sets ``func``;
``COMMANDS`` lists them in help order (``test-pass`` lives in ``testpass.py``).
Only the module of the command being run is imported, so ``nfpjit compile`` does
not pay for the others; ``nfpjit --help`` (or no known command) imports them all.  Handlers return an exit status.
Errors a user can act on (:class:`~nfpjit.errors.NfpjitError`) become one line
on stderr and a non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nfpjit.errors import NfpjitError

COMMANDS = ("dump", "asm", "disasm", "run", "compile", "check", "coverage", "nic", "prog", "net", "map", "stats", "fuzz", "test-pass")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors: status 2, like every UsageError
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _module(command: str) -> str:
    return f"nfpjit.cli.{command.replace('-', '')}"


def _chosen(argv: list[str] | None) -> str | None:
    """The command ``argv`` names (its first word not starting with '-'), when it is a known one."""
    if argv is None:
        return None
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
        if word == "--":
            return None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv`` naming a command, only that command's parser is built."""
    parser = _Parser(
        prog="nfpjit",
        description="Compile eBPF programs for offload onto an NFP-like 32-bit SmartNIC, "
        "inspect what they turn into, and run them in a simulator.",
    )
    from nfpjit import __version__

    parser.add_argument("--version", action="version", version=f"nfpjit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = _chosen(argv)
    for name in COMMANDS:
        if chosen is None or name == chosen:
            importlib.import_module(_module(name)).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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

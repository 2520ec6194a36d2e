#!/usr/bin/env python3
"""Rebuild the C test corpus: every tests/corpus/*.c into the .o beside it.

Each file is compiled with ``clang -O2 -g -target bpf`` plus the flags of an
optional ``// build: ...`` line in the source (for example ``-mcpu=v3``).
Compilation runs inside the corpus folder with relative names and a fixed
debug compilation directory, so the objects (and the file names their line
info records) do not depend on where the checkout lives.

Usage: tools/build_corpus.py [--clang CLANG] [--out DIR] [NAME.c ...]
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"
BASE_FLAGS = ["-O2", "-g", "-target", "bpf", "-Iinclude", "-fdebug-compilation-dir=.", "-Wall", "-Werror"]
_BUILD_LINE = re.compile(r"^\s*//\s*build:\s*(.*)$", re.MULTILINE)


def extra_flags(source: Path) -> list[str]:
    """The flags of the source's ``// build:`` lines."""
    flags: list[str] = []
    for match in _BUILD_LINE.finditer(source.read_text()):
        flags += shlex.split(match.group(1))
    return flags


def command(source: Path, out: Path, clang: str = "clang") -> list[str]:
    return [clang, *BASE_FLAGS, *extra_flags(source), "-c", source.name, "-o", str(out)]


def build(source: Path, out: Path, clang: str = "clang") -> None:
    """Compile one corpus source; raises subprocess.CalledProcessError with clang's message on failure."""
    subprocess.run(command(source, out.resolve(), clang), cwd=source.parent, check=True,
                   capture_output=True, text=True)


def sources() -> list[Path]:
    return sorted(CORPUS.glob("*.c"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clang", default=shutil.which("clang") or "clang")
    ap.add_argument("--out", type=Path, default=None, help="write the objects here instead of beside the sources")
    ap.add_argument("names", nargs="*", help="only these sources (default: all)")
    args = ap.parse_args(argv)
    chosen = [CORPUS / n for n in args.names] if args.names else sources()
    status = 0
    for src in chosen:
        out = (args.out or src.parent) / (src.stem + ".o")
        try:
            build(src, out, args.clang)
        except subprocess.CalledProcessError as exc:
            print(f"{src.name}: clang failed:\n{exc.stderr}", file=sys.stderr)
            status = 1
            continue
        print(f"built {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())

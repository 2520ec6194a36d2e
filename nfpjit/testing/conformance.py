"""Conformance test files in the uBPF / bpf_conformance ``.data`` format.

A file holds one case in sections introduced by ``-- NAME`` lines::

    # comment lines start with '#'
    -- asm
    mov %r0, %r2          # eBPF assembly (nfpjit.ebpf.asm syntax)
    exit
    -- mem
    00 11 22 33           # the memory block, hex bytes (whitespace ignored)
    -- result
    0x4                   # expected r0 (64 bits) when the program exits

or, instead of ``-- result``, ``-- error`` followed by a pattern: the run must
stop with a fault whose reason matches that case-insensitive regular expression
(an empty pattern accepts any fault).  ``-- result 0x4`` / ``-- error PATTERN``
on one line work too.  bpf_conformance's runner-specific sections (``-- no jit``,
``-- no register offset``, ``-- c``, ``-- raw``) are skipped.

How a runner executes a case (what the expected values assume): r1 holds the
address of the memory block (0 when the block is empty), r2 its length in
bytes, r10 the top of a 512-byte stack; other registers start at zero; the
result is the full 64-bit r0 at ``exit``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.program import Program
from nfpjit.errors import LoadError

_SECTIONS = ("asm", "mem", "result", "error")
# bpf_conformance sections that say how to run a case on particular runtimes: kept out of the way.
_IGNORED = ("no jit", "no register offset", "c", "raw")


@dataclass(frozen=True)
class ConformanceCase:
    name: str
    program: Program
    memory: bytes
    result: int | None
    error: str | None

    def error_matches(self, reason: str) -> bool:
        """Whether a fault reason satisfies this case's ``-- error`` pattern."""
        return self.error is not None and re.search(self.error, reason, re.IGNORECASE) is not None


def parse_data(text: str, *, filename: str = "<data>") -> ConformanceCase:
    """Parse the text of one ``.data`` file (raises :class:`LoadError`, or AsmError for its assembly)."""
    sections: dict[str, list[tuple[int, str]]] = {}
    starts: dict[str, int] = {}
    current: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        m = re.match(r"\s*--\s*(.*?)\s*$", raw)
        if m:
            header = m.group(1)
            if header in _IGNORED:
                current = "ignored"
                sections.setdefault("ignored", [])
                continue
            name, _, inline = header.partition(" ")
            inline = inline.strip()
            if inline and name not in ("result", "error"):
                raise LoadError(f"unexpected text after '-- {name}'", where=f"{filename}:{lineno}")
            if name not in _SECTIONS:
                raise LoadError(f"unknown section '-- {name}'", where=f"{filename}:{lineno}",
                                hint="sections are -- asm, -- mem, -- result and -- error")
            if name in sections:
                raise LoadError(f"section '-- {name}' appears twice", where=f"{filename}:{lineno}")
            current = name
            sections[name] = []
            starts[name] = lineno
            if inline:
                sections[name].append((lineno, inline))
            continue
        if current is None:
            if raw.strip() and not raw.lstrip().startswith("#"):
                raise LoadError("text before the first section", where=f"{filename}:{lineno}",
                                hint="start with '-- asm'")
            continue
        sections[current].append((lineno, raw))
    if "asm" not in sections:
        raise LoadError("no '-- asm' section", where=f"{filename}:1", hint="a case needs a program")
    if ("result" in sections) == ("error" in sections):
        raise LoadError("a case needs exactly one of '-- result' and '-- error'", where=f"{filename}:1")

    # Pad with blank lines so assembler errors point at the right line of the .data file.
    asm_lines = dict(sections["asm"])
    last = max(asm_lines, default=starts["asm"])
    asm_text = "\n".join(asm_lines.get(i, "") for i in range(1, last + 1))
    name = Path(filename).stem
    program = assemble(asm_text, filename=filename)

    memory = b""
    if "mem" in sections:
        digits = []
        for lineno, raw in sections["mem"]:
            body = raw.split("#", 1)[0]
            for tok in body.split():
                if not re.fullmatch(r"[0-9a-fA-F]{2}", tok):
                    raise LoadError(f"bad memory byte {tok!r}", where=f"{filename}:{lineno}",
                                    hint="write the memory block as two-digit hex bytes separated by spaces")
                digits.append(tok)
        memory = bytes.fromhex("".join(digits))

    result = None
    if "result" in sections:
        values = [(ln, r.split("#", 1)[0].strip()) for ln, r in sections["result"]]
        values = [(ln, v) for ln, v in values if v]
        if len(values) != 1:
            raise LoadError("'-- result' needs exactly one value", where=f"{filename}:{starts['result']}")
        lineno, value = values[0]
        try:
            result = int(value, 0)
        except ValueError:
            raise LoadError(f"bad result {value!r}", where=f"{filename}:{lineno}",
                            hint="write a decimal or 0x hex number") from None
        if not -(1 << 63) <= result < (1 << 64):
            raise LoadError(f"result {value} does not fit in 64 bits", where=f"{filename}:{lineno}")
        result &= (1 << 64) - 1
    error = None
    if "error" in sections:
        error = " ".join(r.strip() for _, r in sections["error"] if r.strip())
        try:
            re.compile(error)
        except re.error as exc:
            raise LoadError(f"bad error pattern: {exc}", where=f"{filename}:{starts['error']}") from None
    return ConformanceCase(name=name, program=program, memory=memory, result=result, error=error)


def load_data_file(path: str | Path) -> ConformanceCase:
    """Read and parse one ``.data`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"cannot read {path}: {exc}") from None
    return parse_data(text, filename=str(path))


def load_directory(path: str | Path) -> list[ConformanceCase]:
    """Every ``*.data`` file of a directory, sorted by name."""
    return [load_data_file(p) for p in sorted(Path(path).glob("*.data"))]


__all__ = ["ConformanceCase", "parse_data", "load_data_file", "load_directory"]

"""Turning a :class:`~nfpjit.offload.report.Report` into text: compiler-style for people, JSON for tools.

The human form follows the compilers users already read::

    ktime.c:15:12: error: helper bpf_ktime_get_ns (id 5) is not available on the NIC [unsupported-helper]
     15 | u64 now = bpf_ktime_get_ns();
        |           ^
      = hint: bpf_ktime_get_ns has no NIC equivalent: timestamp in the host or use a counter
      = kernel: [nfp] unsupported function id: 5
      = insn 2: call 0x5

    resources: stack 64/512 B, NFP instructions ~40/4096 (estimate), maps 1/128, map entries 1/2097152
    xdp_ktime (xdp): not offloadable with profile 'default': 1 error, 0 warnings

Line info keeps source lines without their indentation, so the caret is
placed from the source file itself when it can be found (next to the
object, or by the recorded path); without it the line is shown uncareted.

The JSON form is documented in docs/check-json.md.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.program import Program
from nfpjit.offload.report import Diagnostic, Report, Severity


def insn_text(insn: Insn, pc: int) -> str:
    """Disassembly from the front end's disassembler when it is there, else the raw fields."""
    try:
        from nfpjit.ebpf.disasm import insn_text as disasm  # lazily: the report works without it
    except ImportError:
        disasm = None
    if disasm is not None:
        try:
            return disasm(insn, pc)
        except Exception:  # noqa: BLE001 - a listing must never break the report
            pass
    text = f"code=0x{insn.code:02x} dst=r{insn.dst} src=r{insn.src} off={insn.off} imm={insn.imm}"
    if insn.is_ld_imm64:
        text += f" imm2={insn.imm2}"
    return text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _location(d: Diagnostic, report: Report) -> str:
    if d.file and d.line:
        return f"{d.file}:{d.line}:{d.col or 1}"
    base = d.file or report.program
    return f"{base}: insn {d.insn}" if d.insn is not None else base


def _source_line(d: Diagnostic, program: Program | None) -> str | None:
    """The full source line (line info keeps it without its indentation), when the file can be found."""
    if not d.file or not d.line:
        return None
    candidates = [Path(d.file)]
    if program is not None and program.source_path and not Path(d.file).is_absolute():
        candidates.insert(0, Path(program.source_path).parent / d.file)
    for path in candidates:
        try:
            lines = _read_lines(str(path))
        except (OSError, UnicodeDecodeError):
            continue
        if 0 < d.line <= len(lines):
            return lines[d.line - 1]
    return None


@lru_cache(maxsize=64)
def _read_lines(path: str) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as f:
        return tuple(f.read().splitlines())


def _excerpt(d: Diagnostic, program: Program | None) -> list[str]:
    """The source text and, when the column can be placed on it, a caret under the column."""
    text = d.source_text.strip()
    if not d.line or not text:
        return []
    gutter = " " * len(str(d.line))
    out = [f" {d.line} | {text}"]
    full = _source_line(d, program)
    if full is not None and full.strip() == text and d.col:
        # columns count characters of the original line, indentation included
        at = d.col - 1 - (len(full) - len(full.lstrip()))
        if 0 <= at < len(text):
            out.append(f" {gutter} | {' ' * at}^")
    return out


def render_diagnostic(d: Diagnostic, report: Report, program: Program | None = None) -> str:
    lines = [f"{_location(d, report)}: {d.severity}: {d.message} [{d.code}]"]
    lines += _excerpt(d, program)
    if d.hint:
        lines.append(f"  = hint: {d.hint}")
    if d.kernel:
        lines.append(f"  = kernel: {d.kernel}")
    if d.insn is not None and program is not None and d.insn in program.index_at_pc:
        lines.append(f"  = insn {d.insn}: {insn_text(program.at(d.insn), d.insn)}")
    return "\n".join(lines)


def summary(report: Report) -> str:
    what = f"{report.program}" + (f" ({report.section})" if report.section else "")
    if not report.diagnostics:
        return f"{what}: ok, offloadable with profile '{report.profile}'"
    counts = [_plural(report.errors, "error"), _plural(report.warnings, "warning")]
    notes = report.count(Severity.NOTE)
    if notes:
        counts.append(_plural(notes, "note"))
    verdict = "not offloadable" if not report.ok else "offloadable"
    return f"{what}: {verdict} with profile '{report.profile}': {', '.join(counts)}"


def render_text(report: Report, program: Program | None = None) -> str:
    """The whole report: each diagnostic followed by a blank line, then the summary line."""
    parts = [render_diagnostic(d, report, program) + "\n" for d in report.diagnostics]
    if report.resources is not None:
        parts.append(f"resources: {report.resources}")
    parts.append(summary(report))
    return "\n".join(parts) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


__all__ = ["render_text", "render_json", "render_diagnostic", "summary", "insn_text"]

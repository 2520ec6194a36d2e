"""Reproducers: a failing input saved as a file plus a small JSON describing it, and their replay.

``save_failure(out, failure)`` writes ``OUT/<target>-<hash>.<suffix>`` (the minimised input: the
bytes of an ELF object, an image, a pcap, or the text of assembly or a profile; for ``diff`` the
shrunk program as eBPF assembly) and ``OUT/<target>-<hash>.json``::

    {"target": "elf", "input": "elf-1a2b3c4d5e.o", "kind": "exception",
     "signature": "IndexError at nfpjit/ebpf/btf.py:parse:120", "message": "...",
     "original_size": 4120, "size": 61, "seed": 7, "detail": "Traceback ...", "nfpjit": "0.1.0"}

(``diff`` adds ``frames``, the packets as hex, ``sim`` and ``kernel``.)  ``replay(json_path)``
runs it again through the same target and returns what still fails: an empty list once the bug
is fixed.  A JSON with ``"xfail": "why"`` is a known, reported failure kept out of the replayed set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["save_failure", "replay", "reproducers"]


def _suffix(target: str) -> str:
    from nfpjit.fuzz.targets import TARGETS

    return TARGETS[target].suffix if target in TARGETS else ".s"


def save_failure(out: Path, failure) -> list[Path]:
    """Write the input and its JSON; returns both paths."""
    from nfpjit import __version__

    out.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(f"{failure.target}\0{failure.signature}".encode()).hexdigest()[:10]
    stem = f"{failure.target}-{tag}"
    data_path = out / (stem + _suffix(failure.target))
    data_path.write_bytes(failure.data)
    meta = {"target": failure.target, "input": data_path.name, "kind": failure.kind, "signature": failure.signature,
            "message": failure.message, "original_size": failure.original_size, "size": len(failure.data),
            "seed": failure.seed, **failure.extra, "detail": failure.detail, "nfpjit": __version__}
    json_path = out / (stem + ".json")
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    return [data_path, json_path]


def reproducers(folder: Path) -> list[Path]:
    """The reproducer JSON files of a folder, sorted (summary.json is not one)."""
    return sorted(p for p in Path(folder).glob("*.json") if p.name != "summary.json")


def replay(json_path: Path, *, timeout: float = 30.0) -> list[str]:
    """Run a saved reproducer again: what still fails (empty: it passes now)."""
    from nfpjit.errors import LoadError

    json_path = Path(json_path)
    try:
        meta = json.loads(json_path.read_text())
        data = (json_path.parent / meta["input"]).read_bytes()
        target = meta["target"]
    except (OSError, ValueError, KeyError) as exc:
        raise LoadError(f"not a reproducer: {exc}", where=str(json_path)) from None
    if target == "diff":
        from nfpjit.fuzz.diff import replay_diff

        return replay_diff(data, meta)
    from nfpjit.fuzz.campaign import _failing, _Timer, signature
    from nfpjit.fuzz.targets import TARGETS

    if target not in TARGETS:
        raise LoadError(f"unknown target {target!r}", where=str(json_path))
    timer = _Timer(timeout)
    try:
        exc = _failing(TARGETS[target], data, timer)
    finally:
        timer.close()
    return [] if exc is None else [f"{signature(exc)}: {type(exc).__name__}: {exc}"]

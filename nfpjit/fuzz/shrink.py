"""Shrinking a failing input: delta debugging (ddmin) over lines, then over bytes.

:func:`ddmin` removes ever smaller chunks of the input while ``still_fails`` holds (Zeller's
algorithm, complement-only, which is what finds small reproducers fast for parsers), within a
budget of tests and seconds; text inputs are shrunk by whole lines first.  Generated programs are
shrunk by hypothesis itself (:mod:`nfpjit.fuzz.diff`).
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["ddmin", "shrink_input"]


def ddmin(items: list, still_fails: Callable[[list], bool], *, deadline: float, max_tests: int) -> list:
    """The smallest sub-list of ``items`` found for which ``still_fails`` holds (``items`` itself must)."""
    n = 2
    tests = 0
    while len(items) >= 2 and tests < max_tests and time.monotonic() < deadline:
        chunk = max(1, len(items) // n)
        removed = False
        start = 0
        while start < len(items) and tests < max_tests and time.monotonic() < deadline:
            candidate = items[:start] + items[start + chunk:]
            tests += 1
            if candidate and still_fails(candidate):
                items = candidate
                n = max(n - 1, 2)
                removed = True
            else:
                start += chunk
        if not removed:
            if chunk == 1:
                break
            n = min(n * 2, len(items))
    return items


def shrink_input(data: bytes, still_fails: Callable[[bytes], bool], *, text: bool = False,
                 seconds: float = 20.0, max_tests: int = 4000) -> bytes:
    """``data`` made as small as ddmin gets it while ``still_fails`` holds (lines first for text)."""
    deadline = time.monotonic() + seconds
    if text:
        lines = data.split(b"\n")
        if len(lines) > 1:
            kept = ddmin(lines, lambda ls: still_fails(b"\n".join(ls)), deadline=deadline, max_tests=max_tests // 2)
            data = b"\n".join(kept)
    chunks = [data[i:i + 1] for i in range(len(data))]
    if len(chunks) > 1:
        # big binary inputs: whole 64-byte blocks go first, then single bytes around what is left
        if len(chunks) > 4096:
            blocks = [data[i:i + 64] for i in range(0, len(data), 64)]
            blocks = ddmin(blocks, lambda bs: still_fails(b"".join(bs)), deadline=deadline, max_tests=max_tests // 2)
            chunks = [b for block in blocks for b in (block[i:i + 1] for i in range(len(block)))]
        kept = ddmin(chunks, lambda cs: still_fails(b"".join(cs)), deadline=deadline, max_tests=max_tests)
        data = b"".join(kept)
    return data

"""The corpus programs as pytest parameters, shared by the differential tests.

One ``pytest.param(path, section, id="stem:section")`` per program section of every
``tests/corpus/*.o`` that the loader can list (an object it cannot read is skipped: its
own tests report it), optionally followed by the hand-written ``tests/corpus/asm/*.s``
programs (section ``None``).
"""

from __future__ import annotations

import pytest

from nfpjit.ebpf.loader import list_programs
from nfpjit.errors import NfpjitError

from conftest import CORPUS


def corpus_cases(*, asm: bool = False) -> list:
    """Parameters ``(obj, section)`` for every corpus program; ``asm=True`` adds the ``.s`` programs."""
    cases = []
    for obj in sorted(CORPUS.glob("*.o")):
        try:
            sections = list_programs(obj)
        except NfpjitError:
            continue
        for section, _name in sections:
            cases.append(pytest.param(obj, section, id=f"{obj.stem}:{section}"))
    if asm:
        for path in sorted((CORPUS / "asm").glob("*.s")):
            cases.append(pytest.param(path, None, id=f"asm/{path.stem}"))
    return cases

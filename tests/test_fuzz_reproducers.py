"""Every reproducer committed under tests/reproducers/ (saved by `nfpjit fuzz --out`) passes now.

A reproducer is the minimised input plus a JSON describing the failure (nfpjit.fuzz.reproducer).
Each was a bug the fuzzer found; it was fixed, and its replay must find nothing.  A JSON with
"xfail" is a known failure reported to the owner of the code, not fixed yet: it is not run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfpjit.fuzz.reproducer import replay, reproducers

FOLDER = Path(__file__).with_name("reproducers")


def _cases():
    out = []
    for path in reproducers(FOLDER):
        meta = json.loads(path.read_text())
        marks = [pytest.mark.xfail(reason=meta["xfail"], run=False)] if meta.get("xfail") else []
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


def test_there_are_reproducers():
    assert len(reproducers(FOLDER)) >= 1


@pytest.mark.parametrize("path", _cases())
def test_reproducer_passes(path):
    meta = json.loads(path.read_text())
    assert (FOLDER / meta["input"]).exists()
    problems = replay(path)
    assert not problems, f"{meta['target']} reproducer {path.name} ({meta['signature']}) fails again: {problems}"

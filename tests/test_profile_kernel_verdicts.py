"""The nfp-kernel profile's verdict on every corpus program, against a reviewed golden table.

``tests/golden/profiles/nfp-kernel-verdicts.txt`` holds one line per corpus program (every
section of ``tests/corpus/*.o`` and every ``tests/corpus/asm/*.s``)::

    KEY  VERDICT  # WHY: the Linux nfp driver rule(s) behind it

VERDICT is ``accepted`` or ``refused:code,code`` (the error codes), followed by
``warn:code,...`` when the card takes the program but does something else than the kernel.
The WHY column is written by hand after reading the program against the driver's rules
(docs/profiles.md): ``pytest --update-golden`` rewrites the verdicts, keeps the WHY of every
unchanged line and marks new or changed lines ``# REVIEW``, which fails until someone reviews them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nfpjit
from nfpjit.offload import Severity, load_profile

from conftest import GOLDEN
from corpus_cases import corpus_cases

TABLE = GOLDEN / "profiles" / "nfp-kernel-verdicts.txt"
REVIEW = "REVIEW"
KERNEL = load_profile("nfp-kernel")
CASES = corpus_cases(asm=True)


def _key(obj: Path, section: str | None) -> str:
    return f"asm/{obj.stem}" if section is None else f"{obj.stem}:{section}"


def verdict(obj: Path, section: str | None) -> str:
    """``accepted`` / ``refused:...``, then ``warn:...``: the error and warning codes, sorted, once each."""
    program = nfpjit.load(obj, section=section)
    report = nfpjit.check(program, profile=KERNEL)
    errors = sorted({str(d.code) for d in report.diagnostics if d.severity == Severity.ERROR})
    warnings = sorted({str(d.code) for d in report.diagnostics if d.severity == Severity.WARNING})
    text = "refused:" + ",".join(errors) if errors else "accepted"
    return text + ("  warn:" + ",".join(warnings) if warnings else "")


def read_table(path: Path = TABLE) -> dict[str, tuple[str, str]]:
    """KEY -> (VERDICT, WHY) from the golden table (comment lines and blank lines skipped)."""
    table: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return table
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        body, _, why = line.partition("#")
        key, _, rest = body.strip().partition(" ")
        assert key not in table, f"{path.name}:{n}: {key} twice"
        table[key] = ("  ".join(rest.split()), why.strip())
    return table


HEADER = """\
# nfp-kernel verdicts on the corpus: would the real Agilio card (Linux nfp driver) take it?
# KEY  VERDICT  # WHY (hand-written from the driver's rules, docs/profiles.md); REVIEW = not reviewed yet
"""


def write_table(rows: dict[str, tuple[str, str]], path: Path = TABLE) -> None:
    width = max(len(k) for k in rows) + 2
    vwidth = max(len(v) for v, _ in rows.values()) + 2
    lines = [f"{k:<{width}}{v:<{vwidth}}# {why}" for k, (v, why) in sorted(rows.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def table(request):
    old = read_table()
    if request.config.getoption("--update-golden"):
        rows = {}
        for case in CASES:
            obj, section = case.values
            key, now = _key(obj, section), verdict(obj, section)
            was, why = old.get(key, (None, ""))
            rows[key] = (now, why if was == now and why and why != REVIEW else REVIEW)
        write_table(rows)
        return read_table()
    return old


@pytest.mark.parametrize("obj, section", CASES)
def test_nfp_kernel_verdict(obj, section, table):
    key = _key(obj, section)
    if key not in table:
        pytest.fail(f"no golden verdict for {key}; run pytest --update-golden after review "
                    f"(then write the driver rule behind it in {TABLE.name})")
    expected, why = table[key]
    assert why and why != REVIEW, f"the verdict for {key} in {TABLE.name} is not reviewed: say which driver rule"
    assert verdict(obj, section) == expected, f"{key}: nfp-kernel verdict changed (review against the driver rules)"


def test_table_has_no_stale_rows(table):
    known = {_key(*case.values) for case in CASES}
    stale = sorted(set(table) - known)
    assert not stale, f"{TABLE.name} names programs no longer in the corpus: {stale} (run --update-golden)"


def test_table_is_not_trivial(table):
    # the table must be able to fail: it holds both verdicts, and every refusal names a code
    verdicts = [v for v, _ in table.values()]
    assert any(v.startswith("accepted") for v in verdicts) and any(v.startswith("refused:") for v in verdicts)
    assert all(v.split()[0] != "refused:" for v in verdicts)


def test_table_round_trips(tmp_path):
    rows = {"a:xdp": ("accepted", "fine"), "asm/b": ("refused:mod  warn:exit-action", "MOD: instruction 0x9f")}
    write_table(rows, tmp_path / "t.txt")
    assert read_table(tmp_path / "t.txt") == rows

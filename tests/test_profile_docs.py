"""docs/profiles.md describes the shipped profiles as they are: its table is the TOML files' table,
and every diagnostic code the nfp-kernel rules name is a real code."""

from __future__ import annotations

import importlib.util
import re

from nfpjit.offload import Code
from nfpjit.offload.profile import _FEATURE_KEYS, _TOP_KEYS

from conftest import ROOT

DOC = ROOT / "docs" / "profiles.md"


def _tool():
    spec = importlib.util.spec_from_file_location("profile_table", ROOT / "tools" / "profile_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_doc_table_matches_the_profile_files():
    tool = _tool()
    text = DOC.read_text()
    assert tool.with_table(text) == text, "docs/profiles.md is out of date: run python tools/profile_table.py --write"


def test_table_names_every_key_and_profile():
    table = _tool().table()
    for key in _TOP_KEYS:
        if key not in ("name", "description", "features"):
            assert f"| `{key}` |" in table, key
    for key in _FEATURE_KEYS:
        assert f"| `features.{key}` |" in table, key
    assert table.splitlines()[0].startswith("| key | `nfp-kernel` | `default` | `permissive` |")


def test_rules_name_real_codes():
    section = DOC.read_text().split("## The nfp-kernel rules")[1].split("\n## ")[0]
    named = set(re.findall(r"`([a-z0-9-]+)`", section))
    codes = {c.value for c in Code}
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    assert len(rows) > 25
    for line in rows:
        cells = line.split("|")
        for code in re.findall(r"`([a-z0-9-]+)`", cells[2]):
            assert code in codes, (code, line)
    assert named & codes

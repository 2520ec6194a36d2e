"""Shared pytest set-up: the slow marker switch and skips for tools that may be missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the large differential runs (marker 'slow')")
    parser.addoption("--update-golden", action="store_true", help="rewrite golden listings under tests/golden/")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="large run: use --run-slow or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def need_tool(name: str):
    """Skip the test when a command-line tool (clang, llvm-objdump, readelf ...) is missing."""
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (CI installs Debian's clang/llvm)")
    return shutil.which(name)


GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture
def golden(request):
    """``golden("name.txt", text)`` compares ``text`` with tests/golden/name.txt (``--update-golden`` rewrites it)."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden") or not path.exists():
            if not request.config.getoption("--update-golden") and os.environ.get("CI"):
                pytest.fail(f"golden file {path} is missing: run pytest --update-golden and review it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        expected = path.read_text()
        assert text == expected, f"output differs from {path} (review, then pytest --update-golden)"

    return check

"""The pass manager: pipeline parsing, options, statistics, snapshots and error context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from nfpjit.errors import NfpjitError, UsageError
from nfpjit.passes import REGISTRY, Pass, PassError, PassManager, parse_pipeline, register


class Unit:
    def __init__(self, items):
        self.items = list(items)

    def size(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class DropValue(Pass):
    name: ClassVar[str] = "test-drop-value"
    value: int = 0

    def run(self, unit) -> bool:
        before = len(unit.items)
        unit.items = [i for i in unit.items if i != self.value]
        return len(unit.items) != before


@dataclass(frozen=True)
class Reverse(Pass):
    name: ClassVar[str] = "test-reverse"
    enabled: bool = True

    def run(self, unit) -> bool:
        if self.enabled:
            unit.items.reverse()
        return self.enabled


@dataclass(frozen=True)
class Broken(Pass):
    name: ClassVar[str] = "test-broken"

    def run(self, unit) -> bool:
        return unit.items[99] > 0


@pytest.fixture(autouse=True)
def _registered():
    saved = dict(REGISTRY)
    for cls in (DropValue, Reverse, Broken):
        register(cls.name, f"{__name__}:{cls.__name__}")
    yield
    REGISTRY.clear()
    REGISTRY.update(saved)


def test_pipeline_with_options_is_reproducible():
    passes = parse_pipeline("test-drop-value{value=0x3}, test-reverse{enabled=false},test-reverse")
    assert passes == [DropValue(3), Reverse(False), Reverse(True)]
    spelled = ",".join(p.spelling() for p in passes)
    assert parse_pipeline(spelled) == passes


@pytest.mark.parametrize("spec, fragment", [
    ("test-drop-valu", "did you mean test-drop-value"),
    ("test-drop-value{colour=1}", "has no option 'colour'"),
    ("test-drop-value{value=many}", "needs a int"),
    ("test-reverse{enabled=perhaps}", "needs a bool"),
    ("test-reverse;", "cannot parse pass pipeline at column"),
])
def test_bad_pipelines_are_usage_errors(spec, fragment):
    with pytest.raises(UsageError) as info:
        parse_pipeline(spec)
    assert fragment in str(info.value)


def test_manager_records_changes_and_sizes():
    unit = Unit([1, 3, 2, 3])
    manager = PassManager(parse_pipeline("test-drop-value{value=3},test-drop-value{value=7},test-reverse"),
                          snapshot_after={"test-reverse"}, render=lambda u: " ".join(map(str, u.items)))
    assert manager.run(unit) is True
    assert unit.items == [2, 1]
    assert [(s.name, s.changed, s.size_before, s.size_after) for s in manager.stats] == [
        ("test-drop-value", True, 4, 2), ("test-drop-value", False, 2, 2), ("test-reverse", True, 2, 2)]
    assert manager.snapshots == [("test-reverse", "2 1")]


def test_nothing_changed_is_reported():
    manager = PassManager(parse_pipeline("test-drop-value{value=9}"))
    assert manager.run(Unit([1, 2])) is False


def test_a_crashing_pass_is_named_with_its_position():
    manager = PassManager(parse_pipeline("test-reverse,test-broken"))
    with pytest.raises(PassError) as info:
        manager.run(Unit([1]))
    assert "pass 2 'test-broken' crashed: IndexError" in str(info.value)
    assert isinstance(info.value, NfpjitError)


def test_verify_failure_names_the_pass():
    def verify(unit):
        if unit.items != sorted(unit.items):
            raise NfpjitError("items out of order")

    manager = PassManager(parse_pipeline("test-reverse"), verify=verify)
    with pytest.raises(PassError, match=r"pass 1 'test-reverse\{enabled=True\}' failed: items out of order"):
        manager.run(Unit([1, 2]))

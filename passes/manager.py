"""Pass declaration, the lazy registry, pipeline parsing and the pass manager.

The manager owns what every pass would otherwise repeat: timing, statistics
(unit size before/after, whether it changed anything), optional verification
after each pass, snapshots after named passes, and wrapping a failure with the
pipeline position and pass name.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol

from nfpjit.errors import NfpjitError, UsageError


class Unit(Protocol):
    """What passes transform: the JIT's eBPF-level or NFP-level program."""

    def size(self) -> int: ...


@dataclass(frozen=True)
class Pass:
    """Base class.  Subclasses set ``name``/``level``/``summary`` and implement ``run``."""

    name: ClassVar[str] = ""
    level: ClassVar[str] = "nfp"  # "ebpf" or "nfp"
    summary: ClassVar[str] = ""

    def run(self, unit: Any) -> bool:
        """Rewrite ``unit`` in place; return True when something changed."""
        raise NotImplementedError(f"pass {self.name} has no run()")

    def spelling(self) -> str:
        """The pipeline spelling of this pass with its options."""
        opts = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


class PassError(NfpjitError):
    """A pass failed or left the unit broken; names the pass and its position."""


# name -> "module:Class" resolved on first use
REGISTRY: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Declare a pass: ``register("zext-elim", "nfpjit.passes.zext:ZextElim")``."""
    REGISTRY[name] = target


def available_passes() -> list[str]:
    _load_builtin_registry()
    return sorted(REGISTRY)


def _load_builtin_registry() -> None:
    importlib.import_module("nfpjit.passes.registry")


def pass_class(name: str) -> type[Pass]:
    _load_builtin_registry()
    if name not in REGISTRY:
        near = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f"did you mean {', '.join(near)}?" if near else f"known passes: {', '.join(sorted(REGISTRY)) or 'none'}"
        raise UsageError(f"unknown pass '{name}'", hint=hint)
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


_ITEM = re.compile(r"\s*([a-z0-9][a-z0-9-]*)\s*(?:\{([^}]*)\})?\s*(?:,|$)")


def _convert(text: str, field: dataclasses.Field, pass_name: str) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text, 0)
        return text
    except ValueError:
        raise UsageError(f"option {field.name} of pass {pass_name} needs a {kind}, not '{text}'") from None


def parse_pipeline(spec: str) -> list[Pass]:
    """``"a,b{opt=1,flag=true}"`` -> pass instances, with clear errors for unknown names/options."""
    passes: list[Pass] = []
    pos = 0
    spec = spec.strip()
    while pos < len(spec):
        m = _ITEM.match(spec, pos)
        if not m or m.end() == pos:
            raise UsageError(f"cannot parse pass pipeline at column {pos + 1}: '{spec[pos:]}'",
                             hint="write name or name{opt=value,...}, separated by commas")
        name, opts = m.group(1), m.group(2)
        cls = pass_class(name)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for item in filter(None, (o.strip() for o in (opts or "").split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if key not in fields:
                raise UsageError(f"pass {name} has no option '{key}'",
                                 hint=f"its options: {', '.join(fields) or 'none'}")
            kwargs[key] = _convert(value.strip() if sep else "true", fields[key], name)
        passes.append(cls(**kwargs))
        pos = m.end()
    return passes


@dataclass(frozen=True)
class PassStat:
    name: str
    level: str
    changed: bool
    seconds: float
    size_before: int
    size_after: int


class PassManager:
    """Runs a pipeline over a unit, keeping statistics and optional snapshots."""

    def __init__(self, passes: list[Pass], *, verify: Callable[[Any], None] | None = None,
                 snapshot_after: set[str] | frozenset[str] = frozenset(),
                 render: Callable[[Any], str] | None = None):
        self.passes = passes
        self.verify = verify
        self.snapshot_after = snapshot_after
        self.render = render
        self.stats: list[PassStat] = []
        self.snapshots: list[tuple[str, str]] = []

    def run(self, unit: Any) -> bool:
        changed_any = False
        for index, p in enumerate(self.passes):
            before = unit.size()
            start = time.perf_counter()
            try:
                changed = bool(p.run(unit))
                if self.verify is not None:
                    self.verify(unit)
            except NfpjitError as exc:
                raise PassError(f"pass {index + 1} '{p.spelling()}' failed: {exc}") from exc
            except Exception as exc:  # a bug in a pass: keep the context for the report
                raise PassError(f"pass {index + 1} '{p.spelling()}' crashed: {type(exc).__name__}: {exc}",
                                hint="this is a bug in nfpjit; please report it with the input") from exc
            self.stats.append(PassStat(p.name, p.level, changed, time.perf_counter() - start, before, unit.size()))
            changed_any |= changed
            if p.name in self.snapshot_after and self.render is not None:
                self.snapshots.append((p.name, self.render(unit)))
        return changed_any

"""Pass declaration, the lazy registry, pipeline parsing and the pass manager.

Two levels of pass (``Pass.level``):

* ``"lower"``: an optimisation carried out inside the lowering, because it needs
  eBPF facts (pointer kinds, ranges, liveness per half).  The pass object is a
  switch with options: the lowering asks ``ctx.enabled(name)`` /
  ``ctx.option(name)``; a pass may compute per-instruction metadata once before
  the lowering with ``plan(program, analysis)``, read back with
  ``ctx.plan(name)``.  Its size effect is measured by lowering without it
  (:func:`nfpjit.driver.pass_deltas`).
* ``"nfp"``: a rewrite of the machine program (:class:`nfpjit.jit.mir.MProgram`)
  after lowering, ``run(unit) -> changed``; ``unit.context`` is the
  :class:`PassContext` (program and analysis facts).

The manager owns what every pass would otherwise repeat: timing, statistics
(unit size before/after, whether it changed anything), optional verification
after each pass, snapshots after named passes (or all, or the changed ones), and
wrapping a failure with the pipeline position, pass name and, where a pass
names one, the instruction.
"""

from __future__ import annotations

import dataclasses
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
    level: ClassVar[str] = "nfp"  # "lower" (read by the lowering) or "nfp" (rewrites the MProgram)
    summary: ClassVar[str] = ""
    #: integer options and their allowed (low, high) values; others are refused when the pass is made
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {}

    def __post_init__(self) -> None:
        for option, (low, high) in self.option_ranges.items():
            value = getattr(self, option)
            if not low <= value <= high:
                raise UsageError(f"option {option} of pass {self.name} must be {low}..{high}, not {value}")

    def run(self, unit: Any) -> bool:
        """Rewrite ``unit`` in place; return True when something changed (``nfp`` passes)."""
        raise NotImplementedError(f"pass {self.name} has no run()")

    def plan(self, program: Any, analysis: Any) -> Any:
        """``lower`` passes: per-instruction metadata computed before lowering (None: nothing to plan)."""
        return None

    def spelling(self) -> str:
        """The pipeline spelling of this pass with its options."""
        opts = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


class PassError(NfpjitError):
    """A pass failed or left the unit broken; names the pass and its position."""


LEVELS = ("lower", "nfp")


@dataclass(frozen=True)
class PassContext:
    """What an ``nfp`` pass may know besides the machine program: the eBPF program and its analysis."""

    program: Any = None
    analysis: Any = None
    raw_context: bool = False


# name -> "module:Class" resolved on first use
REGISTRY: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Declare a pass: ``register("zext-elim", "nfpjit.passes.zext:ZextElim")``."""
    REGISTRY[name] = target


def available_passes() -> list[str]:
    _load_builtin_registry()
    _load_plugins()
    return sorted(REGISTRY)


_PLUGINS_LOADED = False

#: entry-point group through which other packages add passes (``name = "module:Class"``)
ENTRY_POINT_GROUP = "nfpjit.passes"


def _load_builtin_registry() -> None:
    builtin = importlib.import_module("nfpjit.passes.registry").BUILTIN
    for name, target in builtin.items():  # (again, should someone have cleared REGISTRY)
        REGISTRY.setdefault(name, target)


def _load_plugins() -> None:
    """Add the passes other packages declare (scanned once, only when a name is not built in: it is slow)."""
    global _PLUGINS_LOADED
    if not _PLUGINS_LOADED:
        _PLUGINS_LOADED = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            REGISTRY.setdefault(ep.name, ep.value)


def pass_class(name: str) -> type[Pass]:
    _load_builtin_registry()
    if name not in REGISTRY:
        _load_plugins()
    if name not in REGISTRY:
        import difflib

        near = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f"did you mean {', '.join(near)}?" if near else f"known passes: {', '.join(sorted(REGISTRY)) or 'none'}"
        raise UsageError(f"unknown pass '{name}'", hint=hint)
    module, _, cls = REGISTRY[name].partition(":")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"pass '{name}' is registered as {REGISTRY[name]!r}, which cannot be loaded: {exc}",
                         hint="check the entry point or registry line that declares it") from None
    if not (isinstance(found, type) and issubclass(found, Pass)) or found.level not in LEVELS:
        raise UsageError(f"pass '{name}' ({REGISTRY[name]}) is not a Pass subclass with level 'lower' or 'nfp'")
    return found


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
    """One pass run: ``size_*`` are NFP instructions (equal for ``lower`` passes, whose effect is an ablation)."""

    name: str
    level: str
    changed: bool
    seconds: float
    size_before: int
    size_after: int

    @property
    def delta(self) -> int:
        return self.size_after - self.size_before


def split_levels(passes: list[Pass]) -> tuple[list[Pass], list[Pass]]:
    """(lower-level, nfp-level) passes of a pipeline, each in pipeline order."""
    lower = [p for p in passes if p.level == "lower"]
    nfp = [p for p in passes if p.level != "lower"]
    return lower, nfp


def without(passes: list[Pass], names) -> list[Pass]:
    """The pipeline less the passes named (``--disable-pass``); unknown names are a usage error."""
    names = list(names)
    for n in names:
        pass_class(n)  # unknown name -> UsageError with the list
    return [p for p in passes if p.name not in names]


def _instruction_in_flight(exc: BaseException) -> str | None:
    """The machine instruction the innermost frame of a crashed pass was looking at (a local MInstr), if any."""
    from nfpjit.jit.mir import MInstr

    tb, found = exc.__traceback__, None
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, MInstr) and value.instr is not None:
                found = value
                break
        tb = tb.tb_next
    if found is None:
        return None
    return f"'{found}'" + (f" (eBPF pc {found.pc})" if found.pc is not None else "")


class PassManager:
    """Runs a pipeline over a unit, keeping statistics and optional snapshots.

    ``snapshot_after``: pass names after which ``render(unit)`` is kept (``"all"`` in the set: every
    pass); ``snapshot_changed``: keep a snapshot after every pass that changed the unit.  A pass may
    name the instruction it was working on in an exception attribute ``where`` (an NfpjitError's) or
    ``instr``; the PassError carries it.
    """

    def __init__(self, passes: list[Pass], *, verify: Callable[[Any], None] | None = None,
                 snapshot_after: set[str] | frozenset[str] = frozenset(),
                 render: Callable[[Any], str] | None = None, snapshot_changed: bool = False):
        self.passes = passes
        self.verify = verify
        self.snapshot_after = frozenset(snapshot_after)
        self.snapshot_changed = snapshot_changed
        self.render = render
        self.stats: list[PassStat] = []
        self.snapshots: list[tuple[str, str]] = []

    def _wants_snapshot(self, p: Pass, changed: bool) -> bool:
        if self.render is None:
            return False
        return ("all" in self.snapshot_after or p.name in self.snapshot_after
                or (self.snapshot_changed and changed))

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
                raise PassError(f"pass {index + 1} '{p.spelling()}' failed: {exc.message}",
                                where=exc.where, hint=exc.hint) from exc
            except Exception as exc:  # a bug in a pass: keep the context for the report
                instr = getattr(exc, "instr", None)
                if instr is None:
                    instr = _instruction_in_flight(exc)
                at = f" at {instr}" if instr is not None else ""
                raise PassError(f"pass {index + 1} '{p.spelling()}' crashed{at}: {type(exc).__name__}: {exc}",
                                hint="this is a bug in nfpjit; please report it with the input") from exc
            self.stats.append(PassStat(p.name, p.level, changed, time.perf_counter() - start, before, unit.size()))
            changed_any |= changed
            if self._wants_snapshot(p, changed):
                self.snapshots.append((p.name, self.render(unit)))
        return changed_any

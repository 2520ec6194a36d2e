"""eBPF → NFP-32 lowering: the one opcode table and :func:`lower`.

Each lowering module (``lower_alu``, ``lower_jmp``, ``lower_mem``,
``lower_call``) exports ``HANDLERS``: a dict from the eBPF opcode byte to a
handler ``handler(ctx: LowerCtx, pc: int, insn: Insn) -> None`` that appends
the instruction's NFP code through ``ctx.emit``; a module may also export
``EPILOGUE(ctx)``, run after each function's body (for shared stubs).  :data:`TABLE` is their
union; an opcode without an entry is not supported by the JIT, and
:func:`supported_opcodes` (which feeds the capability report and ``nfpjit
coverage``) is exactly the table's keys.  A handler that meets an operand it
cannot lower (a divisor that is not constant, ...) raises
:class:`~nfpjit.errors.UnsupportedError`.

:func:`lower` walks every function of the program in order (the entry
function first), defines the label ``L<pc>`` before each instruction, skips
instructions the analysis proved unreachable, and returns an
:class:`~nfpjit.jit.mir.MProgram`.

Optimisations inside the lowering are ``lower``-level passes (:mod:`nfpjit.passes`):
a handler asks ``ctx.enabled("zext-elim")`` (or ``ctx.option(name)`` for the pass
object with its options, ``ctx.plan(name)`` for what its ``plan()`` computed before
lowering).  With no pass enabled the lowering emits the -O0 code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from nfpjit.errors import NfpjitError, UnsupportedError
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.ebpf.program import Program

from .emit import Emitter
from .mir import MFunction, MProgram
from .regs import G, ScratchPool

Handler = Callable[["LowerCtx", int, Insn], None]

#: modules whose HANDLERS make up the table (a module not written yet is skipped)
HANDLER_MODULES = ("lower_alu", "lower_jmp", "lower_mem", "lower_call")


def _load_table() -> tuple[dict[int, Handler], list]:
    table: dict[int, Handler] = {}
    epilogues = []
    for name in HANDLER_MODULES:
        try:
            module = importlib.import_module(f"nfpjit.jit.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"nfpjit.jit.{name}":
                continue
            raise
        for code, handler in getattr(module, "HANDLERS", {}).items():
            if code in table:
                raise RuntimeError(f"opcode {code:#04x} has handlers in two lowering modules ({name})")
            table[code] = handler
        if getattr(module, "EPILOGUE", None) is not None:
            epilogues.append(module.EPILOGUE)
    return table, epilogues


_TABLE: tuple[dict[int, Handler], list] | None = None


def table() -> dict[int, Handler]:
    """eBPF opcode byte → handler (built on first use)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _load_table()
    return _TABLE[0]


def epilogues() -> list:
    """Per-function tails: each module's ``EPILOGUE(ctx)``, run after a function's body (e.g. shared stubs)."""
    table()
    return _TABLE[1]


def supported_opcodes() -> frozenset[int]:
    """The eBPF opcode bytes the JIT lowers (some only for operands the handler accepts)."""
    return frozenset(table())


@dataclass
class LowerCtx:
    """What a handler sees: the program, its analysis, the emitter, the current function and pc."""

    program: Program
    analysis: object
    emit: Emitter
    opt_level: int = 0
    #: enabled lower-level passes by name, and what their plan() computed
    passes: dict = field(default_factory=dict)
    plans: dict = field(default_factory=dict)
    function: MFunction | None = None
    is_entry: bool = True
    pc: int = 0
    index: int = 0
    #: per-lowering scratch space for handler modules (e.g. frame layout), keyed by module
    state: dict = field(default_factory=dict)

    def enabled(self, name: str) -> bool:
        """Is the lower-level pass ``name`` part of this compilation's pipeline?"""
        return name in self.passes

    def option(self, name: str):
        """The enabled pass object ``name`` (its options are its fields), or None."""
        return self.passes.get(name)

    def plan(self, name: str):
        """What pass ``name``'s ``plan(program, analysis)`` computed (None when disabled or nothing)."""
        return self.plans.get(name)

    @property
    def facts(self):
        """The analysis facts before the current instruction (None when the analysis has none)."""
        return self.analysis.facts.get(self.pc) if self.analysis is not None else None

    def facts_at(self, pc: int):
        return self.analysis.facts.get(pc) if self.analysis is not None else None

    @staticmethod
    def label_for(pc: int) -> str:
        """The label of eBPF instruction ``pc`` (defined before its code)."""
        return f"L{pc}"

    def new_label(self, hint: str = "l") -> str:
        return self.emit.new_label(hint)

    def tmp(self) -> G:
        """A scratch register, valid until the next eBPF instruction."""
        return self.emit.tmp()

    @property
    def prog_type(self) -> ProgType:
        return self.program.prog_type

    def where(self, pc: int | None = None) -> str:
        pc = self.pc if pc is None else pc
        src = self.program.line_info.get(pc)
        text = f"{self.program.name or 'program'}: insn {self.program.index_at_pc.get(pc, pc)} (pc {pc})"
        return f"{text} [{src}]" if src else text

    def unsupported(self, message: str, hint: str | None = None) -> UnsupportedError:
        return UnsupportedError(message, where=self.where(), hint=hint)


def _functions(program: Program, analysis) -> list[tuple[str, int, int]]:
    """(name, start pc, end pc) of each function, entry first."""
    if analysis is not None and getattr(analysis, "cfg", None) is not None and analysis.cfg.functions:
        fns = [(f.name, f.start, f.end) for f in analysis.cfg.functions]
    else:
        starts = sorted({0, *(f.start_pc for f in program.functions)})
        names = {f.start_pc: f.name for f in program.functions}
        ends = starts[1:] + [program.nslots]
        fns = [(names.get(s, f"sub_{s}"), s, e) for s, e in zip(starts, ends)]
    fns.sort(key=lambda f: (f[1] != 0, f[1]))
    return fns


def lower_passes(opt_level: int) -> list:
    """The lower-level passes of the named pipeline of ``opt_level``."""
    from nfpjit.passes.manager import parse_pipeline, split_levels
    from nfpjit.passes.pipelines import PIPELINES

    return split_levels(parse_pipeline(PIPELINES[opt_level]))[0]


def lower(program: Program, analysis=None, *, opt_level: int = 0, passes=None) -> MProgram:
    """Lower every reachable instruction of ``program``; raises UnsupportedError for what the JIT cannot do.

    ``passes``: the lower-level passes to apply (Pass objects; others are ignored); None takes
    those of the named pipeline of ``opt_level``.
    """
    if analysis is None:
        from nfpjit.analysis import analyze

        analysis = analyze(program)
    if passes is None:
        passes = lower_passes(opt_level)
    enabled = {p.name: p for p in passes if p.level == "lower"}
    plans = {}
    for name, p in enabled.items():
        result = p.plan(program, analysis)
        if result is not None:
            plans[name] = result
    handlers = table()
    emitter = Emitter(ScratchPool())
    ctx = LowerCtx(program, analysis, emitter, opt_level, passes=enabled, plans=plans)
    mprog = MProgram(program.name)
    for name, start, end in _functions(program, analysis):
        fn = MFunction(name, start)
        mprog.functions.append(fn)
        emitter.body = fn.body
        ctx.function = fn
        ctx.is_entry = start == 0
        for pc, insn in program.slots():
            if not start <= pc < end:
                continue
            emitter.pc = None
            emitter.label(ctx.label_for(pc))
            facts = analysis.facts.get(pc) if analysis is not None else None
            if facts is not None and not facts.reachable:
                continue
            handler = handlers.get(insn.code)
            ctx.pc, ctx.index = pc, program.index_at_pc[pc]
            if handler is None:
                raise UnsupportedError(f"the JIT cannot lower opcode {insn.code:#04x}", where=ctx.where(),
                                       hint="see `nfpjit coverage` for the opcodes it lowers")
            emitter.pc = pc
            emitter.scratch.reset()
            try:
                handler(ctx, pc, insn)
            except NfpjitError as exc:
                if exc.where is None:
                    exc.where = ctx.where()
                raise
        emitter.pc = None
        for epilogue in epilogues():
            epilogue(ctx)
    from .lower_mem import layout_of

    # Without a CFG (the ALU-only test mode above) there are no frames to lay out.
    has_cfg = analysis is not None and getattr(analysis, "cfg", None) is not None
    mprog.stack_size = layout_of(ctx).size if has_cfg else 0
    return mprog


__all__ = ["LowerCtx", "Handler", "lower", "lower_passes", "supported_opcodes", "table", "epilogues"]

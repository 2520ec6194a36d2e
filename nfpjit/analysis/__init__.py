"""Program analysis: what the kernel verifier tells the real JIT, computed by nfpjit itself.

Public API (names are stable; see docs/analysis.md):

- :func:`analyze` -> :class:`Analysis`: CFG, per-instruction :class:`InsnFacts`,
  :class:`VerifierProblem` list, stack depth per function; ``strict=True``
  raises :class:`VerificationError` instead of returning problems.
- :func:`build_cfg` / :class:`CFG`: basic blocks, functions, dominators, natural loops.
- :class:`Liveness`: live register halves per instruction.
- :class:`Tnum`, :class:`Scalar`: the known-bits and range domains;
  :class:`RegState`/:class:`RegKind`: register states and pointer kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nfpjit.analysis.cfg import CFG, BasicBlock, CfgProblem, FunctionInfo, Loop, build_cfg, func_target, insn_successors
from nfpjit.analysis.liveness import HI, LO, Liveness, use_def
from nfpjit.analysis.scalar import Bounds, Scalar
from nfpjit.analysis.state import RegKind, RegState
from nfpjit.analysis.tnum import Tnum
from nfpjit.analysis.verifier import InsnFacts, MemAccess, Verifier, VerifierProblem, finalize
from nfpjit.ebpf.program import Program
from nfpjit.errors import NfpjitError

MAX_STACK = 512


class VerificationError(NfpjitError):
    """The program is not provably safe; ``problems`` lists every reason found (the message shows the first)."""

    def __init__(self, message: str, *, problems: list[VerifierProblem], where: str | None = None,
                 hint: str | None = None):
        super().__init__(message, where=where, hint=hint)
        self.problems = problems


@dataclass
class Analysis:
    program: Program
    cfg: CFG
    liveness: Liveness
    facts: dict[int, InsnFacts]
    problems: list[VerifierProblem]
    stack_depth: dict[str, int]
    insns_processed: int = 0
    loop_trips: dict[int, int] = field(default_factory=dict)
    raw_context: bool = False  # analysed with R1 = memory block, R2 = its length (uBPF convention)
    #: what ``RegState.map`` indexes: ``program.maps``, then the inner-map template of each map-in-map
    maps: tuple = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def reachable(self, pc: int) -> bool:
        f = self.facts.get(pc)
        return bool(f and f.reachable)

    @property
    def max_stack_depth(self) -> int:
        """The deepest stack use of any one function, in bytes (rounded as the kernel does)."""
        return max(self.stack_depth.values(), default=0)

    def first_problem(self) -> VerifierProblem | None:
        return min(self.problems, key=lambda p: p.pc) if self.problems else None


def _unreachable(program: Program, cfg: CFG) -> list[VerifierProblem]:
    """Instructions no edge reaches, ignoring branch conditions (the kernel's check_cfg rejects them)."""
    seen: set[int] = set()
    work = [0]
    while work:
        pc = work.pop()
        if pc in seen or pc not in program.index_at_pc:
            continue
        seen.add(pc)
        insn = program.at(pc)
        work.extend(insn_successors(insn, pc))
        target = func_target(insn, pc)  # a callee, or a callback whose address is loaded
        if target is not None:
            work.append(target)
    return [VerifierProblem(pc, "unreachable", f"unreachable insn {pc}") for pc in program.pcs if pc not in seen]


def _combined_stack(cfg: CFG, depth: dict[str, int]) -> list[VerifierProblem]:
    by_start = {fn.start: fn for fn in cfg.functions}
    problems = []

    def walk(fn: FunctionInfo, total: int, chain: tuple[int, ...], first_call: int) -> None:
        total += (max(depth.get(fn.name, 0), 1) + 31) // 32 * 32
        if total > MAX_STACK:
            problems.append(VerifierProblem(first_call, "stack_too_large",
                                            f"combined stack size of {len(chain) + 1} calls is {total}. Too large"))
            return
        for call_pc, target in fn.calls:
            callee = by_start.get(target)
            if callee is None or target in chain:
                continue
            walk(callee, total, chain + (fn.start,), call_pc if first_call < 0 else first_call)

    if cfg.functions:
        walk(cfg.functions[0], 0, (), -1)
    return problems[:1]


def analyze(program: Program, *, strict: bool = False, max_insns: int = 1_000_000,
            max_loop_iterations: int = 4096, allow_uninit_stack: bool = False,
            raw_context: bool = False) -> Analysis:
    """Verify ``program`` over all paths and collect per-instruction facts.

    ``max_insns`` bounds the instructions processed (the kernel's complexity
    limit); ``max_loop_iterations`` bounds trips round one loop on one path.
    ``allow_uninit_stack`` accepts reads of never-written stack bytes (as the
    kernel does for privileged loaders; the NIC's stack is not zeroed, so the
    default reports them).  ``raw_context`` analyses a uBPF/bpf_conformance-style program: every
    register starts at zero except R1, a packet-like pointer to a memory block whose accesses are
    not bounds-checked here (the engine checks them at run time), and R2, its 32-bit length.
    """
    cfg = build_cfg(program)
    live = Liveness(program, cfg, full_r0=raw_context)
    problems = [VerifierProblem(p.pc, p.code, p.message) for p in cfg.problems]
    problems += _unreachable(program, cfg)
    v = Verifier(program, cfg, live, max_insns=max_insns, max_loop_iterations=max_loop_iterations,
                 allow_uninit_stack=allow_uninit_stack, raw_context=raw_context)
    if not problems and program.insns:
        v.run()
    elif not program.insns:
        problems.append(VerifierProblem(0, "empty", "program is empty"))
    facts, depth = finalize(v, program, cfg, live)
    problems += v.problems
    if not any(p.code == "too_complex" for p in problems):
        problems += _combined_stack(cfg, depth)
    problems.sort(key=lambda p: p.pc)
    result = Analysis(program, cfg, live, facts, problems, depth, v.processed, raw_context=raw_context,
                      maps=tuple(v.maps))
    if strict and problems:
        first = problems[0]
        loc = program.line_info.get(first.pc)
        where = f"{program.source_path or program.name}: insn {first.pc}" + (f" ({loc})" if loc else "")
        raise VerificationError(first.message, problems=problems, where=where,
                                hint=f"{len(problems)} problem(s); code {first.code}")
    return result


__all__ = ["analyze", "Analysis", "VerificationError", "VerifierProblem", "InsnFacts", "MemAccess",
           "CFG", "BasicBlock", "CfgProblem", "FunctionInfo", "Loop", "build_cfg", "Liveness", "use_def",
           "LO", "HI", "Tnum", "Scalar", "Bounds", "RegKind", "RegState"]

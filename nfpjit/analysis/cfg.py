"""Control-flow graph of a linked eBPF program: basic blocks, functions, dominators and natural loops.

Blocks are named by the pc (slot index) of their first instruction.  Each
BPF-to-BPF callee is its own function with its own blocks; a call does not end
a block (control comes back to the next instruction), it is recorded as a call
site instead.  Structural defects the kernel's ``check_cfg`` rejects (jumps
out of the program or into another function, falling off the end of a
function) are collected as :class:`CfgProblem` values rather than raised, so
that the verifier can report them with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import JmpOp, PseudoSrc
from nfpjit.ebpf.program import Program


@dataclass(frozen=True)
class CfgProblem:
    pc: int
    code: str
    message: str


@dataclass(frozen=True)
class BasicBlock:
    """Instructions ``pcs`` executed in sequence; ``start``/``end`` are the first and last pc."""

    start: int
    end: int
    pcs: tuple[int, ...]
    function: str
    succs: tuple[int, ...]
    preds: tuple[int, ...]

    def __contains__(self, pc: int) -> bool:
        return pc in self.pcs


@dataclass(frozen=True)
class Loop:
    """A natural loop: ``header`` block, ``back_edges`` as (from insn pc, header pc), ``blocks`` in the body."""

    header: int
    back_edges: tuple[tuple[int, int], ...]
    blocks: frozenset[int]
    function: str


@dataclass(frozen=True)
class FunctionInfo:
    """A function's extent ``[start, end)`` in slots, its blocks and the local calls it makes."""

    name: str
    start: int
    end: int
    blocks: tuple[int, ...]
    calls: tuple[tuple[int, int], ...]  # (call pc, callee start pc)
    exits: tuple[int, ...]


@dataclass(frozen=True)
class CFG:
    blocks: dict[int, BasicBlock]
    functions: tuple[FunctionInfo, ...]
    idom: dict[int, int | None]
    loops: tuple[Loop, ...]
    problems: tuple[CfgProblem, ...]
    _block_of_pc: dict[int, int] = field(repr=False, compare=False)

    def block_at(self, pc: int) -> BasicBlock:
        """The block holding instruction ``pc``."""
        return self.blocks[self._block_of_pc[pc]]

    def function_at(self, pc: int) -> FunctionInfo:
        for fn in self.functions:
            if fn.start <= pc < fn.end:
                return fn
        raise KeyError(pc)

    def function_named(self, name: str) -> FunctionInfo:
        for fn in self.functions:
            if fn.name == name:
                return fn
        raise KeyError(name)

    def dominates(self, a: int, b: int) -> bool:
        """Whether block ``a`` dominates block ``b`` (every block dominates itself)."""
        node: int | None = b
        while node is not None:
            if node == a:
                return True
            node = self.idom.get(node)
        return False

    @cached_property
    def loop_headers(self) -> frozenset[int]:
        return frozenset(lp.header for lp in self.loops)

    @cached_property
    def back_edges(self) -> frozenset[tuple[int, int]]:
        return frozenset(e for lp in self.loops for e in lp.back_edges)

    def edges(self) -> list[tuple[int, int]]:
        return [(b.start, s) for b in self.blocks.values() for s in b.succs]


def insn_successors(insn: Insn, pc: int) -> list[int]:
    """Intra-procedural successors of one instruction (a call falls through; exit has none)."""
    if insn.is_exit:
        return []
    nxt = pc + insn.width
    if insn.is_branch:
        target = insn.jump_target(pc)
        if insn.jmp_op == JmpOp.JA:
            return [target]
        return [nxt] if target == nxt else [nxt, target]
    return [nxt]


def _function_starts(program: Program) -> dict[int, str]:
    starts: dict[int, str] = {}
    for fn in program.functions:
        if fn.start_pc in program.index_at_pc:  # a start elsewhere is no function (a Program made by hand)
            starts.setdefault(fn.start_pc, fn.name)
    if 0 not in starts:
        starts[0] = program.name or "main"
    for pc, insn in program.slots():
        target = func_target(insn, pc)
        if target is not None and 0 <= target < program.nslots and target in program.index_at_pc:
            starts.setdefault(target, f"sub_{target}")
    return dict(sorted(starts.items()))


def func_target(insn: Insn, pc: int) -> int | None:
    """The function a local call calls, or whose address an ld_imm64 ``func`` loads (a callback)."""
    if insn.is_local_call:
        return insn.jump_target(pc)
    if insn.is_ld_imm64 and insn.src == PseudoSrc.FUNC:
        return pc + 1 + insn.imm
    return None


def build_cfg(program: Program) -> CFG:
    """Split ``program`` into functions and basic blocks and compute dominators and loops."""
    problems: list[CfgProblem] = []
    if not program.insns:
        # nothing to split: no functions, no blocks (analyze reports the program as empty)
        return CFG({}, (), {}, (), (), {})
    starts = _function_starts(program)
    nslots = program.nslots
    valid = set(program.pcs)
    bounds = list(starts) + [nslots]
    fn_range = {bounds[i]: (bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)}

    def fn_of(pc: int) -> int:
        best = 0
        for s in starts:
            if s <= pc:
                best = s
        return best

    leaders: set[int] = set(starts)
    insn_succ: dict[int, list[int]] = {}
    for pc, insn in program.slots():
        fstart = fn_of(pc)
        lo, hi = fn_range[fstart]
        succ = []
        for t in insn_successors(insn, pc):
            if insn.is_branch and t == insn.jump_target(pc) and (t not in valid or not lo <= t < hi):
                if t not in valid:
                    problems.append(CfgProblem(pc, "jump_out_of_range", f"jump out of range from insn {pc} to {t}"))
                else:
                    problems.append(CfgProblem(pc, "jump_out_of_range",
                                               f"jump out of range from insn {pc} to {t} (into another function)"))
                continue
            if t >= hi:
                problems.append(CfgProblem(pc, "fall_off_end", "last insn is not an exit or jmp"))
                continue
            succ.append(t)
        if insn.is_local_call:
            t = insn.jump_target(pc)
            if t not in valid:
                problems.append(CfgProblem(pc, "jump_out_of_range", f"jump out of range from insn {pc} to {t}"))
        insn_succ[pc] = succ
        if insn.is_branch or insn.is_exit:
            nxt = pc + insn.width
            if nxt < nslots:
                leaders.add(nxt)
            for t in succ:
                leaders.add(t)

    blocks_pcs: dict[int, list[int]] = {}
    block_of: dict[int, int] = {}
    current: int | None = None
    for pc in program.pcs:
        if pc in leaders or current is None:
            current = pc
            blocks_pcs[current] = []
        blocks_pcs[current].append(pc)
        block_of[pc] = current

    succs: dict[int, list[int]] = {}
    for start, pcs in blocks_pcs.items():
        last = pcs[-1]
        out = []
        for t in insn_succ[last]:
            b = block_of[t]
            if b not in out:
                out.append(b)
        succs[start] = out
    preds: dict[int, list[int]] = {s: [] for s in blocks_pcs}
    for s, out in succs.items():
        for t in out:
            preds[t].append(s)

    blocks = {
        s: BasicBlock(s, pcs[-1], tuple(pcs), starts[fn_of(s)], tuple(succs[s]), tuple(preds[s]))
        for s, pcs in blocks_pcs.items()
    }

    idom: dict[int, int | None] = {}
    loops: list[Loop] = []
    functions: list[FunctionInfo] = []
    for fstart, name in starts.items():
        lo, hi = fn_range[fstart]
        fblocks = [s for s in blocks if lo <= s < hi]
        order = _reverse_postorder(fstart, succs)
        idom.update(_dominators(fstart, order, preds))
        calls = tuple((pc, program.at(pc).jump_target(pc)) for pc in program.pcs
                      if lo <= pc < hi and program.at(pc).is_local_call)
        exits = tuple(pc for pc in program.pcs if lo <= pc < hi and program.at(pc).is_exit)
        functions.append(FunctionInfo(name, lo, hi, tuple(fblocks), calls, exits))
        loops.extend(_natural_loops(order, succs, preds, idom, blocks, name))

    return CFG(blocks, tuple(functions), idom, tuple(loops), tuple(problems), block_of)


def _reverse_postorder(entry: int, succs: dict[int, list[int]]) -> list[int]:
    seen = {entry}
    post: list[int] = []
    stack = [(entry, iter(succs[entry]))]
    while stack:
        node, it = stack[-1]
        for s in it:
            if s not in seen:
                seen.add(s)
                stack.append((s, iter(succs[s])))
                break
        else:
            post.append(node)
            stack.pop()
    return post[::-1]


def _dominators(entry: int, order: list[int], preds: dict[int, list[int]]) -> dict[int, int | None]:
    """Immediate dominators of the blocks reachable from ``entry`` (Cooper, Harvey, Kennedy)."""
    index = {b: i for i, b in enumerate(order)}
    idom: dict[int, int] = {entry: entry}

    def intersect(a: int, b: int) -> int:
        while a != b:
            while index[a] > index[b]:
                a = idom[a]
            while index[b] > index[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for b in order[1:]:
            new = None
            for p in preds[b]:
                if p in idom and p in index:
                    new = p if new is None else intersect(p, new)
            if new is not None and idom.get(b) != new:
                idom[b] = new
                changed = True
    result: dict[int, int | None] = {b: d for b, d in idom.items()}
    result[entry] = None
    return result


def _natural_loops(order, succs, preds, idom, blocks, fname) -> list[Loop]:
    def dom(a: int, b: int) -> bool:
        node = b
        while node is not None:
            if node == a:
                return True
            node = idom.get(node)
        return False

    by_header: dict[int, list[tuple[int, int]]] = {}
    reachable = set(order)
    for b in order:
        for s in succs[b]:
            if dom(s, b):
                by_header.setdefault(s, []).append((blocks[b].end, s))
    loops = []
    for header, edges in by_header.items():
        body = {header}
        work = [blocks_start for blocks_start in (_block_of_end(blocks, e[0]) for e in edges)]
        while work:
            n = work.pop()
            if n in body or n not in reachable:
                continue
            body.add(n)
            work.extend(preds[n])
        loops.append(Loop(header, tuple(edges), frozenset(body), fname))
    return loops


def _block_of_end(blocks: dict[int, BasicBlock], end_pc: int) -> int:
    for b in blocks.values():
        if b.end == end_pc:
            return b.start
    raise KeyError(end_pc)

"""The lowering's own optimisations, declared as passes so they can be named, switched off and measured.

Each of these changes what :mod:`nfpjit.jit` emits for one kind of eBPF instruction, from
facts the analysis proves (the kind of thing the kernel verifier hands the real NFP JIT).
The lowering asks ``ctx.enabled("<name>")``; with the pass absent it emits the -O0 code.

``zext-elim`` — a 32-bit ALU result's high word is written only where some path reads it::

    w3 = w1; w3 += 4        mov ab6, b2 / add ab6, a6, 4 / immed ab7, 0     (-O0)
    (r3's high word dead)   mov ab6, b2 / add ab6, a6, 4                    (zext-elim)

``branch-fold`` — a conditional jump the analysis decides is a plain branch or nothing::

    if r3 > r2 goto L9      sub --, a4, b6 / subc --, a5, b7 / br.lo L9     (-O0)
    (never taken)           (nothing)                                       (branch-fold)

``save-live`` — a BPF-to-BPF call saves and restores only the halves of R6..R9 read after it::

    call fn                 8 saves + 8 restores of a12..b19 through *l$index1  (-O0)
    (only r6 live after)    2 saves + 2 restores                                (save-live)

``lm-reuse`` — stack accesses of one basic block share LM index pointer 0 when they fall
within its 16 words (a pointer write costs an instruction and 3 cycles before use)::

    *(u32 *)(r10 - 4) = r1  immed / csr_wr active_lm_addr_0 / 3 x nop / mov *l$index0[0] (-O0)
    *(u32 *)(r10 - 8) = r2  (again)
                            second access: mov *l$index0[7], b4 only         (lm-reuse)

``shift-range`` — a shift by a register whose range the analysis knows keeps one side of
the runtime "amount >= 32" test::

    r1 <<= r2 (r2 in 0..7)  br_bset on bit 5 of the amount, both forms      (-O0)
                            the "< 32" form only                            (shift-range)

``exit-range`` — the XDP exit's "is R0 a valid action?" check goes when the analysis proves it::

    exit (r0 = 2)           sub --, a0, 4 / br.hi .xdp_aborted / halt b0    (-O0)
                            halt b0                                         (exit-range)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nfpjit.passes.manager import Pass


@dataclass(frozen=True)
class ZextElim(Pass):
    name: ClassVar[str] = "zext-elim"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "skip the high-word write of a 32-bit result no path reads"


@dataclass(frozen=True)
class BranchFold(Pass):
    name: ClassVar[str] = "branch-fold"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "conditional jumps the analysis decides become a branch or nothing"


@dataclass(frozen=True)
class SaveLive(Pass):
    name: ClassVar[str] = "save-live"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "BPF-to-BPF calls save only the callee-saved halves read after the call"


@dataclass(frozen=True)
class LmReuse(Pass):
    name: ClassVar[str] = "lm-reuse"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "stack accesses of a block reuse LM index pointer 0"


@dataclass(frozen=True)
class ShiftRange(Pass):
    name: ClassVar[str] = "shift-range"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "shift amounts and XDP exit actions with a proven range need no runtime test"


@dataclass(frozen=True)
class ExitRange(Pass):
    name: ClassVar[str] = "exit-range"
    level: ClassVar[str] = "lower"
    summary: ClassVar[str] = "no XDP action check at an exit whose R0 is proven a valid action"

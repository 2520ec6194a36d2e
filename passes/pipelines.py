"""The named optimisation pipelines: the one place that says what -O0, -O1 and -O2 run.

A pipeline is a pass spelling (``"a,b{opt=1}"``, see :func:`nfpjit.passes.parse_pipeline`).
``lower`` passes in it switch optimisations inside the lowering (their position does not
matter); ``nfp`` passes run on the machine program after lowering, in the order given.

- ``-O0``: no passes: every eBPF instruction lowered on its own, the reference for every pass.
- ``-O1``: the lowering's analysis-based choices (what the kernel verifier gives the real JIT).
- ``-O2`` (the default of ``nfpjit compile``): -O1 plus every pass that pays on the corpus.
"""

from __future__ import annotations

O1 = "zext-elim,branch-fold,save-live,lm-reuse,shift-range,exit-range"

PIPELINES: dict[int, str] = {
    0: "",
    1: O1,
}

#: -O2's lowering passes (inside the lowering: order does not matter); the packet cache starts its
#: first fill at the program's entry (in the background) so the parse overlaps it
LOWER2 = "map-cache,subreg,mul-const,pkt-cache{early=true},memcpy-gather"
#: -O2's machine-level passes (passes/machine.py is their dataflow), after the lowering, in this order:
#: copies and constants first, dce between the rounds, the scheduler last
MACHINE = ("copy-prop,dce,const-fold,imm-materialise,neg-add-sub,ld-mask,ld-shift,reg-init,atomic-imm,copy-prop,"
           "dce,defer-fill")
PIPELINES[2] = ",".join((O1, LOWER2, MACHINE))

#: the level ``nfpjit compile`` and ``nfpjit.compile`` use when none is given
DEFAULT_LEVEL = 2

__all__ = ["PIPELINES", "DEFAULT_LEVEL", "O1", "LOWER2", "MACHINE"]

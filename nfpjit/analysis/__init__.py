"""Program analysis: what the kernel verifier tells the real JIT, computed by nfpjit itself.

Public API (names are stable; see docs/analysis.md):

- :func:`build_cfg` / :class:`CFG`: basic blocks, functions, dominators, natural loops.
- :class:`Liveness`: live register halves per instruction.
- :class:`Tnum`, :class:`Scalar`: the known-bits and range domains.
"""

from __future__ import annotations

from nfpjit.analysis.cfg import CFG, BasicBlock, CfgProblem, FunctionInfo, Loop, build_cfg
from nfpjit.analysis.liveness import HI, LO, Liveness, use_def
from nfpjit.analysis.scalar import Bounds, Scalar
from nfpjit.analysis.tnum import Tnum

__all__ = ["CFG", "BasicBlock", "CfgProblem", "FunctionInfo", "Loop", "build_cfg", "Liveness", "use_def",
           "LO", "HI", "Tnum", "Scalar", "Bounds"]

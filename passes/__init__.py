"""Optimisation passes and the pass manager (installed as ``nfpjit.passes``).

A pass is a small frozen dataclass with a kebab-case ``name``, the level it
works at (``"ebpf"`` before lowering, ``"nfp"`` after), and one ``run(unit)``
method that rewrites the unit in place and returns whether it changed
anything.  Its dataclass fields are its options, so a pipeline string such as
``"zext-elim,pkt-cache{window=64}"`` is complete and reproducible.

``REGISTRY`` maps pass names to lazy loaders so that starting the CLI does not
import every pass; passes never import each other.
"""

from nfpjit.passes.manager import (
    REGISTRY,
    Pass,
    PassError,
    PassManager,
    PassStat,
    available_passes,
    parse_pipeline,
    register,
)

__all__ = [
    "REGISTRY",
    "Pass",
    "PassError",
    "PassManager",
    "PassStat",
    "available_passes",
    "parse_pipeline",
    "register",
]

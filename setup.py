"""Package discovery for the three top-level source folders.

nfpjit/ installs as ``nfpjit``; isa/ and passes/ install as ``nfpjit.isa`` and
``nfpjit.passes`` so that users have one import namespace.  Everything else
lives in pyproject.toml.
"""
from pathlib import Path

from setuptools import setup

ROOTS = {"nfpjit": "nfpjit", "nfpjit.isa": "isa", "nfpjit.passes": "passes"}


def _packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            rel = init.parent.relative_to(folder).parts
            found.append(".".join((name, *rel)))
    return found


setup(packages=_packages(), package_dir=dict(ROOTS))

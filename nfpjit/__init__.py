"""nfpjit: compile eBPF programs for an NFP-like 32-bit SmartNIC and prove the result in a simulator.

Public API (the CLI is a thin layer over it):

- :func:`load` reads a program (ELF object, raw bytecode, eBPF assembly) into a
  :class:`~nfpjit.ebpf.program.Program`.
- :func:`compile` turns a program into an NFP-32 firmware image (:mod:`nfpjit.driver`).

Sub-packages: ``nfpjit.ebpf`` (front end and reference semantics),
``nfpjit.isa`` (the NFP-32 target), ``nfpjit.passes`` (optimisation passes).
See docs/architecture.md for the map.
"""

from __future__ import annotations

__version__ = "0.1.0"


def check(path_or_program, section=None, profile="default", **options):
    """Offload capability report for a program (path or Program) against a NIC profile (name, path or Profile).

    Returns a :class:`nfpjit.offload.Report`; see :func:`nfpjit.offload.check_program` for the options.
    """
    from nfpjit.offload import check_program

    return check_program(path_or_program, section, profile, **options)


def load(path, *, section: str | None = None, fmt: str | None = None):
    """Load a program: an ELF object (``section`` picks one of several), ``.s``/``.asm`` eBPF assembly,
    or raw bytecode (``fmt="raw"``).  Returns a :class:`nfpjit.ebpf.program.Program`."""
    from nfpjit.ebpf.loader import load as _load  # lazy: `import nfpjit` stays cheap

    return _load(path, section=section, fmt=fmt)


def compile(program_or_path, *, section=None, opt_level=2, profile="default", passes=None, **options):
    """Compile an XDP/TC program (path or Program) to an NFP-32 firmware image (-O2 unless told).

    Returns a :class:`nfpjit.driver.CompileResult` (``.image``, ``.report``, ``.stats`` ...);
    raises :class:`nfpjit.driver.CompileError` listing the diagnostics when ``profile`` rejects it.
    ``options`` are :func:`nfpjit.driver.compile`'s (``disable``, ``print_after``, ``verify_each`` ...).
    """
    from nfpjit.driver import compile as _compile

    return _compile(program_or_path, section=section, opt_level=opt_level, profile=profile, passes=passes,
                    **options)

"""Offload capability report: can this eBPF program run on the NIC, and if not, every reason why.

- :mod:`nfpjit.offload.profile`: NIC capability profiles (TOML) and :func:`load_profile`.
- :mod:`nfpjit.offload.report`: :func:`check` and the :class:`Diagnostic` values it returns.
- :mod:`nfpjit.offload.render`: compiler-style text and JSON output.
- :mod:`nfpjit.offload.device`: :class:`Device`, programs loaded and attached onto a virtual NIC.

``nfpjit.check(path_or_program, ...)`` is the one-call public entry point.
"""

from __future__ import annotations

from nfpjit.offload.profile import Features, Profile, builtin_profiles, load_profile
from nfpjit.offload.report import Code, Diagnostic, Report, Severity, check

__all__ = [
    "Features", "Profile", "builtin_profiles", "load_profile",
    "Code", "Diagnostic", "Report", "Severity", "check",
    "render_text", "render_json", "check_program", "run_analysis", "Device",
]


def __getattr__(name: str):
    # lazily: `import nfpjit.offload` stays cheap (the device API pulls in sockets and pyroute2 on use)
    if name == "Device":
        from nfpjit.offload.device import Device

        return Device
    if name in ("render_text", "render_json"):  # text/JSON output: not on the path of `nfpjit compile`
        from nfpjit.offload import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_program(path_or_program, section: str | None = None, profile="default", *, analysis=None,
                  analyze: bool = True, unsupported_opcodes=(), nfp_insn_count: int | None = None) -> Report:
    """Load (when given a path) and check a program; ``profile`` is a name, a path or a :class:`Profile`.

    The checks always read the facts of :func:`nfpjit.analysis.analyze` (``analysis`` when given,
    else run here).  ``analyze=False`` only leaves out the ``verifier`` diagnostics, the problems
    a kernel verifier would also reject; the NIC's own limits are checked either way.
    """
    from nfpjit.ebpf.program import Program

    if isinstance(path_or_program, Program):
        program = path_or_program
    else:
        import nfpjit

        program = nfpjit.load(path_or_program, section=section)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    return check(program, prof, analysis=analysis, verifier_problems=analyze,
                 unsupported_opcodes=unsupported_opcodes, nfp_insn_count=nfp_insn_count)


def run_analysis(program):
    """The full analysis of ``program`` (``nfpjit.analysis.analyze``)."""
    from nfpjit.analysis import analyze

    return analyze(program)

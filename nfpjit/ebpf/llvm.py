"""LLVM IR to BPF objects through llvmlite, so that IR-producing front ends need no external clang.

:func:`compile_ir` turns LLVM IR text into the bytes of a BPF ELF object (the
same kind of file ``clang -target bpf -c`` writes); :func:`load_ir` goes on to
read it with the ELF front end.  Program sections, ``license`` and maps are
declared in the IR as clang would emit them (``section "xdp"`` on the
function, ``llvm.used`` to keep it).
"""

from __future__ import annotations

import warnings

from nfpjit.errors import LoadError, UsageError
from nfpjit.ebpf.program import Program

CPUS = ("generic", "v1", "v2", "v3", "v4")
TRIPLE = "bpfel"


def _binding():
    import llvmlite.binding as llvm

    with warnings.catch_warnings():  # older llvmlite needs initialize(); newer ones warn that it is not needed
        warnings.simplefilter("ignore")
        try:
            llvm.initialize()
        except RuntimeError:
            pass
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


def compile_ir(ir_text: str, *, cpu: str = "v3", opt: int = 2, filename: str = "<ir>") -> bytes:
    """Compile LLVM IR text for little-endian BPF; returns the ELF object bytes.

    Raises :class:`LoadError` when the IR does not parse or verify (LLVM's
    message included) and :class:`UsageError` for an unknown ``cpu``.
    """
    if cpu not in CPUS:
        raise UsageError(f"unknown BPF cpu {cpu!r}", hint=f"use one of {', '.join(CPUS)}")
    llvm = _binding()
    try:
        module = llvm.parse_assembly(ir_text)
        module.verify()
    except RuntimeError as exc:
        raise LoadError(f"LLVM IR does not parse or verify: {str(exc).strip()}", where=filename) from exc
    module.triple = TRIPLE
    try:
        target = llvm.Target.from_triple(TRIPLE)
    except RuntimeError as exc:
        raise LoadError("this llvmlite build has no BPF target", where=filename) from exc
    machine = target.create_target_machine(cpu=cpu, opt=opt, reloc="static")
    return bytes(machine.emit_object(module))


def load_ir(ir_text: str, *, cpu: str = "v3", section: str | None = None, filename: str = "<ir>") -> Program:
    """Compile LLVM IR and load the program in ``section`` from the resulting object."""
    from nfpjit.ebpf.elf import load_elf

    return load_elf(filename, section=section, data=compile_ir(ir_text, cpu=cpu, filename=filename))


__all__ = ["compile_ir", "load_ir", "CPUS"]

"""One entry point for every program input format: ELF objects, eBPF assembly and raw bytecode.

:func:`load` picks the format from the content (ELF magic) or the file name
(``.s``/``.asm`` is assembly); anything else is raw little-endian bytecode.
``fmt=`` forces a format: ``"elf"``, ``"asm"`` or ``"raw"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from nfpjit.errors import LoadError, UsageError
from nfpjit.ebpf.program import Program

FORMATS = ("elf", "asm", "raw")
_ASM_SUFFIXES = (".s", ".asm")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}", where=path) from exc


def detect_format(path: str, data: bytes) -> str:
    """``"elf"``, ``"asm"`` or ``"raw"`` for a file's name and content."""
    from nfpjit.ebpf.elf import ELF_MAGIC

    if data.startswith(ELF_MAGIC):
        return "elf"
    if path.lower().endswith(_ASM_SUFFIXES):
        return "asm"
    return "raw"


def load(path: str | os.PathLike, *, section: str | None = None, fmt: str | None = None) -> Program:
    """Load one program from ``path``.

    ``section`` picks the program of a multi-program ELF object (the error
    lists the choices when it is needed and missing); it must be None for
    the other formats.
    """
    path = os.fspath(path)
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown input format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    data = _read(path)
    kind = fmt or detect_format(path, data)
    if kind == "elf":
        from nfpjit.ebpf.elf import load_elf

        return load_elf(path, section=section, data=data)
    if section is not None:
        raise UsageError(f"section {section!r} given, but {path} is not an ELF object")
    name = Path(path).stem
    if kind == "asm":
        from nfpjit.ebpf.asm import assemble

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LoadError(f"assembly source is not UTF-8 (byte {exc.start})", where=path) from exc
        return assemble(text, filename=path)
    from nfpjit.ebpf.insn import decode

    from nfpjit.ebpf.program import Function

    return Program(name=name, insns=tuple(decode(data, where=path)), functions=(Function(name, 0),), source_path=path)


def list_programs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(section, function name)`` of every program in an ELF object; one ``("", name)`` for other formats."""
    path = os.fspath(path)
    data = _read(path)
    if detect_format(path, data) == "elf":
        from nfpjit.ebpf.elf import list_elf_programs

        return list_elf_programs(data, path)
    return [("", Path(path).stem)]


__all__ = ["load", "list_programs", "detect_format", "FORMATS"]

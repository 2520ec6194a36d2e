"""``nfpjit asm``: assemble eBPF (or NFP-32) assembly, or disassemble raw eBPF bytecode.

``nfpjit asm prog.s -o prog.bin`` writes the raw bytecode (8-byte little-endian
instructions, 16 for ld_imm64); without ``-o`` it prints a listing of slot,
bytes and instruction.  ``--disassemble`` reads raw bytecode and prints
assembly that re-assembles to the same bytes.  ``--target nfp32`` hands the
text to the NFP-32 assembler and writes its firmware image.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nfpjit.errors import AsmError, LoadError, UnsupportedError, UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "asm", help="assemble eBPF or NFP-32 assembly (or disassemble raw eBPF bytecode)",
        description="Assemble eBPF assembly (uBPF/bpf_conformance syntax, docs/ebpf-asm.md) into raw "
        "bytecode, NFP-32 assembly into a firmware image, or disassemble raw eBPF bytecode.")
    parser.add_argument("file", metavar="FILE", help="assembly source (raw bytecode with --disassemble)")
    parser.add_argument("-o", "--output", metavar="OUT", help="write the result here instead of listing it")
    parser.add_argument("--target", choices=("ebpf", "nfp32"), default="ebpf", help="instruction set (default ebpf)")
    parser.add_argument("--disassemble", action="store_true", help="FILE is raw eBPF bytecode: print its assembly")
    parser.set_defaults(func=run)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AsmError(f"cannot read: {exc.strerror}", where=path) from None
    except UnicodeDecodeError:
        raise AsmError("not a UTF-8 text file", where=path,
                       hint="assembly is text; use --disassemble for raw bytecode") from None


def _write(path: str, data: bytes | str) -> None:
    try:
        if isinstance(data, str):
            Path(path).write_text(data, encoding="utf-8")
        else:
            Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", where=path) from None


def listing(insns) -> str:
    """``slot: bytes  instruction`` lines for assembled eBPF code."""
    from nfpjit.ebpf.disasm import format_insn
    from nfpjit.ebpf.insn import pcs_of

    lines = []
    for pc, insn in zip(pcs_of(insns), insns):
        raw = insn.encode()
        lines.append(f"{pc:5d}: {raw[:8].hex(' ')}  {format_insn(insn, pc)}")
        if len(raw) > 8:
            lines.append(f"{pc + 1:5d}: {raw[8:].hex(' ')}")
    return "\n".join(lines) + "\n"


def _hexdump(data: bytes) -> str:
    return "".join(f"{i:08x}: {data[i:i + 16].hex(' ')}\n" for i in range(0, len(data), 16))


def run(args) -> int:
    if args.disassemble:
        if args.target != "ebpf":
            raise UsageError("--disassemble reads eBPF bytecode only", hint="use `nfpjit disasm` for NFP-32 images")
        from nfpjit.ebpf.disasm import disassemble
        from nfpjit.ebpf.insn import decode

        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror}", where=args.file) from None
        text = disassemble(decode(data, where=args.file))
        if args.output:
            _write(args.output, text)
        else:
            sys.stdout.write(text)
        return 0
    text = _read_text(args.file)
    if args.target == "nfp32":
        try:
            from nfpjit.isa.asm import assemble_image
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("nfpjit.isa"):
                raise UnsupportedError("the NFP-32 assembler is not available in this build",
                                       hint="use --target ebpf") from None
            raise
        image = assemble_image(text, filename=args.file)
        if args.output:
            _write(args.output, image)
        else:
            sys.stdout.write(_hexdump(image))
        return 0
    from nfpjit.ebpf.asm import assemble
    from nfpjit.ebpf.insn import encode_program

    prog = assemble(text, filename=args.file)
    if args.output:
        _write(args.output, encode_program(prog.insns))
    else:
        sys.stdout.write(listing(prog.insns))
    return 0

"""What several subcommands share: the program input options and short eBPF instruction texts.

(``dump xlated`` and ``dump jited`` both use these; keeping them here lets ``dump`` import its
``jited`` view without the view importing ``dump`` back.)
"""

from __future__ import annotations

from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import PseudoSrc
from nfpjit.ebpf.program import Program


def add_input_options(parser) -> None:
    """OBJ, -s/--section and --raw: shared by every ``dump`` view."""
    parser.add_argument("obj", metavar="OBJ", help="ELF object, eBPF assembly (.s/.asm) or raw bytecode")
    parser.add_argument("-s", "--section", metavar="SECTION[:FUNC]",
                        help="program section of a multi-program object (SECTION:FUNC when a section holds several)")
    parser.add_argument("--raw", action="store_true", help="read OBJ as raw little-endian bytecode")


def load_from_args(args) -> Program:
    from nfpjit import load

    return load(args.obj, section=args.section, fmt="raw" if args.raw else None)


def insn_text(insn: Insn, pc: int) -> str:
    """The eBPF disassembly of one instruction (raw fields when the disassembler cannot load)."""
    try:
        from nfpjit.ebpf.disasm import insn_text as text
    except ImportError:  # the disassembler is optional for these views
        return f"code=0x{insn.code:02x} dst=r{insn.dst} src={insn.src} off={insn.off} imm={insn.imm}"
    return text(insn, pc)


def map_ref(program: Program, insn: Insn) -> tuple[str, int | None] | None:
    """``(map name, value offset or None)`` for an ld_imm64 that refers to one of the program's maps."""
    if not insn.is_ld_imm64 or insn.src not in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE):
        return None
    if not 0 <= insn.imm < len(program.maps):
        return None
    name = program.maps[insn.imm].name
    return (name, insn.imm2) if insn.src == PseudoSrc.MAP_VALUE else (name, None)


__all__ = ["add_input_options", "load_from_args", "insn_text", "map_ref"]

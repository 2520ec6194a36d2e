"""``nfpjit dump jited``: the NFP-32 code a program compiles to, next to the eBPF it came from.

``nfpjit dump jited (OBJ|IMAGE) [-s SEC] [--opcodes] [--linum] [--json]``.  Given an eBPF object it
compiles the program (``-O``, ``--profile`` as for ``nfpjit compile``) and shows, like
``bpftool prog dump jited linum``, each C source line, then each eBPF instruction, then the NFP
instructions it became with their addresses.  Given a firmware image (an ELF file with
``e_machine`` EM_NFP) it needs nothing else: the image's line table gives the eBPF instruction
index and source position of every address (the eBPF text and the C source text are not in the
image, so those lines show the index and ``file:line:col``).  ``--opcodes`` adds the 64-bit code
words.  The ``--json`` schema is in docs/jit.md.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from nfpjit.errors import LoadError, UsageError


@dataclass(frozen=True)
class NfpLine:
    address: int
    word: int
    text: str


@dataclass(frozen=True)
class Block:
    """Consecutive NFP instructions from one eBPF instruction (``pc`` -1: none, e.g. a prologue)."""

    pc: int
    file: str
    line: int
    col: int
    nfp: tuple[NfpLine, ...]


def register(views) -> None:
    from nfpjit.cli.common import add_input_options

    p = views.add_parser("jited", help="the NFP-32 code of a compiled program or a firmware image",
                         description="Show each C source line, its eBPF instructions and the NFP-32 "
                         "instructions they compile to.  IMAGE: a .nffw from `nfpjit compile`.")
    add_input_options(p)
    p.add_argument("--opcodes", action="store_true", help="show each NFP instruction's 64-bit code word")
    p.add_argument("--linum", action="store_true", help="show file:line:col with each source line")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/jit.md)")
    p.add_argument("--profile", default="default", metavar="NAME|FILE",
                   help="NIC capability profile when compiling OBJ (default: %(default)s)")
    from nfpjit.cli.passopts import add_pass_options

    add_pass_options(p)
    p.set_defaults(func=run_jited)


def is_image_file(path) -> bool:
    """True when ``path`` is an ELF file for EM_NFP (a firmware image) rather than an eBPF object."""
    from nfpjit.isa.image import EM_NFP

    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[:4] == b"\x7fELF" and struct.unpack_from("<H", head, 18)[0] == EM_NFP


def _labels(image) -> dict[int, str]:
    from nfpjit.isa.disasm import branch_targets
    from nfpjit.isa.encoding import decode_words
    from nfpjit.isa.image import SymbolKind

    labels = {s.address: s.name for s in image.symbols if s.kind == SymbolKind.SUBPROG}
    for t in sorted(branch_targets(decode_words(image.code))):
        if t < len(image.code):
            labels.setdefault(t, f"L{t}")
    return labels


def nfp_lines(image) -> list[NfpLine]:
    """Every code word of ``image`` as assembly text, map ids and firmware calls named."""
    from nfpjit.isa.disasm import format_instruction
    from nfpjit.isa.encoding import decode
    from nfpjit.isa.image import RelocKind
    from nfpjit.isa.operands import IsaError

    labels = _labels(image)
    relocs = {r.address: r for r in image.relocations}
    out = []
    for addr, word in enumerate(image.code):
        r = relocs.get(addr)
        try:
            instr = decode(word)
            if r is not None and r.kind == RelocKind.MAP_ID:
                text = format_instruction(instr, labels, imm_text=f"map({r.symbol})")
            elif r is not None:
                # the target field holds a placeholder until the loader relocates it: name the routine
                name = r.symbol + (f" + {r.addend}" if r.addend else "")
                text = format_instruction(instr, {**labels, instr.target: name}) + "  ; relocated at load"
            else:
                text = format_instruction(instr, labels)
        except IsaError as exc:
            text = f".word {word:#018x}  ; undecodable: {exc.message}"
        out.append(NfpLine(addr, word, text))
    return out


def blocks(image) -> list[Block]:
    """The code split where the line table's eBPF instruction changes."""
    lines = nfp_lines(image)
    starts = sorted(image.line_table, key=lambda e: e.address)
    result: list[Block] = []
    for i, entry in enumerate(starts):
        end = starts[i + 1].address if i + 1 < len(starts) else len(lines)
        if end <= entry.address:
            continue
        result.append(Block(entry.insn_index, entry.file, entry.line, entry.col, tuple(lines[entry.address:end])))
    first = starts[0].address if starts else len(lines)
    if first > 0:
        result.insert(0, Block(-1, "", 0, 0, tuple(lines[:first])))
    return result


def source_finder(program):
    """pc -> SourceLoc of the program (None without a program)."""
    if program is None:
        return None
    from nfpjit.driver import source_loc_finder

    return source_loc_finder(program)


def _ebpf_text(program, pc: int) -> str | None:
    from nfpjit.cli.common import insn_text as _insn_text, map_ref

    if program is None or pc not in program.index_at_pc:
        return None
    insn = program.at(pc)
    text = f"({insn.code:02x}) " + _insn_text(insn, pc)
    ref = map_ref(program, insn)
    if ref is not None:
        text += f"  ; map {ref[0]}" + (f" + {ref[1]}" if ref[1] is not None else "")
    return text


def jited_text(image, program=None, *, opcodes: bool = False, linum: bool = False) -> str:
    """The ``dump jited`` listing; ``program`` (the eBPF program) adds the eBPF and C source text."""
    from nfpjit.isa.image import SymbolKind

    out = []
    if image.maps:
        out.append("maps:")
        for m in image.maps:
            out.append(f"  [{m.id}] {m.name}: {m.type.name.lower()}  key {m.key_size}B  value {m.value_size}B  "
                       f"max_entries {m.max_entries}")
        out.append("")
    funcs = {s.address: s.name for s in image.symbols if s.kind == SymbolKind.SUBPROG}
    find = source_finder(program)
    last_src = None
    for b in blocks(image):
        if b.nfp and b.nfp[0].address in funcs:
            if out and out[-1] != "":
                out.append("")
            out.append(f"{funcs[b.nfp[0].address]}:")
        if b.file:
            key = (b.file, b.line)
            if key != last_src:
                found = find(b.pc) if find is not None else None
                text = found.text if found is not None else None
                comment = f"; {text}" if text else f"; {b.file}:{b.line}"
                if linum and text:
                    comment += f" [{b.file}:{b.line}:{b.col}]"
                elif linum:
                    comment += f":{b.col}"
                out.append(comment)
                last_src = key
        if b.pc >= 0:
            ebpf = _ebpf_text(program, b.pc)
            out.append(f"{b.pc:4d}: {ebpf}" if ebpf else f"{b.pc:4d}: (eBPF insn {b.pc})")
        else:
            out.append("   -: (no eBPF instruction)")
        for n in b.nfp:
            line = f"        {n.address:04x}:  {n.text}"
            if opcodes:
                line = f"{line:<60} {n.word:016x}"
            out.append(line)
    return "\n".join(out) + "\n"


def jited_json(image, program=None) -> dict:
    """The ``dump jited --json`` document (schema: docs/jit.md)."""
    from nfpjit.isa.image import SymbolKind

    md = image.metadata
    find = source_finder(program)
    insns = []
    for b in blocks(image):
        source = None
        if b.file:
            source = {"file": b.file, "line": b.line, "col": b.col, "text": None}
            found = find(b.pc) if find is not None else None
            if found is not None:
                source["text"] = found.text
        insns.append({"index": b.pc, "text": _ebpf_text(program, b.pc) if b.pc >= 0 else None, "source": source,
                      "nfp": [{"address": n.address, "word": f"{n.word:016x}", "text": n.text} for n in b.nfp]})
    return {
        "name": md.name, "prog_type": md.prog_type.name.lower(), "profile": md.profile,
        "tag": md.source_tag.hex(), "stack_size": md.stack_size, "entry": md.entry, "passes": list(md.passes),
        "nfp_insns": len(image.code),
        "maps": [{"id": m.id, "name": m.name, "type": m.type.name.lower(), "key_size": m.key_size,
                  "value_size": m.value_size, "max_entries": m.max_entries} for m in image.maps],
        "functions": [{"name": s.name, "address": s.address, "size": s.size}
                      for s in image.symbols if s.kind == SymbolKind.SUBPROG],
        "insns": insns,
    }


def load_jited(args):
    """(image, program or None) from the command line: read an image, or compile an object."""
    if is_image_file(args.obj):
        from nfpjit.isa.image import read_image

        if args.section:
            raise UsageError("-s/--section selects a program of an eBPF object, not of an image")
        return read_image(args.obj), None
    from nfpjit.cli.common import load_from_args
    from nfpjit.driver import compile
    from nfpjit.offload import load_profile

    try:
        profile = load_profile(args.profile)
    except LoadError as exc:
        raise UsageError(exc.message, where=exc.where, hint=exc.hint) from None
    from nfpjit.cli.passopts import compile_options, report

    program = load_from_args(args)
    result = compile(program, profile=profile, **compile_options(args))
    report(args, result)
    return result.image, program


def run_jited(args) -> int:
    if not Path(args.obj).exists():
        raise LoadError("no such file", where=args.obj)
    image, program = load_jited(args)
    if args.json:
        sys.stdout.write(json.dumps(jited_json(image, program), indent=1) + "\n")
    else:
        sys.stdout.write(jited_text(image, program, opcodes=args.opcodes, linum=args.linum))
    return 0

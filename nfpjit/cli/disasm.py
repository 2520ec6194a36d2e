"""``nfpjit disasm``: list the NFP-32 code of a firmware image (or of raw code words).

``nfpjit disasm IMAGE`` prints assembly that ``nfpjit.isa.asm`` re-assembles
to the same words: directives for the program type, stack, entry and maps,
labels for subprograms and branch targets, ``map(NAME)`` where a relocation
patches in a map id, and the source line from the image's line table as a
comment.  ``--listing`` adds address and word to every line; ``--raw`` reads
a file of 8-byte little-endian words instead of an image; ``--json`` prints
the schema documented in docs/isa-design.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nfpjit.errors import ImageError


def register(subparsers) -> None:
    parser = subparsers.add_parser("disasm", help="disassemble an NFP-32 firmware image",
                                   description="List the NFP-32 code of a firmware image as re-assemblable text.")
    parser.add_argument("image", metavar="IMAGE", help="firmware image (or raw code words with --raw)")
    parser.add_argument("--raw", action="store_true", help="IMAGE is a file of 8-byte little-endian code words")
    parser.add_argument("--listing", action="store_true", help="show address and word on every line")
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/isa-design.md)")
    parser.set_defaults(func=run)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}", where=path) from None


def load_image(path: str, raw: bool):
    """The image at ``path``; with ``raw`` an image holding only the words of the file."""
    from nfpjit.isa.image import Image

    data = _read(path)
    if not raw:
        return Image.from_bytes(data, where=path)
    if len(data) % 8:
        raise ImageError(f"raw code is {len(data)} bytes, not a multiple of 8", where=path,
                         hint="--raw expects 8-byte little-endian words; drop --raw for an image file")
    words = tuple(int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8))
    return Image(code=words)


def _annotations(image):
    from nfpjit.isa.image import RelocKind, SymbolKind

    symbols = {s.address: s.name for s in image.symbols if s.kind == SymbolKind.SUBPROG}
    imm_texts = {r.address: f"map({r.symbol})" for r in image.relocations
                 if r.kind == RelocKind.MAP_ID and r.addend == 0}
    comments = {}
    for e in image.line_table:
        src = e.source()
        if src:
            comments[e.address] = src + (f" (eBPF insn {e.insn_index})" if e.insn_index >= 0 else "")
    return symbols, imm_texts, comments


def render_text(image, *, listing: bool = False, raw: bool = False) -> str:
    from nfpjit.isa.disasm import disassemble

    symbols, imm_texts, comments = _annotations(image)
    head = []
    if not raw:
        md = image.metadata
        head.append(f".prog_type {md.prog_type.name.lower()}")
        if md.stack_size:
            head.append(f".stack {md.stack_size}")
        for m in sorted(image.maps, key=lambda m: m.id):
            flags = f" flags={m.flags}" if m.flags else ""
            head.append(f".map {m.name} {m.type.name.lower()} key={m.key_size} value={m.value_size} "
                        f"entries={m.max_entries}{flags}")
        for d in image.data:  # initial contents of global-data maps (.data/.rodata/.bss)
            head.append(f".data {d.map} " + ", ".join(f"{b:#04x}" for b in d.data))
        if image.code:
            if md.entry not in symbols:
                symbols = dict(symbols)
                symbols[md.entry] = "entry"
            head.append(f".entry {symbols[md.entry]}")
    body = disassemble(image.code, symbols, listing=listing, imm_texts=imm_texts, comments=comments)
    return "\n".join(head) + ("\n" if head else "") + body


def render_json(image, *, raw: bool = False) -> dict:
    from nfpjit.isa.disasm import format_instruction
    from nfpjit.isa.encoding import decode

    _, imm_texts, _ = _annotations(image)
    md = image.metadata
    out = {
        "isa": md.isa, "isa_version": md.isa_version,
        "prog_type": None if raw else md.prog_type.name.lower(),
        "entry": md.entry, "stack_size": md.stack_size, "name": md.name,
        "maps": [{"id": m.id, "name": m.name, "type": m.type.name.lower(), "key_size": m.key_size,
                  "value_size": m.value_size, "max_entries": m.max_entries, "flags": m.flags} for m in image.maps],
        "symbols": [{"name": s.name, "kind": s.kind.name.lower(), "address": s.address, "size": s.size}
                    for s in image.symbols],
        "relocations": [{"address": r.address, "kind": r.kind.name.lower(), "symbol": r.symbol, "addend": r.addend}
                        for r in image.relocations],
        "instructions": [],
    }
    for addr, word in enumerate(image.code):
        instr = decode(word)
        line = image.line_for(addr) if image.line_table else None
        out["instructions"].append({
            "address": addr, "word": f"{word:#018x}", "op": instr.entry.mnemonic,
            "text": format_instruction(instr, imm_text=imm_texts.get(addr)),
            "source": line.source() if line else None,
            "insn_index": line.insn_index if line and line.insn_index >= 0 else None,
        })
    return out


def run(args) -> int:
    from nfpjit.isa.operands import IllegalInstruction

    image = load_image(args.image, args.raw)
    try:
        if args.json:
            json.dump(render_json(image, raw=args.raw), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(render_text(image, listing=args.listing, raw=args.raw))
    except IllegalInstruction as exc:
        raise IllegalInstruction(exc.message, where=f"{args.image}: {exc.where}" if exc.where else args.image,
                                 hint=exc.hint) from None
    return 0

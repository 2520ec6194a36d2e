"""``nfpjit dump``: show what a program turns into.

``nfpjit dump xlated OBJ`` lists the loaded (relocated and linked) eBPF
program the way ``bpftool prog dump xlated`` does: the maps, then one line
per instruction with its slot index, the C source line above the
instructions it produced, optionally the raw bytes (``--opcodes``) and the
source position (``--linum``).  ``--json`` prints the schema documented in
docs/dump-json.md.  Other views (``dump jited``) register further
sub-subcommands on the same ``dump`` parser.
"""

from __future__ import annotations

import json
import sys

from nfpjit.cli.common import add_input_options, insn_text as _insn_text, load_from_args, map_ref
from nfpjit.ebpf.program import Program

VIEWS: list = []  # functions(dump_subparsers) that add further views, e.g. "jited"


def register(subparsers) -> None:
    parser = subparsers.add_parser("dump", help="show a program as loaded (xlated) or compiled (jited)",
                                   description="Show what a program turns into.")
    views = parser.add_subparsers(dest="view", metavar="VIEW", parser_class=type(parser))
    views.required = True
    x = views.add_parser("xlated", help="the loaded eBPF program (like bpftool prog dump xlated)",
                         description="List the relocated, linked eBPF program with maps and C source lines.")
    add_input_options(x)
    x.add_argument("--opcodes", action="store_true", help="show the raw bytes of each instruction")
    x.add_argument("--linum", action="store_true", help="show file:line:col with each source line")
    x.add_argument("--json", action="store_true", help="machine-readable output (docs/dump-json.md)")
    x.set_defaults(func=run_xlated)
    for add_view in VIEWS:
        add_view(views)
    from nfpjit.cli import dump_jited

    dump_jited.register(views)


def xlated_json(program: Program) -> dict:
    """The ``dump xlated --json`` document (schema: docs/dump-json.md)."""
    insns = []
    for pc, insn in program.slots():
        loc = program.line_info.get(pc)
        entry = {
            "index": pc,
            "code": insn.code,
            "dst": insn.dst,
            "src": int(insn.src),
            "off": insn.off,
            "imm": insn.imm64 if insn.is_ld_imm64 else insn.imm,
            "text": _insn_text(insn, pc),
            "source": None if loc is None else {"file": loc.file, "line": loc.line, "col": loc.col,
                                                "text": loc.text},
        }
        ref = map_ref(program, insn)
        if ref is not None:
            entry["map"] = ref[0]
            if ref[1] is not None:
                entry["map_offset"] = ref[1]
        if pc in program.kfuncs:
            entry["kfunc"] = program.kfuncs[pc]
        insns.append(entry)
    return {"section": program.section, "name": program.name, "insns": insns,
            "maps": [m.to_json() for m in program.maps]}


def xlated_text(program: Program, *, opcodes: bool = False, linum: bool = False) -> str:
    lines = []
    if program.maps:
        lines.append("maps:")
        for i, m in enumerate(program.maps):
            lines.append(f"  [{i}] {m.name}: {m.type.kernel_name}  key {m.key_size}B  value {m.value_size}B  "
                         f"max_entries {m.max_entries}  flags 0x{m.flags:x}")
            if m.inner is not None:
                t = m.inner
                slots = ", ".join(f"[{k.hex()}] = {inner.name}" for k, inner in m.slots)
                lines.append(f"      inner: {t.type.kernel_name}  key {t.key_size}B  value {t.value_size}B  "
                             f"max_entries {t.max_entries}" + (f"  values {{{slots}}}" if slots else ""))
        lines.append("")
    starts = {fn.start_pc: fn.name for fn in program.functions}
    last_loc = None
    for pc, insn in program.slots():
        if pc in starts:
            if pc:
                lines.append("")
            lines.append(f"{starts[pc]}:")
        loc = program.line_info.get(pc)
        if loc is not None and (loc.file, loc.line, loc.text) != last_loc:
            comment = f"; {loc.text}"
            if linum:
                comment += f" [{loc.file}:{loc.line}:{loc.col}]"
            lines.append(comment)
            last_loc = (loc.file, loc.line, loc.text)
        text = _insn_text(insn, pc)
        ref = map_ref(program, insn)
        if ref is not None:
            text += f"  ; map {ref[0]}" + (f" + {ref[1]}" if ref[1] is not None else "")
        if pc in program.kfuncs:   # bpftool: call <kfunc name>#<btf id>
            text += f"  ; {program.kfuncs[pc]}#{insn.imm}"
        lines.append(f"{pc:4d}: ({insn.code:02x}) {text}")
        if opcodes:
            lines.append("      " + " ".join(f"{b:02x}" for b in insn.encode()))
    return "\n".join(lines) + "\n"


def run_xlated(args) -> int:
    program = load_from_args(args)
    if args.json:
        sys.stdout.write(json.dumps(xlated_json(program), indent=1) + "\n")
    else:
        sys.stdout.write(xlated_text(program, opcodes=args.opcodes, linum=args.linum))
    return 0

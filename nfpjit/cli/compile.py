"""``nfpjit compile``: compile an XDP/TC program to an NFP-32 firmware image.

``nfpjit compile OBJ [-s SEC] [-o OUT.nffw] [-O0|-O1|-O2] [--profile NAME|FILE] [--json]`` (plus the
pass options of :mod:`nfpjit.cli.passopts`; -O2 by default) writes
the image (default: OBJ with the suffix ``.nffw``) and prints one summary line: eBPF and NFP
instruction counts, stack and maps.  When the capability profile rejects the program it prints
the errors and exits 1 (with ``--json``, the document carries the full report).  The JSON
schema is in docs/jit.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nfpjit.errors import LoadError, UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("compile", help="compile a program to an NFP-32 firmware image",
                              description="Compile an XDP/TC eBPF program for the NIC and write the firmware image.")
    p.add_argument("obj", metavar="OBJ", help="ELF object, eBPF assembly (.s/.asm) or raw bytecode (--raw)")
    p.add_argument("-s", "--section", metavar="SECTION[:FUNC]", help="program section of a multi-program object")
    p.add_argument("--raw", action="store_true", help="read OBJ as raw little-endian bytecode")
    p.add_argument("-o", "--output", metavar="OUT.nffw", help="image file to write (default: OBJ with suffix .nffw)")
    p.add_argument("--profile", default="default", metavar="NAME|FILE",
                   help="NIC capability profile: shipped name or .toml path (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable summary (docs/jit.md)")
    from nfpjit.cli.passopts import add_pass_options

    add_pass_options(p)
    p.set_defaults(func=run)


def output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    obj = Path(args.obj)
    return obj.with_suffix(".nffw") if obj.suffix else obj.with_name(obj.name + ".nffw")


def summary_json(result, output: Path | None, opt_level: int = 0) -> dict:
    """The ``compile --json`` document for a successful compilation."""
    img, st, prog = result.image, result.stats, result.program
    return {
        "ok": True,
        "output": str(output) if output is not None else None,
        "program": prog.name,
        "section": prog.section,
        "profile": img.metadata.profile,
        "opt_level": opt_level,
        "passes": list(img.metadata.passes),
        "tag": img.metadata.source_tag.hex(),
        "ebpf_insns": st.ebpf_insns,
        "nfp_insns": st.nfp_insns,
        "stack": st.stack,
        "maps": [{"id": m.id, "name": m.name, "type": m.type.name.lower(), "key_size": m.key_size,
                  "value_size": m.value_size, "max_entries": m.max_entries} for m in img.maps],
        "relocations": len(img.relocations),
        "seconds": round(st.seconds, 6),
        "diagnostics": [d.to_json() for d in result.report.diagnostics] if result.report is not None else [],
    }


def summary_text(result, output: Path | None) -> str:
    st, prog = result.stats, result.program
    name = prog.name + (f" ({prog.section})" if prog.section else "")
    maps = ", ".join(m.name for m in result.image.maps) or "none"
    dest = f" -> {output}" if output is not None else ""
    return (f"{name}{dest}: {st.ebpf_insns} eBPF insns, {st.nfp_insns} NFP insns ({st.ratio:.1f}x), "
            f"stack {st.stack} B, maps: {maps}\n")


def run(args) -> int:
    import nfpjit
    from nfpjit.cli.passopts import compile_options, report
    from nfpjit.driver import CompileError, compile
    from nfpjit.isa.image import write_image
    from nfpjit.offload import load_profile

    try:
        profile = load_profile(args.profile)
    except LoadError as exc:  # a broken --profile file is a bad option: status 2
        raise UsageError(exc.message, where=exc.where, hint=exc.hint) from None
    program = nfpjit.load(args.obj, section=args.section, fmt="raw" if args.raw else None)
    try:
        result = compile(program, profile=profile, **compile_options(args))
    except CompileError as exc:
        if args.json and exc.report is not None:
            sys.stdout.write(json.dumps({"ok": False, "error": str(exc), "report": exc.report.to_json()},
                                        indent=1) + "\n")
            return 1
        raise
    report(args, result)
    out = output_path(args)
    write_image(out, result.image)
    if args.json:
        sys.stdout.write(json.dumps(summary_json(result, out, args.opt_level), indent=1) + "\n")
    else:
        sys.stdout.write(summary_text(result, out))
    return 0

"""Load a BPF object with nfpjit's Python API and print what the front end found.

    python examples/load_program.py examples/xdp_drop_tcp_ports.o [SECTION]
"""

import sys

import nfpjit
from nfpjit.errors import NfpjitError
from nfpjit.ebpf.loader import list_programs


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "examples/xdp_drop_tcp_ports.o"
    section = sys.argv[2] if len(sys.argv) > 2 else None
    try:
        print("programs:", ", ".join(f"{s} ({n})" for s, n in list_programs(path)))
        prog = nfpjit.load(path, section=section)
    except NfpjitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{prog.section}:{prog.name}  {prog.prog_type.name}  {len(prog.insns)} insns ({prog.nslots} slots)"
          f"  license {prog.license!r}")
    for fn in prog.functions:
        print(f"  function {fn.name} at pc {fn.start_pc}")
    for m in prog.maps:
        print(f"  map {m.name}: {m.type.kernel_name} key {m.key_size} value {m.value_size} "
              f"max_entries {m.max_entries} ({m.origin})")
    lines = sorted({(loc.line, loc.text) for loc in prog.line_info.values()})
    print(f"  {len(lines)} source lines, first: {lines[0][1]!r}" if lines else "  no line info")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``nfpjit prog load|show|list|unload``: programs bound to a virtual NIC, like ``bpftool prog``.

``prog load OBJ [-s SEC] --dev IFNAME [--profile P] [-O N] [--pin NAME] [-v]`` is BPF_PROG_LOAD with
``prog_ifindex``: the device must be an nfpjit virtual NIC (else ENODEV), the program XDP or TC
(else EINVAL); the NIC's verifier (analysis + capability report) lists every problem at once in the
verifier-log style (``[nfp]`` lines, on stderr; all of it with ``-v``), the JIT translates, each map
is created on the NIC (MAP_ALLOC) and the image is sent (PROG_LOAD).  ``prog show ID|--pin NAME`` and
``prog list`` (``--json``) describe loaded programs: id, tag, name, bound device, xlated/jited sizes,
map ids.  ``prog unload ID|--pin NAME`` removes one that is not attached.

Exit status: 0 on success, 1 on any error (one line ``nfpjit: error: ... [ERRNO: reason]``), 2 for
usage errors.
"""

from __future__ import annotations

import json
import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("prog", help="load programs onto a virtual NIC and list them (like bpftool prog)",
                              description="Offloaded programs: load by device (BPF_PROG_LOAD with prog_ifindex), "
                                          "show, list, unload.")
    sub = p.add_subparsers(dest="prog_command", metavar="ACTION")
    sub.required = True
    ld = sub.add_parser("load", help="verify, translate and load a program for one NIC")
    ld.add_argument("obj", metavar="OBJ", help="eBPF ELF object (or anything nfpjit.load reads)")
    ld.add_argument("-s", "--section", metavar="SECTION[:FUNC]", help="program section")
    ld.add_argument("--dev", required=True, metavar="IFNAME", help="the NIC the program is bound to")
    ld.add_argument("--profile", default="default", metavar="NAME|FILE", help="capability profile (default: default)")
    ld.add_argument("-O", dest="opt_level", type=int, choices=(0, 1, 2), default=None, metavar="N",
                    help="optimisation level (default: the compiler's)")
    ld.add_argument("--pin", metavar="NAME", help="pin the program under NAME (kept by the NIC)")
    ld.add_argument("-v", "--verbose", action="store_true", help="print the whole verifier-style log")
    ld.add_argument("--json", action="store_true")
    ld.set_defaults(func=run_load)
    for name, helptext in (("show", "one program (or every program with no argument)"),
                           ("list", "every program on every NIC")):
        s = sub.add_parser(name, help=helptext)
        if name == "show":
            s.add_argument("id", nargs="?", type=int, metavar="ID")
            s.add_argument("--pin", metavar="NAME")
        s.add_argument("--json", action="store_true")
        s.set_defaults(func=run_show)
    ul = sub.add_parser("unload", help="remove a program that is not attached (its maps go with it)")
    ul.add_argument("id", nargs="?", type=int, metavar="ID")
    ul.add_argument("--pin", metavar="NAME")
    ul.set_defaults(func=run_unload)


def run_load(args) -> int:
    from nfpjit.nic.errors import OffloadError
    from nfpjit.offload.device import Device

    with Device(args.dev) as dev:
        try:
            prog = dev.load(args.obj, section=args.section, profile=args.profile, opt_level=args.opt_level,
                            pin=args.pin)
        except OffloadError as exc:
            log = getattr(exc, "log", "")
            if log:
                sys.stderr.write(log)
            raise
    if args.verbose:
        sys.stderr.write(prog.log)
    if args.json:
        print(json.dumps(prog.to_json(), indent=2))
    else:
        print(f"loaded program {prog.id} ({prog.name}) for {prog.ifname}: tag {prog.tag}, {prog.nfp_insns} NFP "
              f"instructions, map_ids {','.join(map(str, prog.map_ids)) or '-'}"
              + (f", pinned {prog.pinned}" if prog.pinned else ""))
    return 0


def format_prog(p) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(p.loaded_at)) if p.loaded_at else "-"
    lines = [f"{p.id}: {p.type}  name {p.name}  tag {p.tag}",
             f"\tloaded_at {when}  profile {p.profile}  -O{p.opt_level}",
             f"\txlated {p.xlated_size}B  jited {p.jited_size}B ({p.nfp_insns} NFP insns)  stack {p.stack}B"
             + (f"  map_ids {','.join(map(str, p.map_ids))}" if p.map_ids else ""),
             f"\toffloaded to {p.ifname} (ifindex {p.ifindex})"
             + (f"  attached {p.mode}" if p.attached else "") + (f"  pinned {p.pinned}" if p.pinned else "")]
    if p.runs:
        lines.append(f"\truns {p.runs}  cycles mean {p.cycles_mean:.1f} max {p.cycles_max}  faults {p.faults}")
    return "\n".join(lines)


def run_show(args) -> int:
    from nfpjit.offload.device import all_programs, find_program

    pin = getattr(args, "pin", None)
    pid = getattr(args, "id", None)
    if pid is not None or pin is not None:
        progs = [find_program(pid, pin=pin)]
    else:
        progs = all_programs()
    if args.json:
        out = [p.to_json() for p in progs]
        print(json.dumps(out[0] if (pid is not None or pin is not None) else out, indent=2))
        return 0
    if not progs:
        print("no programs loaded on any virtual NIC")
    for p in progs:
        print(format_prog(p))
    return 0


def run_unload(args) -> int:
    from nfpjit.errors import UsageError
    from nfpjit.offload.device import Device, find_program

    if (args.id is None) == (args.pin is None):
        raise UsageError("give a program id or --pin NAME")
    p = find_program(args.id, pin=args.pin)
    with Device(p.ifname) as dev:
        out = dev.unload(p.id)
    print(f"unloaded program {p.id} from {p.ifname}"
          + (f" (freed tables {','.join(map(str, out['freed_tables']))})" if out.get("freed_tables") else ""))
    return 0

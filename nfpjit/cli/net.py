"""``nfpjit net attach|detach``: XDP attach of an offloaded program, as ``ip link set dev X xdpoffload``.

``net attach --dev IFNAME (--id N | --pin NAME) [--mode hw|drv|skb] [--replace]`` mirrors XDP attach
with XDP_FLAGS_HW_MODE: a program loaded for another device, or attached without hw mode, is EINVAL
with the kernel's reason; a second attach without ``--replace`` is EBUSY; the NIC checks its limits
(instruction store, stack, MTU against the program's packet reach: EOPNOTSUPP) and relocates helpers
and map ids for its port.  ``net detach --dev IFNAME [--mode M]`` removes it (nothing attached in that
mode: not an error, as in the kernel).

Exit status: 0 on success, 1 on any error (``nfpjit: error: ... [ERRNO: reason]``), 2 for usage errors.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("net", help="attach an offloaded program to a virtual NIC (XDP HW mode) or detach it",
                              description="XDP attach and detach for offloaded programs.")
    sub = p.add_subparsers(dest="net_command", metavar="ACTION")
    sub.required = True
    at = sub.add_parser("attach", help="attach a loaded program to its NIC")
    at.add_argument("--dev", required=True, metavar="IFNAME")
    g = at.add_mutually_exclusive_group(required=True)
    g.add_argument("--id", type=int, metavar="N", help="program id (`nfpjit prog list`)")
    g.add_argument("--pin", metavar="NAME", help="pinned program name")
    at.add_argument("--mode", choices=("hw", "drv", "skb"), default="hw",
                    help="XDP mode: hw (offload, the default), drv or skb")
    at.add_argument("--replace", action="store_true", help="replace an attached program")
    at.set_defaults(func=run_attach)
    de = sub.add_parser("detach", help="detach the NIC's program")
    de.add_argument("--dev", required=True, metavar="IFNAME")
    de.add_argument("--mode", choices=("hw", "drv", "skb"), default="hw")
    de.set_defaults(func=run_detach)


def run_attach(args) -> int:
    from nfpjit.offload.device import Device

    with Device(args.dev) as dev:
        out = dev.attach(id=args.id, pin=args.pin, mode=args.mode, replace=args.replace)
    print(f"{args.dev}: program {out['id']} attached ({out['mode']})"
          + (f", replacing program {out['replaced']}" if out.get("replaced") else ""))
    return 0


def run_detach(args) -> int:
    from nfpjit.offload.device import Device

    with Device(args.dev) as dev:
        out = dev.detach(mode=args.mode)
    print(f"{args.dev}: " + (f"program {out['detached']} detached" if out.get("detached") else
                             f"no program attached in {args.mode} mode"))
    return 0

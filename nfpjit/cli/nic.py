"""``nfpjit nic up|down|list|show``: virtual NFP NICs on real Linux networking.

``nic up NAME [--host-addr A/N] [--wire-addr A/N] [--mtu N]`` makes the TAP host netdev NAME, the
veth wire NAME-h <-> NAME-w (in the namespace NAME-wire) and the NIC daemon; ``nic down NAME``
removes all of it (also after a daemon crash); ``nic list`` and ``nic show NAME`` (``--json``)
report them.  Exit status: 0 on success, 1 on any error (message ``nfpjit: error: ... [ERRNO:
reason]``), 2 for usage errors.  Root and /dev/net/tun are needed.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("nic", help="make, remove and inspect virtual NICs (TAP + veth wire + NIC daemon)",
                              description="Virtual NFP NICs: a TAP host netdev, a veth wire into a namespace, and a "
                                          "daemon that runs the offloaded program on every frame in the simulator.")
    sub = p.add_subparsers(dest="nic_command", metavar="ACTION")
    sub.required = True
    up = sub.add_parser("up", help="create a NIC and start its daemon")
    up.add_argument("name", metavar="NAME", help="host netdev name (at most 13 characters)")
    up.add_argument("--host-addr", default=None, metavar="A/N", help="host address (default 10.11.0.1/24)")
    up.add_argument("--wire-addr", default=None, metavar="A/N",
                    help="address of NAME-w in the namespace NAME-wire (default 10.11.0.2/24)")
    up.add_argument("--mtu", type=int, default=1500, help="MTU of the host netdev and the wire (default 1500)")
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=run_up)
    down = sub.add_parser("down", help="stop the daemon, remove the netdevs, namespace and state")
    down.add_argument("name", metavar="NAME")
    down.set_defaults(func=run_down)
    ls = sub.add_parser("list", help="list the virtual NICs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", help="attached program, counters per action, traffic, cycles per packet")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)


def run_up(args) -> int:
    from nfpjit.offload.device import nic_up

    info = nic_up(args.name, host_addr=args.host_addr, wire_addr=args.wire_addr, mtu=args.mtu)
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
    else:
        print(f"{info.name}: up (ifindex {info.ifindex}, {info.host_addr}); wire {info.name}-h <-> {info.name}-w "
              f"in netns {info.netns} ({info.wire_addr}); daemon pid {info.pid}")
    return 0


def run_down(args) -> int:
    from nfpjit.offload.device import nic_down

    removed = nic_down(args.name)
    print(f"{args.name}: down (removed {', '.join(removed) if removed else 'nothing left'})")
    return 0


def run_list(args) -> int:
    from nfpjit.offload.device import nic_list

    nics = nic_list()
    if args.json:
        print(json.dumps([n.to_json() for n in nics], indent=2))
        return 0
    if not nics:
        print("no virtual NICs")
        return 0
    print(f"{'NAME':14} {'IFINDEX':>7}  {'HOST':18} {'WIRE':18} {'NETNS':18} DAEMON")
    for n in nics:
        daemon = f"pid {n.pid}" if n.alive else "dead"
        print(f"{n.name:14} {n.ifindex if n.ifindex is not None else '-':>7}  {n.host_addr:18} {n.wire_addr:18} "
              f"{n.netns:18} {daemon}")
    return 0


def run_show(args) -> int:
    from nfpjit.offload.device import Device

    with Device(args.name) as dev:
        stats = dev.show()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0
    print(format_stats(stats))
    return 0


def format_stats(s: dict) -> str:
    c = s["counters"]
    lines = [f"{s['name']}: ifindex {s['ifindex']}, host {s['host_addr']}, wire {s['wire_port']} -> "
             f"{s['netns']} ({s['wire_addr']}), daemon pid {s['pid']}, {s['programs']} program(s) loaded"]
    p = s.get("program")
    if p:
        lines.append(f"  attached: id {p['id']} {p['name']} tag {p['tag']} mode {p.get('mode', 'hw')}, "
                     f"{p['nfp_insns']} NFP instructions, stack {p['stack']} B, profile {p['profile']}, "
                     f"-O{p['opt_level']}, maps {p['map_ids']}")
    else:
        lines.append("  attached: none (every frame passes)")
    acts = ", ".join(f"{k} {v}" for k, v in c["actions"].items())
    lines.append(f"  actions: {acts}; passed without a program {c['no_program']}")
    lines.append(f"  wire -> host: {c['wire_rx_packets']} packets / {c['wire_rx_bytes']} bytes received, "
                 f"{c['host_tx_packets']} / {c['host_tx_bytes']} delivered to the host")
    lines.append(f"  host -> wire: {c['host_rx_packets']} packets / {c['host_rx_bytes']} bytes; wire transmit "
                 f"(with XDP_TX) {c['wire_tx_packets']} / {c['wire_tx_bytes']}")
    lines.append(f"  cycles per packet: mean {c['cycles_mean']:.1f}, max {c['max_cycles']} over {c['runs']} runs")
    lines.append(f"  faults: {c['faults']}" + (f" (last: {c['last_fault']})" if c.get("last_fault") else "")
                 + (f"; I/O errors {c['errors']}" if c.get("errors") else ""))
    return "\n".join(lines)

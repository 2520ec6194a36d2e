"""The network a run sees: devices, a routing table and neighbours, for the helpers that ask the kernel.

``bpf_fib_lookup``, ``bpf_check_mtu`` and redirects look at the network namespace the
program runs in.  BPF_PROG_TEST_RUN has no real traffic, but these helpers still read
the namespace of the task that runs the test: its devices (``lo`` is ifindex 1), their
MTUs and forwarding switches, its FIB and its neighbour table.  :class:`Net` is that
namespace as data.  The default, :meth:`Net.default`, is a fresh namespace: ``lo`` only,
forwarding off, no routes, no neighbours — so an IPv4/IPv6 lookup through ``lo`` returns
``BPF_FIB_LKUP_RET_FWD_DISABLED`` and any other ifindex ``-ENODEV``, as the kernel does in
such a namespace.  Build a richer one (devices, routes, neighbours) to model a router;
:meth:`Net.from_dict` reads the same shape from JSON/TOML.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from nfpjit.errors import LoadError

ETH_HLEN = 14
LO_MTU = 65536

ROUTE_TYPES = ("unicast", "local", "blackhole", "unreachable", "prohibit")


@dataclass
class Device:
    ifindex: int
    name: str
    mtu: int = 1500
    mac: bytes = bytes(6)
    hard_header_len: int = ETH_HLEN
    forwarding: bool = False        # net.ipv4.conf.<dev>.forwarding
    forwarding6: bool = False       # net.ipv6.conf.<dev>.forwarding
    addrs: tuple[str, ...] = ()     # the device's addresses (local routes), "10.0.0.1"


@dataclass
class Route:
    """One FIB entry.  ``type`` is one of ROUTE_TYPES; unicast routes name ``dev`` and maybe ``via``."""

    dst: str                        # "10.1.0.0/16", "::/0"
    dev: int = 0                    # output ifindex
    via: str | None = None          # gateway address
    type: str = "unicast"
    metric: int = 0
    mtu: int = 0                    # route MTU (0: the device's); IPv4 uses it only when locked
    mtu_lock: bool = False          # ip route ... mtu lock N

    @property
    def network(self):
        return ipaddress.ip_network(self.dst, strict=False)


@dataclass
class Net:
    devices: dict[int, Device] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    neighbours: dict[tuple[int, str], bytes] = field(default_factory=dict)   # (ifindex, ip text) -> MAC

    @classmethod
    def default(cls) -> "Net":
        return cls({1: Device(1, "lo", mtu=LO_MTU)})

    def device(self, ifindex: int) -> Device | None:
        return self.devices.get(ifindex)

    def lookup(self, dst: bytes) -> Route | None:
        """Longest-prefix match (then lowest metric) over the routes and the devices' local addresses."""
        addr = ipaddress.ip_address(dst)
        best = None
        for dev in self.devices.values():
            for a in dev.addrs:
                if ipaddress.ip_address(a) == addr:
                    return Route(f"{a}/{addr.max_prefixlen}", dev.ifindex, type="local")
        for r in self.routes:
            net = r.network
            if net.version != addr.version or addr not in net:
                continue
            if best is None or net.prefixlen > best.network.prefixlen or \
                    (net.prefixlen == best.network.prefixlen and r.metric < best.metric):
                best = r
        return best

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "<net>") -> "Net":
        """``{"devices": [{"ifindex", "name", "mtu", "mac", "forwarding", "forwarding6", "addrs"}],
        "routes": [{"dst", "dev", "via", "type", "metric", "mtu"}], "neighbours": [{"dev", "ip", "mac"}]}``;
        ``lo`` (ifindex 1) is always there."""
        net = cls.default()
        try:
            for d in doc.get("devices", []):
                mac = bytes.fromhex(str(d.get("mac", "00" * 6)).replace(":", ""))
                dev = Device(int(d["ifindex"]), str(d.get("name", f"dev{d['ifindex']}")), int(d.get("mtu", 1500)),
                             mac, forwarding=bool(d.get("forwarding", False)),
                             forwarding6=bool(d.get("forwarding6", False)), addrs=tuple(d.get("addrs", ())))
                net.devices[dev.ifindex] = dev
            for r in doc.get("routes", []):
                route = Route(str(r["dst"]), int(r.get("dev", 0)), r.get("via"), str(r.get("type", "unicast")),
                              int(r.get("metric", 0)), int(r.get("mtu", 0)), bool(r.get("mtu_lock", False)))
                if route.type not in ROUTE_TYPES:
                    raise ValueError(f"route type {route.type!r} is not one of {', '.join(ROUTE_TYPES)}")
                route.network  # noqa: B018 - validates the prefix
                net.routes.append(route)
            for n in doc.get("neighbours", []):
                net.neighbours[(int(n["dev"]), str(ipaddress.ip_address(n["ip"])))] = \
                    bytes.fromhex(str(n["mac"]).replace(":", ""))
        except (KeyError, ValueError, TypeError) as exc:
            raise LoadError(f"bad network description: {exc}", where=source) from None
        return net


__all__ = ["Net", "Device", "Route", "ROUTE_TYPES", "LO_MTU"]

"""The netdevs and the namespace of one virtual NIC, made and removed through netlink (pyroute2).

For NIC ``NAME``:

- ``NAME``: a persistent TAP device in the root namespace, the host side of the NIC (a real
  interface with a real ifindex and the host address).  The daemon attaches to it.
- ``NAME-h`` <-> ``NAME-w``: a veth pair; ``NAME-h`` stays in the root namespace without an
  address (the daemon's wire port, read and written with AF_PACKET), ``NAME-w`` lives in the
  namespace ``NAME-wire`` with the wire address: the "outside world".

Checksum and segmentation offloads are turned off on the veth pair (set before ``NAME-w``
moves, features travel with the device) so every frame the daemon sees is complete and
carries its real checksums; IPv6 is turned off on the three devices to keep the wire quiet.
Nothing here shells out to ``ip``/``ethtool``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from dataclasses import dataclass

from nfpjit.nic.errors import OffloadError
from nfpjit.nic.registry import NicState

# veth features that would hand the daemon partial checksums or super-frames
_OFFLOAD_PREFIXES = ("tx-checksum", "tx-tcp", "tx-generic-segmentation", "tx-scatter-gather", "tx-udp",
                     "tx-gso", "rx-gro", "tx-sctp")


def _pyroute2():
    try:
        import pyroute2  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a dependency
        raise OffloadError(errno.ENOSYS, f"pyroute2 is needed for virtual NICs: {exc}",
                           hint="pip install 'pyroute2>=0.7'") from None
    return pyroute2


def parse_cidr(text: str, what: str) -> tuple[str, int]:
    """``"10.11.0.1/24"`` -> ``("10.11.0.1", 24)``; EINVAL with a clear message otherwise."""
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise OffloadError(errno.EINVAL, f"{what} {text!r} is not an IPv4 address with a prefix length",
                           hint="for example 10.11.0.1/24") from None
    if "/" not in text:
        raise OffloadError(errno.EINVAL, f"{what} {text!r} has no prefix length", hint="for example 10.11.0.1/24")
    return str(iface.ip), iface.network.prefixlen


def ifindex(ifname: str) -> int | None:
    """The ifindex of a netdev in the root namespace, None when there is none of that name."""
    if not isinstance(ifname, str) or not ifname or len(ifname) > 15 or "/" in ifname:
        return None
    try:
        return int(open(f"/sys/class/net/{ifname}/ifindex").read())
    except (OSError, ValueError):
        pass
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def ifname_of(index: int) -> str | None:
    try:
        for name in os.listdir("/sys/class/net"):
            try:
                if int(open(f"/sys/class/net/{name}/ifindex").read()) == int(index):
                    return name
            except (OSError, ValueError):
                continue
    except OSError:
        return None
    return None


def mtu(ifname: str) -> int | None:
    try:
        return int(open(f"/sys/class/net/{ifname}/mtu").read())
    except (OSError, ValueError):
        return None


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/var/run/netns/{name}") or os.path.exists(f"/run/netns/{name}")


def _addresses_in_use(ipr) -> list[ipaddress.IPv4Interface]:
    out = []
    for a in ipr.get_addr(family=2):
        addr = a.get_attr("IFA_ADDRESS") or a.get_attr("IFA_LOCAL")
        if addr:
            out.append(ipaddress.IPv4Interface(f"{addr}/{a['prefixlen']}"))
    return out


def _disable_ipv6(ifname: str) -> None:
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass  # no IPv6 in this kernel: nothing to quieten


def _disable_ipv6_in(netns_name: str, ifname: str) -> None:
    """IPv6 off for ``ifname`` inside a namespace: a /proc/sys write from a child that entered it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            from pyroute2 import netns

            netns.setns(netns_name)
            with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
                f.write("1")
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def _isolate_port(ifname: str) -> None:
    """Keep the root namespace's IP stack off the wire port: the daemon alone takes its frames.

    Without this the kernel answers ARP for the TAP's address on ``NAME-h`` too (the weak host
    model) and takes frames sent to ``NAME-h``'s MAC itself, bypassing the program.  arp_ignore=8
    answers no ARP there; strict rp_filter drops any IPv4 frame arriving there (its source is
    routed through the TAP).  (tc ingress filters would be neater but need classifier modules.)
    """
    for key, value in (("arp_ignore", "8"), ("rp_filter", "1"), ("forwarding", "0"), ("accept_local", "0")):
        try:
            with open(f"/proc/sys/net/ipv4/conf/{ifname}/{key}", "w") as f:
                f.write(value)
        except OSError:
            pass


def _disable_offloads(ifname: str) -> None:
    from pyroute2 import Ethtool

    eth = Ethtool()
    try:
        features = eth.get_features(ifname)
        changed = False
        for name, feature in features.features.items():
            if name.startswith(_OFFLOAD_PREFIXES) and feature.enable and feature.available:
                feature.enable = False
                changed = True
        if changed:
            eth.set_features(ifname, features)
    finally:
        eth.close()


@dataclass(frozen=True)
class Links:
    """What :func:`create` made: the host TAP's ifindex and the wire port's."""

    host_ifindex: int
    wire_ifindex: int


def in_use(state: NicState) -> list[str]:
    """The names among the NIC's netdevs/namespace that already exist (root namespace)."""
    busy = [n for n in (state.name, state.wire_port, state.wire_peer) if ifindex(n) is not None]
    if netns_exists(state.netns):
        busy.append(f"netns {state.netns}")
    return busy


def create(state: NicState) -> Links:
    """Make the TAP, the veth pair and the namespace with their addresses; undo everything on failure."""
    _pyroute2()
    from pyroute2 import IPRoute, NetNS, netns

    host_ip, host_len = parse_cidr(state.host_addr, "host address")
    wire_ip, wire_len = parse_cidr(state.wire_addr, "wire address")
    if host_ip == wire_ip:
        raise OffloadError(errno.EINVAL, f"host and wire address are both {host_ip}")
    busy = in_use(state)
    if busy:
        raise OffloadError(errno.EEXIST, f"NIC name {state.name!r} is in use: {', '.join(busy)} already exist"
                           + "s" * (len(busy) == 1), hint=f"pick another name, or `nfpjit nic down {state.name}`")
    try:
        with IPRoute() as ipr:
            new = ipaddress.IPv4Interface(f"{host_ip}/{host_len}")
            for have in _addresses_in_use(ipr):
                if have.ip == new.ip or have.network == new.network:
                    raise OffloadError(errno.EADDRINUSE, f"host address {state.host_addr} overlaps {have} already "
                                       "configured on this machine", hint="pass another --host-addr/--wire-addr")
            ipr.link("add", ifname=state.name, kind="tuntap", mode="tap")
            tap = ipr.link_lookup(ifname=state.name)[0]
            _disable_ipv6(state.name)
            ipr.link("add", ifname=state.wire_port, kind="veth", peer=state.wire_peer)
            port = ipr.link_lookup(ifname=state.wire_port)[0]
            peer = ipr.link_lookup(ifname=state.wire_peer)[0]
            for n in (state.wire_port, state.wire_peer):
                _disable_ipv6(n)
                _disable_offloads(n)
            _isolate_port(state.wire_port)
            ipr.link("set", index=tap, mtu=state.mtu)
            ipr.link("set", index=port, mtu=state.mtu, promiscuity=1)
            netns.create(state.netns)
            ipr.link("set", index=peer, net_ns_fd=state.netns)
            ipr.addr("add", index=tap, address=host_ip, prefixlen=host_len)
            ipr.link("set", index=tap, state="up")
            ipr.link("set", index=port, state="up")
        _disable_ipv6_in(state.netns, state.wire_peer)   # a quiet wire: no ND/MLD chatter from NAME-w
        with NetNS(state.netns) as ns:
            lo = ns.link_lookup(ifname="lo")[0]
            ns.link("set", index=lo, state="up")
            w = ns.link_lookup(ifname=state.wire_peer)[0]
            ns.addr("add", index=w, address=wire_ip, prefixlen=wire_len)
            ns.link("set", index=w, state="up", mtu=state.mtu)
        return Links(host_ifindex=int(tap), wire_ifindex=int(port))
    except OffloadError:
        destroy(state)
        raise
    except Exception as exc:  # noqa: BLE001 - netlink failures become one error; nothing is left behind
        destroy(state)
        code = getattr(exc, "code", None) or getattr(exc, "errno", None) or errno.EIO
        raise OffloadError(int(code) if isinstance(code, int) else errno.EIO,
                           f"cannot create the netdevs of NIC {state.name!r}: {exc}") from None


def destroy(state: NicState) -> list[str]:
    """Remove whatever exists of the NIC's netdevs and namespace; returns what was removed.  Never fails."""
    removed = []
    try:
        from pyroute2 import IPRoute, netns
    except ImportError:  # pragma: no cover
        return removed
    try:
        with IPRoute() as ipr:
            for n in (state.wire_port, state.wire_peer, state.name):
                for index in ipr.link_lookup(ifname=n):
                    try:
                        ipr.link("del", index=index)
                        removed.append(n)
                    except Exception:  # noqa: BLE001 - gone already (deleting one veth end removes both)
                        pass
    except Exception:  # noqa: BLE001
        pass
    if netns_exists(state.netns):
        try:
            netns.remove(state.netns)  # the NAME-w end inside goes with it
            removed.append(f"netns {state.netns}")
        except Exception:  # noqa: BLE001
            pass
    return removed


__all__ = ["Links", "create", "destroy", "in_use", "ifindex", "ifname_of", "mtu", "netns_exists", "parse_cidr"]

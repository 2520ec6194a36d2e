"""The offload API: virtual NICs, and programs loaded and attached onto them as the kernel does it.

- :func:`nic_up`, :func:`nic_down`, :func:`nic_list`: make, remove and list virtual NICs
  (the TAP host netdev, the veth wire into ``NAME-wire``, the NIC daemon); ``nfpjit nic``.
- :class:`Device` (``nfpjit.offload.Device(ifname)``): one NIC's control socket.
  ``load`` is BPF_PROG_LOAD with ``prog_ifindex`` (device check, program type check, the
  verifier-style analysis and capability report with all problems at once, the JIT, MAP_ALLOC
  for each map, the image travelling in PROG_LOAD), ``attach``/``detach`` XDP attach with
  XDP_FLAGS_HW_MODE, ``programs``/``show``, and map access through ``maps``
  (:class:`nfpjit.nic.mapclient.MapClient` over the same socket) and ``map_*`` helpers.

Every failure is an :class:`~nfpjit.nic.errors.OffloadError` with the errno the kernel gives
for the same operation (``.errno``) and a message that says more than the errno does.
"""

from __future__ import annotations

import errno as E
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nfpjit.nic.errors import OffloadError

_MODES = ("hw", "drv", "skb")


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgInfo:
    """A program bound to a NIC, as ``bpftool prog show`` describes it (plus the NIC's run figures)."""

    id: int
    name: str
    tag: str
    type: str                      # "xdp" or "tc"
    ifname: str
    ifindex: int | None
    xlated_size: int               # eBPF bytes
    jited_size: int                # NFP code bytes
    nfp_insns: int
    stack: int
    map_ids: tuple[int, ...]       # the NIC's table ids
    maps: dict = field(default_factory=dict, compare=False)   # map name -> table id
    profile: str = "default"
    opt_level: int = 0
    pinned: str | None = None
    attached: bool = False
    mode: str | None = None
    loaded_at: float = 0.0
    runs: int = 0
    cycles_mean: float = 0.0
    cycles_max: int = 0
    faults: int = 0
    log: str = field(default="", compare=False, repr=False)   # the verifier-style load log

    @classmethod
    def from_json(cls, d: dict, log: str = "") -> "ProgInfo":
        dev = d.get("dev") or {}
        return cls(id=int(d["id"]), name=str(d.get("name", "")), tag=str(d.get("tag", "")),
                   type=str(d.get("type", "xdp")), ifname=str(dev.get("ifname", "")), ifindex=dev.get("ifindex"),
                   xlated_size=int(d.get("xlated_size", 0)), jited_size=int(d.get("jited_size", 0)),
                   nfp_insns=int(d.get("nfp_insns", 0)), stack=int(d.get("stack", 0)),
                   map_ids=tuple(d.get("map_ids", ())), maps=dict(d.get("maps", {})),
                   profile=str(d.get("profile", "")), opt_level=int(d.get("opt_level", 0)),
                   pinned=d.get("pinned"), attached=bool(d.get("attached")), mode=d.get("mode"),
                   loaded_at=float(d.get("loaded_at", 0.0)), runs=int(d.get("runs", 0)),
                   cycles_mean=float(d.get("cycles_mean", 0.0)), cycles_max=int(d.get("cycles_max", 0)),
                   faults=int(d.get("faults", 0)), log=log)

    def to_json(self) -> dict:
        """The ``prog show --json`` object (bpftool's keys where bpftool has one)."""
        return {"id": self.id, "type": self.type, "name": self.name, "tag": self.tag,
                "dev": {"ifname": self.ifname, "ifindex": self.ifindex},
                "loaded_at": int(self.loaded_at), "xlated_size": self.xlated_size, "jited_size": self.jited_size,
                "nfp_insns": self.nfp_insns, "stack": self.stack, "map_ids": list(self.map_ids),
                "maps": dict(self.maps), "profile": self.profile, "opt_level": self.opt_level,
                "pinned": self.pinned, "attached": self.attached, "mode": self.mode,
                "runs": self.runs, "cycles_mean": self.cycles_mean, "cycles_max": self.cycles_max,
                "faults": self.faults}


@dataclass(frozen=True)
class NicInfo:
    """One virtual NIC as ``nic list`` shows it."""

    name: str
    ifindex: int | None
    host_addr: str
    wire_addr: str
    netns: str
    pid: int | None
    alive: bool

    def to_json(self) -> dict:
        return {"name": self.name, "ifindex": self.ifindex, "host_addr": self.host_addr,
                "wire_addr": self.wire_addr, "netns": self.netns, "pid": self.pid, "daemon": self.alive}


# -- NIC lifecycle -----------------------------------------------------------------------------


def nic_up(name: str, *, host_addr: str | None = None, wire_addr: str | None = None, mtu: int = 1500,
           timeout: float = 15.0) -> NicInfo:
    """Make NIC ``name``: netdevs, namespace, addresses, and the daemon (waits until it answers)."""
    from nfpjit.nic import netdev, registry

    registry.require_support()
    registry.check_name(name)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
        raise OffloadError(E.EINVAL, f"MTU {mtu!r} is out of range", hint="68..65535")
    state = registry.NicState.for_name(name, host_addr or registry.DEFAULT_HOST_ADDR,
                                       wire_addr or registry.DEFAULT_WIRE_ADDR, created=time.time())
    state = _replace(state, mtu=mtu)
    if state.directory.exists():
        raise OffloadError(E.EEXIST, f"NIC name {name!r} is in use: {state.directory} exists",
                           hint=f"`nfpjit nic down {name}` removes it, or pick another name")
    busy = netdev.in_use(state)
    if busy:
        raise OffloadError(E.EEXIST, f"NIC name {name!r} is in use: {', '.join(busy)} already exist"
                           + "s" * (len(busy) == 1), hint="pick another name")
    netdev.parse_cidr(state.host_addr, "host address")
    netdev.parse_cidr(state.wire_addr, "wire address")
    state.directory.mkdir(parents=True)
    try:
        registry.write_state(state)
        netdev.create(state)
        _start_daemon(state, timeout)
    except BaseException:
        _teardown(state)
        raise
    return _info(name)


def _replace(state, **kw):
    import dataclasses

    return dataclasses.replace(state, **kw)


def _start_daemon(state, timeout: float) -> None:
    from nfpjit.nic.daemon import ControlClient
    from nfpjit.nic import cmsg

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])     # the tree nfpjit is imported from
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(state.log_file, "ab") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "nfpjit.nic.daemon", state.name], stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                cwd="/", env=env)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = f"the daemon exited with status {proc.returncode}"
            break
        if state.ctl_socket.exists():
            try:
                with ControlClient(state.ctl_socket, timeout=2.0, name=state.name) as c:
                    reply = c(cmsg.JsonRequest(cmsg.CmsgType.NIC_STATS, {}))
                if reply.ok:
                    return
                last = f"NIC_STATS failed: {getattr(reply, 'message', reply)}"
            except OffloadError as exc:
                last = str(exc)
        time.sleep(0.05)
    else:
        last = f"no answer on {state.ctl_socket} within {timeout:g} s ({last})"
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    tail = _log_tail(state.log_file)
    raise OffloadError(E.EIO, f"the NIC daemon of {state.name} did not start: {last}"
                       + (f"; its log ends:\n{tail}" if tail else ""))


def _log_tail(path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _is_our_daemon(pid: int, name: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"nfpjit.nic.daemon" in argv and name.encode() in argv


def _stop_daemon(name: str, pid: int | None, timeout: float = 5.0) -> bool:
    from nfpjit.nic.registry import pid_alive

    if not pid or not pid_alive(pid) or not _is_our_daemon(pid, name):
        _reap(pid)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(100):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.02)
    return True


def _reap(pid: int | None) -> None:
    if pid:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def _teardown(state) -> list[str]:
    from nfpjit.nic import netdev, registry

    removed = []
    pid = registry.read_pid(state.name)
    if _stop_daemon(state.name, pid):
        removed.append(f"daemon {pid}")
    removed += netdev.destroy(state)
    if state.directory.exists():
        shutil.rmtree(state.directory, ignore_errors=True)
        removed.append(str(state.directory))
    return removed


def nic_down(name: str) -> list[str]:
    """Remove NIC ``name``: the daemon (dead or alive), TAP, veth, namespace and state directory.

    Returns what was removed; ENODEV when nothing of that name exists."""
    from nfpjit.nic import netdev, registry

    registry.require_support()
    registry.check_name(name)
    state = registry.read_state(name) or registry.NicState.for_name(name)
    if not state.directory.exists() and not netdev.in_use(state):
        raise OffloadError(E.ENODEV, f"no virtual NIC named {name!r}", hint="`nfpjit nic list` shows them")
    if not state.directory.exists() and netdev.ifindex(name) is not None and not netdev.netns_exists(state.netns):
        raise OffloadError(E.ENODEV, f"{name} is a netdev but not an nfpjit virtual NIC; left alone")
    return _teardown(state)


def _info(name: str) -> NicInfo:
    from nfpjit.nic import netdev, registry

    st = registry.read_state(name)
    pid = registry.read_pid(name)
    return NicInfo(name=name, ifindex=netdev.ifindex(name), host_addr=st.host_addr if st else "",
                   wire_addr=st.wire_addr if st else "", netns=st.netns if st else "", pid=pid,
                   alive=registry.pid_alive(pid))


def nic_list() -> list[NicInfo]:
    """Every virtual NIC with a state directory."""
    from nfpjit.nic import registry

    registry.require_support()
    return [_info(n) for n in registry.list_names()]


# -- the device ---------------------------------------------------------------------------------


def verifier_log(report, program, *, phase_lines=()) -> str:
    """The analysis and capability report as a verifier log: every line prefixed ``[nfp]``."""
    from nfpjit.offload.render import render_diagnostic, summary

    lines = list(phase_lines)
    for d in report.diagnostics:
        lines += render_diagnostic(d, report, program).splitlines()
    if report.resources is not None:
        lines.append(f"resources: {report.resources}")
    lines.append(summary(report))
    return "\n".join(f"[nfp] {line}" for line in lines) + "\n"


class Device:
    """One virtual NIC, by its host netdev name: the kernel's view of an offload-capable device."""

    def __init__(self, ifname: str, *, timeout: float = 30.0):
        from nfpjit.nic import netdev, registry
        from nfpjit.nic.daemon import ControlClient

        registry.require_support()
        self.ifname = ifname
        self.ifindex = netdev.ifindex(ifname)
        if self.ifindex is None:
            raise OffloadError(E.ENODEV, f"no network device named {ifname!r}",
                               hint="`nfpjit nic list` shows the virtual NICs")
        state = registry.read_state(ifname) if len(ifname) <= registry.MAX_NAME else None
        if state is None:
            raise OffloadError(E.ENODEV, f"device does not support offload: {ifname} (ifindex {self.ifindex}) is not "
                               "an nfpjit virtual NIC", hint="`nfpjit nic up NAME` makes one")
        self.state = state
        self.client = ControlClient(state.ctl_socket, timeout=timeout, name=ifname)
        self._maps = None

    # plumbing
    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Device({self.ifname!r}, ifindex={self.ifindex})"

    def request(self, req):
        """Send one control message; an error reply becomes an OffloadError with its errno."""
        reply = self.client(req)
        if not reply.ok:
            raise OffloadError(reply.errno, reply.message or f"{type(req).__name__} failed")
        return reply

    def _json(self, type_, body=None) -> dict:
        from nfpjit.nic import cmsg

        return self.request(cmsg.JsonRequest(type_, body or {})).body

    # programs
    def load(self, obj, *, section: str | None = None, profile="default", opt_level: int | None = None,
             pin: str | None = None) -> ProgInfo:
        """BPF_PROG_LOAD with this device's ifindex: check, translate, create the maps, send the image."""
        import nfpjit
        from nfpjit.driver import CompileError
        from nfpjit.driver import compile as driver_compile
        from nfpjit.ebpf.opcodes import ProgType
        from nfpjit.ebpf.program import Program
        from nfpjit.errors import NfpjitError
        from nfpjit.nic import cmsg
        from nfpjit.offload import Code

        program = obj if isinstance(obj, Program) else nfpjit.load(obj, section=section)
        if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
            raise OffloadError(E.EINVAL, f"program {program.name!r} is of type {program.prog_type.name}: only XDP "
                               "and TC (direct-action) programs can be offloaded",
                               where=program.source_path or program.name)
        if pin is not None:
            self._check_pin_free(pin)
        from nfpjit.offload import Profile, load_profile

        profile = profile if isinstance(profile, Profile) else load_profile(profile)   # a bad name: a usage error
        where = program.source_path or program.name
        phase = [f"prepare: {program.name} ({program.section or program.prog_type.name.lower()}), "
                 f"{len(program.insns)} eBPF instructions, bound to {self.ifname} (ifindex {self.ifindex})"]
        kwargs = {"profile": profile}
        if opt_level is not None:
            kwargs["opt_level"] = opt_level
        try:
            result = driver_compile(program, **kwargs)
        except CompileError as exc:
            report = exc.report
            log = verifier_log(report, program, phase_lines=phase + ["verify: per-instruction checks"]) if report else ""
            err = OffloadError(E.EINVAL, f"the NIC's verifier rejects {program.name!r}: "
                               f"{report.errors if report else 'some'} problem(s) (all listed in the log above)",
                               where=where, hint="`nfpjit check` explains each one")
            err.log = log
            raise err from None
        except OffloadError:
            raise
        except NfpjitError as exc:
            err = OffloadError(E.EINVAL, f"translation failed: {exc}", where=where)
            err.log = "\n".join(f"[nfp] {x}" for x in phase + [f"translate: {exc}"]) + "\n"
            raise err from None
        image, report, stats = result.image, result.report, result.stats
        reach_bounded = not any(d.code == Code.PACKET_SPLIT for d in report.diagnostics) if report else True
        log = verifier_log(report, program, phase_lines=phase + ["verify: per-instruction checks"]) if report else ""
        log += (f"[nfp] translate: {stats.ebpf_insns} eBPF -> {stats.nfp_insns} NFP instructions, stack "
                f"{stats.stack} B, {stats.maps} map(s)\n")
        tids: dict[str, int] = {}
        try:
            for m in image.maps:
                reply = self.request(cmsg.MapAlloc(_map_type(m.type), m.key_size, m.value_size, m.max_entries,
                                                   m.flags, m.name[:15]))
                tids[m.name] = reply.tid
                log += f"[nfp] map {m.name}: MAP_ALLOC -> table id {reply.tid}\n"
            for d in image.data:   # global-data maps start from the object's contents
                if d.map in tids:
                    self.request(cmsg.MapUpdate(tids[d.map], (0).to_bytes(4, "little"), bytes(d.data), 0))
            info = {"name": program.name, "tag": image.metadata.source_tag[:8].hex(), "profile": image.metadata.profile,
                    "opt_level": opt_level if opt_level is not None else _default_level(),
                    "maps": tids, "xlated_size": 8 * program.nslots, "packet_reach_bounded": reach_bounded,
                    "source": where, "section": program.section}
            if pin is not None:
                info["pin"] = pin
            reply = self.request(cmsg.ProgLoad(image.to_bytes(), info))
        except BaseException:
            for tid in tids.values():
                try:
                    self.client(cmsg.MapFree(tid))
                except Exception:  # noqa: BLE001 - best effort: the load failed already
                    pass
            raise
        prog = ProgInfo.from_json(reply.body, log=log + f"[nfp] loaded as program {reply.body['id']}\n")
        return prog

    def _check_pin_free(self, pin: str) -> None:
        for dev, progs in _all_programs():
            for p in progs:
                if p.pinned == pin:
                    raise OffloadError(E.EEXIST, f"pin {pin!r} already names program {p.id} (on {dev})")

    def programs(self) -> list[ProgInfo]:
        from nfpjit.nic import cmsg

        return [ProgInfo.from_json(p) for p in self._json(cmsg.CmsgType.PROG_LIST)["programs"]]

    def program(self, id: int | None = None, *, pin: str | None = None) -> ProgInfo:
        for p in self.programs():
            if (pin is not None and p.pinned == pin) or (pin is None and p.id == id):
                return p
        raise OffloadError(E.ENOENT, f"no program {'pinned as ' + repr(pin) if pin else id} on {self.ifname}")

    def unload(self, id: int | None = None, *, pin: str | None = None) -> dict:
        from nfpjit.nic import cmsg

        return self._json(cmsg.CmsgType.PROG_UNLOAD, {"id": id} if pin is None else {"pin": pin})

    def attach(self, prog=None, *, id: int | None = None, pin: str | None = None, mode: str = "hw",
               replace: bool = False) -> dict:
        """XDP attach (``mode`` hw = XDP_FLAGS_HW_MODE); ``prog`` a ProgInfo or an id."""
        from nfpjit.nic import cmsg

        if isinstance(prog, ProgInfo):
            id = prog.id
        elif isinstance(prog, int) and not isinstance(prog, bool):
            id = prog
        if (id is None) == (pin is None):
            raise OffloadError(E.EINVAL, "attach needs exactly one of a program id or a pin name")
        if mode not in _MODES:
            raise OffloadError(E.EINVAL, f"unknown XDP mode {mode!r}", hint="hw, drv or skb")
        mine = self._lookup_here(id, pin)
        if mine is None:
            owner = _find_program(id, pin)
            if owner is None:
                what = f"pinned as {pin!r}" if pin else f"with id {id}"
                raise OffloadError(E.ENOENT, f"no program {what}", hint="`nfpjit prog list` shows the loaded ones")
            dev, p = owner
            cur = self.attached()
            if cur is not None and not replace:
                raise OffloadError(E.EBUSY, f"XDP program already attached (program {cur.id} on {self.ifname})",
                                   hint="pass --replace")
            if mode != "hw":
                raise OffloadError(E.EINVAL, "Using offloaded program without HW_MODE flag is not supported",
                                   hint=f"program {p.id} is bound to {dev}: attach it there with --mode hw")
            raise OffloadError(E.EINVAL, f"Program bound to different device: program {p.id} was loaded for {dev}, "
                               f"not {self.ifname}", hint=f"load it again with --dev {self.ifname}")
        body = {"id": mine.id, "mode": mode, "replace": bool(replace)}
        return self._json(cmsg.CmsgType.PROG_ATTACH, body)

    def _lookup_here(self, id, pin) -> ProgInfo | None:
        for p in self.programs():
            if (pin is not None and p.pinned == pin) or (pin is None and p.id == id):
                return p
        return None

    def attached(self) -> ProgInfo | None:
        for p in self.programs():
            if p.attached:
                return p
        return None

    def detach(self, *, mode: str = "hw") -> dict:
        from nfpjit.nic import cmsg

        if mode not in _MODES:
            raise OffloadError(E.EINVAL, f"unknown XDP mode {mode!r}", hint="hw, drv or skb")
        return self._json(cmsg.CmsgType.PROG_DETACH, {"mode": mode})

    def show(self) -> dict:
        """NIC_STATS: the attached program, counters per action, packets and bytes each way, cycles."""
        from nfpjit.nic import cmsg

        return self._json(cmsg.CmsgType.NIC_STATS)

    # maps
    @property
    def maps(self):
        """A :class:`nfpjit.nic.mapclient.MapClient` over this device's control socket."""
        if self._maps is None:
            from nfpjit.nic.mapclient import MapClient

            self._maps = MapClient(self.client)
        return self._maps

    def map_tables(self) -> list:
        """The NIC's tables (``cmsg.TableInfo``: tid, type, sizes, name, entry count)."""
        return list(self.maps.tables())

    def map_id(self, name_or_id) -> int:
        """A table id from a table id or a map name (ENOENT when there is no such table)."""
        return self.maps.find(name_or_id).tid

    def map_lookup(self, name_or_id, key: bytes) -> bytes:
        return self.maps.lookup(self.map_id(name_or_id), key)

    def map_update(self, name_or_id, key: bytes, value: bytes, flags: int = 0) -> None:
        self.maps.update(self.map_id(name_or_id), key, value, flags)

    def map_delete(self, name_or_id, key: bytes) -> None:
        self.maps.delete(self.map_id(name_or_id), key)

    def map_get_next(self, name_or_id, key: bytes | None = None) -> bytes:
        tid = self.map_id(name_or_id)
        return self.maps.get_first(tid) if key is None else self.maps.get_next(tid, key)

    def map_dump(self, name_or_id) -> dict:
        return dict(self.maps.dump(self.map_id(name_or_id)))


def _map_type(image_map_type):
    from nfpjit.ebpf.opcodes import MapType

    return MapType(int(image_map_type))


def _default_level() -> int:
    try:
        from nfpjit.driver import DEFAULT_LEVEL

        return int(DEFAULT_LEVEL)
    except ImportError:
        return 0


def _all_programs():
    """(NIC name, its programs) for every NIC whose daemon answers."""
    from nfpjit.nic import registry

    out = []
    for name in registry.list_names():
        try:
            with Device(name, timeout=5.0) as dev:
                out.append((name, dev.programs()))
        except OffloadError:
            continue
    return out


def _find_program(id, pin):
    for dev, progs in _all_programs():
        for p in progs:
            if (pin is not None and p.pinned == pin) or (pin is None and p.id == id):
                return dev, p
    return None


def all_programs() -> list[ProgInfo]:
    """Every program on every NIC (``prog list``), by id."""
    from nfpjit.nic import registry

    registry.require_support()
    return sorted((p for _, progs in _all_programs() for p in progs), key=lambda p: p.id)


def find_program(id: int | None = None, *, pin: str | None = None) -> ProgInfo:
    found = _find_program(id, pin)
    if found is None:
        raise OffloadError(E.ENOENT, f"no program {'pinned as ' + repr(pin) if pin else 'with id ' + str(id)}")
    return found[1]


__all__ = ["Device", "ProgInfo", "NicInfo", "nic_up", "nic_down", "nic_list", "all_programs", "find_program",
           "verifier_log"]

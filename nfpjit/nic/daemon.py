"""The NIC daemon: one process per virtual NIC, the "firmware" of the card.

``python -m nfpjit.nic.daemon NAME`` (started by ``nfpjit nic up NAME``) does two things:

- Frames.  Wire -> host: frames read from an AF_PACKET socket bound to the wire port
  ``NAME-h`` (PACKET_OUTGOING copies of our own sends ignored; what is queued, up to
  :data:`WIRE_BATCH`, is read at once and runs as one batch, in order) run through the attached
  program in the simulator (:mod:`nfpjit.nic.runner`: one compiled-engine session per
  attachment where llvmlite's JIT works, else the interpreting simulator), with the map contents
  of :class:`~nfpjit.nic.tables.MapTables` (the session's maps are loaded from the tables at
  attach and what a batch changes is stored back, control-message updates go to both, all under
  the tables' lock, so control-message updates and the program's own updates never lose each
  other).  ``NFPJIT_NIC_SIM=interp`` in the daemon's environment forces the interpreting
  simulator.  XDP_PASS -> written to the TAP (the host
  netdev ``NAME``), XDP_TX -> sent back out on the wire (as the program left it), XDP_DROP
  -> dropped, XDP_ABORTED, any other action or a simulator fault -> dropped and counted.
  With no program attached every frame passes.  Host -> wire: frames read from the TAP go
  out on ``NAME-h`` unchanged.
- Control messages on ``ctl.sock`` (AF_UNIX, SOCK_SEQPACKET, one message per datagram, the
  format of :mod:`nfpjit.nic.cmsg`): MAP_* go to ``MapTables.handle``; PROG_LOAD, _UNLOAD,
  _ATTACH, _DETACH, _LIST and NIC_STATS are served here.  A message that does not parse, or
  any failure while serving it, gets an error reply; the daemon never dies of a message.

SIGTERM (or SIGINT) stops it cleanly: sockets closed, ``ctl.sock`` and the pid file removed.

The host side of the socket is :class:`ControlClient` (a callable transport: request in,
reply out), used by :class:`nfpjit.offload.Device` and the map client.
"""

from __future__ import annotations

import dataclasses
import errno as E
import fcntl
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from nfpjit.nic import cmsg
from nfpjit.nic.errors import CmsgError, OffloadError
from nfpjit.nic.registry import NicState, read_state, state_dir

log = logging.getLogger("nfpjit.nic.daemon")

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65535
SOCKET_BUFFER = 8 << 20          # control socket buffers: a PROG_LOAD image travels in one datagram
ETH_HLEN = 14
WIRE_BATCH = 64                  # frames read from the wire port and run as one batch, at most


class XdpAction:
    ABORTED, DROP, PASS, TX, REDIRECT = 0, 1, 2, 3, 4
    NAMES = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}


class AttachMode:
    HW, DRV, SKB = "hw", "drv", "skb"
    ALL = ("hw", "drv", "skb")


@dataclass(frozen=True)
class Caps:
    """What this NIC's firmware offers a program (checked at attach, as the nfp driver reads them)."""

    instruction_store: int = 4096    # NFP instructions for the program
    stack_size: int = 512            # LM bytes for the eBPF stack
    packet_split: int = 256          # bytes of each frame in the core-near packet buffer (CTM)
    packet_buffer: int = 0           # largest frame the NIC holds (set from the simulator's buffer)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def default_caps() -> Caps:
    from nfpjit.isa.sim.memory import MAX_PACKET
    from nfpjit.offload import load_profile

    p = load_profile("default")
    return Caps(instruction_store=p.instruction_store, stack_size=p.stack_size, packet_split=p.packet_split,
                packet_buffer=MAX_PACKET)


@dataclass
class LoadedProg:
    """A program the NIC holds (loaded, maybe attached)."""

    id: int
    image: object                      # nfpjit.isa.image.Image, as it arrived (not relocated)
    info: dict                         # load info from the host: name, tag, profile, opt level, maps, ...
    maps: dict[str, int]               # map name -> table id
    loaded_at: float
    pin: str | None = None
    runs: int = 0
    cycles: int = 0
    max_cycles: int = 0
    faults: int = 0
    last_fault: str | None = None

    def to_json(self, state: NicState, attached: bool, ifindex: int | None) -> dict:
        image = self.image
        md = image.metadata
        return {
            "id": self.id,
            "name": self.info.get("name") or md.name,
            "tag": self.info.get("tag") or md.source_tag[:8].hex(),
            "type": "tc" if int(md.prog_type) == 3 else "xdp",
            "dev": {"ifname": state.name, "ifindex": ifindex},
            "xlated_size": int(self.info.get("xlated_size", 0)),
            "jited_size": 8 * len(image.code),
            "nfp_insns": len(image.code),
            "stack": md.stack_size,
            "map_ids": sorted(self.maps.values()),
            "maps": dict(self.maps),
            "profile": md.profile,
            "opt_level": self.info.get("opt_level", 0),
            "loaded_at": self.loaded_at,
            "pinned": self.pin,
            "attached": attached,
            "packet_reach_bounded": bool(self.info.get("packet_reach_bounded", True)),
            "runs": self.runs,
            "cycles_mean": (self.cycles / self.runs) if self.runs else 0.0,
            "cycles_max": self.max_cycles,
            "faults": self.faults,
            "last_fault": self.last_fault,
        }


@dataclass
class Attached:
    prog: LoadedProg
    image: object                      # relocated for this port
    mode: str
    maps: tuple[tuple[str, int], ...]  # (name, table id)
    since: float
    runner: object = None              # nfpjit.nic.runner: the simulator session of this attachment


@dataclass
class Counters:
    """Frame counters of the NIC (the frame thread writes them, control replies read them)."""

    wire_rx_packets: int = 0
    wire_rx_bytes: int = 0
    host_tx_packets: int = 0           # delivered to the host (TAP)
    host_tx_bytes: int = 0
    host_rx_packets: int = 0           # read from the host (TAP), sent on the wire
    host_rx_bytes: int = 0
    wire_tx_packets: int = 0           # everything sent on the wire (host -> wire and XDP_TX)
    wire_tx_bytes: int = 0
    actions: dict = field(default_factory=lambda: {n: 0 for n in XdpAction.NAMES.values()})
    no_program: int = 0                # frames passed with no program attached
    faults: int = 0
    errors: int = 0                    # frames lost to an I/O error
    last_fault: str | None = None
    cycles: int = 0
    runs: int = 0
    max_cycles: int = 0

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["actions"] = dict(self.actions)
        out["cycles_mean"] = self.cycles / self.runs if self.runs else 0.0
        return out


class Daemon:
    def __init__(self, state: NicState, *, caps: Caps | None = None, engine: str | None = None):
        from nfpjit.nic.tables import MapTables

        self.state = state
        #: the simulator of attached programs: "auto" (compiled where llvmlite's JIT works), "compiled", "interp"
        #: (default: the NFPJIT_NIC_SIM environment variable, else auto)
        self.engine = engine or os.environ.get("NFPJIT_NIC_SIM", "auto")
        self.caps = caps or default_caps()
        self.tables = MapTables()
        self.lock = threading.RLock()          # programs, pins, attachment
        self.progs: dict[int, LoadedProg] = {}
        self.pins: dict[str, int] = {}
        self.attached: Attached | None = None
        self.counters = Counters()
        self.started = time.time()
        self.stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self.tap_fd: int | None = None
        self.wire: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.ifindex: int | None = None

    # -- devices -----------------------------------------------------------------------------

    def open_devices(self) -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        ifr = struct.pack("16sH22x", self.state.name.encode(), IFF_TAP | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        self.tap_fd = fd
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((self.state.wire_port, ETH_P_ALL))
        self.wire = s
        try:
            self.ifindex = int(open(f"/sys/class/net/{self.state.name}/ifindex").read())
        except (OSError, ValueError):
            self.ifindex = None

    def open_control(self) -> None:
        path = str(self.state.ctl_socket)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _big_buffers(s)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(64)
        self.listener = s

    # -- frames ------------------------------------------------------------------------------

    def frame_loop(self) -> None:
        wire, tap = self.wire, self.tap_fd
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select([wire, tap, self._wake_r], [], [], 1.0)
            except InterruptedError:
                continue
            if self._wake_r in ready:
                break
            if wire in ready:
                frames = self._read_wire()
                if frames:
                    self.from_wire_batch(frames)
            if tap in ready:
                try:
                    frame = os.read(tap, MAX_FRAME)
                except (BlockingIOError, InterruptedError):
                    frame = None
                except OSError:
                    self.counters.errors += 1
                    frame = None
                    time.sleep(0.01)
                if frame:
                    c = self.counters
                    c.host_rx_packets += 1
                    c.host_rx_bytes += len(frame)
                    self.to_wire(frame)

    def _read_wire(self) -> list[bytes]:
        """The frames waiting on the wire port, up to WIRE_BATCH (our own sends left out): they run as one batch."""
        frames: list[bytes] = []
        wire = self.wire
        flags = 0
        while len(frames) < WIRE_BATCH:
            try:
                frame, addr = wire.recvfrom(MAX_FRAME, flags)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters.errors += 1
                time.sleep(0.01)   # a vanished port must not become a busy loop
                break
            flags = socket.MSG_DONTWAIT   # the first read was announced by select; the rest only if queued
            if addr[2] != PACKET_OUTGOING:
                frames.append(frame)
        return frames

    def to_wire(self, frame: bytes) -> None:
        try:
            self.wire.send(frame)
        except OSError:
            self.counters.errors += 1
            return
        self.counters.wire_tx_packets += 1
        self.counters.wire_tx_bytes += len(frame)

    def to_host(self, frame: bytes) -> None:
        try:
            os.write(self.tap_fd, frame)
        except OSError:
            self.counters.errors += 1
            return
        self.counters.host_tx_packets += 1
        self.counters.host_tx_bytes += len(frame)

    def from_wire(self, frame: bytes) -> None:
        self.from_wire_batch([frame])

    def from_wire_batch(self, frames: list[bytes]) -> None:
        """Frames from the wire, in order: through the attached program (one batch), then to the host, back out
        on the wire or dropped."""
        c = self.counters
        c.wire_rx_packets += len(frames)
        c.wire_rx_bytes += sum(map(len, frames))
        att = self.attached
        if att is None:
            c.no_program += len(frames)
            for frame in frames:
                self.to_host(frame)
            return
        for action, out in self.run_program(att, frames):
            c.actions[XdpAction.NAMES.get(action, "aborted")] += 1
            if action == XdpAction.PASS:
                self.to_host(out)
            elif action == XdpAction.TX:
                self.to_wire(out)

    def run_program(self, att: Attached, frames: list[bytes]) -> list[tuple[int, bytes]]:
        """Run the attached program on a batch of frames: (XDP action, frame after the run) for each."""
        prog, c = att.prog, self.counters
        try:
            with self.tables.lock:
                verdicts = att.runner.run(frames)
        except Exception as exc:  # noqa: BLE001 - a frame never kills the NIC
            fault = f"{type(exc).__name__}: {exc}"
            log.error("running program %d: %s", prog.id, fault)
            c.faults += len(frames)
            prog.faults += len(frames)
            c.last_fault = prog.last_fault = fault
            resync = getattr(att.runner, "resync", None)
            if resync is not None:
                try:
                    with self.tables.lock:
                        resync()               # whatever happened mid-batch, the tables are the truth
                except Exception:  # noqa: BLE001 - still no reason to die
                    log.error("reloading program %d's maps:\n%s", prog.id, traceback.format_exc())
            return [(XdpAction.ABORTED, f) for f in frames]
        out = []
        cycles = [v.cycles for v in verdicts]
        total, top = sum(cycles), max(cycles, default=0)
        prog.runs += len(verdicts)
        prog.cycles += total
        prog.max_cycles = max(prog.max_cycles, top)
        c.runs += len(verdicts)
        c.cycles += total
        c.max_cycles = max(c.max_cycles, top)
        for v, frame in zip(verdicts, frames):
            if v.fault is not None:
                c.faults += 1
                prog.faults += 1
                c.last_fault = prog.last_fault = v.fault
                out.append((XdpAction.ABORTED, frame))
                continue
            action = v.action
            if action == XdpAction.REDIRECT and v.redirect == (self.ifindex or 1):
                action = XdpAction.TX        # bpf_redirect to the port the frame came in on: transmit it there
            if action not in (XdpAction.DROP, XdpAction.PASS, XdpAction.TX):
                action = XdpAction.ABORTED   # XDP_REDIRECT and out-of-range actions: the NIC cannot, it aborts
            out.append((action, v.frame))
        return out

    # -- control -----------------------------------------------------------------------------

    def control_loop(self) -> None:
        lst = self.listener
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select([lst, self._wake_r], [], [], 1.0)
            except InterruptedError:
                continue
            if self._wake_r in ready:
                break
            if lst in ready:
                try:
                    conn, _ = lst.accept()
                except OSError:
                    continue
                threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        _big_buffers(conn)
        with conn:
            while not self.stop.is_set():
                try:
                    data = _recv_message(conn)
                except OSError:
                    return
                if data is None:
                    return
                reply = self.handle_bytes(data)
                try:
                    conn.send(reply)
                except OSError:
                    return

    def handle_bytes(self, data: bytes) -> bytes:
        """Bytes of one request in, bytes of its reply out; never raises."""
        try:
            try:
                req = cmsg.decode_request(data)
            except CmsgError as exc:
                return cmsg.error_reply_for(data, exc)
            try:
                reply = self.dispatch(req)
            except OffloadError as exc:
                reply = cmsg.error_reply(req, exc.errno, f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
            except Exception as exc:  # noqa: BLE001 - the NIC answers, it does not die
                log.error("internal error serving %s:\n%s", type(req).__name__, traceback.format_exc())
                reply = cmsg.error_reply(req, E.EFAULT, f"internal error in the NIC: {type(exc).__name__}: {exc}")
            try:
                return cmsg.encode(reply)
            except CmsgError as exc:
                return cmsg.encode(cmsg.error_reply(req, exc.errno, f"reply not encodable: {exc}"))
        except Exception as exc:  # noqa: BLE001 - last resort: still a well-formed reply
            log.error("internal error:\n%s", traceback.format_exc())
            return cmsg.error_reply_for(data, CmsgError(E.EIO, f"internal error: {type(exc).__name__}"))

    def dispatch(self, req):
        t = cmsg.message_type(req)
        if isinstance(req, cmsg.MapFree):
            with self.lock:
                users = [p.id for p in self.progs.values() if req.tid in p.maps.values()]
            if users:
                raise OffloadError(E.EBUSY, f"table {req.tid} is used by program {users[0]}",
                                   hint="unload the program first")
            return self.tables.handle(req)
        if t in (cmsg.CmsgType.MAP_UPDATE, cmsg.CmsgType.MAP_DELETE):
            # the tables answer; a change they accepted goes to the attached program's session as well
            with self.tables.lock:
                reply = self.tables.handle(req)
                att = self.attached
                if att is not None and att.runner is not None and not isinstance(reply, cmsg.ErrorReply):
                    att.runner.control_write(req)
                return reply
        if t in (cmsg.CmsgType.MAP_ALLOC, cmsg.CmsgType.MAP_LOOKUP, cmsg.CmsgType.MAP_GETFIRST,
                 cmsg.CmsgType.MAP_GETNEXT, cmsg.CmsgType.MAP_LIST):
            return self.tables.handle(req)
        if isinstance(req, cmsg.ProgLoad):
            return cmsg.JsonReply(t, self.prog_load(req.image, req.info), seq=req.seq)
        body = req.body
        handlers = {
            cmsg.CmsgType.PROG_UNLOAD: self.prog_unload,
            cmsg.CmsgType.PROG_ATTACH: self.prog_attach,
            cmsg.CmsgType.PROG_DETACH: self.prog_detach,
            cmsg.CmsgType.PROG_LIST: self.prog_list,
            cmsg.CmsgType.NIC_STATS: self.nic_stats,
        }
        return cmsg.JsonReply(t, handlers[t](body), seq=req.seq)

    # -- programs ----------------------------------------------------------------------------

    def _tables(self) -> dict[int, object]:
        reply = self.tables.handle(cmsg.MapList())
        return {t.tid: t for t in getattr(reply, "tables", ())}

    def prog_load(self, image_bytes: bytes, info: dict) -> dict:
        from nfpjit.errors import ImageError
        from nfpjit.isa.image import Image

        from nfpjit.nic.registry import next_prog_id

        try:
            image = Image.from_bytes(image_bytes, where="PROG_LOAD image")
        except ImageError as exc:
            raise OffloadError(E.EINVAL, f"the firmware image does not load: {exc}") from None
        if int(image.metadata.prog_type) not in (3, 6):
            raise OffloadError(E.EINVAL, f"image program type {int(image.metadata.prog_type)} is neither XDP nor TC")
        maps = info.get("maps", {})
        if not isinstance(maps, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                                 for k, v in maps.items()):
            raise OffloadError(E.EINVAL, "load info 'maps' must map map names to table ids")
        tables = self._tables()
        for m in image.maps:
            tid = maps.get(m.name)
            if tid is None:
                raise OffloadError(E.EINVAL, f"map {m.name!r} has no table on the NIC",
                                   hint="allocate every map with MAP_ALLOC before PROG_LOAD")
            t = tables.get(tid)
            if t is None:
                raise OffloadError(E.ENOENT, f"table {tid} for map {m.name!r} does not exist on this NIC")
            want = int(m.type)        # the kernel's BPF_MAP_TYPE_* numbers
            if (int(t.map_type), t.key_size, t.value_size, t.max_entries) != (want, m.key_size, m.value_size,
                                                                                m.max_entries):
                raise OffloadError(E.EINVAL, f"table {tid} does not match map {m.name!r} (type, key, value or "
                                   "max entries differ)")
        pin = info.get("pin")
        if pin is not None and not (isinstance(pin, str) and pin):
            raise OffloadError(E.EINVAL, "pin name must be a non-empty string")
        with self.lock:
            if pin is not None and pin in self.pins:
                raise OffloadError(E.EEXIST, f"pin {pin!r} already names program {self.pins[pin]}")
            prog = LoadedProg(id=next_prog_id(), image=image, info=dict(info),
                              maps={m.name: int(maps[m.name]) for m in image.maps}, loaded_at=time.time(), pin=pin)
            self.progs[prog.id] = prog
            if pin is not None:
                self.pins[pin] = prog.id
            log.info("loaded program %d (%s, %d NFP insns)", prog.id, image.metadata.name, len(image.code))
            return self._prog_json(prog)

    def _prog_json(self, prog: LoadedProg) -> dict:
        att = self.attached
        out = prog.to_json(self.state, att is not None and att.prog is prog, self.ifindex)
        if att is not None and att.prog is prog:
            out["mode"] = att.mode
        return out

    def _find(self, body: dict) -> LoadedProg:
        pid, pin = body.get("id"), body.get("pin")
        with self.lock:
            if pin is not None:
                if pin not in self.pins:
                    raise OffloadError(E.ENOENT, f"no program pinned as {pin!r} on {self.state.name}")
                return self.progs[self.pins[pin]]
            if isinstance(pid, bool) or not isinstance(pid, int):
                raise OffloadError(E.EINVAL, "a program id (integer) or a pin name is needed")
            prog = self.progs.get(pid)
            if prog is None:
                raise OffloadError(E.ENOENT, f"no program with id {pid} on {self.state.name}")
            return prog

    def prog_unload(self, body: dict) -> dict:
        with self.lock:
            prog = self._find(body)
            if self.attached is not None and self.attached.prog is prog:
                raise OffloadError(E.EBUSY, f"program {prog.id} is attached to {self.state.name}",
                                   hint="detach it first")
            del self.progs[prog.id]
            if prog.pin is not None:
                self.pins.pop(prog.pin, None)
            freed = []
            for tid in sorted(set(prog.maps.values())):
                if any(tid in p.maps.values() for p in self.progs.values()):
                    continue
                self.tables.handle(cmsg.MapFree(tid))
                freed.append(tid)
            log.info("unloaded program %d", prog.id)
            return {"id": prog.id, "freed_tables": freed}

    def prog_attach(self, body: dict) -> dict:
        from nfpjit.isa.image import SymbolKind, relocate
        from nfpjit.isa.sim.firmware import ROUTINE_ADDRESSES

        mode = body.get("mode", AttachMode.HW)
        if mode not in AttachMode.ALL:
            raise OffloadError(E.EINVAL, f"unknown attach mode {mode!r}", hint="hw, drv or skb")
        prog = self._find(body)
        if int(prog.image.metadata.prog_type) != 6:
            raise OffloadError(E.EINVAL, f"program {prog.id} is a TC program: XDP attach takes XDP programs only",
                               hint="TC (cls_bpf) attach is not modelled by the virtual NIC yet")
        if mode != AttachMode.HW:
            raise OffloadError(E.EINVAL, "Using offloaded program without HW_MODE flag is not supported",
                               hint="attach with --mode hw")
        with self.lock:
            cur = self.attached
            if cur is not None and not body.get("replace"):
                raise OffloadError(E.EBUSY, f"XDP program already attached (program {cur.prog.id})",
                                   hint="pass --replace to swap it")
            expected = body.get("expected_id")
            if expected is not None and (cur is None or cur.prog.id != expected):
                raise OffloadError(E.EEXIST, "Active program does not match expected")
            image, caps = prog.image, self.caps
            md = image.metadata
            if md.stack_size > caps.stack_size:
                raise OffloadError(E.EOPNOTSUPP, f"stack too large: program {md.stack_size}B > FW stack "
                                   f"{caps.stack_size}B")
            if len(image.code) > caps.instruction_store:
                raise OffloadError(E.EOPNOTSUPP, f"program too long: {len(image.code)} NFP instructions > "
                                   f"instruction store {caps.instruction_store}")
            from nfpjit.nic.netdev import mtu as link_mtu

            mtu = link_mtu(self.state.name) or self.state.mtu
            if caps.packet_buffer and mtu + ETH_HLEN > caps.packet_buffer:
                raise OffloadError(E.EOPNOTSUPP, f"BPF offload not supported with MTU larger than HW packet "
                                   f"buffer: MTU {mtu} + {ETH_HLEN} > {caps.packet_buffer} bytes",
                                   hint=f"ip link set {self.state.name} mtu {caps.packet_buffer - ETH_HLEN}")
            if not prog.info.get("packet_reach_bounded", True) and mtu + ETH_HLEN > caps.packet_split:
                raise OffloadError(E.EOPNOTSUPP, f"program may access packet bytes beyond the HW packet split "
                                   f"boundary ({caps.packet_split} B) and MTU {mtu} frames are longer",
                                   hint=f"bound the program's packet offsets, or lower the MTU to "
                                        f"{caps.packet_split - ETH_HLEN}")
            ids = dict(prog.maps)
            try:
                relocated = relocate(image, ids, ROUTINE_ADDRESSES)
            except Exception as exc:  # noqa: BLE001 - an ImageError: the image does not fit this port
                raise OffloadError(E.EINVAL, f"relocation for {self.state.name} failed: {exc}") from None
            symbols = tuple(dataclasses.replace(s, address=ids[s.name]) if s.kind == SymbolKind.MAP and s.name in ids
                            else s for s in relocated.symbols)
            relocated = dataclasses.replace(relocated, symbols=symbols)
            from nfpjit.nic.runner import make_runner

            maps = tuple(sorted(ids.items()))
            runner = make_runner(relocated, maps, self.tables, ifindex=self.ifindex or 1, engine=self.engine)
            self.attached = Attached(prog=prog, image=relocated, mode=mode, maps=maps, since=time.time(),
                                     runner=runner)
            log.info("attached program %d (%s) on the %s simulator%s%s", prog.id, mode, runner.engine,
                     f" ({runner.reason})" if runner.reason else "", f", replacing {cur.prog.id}" if cur else "")
            return {"id": prog.id, "mode": mode, "replaced": cur.prog.id if cur else None, "engine": runner.engine}

    def prog_detach(self, body: dict) -> dict:
        mode = body.get("mode", AttachMode.HW)
        if mode not in AttachMode.ALL:
            raise OffloadError(E.EINVAL, f"unknown attach mode {mode!r}", hint="hw, drv or skb")
        with self.lock:
            cur = self.attached
            if cur is None or cur.mode != mode:
                return {"detached": None}   # nothing attached in that mode: like the kernel, not an error
            self.attached = None
            log.info("detached program %d", cur.prog.id)
            return {"detached": cur.prog.id}

    def prog_list(self, body: dict) -> dict:
        with self.lock:
            return {"programs": [self._prog_json(p) for p in sorted(self.progs.values(), key=lambda p: p.id)],
                    "pins": dict(self.pins)}

    def nic_stats(self, body: dict) -> dict:
        with self.lock:
            att = self.attached
            prog = self._prog_json(att.prog) if att is not None else None
            if prog is not None:
                prog["attached_since"] = att.since
                prog["engine"] = att.runner.engine
                prog["engine_reason"] = att.runner.reason
            return {
                "name": self.state.name, "ifindex": self.ifindex, "pid": os.getpid(),
                "wire_port": self.state.wire_port, "netns": self.state.netns,
                "host_addr": self.state.host_addr, "wire_addr": self.state.wire_addr,
                "started": self.started, "caps": self.caps.to_json(),
                "program": prog, "programs": len(self.progs),
                "counters": self.counters.to_json(),
            }

    # -- life --------------------------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        self.stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def run(self) -> int:
        self.open_devices()
        self.open_control()
        ctl = threading.Thread(target=self.control_loop, name="control", daemon=True)
        ctl.start()
        log.info("NIC %s up: host %s (ifindex %s), wire port %s", self.state.name, self.state.name, self.ifindex,
                 self.state.wire_port)
        try:
            self.frame_loop()
        finally:
            self.request_stop()
            ctl.join(timeout=2)
            self.close()
        log.info("NIC %s daemon stopped", self.state.name)
        return 0

    def close(self) -> None:
        for s in (self.listener, self.wire):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        if self.tap_fd is not None:
            try:
                os.close(self.tap_fd)
            except OSError:
                pass
        for p in (self.state.ctl_socket, self.state.pid_file):
            try:
                os.unlink(p)
            except OSError:
                pass


def _big_buffers(s: socket.socket) -> None:
    for force, plain in ((32, socket.SO_SNDBUF), (33, socket.SO_RCVBUF)):  # SO_SNDBUFFORCE, SO_RCVBUFFORCE
        try:
            s.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            try:
                s.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
            except OSError:
                pass


def _recv_message(conn: socket.socket) -> bytes | None:
    """One whole SEQPACKET datagram (None at end of stream); longer than any message: its first bytes."""
    probe = bytearray(1)
    n = conn.recv_into(probe, 1, socket.MSG_PEEK | socket.MSG_TRUNC)
    if n == 0:
        return None
    limit = cmsg.HEADER_SIZE + cmsg.MAX_PAYLOAD
    buf = bytearray(min(n, limit))
    conn.recv_into(buf, len(buf))
    return bytes(buf)


# -- the host side ----------------------------------------------------------------------------


class ControlClient:
    """The host end of a NIC's control socket: ``client(request) -> reply`` (a map client transport).

    Replies are decoded (``cmsg.decode_reply``); a reply whose sequence number does not match is
    an EIO :class:`OffloadError`.  Thread-safe; one connection per client.
    """

    def __init__(self, path, *, timeout: float = 30.0, name: str = ""):
        self.path = str(path)
        self.name = name
        self._lock = threading.Lock()
        self._seq = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _big_buffers(self._sock)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            raise OffloadError(E.ENODEV, f"the NIC daemon of {name or self.path} does not answer: {exc.strerror}",
                               hint=f"`nfpjit nic show {name}`; if the daemon crashed, `nfpjit nic down {name}` "
                                    "cleans up") from None

    def __call__(self, request):
        return self.send(request)

    def send(self, request):
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            request = dataclasses.replace(request, seq=self._seq)
            data = cmsg.encode(request)
            try:
                self._sock.send(data)
                raw = _recv_message(self._sock)
            except socket.timeout:
                raise OffloadError(E.ETIMEDOUT, f"the NIC {self.name} did not answer in time") from None
            except OSError as exc:
                raise OffloadError(exc.errno or E.EIO, f"control socket of {self.name}: {exc.strerror}") from None
            if raw is None:
                raise OffloadError(E.ENODEV, f"the NIC daemon of {self.name} closed the control socket")
            reply = cmsg.decode_reply(raw)
            if reply.seq != self._seq:
                raise OffloadError(E.EIO, f"reply sequence {reply.seq} does not match request {self._seq}")
            return reply

    def send_raw(self, data: bytes) -> bytes | None:
        """Send raw bytes (tests of bad messages); the raw reply bytes back."""
        with self._lock:
            self._sock.send(data)
            return _recv_message(self._sock)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(name: str, *, timeout: float = 30.0) -> ControlClient:
    st = read_state(name)
    path = st.ctl_socket if st is not None else state_dir(name) / "ctl.sock"
    return ControlClient(path, timeout=timeout, name=name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if len(argv) != 1:
        print("usage: python -m nfpjit.nic.daemon NAME", file=sys.stderr)
        return 2
    state = read_state(argv[0])
    if state is None:
        print(f"no state for NIC {argv[0]!r} in {state_dir(argv[0])}", file=sys.stderr)
        return 1
    daemon = Daemon(state)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    state.pid_file.write_text(f"{os.getpid()}\n")
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())

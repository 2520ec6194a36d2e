"""Where virtual NICs live on this machine: the state directory and what it records.

Every NIC made by ``nfpjit nic up NAME`` owns ``/run/nfpjit/nic/NAME/`` (the base
may be moved with the ``NFPJIT_RUN_DIR`` environment variable)::

    state.json   names of the netdevs and the namespace, addresses, creation time
    daemon.pid   the NIC daemon's process id
    daemon.log   the daemon's stdout and stderr
    ctl.sock     the control socket (AF_UNIX, SOCK_SEQPACKET): one control message per datagram

``/run/nfpjit/nic/ids`` holds the last program id handed out: program ids are unique
across all NICs of the machine, as the kernel's are (a file lock serialises daemons).

A NIC is "ours" when its state directory exists and names a host netdev of that name:
that is how the offload path tells an offload-capable device from any other netdev.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from nfpjit.nic.errors import OffloadError

#: Longest NIC name: ``NAME-h``/``NAME-w`` must fit the kernel's 15-byte interface names.
MAX_NAME = 13
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]*$")

DEFAULT_HOST_ADDR = "10.11.0.1/24"
DEFAULT_WIRE_ADDR = "10.11.0.2/24"


def run_dir() -> Path:
    """The directory holding every NIC's state directory."""
    return Path(os.environ.get("NFPJIT_RUN_DIR", "/run/nfpjit")) / "nic"


def state_dir(name: str) -> Path:
    return run_dir() / name


def check_name(name: str) -> str:
    """A NIC name usable for the TAP, ``NAME-h``, ``NAME-w`` and the namespace ``NAME-wire``."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not _NAME_RE.match(name):
        raise OffloadError(errno.EINVAL, f"bad NIC name {name!r}",
                           hint=f"1-{MAX_NAME} characters of letters, digits, '_' and '.' (NAME-h must fit "
                                "the kernel's 15-character interface names)")
    return name


@dataclass(frozen=True)
class NicState:
    """What ``state.json`` records about one NIC."""

    name: str                 # the NIC, and its host netdev (TAP)
    wire_port: str            # NAME-h: the daemon's wire port (root namespace, no address)
    wire_peer: str            # NAME-w: the far end, inside the namespace
    netns: str                # NAME-wire
    host_addr: str
    wire_addr: str
    created: float = 0.0
    mtu: int = 1500

    @property
    def directory(self) -> Path:
        return state_dir(self.name)

    @property
    def pid_file(self) -> Path:
        return self.directory / "daemon.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "daemon.log"

    @property
    def ctl_socket(self) -> Path:
        return self.directory / "ctl.sock"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def for_name(cls, name: str, host_addr: str = DEFAULT_HOST_ADDR, wire_addr: str = DEFAULT_WIRE_ADDR,
                 created: float = 0.0) -> "NicState":
        return cls(name=name, wire_port=f"{name}-h", wire_peer=f"{name}-w", netns=f"{name}-wire",
                   host_addr=host_addr, wire_addr=wire_addr, created=created)


def write_state(state: NicState) -> None:
    state.directory.mkdir(parents=True, exist_ok=True)
    tmp = state.directory / "state.json.tmp"
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(state.directory / "state.json")


def read_state(name: str) -> NicState | None:
    """The recorded state of NIC ``name``; None when there is no (readable) state directory."""
    path = state_dir(name) / "state.json"
    try:
        data = json.loads(path.read_text())
        return NicState(**{k: data[k] for k in NicState.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def list_names() -> list[str]:
    """Names of every NIC with a state directory (sorted)."""
    try:
        return sorted(p.name for p in run_dir().iterdir() if p.is_dir() and (p / "state.json").exists())
    except OSError:
        return []


def read_pid(name: str) -> int | None:
    try:
        return int((state_dir(name) / "daemon.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def next_prog_id() -> int:
    """A machine-wide unique program id (1, 2, ...), as the kernel hands out."""
    base = run_dir()
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base / "ids", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 64, 0).decode(errors="replace").strip()
        last = int(raw) if raw.isdigit() else 0
        value = last + 1
        data = f"{value}\n".encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        return value
    finally:
        os.close(fd)


def require_support() -> None:
    """Root and /dev/net/tun are needed for every NIC command: say which is missing."""
    if os.geteuid() != 0:
        raise OffloadError(errno.EPERM, "virtual NICs need root (CAP_NET_ADMIN for netdevs and namespaces)",
                           hint="run as root")
    if not os.path.exists("/dev/net/tun"):
        raise OffloadError(errno.ENOENT, "/dev/net/tun is missing: the kernel's TUN/TAP driver is needed",
                           hint="modprobe tun, or run where /dev/net/tun exists")
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        raise OffloadError(exc.errno or errno.EIO, f"/dev/net/tun cannot be opened: {exc.strerror}",
                           hint="a container may need the device passed in (--device /dev/net/tun)") from None


def support_problem() -> str | None:
    """Why virtual NICs cannot work here (for test skips), or None."""
    try:
        require_support()
    except OffloadError as exc:
        return str(exc)
    return None


__all__ = ["NicState", "MAX_NAME", "DEFAULT_HOST_ADDR", "DEFAULT_WIRE_ADDR", "run_dir", "state_dir", "check_name",
           "write_state", "read_state", "list_names", "read_pid", "pid_alive", "next_prog_id", "require_support",
           "support_problem"]

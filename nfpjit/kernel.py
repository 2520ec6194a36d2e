"""The Linux kernel as an oracle: load a :class:`Program` with ``bpf()`` and run it with BPF_PROG_TEST_RUN.

This talks to the ``bpf()`` system call directly through ctypes (no libbpf):
it creates the program's maps, substitutes their file descriptors into the
``ld_imm64`` map references (a loaded :class:`~nfpjit.ebpf.program.Program`
keeps an index into ``Program.maps`` there), loads the program through the
verifier, runs it on packets and dumps the maps afterwards in the same
:data:`~nfpjit.ebpf.result.MapState` format as the reference interpreter.

A rejected program raises :class:`KernelRejected` carrying the verifier log.
:func:`kernel_available` says once (cached) whether this machine can do any of
it (root or CAP_BPF, a kernel with BPF_PROG_TEST_RUN), with a reason when not.

Typical use::

    with KernelProgram(program) as kp:
        for pkt in packets:
            result = kp.run(pkt)          # maps persist across runs
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from functools import lru_cache
from pathlib import Path

from nfpjit.errors import NfpjitError, UnsupportedError, UsageError
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import MapType, ProgType, PseudoSrc
from nfpjit.ebpf.program import MapDef, Program
from nfpjit.ebpf.result import MapState, PacketIn, RunResult

__all__ = [
    "KernelRejected",
    "KernelError",
    "KernelProgram",
    "kernel_available",
    "run_in_kernel",
    "load_in_kernel",
    "DUMPABLE_MAP_TYPES",
    "tc_test_run_accepts",
    "kernel_tailroom",
    "perf_raw_payload",
]

_SYSCALL_NR = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280}

# enum bpf_cmd
_MAP_CREATE = 0
_MAP_LOOKUP_ELEM = 1
_MAP_UPDATE_ELEM = 2
_MAP_DELETE_ELEM = 3
_MAP_GET_NEXT_KEY = 4
_PROG_LOAD = 5
_PROG_TEST_RUN = 10
_MAP_GET_FD_BY_ID = 14
_BTF_LOAD = 18
_MAP_LOOKUP_AND_DELETE_ELEM = 21
_MAP_FREEZE = 22

_ATTR_SIZE = 144           # larger than every command's part of union bpf_attr we fill
_LOG_SIZE = 1 << 22        # the verifier log of a big program needs megabytes
_BPF_F_RDONLY_PROG = 0x80
_ETH_HLEN = 14
_OUT_SLACK = 4096
_SKB_CTX_SIZE = 192        # sizeof(struct __sk_buff)          # room for bpf_xdp_adjust_tail/skb_change_tail growth in data_out

# Map types whose contents the bpf() syscall can read back as plain values.
DUMPABLE_MAP_TYPES = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH, MapType.PERCPU_HASH,
    MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE,
    MapType.QUEUE, MapType.STACK, MapType.RINGBUF,
})
_MAP_IN_MAP = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
_PERCPU_TYPES = frozenset({MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH})
_ARRAYS = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY})


class KernelError(NfpjitError):
    """A bpf() call failed for a reason other than the verifier rejecting the program."""

    def __init__(self, message: str, *, errno_: int = 0, where: str | None = None, hint: str | None = None):
        super().__init__(message, where=where, hint=hint)
        self.errno = errno_


class KernelRejected(NfpjitError):
    """BPF_PROG_LOAD refused the program; ``log`` is the verifier's explanation."""

    def __init__(self, message: str, *, log: str = "", errno_: int = 0, where: str | None = None,
                 hint: str | None = None):
        super().__init__(message, where=where, hint=hint)
        self.log = log
        self.errno = errno_

    def __str__(self) -> str:
        text = super().__str__()
        tail = "\n".join(self.log.rstrip().splitlines()[-6:])
        return f"{text}\n{tail}" if tail else text


# -- the system call ----------------------------------------------------------------------

@lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _bpf(cmd: int, attr: ctypes.Array) -> tuple[int, int]:
    """``bpf(cmd, attr, size)``: (return value, errno)."""
    nr = _SYSCALL_NR.get(platform.machine().lower())
    if nr is None:
        raise UnsupportedError(f"no bpf() system call number known for {platform.machine()}",
                               hint="the kernel oracle supports x86_64 and aarch64")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr, ctypes.c_uint(len(attr)))
    return ret, (ctypes.get_errno() if ret < 0 else 0)


def _attr(*fields: tuple[str, int, int]) -> ctypes.Array:
    """A zeroed ``union bpf_attr`` with (struct format, offset, value) fields packed in."""
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    for fmt, off, value in fields:
        struct.pack_into("<" + fmt, buf, off, value)
    return buf


def _addr(buf) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _check(ret: int, err: int, what: str, where: str | None = None) -> int:
    if ret < 0:
        hint = None
        if err in (errno.EPERM, errno.EACCES):
            hint = "the kernel oracle needs root (CAP_BPF and CAP_SYS_ADMIN)"
        raise KernelError(f"{what} failed: {os.strerror(err)}", errno_=err, where=where, hint=hint)
    return ret


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@lru_cache(maxsize=1)
def _ncpus() -> int:
    """Number of possible CPUs: the per-CPU value count a syscall lookup returns."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += (int(hi) if hi else int(lo)) - int(lo) + 1
    return total


def _map_name(name: str) -> bytes:
    # The kernel accepts only [A-Za-z0-9_.] in object names, at most 15 characters.
    clean = "".join(c if (c.isascii() and (c.isalnum() or c in "_.")) else "_" for c in name)
    return clean.encode()[:15]


# -- maps ------------------------------------------------------------------------------------

class _KMap:
    """One kernel map backing a :class:`MapDef`."""

    def __init__(self, mapdef: MapDef, *, fd: int | None = None):
        self.mapdef = mapdef
        self.percpu = mapdef.type in _PERCPU_TYPES
        self.stride = (mapdef.value_size + 7) & ~7
        self._ring = None
        if fd is not None:   # an existing map (an inner map reached through its id)
            self.fd = fd
            return
        inner_fd = -1
        if mapdef.type in _MAP_IN_MAP:
            if mapdef.inner is None:
                raise UsageError(f"map-in-map {mapdef.name!r} has no inner map template", where=mapdef.name)
            template = _KMap(mapdef.inner)
            inner_fd = template.fd
        attr = _attr(("I", 0, int(mapdef.type)), ("I", 4, mapdef.key_size), ("I", 8, mapdef.value_size),
                     ("I", 12, mapdef.max_entries), ("I", 16, mapdef.flags), ("I", 20, max(inner_fd, 0)))
        name = _map_name(mapdef.name)
        ctypes.memmove(ctypes.addressof(attr) + 28, name, len(name))
        ret, err = _bpf(_MAP_CREATE, attr)
        if inner_fd >= 0:
            template.close()
        self.fd = _check(ret, err, f"creating map {mapdef.name!r} ({mapdef.type.kernel_name})", mapdef.name)
        try:
            if mapdef.initial is not None and mapdef.max_entries >= 1:
                self.update(bytes(4), bytes(mapdef.initial[: mapdef.value_size]).ljust(mapdef.value_size, b"\0"))
            if mapdef.origin == "global" and mapdef.flags & _BPF_F_RDONLY_PROG:
                ret, err = _bpf(_MAP_FREEZE, _attr(("I", 0, self.fd)))
                _check(ret, err, f"freezing map {mapdef.name!r}", mapdef.name)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._ring is not None:
            for mm in self._ring:
                mm.close()
            self._ring = None
        if self.fd >= 0:
            _close(self.fd)
            self.fd = -1

    def _value_buf(self):
        return ctypes.create_string_buffer(self.stride * _ncpus() if self.percpu else self.mapdef.value_size)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        kbuf = ctypes.create_string_buffer(bytes(key), self.mapdef.key_size or 1)
        vbuf = self._value_buf()
        if self.percpu:  # the same value on every CPU: the program sees it wherever it runs
            for cpu in range(_ncpus()):
                ctypes.memmove(ctypes.addressof(vbuf) + cpu * self.stride, value, len(value))
        else:
            ctypes.memmove(vbuf, value, len(value))
        ret, err = _bpf(_MAP_UPDATE_ELEM, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf)), ("Q", 16, _addr(vbuf)),
                                                ("Q", 24, flags)))
        _check(ret, err, f"updating map {self.mapdef.name!r}", self.mapdef.name)

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> int:
        """MAP_UPDATE_ELEM with exactly these bytes: 0 or -errno (no exception)."""
        kbuf = ctypes.create_string_buffer(bytes(key), max(self.mapdef.key_size, 1))
        vbuf = ctypes.create_string_buffer(bytes(value), max(len(value), 1))
        ret, err = _bpf(_MAP_UPDATE_ELEM, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf) if self.mapdef.key_size else 0),
                                                ("Q", 16, _addr(vbuf)), ("Q", 24, flags)))
        return -err if ret < 0 else 0

    def delete(self, key: bytes) -> int:
        kbuf = ctypes.create_string_buffer(bytes(key), max(self.mapdef.key_size, 1))
        ret, err = _bpf(_MAP_DELETE_ELEM, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf))))
        return -err if ret < 0 else 0

    def next_key(self, key: bytes | None) -> bytes | None:
        ks = self.mapdef.key_size
        kbuf = ctypes.create_string_buffer(bytes(key), ks) if key is not None else None
        nxt = ctypes.create_string_buffer(ks or 1)
        ret, err = _bpf(_MAP_GET_NEXT_KEY, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf)), ("Q", 16, _addr(nxt))))
        if ret < 0 and err == errno.ENOENT:
            return None
        _check(ret, err, f"listing keys of map {self.mapdef.name!r}", self.mapdef.name)
        return nxt.raw[:ks]

    def _pop(self) -> bytes | None:
        vbuf = ctypes.create_string_buffer(max(self.mapdef.value_size, 1))
        ret, err = _bpf(_MAP_LOOKUP_AND_DELETE_ELEM, _attr(("I", 0, self.fd), ("Q", 8, 0), ("Q", 16, _addr(vbuf))))
        if ret < 0 and err == errno.ENOENT:
            return None
        _check(ret, err, f"popping from map {self.mapdef.name!r}", self.mapdef.name)
        return vbuf.raw[: self.mapdef.value_size]

    def _dump_queue(self) -> dict[bytes, bytes]:
        """Queue/stack contents in pop order; the elements are pushed back afterwards."""
        popped = []
        while len(popped) <= self.mapdef.max_entries:
            v = self._pop()
            if v is None:
                break
            popped.append(v)
        for v in (reversed(popped) if self.mapdef.type == MapType.STACK else popped):
            err = self.update_raw(b"", v, 0)
            if err:
                raise KernelError(f"pushing back into map {self.mapdef.name!r} failed: {os.strerror(-err)}",
                                  errno_=-err, where=self.mapdef.name)
        return {i.to_bytes(4, "little"): v for i, v in enumerate(popped)}

    def _dump_ringbuf(self) -> dict[bytes, bytes]:
        """The submitted records, read through the ring's mmap (nobody consumes: from position 0)."""
        import mmap

        page = mmap.PAGESIZE
        size = self.mapdef.max_entries
        if self._ring is None:
            cons = mmap.mmap(self.fd, page, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            prod = mmap.mmap(self.fd, page + 2 * size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=page)
            self._ring = (cons, prod)
        cons, prod = self._ring
        cons_pos = struct.unpack_from("<Q", cons, 0)[0]
        prod_pos = struct.unpack_from("<Q", prod, 0)[0]
        out = {}
        pos = cons_pos
        n = 0
        while pos < prod_pos:
            hdr_len, _pg = struct.unpack_from("<II", prod, page + (pos & (size - 1)))
            length = hdr_len & ~((1 << 31) | (1 << 30))
            if not hdr_len & (1 << 31) and not hdr_len & (1 << 30):
                start = page + ((pos + 8) & (size - 1))
                out[n.to_bytes(4, "little")] = bytes(prod[start:start + length])
                n += 1
            elif hdr_len & (1 << 31):
                break   # still busy: not readable yet
            pos += (length + 8 + 7) & ~7
        return out

    def lookup(self, key: bytes, cpu: int) -> bytes | None:
        kbuf = ctypes.create_string_buffer(bytes(key), self.mapdef.key_size or 1)
        vbuf = self._value_buf()
        ret, err = _bpf(_MAP_LOOKUP_ELEM, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf)), ("Q", 16, _addr(vbuf))))
        if ret < 0 and err == errno.ENOENT:
            return None
        _check(ret, err, f"looking up in map {self.mapdef.name!r}", self.mapdef.name)
        start = cpu * self.stride if self.percpu else 0
        return vbuf.raw[start : start + self.mapdef.value_size]

    def keys(self) -> list[bytes]:
        ks = self.mapdef.key_size
        out: list[bytes] = []
        prev = None
        nxt = ctypes.create_string_buffer(ks or 1)
        while len(out) <= self.mapdef.max_entries:
            kbuf = ctypes.create_string_buffer(prev, ks) if prev is not None else None
            ret, err = _bpf(_MAP_GET_NEXT_KEY, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf)), ("Q", 16, _addr(nxt))))
            if ret < 0 and err == errno.ENOENT:
                break
            _check(ret, err, f"listing keys of map {self.mapdef.name!r}", self.mapdef.name)
            prev = nxt.raw[:ks]
            out.append(prev)
        return out

    def inner_maps(self) -> list[tuple[bytes, "_KMap"]]:
        """(key, inner map opened by id) for every filled slot of a map-in-map; close them after use."""
        if self.mapdef.type == MapType.ARRAY_OF_MAPS:
            keys = [i.to_bytes(4, "little") for i in range(self.mapdef.max_entries)]
        else:
            keys = sorted(self.keys())
        out = []
        for k in keys:
            kbuf = ctypes.create_string_buffer(bytes(k), self.mapdef.key_size or 1)
            vbuf = ctypes.create_string_buffer(4)
            ret, err = _bpf(_MAP_LOOKUP_ELEM, _attr(("I", 0, self.fd), ("Q", 8, _addr(kbuf)), ("Q", 16, _addr(vbuf))))
            if ret < 0 and err == errno.ENOENT:
                continue
            _check(ret, err, f"looking up in map {self.mapdef.name!r}", self.mapdef.name)
            map_id = struct.unpack_from("<I", vbuf)[0]
            ret, err = _bpf(_MAP_GET_FD_BY_ID, _attr(("I", 0, map_id)))
            fd = _check(ret, err, f"opening inner map id {map_id} of {self.mapdef.name!r}", self.mapdef.name)
            out.append((k, _KMap(self.mapdef.inner, fd=fd)))
        return out

    def dump(self, cpu: int) -> dict[bytes, bytes]:
        if self.mapdef.type in (MapType.QUEUE, MapType.STACK):
            return self._dump_queue()
        if self.mapdef.type == MapType.RINGBUF:
            return self._dump_ringbuf()
        if self.mapdef.type in _ARRAYS:
            keys = [i.to_bytes(4, "little") for i in range(self.mapdef.max_entries)]
        else:
            keys = sorted(self.keys())
        out = {}
        for k in keys:
            v = self.lookup(k, cpu)
            if v is not None:
                out[k] = v
        return out


# -- programs --------------------------------------------------------------------------------

def _patch(insns: tuple[Insn, ...], fds: list[int], where: str) -> bytes:
    out = bytearray()
    for n, insn in enumerate(insns):
        if insn.is_ld_imm64 and insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE):
            if not 0 <= insn.imm < len(fds):
                raise UsageError(f"insn {n}: ld_imm64 refers to map index {insn.imm}, the program has {len(fds)} maps",
                                 where=where)
            insn = Insn(insn.code, insn.dst, insn.src, insn.off, fds[insn.imm], insn.imm2)
        out += insn.encode()
    return bytes(out)


def _subprog_starts(program: Program) -> list[int]:
    """Slot indices where the verifier will see functions begin: 0, local-call and callback targets."""
    starts = {0}
    for pc, insn in program.slots():
        if insn.is_local_call or (insn.is_ld_imm64 and insn.src == PseudoSrc.FUNC):
            starts.add(pc + 1 + insn.imm)
    return sorted(starts)


def _minimal_btf(program: Program) -> tuple[bytes, bytes]:
    """A BTF blob with one static ``int f(void)`` FUNC per subprogram, and the func_info records for it.

    The verifier insists on func_info for programs that pass callbacks (bpf_loop and friends);
    programs from the ELF loader carry no BTF of their own in a :class:`Program`, so we make the least
    the kernel accepts.  Types: [1] int, [2] int(void), [3..] one FUNC per subprogram.
    """
    names = {f.start_pc: f.name for f in program.functions}
    strings = bytearray(b"\0int\0")
    types = bytearray()
    types += struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)   # INT "int", signed, 32 bits
    types += struct.pack("<III", 0, 13 << 24, 1)                                        # FUNC_PROTO: int (void)
    func_info = bytearray()
    for n, pc in enumerate(_subprog_starts(program)):
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in names.get(pc, f"sub_{pc}")) or f"sub_{pc}"
        if name[0].isdigit():
            name = "f" + name
        off = len(strings)
        strings += name.encode() + b"\0"
        types += struct.pack("<III", off, 12 << 24, 2)                                  # FUNC, static linkage
        func_info += struct.pack("<II", pc, 3 + n)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + bytes(types) + bytes(strings), bytes(func_info)


def _load_btf(blob: bytes, where: str) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(1 << 16)
    ret, err = _bpf(_BTF_LOAD, _attr(("Q", 0, _addr(buf)), ("Q", 8, _addr(log)), ("I", 16, len(blob)),
                                     ("I", 20, len(log)), ("I", 24, 1)))
    if ret < 0:
        raise KernelError(f"loading the generated BTF failed: {os.strerror(err)}: {log.value.decode(errors='replace')}",
                          errno_=err, where=where)
    return ret


class KernelProgram:
    """A program loaded into the kernel with its maps; a context manager that closes every fd.

    ``maps_in`` (a :data:`MapState`-shaped dict or ``{name: [(key, value)]}``) is written
    into the maps before the first run.  Maps persist across :meth:`run` calls.
    """

    def __init__(self, program: Program, *, maps_in: dict | None = None, netns: str | None = None,
                 perf_events: bool = False):
        if not isinstance(program, Program):
            raise UsageError(f"expected a Program, got {type(program).__name__}")
        self.program = program
        self.maps: list[_KMap] = []
        self.hidden: list[_KMap] = []   # inner maps only reachable through an outer map
        self.fd = -1
        self.btf_fd = -1
        self.log = ""
        self.netns = netns
        self.perf: list[_PerfEvent] = []
        self.last_duration_ns = 0   # BPF_PROG_TEST_RUN's average run time of the last run()
        where = program.source_path or program.name
        try:
            for mapdef in program.maps:
                self.maps.append(_KMap(mapdef))
            self._fill_initial_slots()
            if perf_events:
                self._attach_perf_events()
            if maps_in:
                self.write_maps(maps_in)
            self._load(where)
        except BaseException:
            self.close()
            raise

    def _fill_initial_slots(self) -> None:
        """Outer maps' ``__array(values, ...)`` initialisers: the named inner maps go into their slots."""
        for kmap in list(self.maps):
            for key, inner_def in kmap.mapdef.slots:
                inner = next((m for m in self.maps + self.hidden if m.mapdef.name == inner_def.name), None)
                if inner is None:
                    inner = _KMap(inner_def)
                    self.hidden.append(inner)
                err = kmap.update_raw(key, struct.pack("<I", inner.fd))
                if err:
                    raise KernelError(f"putting map {inner_def.name!r} into {kmap.mapdef.name!r} failed: "
                                      f"{os.strerror(-err)}", errno_=-err, where=kmap.mapdef.name)

    def _attach_perf_events(self) -> None:
        """A BPF_OUTPUT perf event per possible CPU in every perf event array (slot i = CPU i), as a reader
        such as ``perf`` or libbpf's perf_buffer sets up; run() then returns the samples in perf_output."""
        for kmap in self.maps:
            if kmap.mapdef.type != MapType.PERF_EVENT_ARRAY:
                continue
            for cpu in range(min(_ncpus(), kmap.mapdef.max_entries)):
                ev = _PerfEvent(cpu)
                self.perf.append(ev)
                err = kmap.update_raw(struct.pack("<I", cpu), struct.pack("<I", ev.fd))
                if err:
                    raise KernelError(f"attaching a perf event to {kmap.mapdef.name!r}[{cpu}] failed: "
                                      f"{os.strerror(-err)}", errno_=-err, where=kmap.mapdef.name)

    # -- public map access (user-space view, like bpftool map ...) --------------------------------
    def update(self, name: str, key: bytes, value: bytes, flags: int = 0) -> int:
        """BPF_MAP_UPDATE_ELEM: 0 or -errno."""
        return self._map(name).update_raw(key, value, flags)

    def lookup(self, name: str, key: bytes) -> bytes | None:
        return self._map(name).lookup(key, 0)

    def delete(self, name: str, key: bytes) -> int:
        """BPF_MAP_DELETE_ELEM: 0 or -errno."""
        return self._map(name).delete(key)

    def get_next_key(self, name: str, key: bytes | None = None) -> bytes | None:
        """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (the first for None), None at the end."""
        return self._map(name).next_key(key)

    def _load(self, where: str) -> None:
        program = self.program
        code = ctypes.create_string_buffer(_patch(program.insns, [m.fd for m in self.maps], where))
        license_ = ctypes.create_string_buffer((program.license or "GPL").encode())
        log = ctypes.create_string_buffer(_LOG_SIZE)
        fields = [("I", 0, int(program.prog_type)), ("I", 4, program.nslots), ("Q", 8, _addr(code)),
                  ("Q", 16, _addr(license_))]
        if any(i.is_ld_imm64 and i.src == PseudoSrc.FUNC for i in program.insns):
            blob, info = _minimal_btf(program)
            self.btf_fd = _load_btf(blob, where)
            finfo = ctypes.create_string_buffer(info, len(info))
            fields += [("I", 72, self.btf_fd), ("I", 76, 8), ("Q", 80, _addr(finfo)), ("I", 88, len(info) // 8)]
        attr = _attr(*fields, ("I", 24, 1), ("I", 28, _LOG_SIZE), ("Q", 32, _addr(log)))
        name = _map_name(program.name)
        ctypes.memmove(ctypes.addressof(attr) + 48, name, len(name))
        ret, err = _bpf(_PROG_LOAD, attr)
        self.log = log.value.decode(errors="replace")
        if ret < 0 and err == errno.ENOSPC:
            # The log did not fit: load once more without it so the verdict is still known.
            ret, err = _bpf(_PROG_LOAD, _attr(*fields))
        if ret < 0:
            if err in (errno.EPERM,) and not self.log:
                _check(ret, err, "loading the program", where)
            raise KernelRejected(f"the kernel verifier rejected the program ({os.strerror(err)})",
                                 log=self.log, errno_=err, where=where,
                                 hint="the verifier log (KernelRejected.log) says why")
        self.fd = ret

    def write_maps(self, state: dict) -> None:
        """Write entries; an outer map's value may be a map name (str) or a list of inner (key, value) rows
        (a fresh inner map made from the template) — :class:`nfpjit.ebpf.mapfile.InnerMap` or plain."""
        for name, entries in state.items():
            kmap = self._map(name)
            rows = entries.items() if isinstance(entries, dict) else entries
            for key, value in rows:
                if kmap.mapdef.type in _MAP_IN_MAP:
                    self._put_inner(kmap, bytes(key), value)
                elif kmap.mapdef.type in (MapType.QUEUE, MapType.STACK):
                    err = kmap.update_raw(b"", bytes(value))
                    if err:
                        raise KernelError(f"pushing into map {name!r} failed: {os.strerror(-err)}", errno_=-err,
                                          where=name)
                else:
                    kmap.update(bytes(key), bytes(value))

    def _put_inner(self, outer: _KMap, key: bytes, value) -> None:
        """``value``: a map name, a list of inner (key, value) rows, or an ``InnerMap`` (name or entries)."""
        if isinstance(value, str):
            target, entries = value, ()
        elif isinstance(value, (list, tuple)):
            target, entries = None, value
        else:
            target, entries = getattr(value, "name", None), getattr(value, "entries", ())
        if target:
            inner = next((m for m in self.maps + self.hidden if m.mapdef.name == target), None)
            if inner is None:
                raise UsageError(f"no map named {target!r} to put into {outer.mapdef.name!r}")
        else:
            from dataclasses import replace

            inner = _KMap(replace(outer.mapdef.inner, name=f"{outer.mapdef.name[:7]}_{key.hex()[:6]}"))
            self.hidden.append(inner)
        for k, v in entries or ():
            inner.update(bytes(k), bytes(v))
        err = outer.update_raw(key, struct.pack("<I", inner.fd))
        if err:
            raise KernelError(f"putting a map into {outer.mapdef.name!r} failed: {os.strerror(-err)}", errno_=-err,
                              where=outer.mapdef.name)

    def _map(self, name: str) -> _KMap:
        for m in self.maps:
            if m.mapdef.name == name:
                return m
        known = ", ".join(m.mapdef.name for m in self.maps) or "none"
        raise UsageError(f"no map named {name!r}", hint=f"maps: {known}")

    def dump_maps(self, cpu: int = 0) -> MapState:
        """Map contents (arrays: every index; hashes: present entries, sorted by key).

        Maps whose values the syscall cannot read back (prog arrays, devmaps, ...) are left out.
        """
        out = {m.mapdef.name: m.dump(cpu) for m in self.maps if m.mapdef.type in DUMPABLE_MAP_TYPES}
        for m in self.maps:
            if m.mapdef.type in _MAP_IN_MAP:
                for key, inner in m.inner_maps():
                    try:
                        if inner.mapdef.type in DUMPABLE_MAP_TYPES:
                            out[f"{m.mapdef.name}[{key.hex()}]"] = inner.dump(cpu)
                    finally:
                        inner.close()
        return out

    def run(self, packet: PacketIn | bytes, *, repeat: int = 1) -> RunResult:
        """BPF_PROG_TEST_RUN on one packet: r0 = retval (u32), packet = data_out, maps dumped after."""
        if isinstance(packet, (bytes, bytearray, memoryview)):
            packet = PacketIn(bytes(packet))
        if not isinstance(packet, PacketIn):
            raise UsageError(f"expected packet bytes or a PacketIn, got {type(packet).__name__}")
        if self.fd < 0:
            raise UsageError("the program is closed")
        ptype = self.program.prog_type
        if ptype not in (ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT):
            raise UnsupportedError(f"the kernel oracle runs XDP and TC programs, not {ptype.name}")
        data = packet.data
        if len(data) < _ETH_HLEN:
            raise UsageError(f"a packet of {len(data)} bytes is shorter than an Ethernet header",
                             hint="BPF_PROG_TEST_RUN needs at least 14 bytes")
        din = ctypes.create_string_buffer(data, len(data))
        dout = ctypes.create_string_buffer(len(data) + _OUT_SLACK)
        fields = [("I", 0, self.fd), ("I", 8, len(data)), ("I", 12, len(dout)), ("Q", 16, _addr(din)),
                  ("Q", 24, _addr(dout)), ("I", 32, max(1, repeat))]
        ctx = None
        if ptype == ProgType.XDP and (packet.ingress_ifindex or packet.rx_queue_index):
            # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
            # ingress_ifindex must name a real device in our namespace (1 = lo) and rx_queue one of its queues.
            ctx = ctypes.create_string_buffer(struct.pack("<6I", 0, len(data), 0, packet.ingress_ifindex,
                                                          packet.rx_queue_index, 0), 24)
            fields += [("I", 40, 24), ("Q", 48, _addr(ctx))]
        elif ptype != ProgType.XDP:
            # struct __sk_buff (192 bytes): test_run takes mark, priority, ingress_ifindex (skb->skb_iif),
            # ifindex (the device: one of this namespace's, 0 = loopback), cb[] and more from ctx_in, and
            # with wire_len 0 sets wire_len to the packet length; it cannot set skb->hash (always 0).
            if packet.hash != 0:
                raise UsageError(f"BPF_PROG_TEST_RUN cannot give a TC program skb->hash {packet.hash!r}",
                                 hint="the kernel's test skb has no receive hash: use PacketIn(hash=0)")
            ctx = ctypes.create_string_buffer(_SKB_CTX_SIZE)
            struct.pack_into("<I", ctx, 8, packet.mark & 0xFFFF_FFFF)
            struct.pack_into("<I", ctx, 32, packet.priority & 0xFFFF_FFFF)
            struct.pack_into("<I", ctx, 36, packet.ingress_ifindex & 0xFFFF_FFFF)
            if packet.ingress_ifindex > 1:
                struct.pack_into("<I", ctx, 40, packet.ingress_ifindex & 0xFFFF_FFFF)
            struct.pack_into("<5I", ctx, 48, *(w & 0xFFFF_FFFF for w in packet.cb))
            fields += [("I", 40, _SKB_CTX_SIZE), ("Q", 48, _addr(ctx)), ("I", 44, _SKB_CTX_SIZE),
                       ("Q", 56, _addr(ctx))]
        # Per-CPU maps: pin to one CPU so the dump reads the slot the program wrote.
        cpu = None
        try:
            old = os.sched_getaffinity(0)
            cpu = min(old)
            os.sched_setaffinity(0, {cpu})
        except (AttributeError, OSError):
            old = None
        attr = _attr(*fields)
        try:
            with _in_netns(self.netns):
                ret, err = _bpf(_PROG_TEST_RUN, attr)
        finally:
            if old is not None:
                os.sched_setaffinity(0, old)
        where = self.program.source_path or self.program.name
        if ret < 0:
            if err in (errno.EINVAL, errno.ENODEV) and ctx is not None and ptype == ProgType.XDP:
                raise KernelError("BPF_PROG_TEST_RUN refused the XDP context", errno_=err, where=where,
                                  hint=f"ingress_ifindex {packet.ingress_ifindex} must be a device in this "
                                       f"namespace and rx_queue_index {packet.rx_queue_index} one of its queues")
            if err == errno.ENODEV and ptype != ProgType.XDP:
                raise KernelError("BPF_PROG_TEST_RUN refused the TC context", errno_=err, where=where,
                                  hint=f"ingress_ifindex {packet.ingress_ifindex} must be a device in this "
                                       "namespace (it is also the skb's device)")
            if err == errno.EINVAL and ptype != ProgType.XDP and not tc_test_run_accepts(data):
                raise KernelError("BPF_PROG_TEST_RUN refuses this TC packet", errno_=err, where=where,
                                  hint="the kernel builds an skb and wants the full IPv4 (20 B) or IPv6 (40 B) "
                                       "header after the Ethernet header when the EtherType says so")
            _check(ret, err, "BPF_PROG_TEST_RUN", where)
        retval, _, size_out = struct.unpack_from("<III", attr, 4)
        self.last_duration_ns = struct.unpack_from("<I", attr, 36)[0]
        samples = [rec for ev in self.perf for rec in ev.read()]
        skb = None
        if ptype != ProgType.XDP:
            # ctx_out: convert_skb_to___skb hands back mark, priority and cb[] (what a program may write)
            mark, = struct.unpack_from("<I", ctx, 8)
            priority, = struct.unpack_from("<I", ctx, 32)
            cb = struct.unpack_from("<5I", ctx, 48)
            skb = {"mark": mark, "priority": priority, **{f"cb[{i}]": w for i, w in enumerate(cb)}}
        return RunResult(r0=retval, packet=dout.raw[: min(size_out, len(dout))], maps=self.dump_maps(cpu or 0),
                         perf_output=samples, skb=skb)

    def close(self) -> None:
        if self.fd >= 0:
            _close(self.fd)
            self.fd = -1
        if self.btf_fd >= 0:
            _close(self.btf_fd)
            self.btf_fd = -1
        for ev in getattr(self, "perf", []):
            ev.close()
        self.perf = []
        for m in self.maps + getattr(self, "hidden", []):
            m.close()
        self.maps = []
        self.hidden = []

    def __enter__(self) -> "KernelProgram":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if hasattr(self, "maps"):  # __init__ may have failed before any fd existed
            self.close()


_PERF_EVENT_OPEN_NR = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}
_PERF_TYPE_SOFTWARE = 1
_PERF_COUNT_SW_BPF_OUTPUT = 10
_PERF_SAMPLE_RAW = 1 << 10
_PERF_RECORD_SAMPLE = 9
_PERF_PAGES = 8


class _PerfEvent:
    """A BPF_OUTPUT software perf event on one CPU with its mmap'ed ring; read() takes the RAW samples out."""

    def __init__(self, cpu: int):
        import mmap

        attr = ctypes.create_string_buffer(128)
        struct.pack_into("<IIQQQ", attr, 0, _PERF_TYPE_SOFTWARE, 128, _PERF_COUNT_SW_BPF_OUTPUT, 1,
                         _PERF_SAMPLE_RAW)
        struct.pack_into("<I", attr, 48, 1)   # wakeup_events
        nr = _PERF_EVENT_OPEN_NR.get(platform.machine().lower())
        if nr is None:
            raise UnsupportedError(f"no perf_event_open number known for {platform.machine()}")
        libc = _libc()
        fd = libc.syscall(ctypes.c_long(nr), attr, ctypes.c_int(-1), ctypes.c_int(cpu), ctypes.c_int(-1),
                          ctypes.c_ulong(8))   # PERF_FLAG_FD_CLOEXEC
        if fd < 0:
            err = ctypes.get_errno()
            raise KernelError(f"perf_event_open on CPU {cpu} failed: {os.strerror(err)}", errno_=err)
        self.fd = fd
        self.page = mmap.PAGESIZE
        self.size = self.page * _PERF_PAGES
        try:
            self.mm = mmap.mmap(fd, self.page + self.size, flags=mmap.MAP_SHARED,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            _close(fd)
            raise

    def read(self) -> list[bytes]:
        """The RAW payloads (with the kernel's zero padding to 8 bytes after the u32 size) since the last read."""
        head = struct.unpack_from("<Q", self.mm, 1024)[0]    # perf_event_mmap_page.data_head
        tail = struct.unpack_from("<Q", self.mm, 1032)[0]    # data_tail
        out = []
        while tail < head:
            def at(off: int, n: int) -> bytes:
                start = (tail + off) % self.size
                first = self.mm[self.page + start: self.page + min(start + n, self.size)]
                return first + self.mm[self.page: self.page + n - len(first)]
            rtype, _misc, rsize = struct.unpack("<IHH", at(0, 8))
            if rtype == _PERF_RECORD_SAMPLE:
                (raw_size,) = struct.unpack("<I", at(8, 4))
                out.append(at(12, raw_size))
            tail += rsize
        struct.pack_into("<Q", self.mm, 1032, tail)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            self.mm.close()
            _close(self.fd)
            self.fd = -1


def perf_raw_payload(sample: bytes) -> bytes:
    """How a perf RAW record carries ``sample``: padded with zeros so that 4 + size is a multiple of 8."""
    size = ((len(sample) + 4 + 7) & ~7) - 4
    return sample + bytes(size - len(sample))


_CLONE_NEWNET = 0x40000000


class _in_netns:
    """Run the enclosed code in the network namespace at ``path`` (a /run/netns file), then come back.

    BPF_PROG_TEST_RUN resolves devices (the context's ingress_ifindex, bpf_fib_lookup's ifindex,
    bpf_check_mtu) in the namespace of the task that runs it.
    """

    def __init__(self, path: str | None):
        self.path = path
        self.home = -1

    def __enter__(self):
        if not self.path:
            return self
        libc = _libc()
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise KernelError(f"cannot enter network namespace {self.path}: {os.strerror(err)}", errno_=err)
        except BaseException:
            os.close(self.home)
            self.home = -1
            raise
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc):
        if self.home >= 0:
            _libc().setns(self.home, _CLONE_NEWNET)
            os.close(self.home)
            self.home = -1


_PAGE_SIZE = 4096
_XDP_HEADROOM = 256
_SKB_SHARED_INFO = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) on x86_64/aarch64


def kernel_tailroom(prog_type: ProgType, frame_len: int) -> int:
    """How far ``bpf_xdp_adjust_tail`` can grow a ``frame_len``-byte packet under BPF_PROG_TEST_RUN.

    test_run puts an XDP packet in one page: 256 bytes of headroom, the data, and the
    ``skb_shared_info`` at the end; the space in between is tailroom.  Pass it to the
    interpreter (``run(..., tailroom=...)``) to model the same buffer.
    """
    if prog_type != ProgType.XDP:
        return 0
    return max(0, _PAGE_SIZE - _XDP_HEADROOM - _SKB_SHARED_INFO - frame_len)


def tc_test_run_accepts(frame: bytes) -> bool:
    """Whether BPF_PROG_TEST_RUN takes ``frame`` for a TC program.

    The kernel refuses (EINVAL) an untagged frame whose EtherType is IPv4 or
    IPv6 but which is too short to hold that IP header.
    """
    if len(frame) < _ETH_HLEN:
        return False
    ethertype = int.from_bytes(frame[12:14], "big")
    need = {0x0800: 20, 0x86DD: 40}.get(ethertype, 0)
    return len(frame) >= _ETH_HLEN + need


# -- one-shot helpers -----------------------------------------------------------------------

def load_in_kernel(program: Program, *, maps_in: dict | None = None) -> KernelProgram:
    """Create the maps and load ``program``; close the result (or use ``with``) when done."""
    return KernelProgram(program, maps_in=maps_in)


def run_in_kernel(program: Program, packet: PacketIn | bytes, *, maps_in: dict | None = None) -> RunResult:
    """Load ``program`` with fresh maps (preloaded from ``maps_in``), run it on one packet, dump the maps."""
    with KernelProgram(program, maps_in=maps_in) as kp:
        return kp.run(packet)


@lru_cache(maxsize=1)
def kernel_available() -> tuple[bool, str]:
    """Whether bpf() can load and test-run an XDP program here: ``(ok, reason)``; checked once."""
    from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, Source

    prog = Program(
        name="nfpjit_probe",
        insns=(Insn(InsnClass.ALU64 | AluOp.MOV | Source.K, 0, 0, 0, 2), Insn(InsnClass.JMP | JmpOp.EXIT)),
        prog_type=ProgType.XDP,
        license="GPL",
    )
    try:
        result = run_in_kernel(prog, bytes(64))
    except (NfpjitError, OSError) as exc:
        return False, f"the kernel cannot load/run a trivial XDP program: {exc}"
    if result.r0 != 2:
        return False, f"BPF_PROG_TEST_RUN returned {result.r0}, expected 2 (XDP_PASS)"
    return True, "ok"

"""kfuncs: kernel functions a program calls by name (``extern ... __ksym``, ``call`` with src=KFUNC).

The loader turns a call to an undefined function symbol into a kfunc call as libbpf does:
``src = BPF_PSEUDO_KFUNC_CALL``, ``imm`` = the function's id in the running kernel's BTF
(``/sys/kernel/btf/vmlinux``; 0 when the kernel or its BTF does not have it), and records the
name in ``Program.kfuncs`` (by pc).  :data:`KFUNCS` is what the interpreter models, each as
``BPF_PROG_TEST_RUN`` behaves: the XDP metadata kfuncs return ``-EOPNOTSUPP`` because the test
run's device (``lo``, or the context's ingress device, never a device-bound program) has no
metadata ops; ``bpf_xdp_flow_lookup`` finds no flowtable (``opts->error = -ENOENT``, NULL);
the dynptr kfuncs over the XDP packet (``bpf_dynptr_from_xdp``, ``_slice``, ``_slice_rdwr``,
``_size``, ``_adjust``, ``_is_null``, ``_is_rdonly``) work as the kernel's, with the helpers
``bpf_dynptr_read``/``bpf_dynptr_write``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from nfpjit.bits import u32
from nfpjit.ebpf.maps import Errno
from nfpjit.ebpf.result import Trap

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
_BTF_KIND_FUNC = 12
AF_INET = 2
AF_INET6 = 10
NF_BPF_FLOWTABLE_OPTS_SZ = 4


@dataclass(frozen=True)
class KfuncSpec:
    name: str
    nargs: int
    fn: Callable[..., int]


def _xdp_only(m, name: str) -> None:
    from nfpjit.ebpf.opcodes import ProgType

    if m.program.prog_type != ProgType.XDP or m.packet is None:
        raise Trap(f"kfunc {name} is only available to XDP programs")


def _metadata(name: str):
    def fn(m, ctx, *out_ptrs) -> int:
        _xdp_only(m, name)
        return -Errno.EOPNOTSUPP   # the test run's device implements no xdp_metadata_ops
    return fn


def _flow_lookup(m, ctx, fib_tuple, opts, opts_len) -> int:
    _xdp_only(m, "bpf_xdp_flow_lookup")
    if u32(opts_len) != NF_BPF_FLOWTABLE_OPTS_SZ:
        m.write(opts, struct.pack("<i", -Errno.EINVAL))
        return 0
    family = m.read(fib_tuple, 1)[0]
    if family not in (AF_INET, AF_INET6):
        m.write(opts, struct.pack("<i", -Errno.EAFNOSUPPORT))
        return 0
    m.write(opts, struct.pack("<i", -Errno.ENOENT))   # no flowtable on the test run's device
    return 0


# -- dynptrs over the XDP packet --------------------------------------------------------------
# A struct bpf_dynptr (16 bytes, opaque to the program: the verifier lets only helpers and kfuncs
# touch it) holds here: u64 packet region address (0: a null dynptr), u32 size, u32 offset.
ERANGE = 34
_DYN = struct.Struct("<QII")


def dynptr_get(m, ptr: int) -> tuple[int, int, int]:
    return _DYN.unpack(m.read(ptr, 16))


def _dyn_check(size: int, offset: int, length: int) -> int:
    """bpf_dynptr_check_off_len: 0 or -E2BIG."""
    return -Errno.E2BIG if length > size or offset > size - length else 0


def _from_xdp(m, ctx, flags, ptr) -> int:
    _xdp_only(m, "bpf_dynptr_from_xdp")
    if flags:
        m.write(ptr, bytes(16))
        return -Errno.EINVAL
    m.write(ptr, _DYN.pack(m.packet_region.base, m.packet.length, 0))
    return 0


def _slice(m, ptr, offset, buf, buflen) -> int:
    data, size, off = dynptr_get(m, ptr)
    offset, buflen = u32(offset), u32(buflen)
    if not data or _dyn_check(size, offset, buflen):
        return 0
    at = off + offset
    if at > 0xFFFF or buflen > 0xFFFF or at + buflen > m.packet.length:   # bpf_xdp_pointer
        return 0
    return data + m.packet.data + at   # the packet itself: linear, so never the bounce buffer


def _size(m, ptr) -> int:
    data, size, _off = dynptr_get(m, ptr)
    return size if data else u32(-Errno.EINVAL)


def _adjust(m, ptr, start, end) -> int:
    data, size, off = dynptr_get(m, ptr)
    start, end = u32(start), u32(end)
    if not data:
        return -Errno.EINVAL
    if start > size or end > size:
        return -ERANGE
    if start > end:
        return -Errno.EINVAL
    m.write(ptr, _DYN.pack(data, end - start, off + start))
    return 0


def _is_null(m, ptr) -> int:
    return int(not dynptr_get(m, ptr)[0])


def _is_rdonly(m, ptr) -> int:
    return 0   # an XDP dynptr is writable


KFUNCS: dict[str, KfuncSpec] = {
    spec.name: spec for spec in (
        KfuncSpec("bpf_xdp_metadata_rx_timestamp", 2, _metadata("bpf_xdp_metadata_rx_timestamp")),
        KfuncSpec("bpf_xdp_metadata_rx_hash", 3, _metadata("bpf_xdp_metadata_rx_hash")),
        KfuncSpec("bpf_xdp_metadata_rx_vlan_tag", 3, _metadata("bpf_xdp_metadata_rx_vlan_tag")),
        KfuncSpec("bpf_xdp_flow_lookup", 4, _flow_lookup),
        KfuncSpec("bpf_dynptr_from_xdp", 3, _from_xdp),
        KfuncSpec("bpf_dynptr_slice", 4, _slice),
        KfuncSpec("bpf_dynptr_slice_rdwr", 4, _slice),
        KfuncSpec("bpf_dynptr_size", 1, _size),
        KfuncSpec("bpf_dynptr_adjust", 3, _adjust),
        KfuncSpec("bpf_dynptr_is_null", 1, _is_null),
        KfuncSpec("bpf_dynptr_is_rdonly", 1, _is_rdonly),
    )
}


def call_kfunc(m, program, pc: int, insn) -> int:
    name = program.kfuncs.get(pc)
    spec = KFUNCS.get(name)
    if spec is None:
        raise Trap(f"kfunc {name or f'btf id {insn.imm}'} is not modelled by the interpreter")
    args = list(m.regs[1: 1 + spec.nargs])
    for n, a in enumerate(args, 1):
        if a is None:
            if name.startswith("bpf_dynptr_slice") and n == 3:
                args[n - 1] = 0   # buffer__opt may be NULL
                continue
            raise Trap(f"{name}: argument r{n} is uninitialised")
    return spec.fn(m, *args)


@lru_cache(maxsize=1)
def _vmlinux_funcs() -> dict[str, int]:
    """FUNC name -> BTF id in the running kernel's vmlinux BTF (empty when it is not readable)."""
    try:
        data = VMLINUX_BTF.read_bytes()
    except OSError:
        return {}
    try:
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
        if magic != 0xEB9F:
            return {}
        types = memoryview(data)[hdr_len + type_off: hdr_len + type_off + type_len]
        strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        out: dict[str, int] = {}
        pos, tid = 0, 1
        unpack = struct.unpack_from
        # extra bytes after the 12-byte header, per kind: (fixed, per vlen item)
        extra = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0),
                 15: (0, 12), 17: (4, 0), 19: (0, 12)}
        n = len(types)
        while pos + 12 <= n:
            name_off, info, _ = unpack("<III", types, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            if kind == _BTF_KIND_FUNC:
                end = strings.find(b"\0", name_off)
                out[strings[name_off:end].decode("latin-1")] = tid
            fixed, per = extra.get(kind, (0, 0))
            pos += 12 + fixed + per * vlen
            tid += 1
        return out
    except (struct.error, ValueError):
        return {}


def resolve_kfunc(name: str) -> int:
    """The BTF id of kernel function ``name`` in the running kernel, or 0."""
    return _vmlinux_funcs().get(name, 0)


__all__ = ["KFUNCS", "KfuncSpec", "call_kfunc", "resolve_kfunc"]

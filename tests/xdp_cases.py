"""Shared plumbing for the XDP-helper tests: build small C programs, run both engines, private netns.

``build(src)`` compiles a C snippet (with the corpus header and its XDP helper set) into a
Program; ``both(program, frames, ...)`` runs the frames through the kernel (BPF_PROG_TEST_RUN)
and the interpreter with persistent maps and returns the per-packet differences;
``fresh_netns()`` gives a private network namespace (``lo`` only, forwarding off: what
``Net.default()`` models) for tests whose helpers look at devices and routes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

import nfpjit
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.mapfile import apply_entries
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelProgram, kernel_available, kernel_tailroom
from nfpjit.testing import compare_results

from conftest import CORPUS, need_tool

KERNEL_OK, KERNEL_REASON = kernel_available()
needs_kernel = pytest.mark.skipif(not KERNEL_OK, reason=f"kernel bpf() unusable: {KERNEL_REASON}")

_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"nfpjit-xdp-cases-{os.getuid()}"


def build(source: str, *, name: str = "t") -> nfpjit.ebpf.program.Program:
    """Compile ``source`` (the corpus header is included first) and load its one program."""
    clang = need_tool("clang")
    _CACHE.mkdir(exist_ok=True)
    text = '#define NFPJIT_XDP_HELPERS\n#include "bpf_defs.h"\n' + source + '\nchar _license[] SEC("license") = "GPL";\n'
    key = f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}"
    src, obj = _CACHE / f"{key}.c", _CACHE / f"{key}.o"
    if not obj.exists():
        src.write_text(text)
        res = subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-I{CORPUS / 'include'}", "-Wall",
                              "-c", str(src), "-o", str(obj) + ".tmp"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        os.replace(str(obj) + ".tmp", obj)
    return nfpjit.load(obj)


def both(program, frames, *, maps_in: dict | None = None, netns: str | None = None, net=None,
         ingress_ifindex: int = 1, prepare=None) -> tuple[list[str], list, list]:
    """Differences (per packet) between kernel and interpreter, plus both engines' results."""
    store = MapStore.from_program(program)
    if maps_in:
        apply_entries(maps_in, store)
    if prepare is not None:
        prepare(store)
    problems, want_all, got_all = [], [], []
    with KernelProgram(program, maps_in=maps_in, netns=netns) as kp:
        for n, frame in enumerate(frames):
            pin = PacketIn(frame, ingress_ifindex=ingress_ifindex)
            want = kp.run(pin)
            got = run(program, pin, maps=store, tailroom=kernel_tailroom(program.prog_type, len(frame)), net=net)
            want_all.append(want)
            got_all.append(got)
            problems += [f"packet {n}: {d}" for d in compare_results(want, got)]
    return problems, want_all, got_all


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@contextmanager
def fresh_netns(setup: list[list[str]] = ()):
    """A private network namespace (``ip netns add``), configured with ``ip -n NS ...`` commands; yields its path."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"nfpjit-{uuid.uuid4().hex[:8]}"
    res = _ip("netns", "add", name, check=False)
    if res.returncode:
        pytest.skip(f"cannot create a network namespace: {res.stderr.strip()}")
    try:
        for cmd in setup:
            _ip("-n", name, *cmd)
        yield f"/run/netns/{name}"
    finally:
        _ip("netns", "del", name, check=False)


def netns_ifindex(path: str, dev: str) -> int:
    out = _ip("-n", Path(path).name, "-o", "link", "show", dev).stdout
    return int(out.split(":", 1)[0])


def sysctl_in(path: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", Path(path).name, "sysctl", "-qw", f"{key}={value}"], check=True,
                   capture_output=True)

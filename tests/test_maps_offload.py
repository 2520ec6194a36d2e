"""The map corpus under the default profile: every program compiles and agrees with the kernel.

The programs of the "maps and map-value memory" part of issue 11 (map-value stores, atomics, global
data, map flags) compile under ``default`` at -O0 and -O2; on the crafted packets (50+, maps
persisting) the simulated image gives the kernel's verdict, packet and maps (BPF_PROG_TEST_RUN),
and the reference interpreter's too.  The real card (profile ``nfp-kernel``) still refuses them.
"""

from __future__ import annotations

import pytest

import nfpjit
from nfpjit.driver import compile as jit_compile, simulate_image, to_run_result
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelProgram, kernel_available
from nfpjit.testing import compare_results, crafted_packets

from conftest import CORPUS

#: corpus programs that compile under default since map-value stores, atomics and map flags are lowered
MAP_PROGRAMS = ["array_counter", "hash_counter", "global_data", "legacy_maps", "parse_l2_l3_l4",
                "two_programs:xdp/ingress", "two_programs:xdp.frags", "bounded_loop", "asm/atomic32", "asm/atomic64"]
FRAMES = [f for f in crafted_packets() if len(f) <= 400]
assert len(FRAMES) >= 50

kernel_ok, kernel_reason = kernel_available()


def _load(key: str):
    if key.startswith("asm/"):
        path = CORPUS / "asm" / f"{key[4:]}.s"
        return nfpjit.load(path)
    stem, _, section = key.partition(":")
    return nfpjit.load(CORPUS / f"{stem}.o", section=section or None)


@pytest.mark.parametrize("key", MAP_PROGRAMS)
def test_default_compiles_and_the_real_card_refuses(key):
    program = _load(key)
    report = nfpjit.check(program)
    assert report.ok, sorted(report.codes)
    assert not nfpjit.check(program, profile="nfp-kernel").ok
    for level in (0, 2):
        jit_compile(program, opt_level=level)


@pytest.mark.parametrize("key", MAP_PROGRAMS)
def test_sim_agrees_with_the_interpreter(key):
    program = _load(key)
    images = [jit_compile(program, opt_level=level).image for level in (0, 2)]
    store = MapStore.from_program(program)
    states = [None, None]
    for n, frame in enumerate(FRAMES):
        ref = run(program, PacketIn(frame), maps=store)
        for i, image in enumerate(images):
            got = to_run_result(simulate_image(image, PacketIn(frame), maps_in=states[i]))
            states[i] = got.maps
            diffs = compare_results(ref, got, r0_bits=32)
            assert not diffs, (key, f"image {i}", n, frame.hex(), diffs)


@pytest.mark.kernel
@pytest.mark.skipif(not kernel_ok, reason=f"kernel bpf() unusable: {kernel_reason}")
@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("key", MAP_PROGRAMS)
def test_sim_agrees_with_the_kernel(key, level):
    program = _load(key)
    image = jit_compile(program, opt_level=level).image
    names = {m.name for m in image.maps}
    with KernelProgram(program) as kp:
        state = {k: v for k, v in kp.dump_maps().items() if k in names}
        for n, frame in enumerate(FRAMES):
            want = kp.run(PacketIn(frame))
            sim = simulate_image(image, PacketIn(frame), maps_in=state)
            got = to_run_result(sim)
            state = got.maps
            diffs = compare_results(want, got, r0_bits=32)
            assert not diffs, (key, n, frame.hex(), diffs)
            assert got.fault is None
            if want.r0 & 0xFFFFFFFF <= 4:
                assert sim.action == want.r0 & 0xFFFFFFFF

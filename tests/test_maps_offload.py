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
                "two_programs:xdp/ingress", "two_programs:xdp.frags", "bounded_loop", "asm/atomic32", "asm/atomic64",
                "percpu_array", "conntrack_lite", "dns_filter", "maglev_lb", "syn_flood_guard"]
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


# -- per-CPU maps: one copy of each value per thread ----------------------------------------------

from nfpjit.ebpf.asm import assemble  # noqa: E402
from nfpjit.isa.sim import simulate_threads  # noqa: E402

_PERCPU_HASH = """
    .type xdp
    .map h percpu_hash key=4 value=8 entries=8
    ldxw r2, [r1+0]
    ldxw r3, [r1+4]
    mov r4, r2
    add r4, 14
    jgt r4, r3, out
    ldxb r6, [r2+13]
    and r6, 3
    stxw [r10-4], r6
    lddw r1, map:h
    mov r2, r10
    add r2, -4
    call map_lookup_elem
    jeq r0, 0, insert
    ldxdw r1, [r0+0]
    add r1, 1
    stxdw [r0+0], r1
    mov r0, 2
    exit
insert:
    stdw [r10-16], 100
    lddw r1, map:h
    mov r2, r10
    add r2, -4
    mov r3, r10
    add r3, -16
    mov r4, 0
    call map_update_elem
    jeq r6, 3, drop
out:
    mov r0, 2
    exit
drop:
    lddw r1, map:h
    mov r2, r10
    add r2, -4
    call map_delete_elem
    mov r0, 1
    exit
"""


def test_percpu_hash_agrees_with_interpreter_and_kernel():
    """Lookups, in-place updates, inserts and deletes on a per-CPU hash: one CPU (thread 0) each run."""
    program = assemble(_PERCPU_HASH)
    images = [jit_compile(program, check=False, opt_level=level).image for level in (0, 2)]
    assert nfpjit.check(program).ok and not nfpjit.check(program, profile="nfp-kernel").ok
    store = MapStore.from_program(program)
    states = [{"h": {(1).to_bytes(4, "little"): (7).to_bytes(8, "little")}}] * 2
    for k, v in states[0]["h"].items():
        store.by_name("h").update(k, v)
    kernel = KernelProgram(program, maps_in=states[0]) if kernel_ok else None
    try:
        for n, frame in enumerate(FRAMES):
            ref = run(program, PacketIn(frame), maps=store)
            want = kernel.run(PacketIn(frame)) if kernel else None
            for i, image in enumerate(images):
                got = to_run_result(simulate_image(image, PacketIn(frame), maps_in=states[i]))
                states[i] = got.maps
                assert not compare_results(ref, got, r0_bits=32), (i, n)
                if want is not None:
                    assert not compare_results(want, got, r0_bits=32), (i, n, "kernel")
    finally:
        if kernel:
            kernel.close()


def test_percpu_values_are_per_thread():
    """Under interleaved threads a plain increment of a per-CPU value loses nothing (each thread has its
    own copy; the same increment of a shared value does: tests/test_jit_atomics.py); a new per-CPU hash
    entry is zero on the other threads until they write their own copy."""
    program = nfpjit.load(CORPUS / "percpu_array.o")
    image = jit_compile(program, opt_level=0).image
    results = simulate_threads(image, [FRAMES[0]] * 4, maps_in={"pcpu_packets": {bytes(4): (5).to_bytes(8, "little")}})
    assert [r.maps["pcpu_packets"][bytes(4)] for r in results] == [(6).to_bytes(8, "little")] * 4
    hash_image = jit_compile(assemble(_PERCPU_HASH), check=False, opt_level=2).image
    frame = bytearray(FRAMES[0]); frame[13] = 2
    results = simulate_threads(hash_image, [bytes(frame)] * 3)
    # every thread missed (the lookups all ran before the first insert) and inserted 100 for its CPU
    assert [r.maps["h"] for r in results] == [{(2).to_bytes(4, "little"): (100).to_bytes(8, "little")}] * 3
    # one thread inserts; the others' copies of the new entry read as zero
    frames = [bytes(frame)] + [FRAMES[0][:13] + b"\x01" + FRAMES[0][14:]] * 2
    results = simulate_threads(hash_image, frames)
    one, two, hundred = (1).to_bytes(4, "little"), (2).to_bytes(4, "little"), (100).to_bytes(8, "little")
    assert results[0].maps["h"] == {two: hundred, one: bytes(8)}
    assert results[1].maps["h"] == results[2].maps["h"] == {one: hundred, two: bytes(8)}


# -- LRU hash: a full table evicts the least recently used entry -----------------------------------

_LRU = """
    .type xdp
    .map l lru_hash key=4 value=8 entries=4
    ldxw r2, [r1+0]
    ldxw r3, [r1+4]
    mov r4, r2
    add r4, 14
    jgt r4, r3, out
    ldxb r6, [r2+13]
    and r6, 7
    stxw [r10-4], r6
    lddw r1, map:l
    mov r2, r10
    add r2, -4
    call map_lookup_elem
    jeq r0, 0, insert
    mov r1, 1
    lock add [r0+0], r1
    mov r0, 2
    exit
insert:
    stxdw [r10-16], r6
    lddw r1, map:l
    mov r2, r10
    add r2, -4
    mov r3, r10
    add r3, -16
    mov r4, 0
    call map_update_elem
    jne r6, 7, out
    lddw r1, map:l
    mov r2, r10
    add r2, -4
    call map_delete_elem
out:
    mov r0, 2
    exit
"""


@pytest.mark.parametrize("level", [0, 2])
def test_lru_hash_evicts_like_the_interpreter(level):
    """Exact LRU, as the interpreter: lookups and updates count as use (the kernel's LRU evicts in
    batches, so an overflowing map is compared with the interpreter only)."""
    program = assemble(_LRU)
    assert nfpjit.check(program).ok
    image = jit_compile(program, check=False, opt_level=level).image
    store, state = MapStore.from_program(program), None
    keys = [0, 1, 2, 3, 0, 4, 1, 5, 0, 6, 2, 7, 3, 3, 1, 4, 6, 5, 0, 2, 7, 1]
    for n, k in enumerate(keys):
        frame = bytes(13) + bytes([k]) + bytes(46)
        ref = run(program, PacketIn(frame), maps=store)
        got = to_run_result(simulate_image(image, PacketIn(frame), maps_in=state))
        state = got.maps
        assert not compare_results(ref, got), (n, k, compare_results(ref, got))
        assert list(got.maps["l"]) == [kk for kk, _ in store.by_name("l").items()], "recency order"
    assert len(state["l"]) == 4

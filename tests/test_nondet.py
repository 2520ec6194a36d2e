"""Reproducible nondeterministic helpers, and kernel comparisons that mask what they decided.

The interpreter's bpf_ktime_get_ns is a fixed clock (``clock_ns``, advancing ``clock_step_ns``
per call) and bpf_get_prandom_u32 a seeded generator, so a run is reproducible; against the
kernel, :mod:`nfpjit.testing.nondet` masks exactly the bytes those helpers decided.
"""

from __future__ import annotations

import dataclasses

import pytest

import nfpjit
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelProgram
from nfpjit.testing import crafted_packets
from nfpjit.testing.nondet import MaskingInterpreter, masked_differences, uses_nondeterministic_helpers

from conftest import CORPUS
from xdp_cases import build, needs_kernel

RANDOM = """
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, u32); __type(value, u64); } picks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, u64); } stats SEC(".maps");
static u32 (*bpf_get_prandom_u32)(void) = (void *)7;
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u32 zero = 0, one = 1;
    u64 *pkts = bpf_map_lookup_elem(&stats, &zero);
    u64 *when = bpf_map_lookup_elem(&stats, &one);
    if (!pkts || !when) return XDP_ABORTED;
    __sync_fetch_and_add(pkts, 1);           /* deterministic: compared */
    *when = bpf_ktime_get_ns() | 1;          /* masked */
    u32 r = bpf_get_prandom_u32();
    u32 key = r & 7;                         /* the helper decides which key exists */
    u64 v = (u64)(data_end_len(data, end)) << 32 | (r >> 8);
    bpf_map_update_elem(&picks, &key, &v, BPF_ANY);
    return r & 1 ? XDP_PASS : XDP_DROP;      /* the helper decides the verdict */
}
"""
RANDOM = RANDOM.replace("data_end_len(data, end)", "(end - data)")


def test_runs_are_reproducible():
    program = build(RANDOM, name="random")
    assert uses_nondeterministic_helpers(program)

    def go(seed, clock):
        store = MapStore.from_program(program)
        return [run(program, f, maps=store, seed=seed, clock_ns=clock, clock_step_ns=10) for f in crafted_packets()[:8]]

    assert go(5, 1000) == go(5, 1000)
    assert go(5, 1000) != go(6, 1000) and go(5, 1000) != go(5, 2000)


@needs_kernel
def test_random_program_agrees_with_the_kernel_outside_the_mask():
    program = build(RANDOM, name="random")
    engine = MaskingInterpreter(program)
    problems, masked = [], 0
    with KernelProgram(program) as kp:
        for n, frame in enumerate(crafted_packets()):
            want = kp.run(PacketIn(frame))
            got, mask = engine.run(PacketIn(frame), tailroom=None)
            masked += bool(mask)
            problems += [f"packet {n}: {d}" for d in masked_differences(want, got, mask)]
    assert not problems, problems[:5]
    assert masked == len(crafted_packets())
    # the packet counter is not masked: it is compared
    assert bytes(4) not in mask.maps.get("stats", {}) and (1).to_bytes(4, "little") in mask.maps["stats"]


@needs_kernel
def test_masking_still_catches_a_wrong_deterministic_byte():
    program = nfpjit.load(CORPUS / "ktime.o")
    engine = MaskingInterpreter(program)
    with KernelProgram(program) as kp:
        want = kp.run(PacketIn(crafted_packets()[0]))
        got, mask = engine.run(PacketIn(crafted_packets()[0]), tailroom=None)
    assert mask.maps["last_seen"][bytes(4)] == set(range(8))   # the whole timestamp, nothing else
    assert not masked_differences(want, got, mask)
    assert masked_differences(want, dataclasses.replace(got, r0=got.r0 ^ 1), mask)
    wrong = dataclasses.replace(got, packet=bytes([got.packet[0] ^ 1]) + got.packet[1:])
    assert masked_differences(want, wrong, mask)


@pytest.mark.parametrize("helper_seed", [0, 1])
def test_mask_is_empty_for_deterministic_programs(helper_seed):
    program = nfpjit.load(CORPUS / "xdp_drop_tcp_ports.o")
    engine = MaskingInterpreter(program)
    for frame in crafted_packets()[:10]:
        _, mask = engine.run(PacketIn(frame))
        assert not mask

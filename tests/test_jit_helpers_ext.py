"""Helpers and context fields beyond the real NFP JIT: clocks, CPU id, ingress_ifindex/rx_queue_index.

Each program runs at -O0, -O1 and -O2 in both simulators and is compared with the reference
interpreter (and, where ``bpf()`` works, the kernel); clock values are the NIC's timestamp counter,
checked against the simulator's own cycle count instead (no engine shares a clock with another).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import nfpjit
from nfpjit.driver import compile as jit_compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.result import PacketIn
from nfpjit.testing import compare_results, crafted_packets

from xdp_cases import needs_kernel

CORPUS = Path(__file__).parent / "corpus"
LEVELS = (0, 1, 2)
ENGINES = ("interp", "compiled")


def _images(program, **kw):
    return {level: jit_compile(program, opt_level=level, **kw).image for level in LEVELS}


def _agree(program, frames, *, maps=True):
    """Every frame in every image and engine gives the interpreter's result."""
    images = _images(program)
    for frame in frames:
        want = run(program, frame)
        assert want.fault is None, want.fault
        for level, image in images.items():
            for engine in ENGINES:
                got = to_run_result(simulate_image(image, frame, engine=engine))
                diffs = compare_results(want, got, maps=maps)
                assert not diffs, (f"-O{level}", engine, frame, diffs)
    return images


# -- clocks --------------------------------------------------------------------------------------

TWO_CLOCKS = """.type xdp
    ldxw r6, [r1+0]
    ldxw r7, [r1+4]
    mov r8, r6
    add r8, 16
    mov r0, 1
    jgt r8, r7, out
    call {first}
    stxdw [r6+0], r0
    call {second}
    stxdw [r6+8], r0
    mov r0, 2
out:
    exit
"""


@pytest.mark.parametrize("first,second", [("ktime_get_ns", "ktime_get_ns"), ("ktime_get_boot_ns", "ktime_get_ns")])
def test_clock_reads_the_timestamp_counter(first, second):
    program = assemble(TWO_CLOCKS.format(first=first, second=second))
    assert nfpjit.check(program).ok
    for level, image in _images(program).items():
        results = [simulate_image(image, bytes(60), engine=e) for e in ENGINES]
        for sim in results:
            assert sim.fault is None and sim.action == 2
            t1, t2 = struct.unpack_from("<QQ", sim.packet)
            # the counter counts cycles: both reads lie inside the run, in order, and cost no routine
            assert 0 < t1 < t2 < sim.cycles, (level, t1, t2, sim.cycles)
            assert not sim.routine_calls
        assert results[0].packet == results[1].packet, level      # both simulators: the same counter


def test_ktime_corpus_program_stores_a_reproducible_time():
    program = nfpjit.load(CORPUS / "ktime.o")
    assert nfpjit.check(program).ok
    image = jit_compile(program).image
    first = [simulate_image(image, f) for f in crafted_packets()[:5]]
    again = [simulate_image(image, f, engine="compiled") for f in crafted_packets()[:5]]
    for a, b in zip(first, again):
        assert a.action == 2 and a.maps == b.maps and a.cycles == b.cycles
        (stamp,) = struct.unpack("<Q", a.maps["last_seen"][bytes(4)])
        assert 0 < stamp < a.cycles


# -- CPU id, context fields ---------------------------------------------------------------------------


def test_smp_processor_id_is_cpu_zero():
    program = assemble(".type xdp\ncall get_smp_processor_id\nadd r0, 2\nexit\n")
    assert nfpjit.check(program).ok
    _agree(program, [bytes(60)])


CONTEXT = """.type xdp
    ldxw r2, [r1+12]
    ldxw r3, [r1+16]
    ldxw r4, [r1+8]
    ldxw r5, [r1+0]
    mov r0, 0
    jgt r4, r5, out
    lsh r2, 8
    or r2, r3
    lsh r2, 8
    mov r0, r2
out:
    exit
"""


def test_ingress_ifindex_rx_queue_index_and_data_meta():
    program = assemble(CONTEXT)
    assert nfpjit.check(program).ok, nfpjit.check(program).codes
    images = _images(program)
    for ifindex, queue in ((1, 0), (7, 3), (0x1234, 255)):
        frame = PacketIn(bytes(64), ingress_ifindex=ifindex, rx_queue_index=queue)
        want = run(program, frame)
        assert want.r0 == (ifindex << 16 | queue << 8), hex(want.r0)
        for level, image in images.items():
            for engine in ENGINES:
                got = to_run_result(simulate_image(image, frame, engine=engine))
                assert not compare_results(want, got), (level, engine, ifindex, queue)


def test_fib_router_context_reads_are_accepted():
    program = nfpjit.load(CORPUS / "fib_router.o")
    report = nfpjit.check(program)
    assert not any("ctx" in c for c in report.codes), report.codes


@needs_kernel
def test_context_fields_agree_with_the_kernel():
    from nfpjit.kernel import KernelProgram

    program = assemble(CONTEXT)
    images = _images(program)
    with KernelProgram(program) as kp:
        frame = PacketIn(bytes(64))
        want = kp.run(frame)
        for level, image in images.items():
            got = to_run_result(simulate_image(image, frame))
            assert not compare_results(want, got, maps=False), level


# -- bpf_redirect ---------------------------------------------------------------------------------

REDIRECT = """.type xdp
    ldxw r1, [r1+12]
    add r1, {delta}
    mov r2, {flags}
    call redirect
    exit
"""


@pytest.mark.parametrize("delta,flags", [(0, 0), (1, 0), (0, 1), (5, 8)])
def test_redirect_records_the_target(delta, flags):
    program = assemble(REDIRECT.format(delta=delta, flags=flags))
    assert nfpjit.check(program).ok
    for ifindex in (1, 4):
        frame = PacketIn(bytes(60), ingress_ifindex=ifindex)
        want = run(program, frame)
        assert want.r0 == (4 if not flags else 0)
        for level, image in _images(program).items():
            for engine in ENGINES:
                sim = simulate_image(image, frame, engine=engine)
                got = to_run_result(sim)
                assert not compare_results(want, got), (level, engine)
                assert sim.redirect == want.redirect == (None if flags else ifindex + delta)
                assert sim.action == want.r0 and sim.routine_calls == {"fw_redirect": 1}


def test_redirect_corpus_program():
    program = nfpjit.load(CORPUS / "redirect.o")
    assert nfpjit.check(program).ok
    images = _agree(program, crafted_packets())
    sim = simulate_image(images[2], PacketIn(crafted_packets()[0], ingress_ifindex=3))
    assert sim.action in (1, 2, 4) and sim.redirect in (None, 4)


@needs_kernel
@pytest.mark.parametrize("flags", [0, 1])
def test_redirect_agrees_with_the_kernel(flags):
    from nfpjit.kernel import KernelProgram

    program = assemble(REDIRECT.format(delta=0, flags=flags))
    images = _images(program)
    with KernelProgram(program) as kp:
        frame = PacketIn(bytes(60))
        want = kp.run(frame)
        for level, image in images.items():
            got = to_run_result(simulate_image(image, frame))
            assert not compare_results(want, got, maps=False), level

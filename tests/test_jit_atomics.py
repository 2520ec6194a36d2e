"""Atomics on map values and on the stack: every operation, 32 and 64 bit, with and without fetch.

Each program is compiled at -O0, -O1 and -O2 and run in both simulators (the interpreting one and
the compiled llvmlite engine, where it works) against the reference interpreter; where bpf() works
the same programs also run in the kernel (BPF_PROG_TEST_RUN) with the same map contents.  The
values are chosen so that carries cross the 32-bit boundary, the upper half of a 32-bit operand
is set (it must play no part) and cmpxchg both matches and misses.
"""

from __future__ import annotations

import pytest

from nfpjit.driver import compile as jit_compile, run_sim, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn
from nfpjit.isa.sim import compiled
from nfpjit.isa.table import Op
from nfpjit.isa.encoding import decode
from nfpjit.kernel import KernelProgram, kernel_available
from nfpjit.testing import compare_results

LEVELS = (0, 2)
PACKET = bytes(range(64))

#: (mnemonic stem, fetches) for every eBPF atomic; "{w}" is "32" for the 32-bit form, "" for 64
OPS = ["add", "fetch add", "and", "fetch and", "or", "fetch or", "xor", "fetch xor", "xchg", "cmpxchg"]
STARTS = (0, 0x00000000FFFFFFFF, 0x7FFFFFFF80000001, 0xFFFFFFFFFFFFFFFF, 0x0123456789ABCDEF)
OPERANDS = (1, 0xFFFFFFFF00000003, 0x8000000180000000)


def _program(op: str, width: int, map_type: str = "array") -> str:
    """Look up entry 0 of the map; its value holds the operand (bytes 0..7), the value cmpxchg expects
    (8..15) and the target (16..23).  Apply the atomic and return a hash of every register it may
    change (src, r0) and of the value it left."""
    suffix = "32" if width == 32 else ""
    load = "ldxw" if width == 32 else "ldxdw"
    return f"""
        .type xdp
        .map c {map_type} key=4 value=24 entries=4
        stw [r10-4], 0
        lddw r1, map:c
        mov r2, r10
        add r2, -4
        call map_lookup_elem
        jeq r0, 0, miss
        mov r6, r0
        ldxdw r5, [r6+0]
        ldxdw r0, [r6+8]
        lock {op}{suffix} [r6+16], r5
        {load} r7, [r6+16]
        mov r8, r0
        rsh r8, 7
        xor r0, r8
        mul r0, 31
        add r0, r5
        mul r0, 31
        add r0, r7
        mov r1, r0
        rsh r1, 32
        xor r0, r1
        exit
    miss:
        mov r0, 9
        exit
    """


def _value(operand: int, expected: int, start: int) -> bytes:
    return operand.to_bytes(8, "little") + expected.to_bytes(8, "little") + start.to_bytes(8, "little")


def _cases(width: int):
    """(operand, expected, start) triples: cmpxchg matching (on the compared bits only) and missing."""
    for operand in OPERANDS:
        for start in STARTS:
            yield operand, start, start
            if width == 32:
                yield operand, (start & 0xFFFFFFFF) | 0xABCD000000000000, start   # only the low half compares
                yield operand, start ^ 1, start
            else:
                yield operand, start ^ 0x100000000, start


def _interp(program, maps_in):
    store = MapStore.from_program(program)
    for name, entries in maps_in.items():
        for k, v in entries.items():
            assert store.by_name(name).update(k, v) == 0
    return run(program, PACKET, maps=store)


def _images(program):
    return [jit_compile(program, check=False, opt_level=level).image for level in LEVELS]


def _check(program, images, maps_in):
    ref = _interp(program, maps_in)
    assert ref.fault is None, ref.fault
    for level, image in zip(LEVELS, images):
        sim = simulate_image(image, PACKET, maps_in=maps_in)
        diffs = compare_results(ref, to_run_result(sim), r0_bits=32)
        assert not diffs, (f"-O{level}", diffs)
        if compiled.available() and level == LEVELS[-1]:
            native = compiled.run(image, PACKET, maps_in=maps_in)
            assert native.engine == "compiled", native.reason
            got = native.result
            assert (got.r0, got.maps, got.cycles, got.insns, got.fault) == \
                (sim.r0, sim.maps, sim.cycles, sim.insns, sim.fault), f"-O{level}: the compiled engine differs"
    return ref


@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("op", OPS)
def test_map_value_atomic(op, width):
    program = assemble(_program(op, width))
    images = _images(program)
    for operand, expected, start in _cases(width):
        _check(program, images, {"c": {bytes(4): _value(operand, expected, start)}})


def test_map_value_atomics_use_one_command():
    """Each map-value atomic other than a plain add is one mem_atomic command (no locked sequence)."""
    for op in OPS[1:]:
        for width, cmd in ((32, Op.MEM_ATOMIC32), (64, Op.MEM_ATOMIC64)):
            image = jit_compile(assemble(_program(op, width)), check=False, opt_level=0).image
            ops = [decode(w).op for w in image.code]
            assert ops.count(cmd) == 1, (op, width)
            assert Op.MEM_WRITE not in ops, (op, width)


def test_hash_map_value_atomics():
    for op in ("fetch add", "xchg", "cmpxchg", "fetch xor"):
        program = assemble(_program(op, 64, map_type="hash"))
        images = _images(program)
        _check(program, images, {"c": {bytes(4): _value(0xFFFFFFFF00000003, 5, 5)}})
        _check(program, images, {"c": {}})          # miss: no entry


kernel_ok, kernel_reason = kernel_available()


@pytest.mark.kernel
@pytest.mark.skipif(not kernel_ok, reason=f"kernel bpf() unusable: {kernel_reason}")
@pytest.mark.parametrize("width", [32, 64])
def test_map_value_atomics_agree_with_the_kernel(width):
    for op in OPS:
        program = assemble(_program(op, width))
        image = jit_compile(program, check=False, opt_level=2).image
        with KernelProgram(program) as kp:
            for operand, expected, start in _cases(width):
                maps_in = {"c": {bytes(4): _value(operand, expected, start)}}
                kp.write_maps(maps_in)
                want = kp.run(PacketIn(PACKET))
                got = run_sim(image, PACKET, maps_in=maps_in)
                diffs = compare_results(want, got, r0_bits=32)
                assert not diffs, (op, width, hex(operand), hex(expected), hex(start), diffs)


# -- concurrent threads: a lost update shows, an atomic one does not -------------------------------

from nfpjit.isa.sim import simulate_threads  # noqa: E402

THREADS = 8

_COUNTER = """
    .type xdp
    .map c array key=4 value=16 entries=1
    stw [r10-4], 0
    lddw r1, map:c
    mov r2, r10
    add r2, -4
    call map_lookup_elem
    jeq r0, 0, out
    {body}
out:
    mov r0, 2
    exit
"""
#: the same update three ways: a plain read-modify-write, one atomic add, a cmpxchg retry loop
_PLAIN = "ldxdw r1, [r0+0]\n add r1, 1\n stxdw [r0+0], r1"
_ATOMIC = "mov r1, 1\n lock add [r0+0], r1\n mov r1, 1\n lock fetch add [r0+8], r1"
_CAS_LOOP = """mov r6, r0
again:
    ldxdw r0, [r6+0]
    mov r1, r0
    add r1, 1
    mov r7, r0
    lock cmpxchg [r6+0], r1
    jne r0, r7, again"""


def _counter_after(body: str, threads: int, level: int = 0) -> int:
    program = assemble(_COUNTER.format(body=body))
    image = jit_compile(program, check=False, opt_level=level).image
    results = simulate_threads(image, [PACKET] * threads, maps_in={"c": {bytes(4): bytes(16)}})
    assert all(r.fault is None and r.action == 2 for r in results)
    assert all(r.maps == results[0].maps for r in results)
    return int.from_bytes(results[0].maps["c"][bytes(4)][:8], "little")


def _sequential(body: str, packets: int) -> int:
    program = assemble(_COUNTER.format(body=body))
    store = MapStore.from_program(program)
    for _ in range(packets):
        assert run(program, PACKET, maps=store).fault is None
    return int.from_bytes(store.dump()["c"][bytes(4)][:8], "little")


@pytest.mark.parametrize("level", LEVELS)
def test_interleaved_threads_lose_plain_updates_but_not_atomic_ones(level):
    assert _sequential(_PLAIN, THREADS) == THREADS                 # one CPU, one packet after the other
    assert _counter_after(_PLAIN, 1, level) == 1
    lost = _counter_after(_PLAIN, THREADS, level)
    assert lost < THREADS, "the interleaving should let a plain read-modify-write lose updates"
    assert _counter_after(_ATOMIC, THREADS, level) == THREADS == _sequential(_ATOMIC, THREADS)
    assert _counter_after(_CAS_LOOP, THREADS, level) == THREADS == _sequential(_CAS_LOOP, THREADS)


def test_fetch_add_hands_each_thread_a_different_ticket():
    program = assemble(_COUNTER.format(body="mov r1, 1\n lock fetch add [r0+8], r1\n stxdw [r10-16], r1")
                       .replace("mov r0, 2\n    exit", "ldxdw r0, [r10-16]\n    exit"))
    image = jit_compile(program, check=False, opt_level=2).image
    results = simulate_threads(image, [PACKET] * THREADS, maps_in={"c": {bytes(4): bytes(16)}})
    assert sorted(r.r0 for r in results) == list(range(THREADS))
    assert int.from_bytes(results[0].maps["c"][bytes(4)][8:], "little") == THREADS


def test_one_thread_is_simulate():
    program = assemble(_COUNTER.format(body=_CAS_LOOP))
    image = jit_compile(program, check=False, opt_level=0).image
    [alone] = simulate_threads(image, [PACKET], maps_in={"c": {bytes(4): bytes(16)}})
    single = simulate_image(image, PACKET, maps_in={"c": {bytes(4): bytes(16)}})
    assert (alone.r0, alone.maps, alone.cycles, alone.insns) == (single.r0, single.maps, single.cycles, single.insns)

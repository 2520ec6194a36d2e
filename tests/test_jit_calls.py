"""Calls (nfpjit/jit/lower_call.py) through the simulator against the reference interpreter.

Helper calls become firmware routine calls (map lookup/update/delete,
get_prandom_u32, xdp_adjust_head/tail); BPF-to-BPF calls use static LM frames.
Every test compares r0, the output packet and the maps of both engines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nfpjit.driver import compile as jit_compile
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.opcodes import Helper
from nfpjit.errors import UnsupportedError
from nfpjit.isa.image import RelocKind
from nfpjit.isa.sim.firmware import Routine
from nfpjit.jit.lower_call import supported_helpers
from nfpjit.testing import crafted_packets

from tests.test_jit_mem import _packet, differential, needs_alu

CORPUS = Path(__file__).parent / "corpus"

K = lambda n: n.to_bytes(4, "little")          # noqa: E731 - 4-byte map keys
V = lambda n: n.to_bytes(8, "little")          # noqa: E731 - 8-byte map values


# -- map helpers --------------------------------------------------------------------------------


def test_update_lookup_delete_on_a_hash_map():
    needs_alu()
    text = """.type xdp
        .map h hash key=4 value=8 entries=4
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 2
        mov r0, 0
        jgt r4, r3, out
        ldxb r6, [r2+0]
        ldxb r7, [r2+1]
        and r7, 7
        stw [r10-4], 0
        stxb [r10-4], r6
        stxdw [r10-16], r7
        lddw r1, map:h
        mov r2, r10
        add r2, -4
        mov r3, r10
        add r3, -16
        mov r4, r7
        and r4, 3
        call map_update_elem
        mov r8, r0
        lddw r1, map:h
        mov r2, r10
        add r2, -4
        call map_lookup_elem
        jeq r0, 0, miss
        ldxdw r9, [r0+0]
        add r9, 100
        stxdw [r0+0], r9
        jne r7, 5, keep
        lddw r1, map:h
        mov r2, r10
        add r2, -4
        call map_delete_elem
        lsh r0, 8
        add r8, r0
    keep:
        mov r0, r8
        exit
    miss:
        mov r0, r8
        add r0, 1000
    out:
        exit
    """
    pkts = [bytes([k, f]) + _packet(58) for k in (1, 2, 3) for f in range(8)]
    for maps_in in ({"h": {}}, {"h": {K(1): V(7), K(2): V(2**64 - 1)}},
                    {"h": {K(10): V(1), K(11): V(1), K(12): V(1), K(13): V(1)}}):
        differential(text, pkts, maps_in=maps_in)


def test_array_update_and_delete_errors():
    needs_alu()
    text = """.type xdp
        .map a array key=4 value=8 entries=2
        stw [r10-4], 1
        stdw [r10-16], -9
        lddw r1, map:a
        mov r2, r10
        add r2, -4
        mov r3, r10
        add r3, -16
        mov r4, 1
        call map_update_elem
        mov r6, r0
        stw [r10-4], 2
        lddw r1, map:a
        mov r2, r10
        add r2, -4
        mov r3, r10
        add r3, -16
        mov r4, 0
        call map_update_elem
        mov r7, r0
        stw [r10-4], 0
        lddw r1, map:a
        mov r2, r10
        add r2, -4
        call map_delete_elem
        mov r8, r0
        mov r0, r6
        lsh r0, 20
        add r0, r7
        lsh r0, 20
        add r0, r8
        exit
    """
    differential(text, [_packet(60)], maps_in={"a": {K(0): V(3), K(1): V(4)}})


def test_keys_outside_the_stack_are_copied():
    needs_alu()
    # key from the packet (bytes 26..29: the IPv4 source of crafted frames) and from a map value
    text = """.type xdp
        .map h hash key=4 value=8 entries=8
        .map k array key=4 value=4 entries=1
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 30
        mov r0, 2
        jgt r4, r3, out
        add r2, 26
        lddw r1, map:h
        call map_lookup_elem
        mov r6, 1
        jeq r0, 0, second
        ldxdw r6, [r0+0]
    second:
        stw [r10-4], 0
        lddw r1, map:k
        mov r2, r10
        add r2, -4
        call map_lookup_elem
        jeq r0, 0, done
        mov r2, r0
        lddw r1, map:h
        call map_lookup_elem
        jeq r0, 0, done
        ldxdw r7, [r0+0]
        add r6, r7
    done:
        mov r0, r6
    out:
        exit
    """
    pkts = crafted_packets(20)
    srcs = {p[26:30] for p in pkts if len(p) >= 30}
    entries = {s: V(i + 5) for i, s in enumerate(sorted(srcs)[:4])}
    entries[K(77)] = V(1000)
    differential(text, pkts, maps_in={"h": entries, "k": {K(0): K(77)}})


def _key_from_value(off: int) -> str:
    return f""".type xdp
        .map h hash key=6 value=8 entries=4
        .map k array key=4 value=16 entries=1
        stw [r10-4], 0
        lddw r1, map:k
        mov r2, r10
        add r2, -4
        call map_lookup_elem
        mov r6, 3
        jeq r0, 0, done
        mov r2, r0
        add r2, {off}
        lddw r1, map:h
        call map_lookup_elem
        jeq r0, 0, done
        ldxdw r6, [r0+0]
    done:
        mov r0, r6
        exit
    """


def test_six_byte_key_copied_from_a_map_value():
    needs_alu()
    key = bytes([1, 2, 3, 4, 5, 6])
    value = bytes(2) + key + bytes(8)
    differential(_key_from_value(2), [_packet(60)], maps_in={"h": {key: V(42)}, "k": {K(0): value}})
    differential(_key_from_value(2), [_packet(60)], maps_in={"h": {}, "k": {K(0): value}})
    with pytest.raises(UnsupportedError, match="whole words"):
        jit_compile(assemble(_key_from_value(10)), check=False)


def test_get_prandom_matches_the_interpreter_stream():
    needs_alu()
    text = """.type xdp
        call get_prandom_u32
        mov r6, r0
        call get_prandom_u32
        lsh r0, 32
        or r0, r6
        exit
    """
    differential(text, [_packet(60)])


# -- packet-moving helpers -------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [-256, -217, -216, -20, -4, 0, 4, 14, 46, 47, 60])
def test_adjust_head(delta):
    needs_alu()
    text = f""".type xdp
        mov r6, r1
        mov r2, {delta}
        call xdp_adjust_head
        mov r7, r0
        ldxw r2, [r6+0]
        ldxw r3, [r6+4]
        mov r4, r2
        add r4, 4
        mov r0, r7
        jgt r4, r3, out
        stw [r2+0], 0x11223344
        mov r0, r3
        sub r0, r2
        lsh r7, 16
        add r0, r7
    out:
        exit
    """
    differential(text, [_packet(n) for n in (14, 60, 61)])
    image = jit_compile(assemble(text), check=False).image
    assert any(r.kind == RelocKind.ROUTINE_ADDR and r.symbol == Routine.ADJUST_HEAD_FAST.symbol
               for r in image.relocations)


def test_adjust_head_variable_delta_takes_the_general_routine():
    needs_alu()
    text = """.type xdp
        mov r6, r1
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 1
        mov r0, 0
        jgt r4, r3, out
        ldxb r2, [r2+0]
        and r2, 31
        mov r1, r6
        call xdp_adjust_head
    out:
        exit
    """
    differential(text, [bytes([d]) + _packet(59) for d in (0, 1, 14, 31)])
    image = jit_compile(assemble(text), check=False).image
    assert any(r.symbol == Routine.ADJUST_HEAD.symbol for r in image.relocations)


@pytest.mark.parametrize("delta", [-50, -46, -1, 0, 1, 100])
def test_adjust_tail(delta):
    needs_alu()
    text = f""".type xdp
        mov r6, r1
        mov r2, {delta}
        call xdp_adjust_tail
        mov r7, r0
        ldxw r2, [r6+0]
        ldxw r3, [r6+4]
        mov r0, r3
        sub r0, r2
        lsh r7, 16
        add r0, r7
        exit
    """
    differential(text, [_packet(n) for n in (14, 60, 64)])


def test_adjust_tail_shrink_then_grow_reads_zeros():
    needs_alu()
    # found by the generated differential run: the regrown bytes must be zeros, as Linux makes them
    text = """.type xdp
        mov r6, r1
        mov r2, -40
        call xdp_adjust_tail
        mov r1, r6
        mov r2, 24
        call xdp_adjust_tail
        mov r0, 2
        exit
    """
    differential(text, [_packet(n) for n in (60, 100)])


# -- BPF-to-BPF calls -------------------------------------------------------------------------------


def test_bpf2bpf_corpus_program():
    needs_alu()
    differential((CORPUS / "asm" / "bpf2bpf.s").read_text(), [_packet(60)])


def test_o1_saves_only_the_callee_saved_halves_read_after_the_call():
    needs_alu()
    text = """.type xdp
        mov r6, 1
        mov r7, 2
        call f
        add r0, r6
        exit
    f:
        mov r6, 40
        mov r0, r6
        exit
    """
    program = assemble(text)
    o0 = jit_compile(program, check=False, opt_level=0).mprogram.size()
    o1 = jit_compile(program, check=False, opt_level=1).mprogram.size()
    assert o0 - o1 >= 2 * 6          # six of the eight halves neither saved nor restored
    differential(text, [_packet(60)])


def test_callee_frames_are_separate_and_callee_saved_registers_survive():
    needs_alu()
    text = """.type xdp
        .map c array key=4 value=8 entries=1
        stdw [r10-8], 5
        mov r6, 6
        mov r7, 7
        lddw r8, 0x8000000000000008
        mov r9, -9
        mov r1, r10
        add r1, -8
        mov r2, 3
        call outer
        add r0, r6
        add r0, r7
        add r0, r8
        add r0, r9
        ldxdw r1, [r10-8]
        add r0, r1
        exit
    outer:
        stdw [r10-8], 1000
        mov r6, r1
        mov r7, r2
        mov r8, 0
        mov r9, 0
        mov r1, r10
        add r1, -8
        call inner
        ldxdw r2, [r6+0]
        add r2, r0
        stxdw [r6+0], r2
        ldxdw r0, [r10-8]
        add r0, r7
        exit
    inner:
        stw [r10-4], 0
        mov r6, r1
        lddw r1, map:c
        mov r2, r10
        add r2, -4
        call map_lookup_elem
        jeq r0, 0, none
        mov r7, 3
        lock add [r0+0], r7
    none:
        ldxdw r1, [r6+0]
        add r1, 1
        stxdw [r6+0], r1
        mov r0, 40
        exit
    """
    differential(text, [_packet(60)], maps_in={"c": {K(0): V(1)}})


# -- refusals ---------------------------------------------------------------------------------------


def test_helpers_without_a_routine_are_refused():
    needs_alu()
    text = """.type xdp
        call jiffies64
        mov r0, 2
        exit
    """
    with pytest.raises(UnsupportedError, match="jiffies64"):
        jit_compile(assemble(text), check=False)
    assert Helper.jiffies64 not in supported_helpers()
    assert {Helper.map_lookup_elem, Helper.xdp_adjust_tail} <= supported_helpers()

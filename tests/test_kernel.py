"""The kernel oracle (nfpjit.kernel) against facts computed here, independently of the interpreter."""

from __future__ import annotations

import os
import struct

import pytest

from nfpjit.errors import NfpjitError, UsageError
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, MapType, ProgType, Source
from nfpjit.ebpf.program import MapDef, Program
from nfpjit.ebpf.result import PacketIn
from nfpjit.kernel import KernelError, KernelProgram, KernelRejected, kernel_available, run_in_kernel

from conftest import CORPUS

ok, reason = kernel_available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not ok, reason=f"kernel bpf() unusable: {reason}")]

MOV_K = InsnClass.ALU64 | AluOp.MOV | Source.K
EXIT = Insn(InsnClass.JMP | JmpOp.EXIT)


def prog(insns, *, maps=(), prog_type=ProgType.XDP) -> Program:
    return Program(name="t", insns=tuple(insns), prog_type=prog_type, maps=tuple(maps), license="GPL")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("ret", [0, 1, 2, 3, 7, 0x7FFFFFFF])
def test_constant_return_is_retval(ret):
    res = run_in_kernel(prog([Insn(MOV_K, 0, 0, 0, ret), EXIT]), bytes(60))
    assert res.r0 == ret
    assert res.packet == bytes(60)


def test_retval_is_low_32_bits_of_r0():
    # r0 = 0x1_0000_0005: test_run reports the u32 the XDP core sees.
    res = run_in_kernel(prog([Insn.ld_imm64(0, (1 << 32) | 5), EXIT]), bytes(20))
    assert res.r0 == 5


def test_packet_write_shows_in_data_out():
    text = """
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 14
        jgt r4, r3, out
        ldxw r5, [r2+0]
        stxw [r2+6], r5
        stb [r2+13], 0x77
    out:
        mov r0, 2
        exit
    """
    program = assemble(text)
    frame = bytes(range(1, 61))
    expected = bytearray(frame)
    expected[6:10] = frame[0:4]
    expected[13] = 0x77
    res = run_in_kernel(program, frame)
    assert res.r0 == 2
    assert res.packet == bytes(expected)


def counter_program(map_type: MapType, max_entries: int = 4) -> Program:
    """Increment the u64 at key = first byte of the packet & 3 (inserting 1 for a missing hash key)."""
    text = f"""
        .map m {map_type.kernel_name} key=4 value=8 entries={max_entries}
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 1
        mov r0, 2
        jgt r4, r3, out
        ldxb r1, [r2+0]
        and r1, 3
        stxw [r10-4], r1
        lddw r1, map:m
        mov r2, r10
        add r2, -4
        call 1
        jeq r0, 0, insert
        mov r1, 1
        lock add [r0+0], r1
        mov r0, 2
        exit
    insert:
        mov r1, 1
        stxdw [r10-16], r1
        lddw r1, map:m
        mov r2, r10
        add r2, -4
        mov r3, r10
        add r3, -16
        mov r4, 0
        call 2
        mov r0, 2
    out:
        exit
    """
    program = assemble(text)
    assert program.maps[0].type == map_type
    return program


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_array_dump_lists_every_index_and_persists_across_runs():
    program = counter_program(MapType.ARRAY)
    with KernelProgram(program) as kp:
        for first in (1, 1, 2, 5, 4):  # keys 1, 1, 2, 1, 0
            res = kp.run(bytes([first]) + bytes(59))
    assert res.maps == {"m": {struct.pack("<I", 0): u64(1), struct.pack("<I", 1): u64(3),
                              struct.pack("<I", 2): u64(1), struct.pack("<I", 3): u64(0)}}


def test_hash_dump_lists_present_entries_and_maps_in_preloads():
    program = counter_program(MapType.HASH)
    preload = {"m": [(struct.pack("<I", 3), u64(40))]}
    with KernelProgram(program, maps_in=preload) as kp:
        kp.run(bytes([3]) + bytes(59))
        res = kp.run(bytes([2]) + bytes(59))
    assert res.maps == {"m": {struct.pack("<I", 2): u64(1), struct.pack("<I", 3): u64(41)}}


def test_percpu_array_dump_reads_the_cpu_that_ran():
    program = counter_program(MapType.PERCPU_ARRAY)
    with KernelProgram(program) as kp:
        kp.run(bytes([1]) + bytes(59))
        res = kp.run(bytes([1]) + bytes(59))
    assert res.maps["m"][struct.pack("<I", 1)] == u64(2)


def test_rejection_carries_the_verifier_log():
    # r2 is never written before it is read: the verifier refuses with "!read_ok".
    bad = prog([Insn(InsnClass.ALU64 | AluOp.MOV | Source.X, 0, 2), EXIT])
    with pytest.raises(KernelRejected) as info:
        run_in_kernel(bad, bytes(60))
    assert "R2 !read_ok" in info.value.log
    assert "R2 !read_ok" in str(info.value)
    assert isinstance(info.value, NfpjitError)


def test_fds_are_closed():
    program = counter_program(MapType.HASH)
    before = open_fds()
    for _ in range(5):
        with KernelProgram(program) as kp:
            kp.run(bytes(60))
    with pytest.raises(KernelRejected):
        KernelProgram(prog([Insn(InsnClass.ALU64 | AluOp.MOV | Source.X, 0, 3), EXIT], maps=program.maps))
    assert open_fds() == before


def test_runt_packet_is_a_usage_error():
    with pytest.raises(UsageError, match="shorter than an Ethernet header"):
        run_in_kernel(prog([Insn(MOV_K, 0, 0, 0, 2), EXIT]), bytes(13))


def test_bad_map_index_is_a_usage_error():
    from nfpjit.ebpf.opcodes import PseudoSrc

    with pytest.raises(UsageError, match="map index 3"):
        run_in_kernel(prog([Insn.ld_imm64(1, 3, PseudoSrc.MAP_FD), Insn(MOV_K, 0, 0, 0, 2), EXIT]), bytes(60))


def test_xdp_context_ifindex_and_queue():
    read_ifindex = prog([Insn(InsnClass.LDX | 0x60 | 0x00, 0, 1, 12), EXIT])  # r0 = ctx->ingress_ifindex
    assert run_in_kernel(read_ifindex, PacketIn(bytes(60), ingress_ifindex=1)).r0 == 1
    with pytest.raises(KernelError, match="ingress_ifindex"):
        run_in_kernel(read_ifindex, PacketIn(bytes(60), ingress_ifindex=0x7FFFFFF0))


def test_tc_program_runs():
    # TC: r0 = skb->len (offset 0 of struct __sk_buff); return TC_ACT_SHOT when len > 100.
    text = """
        ldxw r2, [r1+0]
        mov r0, 0
        jle r2, 100, out
        mov r0, 2
    out:
        exit
    """
    program = assemble(text)
    program = Program(name="tc", insns=program.insns, prog_type=ProgType.SCHED_CLS, license="GPL")
    assert run_in_kernel(program, bytes(60)).r0 == 0
    assert run_in_kernel(program, bytes(200)).r0 == 2


@pytest.mark.parametrize("name", ["global_data.o", "ipip_encap.o", "mac_swap_tx.o"])
def test_corpus_objects_load(name):
    import nfpjit

    program = nfpjit.load(CORPUS / name)
    with KernelProgram(program) as kp:
        res = kp.run(bytes(64))
    assert res.r0 in (0, 1, 2, 3)
    assert set(res.maps) == {m.name for m in program.maps}


def test_tc_refuses_short_ip_frames_with_a_clear_error():
    from nfpjit.kernel import tc_test_run_accepts

    program = Program(name="tc", insns=(Insn(MOV_K, 0, 0, 0, 0), EXIT), prog_type=ProgType.SCHED_CLS, license="GPL")
    short_ipv4 = bytes(12) + b"\x08\x00" + b"\x45" + bytes(10)
    assert not tc_test_run_accepts(short_ipv4)
    with pytest.raises(KernelError, match="refuses this TC packet"):
        run_in_kernel(program, short_ipv4)
    long_ipv4 = short_ipv4 + bytes(9)
    assert tc_test_run_accepts(long_ipv4)
    assert run_in_kernel(program, long_ipv4).r0 == 0
    assert run_in_kernel(program, bytes(12) + b"\x81\x00" + bytes(2)).r0 == 0  # tagged: no such check


def test_xdp_tail_can_grow_by_kernel_tailroom_and_no_more():
    """bpf_xdp_adjust_tail(ctx, delta) returns 0 up to kernel_tailroom() bytes of growth, then -EINVAL."""
    from nfpjit.kernel import kernel_tailroom

    def grow(delta: int) -> Program:
        # r0 = bpf_xdp_adjust_tail(ctx, delta); return r0 == 0 ? XDP_PASS : XDP_DROP
        return prog([Insn(MOV_K, 2, 0, 0, delta), Insn(InsnClass.JMP | JmpOp.CALL, 0, 0, 0, 65),
                     Insn(InsnClass.JMP | JmpOp.JEQ | Source.K, 0, 0, 2, 0), Insn(MOV_K, 0, 0, 0, 1), EXIT,
                     Insn(MOV_K, 0, 0, 0, 2), EXIT])

    room = kernel_tailroom(ProgType.XDP, 100)
    assert room > 256
    ok = run_in_kernel(grow(room), bytes(100))
    assert ok.r0 == 2 and len(ok.packet) == 100 + room and ok.packet[100:] == bytes(room)
    assert run_in_kernel(grow(room + 1), bytes(100)).r0 == 1


@pytest.mark.parametrize("offset,expect", [(36, "ifindex"), (160, "len"), (0, "len")])
def test_tc_context_carries_ingress_ifindex_and_wire_len(offset, expect):
    """r0 = __sk_buff field: ingress_ifindex comes from PacketIn (ctx_in), wire_len is the frame length."""
    program = Program(name="tc", insns=(Insn(InsnClass.LDX | 0x60, 0, 1, offset), EXIT),
                      prog_type=ProgType.SCHED_CLS, license="GPL")
    frame = bytes(12) + b"\x88\xb5" + bytes(50)
    res = run_in_kernel(program, PacketIn(frame, ingress_ifindex=1))
    assert res.r0 == (1 if expect == "ifindex" else len(frame))


def test_bpf_loop_callback_gets_generated_btf():
    """bpf_loop needs func_info: the oracle makes minimal BTF.  r0 = sum of i for i < 10 via the callback."""
    from nfpjit.ebpf.opcodes import PseudoSrc
    from nfpjit.ebpf.program import Function

    insns = (
        Insn(InsnClass.ST | 0x60 | 0x18, 10, 0, -8, 0),        # *(u64 *)(fp-8) = 0
        Insn(MOV_K, 1, 0, 0, 10),                               # r1 = 10 iterations
        Insn.ld_imm64(2, 0, PseudoSrc.FUNC),                    # r2 = callback (patched below)
        Insn(InsnClass.ALU64 | AluOp.MOV | Source.X, 3, 10),   # r3 = fp
        Insn(InsnClass.ALU64 | AluOp.ADD | Source.K, 3, 0, 0, -8),
        Insn(MOV_K, 4, 0, 0, 0),
        Insn(InsnClass.JMP | JmpOp.CALL, 0, 0, 0, 181),         # bpf_loop
        Insn(InsnClass.LDX | 0x60 | 0x18, 0, 10, -8),           # r0 = *(u64 *)(fp-8)
        EXIT,
        # callback(i = r1, ctx = r2): *ctx += i; return 0
        Insn(InsnClass.LDX | 0x60 | 0x18, 3, 2, 0),
        Insn(InsnClass.ALU64 | AluOp.ADD | Source.X, 3, 1),
        Insn(InsnClass.STX | 0x60 | 0x18, 2, 3, 0),
        Insn(MOV_K, 0, 0, 0, 0),
        EXIT,
    )
    # ld_imm64 at slot 2; the callback starts at slot 10: imm = 10 - 2 - 1
    insns = insns[:2] + (Insn.ld_imm64(2, 7, PseudoSrc.FUNC),) + insns[3:]
    program = Program(name="loop", insns=insns, prog_type=ProgType.XDP, license="GPL",
                      functions=(Function("loop", 0), Function("cb", 10)))
    before = open_fds()
    assert run_in_kernel(program, bytes(60)).r0 == sum(range(10))
    assert open_fds() == before

"""The memory lowering (nfpjit/jit/lower_mem.py) through the simulator against the reference interpreter.

Every test compiles a small eBPF program, runs it on packets in the interpreter
and in the NFP-32 simulator, and requires the same r0 (all 64 bits), output
packet and maps.  Programs cover each pointer kind (packet, map value, stack,
context, global data) at every access size, at offsets that are aligned and
not, and at the last bytes of packets and map values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nfpjit.analysis import analyze
from nfpjit.driver import compile as jit_compile, run_sim
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.result import PacketIn
from nfpjit.errors import UnsupportedError
from nfpjit.isa.encoding import decode
from nfpjit.isa.table import Op
from nfpjit.jit.lower import supported_opcodes
from nfpjit.jit.lower_mem import HANDLERS, stack_layout
from nfpjit.testing import compare_results, crafted_packets

SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}
#: every program is compiled at each level (-O1 reuses LM pointers between stack accesses)
OPT_LEVELS = (0, 1)


def _packet(n: int, seed: int = 0) -> bytes:
    return bytes((i * 37 + 11 + seed * 101) & 0xFF for i in range(n))


def _maps(program, maps_in):
    store = MapStore.from_program(program)
    for name, entries in (maps_in or {}).items():
        for k, v in entries.items():
            assert store.by_name(name).update(k, v) == 0
    return store


def differential(text: str, packets, *, maps_in=None, r0_bits: int = 64):
    """Compile ``text``, run every packet in both engines, fail on any difference; returns the results."""
    program = assemble(text)
    problems = analyze(program).problems
    assert not problems, problems
    images = [jit_compile(program, check=False, opt_level=level).image for level in OPT_LEVELS]
    out = []
    for pk in packets:
        ref = run(program, pk, maps=_maps(program, maps_in))
        assert ref.fault is None, ref.fault
        for level, image in zip(OPT_LEVELS, images):
            sim = run_sim(image, pk, maps_in=maps_in)
            # from -O1 on the high word of R0 at exit is dead (verdicts are 32-bit) and may be skipped
            diffs = compare_results(ref, sim, r0_bits=r0_bits if level == 0 else 32)
            assert not diffs, (f"-O{level}", text, pk, diffs)
        out.append((ref, sim))
    return out


def needs_alu():
    """Skip when the ALU lowering (JIT-core) is not there yet: the programs need mov/add."""
    if 0xB7 not in supported_opcodes() or 0x07 not in supported_opcodes():
        pytest.skip("the ALU lowering is not available yet")


# -- stack ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 4, 8])
@pytest.mark.parametrize("slot", [8, 16, 64, 512])
def test_stack_store_imm_then_load_every_position(size, slot):
    # one store/load pair per naturally aligned position inside an 8-byte slot: no ALU needed
    s = SIZES[size]
    for pos in range(0, 8, size):
        off = -slot + pos
        for imm in (0, 1, -1, 0x7F, -0x80, 0x12345678 if size >= 4 else 0x5A, -0x7FFFFFFF - 1):
            text = f""".type xdp
                stdw [r10-{slot}], -1
                st{s} [r10{off:+d}], {imm}
                ldx{s} r0, [r10{off:+d}]
                exit
            """
            differential(text, [_packet(60)])


def test_stack_neighbours_survive_narrow_stores():
    text = """.type xdp
        stdw [r10-8], 0
        stb [r10-8], 0x11
        stb [r10-7], 0x22
        sth [r10-6], 0x3344
        stw [r10-4], 0x55667788
        ldxdw r0, [r10-8]
        exit
    """
    (ref, sim), = differential(text, [_packet(60)])
    assert sim.r0 == 0x5566778833442211


def test_stack_through_derived_pointers():
    needs_alu()
    text = """.type xdp
        mov r2, r10
        add r2, -32
        stdw [r2+0], 0
        stdw [r2+8], 0
        mov r3, 0x1234abcd
        stxw [r2+4], r3
        stxb [r2+9], r3
        stxh [r2+14], r3
        mov r4, r2
        add r4, 8
        ldxdw r0, [r4+0]
        ldxdw r5, [r2+0]
        xor r0, r5
        ldxh r5, [r4+6]
        add r0, r5
        ldxb r5, [r2+7]
        add r0, r5
        exit
    """
    differential(text, [_packet(60)])


def test_stack_narrow_access_reached_with_different_alignments():
    needs_alu()
    # the same stb/ldxb reach fp-11 on one path and fp-8 on the other: no alignment may be assumed
    text = """.type xdp
        stdw [r10-16], 0
        stdw [r10-8], 0
        ldxw r4, [r1+0]
        ldxw r5, [r1+4]
        sub r5, r4
        mov r2, r10
        add r2, -8
        jgt r5, 60, same
        add r2, -3
    same:
        stb [r2+0], 0x66
        stb [r2+2], 0x55
        ldxb r0, [r2+2]
        ldxb r7, [r2+1]
        lsh r7, 8
        add r0, r7
        ldxdw r6, [r10-16]
        add r0, r6
        ldxdw r6, [r10-8]
        xor r0, r6
        exit
    """
    differential(text, [_packet(60), _packet(61)])


def test_lm_pointer_is_not_reused_across_a_join():
    needs_alu()
    # at -O1 the stack accesses of one basic block share an LM pointer; the load after the join must
    # not trust the pointer the skipped store set
    text = """.type xdp
        stdw [r10-216], 5
        stdw [r10-8], 1
        ldxw r4, [r1+0]
        ldxw r5, [r1+4]
        sub r5, r4
        jgt r5, 60, skip
        stdw [r10-200], 2
    skip:
        ldxdw r0, [r10-216]
        ldxdw r1, [r10-8]
        add r0, r1
        exit
    """
    differential(text, [_packet(60), _packet(61)])


def test_o1_shares_lm_pointers_within_a_block():
    text = """.type xdp
        stdw [r10-8], 1
        stdw [r10-16], 2
        stdw [r10-24], 3
        ldxdw r0, [r10-16]
        exit
    """
    program = assemble(text)

    def pointer_writes(level):
        image = jit_compile(program, check=False, opt_level=level).image
        return sum(1 for word in image.code if decode(word).op == Op.CSR_WR)

    assert pointer_writes(0) == 4
    assert pointer_writes(1) == 1
    differential(text, [_packet(60)])


def test_spilled_frame_pointer_is_a_usable_stack_pointer():
    needs_alu()
    text = """.type xdp
        stdw [r10-16], 0x1234
        stxdw [r10-8], r10
        ldxdw r2, [r10-8]
        ldxdw r0, [r2-16]
        exit
    """
    differential(text, [_packet(60)])


def test_stack_edge_values_64bit():
    needs_alu()
    for value in (0, 1, -1, 1 << 31, (1 << 32) - 1, 1 << 63, -(1 << 63), 0x8000000080000000, 0x123456789ABCDEF0):
        text = f""".type xdp
            lddw r1, {value & (2**64 - 1):#x}
            stxdw [r10-16], r1
            ldxw r2, [r10-16]
            ldxw r3, [r10-12]
            ldxdw r0, [r10-16]
            stxw [r10-8], r3
            stxw [r10-4], r2
            ldxdw r4, [r10-8]
            xor r0, r4
            ldxsw r5, [r10-16]
            add r0, r5
            ldxsh r5, [r10-14]
            add r0, r5
            ldxsb r5, [r10-9]
            add r0, r5
            exit
        """
        differential(text, [_packet(60)])


# -- context -------------------------------------------------------------------------------------


@pytest.mark.parametrize("off", [0, 4, 8, 12, 16, 20])
def test_xdp_md_fields(off):
    text = f""".type xdp
        ldxw r0, [r1+{off}]
        exit
    """
    program = assemble(text)
    image = jit_compile(program, check=False).image
    for pk in (PacketIn(_packet(60), ingress_ifindex=7, rx_queue_index=3), PacketIn(_packet(14))):
        ref = run(program, pk)
        sim = run_sim(image, pk)
        if off in (0, 4, 8):   # pointers: engines place packets at different addresses; compare lengths
            continue
        assert not compare_results(ref, sim, r0_bits=64)


def test_packet_pointers_measure_the_packet():
    needs_alu()
    text = """.type xdp
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        ldxw r4, [r1+8]
        mov r0, r3
        sub r0, r2
        mov r5, r2
        sub r5, r4
        lsh r5, 16
        or r0, r5
        exit
    """
    differential(text, [_packet(n) for n in (14, 15, 60, 64, 1500)])


def test_sk_buff_len_and_packet_pointers():
    needs_alu()
    text = """.type tc
        ldxw r2, [r1+76]
        ldxw r3, [r1+80]
        ldxw r4, [r1+140]
        ldxw r0, [r1+0]
        ldxb r5, [r1+0]
        ldxb r6, [r1+1]
        ldxh r7, [r1+2]
        ldxh r8, [r1+0]
        lsh r0, 8
        add r0, r5
        lsh r0, 8
        add r0, r6
        lsh r0, 8
        add r0, r7
        add r0, r8
        sub r3, r2
        lsh r3, 32
        add r0, r3
        sub r2, r4
        lsh r2, 48
        add r0, r2
        exit
    """
    differential(text, [_packet(n) for n in (14, 60, 255, 256, 300, 1500, 7000)])


def test_sk_buff_fields_the_nic_lacks_are_refused():
    # the timestamps and the socket/GSO fields: mark (offset 8) and the other packet metadata are provided
    for load in ("ldxw r0, [r1+160]", "ldxw r0, [r1+164]", "ldxw r0, [r1+176]"):   # wire_len, gso_segs, gso_size
        text = f""".type tc
            {load}
            exit
        """
        with pytest.raises(UnsupportedError, match="__sk_buff"):
            jit_compile(assemble(text), check=False)


# -- packet ---------------------------------------------------------------------------------------


def _bounded(off: int, size: int, body: str) -> str:
    return f""".type xdp
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, {off + size}
        mov r0, 99
        jgt r4, r3, out
        {body}
    out:
        exit
    """


@pytest.mark.parametrize("size", [1, 2, 4, 8])
@pytest.mark.parametrize("off", [0, 1, 2, 3, 5, 12, 13, 57, 300])
def test_packet_load(size, off):
    needs_alu()
    text = _bounded(off, size, f"ldx{SIZES[size]} r0, [r2+{off}]")
    lens = sorted({max(1, off + size + d) for d in (-1, 0, 1, 3)} | {60})
    differential(text, [_packet(n, seed=n) for n in lens])


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("off", [0, 1, 2, 7, 21])
def test_sign_extending_packet_loads(size, off):
    needs_alu()
    text = _bounded(off, size, f"ldxs{SIZES[size]} r0, [r2+{off}]")
    frames = [bytes([0x80 | (i * 29 & 0x7F)]) * 64 for i in range(3)] + [_packet(64, seed=s) for s in range(3)]
    differential(text, frames)


def test_packet_access_at_the_end_of_a_full_buffer():
    needs_alu()
    # the largest packet ends at the end of the NIC's packet buffer: a narrow access there must not
    # read a word past it
    n = 7936
    for size in (1, 2, 4):
        off = n - size
        body = f"""ldx{SIZES[size]} r0, [r2+{off}]
        st{SIZES[size]} [r2+{off}], 0x5a"""
        differential(_bounded(off, size, body), [_packet(n)])


@pytest.mark.parametrize("size", [1, 2, 4, 8])
@pytest.mark.parametrize("off", [0, 1, 3, 6, 13, 59])
def test_packet_store(size, off):
    needs_alu()
    body = f"""lddw r5, 0x8899aabbccddeeff
        stx{SIZES[size]} [r2+{off}], r5
        st{SIZES[size]} [r2+{off + size if off + 2 * size <= 60 else off}], -2
        ldx{SIZES[size]} r0, [r2+{off}]"""
    text = _bounded(off, size if off + 2 * size > 60 else 2 * size, body)
    differential(text, [_packet(n, seed=n) for n in (off + size, off + 2 * size, 60, 61)])


def test_packet_variable_offset_loads_and_stores():
    needs_alu()
    text = """.type xdp
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 1
        mov r0, 1
        jgt r4, r3, out
        ldxb r5, [r2+0]
        and r5, 15
        add r5, r2
        mov r4, r5
        add r4, 48
        jgt r4, r3, out
        ldxb r0, [r5+1]
        ldxh r6, [r5+3]
        add r0, r6
        ldxw r6, [r5+40]
        add r0, r6
        stxh [r5+20], r0
        stb [r5+2], 0xee
    out:
        exit
    """
    differential(text, [_packet(64, seed=s) for s in range(8)] + [_packet(63), _packet(100, seed=3)])


def test_packet_rewrite_crafted_packets():
    needs_alu()
    # swap the MAC addresses (6-byte halves by word + half-word accesses at odd offsets)
    text = """.type xdp
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 14
        mov r0, 0
        jgt r4, r3, out
        ldxw r5, [r2+0]
        ldxh r6, [r2+4]
        ldxw r7, [r2+6]
        ldxh r8, [r2+10]
        stxw [r2+0], r7
        stxh [r2+4], r8
        stxw [r2+6], r5
        stxh [r2+10], r6
        ldxb r0, [r2+13]
        and r0, 3
    out:
        exit
    """
    differential(text, crafted_packets(50))


# -- map values -------------------------------------------------------------------------------------


def _lookup(map_name: str, key: int, body: str, miss: str = "mov r0, 7") -> str:
    return f"""
        stw [r10-4], {key}
        lddw r1, map:{map_name}
        mov r2, r10
        add r2, -4
        call map_lookup_elem
        jeq r0, 0, miss
        {body}
        exit
    miss:
        {miss}
        exit
    """


@pytest.mark.parametrize("value_size", [4, 5, 8, 12, 16])
@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_map_value_every_offset(value_size, size):
    needs_alu()
    entries = 3
    for off in range(0, value_size - size + 1):
        body = f"""mov r6, r0
            ldx{SIZES[size]} r7, [r6+{off}]
            lddw r8, 0x0123456789abcdef
            stx{SIZES[size]} [r6+{off}], r8
            mov r0, r7"""
        text = f".type xdp\n.map vals array key=4 value={value_size} entries={entries}\n" + \
            _lookup("vals", entries - 1, body)
        init = {i.to_bytes(4, "little"): _packet(value_size, seed=i)[:value_size] for i in range(entries)}
        differential(text, [_packet(60)], maps_in={"vals": init})


def test_map_value_variable_offset():
    needs_alu()
    body = """ldxb r6, [r0+0]
        and r6, 7
        add r6, r0
        ldxw r7, [r6+4]
        ldxb r8, [r6+8]
        add r7, r8
        ldxh r8, [r6+7]
        add r7, r8
        stxb [r6+1], r7
        stxb [r6+8], r7
        stw [r6+5], -5
        mov r0, r7"""
    text = ".type xdp\n.map vals array key=4 value=16 entries=2\n" + _lookup("vals", 1, body)
    for first in range(8):
        init = {i.to_bytes(4, "little"): bytes([first]) + _packet(15, seed=i) for i in range(2)}
        differential(text, [_packet(60)], maps_in={"vals": init})


def test_map_lookup_miss_is_null():
    needs_alu()
    text = ".type xdp\n.map h hash key=4 value=8 entries=4\n" + _lookup("h", 5, "ldxdw r0, [r0+0]")
    init = {(5).to_bytes(4, "little"): (2**64 - 3).to_bytes(8, "little")}
    differential(text, [_packet(60)], maps_in={"h": init})     # hit
    differential(text, [_packet(60)], maps_in={"h": {}})       # miss


@pytest.mark.parametrize("size", [4, 8])
def test_atomic_add_map_value(size):
    needs_alu()
    op = "add" if size == 8 else "add32"
    body = f"""lddw r5, 0xffffffff80000001
        lock {op} [r0+8], r5
        mov r0, 2"""
    text = ".type xdp\n.map c array key=4 value=16 entries=1\n" + _lookup("c", 0, body)
    for start in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1):
        value = bytes(8) + (start & (2 ** (8 * size) - 1)).to_bytes(size, "little") + bytes(8 - size)
        differential(text, [_packet(60)], maps_in={"c": {bytes(4): value}})


@pytest.mark.parametrize("op", ["or", "or32", "fetch or", "fetch or32"])
def test_atomic_or_map_value(op):
    needs_alu()
    body = f"""lddw r5, 0x8000000100000300
        lock {op} [r0+4], r5
        mov r0, r5"""
    text = ".type xdp\n.map c array key=4 value=16 entries=1\n" + _lookup("c", 0, body)
    for start in (0, 0x0F0F0F0F0F0F0F0F, 2**64 - 1):
        value = bytes(4) + start.to_bytes(8, "little") + bytes(4)
        differential(text, [_packet(60)], maps_in={"c": {bytes(4): value}})


@pytest.mark.parametrize("op", ["fetch add", "fetch add32", "xchg", "cmpxchg32", "fetch and", "xor32"])
def test_other_map_value_atomics(op):
    """Once refused (EMEM had only add and test-and-set), now one mem_atomic command each
    (every operation and width: tests/test_jit_atomics.py)."""
    needs_alu()
    body = f"""mov r6, r0
        lddw r5, 0x8000000100000300
        mov r0, 0x301
        lock {op} [r6+4], r5
        add r0, r5"""
    text = ".type xdp\n.map c array key=4 value=16 entries=1\n" + _lookup("c", 0, body)
    for start in (0, 0x301, 2**64 - 1):
        value = bytes(4) + start.to_bytes(8, "little") + bytes(4)
        differential(text, [_packet(60)], maps_in={"c": {bytes(4): value}})


def test_stack_atomics():
    needs_alu()
    text = """.type xdp
        lddw r1, 0x1ffffffff
        stxdw [r10-8], r1
        mov r2, 1
        lock add [r10-8], r2
        lock fetch add [r10-8], r2
        mov r3, 0x300
        lock or [r10-8], r3
        mov r4, 0xf0f
        lock fetch and [r10-8], r4
        lock xor32 [r10-4], r3
        stw [r10-16], 9
        lock fetch add32 [r10-16], r2
        ldxdw r0, [r10-8]
        add r0, r2
        add r0, r4
        ldxw r5, [r10-16]
        add r0, r5
        exit
    """
    differential(text, [_packet(60)])


@pytest.mark.parametrize("name", ["atomic32.s", "atomic64.s"])
def test_every_atomic_on_the_stack_corpus(name):
    needs_alu()
    differential((Path(__file__).parent / "corpus" / "asm" / name).read_text(), [_packet(60)])


def test_cmpxchg_compares_all_64_bits():
    needs_alu()
    text = """.type xdp
        lddw r1, 0x100000005
        stxdw [r10-8], r1
        mov r0, 5
        mov r2, 9
        lock cmpxchg [r10-8], r2
        ldxdw r3, [r10-8]
        lddw r0, 0x100000005
        mov r4, 11
        lock cmpxchg [r10-8], r4
        ldxdw r5, [r10-8]
        add r0, r3
        add r0, r5
        exit
    """
    differential(text, [_packet(60)])


# -- legacy packet loads ----------------------------------------------------------------------------


def test_ld_abs_corpus_program():
    needs_alu()
    text = (Path(__file__).parent / "corpus" / "asm" / "ld_abs.s").read_text()
    differential(text, crafted_packets(50) + [_packet(n) for n in (1, 14, 15, 30, 33, 34)])


@pytest.mark.parametrize("size", ["b", "h", "w"])
@pytest.mark.parametrize("base", [0, 3, 13, -2, -0x100000, -0x100000 + 5, -0x200000, -0x200000 + 9,
                                  -0x200001, 0x7FFFFFF0])
def test_ld_ind_offsets(size, base):
    needs_alu()
    # r7 comes from the packet so that the offset is a runtime value; r0 sums two loads
    text = f""".type tc
        mov r6, r1
        ldabsb 0
        mov r7, r0
        and r7, 3
        lddw r8, {base & 0xFFFFFFFF:#x}
        add r7, r8
        ldind{size} r7, 2
        mov r9, r0
        ldabs{size} 1
        add r0, r9
        exit
    """
    frames = [bytes([k]) + _packet(n - 1, seed=k) for k in (0, 1, 3) for n in (1, 6, 16, 40)]
    differential(text, frames)


# -- global data -------------------------------------------------------------------------------------


def test_global_data_read_write():
    needs_alu()
    init = bytes(range(1, 17)).hex()
    text = f""".type xdp
        .map .data array key=4 value=16 entries=1 init={init}
        lddw r1, map_value:.data+4
        ldxw r0, [r1+0]
        ldxb r2, [r1+3]
        add r0, r2
        stxh [r1+6], r0
        lddw r3, map_value:.data+0
        ldxdw r4, [r3+8]
        add r0, r4
        exit
    """
    differential(text, [_packet(60)])


# -- what the lowering refuses ------------------------------------------------------------------------


def test_layout_places_frames_apart_and_aligned():
    text = """.type xdp
        stdw [r10-24], 1
        call f
        exit
    f:
        stdw [r10-40], 2
        call g
        exit
    g:
        stw [r10-4], 3
        exit
    """
    from nfpjit.analysis import analyze

    program = assemble(text)
    layout = stack_layout(program, analyze(program))
    frames = sorted(layout.frames.values(), key=lambda f: f.base)
    assert [f.depth for f in frames] == [24, 40, 8]
    for lower_frame, upper in zip(frames, frames[1:]):
        assert lower_frame.frame_pointer <= upper.base
    assert all(f.frame_pointer % 8 == 0 for f in frames)
    assert layout.size <= 4096


def test_stores_to_the_context_are_refused():
    text = """.type xdp
        stw [r1+16], 1
        mov r0, 2
        exit
    """
    program = assemble(text)
    with pytest.raises(UnsupportedError):
        jit_compile(program, check=False)


def test_handlers_are_registered():
    ops = supported_opcodes()
    assert set(HANDLERS) <= ops
    for code in (0x61, 0x69, 0x71, 0x79, 0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73, 0x7B, 0xC3, 0xDB):
        assert code in ops

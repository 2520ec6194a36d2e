"""The reference interpreter: memory model, faults, contexts, calls, atomics, legacy loads, corpus programs.

Expected values come from packets built with dpkt and from plain Python
computations of what each program is specified to do, never from an earlier run.
"""

from __future__ import annotations

from nfpjit.errors import UnsupportedError

import copy
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.interp import MAX_CALL_FRAMES, run, run_raw
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.ebpf.program import Program
from nfpjit.ebpf.result import PacketIn
from nfpjit.testing.nondet import uses_nondeterministic_helpers
from nfpjit.errors import UsageError
from tests.corpus_cases import corpus_cases

CORPUS = Path(__file__).resolve().parent / "corpus"
M64 = (1 << 64) - 1


def asm(text: str) -> Program:
    return assemble(text, filename="test")


def eth_ipv4(proto=dpkt.ip.IP_PROTO_TCP, dport=80, ttl=64, payload=b"hello", src=b"\x02" * 6, dst=b"\x04" * 6,
             saddr=b"\x0a\x00\x00\x01", eth_type=dpkt.ethernet.ETH_TYPE_IP) -> bytes:
    if proto == dpkt.ip.IP_PROTO_TCP:
        l4 = dpkt.tcp.TCP(sport=1234, dport=dport, data=payload)
    else:
        l4 = dpkt.udp.UDP(sport=1234, dport=dport, data=payload)
    ip = dpkt.ip.IP(src=saddr, dst=b"\x0a\x00\x00\x02", p=proto, ttl=ttl, data=l4)
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=eth_type, data=ip))


# -- raw context and basics ----------------------------------------------------------

def test_raw_context_passes_pointer_and_length():
    prog = asm("""
        mov r0, r2
        ldxb r3, [r1+2]
        lsh r0, 8
        or r0, r3
        stxb [r1+0], r3
        exit
    """)
    res = run_raw(prog, b"\x10\x20\x30\x40")
    assert res.fault is None
    assert res.r0 == (4 << 8) | 0x30
    assert res.packet == b"\x30\x20\x30\x40"


def test_full_64bit_r0_in_raw_mode():
    res = run_raw(asm("lddw r0, 0x8000000000000001\nexit"))
    assert res.r0 == 0x8000000000000001


def test_pointers_compare_as_numbers():
    # data + 14 > data_end decides on the packet length, as in the kernel.
    prog = asm("""
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov r4, r2
        add r4, 14
        jgt r4, r3, short
        mov r0, 2
        exit
    short:
        mov r0, 1
        exit
    """)
    assert run(prog, bytes(14)).r0 == 2
    assert run(prog, bytes(13)).r0 == 1
    res = run(prog, bytes(20))
    assert res.insns == 7 and res.packet == bytes(20)


# -- faults -----------------------------------------------------------------------------

def _fault(res):
    assert res.fault is not None, f"expected a fault, got r0={res.r0}"
    return res.fault


def test_packet_out_of_bounds_read_faults_at_its_pc():
    prog = asm("mov r0, 0\nldxw r2, [r1+0]\nldxb r0, [r2+20]\nexit")
    f = _fault(run(prog, bytes(20)))
    assert f.pc == 2 and "out-of-bounds" in f.reason and "packet" in f.reason
    assert run(prog, bytes(21)).fault is None


def test_stack_out_of_bounds():
    f = _fault(run_raw(asm("mov r0, 0\nstdw [r10+0], 1\nexit")))
    assert f.pc == 1 and "stack" in f.reason
    f = _fault(run_raw(asm("mov r0, 0\nldxdw r0, [r10-520]\nexit")))
    assert f.pc == 1
    assert run_raw(asm("stdw [r10-512], 7\nldxdw r0, [r10-512]\nexit")).r0 == 7


def test_uninitialised_register_read():
    f = _fault(run_raw(asm("mov r0, 1\nadd r0, r7\nexit")))
    assert f.pc == 1 and "r7" in f.reason
    f = _fault(run_raw(asm("exit")))
    assert f.pc == 0 and "r0" in f.reason


def test_helper_call_clobbers_r1_to_r5():
    prog = asm("mov r1, 5\nmov r6, 6\ncall 7\nmov r0, r6\nadd r0, r1\nexit")
    f = _fault(run_raw(prog))
    assert f.pc == 4 and "r1" in f.reason


def test_null_dereference():
    prog = asm("""
        .map m hash key=4 value=8 entries=4
        stw [r10-4], 9
        mov r2, r10
        add r2, -4
        lddw r1, map:m
        call 1
        ldxdw r0, [r0+0]
        exit
    """)
    f = _fault(run(prog, bytes(64)))
    assert f.pc == 6 and "NULL" in f.reason and f.address == 0


def test_jump_past_end_and_falling_off():
    prog = Program("j", (Insn(0xB7, 0, imm=0), Insn(0x05, off=5), Insn(0x95)))
    f = _fault(run_raw(prog))
    assert f.pc == 1 and "outside the program" in f.reason
    f = _fault(run_raw(Program("f", (Insn(0xB7, 0, imm=0),))))
    assert f.pc == 0 and "past the last instruction" in f.reason


def test_jump_into_ld_imm64():
    prog = Program("j", (Insn(0x05, off=1), Insn.ld_imm64(0, 1), Insn(0x95)))
    f = _fault(run_raw(prog))
    assert f.pc == 0 and "ld_imm64" in f.reason


def test_budget():
    prog = asm("mov r0, 0\nloop:\nadd r0, 1\nja loop")
    res = run_raw(prog, budget=1000)
    f = _fault(res)
    assert "budget" in f.reason and res.insns == 1000 and f.pc in (1, 2)


def test_unknown_helper_is_named():
    f = _fault(run_raw(asm("call 69\nexit")))
    assert f.pc == 0 and "fib_lookup" in f.reason
    f = _fault(run_raw(Program("h", (Insn(0x85, imm=9999), Insn(0x95)))))
    assert "9999" in f.reason


def test_invalid_context_access():
    f = _fault(run(asm("ldxdw r0, [r1+0]\nexit"), bytes(20)))   # xdp_md fields are 4 bytes
    assert f.pc == 0 and "context" in f.reason
    f = _fault(run(asm("mov r0, 1\nstw [r1+12], 0\nexit"), bytes(20)))
    assert f.pc == 1


def test_bad_api_arguments_raise_usage_errors():
    prog = asm("mov r0, 0\nexit")
    with pytest.raises(UsageError):
        run(prog, "not bytes")
    with pytest.raises(UsageError):
        run(prog, b"", budget=0)


# -- XDP and TC contexts ---------------------------------------------------------------

def test_xdp_md_fields():
    prog = asm("""
        ldxw r2, [r1+12]
        ldxw r3, [r1+16]
        ldxw r4, [r1+20]
        mov r0, r2
        lsh r0, 16
        lsh r3, 8
        or r0, r3
        or r0, r4
        exit
    """)
    res = run(prog, PacketIn(bytes(60), ingress_ifindex=7, rx_queue_index=3))
    assert res.r0 == (7 << 16) | (3 << 8)


@pytest.mark.parametrize("frame,proto,ptype", [
    (b"\x00" * 6 + b"\x02" * 6 + b"\x08\x00", 0x0800, 0),          # to our (all-zero) address: HOST
    (b"\xff" * 6 + b"\x02" * 6 + b"\x86\xdd", 0x86DD, 2),          # loopback's broadcast address is zero: multicast
    (b"\x01\x00\x5e\x00\x00\x01" + b"\x02" * 6 + b"\x08\x06", 0x0806, 2),  # multicast
    (b"\x04" * 6 + b"\x02" * 6 + b"\x08\x00", 0x0800, 3),          # someone else's
])
def test_skb_protocol_and_pkt_type(frame, proto, ptype):
    prog = asm(".type tc\nldxw r0, [r1+16]\nldxw r2, [r1+4]\nlsh r2, 32\nor r0, r2\nldxw r3, [r1+0]\nexit")
    res = run(prog, frame + bytes(50))
    assert res.fault is None
    assert res.r0 & 0xFFFF_FFFF == int.from_bytes(proto.to_bytes(2, "big"), "little")  # network order in memory
    assert res.r0 >> 32 == ptype


def test_skb_offsets_match_uapi():
    # struct __sk_buff offsets computed from the UAPI declaration order (all __u32 up to data_meta).
    names = ["len", "pkt_type", "mark", "queue_mapping", "protocol", "vlan_present", "vlan_tci", "vlan_proto",
             "priority", "ingress_ifindex", "ifindex", "tc_index", "cb0", "cb1", "cb2", "cb3", "cb4", "hash",
             "tc_classid", "data", "data_end", "napi_id"]
    off = {n: 4 * i for i, n in enumerate(names)}
    prog = asm(f"""
        .type tc
        ldxw r2, [r1+{off['data']}]
        ldxw r3, [r1+{off['data_end']}]
        sub r3, r2
        ldxw r4, [r1+{off['len']}]
        mov r0, r3
        lsh r0, 16
        or r0, r4
        stw [r1+{off['mark']}], 77
        ldxw r5, [r1+{off['mark']}]
        lsh r5, 32
        or r0, r5
        stw [r1+{off['cb3']}], 5
        ldxw r5, [r1+{off['cb3']}]
        lsh r5, 48
        or r0, r5
        exit
    """)
    res = run(prog, bytes(99))
    assert res.fault is None
    assert res.r0 == (5 << 48) | (77 << 32) | (99 << 16) | 99


def test_skb_socket_fields_are_refused():
    f = _fault(run(asm(".type tc\nldxw r0, [r1+92]\nexit"), bytes(60)))
    assert "context" in f.reason


# -- calls ---------------------------------------------------------------------------------

def test_bpf_to_bpf_call_has_own_stack_and_preserves_r6_r9():
    prog = asm("""
        mov r6, 60
        stdw [r10-8], 11
        mov r1, 5
        call f
        ldxdw r2, [r10-8]
        add r0, r2
        add r0, r6
        exit
    f:
        stdw [r10-8], 1000
        mov r0, r1
        mul r0, 3
        mov r6, 1
        exit
    """)
    res = run_raw(prog)
    assert res.fault is None and res.r0 == 15 + 11 + 60


def test_callee_sees_r6_uninitialised_and_caller_loses_r1():
    prog = asm("mov r6, 1\nmov r1, 1\ncall f\nexit\nf:\nmov r0, r6\nexit")
    f = _fault(run_raw(prog))
    assert f.pc == 4 and "r6" in f.reason
    prog = asm("mov r1, 1\ncall f\nmov r0, r1\nexit\nf:\nmov r0, 0\nexit")
    f = _fault(run_raw(prog))
    assert f.pc == 2 and "r1" in f.reason


def test_call_depth_limit():
    prog = asm("mov r0, 0\ncall f\nexit\nf:\ncall f\nexit")
    f = _fault(run_raw(prog))
    assert str(MAX_CALL_FRAMES) in f.reason and f.pc == 3


def test_stack_fill_reveals_uninitialised_stack_reads():
    prog = asm("ldxdw r0, [r10-8]\nexit")
    assert run_raw(prog).r0 == 0
    assert run_raw(prog, stack_fill=0xA5).r0 == 0xA5A5A5A5A5A5A5A5
    written = asm("stdw [r10-8], 3\nldxdw r0, [r10-8]\nexit")
    assert run_raw(written, stack_fill=0xA5).r0 == 3


def test_stack_pointer_of_returned_frame_is_dead():
    prog = asm("mov r1, 0\ncall f\nldxdw r0, [r0+0]\nexit\nf:\nstdw [r10-8], 1\nmov r0, r10\nadd r0, -8\nexit")
    f = _fault(run_raw(prog))
    assert f.pc == 2


def test_corpus_bpf2bpf_call():
    prog = nfpjit.load(CORPUS / "bpf2bpf_call.o")
    assert run(prog, eth_ipv4()).r0 == 2
    ipv6 = bytes(12) + b"\x86\xdd" + bytes(40)
    assert run(prog, ipv6).r0 == 1
    assert run(prog, bytes(10)).r0 == 1


# -- atomics --------------------------------------------------------------------------------

@settings(max_examples=60)
@given(st.integers(0, M64), st.integers(0, M64), st.sampled_from(["add", "or", "and", "xor"]),
       st.booleans(), st.booleans())
def test_atomics_against_python(mem, val, op, fetch, wide):
    pyop = {"add": lambda a, b: a + b, "or": lambda a, b: a | b, "and": lambda a, b: a & b,
            "xor": lambda a, b: a ^ b}[op]
    m = (1 << (64 if wide else 32)) - 1
    size = "dw" if wide else "w"
    mnem = f"{'fetch_' if fetch else ''}{op}"
    code = {"add": 0x00, "or": 0x40, "and": 0x50, "xor": 0xA0}[op] | (1 if fetch else 0)
    prog = Program("a", (
        Insn.ld_imm64(1, mem), Insn(0x7B, 10, 1, -8),           # *(u64 *)(r10-8) = mem
        Insn.ld_imm64(2, val),
        Insn(0xDB if wide else 0xC3, 10, 2, -8, code),          # atomic op
        Insn(0x79, 0, 10, -8),                                  # r0 = *(u64 *)(r10-8)
        Insn(0x95)))
    res = run_raw(prog, trace=True)
    assert res.fault is None, (mnem, size, res.fault)
    new = (mem & ~m) | (pyop(mem & m, val & m) & m)
    assert res.r0 == new & M64
    line = res.trace[3]
    if fetch:
        assert f"r2={hex(mem & m)}" in line or (mem & m) == val
    else:
        assert "r2=" not in line


def test_cmpxchg_and_xchg():
    X = lambda op, d, sreg, off: Insn(0xDB, d, sreg, off, op)  # noqa: E731 - 64-bit atomic
    prog = Program("c", (
        Insn(0x7A, 10, 0, -8, 5),          # *(u64 *)(r10-8) = 5
        Insn(0xB7, 0, imm=5), Insn(0xB7, 1, imm=9),
        X(0xF1, 10, 1, -8),                # cmpxchg: 5 == 5, memory becomes 9, r0 = 5
        Insn(0xBF, 6, 0),
        Insn(0xB7, 0, imm=7),
        X(0xF1, 10, 1, -8),                # cmpxchg: 7 != 9, memory stays, r0 = 9
        Insn(0xBF, 7, 0),
        Insn(0xB7, 2, imm=3),
        X(0xE1, 10, 2, -8),                # xchg: memory = 3, r2 = 9
        Insn(0x79, 0, 10, -8),
        Insn(0x67, 6, imm=16), Insn(0x67, 7, imm=8), Insn(0x67, 2, imm=4),
        Insn(0x4F, 0, 6), Insn(0x4F, 0, 7), Insn(0x4F, 0, 2), Insn(0x95)))
    res = run_raw(prog)
    assert res.fault is None
    assert res.r0 == (5 << 16) | (9 << 8) | (9 << 4) | 3


def test_cmpxchg32_compares_low_half_and_zero_extends():
    prog = Program("c", (
        Insn(0x62, 10, 0, -4, -1),         # *(u32 *)(r10-4) = 0xffffffff
        Insn.ld_imm64(0, 0x1_FFFF_FFFF),   # low half matches
        Insn(0xB7, 1, imm=2),
        Insn(0xC3, 10, 1, -4, 0xF1),
        Insn(0x61, 1, 10, -4),
        Insn(0x67, 1, imm=32), Insn(0x4F, 0, 1), Insn(0x95)))
    res = run_raw(prog)
    assert res.fault is None and res.r0 == (2 << 32) | 0xFFFF_FFFF


def test_atomic_on_packet_is_refused():
    prog = Program("a", (Insn(0x61, 2, 1, 0), Insn(0xB7, 3, imm=1), Insn(0xC3, 2, 3, 0, 0), Insn(0xB7, 0), Insn(0x95)))
    f = _fault(run(prog, bytes(20)))
    assert f.pc == 2 and "atomic" in f.reason


# -- legacy packet loads --------------------------------------------------------------------

def test_ld_abs_and_ind_big_endian_and_abort():
    frame = bytes(range(1, 41))
    prog = Program("abs", (Insn(0xBF, 6, 1), Insn(0x20, imm=12), Insn(0xBF, 7, 0), Insn(0xB7, 2, imm=4),
                           Insn(0x48, 0, 2, 0, 10), Insn(0x0F, 0, 7), Insn(0x95)), prog_type=ProgType.SCHED_CLS)
    res = run(prog, frame)
    assert res.fault is None
    assert res.r0 == struct.unpack(">I", frame[12:16])[0] + struct.unpack(">H", frame[14:16])[0]
    short = run(prog, frame[:15])   # ld_abs word at 12 needs 16 bytes: the program ends with r0 = 0
    assert short.fault is None and short.r0 == 0 and short.insns == 2


# -- tracing ----------------------------------------------------------------------------------

def test_trace_lines_show_changes():
    res = run_raw(asm("mov r0, 3\nadd r0, 4\nexit"), trace=True)
    assert len(res.trace) == 3
    assert res.trace[0].split(":")[0].strip() == "0" and "r0=0x3" in res.trace[0]
    assert "r0=0x7" in res.trace[1]
    assert run_raw(asm("mov r0, 3\nexit")).trace is None


# -- corpus programs (C compiled by clang) -----------------------------------------------------

def test_corpus_drop_tcp_ports_counts_per_port():
    prog = nfpjit.load(CORPUS / "xdp_drop_tcp_ports.o")
    maps = MapStore.from_program(prog)
    verdicts = [run(prog, eth_ipv4(dport=p), maps=maps).r0 for p in (80, 22, 8080, 80, dpkt.ip.IP_PROTO_UDP)]
    assert verdicts == [1, 2, 1, 1, 2]
    res = run(prog, eth_ipv4(proto=dpkt.ip.IP_PROTO_UDP, dport=80), maps=maps)
    assert res.r0 == 2
    counts = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in res.maps["drop_count"].items()}
    assert counts == {80: 2, 8080: 1}


def test_corpus_mac_swap():
    prog = nfpjit.load(CORPUS / "mac_swap_tx.o")
    frame = eth_ipv4(src=b"\xaa" * 6, dst=b"\xbb" * 6)
    res = run(prog, frame)
    assert res.r0 == 3 and res.packet == b"\xaa" * 6 + b"\xbb" * 6 + frame[12:]


def test_corpus_ttl_decrement_keeps_checksum_valid():
    prog = nfpjit.load(CORPUS / "ipv4_csum_update.o")
    frame = eth_ipv4(ttl=17)
    res = run(prog, frame)
    assert res.r0 == 3
    ip = dpkt.ethernet.Ethernet(res.packet).data
    assert ip.ttl == 16
    hdr = bytearray(res.packet[14:34])
    total = sum(struct.unpack("!10H", bytes(hdr)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF  # a valid IPv4 header sums to all ones
    assert run(prog, eth_ipv4(ttl=1)).r0 == 1


def test_corpus_ipip_encap_grows_head():
    prog = nfpjit.load(CORPUS / "ipip_encap.o")
    frame = eth_ipv4()
    res = run(prog, frame)
    assert res.fault is None and res.r0 == 3
    assert len(res.packet) == len(frame) + 20
    outer = dpkt.ip.IP(res.packet[14:])
    assert outer.p == 4 and outer.src == b"\x0a\x00\x00\x01" and outer.len == len(frame) - 14 + 20
    assert res.packet[34:] == frame[14:]
    assert res.packet[:14] == frame[:14]


def test_corpus_global_data():
    prog = nfpjit.load(CORPUS / "global_data.o")
    maps = MapStore.from_program(prog)
    assert run(prog, eth_ipv4(dport=22), maps=maps).r0 == 1     # verdict_on_block (.rodata) = XDP_DROP
    res = run(prog, eth_ipv4(dport=23), maps=maps)
    assert res.r0 == 2
    assert int.from_bytes(res.maps[".data"][bytes(4)], "little") == 1002   # seen_packets starts at 1000
    assert int.from_bytes(res.maps[".bss"][bytes(4)], "little") == len(eth_ipv4(dport=23))


def test_corpus_tc_classifier():
    prog = nfpjit.load(CORPUS / "tc_classifier.o")
    res = run(prog, PacketIn(eth_ipv4(proto=dpkt.ip.IP_PROTO_UDP), ingress_ifindex=3))
    assert res.fault is None and res.r0 == 0
    assert run(prog, bytes(1515)).r0 == 2   # oversized: TC_ACT_SHOT


def test_corpus_bounded_loop():
    prog = nfpjit.load(CORPUS / "bounded_loop.o")
    frame = eth_ipv4(payload=b"xyz" * 5)
    res = run(prog, frame)
    s = sum(frame[:32]) & 0xFFFF_FFFF
    assert res.r0 == (1 if s & 1 else 2)
    assert int.from_bytes(res.maps["byte_sum"][bytes(4)], "little") == s
    short = bytes([3, 4, 5])
    assert int.from_bytes(run(prog, short).maps["byte_sum"][bytes(4)], "little") == 12


def test_corpus_ktime_uses_controllable_clock():
    prog = nfpjit.load(CORPUS / "ktime.o")
    res = run(prog, bytes(60), clock_ns=123456789)
    assert int.from_bytes(res.maps["last_seen"][bytes(4)], "little") == 123456789


def test_corpus_tail_call():
    prog = nfpjit.load(CORPUS / "tail_call.o")
    drop = asm("mov r0, 1\nexit")
    tx = asm("ldxw r0, [r1+16]\nadd r0, 1\nexit")  # reads ctx in the target: queue index + 1
    progs = {0: drop, 2: tx}
    assert run(prog, PacketIn(bytes(60), rx_queue_index=0), prog_array_programs=progs).r0 == 1
    assert run(prog, PacketIn(bytes(60), rx_queue_index=2), prog_array_programs=progs).r0 == 3
    assert run(prog, PacketIn(bytes(60), rx_queue_index=1), prog_array_programs=progs).r0 == 2  # empty slot


def test_tail_call_limit():
    # A program tail-calling itself stops after 33 tail calls and falls through.
    prog = asm("""
        .map jt prog_array key=4 value=4 entries=1
        ldxw r6, [r1+16]
        lddw r2, map:jt
        mov r3, 0
        call 12
        mov r0, 2
        exit
    """)
    res = run(prog, bytes(60), prog_array_programs={0: prog})
    assert res.fault is None and res.r0 == 2
    assert res.insns == 34 * 4 + 2


@settings(max_examples=40)
@given(st.binary(min_size=0, max_size=200))
def test_parser_never_raises_on_any_packet(frame):
    prog = nfpjit.load(CORPUS / "parse_l2_l3_l4.o")
    res = run(prog, frame)
    assert res.fault is None
    assert res.action_name(ProgType.XDP).startswith("XDP_")


# -- differential against the Linux kernel (BPF_PROG_TEST_RUN) ---------------------------------------

def _kernel():
    kernel = pytest.importorskip("nfpjit.kernel")
    ok, why = kernel.kernel_available()
    if not ok:
        pytest.skip(why)
    return kernel


@pytest.mark.kernel
@pytest.mark.parametrize("path,section", corpus_cases())
def test_corpus_agrees_with_kernel(path, section):
    kernel = _kernel()
    from nfpjit.ebpf.loader import list_programs
    from nfpjit.testing.packets import crafted_packets

    multi = len(list_programs(path)) > 1
    prog = nfpjit.load(path, section=section if multi else None)
    store = MapStore.from_program(prog)
    # the kernel's clock is real time and its prandom its own: the verdicts and maps those helpers
    # decide are not compared here (test_differential compares them with the helpers' part masked)
    clocked = uses_nondeterministic_helpers(prog)
    compared = 0
    with kernel.KernelProgram(prog) as kp:
        for frame in crafted_packets(40, seed=7):
            if len(frame) < 14:
                continue
            pkt = PacketIn(frame, ingress_ifindex=0) if prog.prog_type != ProgType.XDP else frame
            try:
                want = kp.run(pkt)
            except kernel.KernelError:
                # The skb test run refuses truncated IPv4/IPv6 headers (EINVAL); nothing to compare.
                assert prog.prog_type != ProgType.XDP
                continue
            compared += 1
            got = run(prog, pkt, maps=store, tailroom=None)
            assert got.fault is None, got.fault
            assert got.packet == want.packet, frame.hex()
            if not clocked:
                assert got.r0 & 0xFFFF_FFFF == want.r0, frame.hex()
                assert got.maps == want.maps, frame.hex()
    assert compared >= 20


@pytest.mark.kernel
def test_skb_fields_agree_with_kernel():
    kernel = _kernel()
    offsets = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 68, 72, 84, 160, 164, 176]
    frames = [b"\x00" * 6 + b"\x02" * 6 + b"\x08\x00" + bytes(46),
              b"\xff" * 6 + b"\x02" * 6 + b"\x86\xdd" + bytes(46),
              b"\x04" * 6 + b"\x02" * 6 + b"\x00\x30" + bytes(46),
              b"\x01\x00\x5e\x00\x00\x01" + b"\x02" * 6 + b"\x81\x00" + bytes(30)]
    for off in offsets:
        prog = asm(f".type tc\nldxw r0, [r1+{off}]\nexit")
        with kernel.KernelProgram(prog) as kp:
            for frame in frames:
                pkt = PacketIn(frame, ingress_ifindex=0)
                assert run(prog, pkt).r0 == kp.run(pkt).r0, (off, frame[:14].hex())


def _random_differential(data, prog_type):
    kernel = _kernel()
    from nfpjit.testing import compare_results, packets, programs

    prog = data.draw(programs(prog_type), label="program")
    frames = data.draw(st.lists(packets(max_len=300), min_size=1, max_size=3), label="packets")
    store = MapStore.from_program(prog)
    with kernel.KernelProgram(prog) as kp:
        for frame in frames:
            pkt = PacketIn(frame, ingress_ifindex=0) if prog_type != ProgType.XDP else PacketIn(frame)
            try:
                want = kp.run(pkt)
            except kernel.KernelError:
                assert prog_type != ProgType.XDP   # skb test run refuses truncated IP headers
                continue
            before = copy.deepcopy(store)
            got = run(prog, pkt, maps=store, tailroom=None)
            # Privileged programs may read stack they never wrote; the kernel gives them
            # garbage.  Such programs (a generator slip) are not comparable.
            probe = run(prog, pkt, maps=before, tailroom=None, stack_fill=0xA5)
            assume(compare_results(got, probe) == [])
            diffs = compare_results(got, want)
            assert not diffs, diffs


@pytest.mark.kernel
@settings(max_examples=30)
@given(st.data())
def test_random_xdp_programs_agree_with_kernel(data):
    _random_differential(data, ProgType.XDP)


@pytest.mark.kernel
@settings(max_examples=15)
@given(st.data())
def test_random_tc_programs_agree_with_kernel(data):
    _random_differential(data, ProgType.SCHED_CLS)


@pytest.mark.kernel
@pytest.mark.slow
@settings(max_examples=1000)
@given(st.data())
def test_random_programs_agree_with_kernel_many(data):
    _random_differential(data, data.draw(st.sampled_from([ProgType.XDP, ProgType.SCHED_CLS])))


# -- robustness: whatever the instructions, the result is a RunResult ------------------------------

@settings(max_examples=300)
@given(st.binary(min_size=8, max_size=120), st.binary(max_size=64), st.booleans())
def test_random_bytecode_never_raises(code, memory, as_xdp):
    from nfpjit.ebpf.insn import decode
    from nfpjit.errors import DecodeError

    code = code[: len(code) // 8 * 8]
    try:
        insns = decode(code)
    except DecodeError:
        return
    prog = Program("fuzz", tuple(insns), prog_type=ProgType.XDP)
    try:
        res = run(prog, memory, budget=2000) if as_xdp else run_raw(prog, memory, budget=2000)
    except UnsupportedError as exc:   # a kernel helper or kfunc the interpreter does not model: named up front
        assert "is not modelled by the interpreter" in str(exc)
        return
    assert res.insns <= 2000
    assert res.fault is None or isinstance(res.fault.reason, str)


@settings(max_examples=300)
@given(st.lists(st.builds(Insn, st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                          st.integers(-(1 << 15), (1 << 15) - 1), st.integers(-(1 << 31), (1 << 31) - 1),
                          st.integers(-(1 << 31), (1 << 31) - 1)), min_size=1, max_size=12))
def test_unvalidated_insns_never_raise(insns):
    # Instructions built by hand skip the decoder's checks; the interpreter must still only fault
    # (or name, before running, a kernel helper or kfunc it does not model).
    try:
        res = run_raw(Program("raw", tuple(insns)), b"\x01\x02\x03\x04", budget=500)
    except UnsupportedError as exc:
        assert "is not modelled by the interpreter" in str(exc)
        return
    assert res.fault is None or res.fault.reason

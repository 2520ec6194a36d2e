"""Whole NFP-32 programs (tests/nfp_asm/*.s) through the assembler, the image format and the simulator.

Expected packets and maps are computed here in plain Python; expected cycle
counts are summed by hand from the documented cycle table (CYCLES), one term
per instruction or memory event on the path the program takes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from nfpjit.isa.asm import assemble
from nfpjit.isa.image import Image, image_from_asm
from nfpjit.isa.sim import CYCLES as C, Resource, simulate

ASM = Path(__file__).parent / "nfp_asm"
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3


def load(name: str) -> Image:
    """Assemble, write as an image file and read back: the simulator runs what a loader would get."""
    result = assemble((ASM / name).read_text(), str(ASM / name))
    return Image.from_bytes(image_from_asm(result, name=name).to_bytes())


def check_totals(r) -> None:
    assert r.fault is None, str(r.fault)
    assert sum(u.cycles for u in r.breakdown.values()) == r.cycles


def ipv4_packet(src: bytes, payload: bytes = b"payload!") -> bytes:
    eth = bytes.fromhex("020000000002") + bytes.fromhex("020000000001") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0x4000, 64, 17, 0, src,
                     bytes([192, 168, 1, 1]))
    return eth + ip + payload


# -- packet counter -----------------------------------------------------------------


@pytest.mark.parametrize("queue", [0, 2, 3])
def test_packet_counter_increments_the_queue_slot(queue):
    before = {i.to_bytes(4, "little"): (10 * i + 5).to_bytes(8, "little") for i in range(4)}
    r = simulate(load("packet_counter.s"), b"\xaa" * 60, maps_in={"counters": before}, rx_queue_index=queue)
    check_totals(r)
    expected = dict(before)
    key = queue.to_bytes(4, "little")
    expected[key] = (int.from_bytes(before[key], "little") + 1).to_bytes(8, "little")
    assert r.action == XDP_PASS and r.maps == {"counters": expected} and r.packet == b"\xaa" * 60
    # csr_rd, mov(LM), immed, immed, br(defer 1), load_addr, or, br.eq (not taken), immed, immed, mem_add64, halt
    assert r.insns == 12
    assert r.cycles == (12 * C["issue"] + C["lm_access"] + (C["branch_taken"] - 1) + C["fw_map_lookup_miss"]
                        + C["emem"])
    assert r.breakdown[Resource.FIRMWARE].cycles == C["fw_map_lookup_miss"]
    assert dict(r.routine_calls) == {"fw_map_lookup": 1}


def test_packet_counter_drops_outside_the_array():
    r = simulate(load("packet_counter.s"), b"\xaa" * 60, rx_queue_index=7)
    check_totals(r)
    assert r.action == XDP_DROP
    assert r.maps["counters"] == {i.to_bytes(4, "little"): bytes(8) for i in range(4)}
    # ... or, br.eq (taken, no defer), halt
    assert r.cycles == (9 * C["issue"] + C["lm_access"] + (C["branch_taken"] - 1) + C["fw_map_lookup_miss"]
                        + C["branch_taken"])


# -- MAC swap --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [14, 60, 1514])
def test_mac_swap_tx(length):
    pkt = bytes((7 * i + 3) & 0xFF for i in range(length))
    r = simulate(load("mac_swap_tx.s"), pkt)
    check_totals(r)
    assert r.action == XDP_TX
    assert r.packet == pkt[6:12] + pkt[0:6] + pkt[12:]
    assert r.cycles == 10 * C["issue"] + 2 * C["ctm"]
    assert r.breakdown[Resource.CTM] == type(r.breakdown[Resource.CTM])(accesses=2, cycles=2 * C["ctm"])


# -- IPv4 checksum -----------------------------------------------------------------------


def rfc1071(data: bytes) -> int:
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@pytest.mark.parametrize("src", [bytes([10, 0, 0, 1]), bytes([255, 255, 255, 255]), bytes([0, 0, 0, 0]),
                                 bytes([172, 31, 200, 7])])
def test_ipv4_checksum(src):
    pkt = ipv4_packet(src)
    r = simulate(load("ipv4_checksum.s"), pkt)
    check_totals(r)
    csum = rfc1071(pkt[14:34])
    assert r.packet == pkt[:24] + csum.to_bytes(2, "big") + pkt[26:]
    assert rfc1071(r.packet[14:34]) == 0       # a header with a right checksum sums to 0xffff
    assert r.action == XDP_PASS
    assert r.cycles == 18 * C["issue"] + 2 * C["ctm"]


# -- hash lookup through the firmware -----------------------------------------------------


def test_hash_lookup_hit_and_miss():
    image = load("hash_lookup.s")
    blocked = bytes([10, 1, 2, 3])
    table = {blocked: struct.pack("<II", XDP_DROP, 0), bytes([10, 9, 9, 9]): struct.pack("<II", XDP_TX, 0)}

    hit = simulate(image, ipv4_packet(blocked), maps_in={"verdicts": table})
    check_totals(hit)
    assert hit.action == XDP_DROP and hit.maps == {"verdicts": table}
    # csr_rd, mem_read(CTM), mov(LM), immed, immed, br(defer 2), load_addr, nop, or, br.eq, mem_read(EMEM), halt
    assert hit.cycles == (12 * C["issue"] + C["ctm"] + C["lm_access"] + (C["branch_taken"] - 2)
                          + C["fw_map_lookup_miss"] + C["emem"])

    other = simulate(image, ipv4_packet(bytes([10, 9, 9, 9])), maps_in={"verdicts": table})
    assert other.action == XDP_TX

    miss = simulate(image, ipv4_packet(bytes([10, 1, 2, 4])), maps_in={"verdicts": table})
    check_totals(miss)
    assert miss.action == XDP_PASS and miss.maps == {"verdicts": table}
    assert miss.cycles == (11 * C["issue"] + C["ctm"] + C["lm_access"] + (C["branch_taken"] - 2)
                           + C["fw_map_lookup_miss"] + C["branch_taken"])


# -- loop ---------------------------------------------------------------------------------------


def test_word_loop():
    pkt = bytes((31 * i + 17) & 0xFF for i in range(64))
    r = simulate(load("word_loop.s"), pkt)
    check_totals(r)
    words = [int.from_bytes(pkt[4 * i:4 * i + 4], "little") for i in range(8)]
    assert r.r0 == (words[3] << 32) | (sum(words) & 0xFFFF_FFFF)
    assert r.action == XDP_PASS and r.packet == pkt
    iterations = 8
    insns = 3 + iterations * 6 + 7
    assert r.insns == insns
    assert r.cycles == (insns * C["issue"] + iterations * (C["ctm"] + C["lm_access"])
                        + (iterations - 1) * (C["branch_taken"] - 1) + C["lm_access"])


def test_word_loop_reads_past_a_short_packet_end():
    # 8 words need 32 bytes; reading the packet buffer past the packet end is not a fault (as on the
    # NIC: the verifier's bounds checks are the JIT's job), the bytes there are the buffer's zeros.
    pkt = b"\x01" * 20
    r = simulate(load("word_loop.s"), pkt)
    check_totals(r)
    padded = pkt + bytes(12)
    words = [int.from_bytes(padded[4 * i:4 * i + 4], "little") for i in range(8)]
    assert r.r0 == (words[3] << 32) | sum(words) and r.packet == pkt

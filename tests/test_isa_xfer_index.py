"""``*$index``: the read transfer register the T_INDEX CSR names, in both simulators.

A T_INDEX write reaches the operand 3 cycles later; a read sooner waits (charged to XFER).
"""

from __future__ import annotations

import pytest

from nfpjit.isa.asm import assemble
from nfpjit.isa.image import image_from_asm
from nfpjit.isa.sim import Resource, compiled, simulate
from nfpjit.isa.sim.cycles import T_INDEX_DELAY

from tests.test_sim_compiled import differences

PACKET = bytes(range(64))


def _image(gap: int, index: int):
    """Fill $in0..$in7 with packet words 0..7, point T_INDEX at ``index``, wait ``gap`` nops, read it."""
    nops = "\n".join("    nop" for _ in range(gap))
    return image_from_asm(assemble(f"""
    csr_rd ab0, pkt_addr
    mem_read.ctm $in0, a0, 0, 8, ctx_swap
    immed ab1, {index}
    csr_wr t_index, b1
{nops}
    mov ab0, *$index
    csr_rd ab3, t_index
    add ab0, a0, b3
    immed ab1, 0
    halt 2
""", "t.s"))


@pytest.mark.parametrize("gap", range(5))
@pytest.mark.parametrize("index", [0, 5, 7, 32 + 3])
def test_reads_the_named_register_and_waits_out_the_delay(gap, index):
    image = _image(gap, index)
    ref = simulate(image, PACKET)
    word = int.from_bytes(PACKET[4 * (index & 31):4 * (index & 31) + 4], "little")
    assert ref.fault is None and ref.r0 == (word + index) & 0xFFFF_FFFF
    assert ref.breakdown[Resource.XFER].cycles == max(0, T_INDEX_DELAY - gap)
    got = compiled.simulate(image, PACKET)
    assert not differences(ref, got)


def test_the_wait_makes_the_run_longer_by_the_cycles_left():
    cycles = [simulate(_image(gap, 2), PACKET).cycles for gap in range(5)]
    # each nop costs a cycle; until the delay is over it only replaces a cycle of waiting
    assert cycles[0] == cycles[1] == cycles[2] == cycles[3] and cycles[4] == cycles[3] + 1

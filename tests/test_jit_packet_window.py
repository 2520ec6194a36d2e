"""Narrow packet accesses at variable offsets near the end of a full CTM buffer (7936-byte frames).

A 1- or 2-byte access reads (and, for a store, rewrites) a whole word: the one ending with it when
the access is at least 3 bytes into the packet, else the one starting with it.  When the analysis
cannot tell which, the lowering picks at run time, so neither word leaves the 8 KiB buffer.
"""

from __future__ import annotations

import pytest

from nfpjit.driver import compile, simulate_image, to_run_result
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.result import PacketIn
from nfpjit.isa.sim.memory import MAX_PACKET
from nfpjit.testing import compare_results


def _program(access: str) -> str:
    """r4 = data + (some offset the program computes from the packet length), then ``access``."""
    return f""".type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r2
    sub r3, r1
    sub r3, {{back}}
    and r3, 0x1fff
    mov r4, r1
    add r4, r3
    mov r5, r4
    add r5, 2
    jgt r5, r2, out
    {access}
    mov r0, 2
    exit
out:
    mov r0, 1
    exit
"""


ACCESSES = {
    "load_byte": "ldxb r0, [r4+0]\n    and r0, 1\n    add r0, 1",
    "load_half": "ldxh r0, [r4+0]\n    and r0, 1\n    add r0, 1",
    "store_byte": "stb [r4+1], 0x5a",
    "store_half": "sth [r4+0], 0x1234",
}


def _frames():
    full = bytes((7 * i + 3) & 0xFF for i in range(MAX_PACKET))
    return [full, full[:7935], full[:64], full[:16], full[:3], full[:2]]


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(ACCESSES))
@pytest.mark.parametrize("back", [2, 3, 64])
def test_no_fault_at_the_end_of_a_full_buffer(name, level, back):
    program = assemble(_program(ACCESSES[name]).replace("{back}", str(back)))
    image = compile(program, opt_level=level, profile="permissive").image
    for frame in _frames():
        pin = PacketIn(frame)
        want = run(program, pin, tailroom=0)
        got = to_run_result(simulate_image(image, pin))
        problems = compare_results(want, got)
        assert not problems, (len(frame), problems)


@pytest.mark.parametrize("delta", [-4, 2, 16])
@pytest.mark.parametrize("name", sorted(ACCESSES))
def test_after_adjust_head_the_window_is_chosen_at_run_time(name, delta):
    """After bpf_xdp_adjust_head ``data`` may sit anywhere: only a run-time choice is safe."""
    head = f""".type xdp
    mov r6, r1
    mov r2, {delta}
    call 44
    mov r1, r6
"""
    program = assemble(head + _program(ACCESSES[name]).replace(".type xdp\n", "").replace("{back}", "2"))
    for level in (0, 2):
        image = compile(program, opt_level=level, profile="permissive").image
        for frame in _frames():
            pin = PacketIn(frame)
            problems = compare_results(run(program, pin, tailroom=0), to_run_result(simulate_image(image, pin)))
            assert not problems, (level, len(frame), problems)

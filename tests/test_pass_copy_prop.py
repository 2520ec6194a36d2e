"""``copy-prop``: golden before/after listings and the differential check (-O2 with and without it)."""

from __future__ import annotations

import pytest

from test_pass_machine import differential_case, golden_case

CASES = {
    # mov64 r3, r1; add64 r3, 14: the add reads r1 directly
    "copy_prop_pointer_copy": (
        """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    mov r0, 2
    exit
out:
    mov r0, 1
    exit
""",
        "",
        ["add ab6, a2, 14", "sub --, a6, b4"],
        ["add ab6, a6, 14"],
    ),
    # be32 of a copy, in a scratch register, then copied back: the byte swap reads the loaded word
    # where the load left it (forward, $in12) and writes the destination directly (coalesced)
    "copy_prop_coalesce": (
        """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 4
    jgt r3, r2, out
    ldxw r5, [r1+0]
    mov r4, r5
    be32 r4
    add r4, r5
    mov r0, r4
    and r0, 3
    exit
out:
    mov r0, 1
    exit
""",
        "",
        ["ld_field ab0, 0b1010, $in12, 8, clear", "ld_field ab0, 0b0101, $in12, 24", "add ab0, a0, $in12",
         "and ab0, a0, 3"],
        ["mov ab8, b22", "mov ab0, b8"],
    ),
    # a map value incremented in place: the add writes the transfer registers the store sends
    "copy_prop_into_xfer": (
        """.type xdp
.map counts hash key=4 value=8 entries=4
    mov r6, 1
    stxw [r10-4], r6
    mov r2, r10
    add r2, -4
    lddw r1, map:counts
    call 1
    jeq r0, 0, out
    ldxdw r1, [r0+0]
    add r1, 1
    stxdw [r0+0], r1
out:
    mov r0, 2
    exit
""",
        "",
        ["add $out0, $in0, 1", "addc $out1, $in1, 0", "mem_write.emem $out0"],
        ["mov $out0, b2", "mov $out1, b3"],
    ),
}


#: the coalescing case asks for coalescing before the forward rewrites (the default order does the
#: forward rewrites first, which here keeps the scratch register alive)
SPELLING = {"copy_prop_coalesce": "copy-prop{coalesce_first=true}"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, before, checks, forbidden = CASES[name]
    golden_case(golden, name, source, before, SPELLING.get(name, "copy-prop"), checks, forbidden)


def test_differential_generated():
    differential_case("copy-prop", examples=25, seed=12)


@pytest.mark.slow
def test_differential_corpus():
    differential_case("copy-prop", examples=0, corpus=True)


def test_two_coalescings_never_rewrite_one_instruction():
    """Found by the feature-program run: ``r3 = (s8)v[0]; r3 s/= r3 & 3`` puts both words of r3 into
    the divide routine's argument registers; coalescing x -> a22 and x+1 -> a23 both rewrote
    ``alu_shf ab7, --, mov, b6, asr 31`` and the second edit dropped the first (the high word read a
    register nobody had written)."""
    from nfpjit.driver import compile, simulate_image, to_run_result
    from nfpjit.ebpf.asm import assemble
    from nfpjit.ebpf.interp import run
    from nfpjit.ebpf.maps import MapStore
    from nfpjit.ebpf.result import PacketIn
    from nfpjit.testing import compare_results

    program = assemble(""".type xdp
.map glb array key=4 value=16 entries=1
    mov r6, r1
    mov r2, 0
    lddw r1, map_value:glb+0
    xaddw [r1+0], r2
    ldxsb r3, [r1+0]
    mov r0, r3
    and r0, 3
    sdiv r3, r0
    stxb [r1+0], r3
    mov r0, 2
    exit
""")
    for first in (1, 2, 3, 0x7F, 0x81, 0xFE):
        value = bytes([first]) + bytes(range(2, 17))
        store = MapStore.from_program(program)
        store.by_name("glb").update(bytes(4), value, 0)
        maps_in = {"glb": {bytes(4): value}}
        want = run(program, PacketIn(bytes(64)), maps=store)
        image = compile(program, opt_level=2).image
        got = to_run_result(simulate_image(image, PacketIn(bytes(64)), maps_in=maps_in))
        assert not compare_results(want, got), (first, compare_results(want, got))

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

"""``imm-materialise``: golden before/after listings and the differential check (-O2 with and without it)."""

from __future__ import annotations

import pytest

from test_pass_machine import differential_case, golden_case

CASES = {
    # an LM pointer from an immediate, 0x5000 reused from r5's register, 0x12345680 as r6 + 8
    "imm_materialise_forms": (
        """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    ldxh r4, [r1+12]
    mov r5, 0x5000
    stxw [r10-4], r5
    jeq r4, 0x5000, out
    lddw r6, 0x12345678
    lddw r7, 0x12345680
    stxw [r10-8], r6
    stxw [r10-12], r7
    mov r0, 2
    exit
out:
    mov r0, 1
    exit
""",
        "copy-prop,dce,const-fold",
        ["csr_wr active_lm_addr_0, 84", "sub --, a8, b10", "immed ab12, 0x1234, byte=2, width=hi",
         "add ab14, a12, 8", "csr_wr active_lm_addr_0, 80"],
        ["csr_wr active_lm_addr_0, b22", "immed ab14, 0x1234"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, before, checks, forbidden = CASES[name]
    golden_case(golden, name, source, before, "imm-materialise", checks, forbidden)


def test_differential_generated():
    differential_case("imm-materialise", examples=25, seed=14)


@pytest.mark.slow
def test_differential_corpus():
    differential_case("imm-materialise", examples=0, corpus=True)

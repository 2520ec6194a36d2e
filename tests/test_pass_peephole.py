"""The real JIT's peepholes ``neg-add-sub``, ``ld-mask``, ``ld-shift``, ``reg-init``: golden listings, differential checks."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfpjit.driver import compile
from nfpjit.ebpf.asm import assemble

from test_jit_differential import CRAFTED, differential
from test_pass_machine import differential_case, golden_case

_PEEP = """.type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    ldxb r0, [r1+12]
    and32 r0, 0xff
    ldxh r4, [r1+6]
    lsh32 r4, 16
    rsh32 r4, 16
    add32 r0, r4
    mov32 r5, -5
    add32 r0, r5
    jlt r0, r5, out
    exit
out:
    mov r0, 1
    exit
"""
_BEFORE = "copy-prop,dce,const-fold,imm-materialise"

CASES = {
    # r0 += -5 (in a register) -> sub 5; the 64-bit compare with -5 -> add 5
    "neg_add_sub": (_PEEP, _BEFORE, "neg-add-sub", ["sub ab0, a0, 5", "add --, a0, 5", "br.lo L"],
                    ["add ab0, a0, b10", "sub --, a0, b10"]),
    # a byte load's and 0xff is a mov
    "ld_mask": (_PEEP, _BEFORE + ",neg-add-sub", "ld-mask", ["mov ab0, a0"], ["and ab0, a0, 255"]),
    # a half-word load's (x << 16) >> 16 is x: the in-place shl goes, the shr is a mov
    # (the byte-field rewrite off, to show the pair rule alone)
    "ld_shift": (_PEEP, _BEFORE + ",neg-add-sub,ld-mask", "ld-shift{bytes=false}",
                 ["alu_shf ab8, --, mov, $in", "mov ab8, b8", "add ab0, a0, b8"], ["b8, shl 16", "b8, shr 16"]),
    # a little-endian half word assembled from two byte loads (clang's unaligned load): one ld_field
    "ld_shift_bytes": (""".type xdp
    ldxw r2, [r1+4]
    ldxw r1, [r1+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    ldxb r4, [r1+13]
    lsh r4, 8
    ldxb r5, [r1+12]
    or r4, r5
    mov r0, r4
    and r0, 3
    exit
out:
    mov r0, 1
    exit
""", _BEFORE + ",neg-add-sub,ld-mask", "ld-shift", ["ld_field ab8, 0b0011, $in{t}, 0, clear"], ["or ab8"]),
    # the context pointer copied before anything is written: r6 = r1 goes (shown on the -O0
    # lowering: from -O1 on the lowering does not copy what is never read)
    "reg_init": (""".type xdp
    mov r6, r1
    mov r7, r6
    ldxw r2, [r6+4]
    ldxw r1, [r7+0]
    mov r3, r1
    add r3, 14
    jgt r3, r2, out
    mov r0, 2
    exit
out:
    mov r0, 1
    exit
""", "", "reg-init", ["csr_rd ab2, pkt_addr"], ["mov ab12, b2", "mov ab13, b3", "mov ab14, b12"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, before, the_pass, checks, forbidden = CASES[name]
    golden_case(golden, name, source, before, the_pass, checks, forbidden, lower="" if name == "reg_init" else None)


@pytest.mark.parametrize("name,seed", [("neg-add-sub", 15), ("ld-mask", 16), ("ld-shift", 17), ("reg-init", 18)])
def test_differential_generated(name, seed):
    differential_case(name, examples=15, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["neg-add-sub", "ld-mask", "ld-shift", "reg-init"])
def test_differential_corpus(name):
    differential_case(name, examples=0, corpus=True)


# -- byte assembly against the interpreter --------------------------------------------------------------

_OPS = st.one_of(
    st.tuples(st.just("ldxb"), st.sampled_from([3, 4, 5, 6]), st.integers(0, 15)),
    st.tuples(st.just("ldxh"), st.sampled_from([3, 4, 5, 6]), st.integers(0, 14)),
    st.tuples(st.sampled_from(["lsh32", "rsh32", "lsh", "rsh"]), st.sampled_from([3, 4, 5, 6]),
              st.sampled_from([8, 16, 24, 4])),
    st.tuples(st.sampled_from(["or", "or32"]), st.sampled_from([3, 4, 5, 6]), st.sampled_from([3, 4, 5, 6])),
    st.tuples(st.sampled_from(["and", "and32"]), st.sampled_from([3, 4, 5, 6]),
              st.sampled_from([0xFF, 0xFFFF, 0xFF00, 0xFF00FF, 0xF0])),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OPS, min_size=2, max_size=10))
def test_byte_assembly_matches_the_interpreter(ops):
    """Byte loads, whole-byte shifts, ors and masks: -O2 (ld-shift's byte fields included) = the interpreter."""
    lines = [".type xdp", "    ldxw r2, [r1+4]", "    ldxw r1, [r1+0]", "    mov r3, r1", "    add r3, 16",
             "    jgt r3, r2, out", "    mov r3, 0", "    mov r4, 0", "    mov r5, 0", "    mov r6, 0"]
    for op, d, x in ops:
        if op in ("ldxb", "ldxh"):
            lines.append(f"    {op} r{d}, [r1+{x}]")
        elif op.startswith("or"):
            lines.append(f"    {op} r{d}, r{x}")
        else:
            lines.append(f"    {op} r{d}, {x}")
    lines += ["    mov r0, r3", "    xor r0, r4", "    lsh r0, 1", "    add r0, r5", "    xor r0, r6", "    exit",
              "out:", "    mov r0, 1", "    exit"]
    program = assemble("\n".join(lines) + "\n")
    image = compile(program, profile="permissive", verify_each=True).image
    problems = differential(program, image, CRAFTED[:12])
    assert not problems, "\n".join(problems)

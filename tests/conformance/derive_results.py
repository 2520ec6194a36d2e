"""How the expected results of the .data files here were derived: Python arithmetic following RFC 9669.

Each entry is (name, comment, assembly, memory hex, expected) where ``expected`` is computed
below with plain integer arithmetic and the fixed-width helpers of ``nfpjit.bits`` -- never by
running an eBPF engine.  ``python tests/conformance/derive_results.py`` rewrites the files; review
the diff.  Runner conventions (r1 = memory, r2 = its length) are in nfpjit/testing/conformance.py.
"""

from __future__ import annotations

from pathlib import Path

from nfpjit.bits import bswap, s8, s32, s64, sdiv, smod, u16, u32, u64, udiv, umod

M64 = (1 << 64) - 1
MEM8 = "11 22 33 44 55 66 77 88"
MEM16 = "11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 80"

CASES = [
    # -- ALU64 ---------------------------------------------------------------------
    ("add64-wrap", "64-bit add wraps modulo 2^64.",
     "lddw %r0, 0xffffffffffffffff\nadd %r0, 2\nexit", "", u64(M64 + 2)),
    ("sub64-imm-sign-extends", "ALU64 immediates are sign-extended from 32 bits.",
     "mov %r0, 0\nsub %r0, 1\nexit", "", u64(0 - 1)),
    ("mul64-reg", "64-bit multiply keeps the low 64 bits.",
     "lddw %r0, 0x100000001\nmov %r1, 0x10\nmul %r0, %r1\nexit", "", u64(0x100000001 * 0x10)),
    ("mul64-overflow", "The product's high bits are dropped.",
     "lddw %r0, 0x8000000000000001\nmov %r1, 6\nmul %r0, %r1\nexit", "", u64(0x8000000000000001 * 6)),
    ("bitwise64", "or/and/xor with sign-extended immediates and registers.",
     "mov %r0, 0x0f0\nor %r0, -0x10000\nmov %r1, 0x7ff0\nand %r0, %r1\nxor %r0, -1\nexit", "",
     u64(~((0x0F0 | u64(-0x10000)) & 0x7FF0))),
    ("neg64", "neg is 0 - dst.", "mov %r0, 5\nneg %r0\nexit", "", u64(-5)),
    ("mov64-imm-sign-extends", "mov with a negative immediate fills the upper half.",
     "mov %r0, -2\nexit", "", u64(-2)),
    # -- ALU32 ---------------------------------------------------------------------
    ("mov32-imm-zero-extends", "mov32 writes 32 bits and zeroes the upper half.",
     "mov32 %r0, -2\nexit", "", u32(-2)),
    ("add32-wrap-zero-extends", "add32 wraps at 2^32 and clears bits 32-63.",
     "lddw %r0, 0x1ffffffff\nadd32 %r0, 1\nexit", "", u32(0xFFFFFFFF + 1)),
    ("sub32-below-zero", "sub32 below zero wraps to 0xffffffff, not a 64-bit -1.",
     "mov32 %r0, 0\nsub32 %r0, 1\nexit", "", u32(-1)),
    ("mul32-truncates", "mul32 multiplies the low halves.",
     "lddw %r0, 0x123456789\nmul32 %r0, 0x10\nexit", "", u32(0x23456789 * 0x10)),
    ("neg32", "neg32 of 1 is 0xffffffff, zero-extended.", "mov %r0, 1\nneg32 %r0\nexit", "", u32(-1)),
    ("alu32-ignores-upper-source-bits", "A register source contributes only its low 32 bits.",
     "lddw %r1, 0xdeadbeef00000003\nmov32 %r0, 4\nadd32 %r0, %r1\nexit", "", 7),
    # -- shifts ----------------------------------------------------------------------
    ("lsh64-reg-amount-masked", "64-bit shift amounts are taken modulo 64.",
     "mov %r0, 1\nmov %r1, 65\nlsh %r0, %r1\nexit", "", u64(1 << (65 & 63))),
    ("rsh32-reg-amount-masked", "32-bit shift amounts are taken modulo 32.",
     "mov32 %r0, 0x80000000\nmov %r1, 33\nrsh32 %r0, %r1\nexit", "", 0x80000000 >> (33 & 31)),
    ("rsh64-is-logical", "rsh shifts in zeros.",
     "lddw %r0, 0x8000000000000000\nrsh %r0, 63\nexit", "", 1),
    ("arsh64-is-arithmetic", "arsh copies the sign bit.",
     "lddw %r0, 0x8000000000000000\narsh %r0, 63\nexit", "", u64(s64(1 << 63) >> 63)),
    ("arsh32-zero-extends", "arsh32 works on the signed low half, then zero-extends.",
     "lddw %r0, 0x1234567880000000\narsh32 %r0, 4\nexit", "", u32(s32(0x80000000) >> 4)),
    # -- division and remainder --------------------------------------------------------
    ("div64-by-zero-reg", "Unsigned division by zero gives 0.",
     "mov %r0, 10\nmov %r1, 0\ndiv %r0, %r1\nexit", "", udiv(10, 0, 64)),
    ("mod64-by-zero-reg", "Unsigned remainder by zero leaves the dividend.",
     "mov %r0, 10\nmov %r1, 0\nmod %r0, %r1\nexit", "", umod(10, 0, 64)),
    ("div32-by-zero-reg", "32-bit division by zero gives 0 (upper half cleared).",
     "lddw %r0, 0x10000000a\nmov %r1, 0\ndiv32 %r0, %r1\nexit", "", udiv(0x10000000A, 0, 32)),
    ("mod32-by-zero-reg", "32-bit remainder by zero leaves the 32-bit dividend, zero-extended.",
     "lddw %r0, 0x10000000a\nmov32 %r1, 0\nmod32 %r0, %r1\nexit", "", umod(0x10000000A, 0, 32)),
    ("div64-imm-negative-is-unsigned", "div's immediate is sign-extended, then divided unsigned.",
     "lddw %r0, 0xffffffffffffffff\ndiv %r0, -1\nexit", "", udiv(M64, u64(-1), 64)),
    ("div32-imm-negative", "div32 by -1 divides by 0xffffffff.",
     "mov32 %r0, 0xfffffffe\ndiv32 %r0, -1\nexit", "", udiv(0xFFFFFFFE, u32(-1), 32)),
    ("mod64-large", "Unsigned remainder on values above 2^63.",
     "lddw %r0, 0xfffffffffffffff0\nmov %r1, 0x1000001\nmod %r0, %r1\nexit", "",
     umod(0xFFFFFFFFFFFFFFF0, 0x1000001, 64)),
    ("sdiv64-intmin-by-minus-one", "INT64_MIN / -1 wraps to INT64_MIN.",
     "lddw %r0, 0x8000000000000000\nmov %r1, -1\nsdiv %r0, %r1\nexit", "", sdiv(1 << 63, M64, 64)),
    ("smod64-intmin-by-minus-one", "INT64_MIN % -1 is 0.",
     "lddw %r0, 0x8000000000000000\nmov %r1, -1\nsmod %r0, %r1\nexit", "", smod(1 << 63, M64, 64)),
    ("sdiv32-intmin-by-minus-one", "INT32_MIN / -1 wraps to INT32_MIN (zero-extended).",
     "mov32 %r0, 0x80000000\nsdiv32 %r0, -1\nexit", "", sdiv(0x80000000, u32(-1), 32)),
    ("sdiv64-truncates-toward-zero", "-7 / 2 is -3.", "mov %r0, -7\nsdiv %r0, 2\nexit", "",
     sdiv(u64(-7), 2, 64)),
    ("smod64-sign-of-dividend", "-7 % 2 is -1; 7 % -2 is 1; both summed.",
     "mov %r0, -7\nsmod %r0, 2\nmov %r1, 7\nsmod %r1, -2\nadd %r0, %r1\nexit", "",
     u64(smod(u64(-7), 2, 64) + smod(7, u64(-2), 64))),
    ("sdiv64-by-zero-reg", "Signed division by zero gives 0.",
     "mov %r0, -7\nmov %r1, 0\nsdiv %r0, %r1\nexit", "", sdiv(u64(-7), 0, 64)),
    ("smod32-by-zero-reg", "Signed 32-bit remainder by zero leaves the 32-bit dividend.",
     "mov32 %r0, -7\nmov %r1, 0\nsmod32 %r0, %r1\nexit", "", smod(u32(-7), 0, 32)),
    # -- byte swaps ---------------------------------------------------------------------
    ("be16-truncates", "be16 on a little-endian machine swaps and keeps 16 bits.",
     "lddw %r0, 0x1122334455667788\nbe16 %r0\nexit", "", bswap(0x1122334455667788, 16)),
    ("le32-truncates", "le32 on a little-endian machine only truncates to 32 bits.",
     "lddw %r0, 0x1122334455667788\nle32 %r0\nexit", "", u32(0x1122334455667788)),
    ("be64", "be64 reverses all eight bytes.",
     "lddw %r0, 0x1122334455667788\nbe64 %r0\nexit", "", bswap(0x1122334455667788, 64)),
    ("bswap16-v4", "bswap16 (ALU64 class) swaps unconditionally and zero-extends.",
     "lddw %r0, 0x1122334455667788\nbswap16 %r0\nexit", "", bswap(0x1122334455667788, 16)),
    ("bswap32-v4", "bswap32 swaps the low word.",
     "lddw %r0, 0x1122334455667788\nbswap32 %r0\nexit", "", bswap(0x1122334455667788, 32)),
    # -- v4 moves ------------------------------------------------------------------------
    ("movsx-all", "movsx864 + movsx1664 + movsx3264 + movsx832 + movsx1632 of 0x...8081ff80.",
     "lddw %r1, 0x7fffffff8081ff80\nmovsx864 %r0, %r1\nmovsx1664 %r2, %r1\nadd %r0, %r2\n"
     "movsx3264 %r2, %r1\nadd %r0, %r2\nmovsx832 %r2, %r1\nadd %r0, %r2\nmovsx1632 %r2, %r1\nadd %r0, %r2\nexit",
     "", u64(u64(s8(0x80)) + u64(-0x80) + u64(s32(0x8081FF80)) + u32(s8(0x80)) + u32(-0x80))),
    # -- memory --------------------------------------------------------------------------
    ("ldxdw-little-endian", "Loads are little-endian.", "ldxdw %r0, [%r1]\nexit", MEM8, 0x8877665544332211),
    ("ldxh-offset", "ldxh at offset 2.", "ldxh %r0, [%r1+2]\nexit", MEM8, 0x4433),
    ("ldxsb-sign-extends", "ldxsb sign-extends the byte 0x80 (v4).", "ldxsb %r0, [%r1+15]\nexit", MEM16,
     u64(s8(0x80))),
    ("ldxsw-sign-extends", "ldxsw sign-extends 0xccbbaa99.", "ldxsw %r0, [%r1+8]\nexit", MEM16,
     u64(s32(0xCCBBAA99))),
    ("stx-then-ldx", "stxw writes four bytes; ldxdw reads them back with their neighbours.",
     "mov32 %r3, 0xdeadbeef\nstxw [%r1+4], %r3\nldxdw %r0, [%r1]\nexit", MEM8, 0xDEADBEEF44332211),
    ("stdw-imm-sign-extends", "stdw's 32-bit immediate is sign-extended to 64 bits.",
     "stdw [%r1], -2\nldxdw %r0, [%r1]\nexit", MEM8, u64(-2)),
    ("sth-keeps-neighbours", "sth writes exactly two bytes (little-endian) and leaves the others.",
     "sth [%r1+2], 0x1234\nldxw %r0, [%r1]\nexit", MEM8, int.from_bytes(bytes([0x11, 0x22, 0x34, 0x12]), "little")),
    ("length-in-r2", "r2 holds the length of the memory block.", "mov %r0, %r2\nexit", MEM16, 16),
    ("stack-round-trip", "r10 points past a writable stack.",
     "lddw %r1, 0x0102030405060708\nstxdw [%r10-16], %r1\nldxb %r0, [%r10-9]\nexit", "", 0x01),
    # -- jumps ---------------------------------------------------------------------------
    ("jlt-unsigned-vs-jslt-signed", "-1 is large unsigned but negative signed.",
     "mov %r0, 0\nmov %r1, -1\njlt %r1, 5, +1\nor %r0, 1\njslt %r1, 5, +1\nor %r0, 2\nexit", "", 1),
    ("jset", "jset branches when dst & src is non-zero.",
     "mov %r0, 1\nmov %r1, 0x10\njset %r1, 0x0f, +1\nadd %r0, 2\njset %r1, 0x30, +1\nadd %r0, 4\nexit", "", 3),
    ("jeq32-ignores-upper-bits", "jeq32 compares only the low 32 bits.",
     "mov %r0, 0\nlddw %r1, 0x100000005\njeq32 %r1, 5, +1\nexit\nmov %r0, 1\njeq %r1, 5, +1\nexit\nmov %r0, 2\nexit",
     "", 1),
    ("jsgt32-signed-low-half", "0x00000000ffffffff is -1 as s32, so it is not greater than 0.",
     "mov %r0, 0\nmov32 %r1, -1\njsgt32 %r1, 0, +1\nmov %r0, 7\nexit", "", 7),
    ("loop-backward-jump", "Sum 1..10 with a backward conditional jump.",
     "mov %r0, 0\nmov %r1, 1\nloop:\nadd %r0, %r1\nadd %r1, 1\njle %r1, 10, loop\nexit", "", sum(range(1, 11))),
    ("gotol-far", "ja32 (gotol) with its offset in imm (r1 is 0: the jeq only keeps the exit reachable).",
     "mov %r0, 1\njeq %r1, 1, +1\nja32 +1\nexit\nmov %r0, 2\nexit", "", 2),
    # -- calls ---------------------------------------------------------------------------
    ("call-local-preserves-r6-r9", "A BPF-to-BPF call returns in r0 and keeps the caller's r6-r9.",
     "mov %r6, 10\nmov %r1, 3\ncall fn\nadd %r0, %r6\nexit\nfn:\nmov %r6, 99\nmov %r0, %r1\nmul %r0, 5\nexit",
     "", 3 * 5 + 10),
    ("call-local-nested-stack", "Each call frame has its own stack.",
     "stdw [%r10-8], 1\ncall fn\nldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit\n"
     "fn:\nstdw [%r10-8], 40\nldxdw %r0, [%r10-8]\nadd %r0, 1\nexit", "", 40 + 1 + 1),
    # -- atomics -------------------------------------------------------------------------
    ("atomic-add-and-fetch", "lock add then lock fetch add on memory.",
     "mov %r2, 5\nlock add [%r1+0], %r2\nmov %r3, 1\nlock fetch add [%r1+0], %r3\nldxdw %r0, [%r1]\nadd %r0, %r3\nexit",
     MEM8, u64(0x8877665544332211 + 5 + 1) + 0x8877665544332211 + 5 & M64),
    ("atomic32-fetch-or-xor-and", "32-bit fetch forms zero-extend the old value.",
     "lddw %r2, 0xff000000000000f0\nlock fetch or32 [%r1+0], %r2\nmov %r3, 0xff\nlock fetch xor32 [%r1+0], %r3\n"
     "mov %r4, 0x0f\nlock fetch and32 [%r1+0], %r4\nldxw %r0, [%r1]\nadd %r0, %r2\nadd %r0, %r3\nadd %r0, %r4\nexit",
     MEM8,
     (lambda m0: (lambda m1: (lambda m2: (lambda m3: u64(m3 + m0 + m1 + m2))(m2 & 0x0F))(m1 ^ 0xFF))(m0 | 0xF0))(0x44332211)),
    ("atomic-xchg32", "xchg32 swaps the low word and zero-extends the old one.",
     "lddw %r2, 0x77777777aaaaaaaa\nlock xchg32 [%r1+4], %r2\nldxdw %r0, [%r1]\nxor %r0, %r2\nexit", MEM8,
     0xAAAAAAAA44332211 ^ 0x88776655),
    ("atomic-cmpxchg-hit-and-miss", "cmpxchg stores when r0 matches and always returns the old value in r0.",
     "ldxdw %r0, [%r1]\nmov %r2, 7\nlock cmpxchg [%r1+0], %r2\nmov %r6, %r0\nmov %r0, 1\nmov %r3, 9\n"
     "lock cmpxchg [%r1+0], %r3\nadd %r0, %r6\nexit", MEM8, u64(7 + 0x8877665544332211)),
    # -- errors ----------------------------------------------------------------------------
    ("error-load-out-of-bounds", "Reading past the memory block is a fault.",
     "ldxw %r0, [%r1+8]\nexit", MEM8, "error: bound|range|invalid|access|memory"),
    ("error-store-to-null", "With no memory block r1 is 0; storing through it is a fault.",
     "stw [%r1], 1\nmov %r0, 0\nexit", "", "error: null|bound|range|invalid|access|memory"),
]


def write(directory: Path) -> None:
    for name, comment, asm, mem, expected in CASES:
        lines = [f"# {comment}", "-- asm", *asm.split("\n")]
        if mem:
            lines += ["-- mem", mem]
        if isinstance(expected, str):
            lines += ["-- error", expected.removeprefix("error: ")]
        else:
            lines += ["-- result", f"0x{expected:x}"]
        (directory / f"{name}.data").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write(Path(__file__).parent)

"""Fixed-width integer arithmetic shared by the interpreter, simulator, analysis and constant folding.

Python integers are unbounded; everything that models a machine register goes
through these helpers so that wrap-around and sign handling live in one place.
"""

from __future__ import annotations

MASK8 = 0xFF
MASK16 = 0xFFFF
MASK32 = 0xFFFF_FFFF
MASK64 = 0xFFFF_FFFF_FFFF_FFFF


def mask(bits: int) -> int:
    return (1 << bits) - 1


def trunc(value: int, bits: int) -> int:
    """The low ``bits`` bits of ``value`` as an unsigned number."""
    return value & ((1 << bits) - 1)


def sext(value: int, bits: int) -> int:
    """Interpret the low ``bits`` bits of ``value`` as two's complement (a Python int)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def u8(v: int) -> int:
    return v & MASK8


def u16(v: int) -> int:
    return v & MASK16


def u32(v: int) -> int:
    return v & MASK32


def u64(v: int) -> int:
    return v & MASK64


def s8(v: int) -> int:
    return sext(v, 8)


def s16(v: int) -> int:
    return sext(v, 16)


def s32(v: int) -> int:
    return sext(v, 32)


def s64(v: int) -> int:
    return sext(v, 64)


def lo32(v: int) -> int:
    return v & MASK32


def hi32(v: int) -> int:
    return (v >> 32) & MASK32


def join64(lo: int, hi: int) -> int:
    return ((hi & MASK32) << 32) | (lo & MASK32)


def bswap(value: int, bits: int) -> int:
    """Reverse the byte order of the low ``bits`` bits (16, 32 or 64)."""
    nbytes = bits // 8
    return int.from_bytes(trunc(value, bits).to_bytes(nbytes, "little"), "big")


def rotr32(value: int, amount: int) -> int:
    amount &= 31
    value &= MASK32
    return ((value >> amount) | (value << (32 - amount))) & MASK32


def rotl32(value: int, amount: int) -> int:
    return rotr32(value, 32 - (amount & 31))


# -- division with eBPF's rules (RFC 9669 §4.1): x / 0 == 0, x % 0 == x ---------

def udiv(a: int, b: int, bits: int) -> int:
    a, b = trunc(a, bits), trunc(b, bits)
    return 0 if b == 0 else a // b


def umod(a: int, b: int, bits: int) -> int:
    a, b = trunc(a, bits), trunc(b, bits)
    return a if b == 0 else a % b


def sdiv(a: int, b: int, bits: int) -> int:
    """Signed division truncating toward zero; INT_MIN / -1 wraps to INT_MIN."""
    a, b = sext(a, bits), sext(b, bits)
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return trunc(-q if (a < 0) != (b < 0) else q, bits)


def smod(a: int, b: int, bits: int) -> int:
    """Signed remainder with the sign of the dividend; x % 0 == x."""
    a, b = sext(a, bits), sext(b, bits)
    if b == 0:
        return trunc(a, bits)
    r = abs(a) % abs(b)
    return trunc(-r if a < 0 else r, bits)


# -- Internet checksum arithmetic (the kernel's csum_partial on x86-64, shared by the interpreter's helpers
#    and the NIC firmware's csum_diff) ---------

def csum_partial(data: bytes, seed: int) -> int:
    """x86-64 csum_partial: the 32-bit ones'-complement sum (end-around carry) of little-endian words;
    a tail of 1..3 bytes counts as one word padded with zeros (its load_unaligned_zeropad)."""
    total = seed & MASK32
    for i in range(0, len(data), 4):
        total += int.from_bytes(data[i : i + 4], "little")
        total = (total & MASK32) + (total >> 32)
    return total


def csum_add(a: int, b: int) -> int:
    total = (a & MASK32) + (b & MASK32)
    return (total & MASK32) + (total >> 32)


def csum_from32to16(x: int) -> int:
    """Fold a 32-bit partial checksum to 16 bits (the kernel's csum_from32to16)."""
    x &= MASK32
    x = (x + (((x >> 16) | (x << 16)) & MASK32)) & MASK32
    return x >> 16


def csum_diff_value(frm: bytes, to: bytes, seed: int) -> int:
    """bpf_csum_diff's result (Linux >= 6.12: folded to 16 bits; separate push / pull / diff paths; the
    kernel this was measured on, 6.18, takes any sizes, a tail that is no whole word included)."""
    ret = seed & MASK32
    if frm and to:
        ret = csum_add(csum_partial(to, ret), ~csum_partial(frm, 0))
    elif to:
        ret = csum_partial(to, ret)
    elif frm:
        ret = ~csum_partial(frm, ~ret & MASK32) & MASK32
    return csum_from32to16(ret)


def csum_fold(x: int) -> int:
    """Fold a 32-bit partial sum to the complemented 16-bit checksum (x86-64 csum_fold)."""
    x &= MASK32
    s = (x & 0xFFFF_0000) + ((x << 16) & MASK32)
    s = ((s & MASK32) + 0xFFFF + (s >> 32)) & MASK32
    return (~s & MASK32) >> 16


def csum16_add(a: int, b: int) -> int:
    res = (a + b) & 0xFFFF
    return (res + (res < (b & 0xFFFF))) & 0xFFFF


def csum_replace(old_sum: int, frm: int, to: int, size: int) -> int:
    """The kernel's csum_replace_by_diff (size 0), csum_replace2 (2) and csum_replace4 (4) on a 16-bit field."""
    if size == 2:
        return ~csum16_add(csum16_add(~old_sum & 0xFFFF, ~frm & 0xFFFF), to & 0xFFFF) & 0xFFFF
    unfolded = ~old_sum & MASK32  # ~csum_unfold(sum)
    if size == 4:
        return csum_fold(csum_add(csum_add(unfolded, ~frm & MASK32), to & MASK32))
    return csum_fold(csum_add(to & MASK32, unfolded))

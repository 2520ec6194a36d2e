"""Mutators: byte-level, ELF-structure-aware and token-level text mutations.

Every mutator takes a :class:`random.Random` (so a campaign is reproducible from its seed), the
input to mutate and the pool of seeds (for splices), and returns new bytes.  They never raise on
odd input: an ELF mutator given something that is no longer an ELF file falls back to bytes.

- :func:`mutate_bytes`: bit flips, byte sets, interesting 8/16/32/64-bit values, inserts,
  deletes, duplicated ranges, truncation and splices with another seed.
- :func:`mutate_elf`: picks a section header field, a relocation or symbol entry, or the body of a
  section (biased toward the parts nfpjit parses itself: relocations, BTF, maps, code) and mutates
  it with field-sized interesting values; or splices a section body from another object.
- :func:`mutate_text`: token-level mutations of assembly or TOML: a number becomes an interesting
  number, a word becomes another word of the seeds' vocabulary, tokens and lines are deleted,
  duplicated, swapped, or spliced in from another seed.
"""

from __future__ import annotations

import random
import re
import struct

__all__ = ["mutate_bytes", "mutate_elf", "mutate_text", "elf_sections", "Vocabulary"]

INTERESTING = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512, 1023, 1024, 4095,
               4096, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000,
               0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF)


def _interesting(rng: random.Random, nbytes: int) -> int:
    mask = (1 << (8 * nbytes)) - 1
    if rng.random() < 0.8:
        value = rng.choice(INTERESTING)
        if rng.random() < 0.2:
            value = -value
    else:
        value = rng.getrandbits(8 * nbytes)
    if rng.random() < 0.1:
        value += rng.choice((-1, 1))
    return value & mask


def _put(data: bytearray, pos: int, nbytes: int, value: int) -> None:
    if 0 <= pos and pos + nbytes <= len(data):
        data[pos:pos + nbytes] = value.to_bytes(nbytes, "little")


def _one_byte_mutation(rng: random.Random, data: bytearray, pool, lo: int = 0, hi: int | None = None) -> None:
    """One mutation of ``data`` in place, at a position in [lo, hi)."""
    hi = len(data) if hi is None else min(hi, len(data))
    if hi <= lo:
        data.extend(rng.randbytes(rng.randint(1, 8)))
        return
    pos = rng.randrange(lo, hi)
    how = rng.randrange(10)
    if how == 0:
        data[pos] ^= 1 << rng.randrange(8)
    elif how == 1:
        data[pos] = rng.randrange(256)
    elif how in (2, 3):
        n = rng.choice((1, 2, 4, 8))
        _put(data, pos - pos % n, n, _interesting(rng, n))
    elif how == 4:
        data[pos:pos] = rng.randbytes(rng.randint(1, 16))
    elif how == 5:
        del data[pos:pos + rng.randint(1, 32)]
    elif how == 6:
        n = rng.randint(1, 64)
        data[pos:pos] = data[pos:pos + n]
    elif how == 7:
        if rng.random() < 0.3:
            del data[pos:]
        else:
            data[pos] = data[rng.randrange(lo, hi)]
    elif how == 8 and pool:
        other = rng.choice(pool)
        if other:
            start = rng.randrange(len(other))
            chunk = other[start:start + rng.randint(1, 256)]
            if rng.random() < 0.5:
                data[pos:pos + len(chunk)] = chunk
            else:
                data[pos:pos] = chunk
    else:
        n = rng.choice((2, 4, 8))
        chunk = data[pos:pos + n]
        data[pos:pos + n] = bytes(reversed(chunk))


def mutate_bytes(rng: random.Random, data: bytes, pool=()) -> bytes:
    """1-8 byte-level mutations (a few more, sometimes: large inputs need more to be changed)."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        _one_byte_mutation(rng, out, pool)
    return bytes(out)


# -- ELF --------------------------------------------------------------------------------------

# (offset, size) of the section header fields: name, type, flags, addr, offset, size, link, info,
# addralign, entsize (ELF64)
_SHDR_FIELDS = ((0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 8))
_EHDR_FIELDS = ((16, 2), (18, 2), (20, 4), (24, 8), (32, 8), (40, 8), (48, 4), (52, 2), (54, 2), (56, 2),
                (58, 2), (60, 2), (62, 2))
SHT_SYMTAB, SHT_RELA, SHT_REL = 2, 4, 9


def elf_sections(data: bytes) -> list[tuple[str, int, int, int, int]]:
    """``(name, type, header offset, body offset, body size)`` of each section of an ELF64 LE file
    (an empty list when the headers do not parse)."""
    try:
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            return []
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        if shentsize != 64 or shnum > 4096 or shoff + 64 * shnum > len(data):
            return []
        str_off, = struct.unpack_from("<Q", data, shoff + shstrndx * 64 + 0x18)
        out = []
        for i in range(shnum):
            hdr = shoff + 64 * i
            noff, stype = struct.unpack_from("<II", data, hdr)
            off, size = struct.unpack_from("<QQ", data, hdr + 0x18)
            start = str_off + noff
            end = data.find(b"\0", start) if start < len(data) else -1
            name = data[start:end].decode("latin-1") if end >= 0 else ""
            out.append((name, stype, hdr, off, size))
        return out
    except (struct.error, IndexError):
        return []


def _weight(name: str, stype: int) -> int:
    if stype in (SHT_REL, SHT_RELA) and "debug" not in name:
        return 8
    if name in (".BTF", ".BTF.ext", ".maps", "maps", "license") or stype == SHT_SYMTAB:
        return 6
    if name.startswith((".data", ".rodata", ".bss")):
        return 3
    if "debug" in name or name in (".strtab", ".shstrtab", ".llvm_addrsig"):
        return 1
    return 4  # program sections


def mutate_elf(rng: random.Random, data: bytes, pool=()) -> bytes:
    """A structure-aware mutation of an ELF object (bytes when the headers no longer parse)."""
    sections = elf_sections(data)
    if not sections or rng.random() < 0.15:
        return mutate_bytes(rng, data, pool)
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        how = rng.randrange(10)
        name, stype, hdr, off, size = rng.choices(sections, weights=[_weight(s[0], s[1]) for s in sections])[0]
        if how == 0:
            foff, fsize = rng.choice(_EHDR_FIELDS)
            _put(out, foff, fsize, _interesting(rng, fsize))
        elif how in (1, 2):
            foff, fsize = rng.choice(_SHDR_FIELDS)
            _put(out, hdr + foff, fsize, _interesting(rng, fsize))
        elif how in (3, 4) and stype in (SHT_REL, SHT_RELA, SHT_SYMTAB) and size >= 16:
            entsize = 24 if stype in (SHT_RELA, SHT_SYMTAB) else 16
            entry = off + entsize * rng.randrange(max(1, size // entsize))
            if stype == SHT_SYMTAB:   # name, info, other, shndx, value, size
                foff, fsize = rng.choice(((0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)))
            else:                     # offset, info (type low 32, symbol high 32), addend
                foff, fsize = rng.choice(((0, 8), (8, 4), (12, 4), (16, 8)))
            _put(out, entry + foff, fsize, _interesting(rng, fsize))
        elif how == 5 and pool:
            other = rng.choice(pool)
            theirs = elf_sections(other)
            if theirs:
                _n, _t, _h, ooff, osize = rng.choice(theirs)
                body = other[ooff:ooff + min(osize, size or osize)]
                out[off:off + len(body)] = body
        elif size:
            for _ in range(rng.randint(1, 3)):
                pos = off + rng.randrange(size)
                n = rng.choice((1, 1, 2, 4, 4, 8))
                if pos + n <= len(out):
                    if rng.random() < 0.5:
                        _put(out, pos - (pos - off) % n, n, _interesting(rng, n))
                    else:
                        out[pos] ^= 1 << rng.randrange(8)
        else:
            _one_byte_mutation(rng, out, pool)
    return bytes(out)


# -- text -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"0[xX][0-9a-fA-F]+|[-+]?\d+|[A-Za-z_.%$][\w.$%]*|\s+|.", re.S)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[-+]?\d+")
_WORD = re.compile(r"[A-Za-z_.%$][\w.$%]*")
_NUMBERS = ("0", "1", "-1", "2", "7", "8", "15", "16", "31", "32", "33", "63", "64", "65", "127", "128",
            "255", "256", "4095", "4096", "65535", "65536", "0x7fffffff", "0x80000000", "0xffffffff",
            "-0x80000000", "0x100000000", "0x7fffffffffffffff", "0xffffffffffffffff", "0x10000000000000000",
            "-9223372036854775809", "99999999999999999999", "-32768", "32767", "0b101", "0o17", "1e9", "")
_CHARS = ",[]+-:;#\"'=.{}\n\t \\\0%"


class Vocabulary:
    """The words of a set of seed texts: what a word token may become."""

    def __init__(self, texts):
        words: set[str] = set()
        for text in texts:
            words.update(_WORD.findall(text))
        self.words = sorted(words)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def mutate_text(rng: random.Random, data: bytes, pool=(), vocabulary: Vocabulary | None = None) -> bytes:
    """1-4 token- or line-level mutations of UTF-8 text (bytes for text that does not decode)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return mutate_bytes(rng, data, pool)
    words = vocabulary.words if vocabulary else []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
        how = rng.randrange(12)
        if how <= 6:
            toks = _tokens(text)
            if not toks:
                text += rng.choice(words or ["x"])
                continue
            i = rng.randrange(len(toks))
            tok = toks[i]
            if how <= 2 and (_NUMBER.fullmatch(tok) or rng.random() < 0.3):
                toks[i] = rng.choice(_NUMBERS)
            elif how <= 4 and words:
                toks[i] = rng.choice(words)
            elif how == 5:
                del toks[i]
            else:
                toks.insert(i, rng.choice(_CHARS) if rng.random() < 0.5 or not words else rng.choice(words) + " ")
            text = "".join(toks)
        else:
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            if how == 7:
                del lines[i]
            elif how == 8:
                lines.insert(i, lines[rng.randrange(len(lines))])
            elif how == 9:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            elif how == 10 and pool:
                other = rng.choice(pool).decode("utf-8", "replace").split("\n")
                lines.insert(i, rng.choice(other))
            else:
                return mutate_bytes(rng, text.encode("utf-8"), pool) if rng.random() < 0.3 else \
                    "\n".join(lines[:i]).encode("utf-8")
            text = "\n".join(lines)
    return text.encode("utf-8", "surrogatepass")

"""Mutated image bytes: the reader either returns an Image or raises ImageError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from nfpjit.errors import ImageError
from nfpjit.isa.image import Image

from test_isa_image import sample

VALID = sample().to_bytes()


def _read(data: bytes) -> None:
    try:
        img = Image.from_bytes(data)
    except ImageError as exc:
        assert str(exc)
        return
    # A successful read must be self-consistent: it writes back to something that reads the same.
    assert Image.from_bytes(img.to_bytes()) == img


@st.composite
def mutated(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["flip", "set", "cut", "insert", "word"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            data[pos] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif how == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[pos:pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\0\0\0\x80"]))
    return bytes(data)


@settings(max_examples=300)
@given(mutated())
def test_mutated_images(data):
    _read(data)


@settings(max_examples=100)
@given(st.binary(max_size=600))
def test_random_bytes(data):
    _read(b"\x7fELF\x02\x01\x01" + data)


def _header_fields():
    # (offset, size) of every ELF-header field and of every field in every section header
    fields = [(o, 2) for o in range(16, 64, 2)]
    shoff = int.from_bytes(VALID[40:48], "little")
    for i in range(11):
        base = shoff + 64 * i
        fields += [(base + o, s) for o, s in ((0, 4), (4, 4), (8, 8), (24, 8), (32, 8), (40, 4), (44, 4), (56, 8))]
    return fields


@pytest.mark.parametrize("value", [0, 1, 0xFF, 0xFFFF_FFFF_FFFF_FFFF])
def test_every_header_field_extreme(value):
    for offset, size in _header_fields():
        data = bytearray(VALID)
        data[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        _read(bytes(data))


@pytest.mark.slow
@settings(max_examples=5000)
@given(mutated())
def test_mutated_images_many(data):
    _read(data)


def _sections(data: bytes) -> dict[str, tuple[int, int]]:
    from elftools.elf.elffile import ELFFile
    from io import BytesIO

    elf = ELFFile(BytesIO(data))
    return {s.name: (s["sh_offset"], s["sh_size"]) for s in elf.iter_sections() if s.name}


SECTIONS = _sections(VALID)


def _rehash(data: bytearray) -> bytes:
    # Recompute the integrity hash so that the mutation reaches the section parsers behind it.
    import hashlib
    import struct

    h = hashlib.sha256()
    for name, (off, size) in SECTIONS.items():
        if name != ".nfp.hash":
            h.update(name.encode() + b"\0" + struct.pack("<Q", size) + bytes(data[off:off + size]))
    off, size = SECTIONS[".nfp.hash"]
    data[off:off + size] = h.digest()
    return bytes(data)


@settings(max_examples=300)
@given(st.sampled_from([n for n in SECTIONS if n not in (".nfp.hash", ".shstrtab")]), st.data())
def test_mutated_section_bodies_behind_a_valid_hash(name, data):
    buf = bytearray(VALID)
    off, size = SECTIONS[name]
    for _ in range(data.draw(st.integers(1, 4))):
        pos = off + data.draw(st.integers(0, max(size - 1, 0)))
        buf[pos] = data.draw(st.integers(0, 255))
    _read(_rehash(buf))

"""The input fuzz targets: what a mutated input goes through, and where its seeds come from.

Each :class:`Target` has seeds (real inputs: the corpus of a source checkout, or inputs made by
nfpjit itself), a mutator (:mod:`nfpjit.fuzz.mutators`) and ``run(data)``, which sends the input
through the public entry points a user hits with such a file.  The rule is that ``run`` returns or
raises one of nfpjit's own errors (:mod:`nfpjit.errors`); anything else -- and a
:class:`~nfpjit.driver.CompilerBug`, which is nfpjit saying it crashed -- is a failure
(:func:`is_failure`).

| target | entry points |
|---|---|
| ``elf`` | ``list_elf_programs``, ``load_elf`` (what ``nfpjit.load`` does with an object) for every program, then ``nfpjit.check`` and ``nfpjit.compile`` (permissive profile) |
| ``ebpf-asm`` | ``nfpjit.load(FILE.s)`` (UTF-8 decoding, the assembler), then check and compile |
| ``nfp-asm`` | ``nfpjit.isa.asm.assemble_image``, ``Image.from_bytes``, the disassembler, one simulated packet |
| ``image`` | ``Image.from_bytes`` (``nfpjit disasm``/``run`` read images so), the disassembler, one simulated packet |
| ``pcap`` | ``nfpjit.pcapio.read_pcap(FILE)`` |
| ``profile`` | ``load_profile(FILE.toml)``, then ``nfpjit.check`` of two small programs against it |

The expensive later stages (check, compile, simulation) run once per distinct *result* of the
first stage: ``run(data, seen)`` skips them when ``seen`` already holds the loaded program (most
mutations of debug information load the same program as their seed).  Replaying a reproducer
runs every stage.
"""

from __future__ import annotations

import functools
import hashlib
import random
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from nfpjit.errors import NfpjitError
from nfpjit.fuzz import mutators

__all__ = ["Target", "TARGETS", "INPUT_TARGETS", "is_failure", "source_root"]


def is_failure(exc: BaseException) -> bool:
    """Whether an exception escaping a target is a bug: not an nfpjit error, or nfpjit's own "I crashed"."""
    from nfpjit.driver import CompilerBug

    return isinstance(exc, CompilerBug) or not isinstance(exc, NfpjitError)


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str                                    # file name suffix of its inputs (reproducers keep it)
    describe: str
    seeds: Callable[[], list[tuple[str, bytes]]]
    mutate: Callable[[random.Random, bytes, list[bytes]], bytes]
    run: Callable[..., None]                       # run(data, seen=None)


def source_root() -> Path:
    """The source checkout nfpjit runs from (tests/, examples/ live there when it is one)."""
    import nfpjit

    return Path(nfpjit.__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    """A per-process scratch folder for inputs whose entry point takes a path."""
    return Path(tempfile.mkdtemp(prefix="nfpjit-fuzz-"))


def _as_file(data: bytes, suffix: str) -> str:
    path = _scratch() / f"input{suffix}"
    path.write_bytes(data)
    return str(path)


def _key(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _first_time(seen: set | None, key: str) -> bool:
    if seen is None:
        return True
    if key in seen:
        return False
    if len(seen) > 200_000:
        seen.clear()
    seen.add(key)
    return True


# -- programs: check and compile ---------------------------------------------------------------

def _program_key(program) -> str:
    return _key(program.prog_type, program.insns, program.maps, program.functions, program.license)


def check_and_compile(program) -> None:
    """What ``nfpjit check`` and ``nfpjit compile`` do with a loaded program (errors are nfpjit's)."""
    import nfpjit
    from nfpjit.ebpf.opcodes import ProgType
    from nfpjit.errors import UnsupportedError

    nfpjit.check(program)
    if program.prog_type in (ProgType.XDP, ProgType.SCHED_CLS):
        try:
            nfpjit.compile(program, profile="permissive")
        except UnsupportedError:
            pass


# -- elf --------------------------------------------------------------------------------------

def _corpus_files(*patterns: str) -> list[Path]:
    root = source_root()
    found: list[Path] = []
    for pattern in patterns:
        found += sorted(root.glob(pattern))
    return found


@functools.lru_cache(maxsize=1)
def elf_seeds() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in _corpus_files("tests/corpus/*.o", "examples/*.o")]


def run_elf(data: bytes, seen: set | None = None) -> None:
    from nfpjit.ebpf.elf import list_elf_programs, load_elf

    path = "fuzz-input.o"
    for section, _func in list_elf_programs(data, path):
        program = load_elf(path, section=section, data=data)
        if _first_time(seen, _program_key(program)):
            check_and_compile(program)


# -- eBPF assembly ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def ebpf_asm_seeds() -> list[tuple[str, bytes]]:
    from nfpjit.ebpf.disasm import program_text
    from nfpjit.ebpf.elf import list_elf_programs, load_elf

    seeds = [(p.name, p.read_bytes()) for p in _corpus_files("tests/corpus/asm/*.s")]
    for name, data in elf_seeds():  # every corpus program as source: maps, calls, helpers
        try:
            for section, _func in list_elf_programs(data, name):
                program = load_elf(name, section=section, data=data)
                seeds.append((f"{name}:{section}.s", program_text(program).encode()))
        except NfpjitError:
            continue
    seeds.append(("tiny.s", _TINY_PROGRAM.encode()))
    return seeds


_TINY_PROGRAM = """\
.type xdp
.map counts array key=4 value=8 entries=4
    mov r6, r1
    ldxw r2, [r6+0]
    ldxw r3, [r6+4]
    mov r4, r2
    add r4, 14
    jgt r4, r3, out
    stw [r10-4], 1
    lddw r1, map:counts
    mov r2, r10
    add r2, -4
    call map_lookup_elem
    jeq r0, 0, out
    mov r1, 1
    lock add [r0+0], r1
out:
    mov r0, 2
    exit
"""


def run_ebpf_asm(data: bytes, seen: set | None = None) -> None:
    import nfpjit

    program = nfpjit.load(_as_file(data, ".s"))
    if _first_time(seen, _program_key(program)):
        check_and_compile(program)


# -- NFP assembly and images ------------------------------------------------------------------

_SIM_BUDGET = 20_000
_SIM_MAP_BYTES = 1 << 20


def _image_stages(image) -> None:
    """What ``nfpjit disasm`` and ``nfpjit run --engine sim`` do with a decoded image."""
    from nfpjit.driver import simulate_image
    from nfpjit.isa.disasm import disassemble
    from nfpjit.testing.packets import crafted_packets

    disassemble(image.code, {s.address: s.name for s in image.symbols}, listing=True)
    # a mutated max_entries makes maps the simulator accepts but takes seconds to set up and dump
    # (O(entries) Python per packet): those images are decoded and disassembled, not simulated
    map_bytes = sum(m.max_entries * max(m.value_size, 1) for m in image.maps)
    if image.code and map_bytes <= _SIM_MAP_BYTES:
        simulate_image(image, crafted_packets()[0], budget=_SIM_BUDGET)


@functools.lru_cache(maxsize=1)
def image_seeds() -> list[tuple[str, bytes]]:
    import nfpjit
    from nfpjit.isa.asm import assemble_image

    seeds = []
    for name, data in nfp_asm_seeds():
        try:
            seeds.append((name.replace(".s", ".img"), assemble_image(data.decode(), name)))
        except NfpjitError:
            continue
    for name, text in ebpf_asm_seeds()[:40]:
        try:
            program = nfpjit.load(_as_file(text, ".s"))
            seeds.append((name.replace(".s", ".img"), nfpjit.compile(program, profile="permissive").image.to_bytes()))
        except NfpjitError:
            continue
    return seeds


@functools.lru_cache(maxsize=1)
def nfp_asm_seeds() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in _corpus_files("tests/nfp_asm/*.s")]


def run_nfp_asm(data: bytes, seen: set | None = None) -> None:
    from nfpjit.isa.asm import assemble_image
    from nfpjit.isa.image import Image

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # `nfpjit asm` refuses it with a message before the assembler sees it
    blob = assemble_image(text, "fuzz-input.s")
    image = Image.from_bytes(blob, where="fuzz-input.s")
    if _first_time(seen, _key(blob)):
        _image_stages(image)


def run_image(data: bytes, seen: set | None = None) -> None:
    from nfpjit.isa.image import Image

    image = Image.from_bytes(data, where="fuzz-input.img")
    if _first_time(seen, _key(image.to_bytes())):
        _image_stages(image)


def _rehash(data: bytes) -> bytes:
    """The image with its integrity digest recomputed, so that a mutation reaches the parsers behind it."""
    from nfpjit.isa.image import _section_digest  # the image format's own digest: one definition of it

    sections = mutators.elf_sections(data)
    contents = {name: data[off:off + size] for name, stype, _h, off, size in sections if name}
    hashed = [s for s in sections if s[0] == ".nfp.hash"]
    if not hashed:
        return data
    _n, _t, _h, off, size = hashed[0]
    try:
        digest = _section_digest(contents)
    except KeyError:  # a section name was mutated away
        return data
    if size != len(digest) or off + size > len(data):
        return data
    return data[:off] + digest + data[off + size:]


def mutate_image(rng: random.Random, data: bytes, pool) -> bytes:
    out = mutators.mutate_elf(rng, data, pool) if rng.random() < 0.5 else mutators.mutate_bytes(rng, data, pool)
    return _rehash(out) if rng.random() < 0.7 else out


# -- pcap -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def pcap_seeds() -> list[tuple[str, bytes]]:
    from nfpjit.pcapio import write_pcap
    from nfpjit.testing.packets import crafted_packets

    frames = crafted_packets()
    seeds = []
    for name, chosen in (("crafted.pcap", frames), ("three.pcap", frames[:3]), ("one.pcap", frames[-1:]),
                         ("empty.pcap", [])):
        path = _scratch() / name
        write_pcap(path, chosen)
        seeds.append((name, path.read_bytes()))
    big_endian = bytearray(seeds[1][1])  # the same records written big-endian, as some tools do
    seeds.append(("three-be.pcap", _byteswap_pcap(bytes(big_endian))))
    return seeds


def _byteswap_pcap(data: bytes) -> bytes:
    import struct

    out = bytearray()
    head = struct.unpack_from("<IHHiIII", data, 0)
    out += struct.pack(">IHHiIII", *head)
    off = 24
    while off + 16 <= len(data):
        rec = struct.unpack_from("<IIII", data, off)
        out += struct.pack(">IIII", *rec) + data[off + 16:off + 16 + rec[2]]
        off += 16 + rec[2]
    return bytes(out)


def run_pcap(data: bytes, seen: set | None = None) -> None:
    from nfpjit.pcapio import read_pcap

    read_pcap(_as_file(data, ".pcap"))


# -- profiles ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def profile_seeds() -> list[tuple[str, bytes]]:
    from nfpjit.offload.profile import _shipped

    return [(p.name, p.read_bytes()) for p in sorted(_shipped().iterdir()) if p.name.endswith(".toml")]


@functools.lru_cache(maxsize=1)
def _profile_programs():
    from nfpjit.ebpf.asm import assemble

    tc = _TINY_PROGRAM.replace(".type xdp", ".type tc").replace("[r6+0]", "[r6+76]").replace("[r6+4]", "[r6+80]")
    return assemble(_TINY_PROGRAM, filename="tiny-xdp.s"), assemble(tc, filename="tiny-tc.s")


def run_profile(data: bytes, seen: set | None = None) -> None:
    import nfpjit
    from nfpjit.offload.profile import load_profile

    profile = load_profile(_as_file(data, ".toml"))
    if _first_time(seen, _key(replace(profile, source=""))):
        for program in _profile_programs():
            nfpjit.check(program, profile=profile)


# -- the table ----------------------------------------------------------------------------------

def _text_mutator(seeds: Callable[[], list[tuple[str, bytes]]]):
    @functools.lru_cache(maxsize=1)
    def vocabulary():
        return mutators.Vocabulary(d.decode("utf-8", "replace") for _n, d in seeds())

    def mutate(rng: random.Random, data: bytes, pool) -> bytes:
        if rng.random() < 0.1:
            return mutators.mutate_bytes(rng, data, pool)
        return mutators.mutate_text(rng, data, pool, vocabulary())

    return mutate


def _elf_mutator(rng: random.Random, data: bytes, pool) -> bytes:
    return mutators.mutate_elf(rng, data, pool)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("elf", ".o", "mutated ELF objects: load, check, compile", elf_seeds, _elf_mutator, run_elf),
    Target("ebpf-asm", ".s", "mutated eBPF assembly: load (assemble), check, compile", ebpf_asm_seeds,
           _text_mutator(ebpf_asm_seeds), run_ebpf_asm),
    Target("nfp-asm", ".s", "mutated NFP-32 assembly: assemble_image, decode, disassemble, simulate",
           nfp_asm_seeds, _text_mutator(nfp_asm_seeds), run_nfp_asm),
    Target("image", ".img", "mutated firmware images: decode, disassemble, simulate", image_seeds, mutate_image,
           run_image),
    Target("pcap", ".pcap", "mutated packet captures: read_pcap", pcap_seeds, mutators.mutate_bytes, run_pcap),
    Target("profile", ".toml", "mutated capability profiles: load_profile, check", profile_seeds,
           _text_mutator(profile_seeds), run_profile),
)}
INPUT_TARGETS = tuple(TARGETS)
#: what ``--target`` accepts besides the names above
GROUPS = {"asm": ("ebpf-asm", "nfp-asm"), "inputs": INPUT_TARGETS}


def cleanup_scratch() -> None:
    """Remove this process's scratch folder (called at the end of a campaign)."""
    import shutil

    if _scratch.cache_info().currsize:
        shutil.rmtree(_scratch(), ignore_errors=True)
        _scratch.cache_clear()


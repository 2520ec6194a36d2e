"""The loaded program: what every input format (ELF, raw bytecode, assembly) produces.

A :class:`Program` is one entry point with its BPF-to-BPF callees linked in
(as libbpf does), the maps it references, and the debug information that ties
instructions back to C source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from nfpjit.ebpf.insn import Insn, pcs_of
from nfpjit.ebpf.opcodes import MapType, ProgType


@dataclass(frozen=True)
class SourceLoc:
    """Where an instruction came from (``.BTF.ext`` line info)."""

    file: str
    line: int
    col: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class MapDef:
    """A map the program uses.  ``initial`` holds the bytes of a global-data map (.data/.rodata/.bss)."""

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    initial: bytes | None = None
    origin: str = "btf"  # "btf" (.maps), "legacy" (maps section), "global" (.data/.rodata/.bss), "asm"
    # Map-in-map (ARRAY_OF_MAPS, HASH_OF_MAPS): the inner-map template from BTF
    # ``__array(values, struct {...})`` and the slots its initialiser fills: (key bytes, inner map).
    inner: "MapDef | None" = None
    slots: tuple = ()

    def to_json(self) -> dict:
        out = {
            "name": self.name,
            "type": self.type.kernel_name,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "max_entries": self.max_entries,
            "flags": self.flags,
        }
        if self.inner is not None:
            out["inner"] = self.inner.to_json()
            out["slots"] = {k.hex(): m.name for k, m in self.slots}
        return out


@dataclass(frozen=True)
class Function:
    """A function in the linked instruction stream: the entry point or a BPF-to-BPF callee."""

    name: str
    start_pc: int


@dataclass(frozen=True)
class Program:
    name: str
    insns: tuple[Insn, ...]
    section: str = ""
    prog_type: ProgType = ProgType.XDP
    maps: tuple[MapDef, ...] = ()
    license: str = ""
    functions: tuple[Function, ...] = ()
    line_info: dict[int, SourceLoc] = field(default_factory=dict, compare=False)
    source_path: str = ""
    # kfunc calls (``call`` with src=KFUNC): pc -> kernel function name.  ``imm`` holds the
    # function's BTF id in the running kernel's vmlinux BTF (0 when it could not be resolved).
    kfuncs: dict[int, str] = field(default_factory=dict, compare=False)

    @cached_property
    def pcs(self) -> tuple[int, ...]:
        """Slot index of each instruction (ld_imm64 takes two slots)."""
        return tuple(pcs_of(self.insns))

    @cached_property
    def index_at_pc(self) -> dict[int, int]:
        return {pc: i for i, pc in enumerate(self.pcs)}

    @property
    def nslots(self) -> int:
        return sum(i.width for i in self.insns)

    def at(self, pc: int) -> Insn:
        return self.insns[self.index_at_pc[pc]]

    def slots(self):
        """Yield ``(pc, insn)`` in program order."""
        return zip(self.pcs, self.insns)

    def map_named(self, name: str) -> MapDef:
        for m in self.maps:
            if m.name == name:
                return m
        raise KeyError(name)

    def function_at(self, pc: int) -> Function | None:
        """The function containing ``pc`` (functions are laid out contiguously)."""
        best = None
        for fn in self.functions:
            if fn.start_pc <= pc and (best is None or fn.start_pc > best.start_pc):
                best = fn
        return best

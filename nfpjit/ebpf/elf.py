"""Read BPF ELF objects (``clang -O2 -g -target bpf``) into :class:`~nfpjit.ebpf.program.Program` values.

What libbpf does before it calls ``bpf(BPF_PROG_LOAD)``, minus the kernel:

- every executable section other than ``.text`` holds programs, one per
  global function symbol (``xdp``, ``xdp/*``, ``xdp.frags``, ``tc``,
  ``classifier``, ``action`` ...); ``.text`` holds BPF-to-BPF callees;
- callees (``R_BPF_64_32`` relocations, or plain local calls within one
  section) are appended after the entry function, each once, and the call
  immediates are rewritten for the linked layout;
- ``ld_imm64`` relocations (``R_BPF_64_64``) to maps become
  ``src=MAP_FD, imm=<index in Program.maps>``; to global data (``.rodata``,
  ``.data``, ``.bss`` and their ``.*`` variants, each an ARRAY map with one
  value of the section's size) ``src=MAP_VALUE, imm=<index>, imm2=<offset>``;
- maps come from BTF (``.maps``) or the legacy ``maps`` section;
- ``.BTF.ext`` line info becomes ``Program.line_info`` keyed by linked pc.

The ELF structure is read by :mod:`nfpjit.ebpf.elfread` (a small reader of what BPF
objects use; pyelftools costs more to import than the rest of a compilation).  Corrupt
input raises many kinds of exception; :func:`read_object` turns every one of them into
:class:`~nfpjit.errors.LoadError` naming the file, the section and the reason.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from nfpjit.errors import LoadError, NfpjitError
from nfpjit.ebpf.btf import Btf, BtfExt, BtfKind, parse_btf, parse_btf_ext
from nfpjit.ebpf.insn import SLOT, Insn, check_jumps, decode
from nfpjit.ebpf.opcodes import CallKind, MapType, ProgType, PseudoSrc
from nfpjit.ebpf.program import Function, MapDef, Program, SourceLoc

EM_BPF = 247
ELF_MAGIC = b"\x7fELF"

SHT_PROGBITS = 1
SHT_NOBITS = 8
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_32 = 10

BPF_F_RDONLY_PROG = 0x80
MAX_GLOBAL_DATA = 1 << 26  # a map value this large is surely a corrupt size field
TEXT = ".text"
_GLOBAL_DATA_PREFIXES = (".rodata", ".data", ".bss")
_LEGACY_MAP_DEF = struct.Struct("<IIIII")  # type, key_size, value_size, max_entries, map_flags


def prog_type_for_section(section: str) -> ProgType:
    """The program type a section name implies: ``xdp*`` (and a bare ``.text``) is XDP, every other program
    section SCHED_CLS."""
    if section in ("xdp", TEXT) or section.startswith(("xdp/", "xdp.", "xdp_")):
        return ProgType.XDP
    return ProgType.SCHED_CLS


def is_global_data_section(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _GLOBAL_DATA_PREFIXES)


@dataclass(frozen=True)
class _Sym:
    name: str
    value: int
    size: int
    shndx: int  # -1 for undefined/special
    kind: str  # STT_FUNC, STT_OBJECT, STT_SECTION, ...
    bind: str


@dataclass(frozen=True)
class _Reloc:
    offset: int
    type: int
    sym: _Sym


@dataclass
class _Section:
    index: int
    name: str
    data: bytes
    insns: list[Insn] = field(default_factory=list)
    pc_index: dict[int, int] = field(default_factory=dict)  # slot -> index in insns
    relocs: dict[int, _Reloc] = field(default_factory=dict)  # slot -> relocation
    funcs: list[_Sym] = field(default_factory=list)  # function symbols, by address

    @property
    def nslots(self) -> int:
        return len(self.data) // SLOT


@dataclass(frozen=True)
class ElfObject:
    """Everything read from one object file; :meth:`program` links one entry point."""

    path: str
    entries: tuple[tuple[str, str], ...]  # (section, function name) in file order
    license: str
    maps: tuple[MapDef, ...]  # all maps of the object, by definition order
    _sections: dict[str, _Section]
    _map_at: dict[tuple[int, int], int]  # (section index, offset) -> index in maps
    _map_by_name: dict[str, int]
    _sec_names: dict[int, str]
    _lines: dict[str, dict[int, SourceLoc]]  # section -> slot -> location

    def program(self, section: str | None = None, name: str | None = None) -> Program:
        """Link the program in ``section`` (optionally the function ``name`` there).

        ``section`` may also be ``"SECTION:FUNCTION"`` to pick one of several programs in one section.
        """
        if section is not None and name is None and ":" in section \
                and section not in {s for s, _ in self.entries}:
            section, name = section.rsplit(":", 1)
        choices = [e for e in self.entries if (section is None or e[0] == section) and (name is None or e[1] == name)]
        listing = ", ".join(f"{s}:{n}" if _ambiguous(self.entries, s) else s for s, n in self.entries)
        if not self.entries:
            raise LoadError("no program sections (xdp, tc, classifier ...) in the object", where=self.path,
                            hint="mark the entry function with SEC(\"xdp\") or SEC(\"tc\")")
        if not choices:
            raise LoadError(f"no program section {section!r}" + (f" with function {name!r}" if name else ""),
                            where=self.path, hint=f"choose one of: {listing}")
        if len(choices) > 1:
            raise LoadError(f"the object has {len(choices)} programs", where=self.path,
                            hint=f"pick one with section= / -s: {listing}")
        sec_name, func_name = choices[0]
        try:
            return _Linker(self, sec_name, func_name).link()
        except NfpjitError:
            raise
        except Exception as exc:  # a corrupt object that slipped past the reader's checks
            raise LoadError(f"malformed ELF object: {type(exc).__name__}: {exc}",
                            where=f"{self.path}: section {sec_name}") from exc


def _ambiguous(entries, section: str) -> bool:
    return sum(1 for s, _ in entries if s == section) > 1


class _Linker:
    """Lay out one entry function and its transitive callees, libbpf style."""

    def __init__(self, obj: ElfObject, section: str, name: str):
        self.obj = obj
        self.section = section
        self.name = name
        self.where = f"{obj.path}: section {section}"
        self.out: list[Insn] = []
        self.pc = 0
        self.placed: dict[tuple[str, int], int] = {}  # (section, func start slot) -> linked pc
        self.functions: list[Function] = []
        self.line_info: dict[int, SourceLoc] = {}
        self.map_order: list[int] = []  # object map index, by first reference
        self.kfuncs: dict[int, str] = {}  # linked pc -> kfunc name

    def link(self) -> Program:
        sec = self.obj._sections[self.section]
        entry = next(f for f in sec.funcs if f.name == self.name)
        queue = [(self.section, entry)]
        pending_calls: list[tuple[int, int, str, int]] = []  # (out index, call pc, target section, target slot)
        while queue:
            sec_name, func = queue.pop(0)
            pending_calls += self._place(sec_name, func, queue)
        for idx, call_pc, tsec, tslot in pending_calls:
            start = self._function_containing(tsec, tslot)
            base = self.placed[(tsec, start.value // SLOT)]
            target_pc = base + tslot - start.value // SLOT
            insn = self.out[idx]
            self.out[idx] = Insn(insn.code, insn.dst, insn.src, insn.off, target_pc - call_pc - 1, insn.imm2)
        where = f"{self.obj.path}: {self.section}"
        check_jumps(self.out, where=where)
        maps = tuple(self.obj.maps[i] for i in self.map_order)
        return Program(
            name=self.name,
            insns=tuple(self.out),
            section=self.section,
            prog_type=prog_type_for_section(self.section),
            maps=maps,
            license=self.obj.license,
            functions=tuple(self.functions),
            line_info=self.line_info,
            source_path=self.obj.path,
            kfuncs=self.kfuncs,
        )

    def _function_containing(self, sec_name: str, slot: int) -> _Sym:
        sec = self.obj._sections.get(sec_name)
        if sec is None:
            raise LoadError(f"call into section {sec_name!r}, which holds no code", where=self.where)
        for f in sec.funcs:
            start = f.value // SLOT
            if start <= slot < start + _func_slots(sec, f):
                return f
        raise LoadError(f"call to {sec_name}+{slot * SLOT} does not land in a function", where=self.where)

    def _map_index(self, obj_index: int) -> int:
        if obj_index not in self.map_order:
            self.map_order.append(obj_index)
        return self.map_order.index(obj_index)

    def _place(self, sec_name: str, func: _Sym, queue: list) -> list[tuple[int, int, str, int]]:
        sec = self.obj._sections[sec_name]
        start = func.value // SLOT
        key = (sec_name, start)
        if key in self.placed:
            return []
        nslots = _func_slots(sec, func)
        self.placed[key] = self.pc
        self.functions.append(Function(func.name, self.pc))
        base_pc = self.pc
        here = f"{self.obj.path}: section {sec_name}, function {func.name}"
        lines = self.obj._lines.get(sec_name, {})
        calls = []
        slot = start
        while slot < start + nslots:
            if slot not in sec.pc_index:
                raise LoadError(f"function boundary at {slot * SLOT} splits an ld_imm64", where=here)
            insn = sec.insns[sec.pc_index[slot]]
            if slot + insn.width > start + nslots:
                raise LoadError(f"ld_imm64 at {slot * SLOT} runs past the end of the function", where=here)
            pc = base_pc + slot - start
            if slot in lines:
                self.line_info[pc] = lines[slot]
            reloc = sec.relocs.get(slot)
            if insn.is_call and insn.src == CallKind.LOCAL and reloc is not None and reloc.type == R_BPF_64_32 \
                    and reloc.sym.shndx == -1 and reloc.sym.name:
                # extern function (__ksym): a kfunc call, resolved against the running kernel's BTF
                from nfpjit.ebpf.kfuncs import resolve_kfunc

                insn = Insn(insn.code, insn.dst, CallKind.KFUNC, 0, resolve_kfunc(reloc.sym.name), 0)
                self.kfuncs[pc] = reloc.sym.name
            elif insn.is_call and insn.src == CallKind.LOCAL:
                tsec, tslot = self._call_target(sec, slot, insn, reloc, here)
                callee = self._function_containing(tsec, tslot)
                queue.append((tsec, callee))
                calls.append((len(self.out), pc, tsec, tslot))
            elif insn.is_ld_imm64 and reloc is not None:
                insn = self._relocate_ld_imm64(insn, reloc, slot, here, queue, calls, len(self.out), pc)
            elif reloc is not None and reloc.type != R_BPF_NONE:
                raise LoadError(f"relocation type {reloc.type} at offset {slot * SLOT} on a "
                                f"non-ld_imm64, non-call instruction", where=here)
            self.out.append(insn)
            slot += insn.width
        self.pc = base_pc + nslots
        return calls

    def _call_target(self, sec: _Section, slot: int, insn: Insn, reloc: _Reloc | None, here: str):
        if reloc is None:
            return sec.name, slot + 1 + insn.imm
        if reloc.type != R_BPF_64_32:
            raise LoadError(f"call at offset {slot * SLOT} has relocation type {reloc.type}, want R_BPF_64_32",
                            where=here)
        tsec = self.obj._sec_names.get(reloc.sym.shndx)
        if tsec is None or tsec not in self.obj._sections:
            raise LoadError(f"call at offset {slot * SLOT} refers to {reloc.sym.name or 'a symbol'} "
                            "outside any code section", where=here)
        # libbpf: target = symbol offset / 8 + imm + 1 (clang writes imm = -1 for function symbols)
        return tsec, reloc.sym.value // SLOT + insn.imm + 1

    def _relocate_ld_imm64(self, insn: Insn, reloc: _Reloc, slot: int, here: str, queue, calls, out_idx, pc):
        if reloc.type != R_BPF_64_64:
            raise LoadError(f"ld_imm64 at offset {slot * SLOT} has relocation type {reloc.type}, want R_BPF_64_64",
                            where=here)
        sym = reloc.sym
        sec_name = self.obj._sec_names.get(sym.shndx)
        if sec_name is None:
            raise LoadError(f"ld_imm64 at offset {slot * SLOT} refers to undefined symbol {sym.name!r}", where=here,
                            hint="extern variables and kfuncs are not supported")
        if sec_name in self.obj._sections:  # address of a function: callback for bpf_loop & co.
            tslot = (sym.value + insn.imm) // SLOT
            callee = self._function_containing(sec_name, tslot)
            queue.append((sec_name, callee))
            calls.append((out_idx, pc, sec_name, tslot))
            return Insn(insn.code, insn.dst, PseudoSrc.FUNC, 0, insn.imm, 0)
        if sec_name in (".maps", "maps"):
            offset = insn.imm if sym.kind == "STT_SECTION" else sym.value
            idx = self.obj._map_at.get((sym.shndx, offset))
            if idx is None:
                raise LoadError(f"ld_imm64 at offset {slot * SLOT} refers to {sec_name}+{offset}, where no map "
                                "is defined", where=here)
            return Insn(insn.code, insn.dst, PseudoSrc.MAP_FD, 0, self._map_index(idx), 0)
        if is_global_data_section(sec_name) and sec_name in self.obj._map_by_name:
            idx = self.obj._map_by_name[sec_name]
            offset = sym.value + insn.imm
            size = self.obj.maps[idx].value_size
            if not 0 <= offset <= size:
                raise LoadError(f"ld_imm64 at offset {slot * SLOT} points {offset} bytes into {sec_name}, "
                                f"which has {size}", where=here)
            return Insn(insn.code, insn.dst, PseudoSrc.MAP_VALUE, 0, self._map_index(idx), offset)
        raise LoadError(f"ld_imm64 at offset {slot * SLOT} refers to {sym.name or 'a symbol'} in {sec_name}, "
                        "which is neither a map nor global data", where=here)


def _func_slots(sec: _Section, func: _Sym) -> int:
    start = func.value // SLOT
    if func.size:
        return func.size // SLOT
    later = [f.value // SLOT for f in sec.funcs if f.value // SLOT > start]
    return (min(later) if later else sec.nslots) - start


# -- reading ------------------------------------------------------------------

def read_object(data: bytes, path: str = "<memory>") -> ElfObject:
    """Parse a BPF ELF object; every problem becomes :class:`LoadError` naming ``path``."""
    if not data.startswith(ELF_MAGIC):
        raise LoadError("not an ELF file (bad magic)", where=path)
    reader = None
    try:
        reader = _Reader(data, path)
        return reader.read()
    except NfpjitError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise LoadError(f"malformed ELF object ({type(exc).__name__})", where=_stage(path, reader)) from exc
    except Exception as exc:  # ElfFormatError, struct.error, IndexError, KeyError, ValueError ...
        raise LoadError(f"malformed ELF object: {type(exc).__name__}: {exc}", where=_stage(path, reader),
                        hint="is it a complete object built with clang -target bpf?") from exc


def _stage(path: str, reader: "_Reader | None") -> str:
    return f"{path}: {reader.stage}" if reader is not None and reader.stage else path


def load_elf(path: str | os.PathLike, *, section: str | None = None, name: str | None = None,
             data: bytes | None = None) -> Program:
    """Load the program in ``section`` of the object at ``path``."""
    path = os.fspath(path)
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror}", where=path) from exc
    return read_object(data, path).program(section, name)


class _Reader:
    def __init__(self, data: bytes, path: str):
        from nfpjit.ebpf.elfread import ElfFile

        self.data = data
        self.path = path
        self.stage = "ELF header"  # what is being read, for errors from the ELF reader
        self.elf = ElfFile(data)
        self.stage = ""

    def _where(self, section: str | None = None) -> str:
        return f"{self.path}: section {section}" if section else self.path

    def read(self) -> ElfObject:
        elf = self.elf
        if elf.header["e_machine"] not in ("EM_BPF", EM_BPF):
            raise LoadError(f"ELF machine is {elf.header['e_machine']}, not BPF (EM_BPF={EM_BPF})", where=self.path,
                            hint="build with clang -target bpf")
        if not elf.little_endian or elf.elfclass != 64:
            raise LoadError("only 64-bit little-endian BPF objects are supported", where=self.path)
        self.stage = "section headers"
        raw_sections = list(elf.iter_sections())
        sec_names = {i: s.name for i, s in enumerate(raw_sections)}
        self.stage = "symbol table"
        symbols = self._symbols()

        code: dict[str, _Section] = {}
        for i, s in enumerate(raw_sections):
            self.stage = f"section {s.name}"
            if s["sh_type"] == "SHT_PROGBITS" and s["sh_flags"] & SHF_EXECINSTR and s["sh_size"] > 0:
                data = s.data()
                if len(data) != s["sh_size"]:
                    raise LoadError(f"section data is truncated ({len(data)} of {s['sh_size']} bytes)",
                                    where=self._where(s.name))
                if len(data) % SLOT:
                    raise LoadError(f"code size {len(data)} is not a multiple of 8", where=self._where(s.name))
                if s.name in code:
                    raise LoadError("two code sections have the same name", where=self._where(s.name))
                code[s.name] = _Section(i, s.name, data)

        for sec in code.values():
            sec.funcs = sorted((sym for sym in symbols if sym.shndx == sec.index and sym.kind == "STT_FUNC"),
                               key=lambda sym: sym.value)
            for f in sec.funcs:
                if f.value % SLOT or f.size % SLOT or f.value + f.size > len(sec.data):
                    raise LoadError(f"function symbol {f.name!r} (offset {f.value}, size {f.size}) does not fit "
                                    "the section's instructions", where=self._where(sec.name))
            if not sec.funcs and sec.name != TEXT:  # hand-written section without symbols: one program
                sec.funcs = [_Sym(sec.name, 0, len(sec.data), sec.index, "STT_FUNC", "STB_GLOBAL")]
        self.stage = "relocations"
        self._relocations(code, symbols, sec_names)
        for sec in code.values():
            self._decode(sec)

        entries = tuple((sec.name, f.name) for sec in code.values() if sec.name != TEXT
                        for f in sec.funcs if f.bind != "STB_LOCAL")
        if not entries and TEXT in code:
            # No SEC() at all (hand-written assembly, IR without a section): libbpf would refuse;
            # we take .text's global functions as XDP programs.
            entries = tuple((TEXT, f.name) for f in code[TEXT].funcs if f.bind != "STB_LOCAL")
        self.stage = "maps"
        maps, map_at, map_by_name = self._maps(raw_sections, symbols)
        self.stage = "section license"
        license_ = self._license()
        self.stage = "section .BTF.ext"
        lines = self._line_info(code)
        return ElfObject(self.path, entries, license_, tuple(maps), code, map_at, map_by_name, sec_names, lines)

    def _symbols(self) -> list[_Sym]:
        from nfpjit.ebpf.elfread import SymbolTableSection

        out: list[_Sym] = []
        for s in self.elf.iter_sections():
            if isinstance(s, SymbolTableSection) and s.name == ".symtab":
                for sym in s.iter_symbols():
                    shndx = sym["st_shndx"]
                    out.append(_Sym(sym.name, sym["st_value"], sym["st_size"],
                                    shndx if isinstance(shndx, int) else -1,
                                    sym["st_info"]["type"], sym["st_info"]["bind"]))
        return out

    def _relocations(self, code: dict[str, _Section], symbols: list[_Sym], sec_names: dict[int, str]) -> None:
        from nfpjit.ebpf.elfread import RelocationSection

        for rs in self.elf.iter_sections():
            if not isinstance(rs, RelocationSection):
                continue
            target = sec_names.get(rs["sh_info"])
            self.stage = f"section {rs.name}"
            if target not in code:
                continue  # debug info, BTF: nothing for us
            sec = code[target]
            where = self._where(target)
            if rs.is_RELA():
                raise LoadError("RELA relocations are not used by BPF objects", where=where)
            for r in rs.iter_relocations():
                off, rtype, symi = r["r_offset"], r["r_info_type"], r["r_info_sym"]
                if off % SLOT or off + SLOT > len(sec.data):
                    raise LoadError(f"relocation at offset {off} is not on an instruction", where=where)
                if not 0 <= symi < len(symbols):
                    raise LoadError(f"relocation at offset {off} names symbol {symi}, which does not exist",
                                    where=where)
                sec.relocs[off // SLOT] = _Reloc(off, rtype, symbols[symi])

    def _decode(self, sec: _Section) -> None:
        # A call relocated to another section keeps an immediate that is meaningless
        # here; point it at itself so that the section decodes on its own.
        data = bytearray(sec.data)
        for slot, reloc in sec.relocs.items():
            if reloc.type == R_BPF_64_32 and data[slot * SLOT] == 0x85:
                struct.pack_into("<i", data, slot * SLOT + 4, -1)
        insns = decode(bytes(data), where=self._where(sec.name))
        pc = 0
        for i, insn in enumerate(insns):
            if insn.is_call and pc in sec.relocs and sec.relocs[pc].type == R_BPF_64_32:
                insn = Insn(insn.code, insn.dst, insn.src, insn.off, struct.unpack_from("<i", sec.data, pc * SLOT + 4)[0])
            sec.insns.append(insn)
            sec.pc_index[pc] = i
            pc += insn.width

    def _maps(self, raw_sections, symbols: list[_Sym]):
        maps: list[MapDef] = []
        map_at: dict[tuple[int, int], int] = {}
        by_name: dict[str, int] = {}

        def add(shndx: int, offset: int, m: MapDef) -> None:
            if m.name in by_name:
                raise LoadError(f"two maps are named {m.name!r}", where=self.path)
            by_name[m.name] = len(maps)
            map_at[(shndx, offset)] = len(maps)
            maps.append(m)

        btf = self._btf()
        for i, s in enumerate(raw_sections):
            if s.name == ".maps":
                if btf is None:
                    raise LoadError("BTF-defined maps need a .BTF section", where=self._where(".maps"),
                                    hint="compile with -g")
                msyms = sorted((x for x in symbols if x.shndx == i and x.kind == "STT_OBJECT"), key=lambda x: x.value)
                for sym in msyms:
                    add(i, sym.value, self._btf_map(btf, sym))
                self._map_in_map_slots(i, msyms, maps, by_name, symbols)
            elif s.name == "maps":
                data = s.data()
                syms = sorted((x for x in symbols if x.shndx == i and x.kind in ("STT_OBJECT", "STT_NOTYPE")
                               and x.name), key=lambda x: x.value)
                if not syms:
                    continue
                size = len(data) // len(syms)
                where = self._where("maps")
                if size < 16 or len(data) % len(syms):
                    raise LoadError(f"{len(data)} bytes do not divide into {len(syms)} bpf_map_def records",
                                    where=where)
                for sym in syms:
                    if sym.value % size or sym.value + size > len(data):
                        raise LoadError(f"map {sym.name!r} at offset {sym.value} is not a whole record",
                                        where=where)
                    rec = data[sym.value:sym.value + size].ljust(_LEGACY_MAP_DEF.size, b"\0")
                    mtype, ksz, vsz, entries, flags = _LEGACY_MAP_DEF.unpack_from(rec)
                    add(i, sym.value, MapDef(sym.name, _map_type(mtype, sym.name, where), ksz, vsz, entries,
                                             flags, origin="legacy"))
            elif is_global_data_section(s.name) and s["sh_flags"] & SHF_ALLOC \
                    and s["sh_type"] in ("SHT_PROGBITS", "SHT_NOBITS"):
                if s["sh_size"] > MAX_GLOBAL_DATA:
                    raise LoadError(f"global data section of {s['sh_size']} bytes is too large "
                                    f"(limit {MAX_GLOBAL_DATA})", where=self._where(s.name))
                if s["sh_type"] == "SHT_NOBITS":
                    initial = bytes(s["sh_size"])
                else:
                    initial = s.data()
                    if len(initial) != s["sh_size"]:
                        raise LoadError("section data is truncated", where=self._where(s.name))
                flags = BPF_F_RDONLY_PROG if s.name.startswith(".rodata") else 0
                add(i, -1, MapDef(s.name, MapType.ARRAY, 4, len(initial), 1, flags, initial, origin="global"))
        return maps, map_at, by_name

    def _btf(self) -> Btf | None:
        if not hasattr(self, "_btf_cache"):
            s = self.elf.get_section_by_name(".BTF")
            self._btf_cache = parse_btf(s.data(), where=self._where(".BTF")) if s is not None else None
        return self._btf_cache

    def _btf_map(self, btf: Btf, sym: _Sym) -> MapDef:
        where = self._where(".maps")
        var = next((t for t in btf.types if t.kind == BtfKind.VAR and t.name == sym.name), None)
        if var is None:
            raise LoadError(f"map {sym.name!r} has no BTF variable", where=where)
        return self._btf_map_def(btf, var.id, sym.name, where)

    def _btf_map_def(self, btf: Btf, type_id: int, name: str, where: str, *, inner: bool = False) -> MapDef:
        attrs = btf.map_attrs(type_id)
        if "type" not in attrs:
            raise LoadError(f"map {name!r} has no type attribute", where=where)
        for need in ("key_size", "value_size"):
            if need not in attrs:
                attrs[need] = 0
        mtype = _map_type(attrs["type"], name, where)
        inner_def = None
        values = btf.map_values(type_id)
        if mtype in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            # libbpf: the inner map's definition comes from __array(values, struct {...}); the
            # outer map's value is an inner map id (4 bytes).
            if inner:
                raise LoadError(f"map {name!r}: an inner map cannot itself be a map-in-map", where=where)
            if values is None or btf.type(values[0]).kind != BtfKind.STRUCT:
                raise LoadError(f"map-in-map {name!r} has no inner map definition", where=where,
                                hint="declare __array(values, struct { __uint(type, ...); ... }) in the outer map")
            if attrs["value_size"] not in (0, 4):
                raise LoadError(f"map-in-map {name!r}: value size {attrs['value_size']} conflicts with 4", where=where)
            attrs["value_size"] = 4
            inner_def = self._btf_map_def(btf, values[0], f"{name}.inner", where, inner=True)
        return MapDef(name, mtype, attrs["key_size"], attrs["value_size"],
                      attrs.get("max_entries", 0), attrs.get("map_flags", 0), origin="btf", inner=inner_def)

    def _map_in_map_slots(self, shndx: int, msyms: list[_Sym], maps: list[MapDef], by_name: dict[str, int],
                          symbols: list[_Sym]) -> None:
        """libbpf's ``.values = { [i] = &inner }``: relocations in ``.maps`` put inner maps into outer slots."""
        from dataclasses import replace

        from nfpjit.ebpf.elfread import RelocationSection

        btf = self._btf()
        where = self._where(".maps")
        for rs in self.elf.iter_sections():
            if not isinstance(rs, RelocationSection) or rs["sh_info"] != shndx:
                continue
            for r in rs.iter_relocations():
                off, symi = r["r_offset"], r["r_info_sym"]
                if not 0 <= symi < len(symbols):
                    raise LoadError(f"relocation at .maps+{off} names symbol {symi}, which does not exist", where=where)
                outer_sym = next((x for x in msyms if x.value <= off < x.value + max(x.size, 1)), None)
                target = symbols[symi]
                if outer_sym is None:
                    raise LoadError(f"relocation at .maps+{off} is outside every map", where=where)
                outer_idx = by_name[outer_sym.name]
                outer = maps[outer_idx]
                if outer.type == MapType.PROG_ARRAY:
                    continue  # program slots: tail-call targets are given to the engines separately
                var = next(t for t in btf.types if t.kind == BtfKind.VAR and t.name == outer_sym.name)
                values = btf.map_values(var.id)
                if outer.inner is None or values is None:
                    raise LoadError(f"relocation at .maps+{off} in map {outer_sym.name!r}, which has no values",
                                    where=where)
                rel = off - outer_sym.value - values[1]
                if rel < 0 or rel % 8:
                    raise LoadError(f"relocation at .maps+{off} is not a slot of {outer_sym.name!r}.values", where=where)
                slot = rel // 8
                if target.name not in by_name or target.shndx != shndx:
                    raise LoadError(f"{outer_sym.name!r}.values[{slot}] refers to {target.name!r}, which is not a map",
                                    where=where)
                if outer.type == MapType.ARRAY_OF_MAPS and slot >= outer.max_entries:
                    raise LoadError(f"{outer_sym.name!r}.values[{slot}] is beyond max_entries {outer.max_entries}",
                                    where=where)
                if outer.type == MapType.HASH_OF_MAPS and outer.key_size != 4:
                    raise LoadError(f"{outer_sym.name!r}: initial values need a 4-byte key", where=where)
                key = slot.to_bytes(4, "little") + bytes(max(0, outer.key_size - 4))
                maps[outer_idx] = replace(outer, slots=outer.slots + ((key, maps[by_name[target.name]]),))

    def _license(self) -> str:
        s = self.elf.get_section_by_name("license")
        if s is None:
            return ""
        raw = s.data().split(b"\0", 1)[0]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise LoadError("license string is not ASCII", where=self._where("license")) from exc

    def _line_info(self, code: dict[str, _Section]) -> dict[str, dict[int, SourceLoc]]:
        s = self.elf.get_section_by_name(".BTF.ext")
        btf = self._btf()
        if s is None or btf is None:
            return {}
        ext: BtfExt = parse_btf_ext(s.data(), btf, where=self._where(".BTF.ext"))
        out: dict[str, dict[int, SourceLoc]] = {}
        for sec_name, records in ext.line_info.items():
            sec = code.get(sec_name)
            where = self._where(".BTF.ext")
            if sec is None:
                raise LoadError(f"line info for {sec_name!r}, which is not a code section", where=where)
            table = out.setdefault(sec_name, {})
            for rec in records:
                slot = rec.insn_off // SLOT
                if rec.insn_off % SLOT or slot not in sec.pc_index:
                    raise LoadError(f"line info offset {rec.insn_off} in {sec_name!r} is not an instruction "
                                    f"(section has {len(sec.data)} bytes)", where=where)
                if rec.line == 0:
                    continue  # compiler-generated code with no source line
                table[slot] = SourceLoc(os.path.normpath(rec.file) if rec.file else "", rec.line, rec.col,
                                        rec.text.strip())
        for sec_name, funcs in ext.func_info.items():
            sec = code.get(sec_name)
            for fi in funcs:
                if sec is None or fi.insn_off % SLOT or fi.insn_off // SLOT not in sec.pc_index:
                    raise LoadError(f"func info for {fi.name!r} at {sec_name}+{fi.insn_off} is not an instruction",
                                    where=self._where(".BTF.ext"))
        return out


def _map_type(value: int, name: str, where: str) -> MapType:
    try:
        return MapType(value)
    except ValueError:
        raise LoadError(f"map {name!r} has unknown type {value}", where=where) from None


def list_elf_programs(data: bytes, path: str = "<memory>") -> list[tuple[str, str]]:
    """``(section, function)`` of every program in the object, in file order."""
    return list(read_object(data, path).entries)


__all__ = ["ElfObject", "read_object", "load_elf", "list_elf_programs", "prog_type_for_section", "EM_BPF"]

"""NFP-32 assembler: assembly text to instruction words, driven by the ISA table.

Source format, one statement per line, ``;`` starts a comment::

    .prog_type xdp              ; program type (xdp, tc)
    .stack 64                   ; stack bytes the program needs
    .map counters array key=4 value=8 entries=16 [flags=0]
    .data greeting 0x68, 0x69   ; named initialised bytes (of the map of that name, if any)
    .entry start                ; entry label (default: address 0)
    start:
        immed a1, map(counters) ; map(NAME) = the map's index in declaration order
        add a0, b1, 4           ; mnemonic[.suffix] positional slots, then keyword slots
        br.eq done, defer=1
        nop
    done:
        halt 2

The syntax of each instruction is its table entry's (see isa/README.md);
the disassembler prints the same syntax.  Every error is an
:class:`~nfpjit.isa.operands.IsaError` whose ``where`` is ``file:line:col``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .encoding import check, encode
from .operands import (
    NN,
    Bank,
    Gpr,
    GprBoth,
    IllegalOperands,
    Imm,
    IsaAsmError,
    IsaError,
    LMem,
    NoDest,
    Xfer,
    XferIndex,
    XferSide,
)
from .disasm import enum_text
from .table import BY_MNEMONIC, COND_ALIASES, MAX_CODE_WORDS, Cond, Entry, FieldKind, Instruction

MAP_TYPES = ("hash", "array", "lru_hash", "percpu_hash", "percpu_array")
PROG_TYPES = ("xdp", "tc")


@dataclass(frozen=True)
class AsmMap:
    """A map declared with ``.map``; ``index`` is its position among the maps."""

    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    index: int = 0


@dataclass(frozen=True)
class AsmData:
    """Initialised bytes declared with ``.data``."""

    name: str
    data: bytes


@dataclass(frozen=True)
class AsmResult:
    """What :func:`assemble` produces; ``lines[i]`` is the source line of ``words[i]``."""

    words: tuple[int, ...]
    instructions: tuple[Instruction, ...]
    labels: dict[str, int] = field(default_factory=dict)
    maps: tuple[AsmMap, ...] = ()
    data: tuple[AsmData, ...] = ()
    entry: int = 0
    stack_size: int = 0
    prog_type: str | None = None
    lines: tuple[int, ...] = ()
    filename: str = "<input>"
    map_refs: tuple[tuple[int, str], ...] = ()   # (code address, map name) of each immed ..., map(NAME)


# -- lexical helpers ------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*\Z")
_LABEL_DEF = re.compile(r"\s*([A-Za-z_.][A-Za-z0-9_.$]*)\s*:")
_INT = re.compile(r"(?:0x[0-9a-fA-F]+|0b[01]+|[0-9]+)\Z")
_GPR = re.compile(r"([ab])([0-9]+)\Z")
_GPR_BOTH = re.compile(r"ab([0-9]+)\Z")
_XFER = re.compile(r"\$(in|out)([0-9]+)\Z")
_NN = re.compile(r"n([0-9]+)\Z")
_LMEM = re.compile(r"\*l\$index([0-9]+)(?:\[([0-9]+)\])?(\+\+)?\Z")
_MAPREF = re.compile(r"map\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*\)\Z")
# map and data names: identifiers, and the ELF section names of global data (.bss, .data, .rodata ...)
_SYM_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*\Z")
_MNEMONIC = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_]+))?")


class _Where:
    def __init__(self, filename: str, line: int):
        self.filename, self.line = filename, line

    def at(self, col: int) -> str:
        return f"{self.filename}:{self.line}:{col}"


def _err(where: _Where, col: int, message: str, hint: str | None = None) -> IsaAsmError:
    return IsaAsmError(message, where=where.at(col), hint=hint)


def _to_int(text: str) -> int:
    """Value of a literal that matched ``_INT`` (decimal may have leading zeros)."""
    if text[:2] in ("0x", "0b"):
        return int(text[2:], 16 if text[1] == "x" else 2)
    return int(text, 10)


def _int(text: str, where: _Where, col: int, what: str) -> int:
    if not _INT.match(text):
        raise _err(where, col, f"expected {what} (a number), got {text!r}")
    return _to_int(text)


def _split_operands(text: str, start_col: int) -> list[tuple[str, int]]:
    """Comma-separated pieces of ``text`` with the 1-based column each starts at."""
    pieces, col, current_start, buf = [], start_col, None, []
    for ch in text + ",":
        if ch == ",":
            piece = "".join(buf)
            stripped = piece.strip()
            lead = len(piece) - len(piece.lstrip())
            pieces.append((stripped, (current_start if current_start is not None else col) + lead))
            buf, current_start = [], None
        else:
            if current_start is None:
                current_start = col
            buf.append(ch)
        col += 1
    return pieces


def parse_operand(text: str, role: str = "b") -> object:
    """An operand from its text (``a3``, ``$in2``, ``n5``, ``*l$index1[3]``, ``7``, ``--``).

    ``--`` is ``NoDest()`` for a destination and None (absent) for a source.
    Raises :class:`IllegalOperands` or :class:`IsaAsmError` (without position).
    """
    t = text.strip()
    if t == "--":
        return NoDest() if role == "dest" else None
    m = _GPR.match(t)
    if m:
        return Gpr(Bank.A if m.group(1) == "a" else Bank.B, int(m.group(2)))
    m = _GPR_BOTH.match(t)
    if m:
        return GprBoth(int(m.group(1)))
    if t == "*$index":
        return XferIndex()
    m = _XFER.match(t)
    if m:
        return Xfer(XferSide.IN if m.group(1) == "in" else XferSide.OUT, int(m.group(2)))
    m = _NN.match(t)
    if m:
        return NN(int(m.group(1)))
    m = _LMEM.match(t)
    if m:
        return LMem(int(m.group(1)), int(m.group(2) or 0), bool(m.group(3)))
    if _INT.match(t):
        return Imm(_to_int(t))
    raise IsaAsmError(
        f"expected an operand, got {t!r}",
        hint="operands: aN, bN, abN (destination: both banks), $inN, $outN, *$index, nN, *l$indexN[k], *l$indexN++, a number 0..255, --",
    )


def _enum_value(entry: Entry, name: str, text: str, where: _Where, col: int):
    f = entry.field(name)
    names = {enum_text(m): m for m in f.enum}
    if f.enum is Cond:
        names.update(COND_ALIASES)
    value = names.get(text.lower())
    if value is None:
        raise _err(where, col, f"{entry.mnemonic}: unknown {name} {text!r}",
                   hint="one of: " + ", ".join(enum_text(m) for m in f.enum))
    return value


class _Context:
    """Names visible to operand parsing: maps (known before use) and labels (fixed up later)."""

    def __init__(self, maps: dict[str, AsmMap] | None = None):
        self.maps = maps if maps is not None else {}
        self.map_refs: list[str] = []


def _parse_slot(entry: Entry, slot: str, text: str, where: _Where, col: int, ctx: _Context,
                values: dict, fixups: list) -> None:
    if not text:
        raise _err(where, col, f"{entry.mnemonic}: missing {slot}")
    if slot in ("dest", "a", "b", "xfer"):
        try:
            values[slot] = parse_operand(text, "dest" if slot == "dest" else "src")
        except IsaError as exc:
            raise _err(where, col, f"{entry.mnemonic}: {slot}: {exc.message}", exc.hint) from None
        return
    if slot == "shift":
        parts = text.split()
        if len(parts) != 2:
            raise _err(where, col, f"{entry.mnemonic}: expected 'KIND AMOUNT' (e.g. shl 3, ror indirect), got {text!r}")
        values["shift"] = _enum_value(entry, "shift", parts[0], where, col)
        if parts[1].lower() == "indirect":
            values["indirect"] = True
        else:
            values["amount"] = _int(parts[1], where, col, "a shift amount")
        return
    if slot == "amount" and text.lower() == "indirect" and entry.field("indirect") is not None:
        values["indirect"] = True
        return
    if slot == "count":
        if text.lower() == "indirect":
            values["count"] = 0
            return
        count = _int(text, where, col, "a word count")
        if count == 0:
            raise _err(where, col, f"{entry.mnemonic}: count must be 1..8", hint="write 'indirect' for a count from prev")
        values["count"] = count
        return
    if slot == "target":
        if _INT.match(text):
            values["target"] = _to_int(text)
        elif _IDENT.match(text):
            values["target"] = 0
            fixups.append((text, col))
        else:
            raise _err(where, col, f"{entry.mnemonic}: expected a label or code address, got {text!r}")
        return
    if slot == "imm":
        m = _MAPREF.match(text)
        if m:
            mp = ctx.maps.get(m.group(1))
            if mp is None:
                raise _err(where, col, f"unknown map {m.group(1)!r}", hint="declare it with .map before use")
            values["imm"] = mp.index
            ctx.map_refs.append(mp.name)
            return
    f = entry.field(slot)
    if f is None:
        raise _err(where, col, f"{entry.mnemonic}: has no {slot}")
    if f.kind == FieldKind.ENUM:
        values[slot] = _enum_value(entry, slot, text, where, col)
    elif f.kind == FieldKind.BOOL:
        if text.lower() not in ("0", "1", "true", "false"):
            raise _err(where, col, f"{entry.mnemonic}: {slot} is a flag, got {text!r}")
        values[slot] = text.lower() in ("1", "true")
    else:
        values[slot] = _int(text, where, col, slot)


def _column_for(entry: Entry, message: str, cols: dict[str, int], default: int) -> int:
    if "two sources" in message or "cannot be placed" in message:
        return cols.get("b", default)
    for slot, col in cols.items():
        if message.startswith(f"{entry.mnemonic}: {slot} ") or message.startswith(f"{entry.mnemonic}: needs operand {slot}"):
            return col
    if message.startswith((f"{entry.mnemonic}: amount ", f"{entry.mnemonic}: indirect ")) and "shift" in cols:
        return cols["shift"]
    return default


def _parse_statement(text: str, col0: int, where: _Where, ctx: _Context) -> tuple[Instruction, list]:
    m = _MNEMONIC.match(text)
    if not m or not m.group(1):
        raise _err(where, col0, f"expected a mnemonic, got {text.strip()!r}")
    mcol = col0 + m.start(1)
    entry = BY_MNEMONIC.get(m.group(1).lower())
    if entry is None:
        raise _err(where, mcol, f"unknown mnemonic {m.group(1)!r}",
                   hint="see isa/README.md for the instruction list")
    values: dict = {}
    fixups: list = []
    suffix = m.group(2)
    if entry.suffix:
        if suffix is None:
            raise _err(where, mcol, f"{entry.mnemonic} needs a .{entry.suffix} suffix",
                       hint=f"e.g. {entry.mnemonic}.{enum_text(next(iter(entry.field(entry.suffix).enum)))}")
        values[entry.suffix] = _enum_value(entry, entry.suffix, suffix, where, mcol + len(m.group(1)) + 1)
    elif suffix is not None:
        raise _err(where, mcol, f"{entry.mnemonic} takes no suffix (got .{suffix})")
    rest = text[m.end():]
    if rest and not rest[0].isspace():
        raise _err(where, col0 + m.end(), f"unexpected {rest.strip()!r} after the mnemonic")
    pieces = _split_operands(rest, col0 + m.end()) if rest.strip() else []
    npos = len(entry.syntax)
    if len(pieces) < npos:
        usage = " ".join([entry.mnemonic, ", ".join(entry.syntax)])
        raise _err(where, mcol, f"{entry.mnemonic} needs {npos} operand(s), got {len(pieces)}", hint=f"usage: {usage}")
    cols: dict[str, int] = {}
    for slot, (piece, col) in zip(entry.syntax, pieces):
        cols[slot] = col
        _parse_slot(entry, slot, piece, where, col, ctx, values, fixups)
    for piece, col in pieces[npos:]:
        name, eq, value = piece.partition("=")
        name = name.strip().lower()
        if name not in entry.keywords:
            allowed = ", ".join(entry.keywords) or "none"
            raise _err(where, col, f"{entry.mnemonic}: unexpected operand {piece!r}", hint=f"keywords: {allowed}")
        if name in cols:
            raise _err(where, col, f"{entry.mnemonic}: {name} given twice")
        cols[name] = col
        f = entry.field(name)
        if not eq:
            if f.kind != FieldKind.BOOL:
                raise _err(where, col, f"{entry.mnemonic}: {name} needs a value ({name}=...)")
            values[name] = True
        else:
            _parse_slot(entry, name, value.strip(), where, col, ctx, values, fixups)
    try:
        instr = Instruction(entry.op, **values)
        check(instr)
    except IsaError as exc:
        col = _column_for(entry, exc.message, cols, mcol)
        raise type(exc)(exc.message, where=where.at(col), hint=exc.hint) from None
    # fixups carry the column so undefined labels can be reported precisely
    return instr, [(name, col, cols) for name, col in fixups]


def _strip_comment(line: str) -> str:
    pos = line.find(";")
    return line if pos < 0 else line[:pos]


def parse(line: str) -> Instruction:
    """One instruction from one line of assembly (no labels; targets must be numbers)."""
    where = _Where("<line>", 1)
    text = _strip_comment(line)
    instr, fixups = _parse_statement(text, 1, where, _Context())
    if fixups:
        name, col, _ = fixups[0]
        raise _err(where, col, f"label {name!r} used in a single-line parse", hint="use assemble() for labels")
    return instr


# -- directives --------------------------------------------------------------------


def _kv(pieces: list[tuple[str, int]], where: _Where, keys: tuple[str, ...], required: tuple[str, ...]) -> dict:
    out = {}
    for piece, col in pieces:
        name, eq, value = piece.partition("=")
        if not eq or name not in keys:
            raise _err(where, col, f"expected one of {', '.join(k + '=N' for k in keys)}, got {piece!r}")
        if name in out:
            raise _err(where, col, f"{name} given twice")
        out[name] = _int(value, where, col + len(name) + 1, name)
    for name in required:
        if name not in out:
            raise _err(where, pieces[0][1] if pieces else 1, f".map needs {name}=N")
    return out


class _Assembler:
    def __init__(self, filename: str):
        self.filename = filename
        self.instrs: list[Instruction] = []
        self.lines: list[int] = []
        self.fixups: list = []
        self.labels: dict[str, int] = {}
        self.maps: dict[str, AsmMap] = {}
        self.data: dict[str, AsmData] = {}
        self.entry_label: tuple[str, _Where, int] | None = None
        self.stack = 0
        self.prog_type: str | None = None
        self.seen: set[str] = set()
        self.map_refs: list[tuple[int, str]] = []

    def directive(self, text: str, col0: int, where: _Where) -> None:
        m = re.match(r"\s*(\.[A-Za-z_]*)", text)
        name = m.group(1)
        col = col0 + m.start(1)
        rest = text[m.end():]
        words = [(w.group(0), col0 + m.end() + w.start()) for w in re.finditer(r"\S+", rest)]
        if name in (".entry", ".stack", ".prog_type"):
            if name in self.seen:
                raise _err(where, col, f"{name} given twice")
            self.seen.add(name)
            if len(words) != 1:
                raise _err(where, col, f"{name} takes one argument")
            arg, acol = words[0]
            if name == ".entry":
                if not _IDENT.match(arg):
                    raise _err(where, acol, f".entry needs a label, got {arg!r}")
                self.entry_label = (arg, where, acol)
            elif name == ".stack":
                self.stack = _int(arg, where, acol, "a stack size in bytes")
            else:
                if arg.lower() not in PROG_TYPES:
                    raise _err(where, acol, f"unknown program type {arg!r}", hint="one of: " + ", ".join(PROG_TYPES))
                self.prog_type = arg.lower()
        elif name == ".map":
            if len(words) < 2:
                raise _err(where, col, ".map needs NAME TYPE key=N value=N entries=N",
                           hint="e.g. .map counters hash key=4 value=8 entries=16")
            (mname, ncol), (mtype, tcol) = words[0], words[1]
            if not _SYM_NAME.match(mname):
                raise _err(where, ncol, f"bad map name {mname!r}")
            if mname in self.maps:
                raise _err(where, ncol, f"map {mname!r} declared twice")
            if mtype.lower() not in MAP_TYPES:
                raise _err(where, tcol, f"unknown map type {mtype!r}", hint="one of: " + ", ".join(MAP_TYPES))
            kv = _kv(words[2:], where, ("key", "value", "entries", "flags"), ("key", "value", "entries"))
            self.maps[mname] = AsmMap(mname, mtype.lower(), kv["key"], kv["value"], kv["entries"],
                                      kv.get("flags", 0), len(self.maps))
        elif name == ".data":
            if not words:
                raise _err(where, col, ".data needs NAME then byte values", hint="e.g. .data tbl 1, 2, 0xff")
            dname, ncol = words[0]
            if not _SYM_NAME.match(dname):
                raise _err(where, ncol, f"bad data name {dname!r}")
            if dname in self.data:
                raise _err(where, ncol, f"data {dname!r} declared twice")
            body_start = rest.find(dname) + len(dname)
            body = rest[body_start:]
            values = bytearray()
            if body.strip():
                for piece, pcol in _split_operands(body, col0 + m.end() + body_start):
                    v = _int(piece, where, pcol, "a byte value")
                    if v > 255:
                        raise _err(where, pcol, f"byte value {v} out of range 0..255")
                    values.append(v)
            self.data[dname] = AsmData(dname, bytes(values))
        else:
            raise _err(where, col, f"unknown directive {name}",
                       hint="directives: .map, .data, .entry, .stack, .prog_type")

    def line(self, raw: str, lineno: int) -> None:
        where = _Where(self.filename, lineno)
        text = _strip_comment(raw).rstrip()
        col0 = 1
        while True:
            m = _LABEL_DEF.match(text)
            if not m:
                break
            name = m.group(1)
            if name in self.labels:
                raise _err(where, col0 + m.start(1), f"label {name!r} defined twice")
            self.labels[name] = len(self.instrs)
            col0 += m.end()
            text = text[m.end():]
        if not text.strip():
            return
        if text.lstrip().startswith("."):
            self.directive(text, col0, where)
            return
        ctx = _Context(self.maps)
        instr, fixups = _parse_statement(text, col0, where, ctx)
        self.map_refs.extend((len(self.instrs), name) for name in ctx.map_refs)
        for name, col, cols in fixups:
            self.fixups.append((len(self.instrs), name, where, col))
        self.instrs.append(instr)
        self.lines.append(lineno)
        if len(self.instrs) > MAX_CODE_WORDS:
            raise _err(where, col0, f"program longer than {MAX_CODE_WORDS} instructions (14-bit code addresses)")

    def finish(self) -> AsmResult:
        for index, name, where, col in self.fixups:
            if name not in self.labels:
                raise _err(where, col, f"undefined label {name!r}")
            target = self.labels[name]
            try:
                self.instrs[index] = dataclasses.replace(self.instrs[index], target=target)
            except IsaError as exc:  # pragma: no cover - replace re-runs only __post_init__
                raise _err(where, col, exc.message, exc.hint) from None
        words = []
        for index, instr in enumerate(self.instrs):
            try:
                words.append(encode(instr))
            except IllegalOperands as exc:
                raise IllegalOperands(exc.message, where=f"{self.filename}:{self.lines[index]}:1",
                                      hint=exc.hint) from None
        entry = 0
        if self.entry_label is not None:
            name, where, col = self.entry_label
            if name not in self.labels:
                raise _err(where, col, f"undefined entry label {name!r}")
            entry = self.labels[name]
        return AsmResult(
            words=tuple(words), instructions=tuple(self.instrs), labels=dict(self.labels),
            maps=tuple(self.maps.values()), data=tuple(self.data.values()), entry=entry,
            stack_size=self.stack, prog_type=self.prog_type, lines=tuple(self.lines), filename=self.filename,
            map_refs=tuple(self.map_refs),
        )


def assemble(text: str, filename: str = "<input>") -> AsmResult:
    """Assemble NFP-32 source; errors are :class:`IsaError` with ``where`` = ``file:line:col``."""
    if not isinstance(text, str):
        raise IsaAsmError(f"assembly source must be text, not {type(text).__name__}", where=filename)
    asm = _Assembler(filename)
    for lineno, raw in enumerate(text.splitlines(), 1):
        asm.line(raw, lineno)
    return asm.finish()


def assemble_image(text: str, filename: str = "<input>", *, name: str = "") -> bytes:
    """Assemble ``text`` into a firmware image file (see :mod:`nfpjit.isa.image`).

    Each ``immed ..., map(NAME)`` becomes a MAP_ID relocation against the
    map's symbol, so a loader patches in the table id the NIC assigns.
    """
    from .image import Relocation, RelocKind, Symbol, SymbolKind, image_from_asm

    result = assemble(text, filename)
    image = image_from_asm(result, name=name)
    referenced = sorted({m for _, m in result.map_refs})
    symbols = tuple(Symbol(m, SymbolKind.MAP) for m in referenced)
    relocs = tuple(Relocation(addr, RelocKind.MAP_ID, m) for addr, m in result.map_refs)
    if result.words:
        symbols = (Symbol(name or "main", SymbolKind.SUBPROG, 0, len(result.words)),) + symbols
    image = dataclasses.replace(image, symbols=image.symbols + symbols, relocations=image.relocations + relocs)
    return image.to_bytes()

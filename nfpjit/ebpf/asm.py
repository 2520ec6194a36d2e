"""The eBPF assembler: uBPF / rbpf / bpf_conformance syntax text to a :class:`Program`.

One instruction per line (``mov %r0, 1``; the ``%`` before a register is
optional), ``label:`` definitions, ``#`` and ``;`` comments, and a few
directives (``.map``, ``.type``, ``.section``, ``.license``).  Mnemonics come
from the table in :mod:`nfpjit.ebpf.disasm`, the same one the disassembler
writes with.  Every instruction produced is checked with the decoder's rules,
so an assembled program is one :func:`nfpjit.ebpf.insn.decode` would accept.
``docs/ebpf-asm.md`` is the reference for the syntax.

Errors are :class:`~nfpjit.errors.AsmError` located ``file:line:col``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from nfpjit.bits import s32
from nfpjit.errors import AsmError, DecodeError
from nfpjit.ebpf.disasm import ALIASES, BY_MNEMONIC, PROG_TYPE_NAMES, PSEUDO_NAMES, Form, Spelling
from nfpjit.ebpf.insn import MAX_REG, Insn, check_jumps, validate
from nfpjit.ebpf.opcodes import CallKind, Helper, MapType, ProgType, PseudoSrc, Source
from nfpjit.ebpf.program import Function, MapDef, Program, SourceLoc

_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*:")
_IDENT = re.compile(r"[A-Za-z_.$][\w.$]*\Z")
_REG = re.compile(r"%?r(\d+)\Z", re.IGNORECASE)
_MEM = re.compile(r"\[\s*([^\]+\-\s]+)\s*(?:([+-])\s*([^\]\s]+)\s*)?\]\Z")
_PSEUDO = re.compile(r"([a-z_]+)\s*\((.*)\)\Z", re.IGNORECASE)
_NAMES_BY_PSEUDO = {name: src for src, name in PSEUDO_NAMES.items()}
_PROG_TYPES = {"tc": ProgType.SCHED_CLS, **{name: t for t, name in PROG_TYPE_NAMES.items()}}


@dataclass(frozen=True)
class _Op:
    """An operand's text and the column (1-based) it starts at."""

    text: str
    col: int


@dataclass
class _Fixup:
    index: int        # into the instruction list
    pc: int
    label: str
    field: str        # "off", "imm" (branch/call offset) or "func" (ld_imm64 func(label))
    line: int
    col: int


class _Assembler:
    def __init__(self, text: str, filename: str):
        self.text = text
        self.filename = filename
        self.insns: list[Insn] = []
        self.locs: list[SourceLoc] = []
        self.pc = 0
        self.labels: dict[str, tuple[int, int]] = {}   # name -> (pc, line)
        self.fixups: list[_Fixup] = []
        self.map_refs: list[tuple[int, str, int, int]] = []  # (index, map name, line, col)
        self.maps: list[MapDef] = []
        self.prog_type = ProgType.XDP
        self.section = ""
        self.license = ""
        self.first_exit: int | None = None
        self.line = 0

    # -- errors ------------------------------------------------------------------
    def err(self, message: str, col: int = 1, hint: str | None = None, line: int | None = None) -> AsmError:
        return AsmError(message, where=f"{self.filename}:{line or self.line}:{col}", hint=hint)

    # -- operands ----------------------------------------------------------------
    def reg(self, op: _Op) -> int:
        m = _REG.match(op.text)
        if not m:
            raise self.err(f"expected a register, not {op.text!r}", op.col, "registers are %r0 .. %r10 (or r0 .. r10)")
        n = int(m.group(1))
        if n > MAX_REG:
            raise self.err(f"bad register r{n}", op.col, "eBPF has registers r0 .. r10")
        return n

    @staticmethod
    def is_reg(op: _Op) -> bool:
        return _REG.match(op.text) is not None

    def number(self, text: str, col: int, what: str = "number") -> int:
        t = text.strip().replace("_", "")
        neg = t.startswith("-")
        body = t[1:] if t[:1] in "+-" else t
        try:
            if re.fullmatch(r"0[xX][0-9a-fA-F]+", body):
                value = int(body, 16)
            elif re.fullmatch(r"0[bB][01]+", body):
                value = int(body, 2)
            elif re.fullmatch(r"0[oO][0-7]+", body):
                value = int(body, 8)
            elif re.fullmatch(r"[0-9]+", body):
                value = int(body, 10)
            else:
                raise ValueError(body)
        except ValueError:
            raise self.err(f"expected a {what}, not {text.strip()!r}", col,
                           "write a decimal, 0x hex, 0b binary or 0o octal number") from None
        return -value if neg else value

    def imm32(self, op: _Op) -> int:
        value = self.number(op.text, op.col, "32-bit immediate")
        if not -(1 << 31) <= value < (1 << 32):
            raise self.err(f"immediate {op.text} is out of range", op.col,
                           "32-bit immediates go from -0x80000000 to 0xffffffff; use lddw for 64-bit constants")
        return s32(value)

    def offset16(self, text: str, col: int, what: str = "offset") -> int:
        value = self.number(text, col, what)
        if not -(1 << 15) <= value < (1 << 15):
            raise self.err(f"{what} {text.strip()} is out of range", col, "offsets are signed 16-bit: -32768 .. 32767")
        return value

    def mem(self, op: _Op) -> tuple[int, int]:
        m = _MEM.match(op.text)
        if not m:
            raise self.err(f"expected a memory operand like [%r1+8], not {op.text!r}", op.col)
        base = self.reg(_Op(m.group(1), op.col + 1))
        off = 0
        if m.group(2):
            off = self.offset16(m.group(2) + m.group(3), op.col + op.text.index(m.group(2)))
        return base, off

    def target(self, op: _Op, index: int, field: str, bits: int = 16) -> int:
        """A branch target: ``+N``/``-N``/``N`` (slots after the next instruction) or a label."""
        if _IDENT.match(op.text):
            self.fixups.append(_Fixup(index, self.pc, op.text, field, self.line, op.col))
            return 0
        value = self.number(op.text, op.col, "jump offset or label")
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise self.err(f"jump offset {op.text} is out of range", op.col,
                           f"this jump holds a signed {bits}-bit offset" + ("; use ja32 (gotol) for far jumps" if bits == 16 else ""))
        return value

    # -- lines -------------------------------------------------------------------
    def run(self) -> Program:
        for self.line, raw in enumerate(self.text.splitlines(), start=1):
            self.statement(raw)
        self.resolve()
        return self.finish()

    def statement(self, raw: str) -> None:
        cut = len(raw)
        for ch in "#;":
            pos = raw.find(ch)
            if pos >= 0:
                cut = min(cut, pos)
        text = raw[:cut].rstrip()
        pos = 0
        while True:
            m = _LABEL.match(text, pos)
            if not m:
                break
            name = m.group(1)
            if name in self.labels:
                raise self.err(f"label {name!r} is defined twice", m.start(1) + 1,
                               f"first defined on line {self.labels[name][1]}")
            self.labels[name] = (self.pc, self.line)
            pos = m.end()
        rest = text[pos:]
        stripped = rest.lstrip()
        if not stripped:
            return
        col = pos + (len(rest) - len(stripped)) + 1
        if stripped.startswith("."):
            self.directive(stripped, col)
            return
        self.instruction(stripped, col)

    def split_operands(self, text: str, col: int) -> list[_Op]:
        ops: list[_Op] = []
        depth = 0
        start = 0
        for i, ch in enumerate(text + ","):
            if ch in "[(":
                depth += 1
            elif ch in "])":
                depth -= 1
            elif ch == "," and depth <= 0:
                piece = text[start:i]
                lead = len(piece) - len(piece.lstrip())
                if not piece.strip():
                    if i == len(text) and not ops:
                        break
                    raise self.err("empty operand", col + start, "operands are separated by single commas")
                ops.append(_Op(piece.strip(), col + start + lead))
                start = i + 1
        return ops

    def directive(self, text: str, col: int) -> None:
        words = text.split()
        name = words[0].lower()
        args = words[1:]
        if name == ".map":
            self.map_directive(args, col)
        elif name in (".type", ".prog_type"):
            if len(args) != 1 or args[0].lower() not in _PROG_TYPES:
                raise self.err(f"{name} needs one program type", col, "one of: " + ", ".join(_PROG_TYPES))
            self.prog_type = _PROG_TYPES[args[0].lower()]
        elif name == ".section":
            if len(args) != 1:
                raise self.err(".section needs one name", col, "e.g. .section xdp")
            self.section = args[0]
        elif name == ".license":
            if not args:
                raise self.err(".license needs a license name", col, "e.g. .license GPL")
            self.license = " ".join(args).strip('"')
        elif name in (".text", ".globl", ".global"):
            pass  # accepted for compatibility with compiler-style listings
        else:
            raise self.err(f"unknown directive {words[0]}", col,
                           "directives are .map, .type, .section and .license")

    def map_directive(self, args: list[str], col: int) -> None:
        usage = ".map NAME TYPE key=N value=N entries=N [flags=N] [init=HEX]"
        if len(args) < 2:
            raise self.err(".map needs a name and a type", col, usage)
        name, type_name = args[0], args[1].lower()
        if not _IDENT.match(name):
            raise self.err(f"bad map name {name!r}", col, usage)
        if any(m.name == name for m in self.maps):
            raise self.err(f"map {name!r} is declared twice", col)
        types = {t.kernel_name: t for t in MapType if t != MapType.UNSPEC}
        if type_name not in types:
            near = difflib.get_close_matches(type_name, types, n=3)
            raise self.err(f"unknown map type {args[1]!r}", col,
                           f"did you mean {', '.join(near)}?" if near else "e.g. hash, array, percpu_array, lru_hash")
        fields = {"key": None, "value": None, "entries": None, "flags": 0}
        initial = None
        for arg in args[2:]:
            key, sep, value = arg.partition("=")
            if key == "init" and sep:
                if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", value):
                    raise self.err("init= takes the initial bytes as hex digits", col, "e.g. init=00ff10")
                initial = bytes.fromhex(value)
                continue
            if not sep or key not in fields:
                raise self.err(f"bad map attribute {arg!r}", col, usage)
            fields[key] = self.number(value, col, f"map {key}")
            if not 0 <= fields[key] < (1 << 32):
                raise self.err(f"map {key} {value} is out of range", col, "sizes are unsigned 32-bit")
        missing = [k for k, v in fields.items() if v is None]
        if missing:
            raise self.err(f".map {name} is missing {', '.join(missing)}", col, usage)
        self.maps.append(MapDef(name, types[type_name], fields["key"], fields["value"], fields["entries"],
                                fields["flags"], initial=initial, origin="asm"))

    def lookup(self, mnemonic: str, col: int) -> Spelling:
        name = ALIASES.get(mnemonic, mnemonic)
        sp = BY_MNEMONIC.get(name)
        if sp is None:
            known = sorted(set(BY_MNEMONIC) | set(ALIASES))
            near = difflib.get_close_matches(mnemonic, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(near)}?" if near else "see docs/ebpf-asm.md for the mnemonics"
            raise self.err(f"unknown mnemonic {mnemonic!r}", col, hint)
        return sp

    def instruction(self, text: str, col: int) -> None:
        m = re.match(r"[^\s,\[]+", text)
        mnemonic = m.group(0).lower() if m else text[:1]
        end = len(mnemonic)
        if mnemonic == "lock":
            # lock [fetch] OP [dst+off], src
            words = re.match(r"lock((?:\s+[A-Za-z0-9_]+)+)", text, re.IGNORECASE)
            if not words:
                raise self.err("lock needs an operation", col, "e.g. lock add [%r1+0], %r2")
            mnemonic = "lock " + " ".join(words.group(1).lower().split())
            end = words.end()
        sp = self.lookup(mnemonic, col)
        ops = self.split_operands(text[end:], col + end)
        index = len(self.insns)
        insn = self.encode(sp, ops, index, col)
        try:
            validate(insn, self.pc)
        except DecodeError as exc:
            raise self.err(f"invalid instruction: {exc.message.split(': ', 1)[-1]}", col) from None
        if insn.is_exit and self.first_exit is None:
            self.first_exit = self.pc
        self.insns.append(insn)
        self.locs.append(SourceLoc(self.filename, self.line, col, text.strip()))
        self.pc += insn.width

    def want(self, sp: Spelling, ops: list[_Op], n: int, col: int, shape: str) -> None:
        if len(ops) != n:
            raise self.err(f"{sp.mnemonic} takes {n} operand{'s' if n != 1 else ''}, got {len(ops)}", col,
                           f"write: {sp.mnemonic} {shape}".rstrip())

    def encode(self, sp: Spelling, ops: list[_Op], index: int, col: int) -> Insn:  # noqa: C901 - one case per form
        f = sp.form
        if f is Form.ALU:
            self.want(sp, ops, 2, col, "%rD, %rS|IMM")
            dst = self.reg(ops[0])
            if self.is_reg(ops[1]):
                return Insn(sp.code | Source.X, dst, self.reg(ops[1]), sp.off, 0)
            return Insn(sp.code | Source.K, dst, 0, sp.off, self.imm32(ops[1]))
        if f is Form.MOVSX:
            self.want(sp, ops, 2, col, "%rD, %rS")
            if not self.is_reg(ops[1]):
                raise self.err(f"{sp.mnemonic} sign-extends a register, not an immediate", ops[1].col,
                               "use mov with the sign-extended value instead")
            return Insn(sp.code | Source.X, self.reg(ops[0]), self.reg(ops[1]), sp.off, 0)
        if f in (Form.NEG, Form.END):
            self.want(sp, ops, 1, col, "%rD")
            return Insn(sp.code, self.reg(ops[0]), 0, 0, sp.imm)
        if f is Form.JCOND:
            self.want(sp, ops, 3, col, "%rD, %rS|IMM, +OFF|LABEL")
            dst = self.reg(ops[0])
            off = self.target(ops[2], index, "off")
            if self.is_reg(ops[1]):
                return Insn(sp.code | Source.X, dst, self.reg(ops[1]), off, 0)
            return Insn(sp.code | Source.K, dst, 0, off, self.imm32(ops[1]))
        if f is Form.JA:
            self.want(sp, ops, 1, col, "+OFF|LABEL")
            return Insn(sp.code, 0, 0, self.target(ops[0], index, "off"), 0)
        if f is Form.GOTOL:
            self.want(sp, ops, 1, col, "+OFF|LABEL")
            return Insn(sp.code, 0, 0, 0, self.target(ops[0], index, "imm", bits=32))
        if f is Form.EXIT:
            self.want(sp, ops, 0, col, "")
            return Insn(sp.code)
        if f is Form.CALL:
            return self.encode_call(sp, ops, index, col)
        if f is Form.LDDW:
            return self.encode_lddw(sp, ops, index, col)
        if f is Form.LDX:
            self.want(sp, ops, 2, col, "%rD, [%rS+OFF]")
            dst = self.reg(ops[0])
            base, off = self.mem(ops[1])
            return Insn(sp.code, dst, base, off, 0)
        if f is Form.ST:
            self.want(sp, ops, 2, col, "[%rD+OFF], IMM")
            base, off = self.mem(ops[0])
            return Insn(sp.code, base, 0, off, self.imm32(ops[1]))
        if f in (Form.STX, Form.ATOMIC):
            self.want(sp, ops, 2, col, "[%rD+OFF], %rS")
            base, off = self.mem(ops[0])
            return Insn(sp.code, base, self.reg(ops[1]), off, s32(sp.imm))
        if f is Form.LDABS:
            self.want(sp, ops, 1, col, "IMM")
            text = ops[0].text
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            return Insn(sp.code, 0, 0, 0, self.imm32(_Op(text, ops[0].col)))
        if f is Form.LDIND:
            if len(ops) == 1 and ops[0].text.startswith("["):
                base, off = self.mem(ops[0])
                return Insn(sp.code, 0, base, 0, off)
            self.want(sp, ops, 2, col, "%rS, IMM")
            return Insn(sp.code, 0, self.reg(ops[0]), 0, self.imm32(ops[1]))
        raise AssertionError(f)  # pragma: no cover

    def encode_call(self, sp: Spelling, ops: list[_Op], index: int, col: int) -> Insn:
        shape = "HELPER_ID|HELPER_NAME|+OFF|LABEL|kfunc ID"
        if len(ops) != 1:
            self.want(sp, ops, 1, col, shape)
        op = ops[0]
        words = op.text.split()
        kind = None
        if len(words) == 2 and words[0].lower() in ("helper", "local", "runtime", "kfunc"):
            kind = words[0].lower()
            op = _Op(words[1], op.col + op.text.index(words[1], len(words[0])))
        elif len(words) != 1:
            raise self.err(f"bad call target {op.text!r}", op.col, f"write: call {shape}")
        text = op.text
        if kind in ("runtime", "kfunc"):
            return Insn(sp.code, 0, CallKind.KFUNC, 0, self.imm32(op))
        if kind == "local" or (kind is None and (text[:1] in "+-" or (_IDENT.match(text) and not self.helper_id(text)))):
            return Insn(sp.code, 0, CallKind.LOCAL, 0, self.target(op, index, "imm", bits=32))
        helper = self.helper_id(text) if _IDENT.match(text) else None
        if helper is not None:
            # A label of that name wins, resolved later; remember the helper as the fallback.
            self.fixups.append(_Fixup(index, self.pc, text, "helper", self.line, op.col))
            return Insn(sp.code, 0, CallKind.HELPER, 0, helper)
        return Insn(sp.code, 0, CallKind.HELPER, 0, self.imm32(op))

    @staticmethod
    def helper_id(name: str) -> int | None:
        name = name.removeprefix("bpf_")
        member = Helper.__members__.get(name)
        return int(member) if member is not None else None

    def encode_lddw(self, sp: Spelling, ops: list[_Op], index: int, col: int) -> Insn:
        self.want(sp, ops, 2, col, "%rD, IMM64|map:NAME|map_value:NAME+OFF|KIND(ARGS)")
        dst = self.reg(ops[0])
        op = ops[1]
        text = op.text
        low = text.lower()
        if low.startswith("map:") or low.startswith("map_value:"):
            kind, _, ref = text.partition(":")
            ref = ref.strip()
            parts = re.match(r"([^+\-\s]*)\s*(?:([+-])\s*(.*))?\Z", ref)  # None: "map:a b" (no +/-)
            name, sign, off_text = parts.groups() if parts else (None, None, None)
            if not _IDENT.match(name or ""):
                raise self.err(f"bad map reference {text!r}", op.col, "write map:NAME or map_value:NAME+OFFSET")
            self.map_refs.append((index, name, self.line, op.col))
            if kind.lower() == "map":
                if sign:
                    raise self.err("map:NAME takes no offset", op.col, "use map_value:NAME+OFFSET for a value address")
                return Insn(sp.code, dst, PseudoSrc.MAP_FD, 0, 0, 0)
            off = self.imm32(_Op((sign or "+") + (off_text or "0"), op.col)) if sign else 0
            return Insn(sp.code, dst, PseudoSrc.MAP_VALUE, 0, 0, off)
        m = _PSEUDO.match(text)
        if m:
            kind = m.group(1).lower()
            if kind not in _NAMES_BY_PSEUDO:
                raise self.err(f"unknown ld_imm64 source {m.group(1)!r}", op.col,
                               "one of: " + ", ".join(_NAMES_BY_PSEUDO))
            src = _NAMES_BY_PSEUDO[kind]
            args = [a.strip() for a in m.group(2).split(",")]
            if not 1 <= len(args) <= 2 or not all(args):
                raise self.err(f"{kind}(...) takes one or two numbers", op.col, f"e.g. {kind}(0) or {kind}(0, 16)")
            acol = op.col + len(m.group(1)) + 1
            if src == PseudoSrc.FUNC and len(args) == 1 and _IDENT.match(args[0]):
                self.fixups.append(_Fixup(index, self.pc, args[0], "func", self.line, acol))
                return Insn(sp.code, dst, src, 0, 0, 0)
            imm = self.imm32(_Op(args[0], acol))
            imm2 = self.imm32(_Op(args[1], acol)) if len(args) == 2 else 0
            return Insn(sp.code, dst, src, 0, imm, imm2)
        value = self.number(text, op.col, "64-bit immediate")
        if not -(1 << 63) <= value < (1 << 64):
            raise self.err(f"immediate {text} does not fit in 64 bits", op.col)
        return Insn.ld_imm64(dst, value)

    # -- second pass -------------------------------------------------------------
    def resolve(self) -> None:
        for fx in self.fixups:
            insn = self.insns[fx.index]
            if fx.label in self.labels:
                target = self.labels[fx.label][0]
            elif fx.field == "helper":
                continue  # no label of that name: it stays a helper call
            elif fx.label == "exit" and self.first_exit is not None:
                target = self.first_exit  # bpf_conformance's implicit label
            else:
                near = difflib.get_close_matches(fx.label, list(self.labels), n=3)
                raise self.err(f"undefined label {fx.label!r}", fx.col,
                               f"did you mean {', '.join(near)}?" if near else "define it as `name:` before an instruction",
                               line=fx.line)
            delta = target - fx.pc - 1
            if fx.field == "off":
                if not -(1 << 15) <= delta < (1 << 15):
                    raise self.err(f"label {fx.label!r} is {delta} slots away, too far for a 16-bit offset", fx.col,
                                   "use ja32 (gotol) to jump further", line=fx.line)
                insn = replace(insn, off=delta)
            elif fx.field == "helper":
                insn = replace(insn, src=CallKind.LOCAL, imm=delta)
            else:
                insn = replace(insn, imm=delta)
            self.insns[fx.index] = insn
        names = {m.name: i for i, m in enumerate(self.maps)}
        for index, name, line, col in self.map_refs:
            if name not in names:
                near = difflib.get_close_matches(name, list(names), n=3)
                raise self.err(f"undefined map {name!r}", col,
                               f"did you mean {', '.join(near)}?" if near else
                               "declare it: .map NAME TYPE key=N value=N entries=N", line=line)
            self.insns[index] = replace(self.insns[index], imm=names[name])
        try:
            check_jumps(self.insns)
        except DecodeError as exc:
            bad = int(re.search(r"insn (\d+)", exc.message).group(1))
            loc = self.locs[[i for i, pc in enumerate(_pcs(self.insns)) if pc == bad][0]]
            raise self.err(exc.message.split(": ", 1)[-1], loc.col, "jump targets must be instructions of this program",
                           line=loc.line) from None

    def finish(self) -> Program:
        if not self.insns:
            raise AsmError("no instructions", where=f"{self.filename}:1:1", hint="a program needs at least `exit`")
        stem = Path(self.filename).stem.strip("<>") or "input"
        pcs = _pcs(self.insns)
        by_pc: dict[int, str] = {}
        for name, (pc, _line) in self.labels.items():
            by_pc.setdefault(pc, name)
        functions = {0: by_pc.get(0, stem)}
        for pc, insn in zip(pcs, self.insns):
            if insn.is_local_call:
                target = insn.jump_target(pc)
                functions.setdefault(target, by_pc.get(target, f"sub_{target}"))
            elif insn.is_ld_imm64 and insn.src == PseudoSrc.FUNC:  # a callback (bpf_loop) is a function too
                target = pc + 1 + insn.imm
                if target in pcs:  # one outside the program assembles (as it decodes); the analysis reports it
                    functions.setdefault(target, by_pc.get(target, f"sub_{target}"))
        return Program(
            name=stem,
            insns=tuple(self.insns),
            section=self.section,
            prog_type=self.prog_type,
            maps=tuple(self.maps),
            license=self.license,
            functions=tuple(Function(name, pc) for pc, name in sorted(functions.items())),
            line_info=dict(zip(pcs, self.locs)),
            source_path=self.filename,
        )


def _pcs(insns: list[Insn]) -> list[int]:
    out, pc = [], 0
    for insn in insns:
        out.append(pc)
        pc += insn.width
    return out


def assemble(text: str, *, filename: str = "<input>") -> Program:
    """Assemble eBPF assembly source into a :class:`Program` (raises :class:`AsmError`)."""
    return _Assembler(text, filename).run()


def assemble_file(path: str | Path) -> Program:
    """Read and assemble a file; unreadable files raise :class:`AsmError` too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AsmError(f"cannot read {path}: {exc}", hint="give a readable UTF-8 text file") from None
    return assemble(text, filename=str(path))


__all__ = ["assemble", "assemble_file"]

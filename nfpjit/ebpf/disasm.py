"""eBPF disassembly: the mnemonic table shared with the assembler, our formatter, and capstone's view.

The syntax is the one uBPF, rbpf and bpf_conformance use (``mov %r0, 1``,
``ldxw %r2, [%r1+4]``, ``jeq %r1, 8, +2``, ``lock fetch add [%r1+0], %r2``);
``docs/ebpf-asm.md`` describes it.  :data:`SPELLINGS` is derived once from the
enums in :mod:`nfpjit.ebpf.opcodes` and is the only mnemonic table: the
assembler (:mod:`nfpjit.ebpf.asm`) reads mnemonics through it and
:func:`format_insn` writes them through it, so ``assemble(disassemble(p))``
gives back the same bytes for every instruction the decoder accepts.

:func:`capstone_text` asks capstone (``CS_ARCH_BPF``) for its own rendering, an
independent reading used in listings and cross-checks; :func:`insn_text` uses it
where capstone renders the instruction faithfully and falls back to ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from nfpjit.bits import u32
from nfpjit.ebpf.insn import Insn, pcs_of
from nfpjit.ebpf.opcodes import (
    SOURCE_MASK,
    AluOp,
    AtomicOp,
    CallKind,
    InsnClass,
    JmpOp,
    Mode,
    ProgType,
    PseudoSrc,
    Size,
    Source,
)


class Form(Enum):
    """Operand shape of a mnemonic."""

    ALU = "alu"          # op dst, src|imm
    MOVSX = "movsx"      # op dst, src (register only)
    NEG = "neg"          # op dst
    END = "end"          # op dst (width in the mnemonic)
    JCOND = "jcond"      # op dst, src|imm, target
    JA = "ja"            # op target (off)
    GOTOL = "gotol"      # op target (imm)
    CALL = "call"        # call helper | +-N | label | kfunc N
    EXIT = "exit"
    LDDW = "lddw"        # lddw dst, imm64 | pseudo
    LDX = "ldx"          # op dst, [src+off]
    ST = "st"            # op [dst+off], imm
    STX = "stx"          # op [dst+off], src
    ATOMIC = "atomic"    # lock [fetch] op [dst+off], src
    LDABS = "ldabs"      # op imm
    LDIND = "ldind"      # op src, imm


@dataclass(frozen=True)
class Spelling:
    """One mnemonic: the opcode byte it stands for (source bit clear where the operand picks it)
    and the field it fixes besides the opcode (``off`` for sdiv/smod/movsx, ``imm`` for byte swaps
    and atomics)."""

    mnemonic: str
    form: Form
    code: int
    off: int = 0
    imm: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.code, self.off, self.imm)


_SIZE_SUFFIX = {Size.B: "b", Size.H: "h", Size.W: "w", Size.DW: "dw"}
_CLASS_SUFFIX = {InsnClass.ALU64: "", InsnClass.ALU: "32"}
_JCLASS_SUFFIX = {InsnClass.JMP: "", InsnClass.JMP32: "32"}


def _build() -> tuple[tuple[Spelling, ...], dict[str, str]]:
    spell: list[Spelling] = []
    aliases: dict[str, str] = {}
    plain_alu = [op for op in AluOp if op not in (AluOp.NEG, AluOp.END)]
    for cls, suffix in _CLASS_SUFFIX.items():
        for op in plain_alu:
            name = op.name.lower()
            spell.append(Spelling(name + suffix, Form.ALU, cls | op))
            if op in (AluOp.DIV, AluOp.MOD):
                spell.append(Spelling("s" + name + suffix, Form.ALU, cls | op, off=1))
        spell.append(Spelling("neg" + suffix, Form.NEG, cls | AluOp.NEG))
    for op in plain_alu:
        aliases[op.name.lower() + "64"] = op.name.lower()
    aliases.update({"sdiv64": "sdiv", "smod64": "smod", "neg64": "neg"})
    # movsx: bpf_conformance spells source width then destination width (movsx832 = s8 -> 32 bits).
    for width in (8, 16, 32):
        spell.append(Spelling(f"movsx{width}64", Form.MOVSX, InsnClass.ALU64 | AluOp.MOV, off=width))
        aliases[f"movsx{width}"] = f"movsx{width}64"
    for width in (8, 16):
        spell.append(Spelling(f"movsx{width}32", Form.MOVSX, InsnClass.ALU | AluOp.MOV, off=width))
    for width in (16, 32, 64):
        spell.append(Spelling(f"le{width}", Form.END, InsnClass.ALU | AluOp.END | Source.K, imm=width))
        spell.append(Spelling(f"be{width}", Form.END, InsnClass.ALU | AluOp.END | Source.X, imm=width))
        spell.append(Spelling(f"bswap{width}", Form.END, InsnClass.ALU64 | AluOp.END | Source.K, imm=width))
        aliases[f"swap{width}"] = f"bswap{width}"
    for cls, suffix in _JCLASS_SUFFIX.items():
        for op in sorted(JmpOp):
            if op in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT):
                continue
            spell.append(Spelling(op.name.lower() + suffix, Form.JCOND, cls | op))
    spell.append(Spelling("ja", Form.JA, InsnClass.JMP | JmpOp.JA))
    spell.append(Spelling("ja32", Form.GOTOL, InsnClass.JMP32 | JmpOp.JA))
    aliases["gotol"] = "ja32"
    aliases["jmp"] = "ja"  # capstone's spelling
    spell.append(Spelling("call", Form.CALL, InsnClass.JMP | JmpOp.CALL))
    spell.append(Spelling("exit", Form.EXIT, InsnClass.JMP | JmpOp.EXIT))
    spell.append(Spelling("lddw", Form.LDDW, InsnClass.LD | Mode.IMM | Size.DW))
    for size, sfx in _SIZE_SUFFIX.items():
        spell.append(Spelling("ldx" + sfx, Form.LDX, InsnClass.LDX | Mode.MEM | size))
        spell.append(Spelling("st" + sfx, Form.ST, InsnClass.ST | Mode.MEM | size))
        spell.append(Spelling("stx" + sfx, Form.STX, InsnClass.STX | Mode.MEM | size))
        if size != Size.DW:
            spell.append(Spelling("ldxs" + sfx, Form.LDX, InsnClass.LDX | Mode.MEMSX | size))
            spell.append(Spelling("ldabs" + sfx, Form.LDABS, InsnClass.LD | Mode.ABS | size))
            spell.append(Spelling("ldind" + sfx, Form.LDIND, InsnClass.LD | Mode.IND | size))
    for size, suffix in ((Size.DW, ""), (Size.W, "32")):
        code = InsnClass.STX | Mode.ATOMIC | size
        for aop in AtomicOp:
            if aop.alu_op is not None:
                base = aop.alu_op.name.lower()
                name = ("lock fetch " if aop.fetches else "lock ") + base + suffix
            else:
                name = "lock " + aop.name.lower() + suffix
            spell.append(Spelling(name, Form.ATOMIC, code, imm=int(aop)))
        # uBPF's and capstone's names for the original atomic add.
        aliases["stxxadd" + _SIZE_SUFFIX[size]] = "lock add" + suffix
        aliases["xadd" + _SIZE_SUFFIX[size]] = "lock add" + suffix
    return tuple(spell), aliases


SPELLINGS, ALIASES = _build()
BY_MNEMONIC: dict[str, Spelling] = {s.mnemonic: s for s in SPELLINGS}
_BY_KEY: dict[tuple[int, int, int], Spelling] = {s.key: s for s in SPELLINGS}


def spelling_of(insn: Insn) -> Spelling:
    """The table entry for a (valid) instruction."""
    code = insn.code
    cls = code & 0x07
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        op = code & 0xF0
        if op == AluOp.END:
            return _BY_KEY[(code, 0, insn.imm)]
        if op == AluOp.NEG:
            return _BY_KEY[(code, 0, 0)]
        off = insn.off if op in (AluOp.DIV, AluOp.MOD, AluOp.MOV) else 0
        return _BY_KEY[(code & ~SOURCE_MASK, off, 0)]
    if cls in (InsnClass.JMP, InsnClass.JMP32) and (code & 0xF0) not in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT):
        return _BY_KEY[(code & ~SOURCE_MASK, 0, 0)]
    if cls == InsnClass.STX and (code & 0xE0) == Mode.ATOMIC:
        return _BY_KEY[(code, 0, u32(insn.imm))]
    return _BY_KEY[(code, 0, 0)]


# -- our formatter ---------------------------------------------------------------

def reg(n: int) -> str:
    return f"%r{n}"


def fmt_imm(value: int) -> str:
    """Small numbers in decimal, large ones in (signed) hex."""
    if -256 < value < 256:
        return str(value)
    return f"-0x{-value:x}" if value < 0 else f"0x{value:x}"


def fmt_target(offset: int) -> str:
    return f"+{offset}" if offset >= 0 else str(offset)


def fmt_mem(base: int, off: int) -> str:
    return f"[{reg(base)}{'+' if off >= 0 else '-'}{fmt_imm(abs(off))}]"


PSEUDO_NAMES = {
    PseudoSrc.MAP_FD: "map_fd",
    PseudoSrc.MAP_VALUE: "map_value",
    PseudoSrc.BTF_ID: "btf_id",
    PseudoSrc.FUNC: "func",
    PseudoSrc.MAP_IDX: "map_idx",
    PseudoSrc.MAP_IDX_VALUE: "map_idx_value",
}


def format_insn(insn: Insn, pc: int = 0) -> str:
    """One instruction in assembler syntax; jump targets as ``+N``/``-N`` slot offsets.

    ``pc`` is accepted for symmetry with :func:`insn_text` (the text does not depend on it).
    """
    sp = spelling_of(insn)
    m, f = sp.mnemonic, sp.form
    x = bool(insn.code & SOURCE_MASK)
    if f is Form.ALU:
        return f"{m} {reg(insn.dst)}, {reg(insn.src) if x else fmt_imm(insn.imm)}"
    if f is Form.MOVSX:
        return f"{m} {reg(insn.dst)}, {reg(insn.src)}"
    if f in (Form.NEG, Form.END):
        return f"{m} {reg(insn.dst)}"
    if f is Form.JCOND:
        return f"{m} {reg(insn.dst)}, {reg(insn.src) if x else fmt_imm(insn.imm)}, {fmt_target(insn.off)}"
    if f is Form.JA:
        return f"{m} {fmt_target(insn.off)}"
    if f is Form.GOTOL:
        return f"{m} {fmt_target(insn.imm)}"
    if f is Form.EXIT:
        return m
    if f is Form.CALL:
        if insn.src == CallKind.LOCAL:
            return f"call {fmt_target(insn.imm)}"
        if insn.src == CallKind.KFUNC:
            return f"call kfunc {fmt_imm(insn.imm)}"
        if insn.imm < 0:  # a bare signed number would read as a local call
            return f"call helper {fmt_imm(insn.imm)}"
        return f"call {fmt_imm(insn.imm)}"
    if f is Form.LDDW:
        if insn.src == PseudoSrc.IMM64:
            return f"{m} {reg(insn.dst)}, {fmt_imm(insn.imm64)}"
        args = fmt_imm(insn.imm) if insn.imm2 == 0 and insn.src != PseudoSrc.MAP_VALUE \
            else f"{fmt_imm(insn.imm)}, {fmt_imm(insn.imm2)}"
        return f"{m} {reg(insn.dst)}, {PSEUDO_NAMES[PseudoSrc(insn.src)]}({args})"
    if f is Form.LDX:
        return f"{m} {reg(insn.dst)}, {fmt_mem(insn.src, insn.off)}"
    if f is Form.ST:
        return f"{m} {fmt_mem(insn.dst, insn.off)}, {fmt_imm(insn.imm)}"
    if f in (Form.STX, Form.ATOMIC):
        return f"{m} {fmt_mem(insn.dst, insn.off)}, {reg(insn.src)}"
    if f is Form.LDABS:
        return f"{m} {fmt_imm(insn.imm)}"
    if f is Form.LDIND:
        return f"{m} {reg(insn.src)}, {fmt_imm(insn.imm)}"
    raise AssertionError(f)  # pragma: no cover - every Form is handled above


def disassemble(insns) -> str:
    """A program (a Program or a sequence of Insn) as assembler text, one instruction a line."""
    insns = tuple(getattr(insns, "insns", insns))
    return "".join(format_insn(i, pc) + "\n" for pc, i in zip(pcs_of(insns), insns))


PROG_TYPE_NAMES = {
    ProgType.XDP: "xdp",
    ProgType.SCHED_CLS: "sched_cls",
    ProgType.SCHED_ACT: "sched_act",
    ProgType.SOCKET_FILTER: "socket_filter",
    ProgType.KPROBE: "kprobe",
    ProgType.TRACEPOINT: "tracepoint",
}


def program_text(prog) -> str:
    """A whole :class:`~nfpjit.ebpf.program.Program` as source the assembler takes back.

    Besides the instructions it writes the directives (type, section, license, maps with
    their initial bytes), a label at each function start, local calls by function name and
    map references as ``map:NAME`` / ``map_value:NAME+OFF``.  Branches keep ``+N`` offsets.
    """
    lines = [f"# {prog.name}"]
    if prog.prog_type in PROG_TYPE_NAMES:
        lines.append(f".type {PROG_TYPE_NAMES[prog.prog_type]}")
    if prog.section and prog.section.split() == [prog.section]:
        lines.append(f".section {prog.section}")
    if prog.license:
        lines.append(f".license {prog.license}")
    for m in prog.maps:
        text = (f".map {m.name} {m.type.kernel_name} key={m.key_size} value={m.value_size} "
                f"entries={m.max_entries}")
        if m.flags:
            text += f" flags={m.flags}"
        if m.initial:
            text += f" init={m.initial.hex()}"
        lines.append(text)
    labels = {f.start_pc: f.name for f in prog.functions}
    nmaps = len(prog.maps)
    for pc, insn in zip(pcs_of(prog.insns), prog.insns):
        if pc in labels:
            lines.append(f"{labels[pc]}:")
        text = format_insn(insn, pc)
        if insn.is_local_call and insn.jump_target(pc) in labels:
            text = f"call {labels[insn.jump_target(pc)]}"
        elif insn.is_ld_imm64 and 0 <= insn.imm < nmaps:
            name = prog.maps[insn.imm].name
            if insn.src == PseudoSrc.MAP_FD and insn.imm2 == 0:
                text = f"lddw {reg(insn.dst)}, map:{name}"
            elif insn.src == PseudoSrc.MAP_VALUE:
                off = insn.imm2
                text = f"lddw {reg(insn.dst)}, map_value:{name}{'+' if off >= 0 else '-'}{abs(off)}"
        lines.append("    " + text)
    return "\n".join(lines) + "\n"


# -- capstone ----------------------------------------------------------------------

@lru_cache(maxsize=1)
def _capstone():
    try:
        import capstone
    except ImportError:  # pragma: no cover - capstone is a declared dependency
        return None
    md = capstone.Cs(capstone.CS_ARCH_BPF, capstone.CS_MODE_BPF_EXTENDED)
    md.detail = True
    return md


def capstone_insn(insn: Insn):
    """capstone's ``CsInsn`` for the instruction, or None where capstone does not decode it."""
    md = _capstone()
    if md is None:
        return None
    data = insn.encode()
    try:
        decoded = list(md.disasm(data, 0))
    except Exception:  # noqa: BLE001 - capstone's binding raises CsError; any failure means "no reading"
        return None
    if len(decoded) != 1 or decoded[0].size != len(data):
        return None
    return decoded[0]


def capstone_text(insn: Insn) -> str | None:
    """capstone's rendering (``mnemonic op_str``), or None where capstone cannot decode it."""
    ci = capstone_insn(insn)
    if ci is None:
        return None
    return f"{ci.mnemonic} {ci.op_str}".strip()


def capstone_faithful(insn: Insn) -> bool:
    """Whether capstone 5's text carries every field of the instruction.

    capstone 5 decodes the classic (v1/v2) encodings but ignores fields the later
    revisions gave meaning to: the offset of sdiv/smod/movsx, the operation in an
    atomic's imm (everything prints as ``xadd``), the pseudo source of an ld_imm64
    and the call kind.  For those its text would mislead.
    """
    if insn.is_alu and insn.off != 0:
        return False
    if insn.cls == InsnClass.STX and insn.mode == Mode.ATOMIC and insn.imm != AtomicOp.ADD:
        return False
    if insn.is_ld_imm64 and insn.src != PseudoSrc.IMM64:
        return False
    if insn.is_call and insn.src != CallKind.HELPER:
        return False
    return True


_CS_MEM_OFF = re.compile(r"\[(r\d+)\+0x([0-9a-f]+)\]")
_CS_JUMP_OFF = re.compile(r"\+0x([0-9a-f]+)$")


def _signed16(match_hex: str) -> int:
    value = int(match_hex, 16)
    return value - 0x10000 if value >= 0x8000 else value


def capstone_signed_offsets(insn: Insn, text: str) -> str:
    """capstone's text with the 16-bit offset shown signed (``[r10-0x8]``, not ``[r10+0xfff8]``)."""
    cls = insn.cls
    if cls in (InsnClass.LDX, InsnClass.ST, InsnClass.STX):
        def mem(m):
            off = _signed16(m.group(2))
            return f"[{m.group(1)}{'-' if off < 0 else '+'}0x{abs(off):x}]"
        return _CS_MEM_OFF.sub(mem, text)
    if insn.is_branch and cls == InsnClass.JMP:
        def jump(m):
            off = _signed16(m.group(1))
            return f"{'-' if off < 0 else '+'}0x{abs(off):x}"
        return _CS_JUMP_OFF.sub(jump, text)
    return text


def insn_text(insn: Insn, pc: int = 0) -> str:
    """Text for listings: capstone's (offsets shown signed) when it decodes the instruction
    faithfully, else ours."""
    if capstone_faithful(insn):
        text = capstone_text(insn)
        if text is not None:
            return capstone_signed_offsets(insn, text)
    return format_insn(insn, pc)


__all__ = [
    "Form", "Spelling", "SPELLINGS", "ALIASES", "BY_MNEMONIC", "PSEUDO_NAMES", "spelling_of",
    "format_insn", "disassemble", "program_text", "PROG_TYPE_NAMES", "capstone_insn", "capstone_text", "capstone_faithful", "capstone_signed_offsets", "insn_text",
    "fmt_imm",
]

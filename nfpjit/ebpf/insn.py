"""eBPF instructions as values: the :class:`Insn` dataclass, its binary encoding and the decoder.

The decoder accepts exactly the encodings RFC 9669 (v1-v4, plus the kernel's
legacy ld_abs/ld_ind and pseudo ld_imm64 sources) defines and rejects every
other one with a :class:`~nfpjit.errors.DecodeError` naming the instruction
index and the reason.  A 16-byte ld_imm64 is one :class:`Insn` spanning two
slots; positions ("pc") are counted in 8-byte slots, as jump offsets are.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nfpjit.bits import MASK32, s32, u32
from nfpjit.errors import DecodeError
from nfpjit.ebpf.opcodes import (
    CLASS_MASK,
    MODE_MASK,
    OP_MASK,
    SIZE_MASK,
    SOURCE_MASK,
    AluOp,
    AtomicOp,
    CallKind,
    InsnClass,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

SLOT = 8
_STRUCT = struct.Struct("<BBhi")
MAX_REG = 10
LD_IMM64_CODE = InsnClass.LD | Mode.IMM | Size.DW
_CLASSES = tuple(InsnClass(c) for c in range(CLASS_MASK + 1))  # code & CLASS_MASK -> class, without an enum call
_CALL_CODE = InsnClass.JMP | JmpOp.CALL   # the analysis asks these of every instruction many times
_EXIT_CODE = InsnClass.JMP | JmpOp.EXIT


@dataclass(frozen=True, slots=True)
class Insn:
    """One eBPF instruction.  ``imm2`` is the upper 32 bits of an ld_imm64 (0 otherwise)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    imm2: int = 0

    # -- fields ------------------------------------------------------------
    @property
    def cls(self) -> InsnClass:
        return _CLASSES[self.code & CLASS_MASK]

    @property
    def source(self) -> Source:
        return Source(self.code & SOURCE_MASK)

    @property
    def alu_op(self) -> AluOp:
        return AluOp(self.code & OP_MASK)

    @property
    def jmp_op(self) -> JmpOp:
        return JmpOp(self.code & OP_MASK)

    @property
    def size(self) -> Size:
        return Size(self.code & SIZE_MASK)

    @property
    def mode(self) -> Mode:
        return Mode(self.code & MODE_MASK)

    # -- kinds -------------------------------------------------------------
    @property
    def is_alu(self) -> bool:
        return self.code & CLASS_MASK in (InsnClass.ALU, InsnClass.ALU64)

    @property
    def is_jmp(self) -> bool:
        return self.code & CLASS_MASK in (InsnClass.JMP, InsnClass.JMP32)

    @property
    def is_ld_imm64(self) -> bool:
        return self.code == LD_IMM64_CODE

    @property
    def is_call(self) -> bool:
        return self.code & ~SOURCE_MASK == _CALL_CODE

    @property
    def is_exit(self) -> bool:
        return self.code & ~SOURCE_MASK == _EXIT_CODE

    @property
    def is_helper_call(self) -> bool:
        return self.is_call and self.src == CallKind.HELPER

    @property
    def is_local_call(self) -> bool:
        return self.is_call and self.src == CallKind.LOCAL

    @property
    def is_branch(self) -> bool:
        """A jump (conditional or not) within the function: not call/exit."""
        return self.is_jmp and self.jmp_op not in (JmpOp.CALL, JmpOp.EXIT)

    @property
    def is_conditional(self) -> bool:
        return self.is_branch and self.jmp_op != JmpOp.JA

    @property
    def width(self) -> int:
        """Number of 8-byte slots the instruction occupies."""
        return 2 if self.is_ld_imm64 else 1

    @property
    def imm64(self) -> int:
        """The unsigned 64-bit immediate of an ld_imm64."""
        return (u32(self.imm2) << 32) | u32(self.imm)

    def jump_offset(self) -> int:
        """Slot offset of a branch (``gotol`` keeps it in ``imm``)."""
        if self.cls == InsnClass.JMP32 and self.jmp_op == JmpOp.JA:
            return self.imm
        return self.off

    def jump_target(self, pc: int) -> int:
        """The pc a branch at ``pc`` goes to when taken (or a local call's callee)."""
        if self.is_local_call:
            return pc + 1 + self.imm
        return pc + 1 + self.jump_offset()

    # -- encoding ----------------------------------------------------------
    def encode(self) -> bytes:
        first = _STRUCT.pack(self.code, (self.src << 4) | self.dst, self.off, self.imm)
        if self.is_ld_imm64:
            return first + _STRUCT.pack(0, 0, 0, self.imm2)
        return first

    @classmethod
    def ld_imm64(cls, dst: int, value: int, src: int = PseudoSrc.IMM64) -> "Insn":
        value &= (1 << 64) - 1
        return cls(LD_IMM64_CODE, dst, src, 0, s32(value & MASK32), s32(value >> 32))


def encode_program(insns: list[Insn] | tuple[Insn, ...]) -> bytes:
    return b"".join(i.encode() for i in insns)


# -- decoding -----------------------------------------------------------------

def _check(ok: bool, index: int, why: str, where: str | None) -> None:
    if not ok:
        loc = f"{where}: " if where else ""
        raise DecodeError(f"{loc}insn {index}: {why}")


def _validate(insn: Insn, pc: int, where: str | None) -> None:  # noqa: C901 - one rule per line
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    chk = lambda ok, why: _check(ok, pc, why, where)  # noqa: E731
    chk(dst <= MAX_REG, f"invalid destination register r{dst}")
    cls = InsnClass(code & CLASS_MASK)
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        op = code & OP_MASK
        chk(op in AluOp._value2member_map_, f"unknown ALU operation 0x{op:02x} (opcode 0x{code:02x})")
        op = AluOp(op)
        x = bool(code & SOURCE_MASK)
        if op == AluOp.END:
            chk(src == 0 and off == 0, "reserved fields of a byte swap must be zero")
            chk(imm in (16, 32, 64), f"byte swap width must be 16, 32 or 64, not {imm}")
            chk(cls == InsnClass.ALU or not x, "ALU64 byte swap (bswap) must use source bit 0")
            return
        if op == AluOp.NEG:
            chk(not x and src == 0 and off == 0 and imm == 0, "reserved fields of neg must be zero")
            return
        if x:
            chk(src <= MAX_REG, f"invalid source register r{src}")
            chk(imm == 0, "register-source ALU instruction has a non-zero immediate")
        else:
            chk(src == 0, "immediate-source ALU instruction has a non-zero source register")
        if op in (AluOp.DIV, AluOp.MOD):
            chk(off in (0, 1), f"division offset must be 0 (unsigned) or 1 (signed), not {off}")
        elif op == AluOp.MOV and x:
            allowed = (0, 8, 16, 32) if cls == InsnClass.ALU64 else (0, 8, 16)
            chk(off in allowed, f"movsx width {off} is not valid here")
        else:
            chk(off == 0, "reserved offset field of an ALU instruction must be zero")
        return
    if cls in (InsnClass.JMP, InsnClass.JMP32):
        op = code & OP_MASK
        chk(op in JmpOp._value2member_map_, f"unknown jump operation 0x{op:02x} (opcode 0x{code:02x})")
        op = JmpOp(op)
        x = bool(code & SOURCE_MASK)
        if op == JmpOp.JA:
            chk(not x and src == 0 and dst == 0, "reserved fields of ja must be zero")
            if cls == InsnClass.JMP:
                chk(imm == 0, "ja has a non-zero immediate (gotol is a JMP32 ja)")
            else:
                chk(off == 0, "gotol keeps its offset in imm: off must be zero")
            return
        if op in (JmpOp.CALL, JmpOp.EXIT):
            chk(cls == InsnClass.JMP, f"{op.name.lower()} exists only in the JMP class")
            chk(not x and dst == 0 and off == 0, f"reserved fields of {op.name.lower()} must be zero")
            if op == JmpOp.EXIT:
                chk(src == 0 and imm == 0, "reserved fields of exit must be zero")
            else:
                chk(src in CallKind._value2member_map_, f"unknown call kind src={src}")
            return
        if x:
            chk(src <= MAX_REG, f"invalid source register r{src}")
            chk(imm == 0, "register-source jump has a non-zero immediate")
        else:
            chk(src == 0, "immediate-source jump has a non-zero source register")
        return
    size = Size(code & SIZE_MASK)
    mode = code & MODE_MASK
    chk(mode in Mode._value2member_map_, f"unknown memory mode 0x{mode:02x} (opcode 0x{code:02x})")
    mode = Mode(mode)
    if cls == InsnClass.LD:
        if mode == Mode.IMM:
            chk(size == Size.DW, f"unknown opcode 0x{code:02x} (ld_imm needs size DW)")
            chk(off == 0, "reserved offset of ld_imm64 must be zero")
            chk(src in PseudoSrc._value2member_map_, f"unknown ld_imm64 source {src}")
            return
        chk(mode in (Mode.ABS, Mode.IND), f"unknown opcode 0x{code:02x} (LD class takes IMM, ABS or IND)")
        chk(size != Size.DW, "ld_abs/ld_ind cannot load 8 bytes")
        chk(dst == 0 and off == 0, "reserved fields of ld_abs/ld_ind must be zero")
        if mode == Mode.ABS:
            chk(src == 0, "ld_abs has a non-zero source register")
        else:
            chk(src <= MAX_REG, f"invalid source register r{src}")
        return
    chk(src <= MAX_REG, f"invalid source register r{src}")
    if cls == InsnClass.LDX:
        chk(mode in (Mode.MEM, Mode.MEMSX), f"unknown opcode 0x{code:02x} (LDX takes MEM or MEMSX)")
        chk(not (mode == Mode.MEMSX and size == Size.DW), "sign-extending load of 8 bytes does not exist")
        chk(imm == 0, "load has a non-zero immediate")
        return
    if cls == InsnClass.ST:
        chk(mode == Mode.MEM, f"unknown opcode 0x{code:02x} (ST takes MEM)")
        chk(src == 0, "store-immediate has a non-zero source register")
        return
    chk(mode in (Mode.MEM, Mode.ATOMIC), f"unknown opcode 0x{code:02x} (STX takes MEM or ATOMIC)")
    if mode == Mode.MEM:
        chk(imm == 0, "store has a non-zero immediate")
    else:
        chk(size in (Size.W, Size.DW), "atomic operations are 32 or 64 bit")
        chk(u32(imm) in AtomicOp._value2member_map_, f"unknown atomic operation 0x{u32(imm):x}")


def decode(data: bytes, *, where: str | None = None) -> list[Insn]:
    """Decode and validate raw little-endian bytecode; jumps are checked to land on instructions."""
    if len(data) % SLOT:
        loc = f"{where}: " if where else ""
        raise DecodeError(f"{loc}bytecode length {len(data)} is not a multiple of 8")
    nslots = len(data) // SLOT
    insns: list[Insn] = []
    pcs: list[int] = []
    pc = 0
    while pc < nslots:
        code, regs, off, imm = _STRUCT.unpack_from(data, pc * SLOT)
        insn = Insn(code, regs & 0x0F, regs >> 4, off, imm)
        if insn.is_ld_imm64:
            _check(pc + 1 < nslots, pc, "ld_imm64 is truncated (its second half is missing)", where)
            code2, regs2, off2, imm2 = _STRUCT.unpack_from(data, (pc + 1) * SLOT)
            _check(code2 == 0 and regs2 == 0 and off2 == 0, pc,
                   "second half of ld_imm64 must have zero code, registers and offset", where)
            insn = Insn(code, insn.dst, insn.src, off, imm, imm2)
        _validate(insn, pc, where)
        insns.append(insn)
        pcs.append(pc)
        pc += insn.width
    check_jumps(insns, where=where)
    return insns


def pcs_of(insns: list[Insn] | tuple[Insn, ...]) -> list[int]:
    """The slot index of every instruction."""
    pcs, pc = [], 0
    for insn in insns:
        pcs.append(pc)
        pc += insn.width
    return pcs


def check_jumps(insns: list[Insn] | tuple[Insn, ...], *, where: str | None = None) -> None:
    """Every branch and local call must land on the first slot of an instruction."""
    pcs = pcs_of(insns)
    starts = set(pcs)
    for pc, insn in zip(pcs, insns):
        if insn.is_branch or insn.is_local_call:
            target = insn.jump_target(pc)
            _check(target in starts, pc,
                   f"jump to {target} is outside the program or into the middle of an ld_imm64", where)


def validate(insn: Insn, pc: int = 0, *, where: str | None = None) -> None:
    """Raise :class:`DecodeError` unless ``insn`` is a valid encoding (the checks :func:`decode` makes)."""
    _validate(insn, pc, where)


def decode_one(word: bytes) -> Insn:
    """Decode a single 8-byte slot without program-level checks (for tools and tests)."""
    code, regs, off, imm = _STRUCT.unpack(word)
    insn = Insn(code, regs & 0x0F, regs >> 4, off, imm)
    _validate(insn, 0, None)
    return insn


__all__ = ["Insn", "decode", "decode_one", "validate", "encode_program", "pcs_of", "check_jumps", "SLOT"]

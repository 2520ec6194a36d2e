"""What each NFP-32 instruction does: one semantic handler per table entry, keyed by :class:`Op`.

Handlers are registered with ``@semantics(Op.X, ...)`` and take the machine
and the decoded :class:`~nfpjit.isa.table.Instruction`; they read operands
through the machine (which charges LM/transfer-register accesses) and
report faults by raising :class:`~nfpjit.isa.sim.memory.Trap`.  The table
(isa/table.py) says what the instructions are; this module says what they
do; a test checks that every table entry has exactly one handler.
"""

from __future__ import annotations

from typing import Callable

from nfpjit.bits import MASK32, join64, lo32, hi32, rotr32, sext, u32, u64
from nfpjit.isa.table import (
    BY_OP,
    MUL_STEPS_NEEDED,
    AluOp,
    AtomicCmd,
    Cond,
    Csr,
    Instruction,
    Memory,
    MulStep,
    Op,
    ShiftKind,
    Width,
    atomic_out_words,
    enum_text,
)

from nfpjit.isa.operands import GprBoth

from .cycles import CYCLES, Resource
from .memory import Trap
from .result import FaultKind

Handler = Callable[["object", Instruction], None]
HANDLERS: dict[Op, Handler] = {}


def semantics(*ops: Op):
    """Register the decorated function as the handler of ``ops`` (each op gets exactly one)."""

    def register(fn: Handler) -> Handler:
        for op in ops:
            if op in HANDLERS:
                raise RuntimeError(f"two semantic handlers for {op.name}")
            HANDLERS[op] = fn
        return fn

    return register


def _illegal(message: str) -> Trap:
    return Trap(FaultKind.ILLEGAL_INSTRUCTION, message)


# -- ALU -------------------------------------------------------------------------------


def _logic(m, res: int) -> int:
    m.z, m.n, m.c, m.v = res == 0, res >> 31, 0, 0
    return res


def _add(m, a: int, b: int, cin: int) -> int:
    r = a + b + cin
    res = r & MASK32
    m.z, m.n, m.c, m.v = res == 0, res >> 31, r >> 32, ((~(a ^ b)) & (a ^ res)) >> 31 & 1
    return res


def _sub(m, a: int, b: int, borrow: int) -> int:
    r = a - b - borrow
    res = r & MASK32
    m.z, m.n, m.c, m.v = res == 0, res >> 31, int(r >= 0), ((a ^ b) & (a ^ res)) >> 31 & 1
    return res


ALU_FUNCS = {
    AluOp.ADD: lambda m, a, b: _add(m, a, b, 0),
    AluOp.ADDC: lambda m, a, b: _add(m, a, b, int(bool(m.c))),
    AluOp.SUB: lambda m, a, b: _sub(m, a, b, 0),
    AluOp.SUBC: lambda m, a, b: _sub(m, a, b, 1 - int(bool(m.c))),
    AluOp.AND: lambda m, a, b: _logic(m, a & b),
    AluOp.OR: lambda m, a, b: _logic(m, a | b),
    AluOp.XOR: lambda m, a, b: _logic(m, a ^ b),
    AluOp.ANDNOT: lambda m, a, b: _logic(m, a & ~b & MASK32),
    AluOp.NOT: lambda m, a, b: _logic(m, ~b & MASK32),
    AluOp.MOV: lambda m, a, b: _logic(m, b),
}

_OP_ALU = {e.op: e.alu for e in BY_OP.values() if e.alu is not None}


@semantics(Op.ADD, Op.ADDC, Op.SUB, Op.SUBC, Op.AND, Op.OR, Op.XOR, Op.ANDNOT, Op.NOT, Op.MOV)
def alu(m, ins: Instruction) -> None:
    """dest = a <op> b; CC; prev = result."""
    a = m.read(ins.a)
    b = m.read(ins.b)
    res = ALU_FUNCS[_OP_ALU[ins.op]](m, a, b)
    m.prev = res
    m.write(ins.dest, res)


def _shift(value: int, kind: ShiftKind, n: int) -> int:
    if kind == ShiftKind.SHL:
        return (value << n) & MASK32
    if kind == ShiftKind.SHR:
        return value >> n
    if kind == ShiftKind.ASR:
        return u32(sext(value, 32) >> n)
    return rotr32(value, n)


@semantics(Op.ALU_SHF)
def alu_shf(m, ins: Instruction) -> None:
    """s = shift(b, amount or prev & 31); dest = a <alu> s."""
    a = m.read(ins.a)
    b = m.read(ins.b)
    n = m.prev & 31 if ins.indirect else ins.amount
    res = ALU_FUNCS[ins.alu](m, a, _shift(b, ins.shift, n))
    m.prev = res
    m.write(ins.dest, res)


@semantics(Op.DBL_SHF)
def dbl_shf(m, ins: Instruction) -> None:
    """dest = low32((a:b) >> n)."""
    a = m.read(ins.a)
    b = m.read(ins.b)
    n = m.prev & 31 if ins.indirect else ins.amount
    res = _logic(m, (join64(b, a) >> n) & MASK32)
    m.prev = res
    m.write(ins.dest, res)


def _partial_dests(dest) -> tuple:
    """Registers a partial write merges into: each bank of an ``ab<n>`` destination keeps its own old bits."""
    return dest.banks if isinstance(dest, GprBoth) else (dest,)


@semantics(Op.LD_FIELD)
def ld_field(m, ins: Instruction) -> None:
    """dest = ((clear ? 0 : dest) & ~m) | (rotr(b, amount) & m); CC untouched."""
    b = m.read(ins.b)
    bytemask = 0
    for i in range(4):
        if ins.mask >> i & 1:
            bytemask |= 0xFF << (8 * i)
    new = rotr32(b, ins.amount) & bytemask
    if ins.clear:
        m.write(ins.dest, new)
        return
    for dest in _partial_dests(ins.dest):
        m.write(dest, (m.read_dest(dest) & ~bytemask & MASK32) | new)


@semantics(Op.IMMED)
def immed(m, ins: Instruction) -> None:
    """dest = (imm << 8*byte), optionally inverted, into the word or one half."""
    v = ins.imm << (8 * ins.byte)
    if ins.invert:
        v = ~v & MASK32
    if ins.width == Width.WORD:
        m.write(ins.dest, v)
        return
    for dest in _partial_dests(ins.dest):
        if ins.width == Width.LO:
            m.write(dest, (m.read_dest(dest) & 0xFFFF0000) | (v & 0xFFFF))
        else:
            m.write(dest, (v & 0xFFFF0000) | (m.read_dest(dest) & 0xFFFF))


@semantics(Op.LOAD_ADDR)
def load_addr(m, ins: Instruction) -> None:
    m.write(ins.dest, ins.target)


# -- multiplier -------------------------------------------------------------------------

_X_MASK = {MulStep.M24X8: 0xFF_FFFF, MulStep.M16X16: 0xFFFF, MulStep.M32X32: MASK32}


@semantics(Op.MUL_START)
def mul_start(m, ins: Instruction) -> None:
    m.mul_x = m.read(ins.a)
    m.mul_y = m.read(ins.b)
    m.mul_acc, m.mul_steps, m.mul_mode = 0, 0, None


@semantics(Op.MUL_STEP)
def mul_step(m, ins: Instruction) -> None:
    if m.mul_mode is not None and m.mul_mode != ins.mul:
        raise _illegal(f"mul_step {ins.mul.name} after {m.mul_mode.name} steps of the same product")
    k = m.mul_steps
    if m.mul_x is None or k >= MUL_STEPS_NEEDED[ins.mul]:
        raise _illegal("mul_step without mul_start or beyond the mode's step count")
    m.mul_mode = ins.mul
    m.mul_acc += ((m.mul_x & _X_MASK[ins.mul]) * ((m.mul_y >> (8 * k)) & 0xFF)) << (8 * k)
    m.mul_steps = k + 1


def _mul_done(m, ins: Instruction) -> int:
    if m.mul_mode is None or m.mul_steps != MUL_STEPS_NEEDED[m.mul_mode]:
        raise _illegal(f"{ins.entry.mnemonic} before the product's steps are done")
    return m.mul_acc


@semantics(Op.MUL_LAST)
def mul_last(m, ins: Instruction) -> None:
    m.write(ins.dest, lo32(_mul_done(m, ins)))


@semantics(Op.MUL_LAST2)
def mul_last2(m, ins: Instruction) -> None:
    m.write(ins.dest, hi32(u64(_mul_done(m, ins))))


# -- control ---------------------------------------------------------------------------------

_CONDS = {
    Cond.EQ: lambda m: m.z,
    Cond.NE: lambda m: not m.z,
    Cond.MI: lambda m: m.n,
    Cond.PL: lambda m: not m.n,
    Cond.HS: lambda m: m.c,
    Cond.LO: lambda m: not m.c,
    Cond.VS: lambda m: m.v,
    Cond.VC: lambda m: not m.v,
    Cond.GE: lambda m: bool(m.n) == bool(m.v),
    Cond.LT: lambda m: bool(m.n) != bool(m.v),
    Cond.GT: lambda m: not m.z and bool(m.n) == bool(m.v),
    Cond.LE: lambda m: m.z or bool(m.n) != bool(m.v),
    Cond.HI: lambda m: m.c and not m.z,
    Cond.LS: lambda m: not m.c or m.z,
    Cond.ALWAYS: lambda m: True,
}


@semantics(Op.NOP)
def nop(m, ins: Instruction) -> None:
    pass


@semantics(Op.HALT)
def halt(m, ins: Instruction) -> None:
    m.action = m.read(ins.b)
    m.halted = True


@semantics(Op.BR)
def br(m, ins: Instruction) -> None:
    if _CONDS[ins.cond](m):
        m.take_branch(ins.target, ins.defer)
    else:
        m.check_not_in_defer()


@semantics(Op.BR_BSET, Op.BR_BCLR)
def br_bit(m, ins: Instruction) -> None:
    bit = m.read(ins.a) >> ins.bit & 1
    if bit == (1 if ins.op == Op.BR_BSET else 0):
        m.take_branch(ins.target, ins.defer)
    else:
        m.check_not_in_defer()


@semantics(Op.RTN)
def rtn(m, ins: Instruction) -> None:
    m.take_branch(m.read(ins.a) & 0x3FFF, ins.defer)


@semantics(Op.CTX_WAIT)
def ctx_wait(m, ins: Instruction) -> None:
    pending = m.signals.pop(ins.signal, None)
    if pending is None:
        raise Trap(FaultKind.WATCHDOG, f"ctx_wait on signal {ins.signal}, which no command in flight will raise")
    ready, resource = pending
    m.charge(resource, max(0, ready - (m.cycles + 1)), accesses=0)


# -- memory commands -------------------------------------------------------------------------------

_MEM_COST = {Memory.CTM: (Resource.CTM, "ctm"), Memory.EMEM: (Resource.EMEM, "emem"),
             Memory.IMEM: (Resource.IMEM, "imem"), Memory.CLS: (Resource.CLS, "cls")}


def _address(m, ins: Instruction) -> int:
    """A command's address: 40-bit ``((a & 0xff) << 32) + b`` for EMEM, 32-bit ``a + b`` elsewhere."""
    a = m.read(ins.a)
    b = m.read(ins.b)
    return ((a & 0xFF) << 32) + b if ins.mem == Memory.EMEM else (a + b) & MASK32


def _command(m, ins: Instruction) -> tuple[object, int, int, int]:
    """(memory, address, first transfer register, word count) of a command; books its completion."""
    address = _address(m, ins)
    fixed = ins.entry.fixed_count
    count = fixed if fixed is not None else (ins.count or (m.prev & 31) + 1)
    first = ins.xfer.index
    if first + count > 32:
        raise _illegal(f"command moves {count} words from transfer register {first}: past the last register")
    resource, key = _MEM_COST[ins.mem]
    m.complete(resource, CYCLES[key], ins.signal, ins.ctx_swap)
    return m.memory(ins.mem), address, first, count


@semantics(Op.MEM_READ)
def mem_read(m, ins: Instruction) -> None:
    mem, address, first, count = _command(m, ins)
    data = mem.read(address, 4 * count)
    for i in range(count):
        m.set_xin(first + i, int.from_bytes(data[4 * i:4 * i + 4], "little"))


@semantics(Op.MEM_WRITE)
def mem_write(m, ins: Instruction) -> None:
    mem, address, first, count = _command(m, ins)
    mem.write(address, b"".join(m.xout[first + i].to_bytes(4, "little") for i in range(count)))


@semantics(Op.MEM_ADD32)
def mem_add32(m, ins: Instruction) -> None:
    mem, address, first, _ = _command(m, ins)
    old = int.from_bytes(mem.read(address, 4), "little")
    mem.write(address, u32(old + m.xout[first]).to_bytes(4, "little"))


@semantics(Op.MEM_ADD64)
def mem_add64(m, ins: Instruction) -> None:
    mem, address, first, _ = _command(m, ins)
    old = int.from_bytes(mem.read(address, 8), "little")
    mem.write(address, u64(old + join64(m.xout[first], m.xout[first + 1])).to_bytes(8, "little"))


def _posted_add(m, ins: Instruction, width: int) -> None:
    """``mem_addi32``/``mem_addi64``: the addend is the command's 16-bit immediate."""
    address = _address(m, ins)
    resource, key = _MEM_COST[ins.mem]
    m.complete(resource, CYCLES[key], ins.signal, ins.ctx_swap)
    mem = m.memory(ins.mem)
    old = int.from_bytes(mem.read(address, width), "little")
    mem.write(address, ((old + ins.imm) & ((1 << 8 * width) - 1)).to_bytes(width, "little"))


@semantics(Op.MEM_ADDI32)
def mem_addi32(m, ins: Instruction) -> None:
    _posted_add(m, ins, 4)


@semantics(Op.MEM_ADDI64)
def mem_addi64(m, ins: Instruction) -> None:
    _posted_add(m, ins, 8)


@semantics(Op.MEM_TEST_SET)
def mem_test_set(m, ins: Instruction) -> None:
    mem, address, first, _ = _command(m, ins)
    old = int.from_bytes(mem.read(address, 4), "little")
    mem.write(address, (old | m.xout[first]).to_bytes(4, "little"))
    m.set_xin(first, old)


def _atomic_result(cmd: AtomicCmd, old: int, x: int, expected: int, mask: int) -> int:
    if cmd == AtomicCmd.ADD:
        return (old + x) & mask
    if cmd == AtomicCmd.AND:
        return old & x
    if cmd == AtomicCmd.OR:
        return old | x
    if cmd == AtomicCmd.XOR:
        return old ^ x
    if cmd == AtomicCmd.SWAP:
        return x
    return x if old == expected else old        # CMP_SWAP


@semantics(Op.MEM_ATOMIC32, Op.MEM_ATOMIC64)
def mem_atomic(m, ins: Instruction) -> None:
    """One read-modify-write inside the memory unit; the old value comes back in $in[xfer..]."""
    words = ins.entry.fixed_count
    mem, address, first, _ = _command(m, ins)
    if first + atomic_out_words(ins.atomic, words) > 32:
        raise _illegal(f"{ins.entry.mnemonic} {enum_text(ins.atomic)} reads transfer registers "
                       f"{first}..{first + atomic_out_words(ins.atomic, words) - 1}: past the last register")
    nbytes = 4 * words
    old = int.from_bytes(mem.read(address, nbytes), "little")

    def out(k: int) -> int:
        return m.xout[first + k] if words == 1 else join64(m.xout[first + k], m.xout[first + k + 1])

    x = out(0)
    expected = out(words) if ins.atomic == AtomicCmd.CMP_SWAP else 0
    mem.write(address, _atomic_result(ins.atomic, old, x, expected, (1 << 8 * nbytes) - 1).to_bytes(nbytes, "little"))
    for k in range(words):
        m.set_xin(first + k, old >> 32 * k & MASK32)


# -- CSRs ------------------------------------------------------------------------------------------


@semantics(Op.CSR_RD)
def csr_rd(m, ins: Instruction) -> None:
    m.write(ins.dest, m.csr_read(ins.csr))


@semantics(Op.CSR_WR)
def csr_wr(m, ins: Instruction) -> None:
    m.csr_write(ins.csr, m.read(ins.b))


__all__ = ["HANDLERS", "semantics", "ALU_FUNCS", "Csr"]

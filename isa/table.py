"""The NFP-32 instruction set: the one declarative table everything else derives from.

Each :class:`Entry` of :data:`TABLE` defines one instruction: its opcode
(:class:`Op`), mnemonic, format, the bit fields of its 64-bit word (each an
``(lsb, width)`` pair), which operand kinds each operand role accepts, its
assembly syntax, its latency class for the cycle model, how many defer slots
it allows, and a one-line pseudo-code statement of its semantics.  The
encoder, decoder, assembler, disassembler, the simulator's dispatch and the
generated manual (isa/README.md) are all driven by this table; nothing here
executes an instruction.

An instruction as a value is an :class:`Instruction`: ``op`` plus the
operands ``dest``, ``a``, ``b`` and whichever named fields its entry has.

Word layout shared by all instructions: bits 63..56 hold the opcode; every
bit an entry does not define must be zero.  Conventions the semantics use:

* ``CC`` are the condition codes Z, N, C, V.  Arithmetic ops set all four
  (``sub`` sets C = *no borrow*, as ARM does, so ``hs`` after ``sub a, b``
  means a >= b unsigned); logical ops set Z and N and clear C and V.
* ``prev`` is the result of the last ALU, ALU_SHF or DBL_SHF instruction
  (also when its result is discarded with ``--``); indirect shift amounts and
  indirect command counts read it.
* Memories are byte-addressed and little-endian (a deliberate difference from
  the real NFP, see docs/isa-design.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields as dc_fields
from enum import IntEnum, unique

from .operands import (
    DEST_KINDS,
    GPR_KINDS,
    REGISTER_SOURCE_KINDS,
    SOURCE_KINDS,
    IllegalOperands,
    Operand,
    OperandKind,
    Xfer,
    XferSide,
)

WORD_BITS = 64
CODE_ADDR_BITS = 14
MAX_CODE_WORDS = 1 << CODE_ADDR_BITS


# -- enumerations ------------------------------------------------------------


@unique
class Op(IntEnum):
    """Primary opcode (bits 63..56); one per table entry."""

    NOP = 0x00
    HALT = 0x01
    CTX_WAIT = 0x02
    ADD = 0x08
    ADDC = 0x09
    SUB = 0x0A
    SUBC = 0x0B
    AND = 0x0C
    OR = 0x0D
    XOR = 0x0E
    ANDNOT = 0x0F
    NOT = 0x10
    MOV = 0x11
    ALU_SHF = 0x18
    DBL_SHF = 0x19
    LD_FIELD = 0x1A
    IMMED = 0x20
    LOAD_ADDR = 0x21
    MUL_START = 0x28
    MUL_STEP = 0x29
    MUL_LAST = 0x2A
    MUL_LAST2 = 0x2B
    BR = 0x30
    BR_BSET = 0x31
    BR_BCLR = 0x32
    RTN = 0x33
    MEM_READ = 0x38
    MEM_WRITE = 0x39
    MEM_ADD32 = 0x3A
    MEM_ADD64 = 0x3B
    MEM_TEST_SET = 0x3C
    # posted atomics: the addend rides in the command word, no transfer register
    MEM_ADDI32 = 0x48
    MEM_ADDI64 = 0x49
    MEM_ATOMIC32 = 0x3D
    MEM_ATOMIC64 = 0x3E
    CSR_RD = 0x40
    CSR_WR = 0x41


class AluOp(IntEnum):
    """The ALU operation of ALU and ALU_SHF instructions."""

    ADD = 0
    ADDC = 1
    SUB = 2
    SUBC = 3
    AND = 4
    OR = 5
    XOR = 6
    ANDNOT = 7
    NOT = 8
    MOV = 9


UNARY_ALU_OPS = frozenset({AluOp.NOT, AluOp.MOV})
ARITH_ALU_OPS = frozenset({AluOp.ADD, AluOp.ADDC, AluOp.SUB, AluOp.SUBC})


class ShiftKind(IntEnum):
    """Shift applied to the B operand of ALU_SHF."""

    SHL = 0
    SHR = 1
    ASR = 2
    ROR = 3


class Cond(IntEnum):
    """Branch condition on the condition codes."""

    EQ = 0      # Z
    NE = 1      # !Z
    MI = 2      # N
    PL = 3      # !N
    HS = 4      # C          (alias cs)
    LO = 5      # !C         (alias cc)
    VS = 6      # V
    VC = 7      # !V
    GE = 8      # N == V
    LT = 9      # N != V
    GT = 10     # !Z && N == V
    LE = 11     # Z || N != V
    HI = 12     # C && !Z
    LS = 13     # !C || Z
    ALWAYS = 14


COND_ALIASES = {"cs": Cond.HS, "cc": Cond.LO}

COND_TESTS = {
    Cond.EQ: "Z", Cond.NE: "!Z", Cond.MI: "N", Cond.PL: "!N", Cond.HS: "C", Cond.LO: "!C",
    Cond.VS: "V", Cond.VC: "!V", Cond.GE: "N == V", Cond.LT: "N != V", Cond.GT: "!Z && N == V",
    Cond.LE: "Z || N != V", Cond.HI: "C && !Z", Cond.LS: "!C || Z", Cond.ALWAYS: "true",
}


class Width(IntEnum):
    """Which part of the destination IMMED writes."""

    WORD = 0    # all 32 bits
    LO = 1      # bits 15..0, the rest kept
    HI = 2      # bits 31..16, the rest kept


class MulStep(IntEnum):
    """Multiply mode of a MUL_STEP; the mode fixes how many steps a product takes."""

    M24X8 = 0   # 1 step:  X[23:0] * Y[7:0]
    M16X16 = 1  # 2 steps: X[15:0] * Y[15:0]
    M32X32 = 2  # 4 steps: X * Y


MUL_STEPS_NEEDED = {MulStep.M24X8: 1, MulStep.M16X16: 2, MulStep.M32X32: 4}


class AtomicCmd(IntEnum):
    """The operation of a MEM_ATOMIC32/64 command (the memory unit's atomic engine).

    Every one returns the old value in ``$in[xfer..]``; code that wants no fetch ignores it.
    """

    ADD = 0       # M += $out
    AND = 1       # M &= $out
    OR = 2        # M |= $out
    XOR = 3       # M ^= $out
    SWAP = 4      # M = $out
    CMP_SWAP = 5  # if M == $out[xfer+w..]: M = $out[xfer..]   (w = 1 or 2 words)


class Memory(IntEnum):
    """Target memory of a CMD instruction."""

    CTM = 0     # packet buffer next to the core; 32-bit address
    EMEM = 1    # external memory (maps); 40-bit address
    IMEM = 2    # internal shared memory; 32-bit address
    CLS = 3     # cluster scratch; 32-bit address


@unique
class Csr(IntEnum):
    """Local control/status registers reachable with csr_rd / csr_wr."""

    ACTIVE_LM_ADDR_0 = 0
    ACTIVE_LM_ADDR_1 = 1
    ACTIVE_LM_ADDR_2 = 2
    ACTIVE_LM_ADDR_3 = 3
    PSEUDO_RANDOM = 4
    TIMESTAMP_LO = 5
    TIMESTAMP_HI = 6
    PKT_ADDR = 7
    PKT_LEN = 8
    RX_QUEUE = 9
    TX_QUEUE = 10
    INGRESS_IFINDEX = 11
    T_INDEX = 12
    # Packet metadata of a TC (__sk_buff) program: what the firmware fills before the program runs
    # and hands on with the packet afterwards (numbered from 32, away from the core's own CSRs).
    PKT_MARK = 32
    PKT_PRIORITY = 33
    PKT_TC_INDEX = 34
    PKT_TC_CLASSID = 35
    PKT_HASH = 36
    PKT_PROTOCOL = 37
    PKT_TYPE = 38
    PKT_IFINDEX = 39
    PKT_CB_0 = 40
    PKT_CB_1 = 41
    PKT_CB_2 = 42
    PKT_CB_3 = 43
    PKT_CB_4 = 44


CSR_DOCS = {
    Csr.ACTIVE_LM_ADDR_0: "byte address in local memory of LM index pointer 0 (usable 3 cycles after a write)",
    Csr.ACTIVE_LM_ADDR_1: "byte address in local memory of LM index pointer 1 (usable 3 cycles after a write)",
    Csr.ACTIVE_LM_ADDR_2: "byte address in local memory of LM index pointer 2 (usable 3 cycles after a write)",
    Csr.ACTIVE_LM_ADDR_3: "byte address in local memory of LM index pointer 3 (usable 3 cycles after a write)",
    Csr.PSEUDO_RANDOM: "a new pseudo-random 32-bit number on every read (read-only)",
    Csr.TIMESTAMP_LO: "cycle counter, low word (read-only)",
    Csr.TIMESTAMP_HI: "cycle counter, high word (read-only)",
    Csr.PKT_ADDR: "CTM byte address of the first packet byte (write to move the packet start)",
    Csr.PKT_LEN: "packet length in bytes (write to change it)",
    Csr.RX_QUEUE: "receive queue index of the packet (read-only)",
    Csr.TX_QUEUE: "transmit queue selected for the packet",
    Csr.INGRESS_IFINDEX: "interface index the packet arrived on (read-only)",
    Csr.T_INDEX: "read transfer register number that *$index reads (bits 4..0; usable 3 cycles after a write)",
    Csr.PKT_MARK: "packet mark (skb->mark) handed on with the packet",
    Csr.PKT_PRIORITY: "packet priority (skb->priority) handed on with the packet",
    Csr.PKT_TC_INDEX: "traffic-control index (skb->tc_index) handed on with the packet",
    Csr.PKT_TC_CLASSID: "traffic-control class id handed on with the packet",
    Csr.PKT_HASH: "receive hash the firmware computed (Toeplitz over the IP addresses and ports; read-only)",
    Csr.PKT_PROTOCOL: "EtherType the firmware parsed, as skb->protocol reads (big-endian 16 bits; read-only)",
    Csr.PKT_TYPE: "packet type (host, broadcast, multicast, other host) the firmware derived (read-only)",
    Csr.PKT_IFINDEX: "interface index of the device the packet is on (skb->ifindex; read-only)",
    Csr.PKT_CB_0: "control-block word 0 (skb->cb[0]) handed on with the packet",
    Csr.PKT_CB_1: "control-block word 1 (skb->cb[1]) handed on with the packet",
    Csr.PKT_CB_2: "control-block word 2 (skb->cb[2]) handed on with the packet",
    Csr.PKT_CB_3: "control-block word 3 (skb->cb[3]) handed on with the packet",
    Csr.PKT_CB_4: "control-block word 4 (skb->cb[4]) handed on with the packet",
}

#: the packet-metadata CSRs, in the order of :class:`nfpjit.isa.sim.result.PacketMeta`'s fields
PKT_META_CSRS = (Csr.PKT_MARK, Csr.PKT_PRIORITY, Csr.PKT_TC_INDEX, Csr.PKT_TC_CLASSID, Csr.PKT_HASH,
                 Csr.PKT_PROTOCOL, Csr.PKT_TYPE, Csr.PKT_IFINDEX, Csr.PKT_CB_0, Csr.PKT_CB_1, Csr.PKT_CB_2, Csr.PKT_CB_3,
                 Csr.PKT_CB_4)

READ_ONLY_CSRS = frozenset({Csr.PSEUDO_RANDOM, Csr.TIMESTAMP_LO, Csr.TIMESTAMP_HI, Csr.RX_QUEUE,
                            Csr.INGRESS_IFINDEX, Csr.PKT_HASH, Csr.PKT_PROTOCOL, Csr.PKT_TYPE,
                            Csr.PKT_IFINDEX})


class Format(IntEnum):
    """Instruction format: entries of one format share a field layout."""

    CTRL = 0
    ALU = 1
    ALU_SHF = 2
    DBL_SHF = 3
    LD_FIELD = 4
    IMMED = 5
    MUL = 6
    BR = 7
    BR_BIT = 8
    RTN = 9
    CMD = 10
    CSR = 11


class LatencyClass(IntEnum):
    """Cycle-model class; the simulator owns the actual cycle counts."""

    SINGLE = 0   # one cycle
    BRANCH = 1   # one cycle plus a penalty when taken, less the defer slots used
    MUL = 2      # one cycle per step; the result is ready after the last step
    MEM = 3      # issue is one cycle; completion is memory latency (CTM tens, EMEM hundreds of cycles)
    CSR = 4      # one cycle; LM pointers written are usable three cycles later


def enum_text(member) -> str:
    """Assembly spelling of an enum field value (``eq``, ``shl``, ``16x16``, ``active_lm_addr_0``)."""
    if isinstance(member, MulStep):
        return member.name[1:].lower()
    return member.name.lower()


# -- fields ------------------------------------------------------------------


class FieldKind(IntEnum):
    OPCODE = 0
    DEST = 1      # operand field holding Instruction.dest
    A = 2         # operand field holding Instruction.a (no port rule: single source)
    B = 3         # operand field holding Instruction.b (no port rule: single source)
    PORT_A = 4    # physical A port: reads bank A and the shared sources
    PORT_B = 5    # physical B port: reads bank B and the shared sources
    SWAP = 6      # 1: port A holds the logical b, port B the logical a
    UINT = 7      # unsigned integer lo..hi
    BOOL = 8
    ENUM = 9      # raw value of an IntEnum member
    XFER = 10     # transfer register index; the side is fixed by the entry
    TARGET = 11   # 14-bit code address


@dataclass(frozen=True)
class Field:
    """A bit field of an instruction word: ``(lsb, width)``, what it holds and its legal values."""

    name: str
    lsb: int
    width: int
    kind: FieldKind
    lo: int = 0
    hi: int | None = None
    enum: type | None = None
    default: object = None
    doc: str = ""

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def max_value(self) -> int:
        return self.hi if self.hi is not None else (1 << self.width) - 1


def _opcode() -> Field:
    return Field("op", 56, 8, FieldKind.OPCODE, doc="opcode")


def _dest(lsb: int = 46) -> Field:
    return Field("dest", lsb, 10, FieldKind.DEST, doc="destination operand code")


def _ports(lsb_a: int = 36, lsb_b: int = 26, lsb_swap: int = 25) -> tuple[Field, ...]:
    return (
        Field("port_a", lsb_a, 10, FieldKind.PORT_A, doc="A-port operand code"),
        Field("port_b", lsb_b, 10, FieldKind.PORT_B, doc="B-port operand code"),
        Field("swap", lsb_swap, 1, FieldKind.SWAP, doc="1: ports hold (b, a) instead of (a, b)"),
    )


def _uint(name: str, lsb: int, width: int, lo: int = 0, hi: int | None = None, doc: str = "") -> Field:
    return Field(name, lsb, width, FieldKind.UINT, lo=lo, hi=hi, doc=doc)


def _bool(name: str, lsb: int, doc: str = "") -> Field:
    return Field(name, lsb, 1, FieldKind.BOOL, doc=doc)


def _enum(name: str, lsb: int, width: int, enum: type, default=None, doc: str = "") -> Field:
    return Field(name, lsb, width, FieldKind.ENUM, enum=enum, default=default, doc=doc)


def _target() -> Field:
    return Field("target", 0, CODE_ADDR_BITS, FieldKind.TARGET, doc="code address (instruction index)")


def _defer(hi: int) -> Field:
    return _uint("defer", 50, 2, 0, hi, doc=f"defer slots 0..{hi}")


# -- entries -----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One instruction of the ISA."""

    op: Op
    mnemonic: str
    format: Format
    fields: tuple[Field, ...]
    semantics: str
    latency: LatencyClass = LatencyClass.SINGLE
    dest_kinds: frozenset | None = None   # None: the entry has no destination
    a_kinds: frozenset | None = None      # None: no a operand; OperandKind.NONE in the set: a may be absent
    b_kinds: frozenset | None = None
    syntax: tuple[str, ...] = ()          # positional assembly slots, in order
    keywords: tuple[str, ...] = ()        # optional ``name=value`` / flag slots
    suffix: str | None = None             # field printed as ``mnemonic.value``
    max_defer: int = 0
    alu: AluOp | None = None              # the ALU operation of an ALU entry
    xfer_side: XferSide | None = None     # CMD: which transfer registers the command uses
    fixed_count: int | None = None        # CMD: atomics move a fixed number of words
    sets_cc: bool = False                 # writes the condition codes
    reads_cc: bool = False                # may read them (carry in, branch condition)
    sets_prev: bool = False               # writes prev, the last ALU result
    reads_prev: bool = False              # may read prev (indirect shift amount or command count)

    @property
    def is_branch(self) -> bool:
        """True for instructions that may change the pc (and so have defer slots)."""
        return self.format in (Format.BR, Format.BR_BIT, Format.RTN)

    @property
    def ported(self) -> bool:
        """True when a and b go through the two ports and obey the two-source rule."""
        return any(f.kind == FieldKind.PORT_A for f in self.fields)

    @property
    def used_mask(self) -> int:
        m = 0
        for f in self.fields:
            m |= f.mask
        return m

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


_ALU_SEMANTICS = {
    AluOp.ADD: "dest = a + b; CC = add flags",
    AluOp.ADDC: "dest = a + b + C; CC = add flags",
    AluOp.SUB: "dest = a - b; CC = sub flags (C = no borrow)",
    AluOp.SUBC: "dest = a - b - !C; CC = sub flags (C = no borrow)",
    AluOp.AND: "dest = a & b; Z, N set, C = V = 0",
    AluOp.OR: "dest = a | b; Z, N set, C = V = 0",
    AluOp.XOR: "dest = a ^ b; Z, N set, C = V = 0",
    AluOp.ANDNOT: "dest = a & ~b; Z, N set, C = V = 0",
    AluOp.NOT: "dest = ~b; Z, N set, C = V = 0",
    AluOp.MOV: "dest = b; Z, N set, C = V = 0",
}

_ALU_FIELDS = (_opcode(), _dest(), *_ports())
_CMD_FIELDS_COMMON = (
    _opcode(),
    _enum("mem", 54, 2, Memory, doc="target memory"),
    Field("xfer", 48, 5, FieldKind.XFER, doc="first transfer register"),
    _uint("count", 44, 4, 0, 8, doc="words 1..8; 0 = indirect: (prev & 31) + 1 words"),
    *_ports(34, 24, 23),
    _uint("signal", 19, 4, doc="signal raised on completion (0: none)"),
    _bool("ctx_swap", 18, doc="wait for completion before the next instruction"),
)
_CMD_ADDR = ("address = a + b (32-bit) for CTM/IMEM/CLS, ((a & 0xff) << 32) + b (40-bit) for EMEM; "
             "count 0 = (prev & 31) + 1 words; signal raised when done; ctx_swap waits")


def _addi_entry(op: Op, mnemonic: str, semantics: str) -> Entry:
    return Entry(
        op, mnemonic, Format.CMD,
        (_opcode(), _enum("mem", 54, 2, Memory, doc="target memory"), *_ports(34, 24, 23),
         _uint("signal", 19, 4, doc="signal raised on completion (0: none)"),
         _bool("ctx_swap", 18, doc="wait for completion before the next instruction"),
         _uint("imm", 0, 16, doc="16-bit addend, zero-extended")),
        f"{semantics}; address as for mem_add; signal raised when done; ctx_swap waits; no transfer register, "
        "so it may be posted (neither signal nor ctx_swap)",
        latency=LatencyClass.MEM, a_kinds=SOURCE_KINDS, b_kinds=SOURCE_KINDS,
        syntax=("a", "b", "imm"), keywords=("signal", "ctx_swap"), suffix="mem",
    )


def _alu_entry(op: Op, mnemonic: str, alu: AluOp) -> Entry:
    unary = alu in UNARY_ALU_OPS
    return Entry(
        op, mnemonic, Format.ALU, _ALU_FIELDS, _ALU_SEMANTICS[alu] + "; prev = result",
        dest_kinds=DEST_KINDS,
        a_kinds=frozenset({OperandKind.NONE}) if unary else SOURCE_KINDS,
        b_kinds=SOURCE_KINDS,
        syntax=("dest", "b") if unary else ("dest", "a", "b"),
        alu=alu, sets_cc=True, sets_prev=True, reads_cc=alu in (AluOp.ADDC, AluOp.SUBC),
    )


def _cmd_entry(op: Op, mnemonic: str, semantics: str, side: XferSide, fixed_count: int | None) -> Entry:
    return Entry(
        op, mnemonic, Format.CMD, _CMD_FIELDS_COMMON, f"{semantics}; {_CMD_ADDR}",
        latency=LatencyClass.MEM, a_kinds=SOURCE_KINDS, b_kinds=SOURCE_KINDS,
        syntax=("xfer", "a", "b", "count"), keywords=("signal", "ctx_swap"), suffix="mem",
        xfer_side=side, fixed_count=fixed_count, reads_prev=True,
    )


def _atomic_entry(op: Op, mnemonic: str, words: int) -> Entry:
    bits = 32 * words
    return Entry(
        op, mnemonic, Format.CMD, (*_CMD_FIELDS_COMMON, _enum("atomic", 14, 3, AtomicCmd, doc="atomic operation")),
        f"old = M{bits}[address]; M{bits}[address] = old <atomic> $out[xfer..] (add, and, or, xor, swap; "
        f"cmp_swap: the new value if old == $out[xfer+{words}..], the expected value); "
        f"$in[xfer..] = old (one atomic operation of the memory unit); {_CMD_ADDR}",
        latency=LatencyClass.MEM, a_kinds=SOURCE_KINDS, b_kinds=SOURCE_KINDS,
        syntax=("atomic", "xfer", "a", "b", "count"), keywords=("signal", "ctx_swap"), suffix="mem",
        xfer_side=XferSide.OUT, fixed_count=words, reads_prev=True,
    )


#: transfer registers a MEM_ATOMIC command reads ($out) for each operation, in memory words
def atomic_out_words(cmd: "AtomicCmd", words: int) -> int:
    """$out registers an atomic command with ``words`` memory words reads (cmp_swap: new + expected)."""
    return 2 * words if cmd == AtomicCmd.CMP_SWAP else words


TABLE: tuple[Entry, ...] = (
    Entry(Op.NOP, "nop", Format.CTRL, (_opcode(),), "do nothing for one cycle"),
    Entry(Op.HALT, "halt", Format.CTRL, (_opcode(), Field("b", 26, 10, FieldKind.B, doc="action operand code")),
          "stop the program; its result (the datapath action) is b", b_kinds=SOURCE_KINDS, syntax=("b",)),
    Entry(Op.CTX_WAIT, "ctx_wait", Format.CTRL, (_opcode(), _uint("signal", 19, 4, 1, 15, doc="signal 1..15")),
          "wait until signal has been raised, then clear it", syntax=("signal",)),
    _alu_entry(Op.ADD, "add", AluOp.ADD),
    _alu_entry(Op.ADDC, "addc", AluOp.ADDC),
    _alu_entry(Op.SUB, "sub", AluOp.SUB),
    _alu_entry(Op.SUBC, "subc", AluOp.SUBC),
    _alu_entry(Op.AND, "and", AluOp.AND),
    _alu_entry(Op.OR, "or", AluOp.OR),
    _alu_entry(Op.XOR, "xor", AluOp.XOR),
    _alu_entry(Op.ANDNOT, "andnot", AluOp.ANDNOT),
    _alu_entry(Op.NOT, "not", AluOp.NOT),
    _alu_entry(Op.MOV, "mov", AluOp.MOV),
    Entry(
        Op.ALU_SHF, "alu_shf", Format.ALU_SHF,
        (*_ALU_FIELDS, _enum("alu", 21, 4, AluOp, doc="ALU operation"),
         _enum("shift", 19, 2, ShiftKind, doc="shift of b"),
         _uint("amount", 14, 5, doc="shift amount 0..31"),
         _bool("indirect", 13, doc="shift by prev & 31 instead of amount (amount must be 0)")),
        "s = shift(b, amount or prev & 31); dest = a <alu> s (unary alu: <alu> s); CC and prev as for the alu op",
        dest_kinds=DEST_KINDS, a_kinds=SOURCE_KINDS | {OperandKind.NONE}, b_kinds=SOURCE_KINDS,
        syntax=("dest", "a", "alu", "b", "shift"),
        sets_cc=True, reads_cc=True, sets_prev=True, reads_prev=True,
    ),
    Entry(
        Op.DBL_SHF, "dbl_shf", Format.DBL_SHF,
        (*_ALU_FIELDS, _uint("amount", 14, 5, doc="shift amount 0..31"),
         _bool("indirect", 13, doc="shift by prev & 31 instead of amount (amount must be 0)")),
        "n = amount or prev & 31; dest = low32((a:b) >> n); Z, N set, C = V = 0; prev = dest",
        dest_kinds=DEST_KINDS, a_kinds=SOURCE_KINDS, b_kinds=SOURCE_KINDS,
        syntax=("dest", "a", "b", "amount"),
        sets_cc=True, sets_prev=True, reads_prev=True,
    ),
    Entry(
        Op.LD_FIELD, "ld_field", Format.LD_FIELD,
        (*_ALU_FIELDS, _uint("mask", 21, 4, 1, 15, doc="byte mask: bit i selects byte i of dest"),
         _uint("amount", 14, 5, doc="rotate right 0..31"),
         _bool("clear", 12, doc="zero the bytes not selected")),
        "m = 0xff in byte i for each set bit i of mask; dest = ((clear ? 0 : dest) & ~m) | (rotr(b, amount) & m); CC untouched",
        dest_kinds=GPR_KINDS | {OperandKind.GPR_BOTH}, a_kinds=frozenset({OperandKind.NONE}), b_kinds=SOURCE_KINDS,
        syntax=("dest", "mask", "b", "amount"), keywords=("clear",),
    ),
    Entry(
        Op.IMMED, "immed", Format.IMMED,
        (_opcode(), _dest(), _uint("imm", 16, 16, doc="16-bit value"),
         _uint("byte", 14, 2, 0, 2, doc="shift imm left by 0, 1 or 2 bytes"),
         _bool("invert", 13, doc="invert all 32 bits after shifting"),
         _enum("width", 11, 2, Width, default=Width.WORD, doc="which half of dest is written")),
        "v = imm << 8*byte; if invert: v = ~v; dest = v (word) | dest[31:16]:v[15:0] (lo) | v[31:16]:dest[15:0] (hi)",
        dest_kinds=DEST_KINDS - {OperandKind.NONE},
        syntax=("dest", "imm"), keywords=("byte", "invert", "width"),
    ),
    Entry(
        Op.LOAD_ADDR, "load_addr", Format.IMMED, (_opcode(), _dest(), _target()),
        "dest = target (a code address, for calls and returns)",
        dest_kinds=DEST_KINDS - {OperandKind.NONE}, syntax=("dest", "target"),
    ),
    Entry(
        Op.MUL_START, "mul_start", Format.MUL, (_opcode(), *_ports()),
        "X = a; Y = b; acc = 0; steps = 0",
        latency=LatencyClass.MUL, a_kinds=SOURCE_KINDS, b_kinds=SOURCE_KINDS, syntax=("a", "b"),
    ),
    Entry(
        Op.MUL_STEP, "mul_step", Format.MUL, (_opcode(), _enum("mul", 23, 2, MulStep, doc="multiply mode")),
        "k = steps++; acc += (X masked to 24/16/32 bits) * Y[8k+7:8k] << 8k; "
        "24x8 takes 1 step, 16x16 2, 32x32 4, one mode per product",
        latency=LatencyClass.MUL, syntax=("mul",),
    ),
    Entry(
        Op.MUL_LAST, "mul_last", Format.MUL, (_opcode(), _dest()),
        "dest = acc[31:0] (all steps of the mode done)",
        latency=LatencyClass.MUL, dest_kinds=DEST_KINDS, syntax=("dest",),
    ),
    Entry(
        Op.MUL_LAST2, "mul_last2", Format.MUL, (_opcode(), _dest()),
        "dest = acc[63:32] (all steps of the mode done)",
        latency=LatencyClass.MUL, dest_kinds=DEST_KINDS, syntax=("dest",),
    ),
    Entry(
        Op.BR, "br", Format.BR, (_opcode(), _enum("cond", 52, 4, Cond, doc="condition"), _defer(2), _target()),
        "if cond(CC): pc = target after the next defer instructions",
        latency=LatencyClass.BRANCH, syntax=("target",), keywords=("defer",), suffix="cond", max_defer=2,
        reads_cc=True,
    ),
    Entry(
        Op.BR_BSET, "br_bset", Format.BR_BIT,
        (_opcode(), _defer(2), Field("a", 36, 10, FieldKind.A, doc="tested operand code"),
         _uint("bit", 21, 5, doc="bit number"), _target()),
        "if (a >> bit) & 1 == 1: pc = target after the next defer instructions",
        latency=LatencyClass.BRANCH, a_kinds=REGISTER_SOURCE_KINDS, syntax=("a", "bit", "target"),
        keywords=("defer",), max_defer=2,
    ),
    Entry(
        Op.BR_BCLR, "br_bclr", Format.BR_BIT,
        (_opcode(), _defer(2), Field("a", 36, 10, FieldKind.A, doc="tested operand code"),
         _uint("bit", 21, 5, doc="bit number"), _target()),
        "if (a >> bit) & 1 == 0: pc = target after the next defer instructions",
        latency=LatencyClass.BRANCH, a_kinds=REGISTER_SOURCE_KINDS, syntax=("a", "bit", "target"),
        keywords=("defer",), max_defer=2,
    ),
    Entry(
        Op.RTN, "rtn", Format.RTN, (_opcode(), _defer(3), Field("a", 36, 10, FieldKind.A, doc="address operand code")),
        "pc = a[13:0] after the next defer instructions",
        latency=LatencyClass.BRANCH, a_kinds=REGISTER_SOURCE_KINDS, syntax=("a",), keywords=("defer",), max_defer=3,
    ),
    _cmd_entry(Op.MEM_READ, "mem_read", "$in[xfer+i] = M32[address + 4i] for i < count", XferSide.IN, None),
    _cmd_entry(Op.MEM_WRITE, "mem_write", "M32[address + 4i] = $out[xfer+i] for i < count", XferSide.OUT, None),
    _cmd_entry(Op.MEM_ADD32, "mem_add32", "M32[address] += $out[xfer] (atomic)", XferSide.OUT, 1),
    _cmd_entry(Op.MEM_ADD64, "mem_add64", "M64[address] += $out[xfer+1]:$out[xfer] (atomic)", XferSide.OUT, 2),
    _cmd_entry(Op.MEM_TEST_SET, "mem_test_set",
               "old = M32[address]; M32[address] = old | $out[xfer]; $in[xfer] = old (atomic)", XferSide.OUT, 1),
    _addi_entry(Op.MEM_ADDI32, "mem_addi32", "M32[address] += imm (atomic)"),
    _addi_entry(Op.MEM_ADDI64, "mem_addi64", "M64[address] += imm (atomic)"),
    _atomic_entry(Op.MEM_ATOMIC32, "mem_atomic32", 1),
    _atomic_entry(Op.MEM_ATOMIC64, "mem_atomic64", 2),
    Entry(
        Op.CSR_RD, "csr_rd", Format.CSR, (_opcode(), _dest(), _enum("csr", 16, 6, Csr, doc="CSR number")),
        "dest = CSR[csr]", latency=LatencyClass.CSR, dest_kinds=DEST_KINDS - {OperandKind.NONE},
        syntax=("dest", "csr"),
    ),
    Entry(
        Op.CSR_WR, "csr_wr", Format.CSR,
        (_opcode(), Field("b", 26, 10, FieldKind.B, doc="source operand code"), _enum("csr", 16, 6, Csr, doc="CSR number")),
        "CSR[csr] = b (writable CSRs only)", latency=LatencyClass.CSR, b_kinds=SOURCE_KINDS,
        syntax=("csr", "b"),
    ),
)

BY_OP: dict[Op, Entry] = {e.op: e for e in TABLE}
BY_MNEMONIC: dict[str, Entry] = {e.mnemonic: e for e in TABLE}


# -- instructions as values ------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One NFP-32 instruction.  Only the attributes the entry of ``op`` defines may be set.

    ``dest``/``a``/``b`` are operands (None when absent); ``target`` is a code
    address; ``count`` 0 means an indirect count.  Enum fields left as None get
    the entry's default (``width`` = ``Width.WORD`` for ``immed``).
    """

    op: Op
    dest: Operand | None = None
    a: Operand | None = None
    b: Operand | None = None
    alu: AluOp | None = None
    shift: ShiftKind | None = None
    amount: int = 0
    indirect: bool = False
    mask: int = 0
    clear: bool = False
    imm: int = 0
    byte: int = 0
    invert: bool = False
    width: Width | None = None
    mul: MulStep | None = None
    cond: Cond | None = None
    target: int = 0
    defer: int = 0
    bit: int = 0
    mem: Memory | None = None
    xfer: Xfer | None = None
    count: int = 0
    signal: int = 0
    ctx_swap: bool = False
    csr: Csr | None = None
    atomic: AtomicCmd | None = None

    def __post_init__(self) -> None:
        try:
            op = Op(self.op)
        except (ValueError, TypeError):
            raise IllegalOperands(f"unknown opcode {self.op!r}") from None
        object.__setattr__(self, "op", op)
        for f in BY_OP[op].fields:
            if f.default is not None and getattr(self, f.name) is None:
                object.__setattr__(self, f.name, f.default)

    @property
    def entry(self) -> Entry:
        return BY_OP[self.op]

    def __str__(self) -> str:
        return format_instruction(self)


# -- assembly text (the entries' syntax; the disassembler and every listing use this) --------------


def _slot_text(instr: Instruction, slot: str, labels: dict[int, str] | None, imm_text: str | None = None) -> str:
    entry = BY_OP[instr.op]
    if slot in ("dest", "a", "b"):
        value = getattr(instr, slot)
        return "--" if value is None else str(value)
    if slot == "shift":
        amount = "indirect" if instr.indirect else str(instr.amount)
        return f"{enum_text(instr.shift)} {amount}"
    if slot == "amount":
        return "indirect" if entry.field("indirect") is not None and instr.indirect else str(instr.amount)
    if slot == "count":
        return "indirect" if instr.count == 0 else str(instr.count)
    if slot == "mask":
        return f"0b{instr.mask:04b}"
    if slot == "imm":
        return imm_text if imm_text is not None else f"{instr.imm:#x}"
    if slot == "target":
        if labels and instr.target in labels:
            return labels[instr.target]
        return str(instr.target)
    if slot == "xfer":
        return str(instr.xfer)
    value = getattr(instr, slot)
    f = entry.field(slot)
    if f is not None and f.kind == FieldKind.ENUM:
        return enum_text(value)
    return str(value)


def format_instruction(instr: Instruction, labels: dict[int, str] | None = None, *,
                       imm_text: str | None = None) -> str:
    """One line of assembly for ``instr``; ``labels`` maps code addresses to names for targets.

    ``imm_text`` replaces the printed ``imm`` (e.g. ``map(counters)`` for a relocated map id).
    """
    entry = BY_OP[instr.op]
    head = entry.mnemonic
    if entry.suffix:
        head += "." + enum_text(getattr(instr, entry.suffix))
    parts = [_slot_text(instr, slot, labels, imm_text) for slot in entry.syntax]
    for name in entry.keywords:
        f = entry.field(name)
        value = getattr(instr, name)
        if f.kind == FieldKind.BOOL:
            if value:
                parts.append(name)
        elif value != (f.default if f.default is not None else f.lo if f.kind == FieldKind.UINT else 0):
            parts.append(f"{name}={_slot_text(instr, name, labels)}")
    return f"{head} {', '.join(parts)}" if parts else head


#: Instruction attributes other than op, with their "not set" values
INSTRUCTION_DEFAULTS: dict[str, object] = {
    f.name: f.default for f in dc_fields(Instruction) if f.name != "op"
}

#: operand-valued attributes and the field kinds that carry them
OPERAND_ATTRS = ("dest", "a", "b")

"""NFP-32 operand rules: every rule is shown to reject, in the encoder and in the assembler, with a clear message."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.errors import NfpjitError
from nfpjit.isa import (
    NN,
    TABLE,
    AluOp,
    AtomicCmd,
    Bank,
    Cond,
    Csr,
    Gpr,
    IllegalInstruction,
    IllegalOperands,
    Imm,
    Instruction,
    IsaError,
    LMem,
    Memory,
    NoDest,
    Op,
    OperandKind,
    ShiftKind,
    Xfer,
    XferSide,
    encode,
    legalise,
)
from nfpjit.isa.asm import assemble
from nfpjit.isa.operands import NONE_CODE, kind_of, operand_code, operand_from_code

A0, A1, B0, B1 = Gpr(Bank.A, 0), Gpr(Bank.A, 1), Gpr(Bank.B, 0), Gpr(Bank.B, 1)
IN0, IN1, OUT0 = Xfer(XferSide.IN, 0), Xfer(XferSide.IN, 1), Xfer(XferSide.OUT, 0)

# one pair of same-kind sources per kind the two-source rule forbids, with their assembly text
SAME_KIND_PAIRS = {
    OperandKind.GPR_A: ((A0, A1), "a0, a1"),
    OperandKind.GPR_B: ((B0, B1), "b0, b1"),
    OperandKind.IMM: ((Imm(1), Imm(2)), "1, 2"),
    OperandKind.XFER_IN: ((IN0, IN1), "$in0, $in1"),
    OperandKind.NN: ((NN(0), NN(1)), "n0, n1"),
    OperandKind.LMEM: ((LMem(0), LMem(1, 2)), "*l$index0, *l$index1[2]"),
}
BINARY_ALU = [e for e in TABLE if e.alu is not None and e.a_kinds != frozenset({OperandKind.NONE})]


def _reject(instr: Instruction, *needles: str) -> IllegalOperands:
    with pytest.raises(IllegalOperands) as info:
        encode(instr)
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    return info.value


def _reject_asm(line: str, col: int, *needles: str) -> IsaError:
    with pytest.raises(IsaError) as info:
        assemble(f"nop\n{line}\n", "prog.s")
    assert info.value.where == f"prog.s:2:{col}", str(info.value)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    return info.value


# -- operand codes ------------------------------------------------------------------


def test_operand_codes_are_a_bijection_on_the_valid_codes():
    valid = 0
    for code in range(1 << 10):
        try:
            operand = operand_from_code(code)
        except IllegalInstruction:
            continue
        valid += 1
        assert operand_code(operand) == code
    # counted from the documented map: 256 immediates, 6 groups of 32 registers (a, b, $in, $out, n, ab),
    # *$index, 4 LM pointers x (16 offsets + post-increment), and NoDest
    assert valid == 256 + 6 * 32 + 1 + 4 * 17 + 1


@pytest.mark.parametrize("make", [
    lambda: Gpr(Bank.A, 32), lambda: Gpr(Bank.B, -1), lambda: Gpr(2, 0), lambda: Xfer(XferSide.IN, 32),
    lambda: NN(40), lambda: LMem(4), lambda: LMem(0, 16), lambda: LMem(0, 1, True), lambda: Imm(256),
    lambda: Imm(-1), lambda: Imm(True),
])
def test_operand_constructors_reject_out_of_range(make):
    with pytest.raises(IllegalOperands):
        make()


# -- the two-source rule -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SAME_KIND_PAIRS), ids=lambda k: k.name)
@pytest.mark.parametrize("entry", BINARY_ALU, ids=lambda e: e.mnemonic)
def test_two_sources_of_one_kind_rejected(entry, kind):
    (a, b), text = SAME_KIND_PAIRS[kind]
    _reject(Instruction(entry.op, dest=A0, a=a, b=b), "two sources of one kind", entry.mnemonic)
    line = f"  {entry.mnemonic} a0, {text}"
    col = line.index(text.split(", ")[1]) + 1
    err = _reject_asm(line, col, "two sources of one kind")
    assert err.hint


@pytest.mark.parametrize("op", [Op.ALU_SHF, Op.DBL_SHF, Op.MUL_START, Op.MEM_READ])
def test_two_source_rule_applies_to_every_ported_format(op):
    extra = {
        Op.ALU_SHF: dict(dest=A0, alu=AluOp.ADD, shift=ShiftKind.SHL),
        Op.DBL_SHF: dict(dest=A0),
        Op.MUL_START: {},
        Op.MEM_READ: dict(mem=Memory.CTM, xfer=IN0, count=1),
    }[op]
    _reject(Instruction(op, a=B0, b=B1, **extra), "two sources")
    _reject(Instruction(op, a=Imm(0), b=Imm(0), **extra), "two sources")


all_sources = st.one_of(
    st.builds(Gpr, st.sampled_from(Bank), st.integers(0, 31)),
    st.builds(Xfer, st.just(XferSide.IN), st.integers(0, 31)),
    st.builds(NN, st.integers(0, 31)),
    st.builds(LMem, st.integers(0, 3), st.integers(0, 15)),
    st.builds(Imm, st.integers(0, 255)),
)


@settings(max_examples=300)
@given(all_sources, all_sources)
def test_legalise_against_the_port_model(a, b):
    """Oracle: port A reads bank A, port B bank B, every other kind has one shared read path."""
    legal = kind_of(a) != kind_of(b)
    if not legal:
        with pytest.raises(IllegalOperands):
            legalise(a, b)
        return
    pa, pb, swap = legalise(a, b)
    assert (pa, pb) == ((b, a) if swap else (a, b))
    assert kind_of(pa) != OperandKind.GPR_B and kind_of(pb) != OperandKind.GPR_A
    # a swap only when the unswapped placement would put a register on the wrong bank's port
    needed = kind_of(a) == OperandKind.GPR_B or kind_of(b) == OperandKind.GPR_A
    assert swap == needed
    word = encode(Instruction(Op.ADD, dest=NoDest(), a=a, b=b))
    assert (word >> 25) & 1 == swap


def test_non_canonical_swap_rejected_by_decoder():
    word = encode(Instruction(Op.ADD, dest=A0, a=A1, b=B0))
    assert not word >> 25 & 1
    # same operands placed the other way round with the swap bit: port A holding a B register
    forged = (word & ~((0x3FF << 36) | (0x3FF << 26))) | (operand_code(B0) << 36) | (operand_code(A1) << 26) | 1 << 25
    with pytest.raises(IllegalInstruction):
        from nfpjit.isa import decode

        decode(forged)


# -- operand kinds per role ---------------------------------------------------------------


@pytest.mark.parametrize("dest,text", [(Imm(3), "3"), (IN0, "$in0")])
def test_unwritable_destination(dest, text):
    _reject(Instruction(Op.ADD, dest=dest, a=A0, b=B0), "dest cannot be")
    _reject_asm(f"add {text}, a0, b0", 5, "dest cannot be")


def test_unreadable_source():
    _reject(Instruction(Op.ADD, dest=A0, a=OUT0, b=B0), "a cannot be")
    _reject_asm("add a0, $out0, b0", 9, "a cannot be")


def test_missing_destination_and_source():
    _reject(Instruction(Op.ADD, a=A0, b=B0), "needs a destination")
    _reject(Instruction(Op.ADD, dest=A0, b=B0), "needs operand a")
    _reject_asm("add a0, --, b0", 9, "needs operand a")


def test_ld_field_destination_must_be_gpr():
    _reject(Instruction(Op.LD_FIELD, dest=NN(1), b=B0, mask=1), "dest cannot be")
    _reject_asm("ld_field n1, 1, b0, 0", 10, "dest cannot be")


def test_branch_bit_operand_cannot_be_immediate():
    _reject(Instruction(Op.BR_BSET, a=Imm(1), bit=0), "a cannot be")
    _reject_asm("br_bset 1, 0, 0", 9, "a cannot be")


def test_immed_cannot_discard():
    _reject(Instruction(Op.IMMED, dest=NoDest(), imm=1), "dest cannot be")


# -- field rules ----------------------------------------------------------------------------


def test_unary_alu_shf_takes_no_a_and_binary_needs_it():
    _reject(Instruction(Op.ALU_SHF, dest=A0, a=A1, alu=AluOp.MOV, b=B0, shift=ShiftKind.SHL), "a must be --")
    _reject(Instruction(Op.ALU_SHF, dest=A0, alu=AluOp.ADD, b=B0, shift=ShiftKind.SHL), "takes two sources")
    _reject_asm("alu_shf a0, a1, not, b0, shl 1", 13, "a must be --")


def test_indirect_shift_with_amount_rejected():
    _reject(Instruction(Op.DBL_SHF, dest=A0, a=A1, b=B0, amount=3, indirect=True), "indirect")


@pytest.mark.parametrize("op,count", [(Op.MEM_ADD32, 2), (Op.MEM_ADD64, 1), (Op.MEM_TEST_SET, 0)])
def test_atomic_counts(op, count):
    _reject(Instruction(op, mem=Memory.EMEM, xfer=OUT0, a=A0, b=B0, count=count), "count must be")


def test_transfer_registers_must_fit_and_be_on_the_right_side():
    _reject(Instruction(Op.MEM_READ, mem=Memory.CTM, xfer=Xfer(XferSide.IN, 28), a=A0, b=B0, count=8), "run past")
    _reject(Instruction(Op.MEM_READ, mem=Memory.CTM, xfer=OUT0, a=A0, b=B0, count=1), "$in transfer register")
    _reject(Instruction(Op.MEM_WRITE, mem=Memory.CTM, xfer=IN0, a=A0, b=B0, count=1), "$out transfer register")
    _reject_asm("mem_write.ctm $in0, a0, b0, 1", 15, "$out transfer register")


def test_read_only_csr():
    _reject(Instruction(Op.CSR_WR, csr=Csr.TIMESTAMP_LO, b=A0), "read-only")
    assert encode(Instruction(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_2, b=A0))


def test_defer_limits_follow_the_table():
    assert encode(Instruction(Op.RTN, a=A0, defer=3))
    _reject(Instruction(Op.BR, cond=Cond.EQ, defer=3), "defer 3 out of range 0..2")
    _reject_asm("br.eq 0, defer=3", 10, "defer 3 out of range")


def test_code_address_is_14_bits():
    assert encode(Instruction(Op.BR, cond=Cond.ALWAYS, target=(1 << 14) - 1))
    _reject(Instruction(Op.BR, cond=Cond.ALWAYS, target=1 << 14), "target")


def test_fields_the_entry_lacks_rejected():
    _reject(Instruction(Op.ADD, dest=A0, a=A1, b=B0, cond=Cond.EQ), "has no cond field")
    _reject(Instruction(Op.NOP, defer=1), "has no defer field")


def test_wrong_python_types_rejected():
    _reject(Instruction(Op.BR, cond=3), "Cond")
    _reject(Instruction(Op.IMMED, dest=A0, imm="7"), "imm")
    with pytest.raises(IllegalOperands):
        Instruction(0x7F)
    with pytest.raises(IllegalOperands):
        encode(Instruction(Op.ADD, dest=A0, a=3, b=B0))


def test_errors_are_nfpjit_errors():
    assert issubclass(IllegalOperands, NfpjitError) and issubclass(IllegalInstruction, NfpjitError)


def test_none_code_is_not_a_source_for_binary_ops():
    word = encode(Instruction(Op.ADD, dest=A0, a=A1, b=B0))
    forged = word | (NONE_CODE << 26)
    from nfpjit.isa import decode

    with pytest.raises(IllegalInstruction):
        decode(forged)


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.mnemonic)
def test_reserved_bits_rejected(entry):
    from nfpjit.isa import decode

    unused = ~entry.used_mask & ((1 << 64) - 1)
    base = encode(Instruction(entry.op, **_minimal(entry)))
    bits = [i for i in range(64) if unused >> i & 1]
    for bit in bits:
        with pytest.raises(IllegalInstruction, match="reserved bits"):
            decode(base | 1 << bit)


def _minimal(entry) -> dict:
    """A legal instance of each entry, written out by hand (not derived from the encoder)."""
    return {
        Op.NOP: {}, Op.HALT: dict(b=Imm(1)), Op.CTX_WAIT: dict(signal=1),
        Op.NOT: dict(dest=A0, b=B0), Op.MOV: dict(dest=A0, b=B0),
        Op.ALU_SHF: dict(dest=A0, a=A1, b=B0, alu=AluOp.ADD, shift=ShiftKind.ROR, amount=1),
        Op.DBL_SHF: dict(dest=A0, a=A1, b=B0, amount=4), Op.LD_FIELD: dict(dest=A0, b=B0, mask=3),
        Op.IMMED: dict(dest=A0, imm=5), Op.LOAD_ADDR: dict(dest=A0, target=9),
        Op.MUL_START: dict(a=A0, b=B0), Op.MUL_STEP: dict(mul=list(__import__("nfpjit.isa").isa.MulStep)[0]),
        Op.MUL_LAST: dict(dest=A0), Op.MUL_LAST2: dict(dest=A0), Op.BR: dict(cond=Cond.EQ, target=3),
        Op.BR_BSET: dict(a=A0, bit=3, target=1), Op.BR_BCLR: dict(a=A0, bit=3, target=1), Op.RTN: dict(a=A0),
        Op.MEM_READ: dict(mem=Memory.CTM, xfer=IN0, a=A0, b=B0, count=2),
        Op.MEM_WRITE: dict(mem=Memory.CTM, xfer=OUT0, a=A0, b=B0, count=2),
        Op.MEM_ADD32: dict(mem=Memory.EMEM, xfer=OUT0, a=A0, b=B0, count=1),
        Op.MEM_ADD64: dict(mem=Memory.EMEM, xfer=OUT0, a=A0, b=B0, count=2),
        Op.MEM_TEST_SET: dict(mem=Memory.EMEM, xfer=OUT0, a=A0, b=B0, count=1),
        Op.MEM_ADDI32: dict(mem=Memory.EMEM, a=A0, b=B0, imm=7), Op.MEM_ADDI64: dict(mem=Memory.EMEM, a=A0, b=B0, imm=9),
        Op.MEM_ATOMIC32: dict(mem=Memory.EMEM, xfer=OUT0, a=A0, b=B0, count=1, atomic=AtomicCmd.XOR),
        Op.MEM_ATOMIC64: dict(mem=Memory.EMEM, xfer=OUT0, a=A0, b=B0, count=2, atomic=AtomicCmd.CMP_SWAP),
        Op.CSR_RD: dict(dest=A0, csr=Csr.PKT_LEN), Op.CSR_WR: dict(csr=Csr.TX_QUEUE, b=A0),
    }.get(entry.op, dict(dest=A0, a=A1, b=B0))


def test_minimal_instances_cover_every_entry():
    for entry in TABLE:
        encode(Instruction(entry.op, **_minimal(entry)))


def test_any_pair_of_kinds_matrix():
    """Every (a kind, b kind) combination for add: legal exactly when the kinds differ."""
    samples = {OperandKind.GPR_A: A0, OperandKind.GPR_B: B0, OperandKind.IMM: Imm(9), OperandKind.XFER_IN: IN0,
               OperandKind.NN: NN(2), OperandKind.LMEM: LMem(3, postinc=True)}
    for (ka, a), (kb, b) in itertools.product(samples.items(), repeat=2):
        instr = Instruction(Op.ADD, dest=NoDest(), a=a, b=b)
        if ka == kb:
            _reject(instr, "two sources")
        else:
            from nfpjit.isa import decode

            assert decode(encode(instr)) == instr

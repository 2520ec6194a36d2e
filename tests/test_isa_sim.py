"""The NFP-32 simulator instruction by instruction: semantics against Python oracles, cycles, faults, trace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from nfpjit.errors import UsageError
from nfpjit.isa import NN, AluOp, Bank, Cond, Csr, Gpr, Imm, Instruction, LMem, Memory, MulStep, NoDest, Op, Xfer
from nfpjit.isa import IllegalInstruction, XferSide, decode, encode
from nfpjit.isa.image import Image, LineEntry, Metadata
from nfpjit.isa.sim import (
    CTM_BASE,
    CYCLES as C,
    HANDLERS,
    HEADROOM,
    LM_SIZE,
    FaultKind,
    Machine,
    Resource,
    Routine,
    semantics,
    simulate,
)
from nfpjit.isa.operands import operand_code
from nfpjit.isa.table import TABLE, FieldKind, ShiftKind, Width

A = lambda i: Gpr(Bank.A, i)  # noqa: E731
B = lambda i: Gpr(Bank.B, i)  # noqa: E731
I = Instruction  # noqa: E741
HALT = I(Op.HALT, b=Imm(2))
M32 = 0xFFFF_FFFF
u32s = st.integers(0, M32)


def load32(reg, value: int) -> list[Instruction]:
    return [I(Op.IMMED, dest=reg, imm=value & 0xFFFF), I(Op.IMMED, dest=reg, imm=value >> 16, byte=2, width=Width.HI)]


def machine(instrs, packet: bytes = b"", *, image: Image | None = None, budget=10_000, **kw) -> tuple[Machine, object]:
    image = image or Image(code=tuple(encode(i) for i in instrs))
    m = Machine(image, packet, maps_in=None, budget=budget, map_cache_size=kw.pop("map_cache_size", 16),
                seed=kw.pop("seed", 0), trace=kw.pop("trace", False), ingress_ifindex=1, rx_queue_index=0)
    return m, m.run()


def s32(v: int) -> int:
    return v - (1 << 32) if v & (1 << 31) else v


# -- dispatch ----------------------------------------------------------------------------


def test_every_table_entry_has_exactly_one_handler():
    assert set(HANDLERS) == {e.op for e in TABLE}
    assert len(TABLE) == len({e.op for e in TABLE})
    with pytest.raises(RuntimeError, match="two semantic handlers"):
        semantics(Op.ADD)(lambda m, ins: None)


# -- ALU against Python arithmetic -------------------------------------------------------------


def alu_oracle(op: AluOp, a: int, b: int, cin: int):
    """(result, Z, N, C, V) computed with unbounded integers (C for sub = no borrow)."""
    if op in (AluOp.ADD, AluOp.ADDC):
        full = a + b + (cin if op == AluOp.ADDC else 0)
        res = full % 2**32
        signed = s32(a) + s32(b) + (cin if op == AluOp.ADDC else 0)
        return res, res == 0, res >= 2**31, full >= 2**32, not -(2**31) <= signed < 2**31
    if op in (AluOp.SUB, AluOp.SUBC):
        borrow = (1 - cin) if op == AluOp.SUBC else 0
        res = (a - b - borrow) % 2**32
        signed = s32(a) - s32(b) - borrow
        return res, res == 0, res >= 2**31, a >= b + borrow, not -(2**31) <= signed < 2**31
    res = {AluOp.AND: a & b, AluOp.OR: a | b, AluOp.XOR: a ^ b, AluOp.ANDNOT: a & (M32 - b),
           AluOp.NOT: M32 - b, AluOp.MOV: b}[op]
    return res, res == 0, res >= 2**31, False, False


ALU_OPS = {e.alu: e.op for e in TABLE if e.alu is not None and e.op not in (Op.ALU_SHF,)}


@settings(max_examples=150)
@given(st.sampled_from(sorted(ALU_OPS)), u32s, u32s, st.booleans())
def test_alu(op, a, b, cin):
    # Set C first: 0xffffffff + 1 carries, 0 + 0 does not.
    setc = [*load32(A(9), M32 if cin else 0), I(Op.ADD, dest=NoDest(), a=A(9), b=Imm(1 if cin else 0))]
    unary = op in (AluOp.NOT, AluOp.MOV)
    code = [*load32(A(1), a), *load32(B(2), b), *setc,
            I(ALU_OPS[op], dest=A(3), a=None if unary else A(1), b=B(2)), HALT]
    m, fault = machine(code)
    assert fault is None
    res, z, n, c, v = alu_oracle(op, a, b, int(cin))
    assert (m.gpr_a[3], bool(m.z), bool(m.n), bool(m.c), bool(m.v)) == (res, z, n, c, v)
    assert m.prev == res


def shift_oracle(kind: ShiftKind, x: int, n: int) -> int:
    if kind == ShiftKind.SHL:
        return (x * 2**n) % 2**32
    if kind == ShiftKind.SHR:
        return x // 2**n
    if kind == ShiftKind.ASR:
        return (s32(x) // 2**n) % 2**32
    bits = format(x, "032b")
    return int(bits[32 - n:] + bits[:32 - n], 2) if n else x


@settings(max_examples=150)
@given(st.sampled_from(list(ShiftKind)), u32s, u32s, st.integers(0, 31), st.booleans())
def test_alu_shf(kind, a, b, n, indirect):
    pre = [I(Op.MOV, dest=NoDest(), b=Imm(n + 32))] if indirect else []   # prev = n + 32 (only & 31 counts)
    code = [*load32(A(1), a), *load32(B(2), b), *pre,
            I(Op.ALU_SHF, dest=A(3), a=A(1), alu=AluOp.XOR, b=B(2), shift=kind, amount=0 if indirect else n,
              indirect=indirect), HALT]
    m, fault = machine(code)
    assert fault is None and m.gpr_a[3] == a ^ shift_oracle(kind, b, n)


@settings(max_examples=100)
@given(u32s, u32s, st.integers(0, 31))
def test_dbl_shf(hi, lo, n):
    code = [*load32(A(1), hi), *load32(B(2), lo), I(Op.DBL_SHF, dest=B(3), a=A(1), b=B(2), amount=n), HALT]
    m, _ = machine(code)
    assert m.gpr_b[3] == ((hi * 2**32 + lo) // 2**n) % 2**32


@settings(max_examples=100)
@given(u32s, u32s, st.sampled_from(list(MulStep)))
def test_mul_steps(x, y, mode):
    steps = {MulStep.M24X8: 1, MulStep.M16X16: 2, MulStep.M32X32: 4}[mode]
    xm, ym = {MulStep.M24X8: (2**24, 2**8), MulStep.M16X16: (2**16, 2**16), MulStep.M32X32: (2**32, 2**32)}[mode]
    code = [*load32(A(1), x), *load32(B(2), y), I(Op.MUL_START, a=A(1), b=B(2)),
            *[I(Op.MUL_STEP, mul=mode)] * steps, I(Op.MUL_LAST, dest=A(3)), I(Op.MUL_LAST2, dest=B(3)), HALT]
    m, fault = machine(code)
    product = (x % xm) * (y % ym)
    assert fault is None and (m.gpr_a[3], m.gpr_b[3]) == (product % 2**32, product // 2**32)


def test_mul_last_before_the_steps_is_illegal():
    m, fault = machine([I(Op.MUL_START, a=A(1), b=B(2)), I(Op.MUL_STEP, mul=MulStep.M32X32),
                        I(Op.MUL_LAST, dest=A(3)), HALT])
    assert fault.kind == FaultKind.ILLEGAL_INSTRUCTION and fault.address == 2


@settings(max_examples=100)
@given(u32s, u32s, st.integers(1, 15), st.integers(0, 31), st.booleans())
def test_ld_field(old, src, mask, rot, clear):
    code = [*load32(A(1), old), *load32(B(2), src),
            I(Op.LD_FIELD, dest=A(1), mask=mask, b=B(2), amount=rot, clear=clear), HALT]
    m, _ = machine(code)
    rotated = shift_oracle(ShiftKind.ROR, src, rot)
    want = bytearray((0 if clear else old).to_bytes(4, "little"))
    for i in range(4):
        if mask >> i & 1:
            want[i] = rotated.to_bytes(4, "little")[i]
    assert m.gpr_a[1] == int.from_bytes(want, "little")


@given(u32s)
def test_byte_swap_idiom(x):
    # bswap32 with two ld_fields: from x rotated right by 8 keep bytes 1 and 3, from x rotated right by 24
    # keep bytes 0 and 2
    code = [*load32(B(2), x), I(Op.LD_FIELD, dest=A(1), mask=0b1010, b=B(2), amount=8, clear=True),
            I(Op.LD_FIELD, dest=A(1), mask=0b0101, b=B(2), amount=24), HALT]
    m, _ = machine(code)
    assert m.gpr_a[1] == int.from_bytes(x.to_bytes(4, "big"), "little")


def test_immed_forms():
    code = [I(Op.IMMED, dest=A(1), imm=0x1234, byte=1), I(Op.IMMED, dest=A(2), imm=0x00FF, invert=True),
            *load32(A(3), 0xAAAA_BBBB), I(Op.IMMED, dest=A(3), imm=0x1111, width=Width.LO), HALT]
    m, _ = machine(code)
    assert m.gpr_a[1:4] == [0x123400, 0xFFFF_FF00, 0xAAAA_1111]


# -- branches, defer slots, cycles -----------------------------------------------------------


@pytest.mark.parametrize("defer", [0, 1, 2])
@pytest.mark.parametrize("taken", [True, False])
def test_branch_defer_slots_and_cycles(defer, taken):
    # a1 counts the instructions that ran; the defer slots run on both paths, the skipped one never
    code = [I(Op.SUB, dest=NoDest(), a=A(0), b=Imm(0 if taken else 1)),
            I(Op.BR, cond=Cond.EQ, target=5, defer=defer),
            *[I(Op.ADD, dest=A(1), a=A(1), b=Imm(1))] * defer,
            *[I(Op.ADD, dest=A(2), a=A(2), b=Imm(1))] * (3 - defer),
            HALT]
    m, fault = machine(code)
    assert fault is None
    skipped = 3 - defer
    executed = 2 + defer + (0 if taken else skipped) + 1
    if taken:
        # target 5 = first instruction after the three slot/skip instructions
        assert m.gpr_a[1] == defer and m.gpr_a[2] == 0
    else:
        assert m.gpr_a[1] == defer and m.gpr_a[2] == skipped
    assert m.insns == executed
    assert m.cycles == executed * C["issue"] + (max(0, C["branch_taken"] - defer) if taken else 0)


def test_rtn_and_load_addr():
    code = [I(Op.LOAD_ADDR, dest=B(30), target=5), I(Op.RTN, a=B(30), defer=3),
            I(Op.ADD, dest=A(1), a=A(1), b=Imm(1)), I(Op.ADD, dest=A(1), a=A(1), b=Imm(1)),
            I(Op.ADD, dest=A(1), a=A(1), b=Imm(1)), HALT]
    m, fault = machine(code)
    assert fault is None and m.gpr_a[1] == 3 and m.cycles == 6  # rtn with 3 defer slots: no penalty


def test_br_bit():
    code = [*load32(A(1), 1 << 17), I(Op.BR_BSET, a=A(1), bit=17, target=5), HALT, I(Op.HALT, b=Imm(1)),
            I(Op.BR_BCLR, a=A(1), bit=17, target=2), I(Op.HALT, b=Imm(3))]
    m, fault = machine(code)
    assert fault is None and m.action == 3


def test_branch_in_a_defer_slot_is_illegal():
    m, fault = machine([I(Op.BR, cond=Cond.ALWAYS, target=3, defer=1), I(Op.BR, cond=Cond.ALWAYS, target=3),
                        HALT, HALT])
    assert fault.kind == FaultKind.ILLEGAL_INSTRUCTION and fault.address == 1


# -- local memory, LM pointers, CSRs -----------------------------------------------------------------


@pytest.mark.parametrize("gap", [0, 1, 2, 3, 4])
def test_lm_pointer_three_cycle_rule(gap):
    code = [I(Op.IMMED, dest=A(1), imm=64), I(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_2, b=A(1)),
            *[I(Op.NOP)] * gap, I(Op.MOV, dest=LMem(2, 1), b=Imm(7)), HALT]
    m, fault = machine(code)
    if gap < 3:
        assert fault.kind == FaultKind.LM_POINTER_TOO_SOON and fault.address == 2 + gap
    else:
        assert fault is None and m.lm.data[68:72] == (7).to_bytes(4, "little")


def test_lm_postinc_and_stack_overflow():
    code = [I(Op.MOV, dest=LMem(0, postinc=True), b=Imm(1)), I(Op.MOV, dest=LMem(0, postinc=True), b=Imm(2)),
            I(Op.ADD, dest=A(1), a=LMem(0, 0), b=Imm(0)), I(Op.CSR_RD, dest=A(2), csr=Csr.ACTIVE_LM_ADDR_0), HALT]
    m, fault = machine(code)
    assert fault is None and m.lm.data[:8] == bytes([1, 0, 0, 0, 2, 0, 0, 0]) and m.gpr_a[2] == 8
    assert m.usage[Resource.LM] == [3, 3 * C["lm_access"]]
    over = [*load32(A(1), LM_SIZE - 4), I(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_0, b=A(1)), *[I(Op.NOP)] * 3,
            I(Op.MOV, dest=LMem(0), b=Imm(1)), I(Op.MOV, dest=LMem(0, 1), b=Imm(1)), HALT]
    m, fault = machine(over)
    assert fault.kind == FaultKind.STACK_OVERFLOW and fault.address == 7 and fault.mem_address == LM_SIZE
    r = simulate(Image(code=(encode(HALT),), metadata=Metadata(stack_size=LM_SIZE + 8)), b"")
    assert r.fault.kind == FaultKind.STACK_OVERFLOW


def test_csrs_timestamp_random_and_packet():
    code = [I(Op.NOP), I(Op.NOP), I(Op.CSR_RD, dest=A(1), csr=Csr.TIMESTAMP_LO),
            I(Op.CSR_RD, dest=A(2), csr=Csr.PSEUDO_RANDOM), I(Op.CSR_RD, dest=A(3), csr=Csr.PKT_ADDR),
            I(Op.CSR_RD, dest=A(4), csr=Csr.PKT_LEN), HALT]
    m1, _ = machine(code, b"x" * 42, seed=1)
    m2, _ = machine(code, b"x" * 42, seed=1)
    m3, _ = machine(code, b"x" * 42, seed=2)
    assert m1.gpr_a[1] == 2 and m1.gpr_a[3:5] == [CTM_BASE + HEADROOM, 42]
    assert m1.gpr_a[2] == m2.gpr_a[2] != m3.gpr_a[2]


# -- memories ---------------------------------------------------------------------------------------------


def test_async_command_and_ctx_wait():
    code = [I(Op.CSR_RD, dest=A(5), csr=Csr.PKT_ADDR),
            I(Op.MEM_READ, mem=Memory.CTM, xfer=Xfer(XferSide.IN, 0), a=A(5), b=Imm(0), count=2, signal=3),
            *[I(Op.NOP)] * 10, I(Op.CTX_WAIT, signal=3), I(Op.MOV, dest=A(1), b=Xfer(XferSide.IN, 1)), HALT]
    m, fault = machine(code, bytes(range(16)))
    assert fault is None and m.gpr_a[1] == int.from_bytes(bytes([4, 5, 6, 7]), "little")
    # the read completes 50 cycles after its issue; 11 issue cycles (10 nops + ctx_wait) overlap with it
    assert m.cycles == 15 * C["issue"] + (C["ctm"] - 11)
    m, fault = machine([I(Op.CTX_WAIT, signal=4), HALT])
    assert fault.kind == FaultKind.WATCHDOG


def test_out_of_bounds_accesses():
    m, fault = machine([I(Op.MEM_READ, mem=Memory.CTM, xfer=Xfer(XferSide.IN, 0), a=A(1), b=Imm(0), count=1,
                          ctx_swap=True), HALT])
    assert fault.kind == FaultKind.OUT_OF_BOUNDS and fault.mem_address == 0 and fault.address == 0
    m, fault = machine([I(Op.MEM_WRITE, mem=Memory.EMEM, xfer=Xfer(XferSide.OUT, 0), a=A(1), b=Imm(8), count=1),
                        HALT])
    assert fault.kind == FaultKind.OUT_OF_BOUNDS


def test_scratch_memory_atomics():
    code = [I(Op.IMMED, dest=Xfer(XferSide.OUT, 0), imm=0xFFFF), I(Op.IMMED, dest=Xfer(XferSide.OUT, 1), imm=2),
            I(Op.MEM_WRITE, mem=Memory.CLS, xfer=Xfer(XferSide.OUT, 0), a=A(1), b=Imm(16), count=1),
            I(Op.MEM_ADD32, mem=Memory.CLS, xfer=Xfer(XferSide.OUT, 1), a=A(1), b=Imm(16), count=1),
            I(Op.MEM_TEST_SET, mem=Memory.IMEM, xfer=Xfer(XferSide.OUT, 0), a=A(1), b=Imm(0), count=1,
              ctx_swap=True),
            I(Op.MOV, dest=NN(3), b=Xfer(XferSide.IN, 0)), HALT]
    m, fault = machine(code)
    assert fault is None
    assert m.cls.read(16, 4) == (0x10001).to_bytes(4, "little") and m.imem.read(0, 4) == (0xFFFF).to_bytes(4, "little")
    assert m.nn[3] == 0
    assert m.usage[Resource.IMEM] == [1, C["imem"]] and m.usage[Resource.CLS] == [2, 0]


# -- firmware routines ------------------------------------------------------------------------------


def call(routine: Routine, setup: list[Instruction]) -> list[Instruction]:
    """setup; call routine (return address in a30 through a defer slot); halt."""
    n = len(setup)
    return [*setup, I(Op.BR, cond=Cond.ALWAYS, target=int(routine), defer=1),
            I(Op.LOAD_ADDR, dest=A(30), target=n + 2), HALT]


@pytest.mark.parametrize("delta,ok", [(-14, True), (-216, True), (-217, False), (-256, False), (10, True),
                                      (47, False)])
def test_adjust_head(delta, ok):
    pkt = bytes(range(60))
    r = simulate(call(Routine.ADJUST_HEAD, load32(A(4), delta & M32)), pkt)
    assert r.fault is None
    if ok:
        assert r.r0 == 0
        assert r.packet == (bytes(-delta) + pkt if delta < 0 else pkt[delta:])
    else:
        assert r.r0 == (-22) % 2**64 and r.packet == pkt
    assert r.breakdown[Resource.FIRMWARE].cycles == C["fw_adjust_head"]
    fast = simulate(call(Routine.ADJUST_HEAD_FAST, load32(A(4), delta & M32)), pkt)
    assert fast.packet == r.packet and fast.cycles - r.cycles == C["fw_adjust_head_fast"] - C["fw_adjust_head"]


def test_adjust_tail_and_prandom():
    pkt = bytes(range(60))
    r = simulate(call(Routine.ADJUST_TAIL, load32(A(4), (-20) & M32)), pkt)
    assert r.r0 == 0 and r.packet == pkt[:40]
    r = simulate(call(Routine.ADJUST_TAIL, load32(A(4), (-50) & M32)), pkt)
    assert r.r0 == (-22) % 2**64 and r.packet == pkt
    r1 = simulate(call(Routine.GET_PRANDOM, []), b"", seed=5)
    r2 = simulate(call(Routine.GET_PRANDOM, []), b"", seed=5)
    assert r1.r0 == r2.r0 < 2**32 and r1.breakdown[Resource.FIRMWARE].cycles == C["fw_get_prandom"]


def lookup_twice_image(keys: list[int]) -> Image:
    from nfpjit.isa.image import ImageMap, ImageMapType

    code: list[Instruction] = []
    for k in keys:
        code += [I(Op.MOV, dest=LMem(0), b=Imm(k)), I(Op.IMMED, dest=A(4), imm=0), I(Op.IMMED, dest=A(2), imm=0),
                 I(Op.BR, cond=Cond.ALWAYS, target=int(Routine.MAP_LOOKUP), defer=1)]
        code.append(I(Op.LOAD_ADDR, dest=A(30), target=len(code) + 1))
    code.append(HALT)
    return Image(code=tuple(encode(i) for i in code), maps=(ImageMap(0, "h", ImageMapType.HASH, 4, 4, 8),))


def _key(k: int) -> bytes:
    return k.to_bytes(4, "little")


@pytest.mark.parametrize("size", [0, 1, 2])
def test_map_cache_lru(size):
    keys = [1, 2, 1, 2, 3, 1]
    r = simulate(lookup_twice_image(keys), b"", maps_in={"h": {_key(k): b"vvvv" for k in (1, 2)}},
                 map_cache_size=size)
    # independent LRU model: key 3 is absent, so it is never cached
    cache: list[int] = []
    hits = 0
    for k in keys:
        if k in cache:
            hits += 1
            cache.remove(k)
            cache.append(k)
        elif k != 3 and size:
            cache.append(k)
            cache = cache[-size:]
    assert r.fault is None and r.map_cache_hits == hits and r.map_cache_misses == len(keys) - hits
    assert r.breakdown[Resource.FIRMWARE].cycles == hits * C["fw_map_lookup_hit"] + (len(keys) - hits) * C[
        "fw_map_lookup_miss"]


def test_map_update_delete_routines():
    from nfpjit.isa.image import ImageMap, ImageMapType

    def routine(r: Routine, key: int, flags: int = 0) -> list[Instruction]:
        return [I(Op.MOV, dest=LMem(0), b=Imm(key)), I(Op.MOV, dest=LMem(0, 1), b=Imm(key + 100)),
                I(Op.IMMED, dest=A(4), imm=0), I(Op.IMMED, dest=A(6), imm=4), I(Op.IMMED, dest=A(8), imm=flags),
                I(Op.IMMED, dest=A(2), imm=7)]

    code: list[Instruction] = []
    results = []
    for r, key, flags in [(Routine.MAP_UPDATE, 1, 0), (Routine.MAP_UPDATE, 1, 1), (Routine.MAP_UPDATE, 2, 2),
                          (Routine.MAP_UPDATE, 3, 0), (Routine.MAP_DELETE, 3, 0), (Routine.MAP_DELETE, 3, 0)]:
        code += routine(r, key, flags)
        code.append(I(Op.BR, cond=Cond.ALWAYS, target=int(r), defer=1))
        code.append(I(Op.LOAD_ADDR, dest=A(30), target=len(code) + 1))
        code.append(I(Op.MOV, dest=NN(len(results)), b=A(0)))
        results.append(r)
    code.append(HALT)
    img = Image(code=tuple(encode(i) for i in code), maps=(ImageMap(0, "h", ImageMapType.HASH, 4, 4, 8),))
    from nfpjit.isa.image import Symbol, SymbolKind

    img = Image(code=img.code, maps=img.maps, symbols=(Symbol("h", SymbolKind.MAP, 7),))  # relocated: table id 7
    m, fault = machine([], image=img)
    assert fault is None
    assert [s32(v) for v in m.nn[:6]] == [0, -17, -2, 0, 0, -2]  # ok, EEXIST, ENOENT, ok, ok, ENOENT
    assert m.tables[0].dump() == {_key(1): _key(101)}


# -- faults, watchdog, line table, trace ----------------------------------------------------------


def test_illegal_word_and_pc_outside_code_map_to_source():
    img = Image(code=(encode(I(Op.NOP)), 0xFF << 56, encode(HALT)),
                line_table=(LineEntry(0, 0, "p.c", 3, 1), LineEntry(1, 5, "p.c", 7, 9)))
    r = simulate(img, b"")
    assert r.fault.kind == FaultKind.ILLEGAL_INSTRUCTION and r.fault.address == 1
    assert r.fault.insn_index == 5 and r.fault.source == "p.c:7:9" and "p.c:7:9" in str(r.fault)
    r = simulate([I(Op.NOP)], b"")
    assert r.fault.kind == FaultKind.ILLEGAL_INSTRUCTION and r.fault.address == 1
    r = simulate([I(Op.BR, cond=Cond.ALWAYS, target=0x3FF0)], b"")
    assert r.fault.kind == FaultKind.ILLEGAL_INSTRUCTION and "firmware" in r.fault.message


def test_watchdog():
    r = simulate([I(Op.BR, cond=Cond.ALWAYS, target=0)], b"", budget=100)
    # each trip: issue + taken-branch penalty; the run stops after the first trip that passes the budget
    per_trip = C["issue"] + C["branch_taken"]
    trips = 100 // per_trip + 1
    assert r.fault.kind == FaultKind.WATCHDOG and r.insns == trips and r.cycles == trips * per_trip


def test_trace_lists_register_changes():
    r = simulate([I(Op.IMMED, dest=A(1), imm=5), I(Op.ADD, dest=B(2), a=A(1), b=Imm(3)),
                  I(Op.SUB, dest=NoDest(), a=A(1), b=Imm(5)), HALT], b"", trace=True)
    assert [t.address for t in r.trace] == [0, 1, 2, 3]
    assert r.trace[1].changes == (("b2", 0, 8),) and r.trace[1].cycles == 2
    assert r.trace[2].changes == (("cc", 0, 0b1010),)  # 5 - 5: Z, and C (no borrow)
    assert "add b2, a1, 3" in str(r.trace[1])
    assert simulate([HALT], b"").trace is None


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError):
        simulate("not a program", b"")
    with pytest.raises(UsageError):
        simulate([HALT], bytes(9000))
    with pytest.raises(UsageError, match="does not have"):
        simulate([HALT], b"", maps_in={"nope": {}})


def test_breakdown_sums_to_cycles():
    r = simulate(call(Routine.MAP_LOOKUP, [I(Op.IMMED, dest=A(2), imm=0)]), b"",)
    assert r.fault.kind == FaultKind.OUT_OF_BOUNDS and "table id 0" in r.fault.message  # the image has no maps
    r = simulate(lookup_twice_image([1, 1]), b"", maps_in={"h": {_key(1): b"abcd"}})
    assert sum(u.cycles for u in r.breakdown.values()) == r.cycles


def test_image_with_relocations_and_global_data():
    from test_isa_image import sample

    from nfpjit.isa.sim import EMEM_MAP_BASE

    r = simulate(sample(), b"\0" * 20)
    # immed a2 <- counters' table id (relocated), load_addr a30, br fw_map_lookup (relocated), halt 2;
    # key = LM[0..3] = 0: index 0 of the array
    assert r.fault is None and r.action == 2 and r.r0 == EMEM_MAP_BASE
    assert dict(r.routine_calls) == {"fw_map_lookup": 1}
    assert r.maps[".data"] == {bytes(4): b"hello world\0"}


OPERAND_CODES = sorted({operand_code(o) for o in (
    [Gpr(Bank.A, i) for i in (0, 1, 2, 4, 5, 30)] + [Gpr(Bank.B, i) for i in (0, 1, 2, 5)]
    + [Imm(v) for v in (0, 1, 2, 4, 14, 255)] + [Xfer(XferSide.IN, i) for i in (0, 1, 31)]
    + [Xfer(XferSide.OUT, i) for i in (0, 1, 31)] + [NN(0), NN(7), LMem(0), LMem(1, 3), LMem(2, postinc=True),
                                                       NoDest()])})


@st.composite
def random_programs(draw):
    """Random instructions of every entry: each field drawn from its legal values, operand fields from a
    mix of operand codes; words that still do not decode (bank clashes ...) stay in as illegal words."""
    words = []
    n = draw(st.integers(1, 24))
    for _ in range(n):
        entry = draw(st.sampled_from(TABLE))
        word = int(entry.op) << 56
        for f in entry.fields:
            if f.kind == FieldKind.OPCODE:
                continue
            if f.kind in (FieldKind.DEST, FieldKind.A, FieldKind.B, FieldKind.PORT_A, FieldKind.PORT_B):
                raw = draw(st.sampled_from(OPERAND_CODES))
            elif f.kind == FieldKind.ENUM:
                raw = int(draw(st.sampled_from(list(f.enum))))
            elif f.kind == FieldKind.TARGET:
                raw = draw(st.sampled_from([0, 1, n - 1, n + 3, *map(int, Routine)]))
            else:
                raw = draw(st.integers(f.lo, f.max_value))
            word |= raw << f.lsb
        try:
            decode(word)
        except IllegalInstruction:
            if draw(st.integers(0, 9)):
                word = encode(I(Op.NOP))
        words.append(word)
    return words


@settings(max_examples=200)
@given(random_programs(), st.binary(max_size=80))
def test_random_programs_end_in_a_result(words, packet):
    from nfpjit.isa.image import ImageMap, ImageMapType

    img = Image(code=tuple(words), maps=(ImageMap(0, "h", ImageMapType.HASH, 4, 4, 8),
                                         ImageMap(1, "a", ImageMapType.ARRAY, 4, 8, 4)))
    r = simulate(img, packet, budget=2_000, trace=True)
    assert sum(u.cycles for u in r.breakdown.values()) == r.cycles
    assert r.fault is not None or r.action < 2**32
    assert len(r.trace) >= r.insns


def test_partial_write_to_lm_with_postinc_touches_one_word():
    code = [I(Op.MOV, dest=LMem(0), b=Imm(0xAB)), I(Op.IMMED, dest=LMem(0, postinc=True), imm=0x1234, byte=2,
                                                    width=Width.HI),
            I(Op.CSR_RD, dest=A(1), csr=Csr.ACTIVE_LM_ADDR_0), HALT]
    m, fault = machine(code)
    assert fault is None and m.lm.read(0, 4) == (0x1234_00AB).to_bytes(4, "little") and m.gpr_a[1] == 4
    assert m.usage[Resource.LM] == [2, 2 * C["lm_access"]]


@pytest.mark.slow
@settings(max_examples=3000)
@given(random_programs(), st.binary(max_size=80))
def test_random_programs_many(words, packet):
    test_random_programs_end_in_a_result.hypothesis.inner_test(words, packet)


def test_table_ids_come_from_relocation():
    from test_isa_image import sample

    from nfpjit.isa.image import relocate

    img = relocate(sample(), {"counters": 41}, {"fw_map_lookup": int(Routine.MAP_LOOKUP)})
    r = simulate(img, b"")
    assert r.fault is None and dict(r.routine_calls) == {"fw_map_lookup": 1}
    from nfpjit.isa.image import Symbol, SymbolKind

    clash = Image(code=img.code, maps=img.maps, symbols=(Symbol("counters", SymbolKind.MAP, 1),))
    with pytest.raises(UsageError, match="share table id 1"):
        simulate(clash, b"")  # 'flows' keeps its image id 1


def test_result_json_is_serialisable_and_faithful():
    import json

    r = simulate([I(Op.IMMED, dest=A(0), imm=7), I(Op.MEM_READ, mem=Memory.CTM, xfer=Xfer(XferSide.IN, 0), a=A(1),
                                                    b=Imm(0), count=1, ctx_swap=True), HALT], b"\x01\x02", trace=True)
    j = json.loads(json.dumps(r.to_json()))
    assert j["fault"]["kind"] == "out_of_bounds" and j["fault"]["address"] == 1 and j["fault"]["mem_address"] == 0
    assert j["packet"] == "0102" and j["r0"] == 7 and j["cycles"] == r.cycles
    assert sum(v["cycles"] for v in j["breakdown"].values()) == r.cycles
    assert j["trace"][0]["changes"] == [{"location": "a0", "old": 0, "new": 7}]


def test_bad_maps_and_packets_are_errors_not_crashes():
    from nfpjit.errors import UnsupportedError
    from nfpjit.isa.image import ImageMap, ImageMapType

    img = Image(code=(encode(HALT),), maps=(ImageMap(0, "h", ImageMapType.HASH, 4, 8, 2**32 - 1),))
    with pytest.raises(UnsupportedError, match="MiB"):
        simulate(img, b"")
    small = Image(code=(encode(HALT),), maps=(ImageMap(0, "h", ImageMapType.HASH, 4, 8, 4),))
    for bad in ({"h": {"k": b"12345678"}}, {"h": [1]}, ["h"], {"h": {b"kkkk": b"1"}}):
        with pytest.raises(UsageError):
            simulate(small, b"", maps_in=bad)
    with pytest.raises(UsageError):
        simulate(small, "packet")
    full = {"h": {bytes([i, 0, 0, 0]): bytes(8) for i in range(5)}}
    with pytest.raises(UsageError, match="does not fit"):
        simulate(small, b"", maps_in=full)


def test_cycle_table_documentation_matches_the_values():
    import re

    from nfpjit.isa.sim import cycles

    documented = {m.group(1): int(m.group(2))
                  for m in re.finditer(r"^(\w+)\s+(\d+)\s+[A-Z]+\s", cycles.__doc__, re.MULTILINE)}
    assert documented == dict(C)


def test_fault_in_a_firmware_routine_points_at_the_call():
    code = [I(Op.IMMED, dest=A(2), imm=9), I(Op.BR, cond=Cond.ALWAYS, target=int(Routine.MAP_LOOKUP), defer=1),
            I(Op.LOAD_ADDR, dest=A(30), target=3), HALT]
    img = Image(code=tuple(encode(i) for i in code),
                line_table=(LineEntry(0, 4, "p.c", 10, 2), LineEntry(1, 5, "p.c", 11, 3), LineEntry(3, 6, "p.c", 12, 1)))
    r = simulate(img, b"")
    assert r.fault.kind == FaultKind.OUT_OF_BOUNDS and r.fault.address == int(Routine.MAP_LOOKUP)
    assert "table id 9" in r.fault.message and "return address 0x3" in r.fault.message
    assert (r.fault.insn_index, r.fault.source) == (5, "p.c:11:3")

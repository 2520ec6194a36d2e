"""Every ALU and jump operation of the interpreter, 32 and 64 bit, on edge values.

The oracle is the host CPU: each operation is written as LLVM IR from the
RFC 9669 definition (width, operand extension, eBPF's division rules) and
JIT-compiled with llvmlite, so the interpreter's Python arithmetic is checked
against machine arithmetic written independently.
"""

from __future__ import annotations

import ctypes
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.insn import Insn
from nfpjit.ebpf.interp import run_raw
from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, Source
from nfpjit.ebpf.program import Program

llvm = pytest.importorskip("llvmlite.binding")

M64 = (1 << 64) - 1
EDGE64 = sorted({0, 1, 2, 3, 7, 0x7F, 0x80, 0xFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                 0x1_0000_0000, 0x1_2345_6789, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, M64, M64 - 1,
                 0xDEAD_BEEF_CAFE_F00D, 31, 32, 63, 64, 65})
EDGE_IMM = [0, 1, -1, 2, 7, 31, 32, 63, 64, 0x7FFF_FFFF, -0x8000_0000, 0x8000, -2, 0x1234_5678]

# -- the oracle: LLVM IR per operation ------------------------------------------------

_BINOPS = {AluOp.ADD: "add", AluOp.SUB: "sub", AluOp.MUL: "mul", AluOp.OR: "or", AluOp.AND: "and",
           AluOp.XOR: "xor", AluOp.LSH: "shl", AluOp.RSH: "lshr", AluOp.ARSH: "ashr"}


def _body(op: AluOp, t: str, signed: bool) -> str:
    """IR computing %r (type t) from %a, %b (type t)."""
    bits = int(t[1:])
    if op in _BINOPS:
        if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
            return f"%s = and {t} %b, {bits - 1}\n  %r = {_BINOPS[op]} {t} %a, %s\n"
        return f"%r = {_BINOPS[op]} {t} %a, %b\n"
    if op == AluOp.NEG:
        return f"%r = sub {t} 0, %a\n"
    if op == AluOp.MOV:
        return f"%r = add {t} %b, 0\n"
    # Division: LLVM (and x86) trap on x/0 and INT_MIN/-1, so pick a safe divisor and select.
    z = f"%z = icmp eq {t} %b, 0\n  %m1 = icmp eq {t} %b, -1\n  %bad = or i1 %z, %m1\n" \
        f"  %d = select i1 %bad, {t} 1, {t} %b\n"
    if op == AluOp.DIV and not signed:
        return z + f"  %du = select i1 %z, {t} 1, {t} %b\n  %qu = udiv {t} %a, %du\n  %r = select i1 %z, {t} 0, {t} %qu\n"
    if op == AluOp.MOD and not signed:
        return z + f"  %du = select i1 %z, {t} 1, {t} %b\n  %qu = urem {t} %a, %du\n  %r = select i1 %z, {t} %a, {t} %qu\n"
    if op == AluOp.DIV:
        return z + f"  %q = sdiv {t} %a, %d\n  %n = sub {t} 0, %a\n  %q1 = select i1 %m1, {t} %n, {t} %q\n" \
            f"  %r = select i1 %z, {t} 0, {t} %q1\n"
    if op == AluOp.MOD:
        return z + f"  %q = srem {t} %a, %d\n  %q1 = select i1 %m1, {t} 0, {t} %q\n" \
            f"  %r = select i1 %z, {t} %a, {t} %q1\n"
    raise AssertionError(op)


_ICMP = {JmpOp.JEQ: "eq", JmpOp.JNE: "ne", JmpOp.JGT: "ugt", JmpOp.JGE: "uge", JmpOp.JLT: "ult", JmpOp.JLE: "ule",
         JmpOp.JSGT: "sgt", JmpOp.JSGE: "sge", JmpOp.JSLT: "slt", JmpOp.JSLE: "sle"}


class Oracle:
    """Functions i64 f(i64 a, i64 b) JIT-compiled once per module."""

    def __init__(self):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.funcs: dict[str, str] = {}

    def add_alu(self, name: str, op: AluOp, bits: int, k: bool, signed: bool = False):
        t = f"i{bits}"
        # A K operand is the 32-bit immediate: sign-extended for ALU64, as is for ALU32.
        if k:
            prologue = f"  %b32 = trunc i64 %bin to i32\n  %b = {'sext' if bits == 64 else 'add'} " \
                       f"{'i32 %b32 to i64' if bits == 64 else 'i32 %b32, 0'}\n"
        else:
            prologue = f"  %b = trunc i64 %bin to {t}\n" if bits == 32 else "  %b = add i64 %bin, 0\n"
        a = f"  %a = trunc i64 %ain to {t}\n" if bits == 32 else "  %a = add i64 %ain, 0\n"
        ret = "  %out = zext i32 %r to i64\n  ret i64 %out\n" if bits == 32 else "  ret i64 %r\n"
        self.funcs[name] = f"define i64 @{name}(i64 %ain, i64 %bin) {{\n{a}{prologue}  {_body(op, t, signed)}{ret}}}\n"

    def add_jmp(self, name: str, op: JmpOp, bits: int, k: bool):
        t = f"i{bits}"
        if k:
            b = "  %b32 = trunc i64 %bin to i32\n" + ("  %b = sext i32 %b32 to i64\n" if bits == 64 else "  %b = add i32 %b32, 0\n")
        else:
            b = f"  %b = trunc i64 %bin to {t}\n" if bits == 32 else "  %b = add i64 %bin, 0\n"
        a = f"  %a = trunc i64 %ain to {t}\n" if bits == 32 else "  %a = add i64 %ain, 0\n"
        if op == JmpOp.JSET:
            cmp = f"  %x = and {t} %a, %b\n  %c = icmp ne {t} %x, 0\n"
        else:
            cmp = f"  %c = icmp {_ICMP[op]} {t} %a, %b\n"
        self.funcs[name] = f"define i64 @{name}(i64 %ain, i64 %bin) {{\n{a}{b}{cmp}  %r = zext i1 %c to i64\n  ret i64 %r\n}}\n"

    def add_raw(self, name: str, body: str):
        self.funcs[name] = body

    def compile(self):
        mod = llvm.parse_assembly("".join(self.funcs.values()))
        mod.verify()
        target = llvm.Target.from_default_triple().create_target_machine()
        self.engine = llvm.create_mcjit_compiler(mod, target)
        self.engine.finalize_object()
        proto = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
        self.compiled = {n: proto(self.engine.get_function_address(n)) for n in self.funcs}
        return self

    def __call__(self, name: str, a: int, b: int) -> int:
        return self.compiled[name](a & M64, b & M64)


ALU_OPS = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.OR, AluOp.AND, AluOp.XOR, AluOp.LSH, AluOp.RSH,
           AluOp.ARSH, AluOp.DIV, AluOp.MOD, AluOp.MOV]
JMP_OPS = sorted(_ICMP) + [JmpOp.JSET]


def _alu_cases():
    for bits in (32, 64):
        for op in ALU_OPS:
            for k in (False, True):
                for signed in ((False, True) if op in (AluOp.DIV, AluOp.MOD) else (False,)):
                    yield bits, op, k, signed


def _name(bits, op, k, signed):
    return f"alu{bits}_{op.name.lower()}_{'k' if k else 'x'}{'_s' if signed else ''}"


@pytest.fixture(scope="module")
def oracle():
    o = Oracle()
    for case in _alu_cases():
        o.add_alu(_name(*case), case[1], case[0], case[2], case[3])
    for bits in (32, 64):
        o.add_alu(f"neg{bits}", AluOp.NEG, bits, False)
        for op in JMP_OPS:
            for k in (False, True):
                o.add_jmp(f"jmp{bits}_{op.name.lower()}_{'k' if k else 'x'}", op, bits, k)
    # Byte swaps and sign-extending moves, each an intrinsic or a trunc/ext pair.
    for w in (16, 32, 64):
        t = f"i{w}"
        ext = "zext" if w < 64 else "add"
        tail = f"  %r = {ext} {t} %s to i64\n" if w < 64 else "  %r = add i64 %s, 0\n"
        trunc = f"  %t = trunc i64 %a to {t}\n" if w < 64 else "  %t = add i64 %a, 0\n"
        o.add_raw(f"bswap{w}", f"declare {t} @llvm.bswap.{t}({t})\ndefine i64 @bswap{w}(i64 %a, i64 %b) {{\n"
                  f"{trunc}  %s = call {t} @llvm.bswap.{t}({t} %t)\n{tail}  ret i64 %r\n}}\n")
        o.add_raw(f"le{w}", f"define i64 @le{w}(i64 %a, i64 %b) {{\n{trunc}"
                  + (f"  %r = zext {t} %t to i64\n" if w < 64 else "  %r = add i64 %t, 0\n") + "  ret i64 %r\n}\n")
    for dst_bits in (32, 64):
        for w in ((8, 16, 32) if dst_bits == 64 else (8, 16)):
            body = f"  %t = trunc i64 %a to i{w}\n  %s = sext i{w} %t to i{dst_bits}\n"
            body += "  %r = zext i32 %s to i64\n" if dst_bits == 32 else "  %r = add i64 %s, 0\n"
            o.add_raw(f"movsx{dst_bits}_{w}", f"define i64 @movsx{dst_bits}_{w}(i64 %a, i64 %b) {{\n{body}  ret i64 %r\n}}\n")
    return o.compile()


# -- programs ------------------------------------------------------------------------------

def _prog(*insns: Insn) -> Program:
    return Program("alu", tuple(insns))


def _run(*insns: Insn) -> int:
    result = run_raw(_prog(*insns))
    assert result.fault is None, result.fault
    return result.r0


def _alu_program(bits: int, op: AluOp, k: bool, signed: bool, a: int, b: int) -> Program:
    cls = InsnClass.ALU64 if bits == 64 else InsnClass.ALU
    off = 1 if signed else 0
    if k:
        core = Insn(cls | op | Source.K, 0, 0, off, b)
    else:
        core = Insn(cls | op | Source.X, 0, 1, off, 0)
    return _prog(Insn.ld_imm64(0, a), Insn.ld_imm64(1, b), core, Insn(InsnClass.JMP | JmpOp.EXIT))


@pytest.mark.parametrize("bits,op,k,signed", list(_alu_cases()), ids=lambda v: str(getattr(v, "name", v)))
def test_alu_edge_values(oracle, bits, op, k, signed):
    name = _name(bits, op, k, signed)
    bs = EDGE_IMM if k else EDGE64
    mismatches = []
    for a, b in itertools.product(EDGE64, bs):
        got = run_raw(_alu_program(bits, op, k, signed, a, b))
        assert got.fault is None, got.fault
        want = oracle(name, a, b)
        if got.r0 != want:
            mismatches.append((hex(a), hex(b), hex(got.r0), hex(want)))
    assert not mismatches, mismatches[:5]


@pytest.mark.parametrize("bits", [32, 64])
def test_neg(oracle, bits):
    cls = InsnClass.ALU64 if bits == 64 else InsnClass.ALU
    for a in EDGE64:
        got = _run(Insn.ld_imm64(0, a), Insn(cls | AluOp.NEG), Insn(InsnClass.JMP | JmpOp.EXIT))
        assert got == oracle(f"neg{bits}", a, 0), hex(a)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("op", JMP_OPS, ids=lambda o: o.name)
@pytest.mark.parametrize("k", [False, True])
def test_jump_conditions(oracle, bits, op, k):
    cls = InsnClass.JMP if bits == 64 else InsnClass.JMP32
    name = f"jmp{bits}_{op.name.lower()}_{'k' if k else 'x'}"
    for a, b in itertools.product(EDGE64, EDGE_IMM if k else EDGE64):
        jump = Insn(cls | op | Source.K, 1, 0, 2, b) if k else Insn(cls | op | Source.X, 1, 2, 2, 0)
        prog = _prog(Insn.ld_imm64(1, a), Insn.ld_imm64(2, b), jump,
                     Insn(InsnClass.ALU64 | AluOp.MOV, 0, imm=0), Insn(InsnClass.JMP | JmpOp.EXIT),
                     Insn(InsnClass.ALU64 | AluOp.MOV, 0, imm=1), Insn(InsnClass.JMP | JmpOp.EXIT))
        got = run_raw(prog)
        assert got.fault is None
        assert got.r0 == oracle(name, a, b), (hex(a), hex(b))


@pytest.mark.parametrize("w", [16, 32, 64])
def test_byte_swaps(oracle, w):
    for a in EDGE64:
        be = _run(Insn.ld_imm64(0, a), Insn(InsnClass.ALU | AluOp.END | Source.X, 0, imm=w), Insn(0x95))
        le = _run(Insn.ld_imm64(0, a), Insn(InsnClass.ALU | AluOp.END | Source.K, 0, imm=w), Insn(0x95))
        bswap = _run(Insn.ld_imm64(0, a), Insn(InsnClass.ALU64 | AluOp.END, 0, imm=w), Insn(0x95))
        assert be == oracle(f"bswap{w}", a, 0)   # the host is little-endian: to-BE swaps
        assert bswap == oracle(f"bswap{w}", a, 0)
        assert le == oracle(f"le{w}", a, 0)


@pytest.mark.parametrize("dst_bits,w", [(64, 8), (64, 16), (64, 32), (32, 8), (32, 16)])
def test_movsx(oracle, dst_bits, w):
    cls = InsnClass.ALU64 if dst_bits == 64 else InsnClass.ALU
    for a in EDGE64:
        got = _run(Insn.ld_imm64(1, a), Insn(cls | AluOp.MOV | Source.X, 0, 1, w), Insn(0x95))
        assert got == oracle(f"movsx{dst_bits}_{w}", a, 0), hex(a)


def test_plain_python_spot_checks():
    # A few values worked out by hand, independent of both implementations.
    assert _run(Insn(0xB7, 0, imm=-1), Insn(0x95)) == M64                      # mov r0, -1 sign-extends
    assert _run(Insn(0xB4, 0, imm=-1), Insn(0x95)) == 0xFFFF_FFFF              # mov32 zero-extends
    assert _run(Insn.ld_imm64(0, 1 << 63), Insn(0x37, 0, 0, 1, -1), Insn(0x95)) == 1 << 63  # INT_MIN / -1
    assert _run(Insn(0xB7, 0, imm=7), Insn(0x37, 0, 0, 0, 0), Insn(0x95)) == 0  # x / 0
    assert _run(Insn(0xB7, 0, imm=7), Insn(0x97, 0, 0, 0, 0), Insn(0x95)) == 7  # x % 0
    assert _run(Insn(0xB7, 0, imm=-7), Insn(0x97, 0, 0, 1, 2), Insn(0x95)) == (-1) & M64  # smod sign of dividend
    assert _run(Insn(0xB7, 0, imm=1), Insn(0x67, 0, imm=65), Insn(0x95)) == 2  # shift masked to 63
    assert _run(Insn(0xB4, 0, imm=1), Insn(0x64, 0, imm=33), Insn(0x95)) == 2  # 32-bit shift masked to 31


@settings(max_examples=150)
@given(st.sampled_from(list(_alu_cases())), st.integers(0, M64), st.integers(0, M64))
def test_alu_random(oracle, case, a, b):
    bits, op, k, signed = case
    if k:
        b = ((b & 0xFFFF_FFFF) ^ 0x8000_0000) - 0x8000_0000
    got = run_raw(_alu_program(bits, op, k, signed, a, b))
    assert got.r0 == oracle(_name(bits, op, k, signed), a, b)

"""Golden listings of the JIT's output for small programs, plus FileCheck-style checks of the idioms.

Each case lowers an eBPF assembly snippet and prints, for every eBPF
instruction, its text followed by the NFP instructions it became.  The
listing is compared with tests/golden/jit/<name>.txt (``--update-golden``
rewrites it after review).  Independently of the golden text, the CHECK
patterns state what the lowering must contain, in order (as LLVM's FileCheck
does): they are the design (add/addc carry chains, funnel shifts, 16x16
multiplies, the XDP abort stub ...), so a golden file regenerated with a
regression still fails them.  Every listing is also simulated against the
interpreter, so the golden text is known-good code.
"""

from __future__ import annotations

import re

import pytest

from nfpjit.analysis import analyze
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.disasm import format_insn
from nfpjit.ebpf.interp import run
from nfpjit.isa.image import Image
from nfpjit.isa.sim import simulate
from nfpjit.jit import lower

PACKET = bytes(range(64))

CASES = {
    "alu64_carry": (
        "lddw r1, 0x1ffffffff\nlddw r2, 0x100000001\nadd r1, r2\nsub r1, -3\nmov r0, r1\nexit\n",
        ["add ab2, a2, b4", "addc ab3, a3, b5", "add ab2, a2, 3", "addc ab3, a3, 0", "halt"],
    ),
    "alu32_zext": (
        "mov32 r1, -1\nadd32 r1, 0x100\nmov r0, r1\nexit\n",
        ["immed ab2, 0x0, invert", "immed ab3, 0x0", "add ab2, a2, b", "immed ab3, 0x0"],
    ),
    "shift64_const": (
        "lddw r1, 0x8000000000000001\nlsh r1, 4\nrsh r1, 36\narsh r1, 1\nmov r0, r1\nexit\n",
        ["dbl_shf ab3, a3, b2, 28", "alu_shf ab2, --, mov, b2, shl 4",
         "alu_shf ab2, --, mov, b3, shr 4", "immed ab3, 0x0", "dbl_shf ab2, a3, b2, 1",
         "alu_shf ab3, --, mov, b3, asr 1"],
    ),
    "shift64_reg": (
        "lddw r1, 0x8000000000000001\nmov r2, 40\nrsh r1, r2\nmov r0, r1\nexit\n",
        ["and ab{t}, a4, 63", "br_bset a{t}, 5, .shift_big", "dbl_shf ab2, a3, b2, indirect",
         "br.always .shift_done", ".shift_big", "alu_shf ab2, --, mov, b3, shr indirect", ".shift_done"],
    ),
    "mul16": (
        "mov r1, 300\nmov r2, 0x1234\nmul r1, r2\nmov r0, r1\nexit\n",
        ["mul_start a2, b4", "mul_step 16x16", "mul_step 16x16", "mul_last ab2"],
    ),
    "div_const": (
        "mov32 r1, 1000\ndiv32 r1, 7\nmod32 r1, 3\nmov r0, r1\nexit\n",
        ["mul_start", "mul_step 32x32", "mul_last2", "sub", "alu_shf", "shr 1", "alu_shf", "mul_last", "sub ab2"],
    ),
    "bswap64": (
        "lddw r3, 0x0102030405060708\nbswap64 r3\nmov r0, r3\nexit\n",
        ["ld_field ab{t}, 0b1010, b6, 8, clear", "ld_field ab{t}, 0b0101, b6, 24",
         "ld_field ab6, 0b1010, b7, 8, clear", "ld_field ab6, 0b0101, b7, 24", "mov ab7, b{t}"],
    ),
    "jump64_signed": (
        "lddw r1, -5\nmov r0, 1\njsgt r1, 3, +1\nmov r0, 2\njsle r1, r0, +1\nmov r0, 3\n"
        "jslt r1, -5, +1\nmov r0, 4\njsgt r1, -1, +1\nmov r0, 5\nexit\n",
        # d > 3 is d >= 4; register operands swap instead (Z only covers the high word);
        # d < -5 adds 5 (no constant load); d > -1 is d >= 0
        ["sub --, a2, 4", "subc --, a3, 0", "br.ge L", "sub --, a0, b2", "subc --, a1, b3", "br.ge L",
         "add --, a2, 5", "addc --, a3, 0", "br.lt L", "sub --, a2, 0", "subc --, a3, 0", "br.ge L"],
    ),
    "xdp_exit": (
        "mov r0, 2\nexit\n",
        ["immed ab0, 0x2", "sub --, a0, 4", "br.hi .xdp_aborted_", "halt b0", ".xdp_aborted_", "halt 0"],
    ),
}


def listing(program, mprog) -> str:
    """eBPF instructions (with pcs) each followed by its NFP instructions; stubs at the end of functions."""
    lines = []
    by_pc: dict[int, list[str]] = {}
    tail: list[str] = []
    last_pc = None
    for m in mprog.entries():
        if m.is_label:
            if not m.label.startswith("L"):
                (by_pc.setdefault(last_pc, []) if last_pc is not None else tail).append(f"  {m.label}:")
            continue
        last_pc = m.pc
        (by_pc.setdefault(m.pc, []) if m.pc is not None else tail).append(f"      {m}")
    for pc, insn in program.slots():
        lines.append(f"{pc:4}: {format_insn(insn, pc)}")
        lines.extend(by_pc.get(pc, []))
    lines.extend(tail)
    return "\n".join(lines) + "\n"


def filecheck(text: str, patterns: list[str]) -> None:
    """Each pattern must match a later line than the previous one; ``{t}`` matches any register number."""
    lines = text.splitlines()
    i = 0
    for pat in patterns:
        rx = re.compile(re.escape(pat).replace(re.escape("{t}"), r"\d+"))
        while i < len(lines) and not rx.search(lines[i]):
            i += 1
        assert i < len(lines), f"CHECK not found (in order): {pat!r}\n{text}"
        i += 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_listing(name, golden):
    source, checks = CASES[name]
    program = assemble(source)
    mprog = lower(program, analyze(program))
    text = listing(program, mprog)
    filecheck(text, checks)
    want = run(program, PACKET)
    got = simulate(Image(code=mprog.assemble().words), PACKET)
    assert got.fault is None and got.r0 == want.r0
    golden(f"jit/{name}.txt", text)


def test_filecheck_can_fail():
    with pytest.raises(AssertionError, match="CHECK not found"):
        filecheck("a\nb\n", ["b", "a"])


# -- the machine IR itself ------------------------------------------------------------------------

def _hand_program():
    from nfpjit.isa import Bank, Cond, Gpr, Imm, Instruction, Op
    from nfpjit.isa.image import RelocKind
    from nfpjit.jit.mir import MFunction, MInstr, MProgram, MReloc

    a0 = Gpr(Bank.A, 0)
    main = MFunction("main", 0, [
        MInstr(label="top"),
        MInstr(Instruction(Op.IMMED, dest=Gpr(Bank.A, 2), imm=0), pc=0, reloc=MReloc(RelocKind.MAP_ID, "counters")),
        MInstr(Instruction(Op.BR, cond=Cond.EQ), target="sub", pc=1),
        MInstr(label="mid"),
        MInstr(Instruction(Op.BR, cond=Cond.ALWAYS, defer=1), pc=2, reloc=MReloc(RelocKind.ROUTINE_ADDR, "fw_map_lookup")),
        MInstr(Instruction(Op.LOAD_ADDR, dest=Gpr(Bank.A, 30)), target="mid", pc=2),
        MInstr(Instruction(Op.HALT, b=a0)),
    ])
    sub = MFunction("sub", 5, [MInstr(label="sub"), MInstr(Instruction(Op.HALT, b=Imm(1)), pc=5)])
    return MProgram("hand", [main, sub])


def test_assemble_resolves_labels_relocations_lines_and_symbols():
    from nfpjit.isa.encoding import decode
    from nfpjit.isa.image import RelocKind, SymbolKind

    mprog = _hand_program()
    assert mprog.size() == 6 and [f.size() for f in mprog.functions] == [5, 1]
    asm = mprog.assemble()
    assert asm.labels == {"top": 0, "mid": 2, "sub": 5}
    assert [decode(w) for w in asm.words] == list(asm.instructions)
    assert asm.instructions[1].target == 5 and asm.instructions[3].target == 2
    assert asm.line_pcs == ((0, 0), (1, 1), (2, 2), (3, 2), (5, 5))
    assert [(r.address, r.kind, r.symbol) for r in asm.relocations] == [
        (0, RelocKind.MAP_ID, "counters"), (2, RelocKind.ROUTINE_ADDR, "fw_map_lookup")]
    syms = {s.name: s for s in asm.symbols}
    assert (syms["main"].kind, syms["main"].address, syms["main"].size) == (SymbolKind.SUBPROG, 0, 5)
    assert (syms["sub"].address, syms["sub"].size) == (5, 1)
    assert syms["counters"].kind == SymbolKind.MAP and syms["fw_map_lookup"].kind == SymbolKind.ROUTINE
    assert "br.eq sub" in mprog.listing() and "reloc map_id counters" in mprog.listing()


def test_assemble_rejects_bad_machine_programs():
    from nfpjit.isa import Instruction, Op
    from nfpjit.jit.mir import MFunction, MInstr, MirError, MProgram

    bad = _hand_program()
    bad.functions[1].body[0] = MInstr(label="elsewhere")
    with pytest.raises(MirError, match="undefined label 'sub'"):
        bad.assemble()
    dup = _hand_program()
    dup.functions[1].body.insert(0, MInstr(label="top"))
    with pytest.raises(MirError, match="defined twice"):
        dup.assemble()
    long = MProgram("long", [MFunction("f", 0, [MInstr(Instruction(Op.NOP))] * 0x3F01)])
    with pytest.raises(MirError, match="code store"):
        long.assemble()

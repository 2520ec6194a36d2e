"""The machine-level dataflow (passes/machine.py) against the simulator, plus the shared harness of the pass tests.

- def/use: for random instructions of every ISA entry, the simulator's semantic handler must
  leave every location outside ``clobbers`` alone, and what it computes must not depend on a
  location outside ``uses`` (a ``defs`` location is overwritten whatever it held);
- firmware calls: the ABI's argument registers are used, R0 defined, R1..R5 clobbered;
- CFG: blocks split at referenced labels and after defer slots; firmware calls continue at the
  return label; BPF-to-BPF calls and rtn are escapes; liveness and known bits on small programs;
- known bits: the prediction holds for random inputs (constants are exact, partial knowledge
  is sound);
- the editing helpers: defer counts follow deleted slot instructions; LM pointer delays are
  repaired with nops;
- every machine pass (and -O2's machine pipeline) on random NFP code, not only the lowering's:
  the simulator gives the same r0, action and packet before and after.

``golden_case`` and ``differential_case`` are used by tests/test_pass_<name>.py.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.bits import MASK32
from nfpjit.driver import compile
from nfpjit.ebpf.asm import assemble
from nfpjit.isa.image import Image, RelocKind
from nfpjit.isa.operands import Bank, Gpr, GprBoth, Imm, LMem, NoDest, Xfer, XferSide
from nfpjit.isa.sim.firmware import Routine
from nfpjit.isa.sim.machine import Machine
from nfpjit.isa.sim.memory import LM_SIZE, Trap
from nfpjit.isa.sim.semantics import HANDLERS
from nfpjit.isa.table import (MUL_STEPS_NEEDED, TABLE, AluOp, Cond, Csr, Format, Instruction, Memory, MulStep, Op,
                              ShiftKind, Width)
from nfpjit.jit.mir import MFunction, MInstr, MProgram, MReloc
from nfpjit.passes import machine as M
from nfpjit.passes.pipelines import O1, PIPELINES
from nfpjit.testing.passcheck import check_pass

from test_isa_roundtrip import instruction_for
from test_jit_differential import CRAFTED, differential
from test_jit_golden import filecheck, listing

# -- def/use against the simulator -----------------------------------------------------------------

#: entries whose random instances the single-step check runs (commands need valid addresses: below)
_STEPPABLE = [e for e in TABLE if e.format not in (Format.CMD,) and e.op != Op.CTX_WAIT]


def _machine(rng: random.Random) -> Machine:
    m = Machine(Image(code=(0,)), bytes(64), maps_in={}, budget=10 ** 6, map_cache_size=0, seed=1, trace=False,
                ingress_ifindex=1, rx_queue_index=0)
    for bank in (m.gpr_a, m.gpr_b, m.xin, m.xout, m.nn):
        for i in range(32):
            bank[i] = rng.getrandbits(32)
    m.z, m.n, m.c, m.v = (rng.getrandbits(1) for _ in range(4))
    m.prev = rng.getrandbits(32)
    m.lm_ptr = [rng.randrange(0, LM_SIZE - 128) & ~3 for _ in range(4)]
    m.lm.data[:] = bytes(rng.getrandbits(8) for _ in range(LM_SIZE))
    m.mul_x, m.mul_y = rng.getrandbits(32), rng.getrandbits(32)
    m.mul_acc, m.mul_steps, m.mul_mode = 0, 0, None
    m.cycles = 100
    return m


def _snapshot(m: Machine) -> dict:
    s = {}
    for i in range(32):
        s[M.A0 + i], s[M.B0 + i] = m.gpr_a[i], m.gpr_b[i]
        s[M.XIN0 + i], s[M.XOUT0 + i], s[M.NN0 + i] = m.xin[i], m.xout[i], m.nn[i]
    s[M.CC] = (bool(m.z), bool(m.n), bool(m.c), bool(m.v))
    s[M.PREV] = m.prev
    s[M.MUL] = (m.mul_x, m.mul_y, m.mul_acc, m.mul_steps, m.mul_mode)
    for p in range(4):
        s[M.lmp(p)] = m.lm_ptr[p]
    s[M.LM] = bytes(m.lm.data)
    s[M.MEM] = bytes(m.ctm.data)
    s[M.CSR] = (m.pkt_addr, m.pkt_len, m.tx_queue)
    s["out"] = (m.action, m.halted, m.branch_target, m.branch_left)
    return s


def _restore(m: Machine, s: dict) -> None:
    for i in range(32):
        m.gpr_a[i], m.gpr_b[i] = s[M.A0 + i], s[M.B0 + i]
        m.xin[i], m.xout[i], m.nn[i] = s[M.XIN0 + i], s[M.XOUT0 + i], s[M.NN0 + i]
    m.z, m.n, m.c, m.v = s[M.CC]
    m.prev = s[M.PREV]
    m.mul_x, m.mul_y, m.mul_acc, m.mul_steps, m.mul_mode = s[M.MUL]
    m.lm_ptr = [s[M.lmp(p)] for p in range(4)]
    m.lm.data[:] = s[M.LM]


def _perturb(value):
    if isinstance(value, int):
        return value ^ 0x5A5A5A5A
    if isinstance(value, tuple) and len(value) == 4 and all(isinstance(x, bool) for x in value):
        return tuple(not x for x in value)
    return None


def _step(m: Machine, ins: Instruction):
    try:
        HANDLERS[ins.op](m, ins)
    except Trap:
        return None
    return _snapshot(m)


_SMALL_LOCS = [loc for loc in range(M.NLOCS) if loc not in (M.MUL, M.LM, M.MEM, M.CSR)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(_STEPPABLE).flatmap(instruction_for), st.integers(0, 2 ** 32), st.sampled_from(_SMALL_LOCS))
def test_def_use_matches_the_simulator(ins, seed, probe):
    """What the handler touches is within clobbers; what it computes depends only on uses."""
    rng = random.Random(seed)
    m = _machine(rng)
    if ins.op in (Op.MUL_LAST, Op.MUL_LAST2):       # a finished product to read
        m.mul_mode, m.mul_steps = MulStep.M16X16, MUL_STEPS_NEEDED[MulStep.M16X16]
    if ins.op == Op.CSR_WR and ins.csr in (Csr.PKT_ADDR, Csr.PKT_LEN):
        assume(False)                        # checked against the CTM bounds: covered by the corpus runs
    du = M.def_use(ins)
    before = _snapshot(m)
    after = _step(m, ins)
    assume(after is not None)
    for loc, value in before.items():
        if loc == "out" or du.clobbers >> loc & 1:
            continue
        assert after[loc] == value, f"{ins}: changed {M.loc_name(loc)} outside clobbers {M.locs_text(du.clobbers)}"
    if du.uses >> probe & 1:
        return
    changed = dict(before)
    new = _perturb(before[probe])
    assume(new is not None)
    changed[probe] = new
    m2 = _machine(random.Random(seed))
    _restore(m2, changed)
    after2 = _step(m2, ins)
    assume(after2 is not None)
    for loc in after:
        if loc == probe:
            want = after[loc] if du.defs >> probe & 1 else new
            if du.clobbers >> probe & 1 and not du.defs >> probe & 1:
                continue
            assert after2[loc] == want, f"{ins}: {M.loc_name(probe)} not overwritten as defs says"
        else:
            assert after2[loc] == after[loc], f"{ins}: result depends on {M.loc_name(probe)}, not in uses " \
                                              f"{M.locs_text(du.uses)}"


def test_def_use_of_commands_and_partial_writes():
    read = Instruction(Op.MEM_READ, mem=Memory.CTM, xfer=Xfer(XferSide.IN, 2), a=Gpr(Bank.A, 2), b=Imm(4),
                       count=3, ctx_swap=True)
    du = M.def_use(read)
    assert M.locs_text(du.defs) == "$in2 $in3 $in4"
    assert du.uses & (1 << M.MEM) and du.uses & 1 << 2 and not du.uses & M.BIT_PREV
    indirect = Instruction(Op.MEM_WRITE, mem=Memory.EMEM, xfer=Xfer(XferSide.OUT, 30), a=Gpr(Bank.A, 1),
                           b=Gpr(Bank.B, 0), count=0, ctx_swap=True)
    du = M.def_use(indirect)
    assert du.uses & M.BIT_PREV and "$out30 $out31" in M.locs_text(du.uses) and not du.defs
    ts = Instruction(Op.MEM_TEST_SET, mem=Memory.EMEM, xfer=Xfer(XferSide.OUT, 0), a=Gpr(Bank.A, 1),
                     b=Gpr(Bank.B, 0), count=1, ctx_swap=True)
    assert M.locs_text(M.def_use(ts).defs) == "$in0"
    lo = Instruction(Op.IMMED, dest=GprBoth(5), imm=7, width=Width.LO)
    assert M.def_use(lo).uses == M.both(5) and M.def_use(lo).defs == M.both(5)
    full = Instruction(Op.LD_FIELD, dest=GprBoth(5), mask=0xF, b=Gpr(Bank.B, 2), amount=8)
    part = Instruction(Op.LD_FIELD, dest=GprBoth(5), mask=0x3, b=Gpr(Bank.B, 2), amount=8)
    assert not M.def_use(full).uses & M.both(5) and M.def_use(part).uses & M.both(5)
    lm = Instruction(Op.MOV, dest=LMem(1, 2), b=Gpr(Bank.B, 3))
    du = M.def_use(lm)
    assert du.uses & (1 << M.lmp(1)) and du.effects & M.Effect.LM and du.clobbers & (1 << M.LM)
    wr = Instruction(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_1, b=Imm(64))
    assert M.def_use(wr).defs == 1 << M.lmp(1)
    halt = Instruction(Op.HALT, b=Gpr(Bank.B, 0))
    assert M.def_use(halt).uses & M.R0_REGS == M.R0_REGS
    assert M.def_use(Instruction(Op.BR, cond=Cond.ALWAYS)).uses == 0
    assert M.def_use(Instruction(Op.BR, cond=Cond.EQ)).uses == M.BIT_CC
    shf = Instruction(Op.ALU_SHF, dest=GprBoth(2), b=Gpr(Bank.B, 2), alu=AluOp.MOV, shift=ShiftKind.SHL, amount=3)
    assert not M.def_use(shf).uses & (M.BIT_CC | M.BIT_PREV)


def test_firmware_calls_follow_the_abi():
    lookup = M.routine_def_use(Routine.MAP_LOOKUP.symbol)
    assert {"a2", "a4", "a30"} <= set(M.locs_text(lookup.uses).split())
    assert "a6" not in M.locs_text(lookup.uses).split()
    assert lookup.defs == M.R0_REGS
    assert lookup.clobbers & M.both(11) and lookup.clobbers & M.BIT_CC
    update = M.routine_def_use(Routine.MAP_UPDATE.symbol)
    assert {"a6", "a8", "a9"} <= set(M.locs_text(update.uses).split())
    assert M.routine_def_use("fw_no_such_routine").uses == M.ALL


# -- CFG, liveness, known bits ---------------------------------------------------------------------


def _fn(*entries) -> MFunction:
    return MFunction("f", 0, list(entries))


def _i(ins, **kw) -> MInstr:
    return MInstr(ins, **kw)


def test_cfg_blocks_calls_and_liveness():
    g = lambda n: Gpr(Bank.A, n)
    fn = _fn(
        MInstr(label="L0"),
        _i(Instruction(Op.IMMED, dest=GprBoth(4), imm=5)),
        MInstr(label="L1"),                                            # not referenced: no split
        _i(Instruction(Op.IMMED, dest=GprBoth(6), imm=6)),
        _i(Instruction(Op.BR, cond=Cond.ALWAYS, defer=1), reloc=MReloc(RelocKind.ROUTINE_ADDR, "fw_map_lookup")),
        _i(Instruction(Op.LOAD_ADDR, dest=g(30)), target="back"),
        MInstr(label="back"),
        _i(Instruction(Op.SUB, dest=NoDest(), a=g(0), b=Imm(0))),
        _i(Instruction(Op.BR, cond=Cond.EQ), target="out"),
        _i(Instruction(Op.BR, cond=Cond.ALWAYS), target="callee"),      # a BPF-to-BPF call
        MInstr(label="out"),
        _i(Instruction(Op.HALT, b=Imm(2))),
    )
    prog = MProgram("p", [fn, _fn(MInstr(label="callee"), _i(Instruction(Op.RTN, a=g(30))))])
    (f, cfg), (_, callee) = M.program_cfgs(prog)
    kinds = [b.kind for b in cfg.blocks]
    assert kinds == [M.CALL, M.COND, M.ESCAPE, M.HALT]
    assert cfg.blocks[0].succs == [1] and sorted(cfg.blocks[1].succs) == [2, 3]
    assert callee.blocks[0].kind == M.RETURN
    lv = M.liveness(cfg)
    live = M.locs_text(lv.after(5)).split()           # after the load_addr: what the routine reads
    assert {"a2", "a4", "a30"} <= set(live) and "a0" not in live and "b1" not in live   # R0: written by it
    assert lv.live_out[2] == M.ALL & ~M.SCRATCH        # the BPF call: everything but the lowering's scratch
    bits = M.known_bits(cfg)
    assert bits[1] == {} or M.const_of(bits[1], 4) is None    # the routine clobbers R2


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([Op.ADD, Op.SUB, Op.AND, Op.OR, Op.XOR, Op.MOV, Op.ALU_SHF, Op.DBL_SHF, Op.LD_FIELD]),
       st.integers(0, MASK32), st.integers(0, MASK32), st.integers(0, MASK32), st.integers(0, MASK32),
       st.integers(0, 31), st.integers(1, 15), st.booleans(), st.sampled_from(list(ShiftKind)))
def test_known_bits_are_sound(op, va, vb, ka, kb, amount, mask, clear, shift):
    """Known bits predicted from partial knowledge hold for the concrete result (the simulator's)."""
    a, b = Gpr(Bank.A, 3), Gpr(Bank.B, 4)
    if op == Op.ALU_SHF:
        ins = Instruction(op, dest=GprBoth(5), b=b, alu=AluOp.MOV, shift=shift, amount=amount)
    elif op == Op.DBL_SHF:
        ins = Instruction(op, dest=GprBoth(5), a=a, b=b, amount=amount)
    elif op == Op.LD_FIELD:
        ins = Instruction(op, dest=GprBoth(5), mask=mask, b=b, amount=amount, clear=True)
    elif op == Op.MOV:
        ins = Instruction(op, dest=GprBoth(5), b=b)
    else:
        ins = Instruction(op, dest=GprBoth(5), a=a, b=b)
    state = {3: (~va & ka & MASK32, va & ka), 32 + 4: (~vb & kb & MASK32, vb & kb)}
    M.step(state, MInstr(ins))
    m = _machine(random.Random(1))
    m.gpr_a[3], m.gpr_b[4] = va, vb
    HANDLERS[op](m, ins)
    got = m.gpr_a[5]
    for loc in (5, 32 + 5):
        z, o = state.get(loc, (0, 0))
        assert got & z == 0 and got & o == o, f"{ins}: known zero {z:#x} one {o:#x} but result {got:#x}"
    full = {3: (~va & MASK32, va), 32 + 4: (~vb & MASK32, vb)}
    res = M.evaluate(ins, full)
    assert res is not None and res[0][5] == got and res[0][32 + 5] == got


# -- editing helpers ----------------------------------------------------------------------------------


def test_apply_edits_keeps_defer_counts():
    nop = Instruction(Op.NOP)
    fn = _fn(_i(Instruction(Op.BR, cond=Cond.ALWAYS, defer=2), target="x"), _i(nop), _i(Instruction(
        Op.IMMED, dest=GprBoth(2), imm=1)), MInstr(label="x"), _i(Instruction(Op.HALT, b=Imm(0))))
    M.apply_edits(fn, {1: None})
    assert fn.body[0].instr.defer == 1 and fn.body[1].instr.op == Op.IMMED
    M.apply_edits(fn, {0: None})
    assert [m.instr.op for m in fn.body if m.instr] == [Op.IMMED, Op.HALT]


def test_repair_lm_timing_puts_back_the_wait():
    wr = Instruction(Op.CSR_WR, csr=Csr.ACTIVE_LM_ADDR_0, b=Imm(64))
    use = Instruction(Op.MOV, dest=GprBoth(2), b=LMem(0, 1))
    fn = _fn(_i(wr), _i(Instruction(Op.IMMED, dest=GprBoth(4), imm=1)), _i(use), _i(Instruction(Op.HALT, b=Imm(0))))
    assert M.repair_lm_timing(fn)
    assert [m.instr.op for m in fn.body] == [Op.CSR_WR, Op.NOP, Op.NOP, Op.IMMED, Op.MOV, Op.HALT]
    assert not M.repair_lm_timing(fn)
    image = Image(code=MProgram("p", [fn]).assemble().words)
    from nfpjit.isa.sim import simulate
    assert simulate(image, bytes(64)).fault is None


# -- the shared harness of tests/test_pass_<name>.py ----------------------------------------------------

#: the -O2 pipeline up to (not including) the machine passes
LOWER = PIPELINES[2].split(",copy-prop,")[0]


def _matches(text: str, checks, forbidden) -> bool:
    try:
        filecheck(text, checks)
    except AssertionError:
        return False
    return not any(bad in text for bad in forbidden)


def golden_case(golden, name: str, source: str, before: str, the_pass: str, checks: list[str],
                forbidden: list[str] = (), *, order: bool = False, lower: str = None) -> tuple[str, str]:
    """Compile ``source`` with LOWER + ``before``, then also ``the_pass``: golden before/after listing + CHECKs.

    The CHECK patterns (in order) and CHECK-NOT patterns apply to the listing after the pass and
    must not all hold before it (the case shows the pass at work); both programs run against the
    interpreter on the crafted packets and the pass must not make the code longer.  ``order``:
    list the code in address order (``MProgram.listing``) instead of grouped under each eBPF
    instruction (for passes that move code).  ``lower``: the lowering's passes (default: -O2's).
    """
    program = assemble(source)
    spec = ",".join(x for x in (LOWER if lower is None else lower, before) if x)
    without = compile(program, passes=spec, profile="permissive")
    with_pass = compile(program, passes=",".join(x for x in (spec, the_pass) if x), profile="permissive",
                        verify_each=True)
    render = (lambda mp: mp.listing()) if order else (lambda mp: listing(program, mp))
    text_before, text_after = render(without.mprogram), render(with_pass.mprogram)
    filecheck(text_after, checks)
    for bad in forbidden:
        assert bad not in text_after, f"CHECK-NOT {bad!r} matched:\n{text_after}"
    assert not _matches(text_before, checks, forbidden), f"the checks hold without {the_pass} too"
    assert with_pass.stats.nfp_insns <= without.stats.nfp_insns
    for image in (without.image, with_pass.image):
        problems = differential(program, image, CRAFTED)
        assert not problems, "\n".join(problems) + "\n" + text_after
    golden(f"passes/{name}.txt", f"; before {the_pass}\n{text_before}; after {the_pass}\n{text_after}")
    return text_before, text_after


def differential_case(name: str, *, examples: int, seed: int = 1, corpus: bool = False) -> None:
    """``nfpjit test-pass NAME``: -O2 with and without the pass against the interpreter, zero mismatches."""
    report = check_pass(name, examples=examples, seed=seed, corpus=corpus)
    assert report.ok, report.text()
    assert report.compiled + report.corpus_checked > 0


def test_machine_passes_are_in_o2_in_order():
    names = PIPELINES[2].split(",")
    mine = [n for n in names if n in ("copy-prop", "const-fold", "imm-materialise", "neg-add-sub", "ld-mask",
                                       "ld-shift", "reg-init", "dce", "defer-fill")]
    assert mine[0] == "copy-prop" and mine[-1] == "defer-fill"
    assert names.index("copy-prop") > max(names.index(n) for n in O1.split(","))


def test_o2_corpus_code_is_smaller_than_o1():
    """The machine passes pay on every corpus program the default profile compiles."""
    from test_jit_differential import corpus_cases
    sizes = []
    for param in corpus_cases():
        obj, section = param.values
        program = nfpjit.load(obj, section=section)
        if not nfpjit.check(program).ok:
            continue
        before = compile(program, passes=LOWER).stats.nfp_insns
        after = compile(program, opt_level=2).stats.nfp_insns
        assert after <= before, param.id
        sizes.append((before, after))
    assert sizes and sum(a for _, a in sizes) < sum(b for b, _ in sizes)


# -- the machine passes on random NFP code, not only the lowering's ---------------------------------------

_A = [f"a{i}" for i in range(2, 12)]
_B = [f"b{i}" for i in range(2, 12)]
_ALU_OPS = ["add", "addc", "sub", "subc", "and", "or", "xor", "andnot"]


@st.composite
def _machine_code(draw):
    """An MFunction body of random (mostly running) NFP code: ALU, shifts, fields, immeds, copies,
    forward branches with defer slots, CTM and LM traffic, the multiplier; halts with R0 = a1:a0."""
    from nfpjit.isa.asm import parse

    text = ["csr_rd ab20, pkt_addr", "immed ab21, 256", "csr_wr active_lm_addr_2, b21", "nop", "nop", "nop",
            "immed ab3, 0x1234", "immed ab0, 7", "immed ab1, 0"]
    body = [MInstr(parse(t)) for t in text]
    labels: list = []
    for k in range(draw(st.integers(1, 24))):
        kind = draw(st.sampled_from(["alu", "alu", "mov", "shf", "ldf", "imm", "br", "ctm", "lm", "mul", "r0"]))
        a, b = draw(st.sampled_from(_A)), draw(st.sampled_from(_B))
        d = draw(st.sampled_from(_A + _B + [f"ab{i}" for i in range(2, 12)] + ["--"]))
        lines = []
        if kind == "alu":
            src = draw(st.sampled_from([b, str(draw(st.integers(0, 255)))]))
            lines.append(f"{draw(st.sampled_from(_ALU_OPS))} {d}, {a}, {src}")
        elif kind == "mov":
            lines.append(f"mov {d}, {draw(st.sampled_from(_A + _B))}")
        elif kind == "shf":
            sh = draw(st.sampled_from(["shl", "shr", "asr", "ror"]))
            lines.append(f"alu_shf {d}, --, mov, {b}, {sh} {draw(st.sampled_from([0, 8, 16, 24, 3]))}")
        elif kind == "ldf":
            clear = ", clear" if draw(st.booleans()) else ""
            dd = d if d != "--" else "ab5"
            lines.append(f"ld_field {dd}, {draw(st.integers(1, 15))}, {b}, {draw(st.sampled_from([0, 8, 16, 24]))}{clear}")
        elif kind == "imm":
            w = draw(st.sampled_from(["", ", width=lo", ", width=hi", ", invert", ", byte=1"]))
            lines.append(f"immed {d if d != '--' else 'ab5'}, {draw(st.sampled_from([0, 1, 2, 255, 0x100, 0x1234]))}{w}")
        elif kind == "ctm":
            lines.append(f"mov $out0, {b}")
            lines.append(f"{draw(st.sampled_from(['mem_read.ctm $in0', 'mem_write.ctm $out0']))}, a20, "
                         f"{draw(st.integers(0, 40))}, 1, ctx_swap")
            lines.append(f"mov {d if d != '--' else 'ab6'}, $in0")
        elif kind == "lm":
            lines.append(f"mov *l$index2[{draw(st.integers(0, 3))}], {b}")
            lines.append(f"add {d}, {a}, *l$index2[{draw(st.integers(0, 3))}]")
        elif kind == "mul":
            lines += [f"mul_start {a}, {b}", "mul_step 16x16", "mul_step 16x16", f"mul_last {d}"]
        elif kind == "r0":
            lines.append(f"{draw(st.sampled_from(['xor', 'add', 'or']))} ab0, a0, {b}")
        if kind == "br":
            label = f"X{k}"
            labels.append(label)
            cond = draw(st.sampled_from(["eq", "ne", "mi", "pl", "hs", "lo", "ge", "lt", "always"]))
            body.append(MInstr(parse(f"br.{cond} 0, defer={draw(st.integers(0, 1))}"), target=label))
            body.append(MInstr(parse(f"add {d}, {a}, 1")))     # a defer slot (or the fall-through)
        else:
            body.extend(MInstr(parse(t)) for t in lines)
        if labels and draw(st.booleans()):
            body.append(MInstr(label=labels.pop()))
    body.extend(MInstr(label=label) for label in labels)
    body.extend(MInstr(parse(t)) for t in ("xor ab0, a0, b3", "halt 2"))
    return body


def _run(body, frame):
    from nfpjit.isa.sim import simulate

    prog = MProgram("p", [MFunction("f", 0, list(body))])
    prog.verify()
    return simulate(Image(code=prog.assemble().words), frame)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(_machine_code(), st.sampled_from(CRAFTED[:8]))
def test_machine_passes_on_random_code(body, frame):
    """Every machine pass, and -O2's machine pipeline, keeps what random NFP code computes."""
    from nfpjit.passes.manager import parse_pipeline
    from nfpjit.passes.pipelines import MACHINE

    before = _run(body, frame)
    assume(before.fault is None)
    for spec in MACHINE.split(",")[:-1] + [MACHINE]:
        prog = MProgram("p", [MFunction("f", 0, list(body))])
        for p in parse_pipeline(spec):
            p.run(prog)
        after = _run(prog.functions[0].body, frame)
        assert after.fault is None, (spec, after.fault, prog.listing())
        assert (after.r0, after.action, after.packet) == (before.r0, before.action, before.packet), \
            (spec, MProgram("p", [MFunction("f", 0, list(body))]).listing(), prog.listing())

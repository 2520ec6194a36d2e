"""The uBPF / bpf_conformance ``.data`` cases compiled in raw-context mode and run in the simulator.

Oracles: each case's own expected r0 or fault pattern (written from the instruction-set
specification), and the reference interpreter's ``run_raw`` with the bpf_conformance register
convention (registers start at zero, r1 = 0 for an empty block), which must agree on r0, on
faulting, and on the memory block after the run.  A case the compiler refuses is skipped with the
compiler's message, and only atomics on the memory block may be refused (checked from the
program's instructions, independently of the compiler).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from nfpjit.cli import main
from nfpjit.driver import CompileError, compile, run_sim_raw
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run_raw
from nfpjit.ebpf.opcodes import InsnClass, Mode
from nfpjit.errors import UnsupportedError
from nfpjit.testing.conformance import load_data_file, parse_data

DATA = Path(__file__).resolve().parent / "conformance"
FILES = sorted(DATA.glob("*.data"))


def _compile(program, opt_level: int = 0):
    return compile(program, profile="permissive", raw_context=True, opt_level=opt_level).image


def _atomic_on_memory_block(program) -> bool:
    """Whether the program has an atomic whose pointer register is r1 (the memory block)."""
    return any(i.cls in (InsnClass.STX,) and i.mode == Mode.ATOMIC and i.dst == 1 for i in program.insns)


def _interp(case):
    return run_raw(case.program, case.memory, strict_registers=False)


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_conformance_case_sim(path, opt_level):
    case = load_data_file(path)
    try:
        image = _compile(case.program, opt_level)
    except (CompileError, UnsupportedError) as exc:
        if case.error is not None:
            return  # an `-- error` case may be refused at compile time
        assert _atomic_on_memory_block(case.program), f"{case.name}: refused unexpectedly: {exc}"
        pytest.skip("atomics on the memory block: the verifier refuses atomics on packet-like pointers "
                    "(atomic_ptr) and the lowering has no CTM atomics")
    res = run_sim_raw(image, case.memory)
    ref = _interp(case)
    if case.error is not None:
        assert res.fault is not None, f"{case.name}: expected a fault matching {case.error!r}, got r0={res.r0:#x}"
        assert case.error_matches(res.fault.reason), f"{case.name}: fault {res.fault} does not match {case.error!r}"
        assert ref.fault is not None
        return
    assert res.fault is None, f"{case.name}: {res.fault}"
    assert res.r0 == case.result, f"{case.name}: r0={res.r0:#x}, expected {case.result:#x}"
    assert ref.fault is None and res.r0 == ref.r0
    assert res.packet == ref.packet, f"{case.name}: memory block after the run differs from the interpreter's"


def test_most_cases_compile():
    """Only the cases with atomics on the memory block are refused; everything else compiles."""
    refused = []
    for path in FILES:
        case = load_data_file(path)
        try:
            _compile(case.program)
        except (CompileError, UnsupportedError):
            refused.append(case)
    assert all(_atomic_on_memory_block(c.program) for c in refused), [c.name for c in refused]
    assert len(FILES) - len(refused) >= 50


def _case(asm: str, memory: bytes):
    return parse_data(f"-- asm\n{asm}\n-- mem\n{memory.hex(' ')}\n-- result\n0\n", filename="gen.data")


def test_r1_is_zero_for_an_empty_block_and_r2_is_the_length():
    for memory in (b"", b"\x01", bytes(range(40))):
        case = _case("mov %r0, %r1\njeq %r0, 0, +1\nmov %r0, 1\nlsh %r0, 32\nor %r0, %r2\nexit", memory)
        res = run_sim_raw(_compile(case.program), memory)
        ref = _interp(case)
        assert res.fault is None and res.r0 == ref.r0 == ((1 << 32) if memory else 0) | len(memory)


def test_large_r0_is_not_remapped_like_an_xdp_action():
    case = _case("lddw %r0, 0x123456789\nexit", b"")
    assert run_sim_raw(_compile(case.program), b"").r0 == _interp(case).r0 == 0x123456789


_SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, 24), size=st.sampled_from([1, 2, 4, 8]), off=st.integers(0, 28),
       store=st.booleans(), seed=st.integers(0, 255))
def test_bounds_against_the_interpreter(length, size, off, store, seed):
    """Never a fault where the interpreter has none; a fault for every access the interpreter refuses
    in blocks of 8 bytes or more that are a whole number of words, in empty blocks, and past the
    block's length rounded up to a word (at least 8 bytes) otherwise (docs/jit.md: a sub-word
    overrun that stays within that rounding is not caught)."""
    memory = bytes((seed + 37 * i) & 0xFF for i in range(length))
    s = _SIZES[size]
    asm = f"st{s} [%r1+{off}], 0x5a\nmov %r0, 7\nexit" if store else f"ldx{s} %r0, [%r1+{off}]\nexit"
    case = _case(asm, memory)
    res = run_sim_raw(_compile(case.program), memory)
    ref = _interp(case)
    if ref.fault is None:
        assert res.fault is None, f"spurious fault {res.fault}"
        assert res.r0 == ref.r0 and res.packet == ref.packet
    elif length >= 8 and length % 4 == 0 or length == 0 or off + size > max((length + 3) & ~3, 8):
        assert res.fault is not None, f"missed {'store' if store else 'load'} of {size} at {off} of {length}"
        assert "out_of_bounds" in res.fault.reason


def test_cli_run_raw_context_sim(tmp_path, capsys):
    src = tmp_path / "sum.s"
    src.write_text("ldxh %r0, [%r1+2]\nadd %r0, %r2\nldxw %r3, [%r1]\nlsh %r3, 32\nor %r0, %r3\nexit\n")
    mem = "1122334455"
    assert main(["run", str(src), "--raw-context", "--engine", "sim", "--mem", mem, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ref = run_raw(assemble(src.read_text(), filename=str(src)), bytes.fromhex(mem), strict_registers=False)
    (rec,) = doc["packets"]
    assert rec["fault"] is None and rec["r0"] == ref.r0 and rec["action"] == f"r0={ref.r0}"
    assert rec["data"] == mem

    assert main(["run", str(src), "--raw-context", "--engine", "sim", "--mem", ""]) == 0  # r1 = 0
    out = capsys.readouterr().out
    assert "fault: " in out and "out_of_bounds" in out and "(sim)" in out


def test_cli_raw_context_sim_rejection_is_one_error_line(tmp_path, capsys):
    src = tmp_path / "leak.s"
    src.write_text("mov %r0, %r1\nexit\n")  # returns the block's address: the analysis refuses it
    assert main(["run", str(src), "--raw-context", "--engine", "sim", "--mem", "00"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nfpjit: error:") and "Traceback" not in err


def test_cli_block_too_large_for_the_simulator(tmp_path, capsys):
    src = tmp_path / "len.s"
    src.write_text("mov %r0, %r2\nexit\n")
    assert main(["run", str(src), "--raw-context", "--engine", "sim", "--mem", "00" * 8000]) == 2
    err = capsys.readouterr().err
    assert "memory block of 8000 bytes" in err and "Traceback" not in err
    assert main(["run", str(src), "--raw-context", "--engine", "sim", "--mem", "00" * 7936, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["packets"][0]["r0"] == 7936

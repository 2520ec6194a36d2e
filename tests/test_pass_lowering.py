"""The lowering's own passes (passes/lowering.py), one at a time, and the pipeline machinery around them.

Each lower-level pass is switched on alone (and the -O1 pipeline less it) and checked against the
reference interpreter on generated programs; a small program per pass shows in its listing that
the pass changes what it says it changes, and nothing when it is off.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfpjit
from nfpjit.driver import compile, pass_deltas, pipeline
from nfpjit.ebpf.asm import assemble
from nfpjit.errors import UsageError
from nfpjit.passes.manager import parse_pipeline
from nfpjit.passes.pipelines import O1, PIPELINES
from nfpjit.testing import packets, programs

from tests.test_jit_opt import _deterministic, agree

LOWER_PASSES = O1.split(",")

# a program per pass where the pass must shrink the code, with the text that goes away
SHOWCASES = {
    "zext-elim": ("mov32 r1, 7\nadd32 r1, 4\nmov32 r0, r1\nexit\n", "immed ab3, 0x0"),
    "branch-fold": ("mov r0, 1\nmov r1, 5\njgt r1, 9, +1\nmov r0, 2\nexit\n", "br.hs L4"),
    "exit-range": ("mov r0, 2\nexit\n", "br.hi .xdp_aborted_"),
    "shift-range": ("mov r1, 1\nmov r2, 3\nlsh r1, r2\nmov r0, r1\nand r0, 3\nexit\n", "br_bset"),
    "lm-reuse": ("mov r1, 1\nstxw [r10-4], r1\nstxw [r10-8], r1\nldxw r0, [r10-4]\nand r0, 3\nexit\n",
                 "csr_wr active_lm_addr_0"),
    "save-live": (
        "mov r6, 1\nmov r7, 2\nmov r8, 3\nmov r9, 4\ncall fn\nmov r0, r6\nand r0, 3\nexit\n"
        "fn:\nmov r0, 0\nexit\n", "*l$index1["),
}


def _program(text: str):
    return assemble(text, filename="p.s")


@pytest.mark.parametrize("name", LOWER_PASSES)
def test_each_lowering_pass_changes_its_showcase(name):
    program = _program(SHOWCASES[name][0])
    gone = SHOWCASES[name][1]
    without = compile(program, passes="", profile="permissive").mprogram.listing()
    alone = compile(program, passes=name, profile="permissive").mprogram.listing()
    assert without.count(gone) > alone.count(gone), f"{name} left every '{gone}' in place:\n{alone}"
    # ... the result still agrees with the interpreter, and the ablation measures the saving
    assert agree_with(program, [bytes(64)], name) == []
    result = compile(program, passes=name, profile="permissive")
    saved = dict((n, d) for n, _, d in pass_deltas(result))
    assert saved[name] > 0


@pytest.mark.parametrize("name", LOWER_PASSES)
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs(max_blocks=6), frames=st.lists(packets(max_len=128), min_size=1, max_size=2))
def test_each_lowering_pass_alone_and_left_out_agrees(name, program, frames):
    if not _deterministic(program):
        return
    for spec in (name, ",".join(p for p in LOWER_PASSES if p != name)):
        try:
            problems = agree_with(program, frames, spec)
        except nfpjit.errors.UnsupportedError:
            return
        assert not problems, f"pipeline '{spec}':\n" + "\n".join(problems)


def agree_with(program, frames, spec: str) -> list[str]:
    from tests import test_jit_opt

    original = test_jit_opt.compile
    try:
        test_jit_opt.compile = lambda p, opt_level, profile: compile(p, passes=spec, profile=profile,
                                                                     verify_each=True)
        return agree(program, frames)
    finally:
        test_jit_opt.compile = original


def test_named_pipelines_parse_and_grow():
    sizes = [len(parse_pipeline(PIPELINES[level])) for level in (0, 1, 2)]
    assert sizes[0] == 0 and sizes[0] < sizes[1] <= sizes[2]
    assert {p.name for p in parse_pipeline(PIPELINES[1])} <= {p.name for p in parse_pipeline(PIPELINES[2])}


def test_disable_pass_removes_it_and_unknown_names_fail_with_the_list():
    names = [p.name for p in pipeline(1, disable=["zext-elim"])]
    assert "zext-elim" not in names and "branch-fold" in names
    with pytest.raises(UsageError, match="known passes|did you mean"):
        pipeline(1, disable=["no-such-pass"])
    with pytest.raises(UsageError, match="did you mean zext-elim"):
        pipeline(1, passes="zext-elimm")
    with pytest.raises(UsageError, match="has no option"):
        pipeline(1, passes="zext-elim{window=3}")


def test_print_after_and_print_changed_snapshots():
    program = _program(SHOWCASES["zext-elim"][0])
    r = compile(program, opt_level=1, profile="permissive", print_after={"zext-elim"})
    assert [name for name, _ in r.snapshots] == ["lower"]
    assert r.snapshots[0][1] == r.mprogram.listing()
    assert compile(program, opt_level=0, profile="permissive", print_changed=True).snapshots == ()


def test_cli_pass_options(tmp_path, capsys):
    from nfpjit.cli import main

    src = tmp_path / "p.s"
    src.write_text(".type xdp\n" + SHOWCASES["zext-elim"][0])
    out = tmp_path / "p.nffw"
    assert main(["compile", str(src), "-o", str(out), "-O1", "--print-after", "all", "--time-passes",
                 "--disable-pass", "branch-fold"]) == 0
    err = capsys.readouterr().err
    assert "NFP code after lower" in err and "zext-elim" in err and "branch-fold" not in err
    assert main(["compile", str(src), "-o", str(out), "--disable-pass", "nope"]) == 2
    assert "unknown pass 'nope'" in capsys.readouterr().err



@pytest.mark.parametrize("name", LOWER_PASSES)
def test_golden_listing(name, golden):
    """Before/after listings of each showcase (-O0, then the pass alone): tests/golden/passes/lower_<name>.txt.

    The showcase test above states what must change; the golden text keeps the whole listing reviewed.
    """
    from test_pass_machine import listing

    source, gone = SHOWCASES[name]
    program = _program(source)
    before = listing(program, compile(program, passes="", profile="permissive").mprogram)
    after = listing(program, compile(program, passes=name, profile="permissive", verify_each=True).mprogram)
    assert after.count(gone) < before.count(gone)
    golden(f"passes/lower_{name.replace('-', '_')}.txt", f"; before {name}\n{before}; after {name}\n{after}")


def test_a_crashing_pass_is_named_with_the_instruction_it_was_at():
    from dataclasses import dataclass

    from nfpjit.isa.table import Op
    from nfpjit.passes.manager import Pass, PassError

    @dataclass(frozen=True)
    class TripOnHalt(Pass):
        name: ClassVar[str] = "trip-on-halt"

        def run(self, unit) -> bool:
            for m in unit.instructions():
                if m.instr.op == Op.HALT:
                    raise ValueError("no halts here")
            return False

    program = _program("mov r0, 2\nexit\n")
    with pytest.raises(PassError, match=r"'trip-on-halt' crashed at 'halt b0' \(eBPF pc 1\): ValueError"):
        compile(program, passes=[TripOnHalt()], profile="permissive")


@pytest.mark.parametrize("spec", ["pkt-cache{window=-5}", "pkt-cache{window=100000}", "map-cache{slots=-1}",
                                  "memcpy-gather{max_bytes=200}", "dce{rounds=0}"])
def test_out_of_range_options_are_refused(spec):
    with pytest.raises(UsageError, match=r"must be \d+\.\.\d+"):
        pipeline(2, passes=spec)

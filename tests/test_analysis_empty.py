"""An empty program is reported, not crashed on: the analysis, the check and the driver."""

from __future__ import annotations

import pytest

import nfpjit
from nfpjit.analysis import VerificationError, analyze
from nfpjit.analysis.cfg import build_cfg
from nfpjit.driver import compile
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.ebpf.program import Program
from nfpjit.errors import LoadError


@pytest.mark.parametrize("prog_type", [ProgType.XDP, ProgType.SCHED_CLS])
def test_empty_program_is_a_problem(prog_type):
    program = Program("x", (), prog_type=prog_type)
    cfg = build_cfg(program)
    assert not cfg.blocks and not cfg.functions
    a = analyze(program)
    assert [p.code for p in a.problems] == ["empty"]
    assert a.max_stack_depth == 0
    with pytest.raises(VerificationError, match="empty"):
        analyze(program, strict=True)
    assert not nfpjit.check(program).ok


def test_driver_still_refuses_an_empty_program_with_a_load_error():
    with pytest.raises(LoadError, match="no instructions"):
        compile(Program("x", ()))

"""The image's stack size is the LM the lowering's frame layout really uses.

``lower()`` records ``stack_layout(program, analysis).size`` on the MProgram; the driver
puts that in the image metadata and the compile statistics.  It covers every function's
save area, frame and the bounce areas, so it is at least the analysis's deepest frame.
"""

from __future__ import annotations

import pytest

import nfpjit
from nfpjit.driver import compile
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.opcodes import ProgType
from nfpjit.jit.lower import lower
from nfpjit.jit.lower_mem import stack_layout

from tests.corpus_cases import corpus_cases


def _check(result) -> None:
    layout = stack_layout(result.program, result.analysis)
    assert result.mprogram.stack_size == layout.size
    assert result.image.metadata.stack_size == layout.size
    assert result.stats.stack == layout.size
    # every frame (and the bounce areas above them) lies inside the recorded size
    assert layout.size >= max((f.end for f in layout.frames.values()), default=0)
    assert layout.size >= result.analysis.max_stack_depth


@pytest.mark.parametrize("obj,section", corpus_cases())
def test_corpus_image_stack_size_is_the_layout_size(obj, section):
    program = nfpjit.load(obj, section=section)
    if program.prog_type not in (ProgType.XDP, ProgType.SCHED_CLS):
        pytest.skip("not offloaded")
    try:
        result = compile(program, profile="permissive")
    except nfpjit.errors.UnsupportedError as exc:
        pytest.skip(f"not compiled: {str(exc)[:80]}")
    _check(result)


SUBPROG = """
.type xdp
    mov r1, 7
    stxdw [r10-8], r1
    call helper
    ldxdw r1, [r10-8]
    add r0, r1
    exit
helper:
    mov r2, 1
    stxdw [r10-64], r2
    ldxdw r0, [r10-64]
    and r0, 1
    exit
"""


def test_subprogram_frames_are_counted():
    program = assemble(SUBPROG)
    result = compile(program, profile="permissive")
    _check(result)
    # two functions' frames: more than either one's depth alone
    assert result.image.metadata.stack_size > result.analysis.max_stack_depth
    assert lower(program, result.analysis).stack_size == result.image.metadata.stack_size

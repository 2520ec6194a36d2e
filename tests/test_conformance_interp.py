"""The interpreter on the uBPF / bpf_conformance ``.data`` cases (tests/conformance/*.data).

Each case states its own expected r0 or fault pattern, written from the
instruction-set specification by the suite's authors; the runner convention
(registers start at zero, r1 = memory block or 0, r2 = its length) is the
one documented in nfpjit.testing.conformance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nfpjit.ebpf.interp import run_raw

conformance = pytest.importorskip("nfpjit.testing.conformance")

DATA = Path(__file__).resolve().parent / "conformance"
FILES = sorted(DATA.glob("*.data")) if DATA.is_dir() else []


def check(case) -> None:
    res = run_raw(case.program, case.memory, strict_registers=False)
    if case.error is not None:
        assert res.fault is not None, f"{case.name}: expected a fault matching {case.error!r}, got r0={res.r0:#x}"
        assert case.error_matches(res.fault.reason), f"{case.name}: fault {res.fault} does not match {case.error!r}"
    else:
        assert res.fault is None, f"{case.name}: {res.fault}"
        assert res.r0 == case.result, f"{case.name}: r0={res.r0:#x}, expected {case.result:#x}"


@pytest.mark.skipif(not FILES, reason="tests/conformance/*.data are not there yet")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_conformance_case(path):
    check(conformance.load_data_file(path))


# A few cases inline so the runner itself is exercised even before the suite lands.
INLINE = {
    "mem_len": "-- asm\nmov %r0, %r2\nexit\n-- mem\n00 11 22 33 44\n-- result\n0x5\n",
    "ldxh_be": "-- asm\nldxh %r0, [%r1+1]\nbe16 %r0\nexit\n-- mem\naa bb cc dd\n-- result\n0xbbcc\n",
    "zero_regs": "-- asm\nmov %r0, %r7\nadd %r0, %r1\nexit\n-- result\n0x0\n",
    "sdiv_min": "-- asm\nlddw %r0, 0x8000000000000000\nsdiv %r0, -1\nexit\n-- result\n0x8000000000000000\n",
    "oob": "-- asm\nldxw %r0, [%r1+2]\nexit\n-- mem\n00 11 22 33\n-- error\nout-of-bounds\n",
    "stack": "-- asm\nstdw [%r10-8], 0x11223344\nldxh %r0, [%r10-6]\nexit\n-- result\n0x1122\n",
}


@pytest.mark.parametrize("name", sorted(INLINE))
def test_inline_case(name):
    check(conformance.parse_data(INLINE[name], filename=f"{name}.data"))

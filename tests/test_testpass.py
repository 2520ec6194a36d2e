"""check_pass / `nfpjit test-pass` on toy passes registered at run time: a right one passes, a wrong one is caught.

The toy passes rewrite the machine program (level "nfp"); the oracle is the reference
interpreter inside check_pass, so a pass that changes what a program does must fail.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from nfpjit.cli import main
from nfpjit.isa.table import Instruction, Op
from nfpjit.jit.mir import MInstr
from nfpjit.passes import Pass, register
from nfpjit.passes import manager
from nfpjit.testing.passcheck import check_pass, pipelines

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "xdp_drop_tcp_ports.o"


@dataclass(frozen=True)
class NopPad(Pass):
    """Put ``count`` nops at the entry: different code, same behaviour."""

    name: ClassVar[str] = "toy-nop-pad"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "nops at the entry (a toy)"
    count: int = 1

    def run(self, unit) -> bool:
        unit.functions[0].body[:0] = [MInstr(Instruction(Op.NOP)) for _ in range(self.count)]
        return self.count > 0


@dataclass(frozen=True)
class OffByOne(Pass):
    """Deliberately wrong: flips the low bit of every constant an ``immed`` loads."""

    name: ClassVar[str] = "toy-off-by-one"
    level: ClassVar[str] = "nfp"
    summary: ClassVar[str] = "a wrong pass (a toy)"

    def run(self, unit) -> bool:
        changed = False
        for f in unit.functions:
            for i, m in enumerate(f.body):
                if m.instr is not None and m.instr.op == Op.IMMED and m.reloc is None:
                    f.body[i] = dataclasses.replace(m, instr=dataclasses.replace(m.instr, imm=m.instr.imm ^ 1))
                    changed = True
        return changed


@pytest.fixture
def toys():
    register("toy-nop-pad", f"{__name__}:NopPad")
    register("toy-off-by-one", f"{__name__}:OffByOne")
    yield
    manager.REGISTRY.pop("toy-nop-pad", None)
    manager.REGISTRY.pop("toy-off-by-one", None)


def test_a_right_pass_passes(toys):
    report = check_pass("toy-nop-pad{count=2}", examples=15, seed=1)
    assert report.ok, report.text()
    assert report.compiled >= 5
    assert "not in -O2" in report.mode


def test_a_wrong_pass_is_caught_and_shrunk(toys):
    report = check_pass("toy-off-by-one", examples=15, seed=1, max_blocks=3)
    assert not report.ok
    failure = report.failures[0]
    assert failure.problems and failure.nfp_with is not None
    assert failure.nfp_with != failure.nfp_without
    # shrunk: a small program, shown as eBPF and as NFP code both ways
    assert failure.ebpf.count("\n") < 40, failure.ebpf
    text = report.text()
    assert "MISMATCH" in text and "NFP code without the pass" in text and "NFP code with the pass" in text


def test_corpus_paths(toys):
    bad = check_pass("toy-off-by-one", examples=0, corpus=True, corpus_paths=[EXAMPLE])
    assert bad.corpus_checked == 1 and not bad.ok and bad.failures[0].label.startswith("xdp_drop_tcp_ports")
    good = check_pass("toy-nop-pad", examples=0, corpus=True, corpus_paths=[EXAMPLE])
    assert good.corpus_checked == 1 and good.ok, good.text()


def test_a_pass_in_o2_is_checked_by_leaving_it_out():
    from nfpjit.driver import pipeline

    name = pipeline(2)[0].name
    without, with_, mode = pipelines(pipeline(2)[0])
    assert name not in {p.name for p in without} and name in {p.name for p in with_}
    assert "without it" in mode


def test_cli_exit_status(toys, capsys):
    assert main(["test-pass", "toy-nop-pad", "--examples", "6"]) == 0
    assert "OK: no mismatch" in capsys.readouterr().out
    assert main(["test-pass", "toy-off-by-one", "--examples", "0", "--corpus-path", str(EXAMPLE)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "eBPF program:" in out


def test_cli_unknown_pass_is_a_usage_error(capsys):
    assert main(["test-pass", "no-such-pass", "--examples", "1"]) == 2
    assert "unknown pass" in capsys.readouterr().err


def test_a_plugin_pass_through_the_entry_point_group(tmp_path, monkeypatch):
    """A pass another package declares under the `nfpjit.passes` entry-point group is found and checked."""
    pkg = tmp_path / "toy_plugin.py"
    pkg.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from typing import ClassVar
        from nfpjit.isa.table import Instruction, Op
        from nfpjit.jit.mir import MInstr
        from nfpjit.passes import Pass

        @dataclass(frozen=True)
        class TrailingNop(Pass):
            name: ClassVar[str] = "toy-plugin"
            level: ClassVar[str] = "nfp"
            summary: ClassVar[str] = "a nop at the entry"

            def run(self, unit):
                unit.functions[0].body.insert(0, MInstr(Instruction(Op.NOP)))
                return True
    '''))
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nfpjit.passes]\ntoy-plugin = toy_plugin:TrailingNop\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(manager, "_PLUGINS_LOADED", False)
    try:
        assert "toy-plugin" in manager.available_passes()
        report = check_pass("toy-plugin", examples=0, corpus=True, corpus_paths=[EXAMPLE])
        assert report.ok and report.corpus_checked == 1, report.text()
    finally:
        manager.REGISTRY.pop("toy-plugin", None)
        sys.modules.pop("toy_plugin", None)

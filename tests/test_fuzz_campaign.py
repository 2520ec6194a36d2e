"""nfpjit.fuzz: mutators, shrinking, the input and differential targets, executors, reproducers, the CLI.

Small campaigns only (a few hundred inputs); the big ones are `nfpjit fuzz` runs (docs/fuzzing.md).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace

import pytest

from nfpjit.cli import main
from nfpjit.fuzz import mutators
from nfpjit.fuzz.campaign import CampaignConfig, Chunk, expand_targets, run_campaign, run_chunk
from nfpjit.fuzz.reproducer import replay, reproducers, save_failure
from nfpjit.fuzz.shrink import ddmin, shrink_input
from nfpjit.fuzz.targets import INPUT_TARGETS, TARGETS, Target, is_failure
from nfpjit.errors import LoadError, UsageError


# -- mutators and shrinking ---------------------------------------------------------------------

def test_mutators_are_reproducible_and_change_the_input():
    elf = TARGETS["elf"].seeds()[0][1]
    pool = [elf]
    for mutate, data in ((mutators.mutate_bytes, elf), (mutators.mutate_elf, elf),
                         (mutators.mutate_text, b"mov r0, 2\nexit\n")):
        a = [mutate(random.Random(5), data, pool) for _ in range(3)]
        assert a[0] == a[1] == a[2]
        outs = {mutate(random.Random(s), data, pool) for s in range(50)}
        assert len(outs) > 25


def test_elf_mutator_touches_section_headers_and_bodies():
    elf = dict(TARGETS["elf"].seeds())["xdp_drop_tcp_ports.o"]
    sections = mutators.elf_sections(elf)
    assert {".text", ".symtab", ".strtab"} <= {s[0] for s in sections} or len(sections) > 5
    shoff = int.from_bytes(elf[0x28:0x30], "little")
    header_hits = body_hits = 0
    for s in range(300):
        out = mutators.mutate_elf(random.Random(s), elf, [elf])
        if len(out) != len(elf):
            continue
        diff = [i for i in range(len(elf)) if elf[i] != out[i]]
        header_hits += any(i >= shoff for i in diff)
        body_hits += any(64 <= i < shoff for i in diff)
    assert header_hits > 30 and body_hits > 30


def test_text_mutator_uses_the_vocabulary():
    vocab = mutators.Vocabulary(["ldxw lddw stxdw call exit"])
    outs = [mutators.mutate_text(random.Random(s), b"mov r0, 2\nexit\n", [], vocab) for s in range(100)]
    assert any(b"ldxw" in o or b"stxdw" in o or b"lddw" in o for o in outs)
    assert any(o.count(b"\n") != 2 for o in outs)  # line-level mutations too


def test_ddmin_finds_the_two_bytes_that_matter():
    data = bytes(range(200)) + b"XY" + bytes(100)
    small = shrink_input(data, lambda d: b"XY" in d, seconds=10)
    assert small == b"XY"
    lines = ddmin(list("abcdefgh"), lambda ls: "c" in ls and "f" in ls, deadline=time.monotonic() + 5, max_tests=500)
    assert sorted(lines) == ["c", "f"]


def test_text_shrinking_removes_lines_first():
    text = b"\n".join(b"line %d" % i for i in range(50)) + b"\nBOOM here\n"
    assert shrink_input(text, lambda d: b"BOOM" in d, text=True, seconds=10) == b"BOOM"


# -- targets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", INPUT_TARGETS)
def test_every_target_has_seeds_that_run_clean(name):
    target = TARGETS[name]
    seeds = target.seeds()
    assert seeds, f"{name} has no seeds"
    for label, data in seeds[:12]:
        try:
            target.run(data)
        except Exception as exc:  # noqa: BLE001 - a seed may be refused, but only by nfpjit's errors
            assert not is_failure(exc), f"{label}: {type(exc).__name__}: {exc}"


@pytest.mark.parametrize("name", INPUT_TARGETS)
def test_a_small_chunk_of_every_target_finds_nothing(name):
    result = run_chunk(Chunk(target=name, seed=3, count=150, shrink_seconds=5))
    assert result.inputs == 150
    assert result.cpu_seconds > 0
    assert not result.failures, [f.message + "\n" + f.detail for f in result.failures]


def test_is_failure_classifies():
    from nfpjit.driver import CompilerBug

    assert not is_failure(LoadError("bad"))
    assert is_failure(CompilerBug("crashed"))
    assert is_failure(IndexError("x"))
    assert is_failure(MemoryError())


def test_expand_targets():
    assert expand_targets(["asm"]) == ("ebpf-asm", "nfp-asm")
    assert expand_targets(["inputs"]) == INPUT_TARGETS
    assert expand_targets(["all"])[-1] == "diff"
    assert expand_targets(["pcap", "pcap", "elf"]) == ("pcap", "elf")
    with pytest.raises(UsageError, match="unknown fuzz target 'elff'"):
        expand_targets(["elff"])


# -- failures: found, shrunk, saved, replayed ------------------------------------------------------

def _buggy_run(data: bytes, seen=None) -> None:
    """A reader with two bugs: 0xAB 0xCD anywhere crashes it, 0xEE 0xEE hangs it; else LoadError or fine."""
    if b"\xab\xcd" in data:
        raise IndexError("boom")
    if b"\xee\xee" in data:
        end = time.process_time() + 30
        while time.process_time() < end:  # a busy hang: the timer counts CPU seconds
            pass
    if data[:1] == b"\0":
        raise LoadError("refused")


def _buggy_mutate(rng, data, pool):
    out = bytearray(data)
    pos = rng.randrange(len(out))
    out[pos:pos + 2] = rng.choices([b"\xab\xcd", b"\xee\xee", b"\0\0", b"zz"], weights=[10, 1, 20, 30])[0]
    return bytes(out)


@pytest.fixture
def buggy(monkeypatch):
    target = Target("buggy", ".bin", "test target", lambda: [("s", bytes(range(1, 120)))], _buggy_mutate, _buggy_run)
    monkeypatch.setitem(TARGETS, "buggy", target)
    monkeypatch.setattr("nfpjit.fuzz.targets.INPUT_TARGETS", INPUT_TARGETS + ("buggy",))
    return target


def test_a_crash_is_shrunk_saved_and_replayed(buggy, tmp_path):
    report = run_campaign(CampaignConfig(targets=("buggy",), count=200, out=tmp_path, timeout=0.3, shrink_seconds=5))
    kinds = {f.kind: f for f in report.failures}
    assert set(kinds) == {"exception", "timeout"}
    crash = kinds["exception"]
    assert crash.signature.startswith("IndexError at ") and "_buggy_run" in crash.signature
    assert crash.data == b"\xab\xcd"             # ddmin got it down to the two bytes
    assert crash.original_size == 119
    files = reproducers(tmp_path)
    assert len(files) == 2
    meta = json.loads(next(f for f in files if "IndexError" in f.read_text()).read_text())
    assert meta["size"] == 2 and meta["target"] == "buggy" and "Traceback" in meta["detail"]
    assert (tmp_path / meta["input"]).read_bytes() == b"\xab\xcd"
    for f in files:
        assert replay(f, timeout=0.3), f"{f.name} should still fail"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["inputs"] == 200 and len(summary["failures"]) == 2
    assert "FAILED: 2 distinct failure(s)" in report.text()
    # once fixed, the reproducers pass
    TARGETS["buggy"] = replace(buggy, run=lambda data, seen=None: None)
    assert all(replay(f) == [] for f in files)


def test_replay_refuses_what_is_not_a_reproducer(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(LoadError, match="not a reproducer"):
        replay(bad)


# -- the differential target -------------------------------------------------------------------------

def test_diff_chunk_runs_generated_programs_through_every_engine():
    result = run_chunk(Chunk(target="diff", seed=11, count=6, kernel=True))
    assert result.inputs == 6
    assert not result.failures, [f.detail for f in result.failures]
    assert result.counts["packets"] > 0        # some programs compiled and ran in the simulator
    assert result.counts["refused"] < 6


def test_diff_mismatch_is_shrunk_by_hypothesis_and_replays(monkeypatch, tmp_path):
    """A fake engine disagreement on programs with a 64-bit multiply: hypothesis shrinks to a small one."""
    import nfpjit.fuzz.diff as diff
    from nfpjit.ebpf.opcodes import AluOp, InsnClass

    def fake_check(program, frames, **kw):
        mul = [i for i in program.insns if i.cls == InsnClass.ALU64 and i.alu_op == AluOp.MUL]
        return [f"packet 0 ({frames[0].hex()}): r0 differs: 0x1 != 0x2"] if mul else []

    monkeypatch.setattr(diff, "check_program", fake_check)
    result = run_chunk(Chunk(target="diff", seed=2, count=200, shrink_seconds=20, kernel=False))
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert failure.kind == "mismatch" and "r0 differs" in failure.signature
    text = failure.data.decode()
    assert "mul " in text and text.count("\n") < 40   # shrunk: a handful of instructions
    paths = save_failure(tmp_path, failure)
    assert replay(paths[1])                     # still "fails" with the fake check
    monkeypatch.setattr(diff, "check_program", lambda program, frames, **kw: [])
    assert replay(paths[1]) == []


def test_check_program_reports_a_wrong_image(monkeypatch):
    """The real harness can fail: an image compiled from another program disagrees."""
    import nfpjit.driver
    from nfpjit.ebpf.asm import assemble
    from nfpjit.fuzz.diff import check_program

    returns_2 = assemble(".type xdp\n    mov r0, 2\n    exit\n")
    wrong = nfpjit.driver.compile(assemble(".type xdp\n    mov r0, 1\n    exit\n"))
    monkeypatch.setattr(nfpjit.driver, "compile", lambda *a, **k: wrong)
    problems = check_program(returns_2, [bytes(64)], kernel=False)
    assert any("-O2, interp simulator vs interpreter" in p and "r0 differs" in p for p in problems)
    assert any(p.startswith("-O0") for p in problems)


# -- executors ------------------------------------------------------------------------------------------

def test_campaign_over_local_processes():
    report = run_campaign(CampaignConfig(targets=("pcap", "profile"), count=400, jobs=2, chunk_inputs=100))
    assert report.executor == "2 local processes"
    assert report.targets["pcap"].inputs == 400 and report.targets["profile"].inputs == 400
    assert report.targets["pcap"].chunks == 4
    assert report.ok


def test_campaign_with_a_time_budget():
    start = time.monotonic()
    report = run_campaign(CampaignConfig(targets=("pcap",), seconds=3, chunk_seconds=1))
    assert 2 <= time.monotonic() - start < 15
    assert report.inputs > 50 and report.targets["pcap"].chunks >= 2


def test_campaign_on_a_local_dask_cluster():
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'nfpjit[dask]')")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        report = run_campaign(CampaignConfig(targets=("image", "pcap", "diff"), count=60, chunk_inputs=30,
                                             chunk_programs=2, cluster=client, kernel=False))
    assert report.executor.startswith("dask ") and report.workers == 2
    assert report.targets["image"].inputs == 60 and report.targets["pcap"].inputs == 60
    assert report.targets["diff"].inputs == 60 and report.targets["diff"].chunks == 30
    assert report.ok, report.text()


def test_cluster_that_is_not_there_is_a_usage_error():
    pytest.importorskip("distributed", reason="Dask distributed is not installed")
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler"):
        run_campaign(CampaignConfig(targets=("pcap",), count=1, cluster="tcp://127.0.0.1:9"))


# -- the command line -------------------------------------------------------------------------------------

def test_cli_summary_and_json(capsys, tmp_path):
    assert main(["fuzz", "--target", "pcap,profile", "--count", "60", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pcap" in out and "inputs/s/core" in out and "OK: no failure" in out
    assert main(["fuzz", "-t", "image", "--count", "30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == 30 and data["targets"]["image"]["inputs_per_second_per_core"] > 0
    assert (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["fuzz", "--target", "elf"], "--time T or --count N"),
    (["fuzz", "--count", "0"], "at least 1"),
    (["fuzz", "--time", "soon"], "not a duration"),
    (["fuzz", "--target", "nope", "--count", "1"], "unknown fuzz target"),
    (["fuzz", "--count", "1", "--jobs", "0"], "--jobs 0"),
    (["fuzz", "--replay", "/nonexistent-dir"], "no reproducer"),
])
def test_cli_usage_errors(argv, message, capsys):
    status = main(argv)
    err = capsys.readouterr().err
    assert status in (1, 2) and message in err and "Traceback" not in err


def test_cli_replay(capsys, tmp_path, buggy):
    run_campaign(CampaignConfig(targets=("buggy",), count=200, out=tmp_path, timeout=0.3, shrink_seconds=3))
    assert main(["fuzz", "--replay", str(tmp_path), "--timeout", "0.3"]) == 1
    out = capsys.readouterr().out
    assert "FAILS: IndexError" in out and "0 passed, 2 failed" in out


# -- nfpjit stats over the same executors -----------------------------------------------------------------

def _stable(doc: dict) -> list:
    """What does not depend on timing: per program, the sizes and cycles; and the refused ones."""
    rows = [(r["program"], r["nfp_insns"], r["cycles"]["mean"], [p["saves"] for p in r["passes"]])
            for r in doc["programs"]]
    return rows + [(r["program"], r["reason"]) for r in doc["rejected"]]


STATS_OBJS = ["xdp_pass.o", "array_counter.o", "two_programs.o", "tail_call.o"]


def test_stats_over_local_processes_gives_the_same_rows():
    from nfpjit.cli.stats import gather
    from nfpjit.fuzz.executor import make_executor
    from nfpjit.testing import crafted_packets
    from tests.conftest import CORPUS

    paths = [str(CORPUS / o) for o in STATS_OBJS] + ["/nonexistent.o"]
    frames = crafted_packets()[:4]
    serial = gather(paths, frames=frames, profile="permissive")
    executor, workers, _what, close = make_executor(2)
    try:
        parallel = gather(paths, frames=frames, profile="permissive", executor=executor)
    finally:
        close()
    assert workers == 2
    assert len(serial["programs"]) >= 3 and serial["rejected"]
    assert _stable(parallel) == _stable(serial)


def test_stats_cli_on_a_local_dask_cluster(capsys):
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'nfpjit[dask]')")
    from tests.conftest import CORPUS

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        paths = [str(CORPUS / o) for o in STATS_OBJS[:2]]
        assert main(["stats", *paths, "--packets", "3", "--json", "--cluster", cluster.scheduler_address]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["programs"]) + len(doc["rejected"]) == 2
    assert doc["programs"][0]["file"].endswith("xdp_pass.o")
    assert main(["stats", paths[0], "--jobs", "0"]) == 2


# -- bugs the fuzzer found in other code (regressions; the reproducers are in tests/reproducers/) -------------

def test_a_function_start_outside_the_program_does_not_crash_the_cfg():
    """`lddw r2, func(2)` past the end: the analysis reports it (was a KeyError in the CFG)."""
    import nfpjit
    from nfpjit.ebpf.insn import Insn
    from nfpjit.ebpf.opcodes import InsnClass, JmpOp, ProgType, PseudoSrc
    from nfpjit.ebpf.program import Function, Program

    insns = (Insn.ld_imm64(2, 2, PseudoSrc.FUNC), Insn(InsnClass.JMP | JmpOp.EXIT))
    program = Program(name="m", insns=insns, prog_type=ProgType.XDP, license="GPL",
                      functions=(Function("m", 0), Function("cb", 3)))
    report = nfpjit.check(program)  # was: KeyError in analysis/cfg.py _reverse_postorder
    assert not report.ok and "verifier" in report.codes
    from nfpjit.ebpf.asm import assemble

    assembled = assemble(".type xdp\nlddw r2, func(2)\nexit\n")   # as it decodes: no function at slot 3
    assert [f.start_pc for f in assembled.functions] == [0]
    assert "verifier" in nfpjit.check(assembled).codes

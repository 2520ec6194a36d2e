"""Verdicts on ring buffers, queue/stack maps, bpf_loop callbacks and map-in-map equal the kernel's.

Each variant is a small program that uses one of these the way the kernel accepts, or misuses
it the way the kernel rejects (a ring buffer record leaked, used after submit, submitted twice
or without a NULL check; a map pointer from an outer lookup used before its NULL check; a
callback returning 2; a helper given a map of the wrong type ...).  The kernel (BPF_PROG_LOAD,
nfpjit.kernel) is the oracle; the analysis must agree, and where it rejects, the problem code
is the one named here.  Skips when bpf() is unusable.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nfpjit.analysis import analyze
from nfpjit.analysis.state import RegKind
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.opcodes import InsnClass, MapType, PseudoSrc
from nfpjit.ebpf.program import MapDef

from test_analysis_kernel_verdict import kernel_verdict

RB = ".map rb ringbuf key=0 value=0 entries=4096\n"
RESERVE = "lddw r1, map:rb\nmov r2, 16\nmov r3, 0\ncall ringbuf_reserve\n"
SUBMIT = "mov r1, r6\nmov r2, 0\ncall ringbuf_submit\n"
Q = ".map q queue key=0 value=4 entries=8\n.map s stack key=0 value=8 entries=4\n"
H = ".map h hash key=4 value=8 entries=4\n"
LOOP = "mov r1, 4\nlddw r2, func(cb)\nmov r3, {ctx}\nmov r4, 0\ncall loop\n"

# name -> (source, expected problem code or None when the kernel accepts)
VARIANTS = {
    # ring buffer records: reserve / submit / discard, reference tracked
    "rb_submit": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\nstdw [r6+8], 1\n" + SUBMIT +
                  "out: mov r0, 2\nexit", None),
    "rb_discard": (RB + RESERVE + "jeq r0, 0, out\nmov r1, r0\nmov r2, 0\ncall ringbuf_discard\n"
                   "out: mov r0, 2\nexit", None),
    "rb_leak": (RB + RESERVE + "jeq r0, 0, out\nstdw [r0+0], 1\nout: mov r0, 2\nexit", "ref_leak"),
    "rb_leak_one_path": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\nldxw r7, [r10-4]\njeq r7, 0, out\n"
                         + SUBMIT + "out: mov r0, 2\nexit", "ref_leak"),
    "rb_no_null_check": (RB + RESERVE + "stdw [r0+0], 1\nmov r6, r0\n" + SUBMIT + "mov r0, 2\nexit",
                         "null_deref"),
    "rb_submit_maybe_null": (RB + RESERVE + "mov r6, r0\n" + SUBMIT + "mov r0, 2\nexit", "arg_type"),
    "rb_use_after_submit": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\n" + SUBMIT +
                            "ldxdw r0, [r6+0]\nexit\nout: mov r0, 2\nexit", "invalid_mem_access"),
    "rb_copy_after_submit": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\nmov r7, r0\n" + SUBMIT +
                             "stdw [r7+0], 1\nout: mov r0, 2\nexit", "invalid_mem_access"),
    "rb_double_submit": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\n" + SUBMIT + SUBMIT +
                         "out: mov r0, 2\nexit", "arg_type"),
    "rb_submit_with_offset": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\nadd r6, 8\n" + SUBMIT +
                              "out: mov r0, 2\nexit", "arg_type"),
    "rb_past_record": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\nstdw [r6+16], 1\n" + SUBMIT +
                       "out: mov r0, 2\nexit", "mem_oob"),
    "rb_last_byte": (RB + RESERVE + "jeq r0, 0, out\nmov r6, r0\nstb [r6+15], 1\n" + SUBMIT +
                     "out: mov r0, 2\nexit", None),
    "rb_spilled_record": (RB + RESERVE + "jeq r0, 0, out\nstxdw [r10-8], r0\nldxdw r6, [r10-8]\n" + SUBMIT +
                          "out: mov r0, 2\nexit", None),
    "rb_variable_size": (RB + "ldxw r2, [r1+16]\nand r2, 15\nlddw r1, map:rb\nmov r3, 0\n"
                         "call ringbuf_reserve\njeq r0, 0, out\nmov r1, r0\nmov r2, 0\ncall ringbuf_discard\n"
                         "out: mov r0, 2\nexit", "arg_type"),
    "rb_record_to_helper": (RB + "mov r9, r1\n" + RESERVE + "jeq r0, 0, out\nmov r6, r0\nmov r1, r9\nmov r2, 0\n"
                            "mov r3, r6\nmov r4, 16\ncall xdp_load_bytes\n" + SUBMIT + "out: mov r0, 2\nexit", None),
    "rb_record_to_helper_too_long": (RB + "mov r9, r1\n" + RESERVE + "jeq r0, 0, out\nmov r6, r0\nmov r1, r9\n"
                                     "mov r2, 0\nmov r3, r6\nadd r3, 4\nmov r4, 16\ncall xdp_load_bytes\n" + SUBMIT +
                                     "out: mov r0, 2\nexit", "mem_oob"),
    "rb_output": (RB + "stdw [r10-8], 7\nlddw r1, map:rb\nmov r2, r10\nadd r2, -8\nmov r3, 8\nmov r4, 0\n"
                  "call ringbuf_output\nmov r0, 2\nexit", None),
    "rb_query": (RB + "lddw r1, map:rb\nmov r2, 0\ncall ringbuf_query\nmov r0, 2\nexit", None),
    "rb_lookup": (RB + "stw [r10-4], 0\nlddw r1, map:rb\nmov r2, r10\nadd r2, -4\ncall map_lookup_elem\n"
                  "mov r0, 2\nexit", "map_helper"),
    "rb_reserve_in_hash": (H + "lddw r1, map:h\nmov r2, 16\nmov r3, 0\ncall ringbuf_reserve\n"
                           "mov r0, 2\nexit", "map_helper"),
    "rb_return_record": (RB + RESERVE + "exit", "ref_leak"),
    "rb_tail_call_with_record": (RB + ".map pa prog_array key=4 value=4 entries=1\nmov r9, r1\n" + RESERVE +
                                 "jeq r0, 0, out\nmov r6, r0\nmov r1, r9\nlddw r2, map:pa\nmov r3, 0\n"
                                 "call tail_call\n" + SUBMIT + "out: mov r0, 2\nexit", "ref_leak"),
    "rb_tail_call_after_submit": (RB + ".map pa prog_array key=4 value=4 entries=1\nmov r9, r1\n" + RESERVE +
                                  "jeq r0, 0, out\nmov r6, r0\n" + SUBMIT + "mov r1, r9\nlddw r2, map:pa\n"
                                  "mov r3, 0\ncall tail_call\nout: mov r0, 2\nexit", None),
    # queue and stack maps
    "queue_push": (Q + "stw [r10-4], 5\nlddw r1, map:q\nmov r2, r10\nadd r2, -4\nmov r3, 2\n"
                   "call map_push_elem\nmov r0, 2\nexit", None),
    "queue_pop_peek": (Q + "lddw r1, map:q\nmov r2, r10\nadd r2, -4\ncall map_pop_elem\nlddw r1, map:s\n"
                       "mov r2, r10\nadd r2, -16\ncall map_peek_elem\nldxw r0, [r10-4]\nldxdw r1, [r10-16]\n"
                       "exit", None),
    "queue_pop_short_buffer": (Q + "lddw r1, map:s\nmov r2, r10\nadd r2, -4\ncall map_pop_elem\n"
                               "mov r0, 2\nexit", "invalid_stack"),
    "queue_push_uninit": (Q.replace("queue key", "queue key") + "lddw r1, map:q\nmov r2, r10\nadd r2, -4\n"
                          "mov r3, 0\ncall map_push_elem\nmov r0, 2\nexit", None),
    "queue_lookup": (Q + "lddw r1, map:q\nmov r2, r10\nadd r2, -4\ncall map_lookup_elem\nmov r0, 2\nexit",
                     "map_helper"),
    "queue_update": (Q + "stw [r10-4], 1\nlddw r1, map:q\nmov r2, 0\nmov r3, r10\nadd r3, -4\nmov r4, 0\n"
                     "call map_update_elem\nmov r0, 2\nexit", "map_helper"),
    "push_into_hash": (H + "stdw [r10-8], 1\nlddw r1, map:h\nmov r2, r10\nadd r2, -8\nmov r3, 0\n"
                       "call map_push_elem\nmov r0, 2\nexit", "map_helper"),
    # bpf_check_mtu: mtu_len is 4 aligned bytes
    "check_mtu": ("stw [r10-8], 0\nmov r2, 0\nmov r3, r10\nadd r3, -8\nmov r4, 0\nmov r5, 0\n"
                  "call check_mtu\nldxw r0, [r10-8]\nexit", None),
    "check_mtu_misaligned": ("stdw [r10-8], 0\nmov r2, 0\nmov r3, r10\nadd r3, -6\nmov r4, 0\nmov r5, 0\n"
                             "call check_mtu\nmov r0, 2\nexit", "misaligned_stack"),
    "check_mtu_past_frame": ("mov r2, 0\nmov r3, r10\nadd r3, -2\nmov r4, 0\nmov r5, 0\n"
                             "call check_mtu\nmov r0, 2\nexit", "misaligned_stack"),
    # bpf_loop callbacks
    "loop_simple": (LOOP.format(ctx=0) + "mov r0, 2\nexit\ncb: mov r0, 0\nexit", None),
    "loop_returns_2": (LOOP.format(ctx=0) + "mov r0, 2\nexit\ncb: mov r0, 2\nexit", "callback_return"),
    "loop_returns_index": (LOOP.format(ctx=0) + "mov r0, 2\nexit\ncb: mov r0, r1\nexit", "callback_return"),
    "loop_returns_bit": (LOOP.format(ctx=0) + "mov r0, 2\nexit\ncb: mov r0, r1\nand r0, 1\nexit", None),
    "loop_stack_ctx": ("stdw [r10-8], 0\n" + LOOP.format(ctx="r10").replace("mov r4, 0", "add r3, -8\nmov r4, 0")
                       + "ldxdw r0, [r10-8]\nand r0, 1\nexit\n"
                       "cb: ldxdw r3, [r2+0]\nadd r3, 1\nstxdw [r2+0], r3\nmov r0, 0\nexit", None),
    "loop_ctx_past_frame": ("stdw [r10-8], 0\n" + LOOP.format(ctx="r10").replace("mov r4, 0", "add r3, -8\nmov r4, 0")
                            + "mov r0, 2\nexit\ncb: ldxdw r3, [r2+8]\nmov r0, 0\nexit", "invalid_stack"),
    "loop_ctx_number": (LOOP.format(ctx=5) + "mov r0, 2\nexit\ncb: mov r0, 0\nexit", "arg_type"),
    "loop_ctx_packet": ("ldxw r6, [r1+0]\n" + LOOP.format(ctx="r6") + "mov r0, 2\nexit\ncb: mov r0, 0\nexit",
                        "arg_type"),
    "loop_no_func": ("mov r1, 4\nmov r2, 0\nmov r3, 0\nmov r4, 0\ncall loop\nmov r0, 2\nexit", "arg_type"),
    "loop_cb_reads_r3": (LOOP.format(ctx=0) + "mov r0, 2\nexit\ncb: mov r0, r3\nexit", "uninit_reg"),
    "loop_cb_infinite": (LOOP.format(ctx=0) + "mov r0, 2\nexit\ncb: mov r0, 0\nl: jeq r0, 0, l\nexit", "unbounded_loop"),
    "loop_result_used": (LOOP.format(ctx=0) + "exit\ncb: mov r0, 1\nexit", None),
    # bpf_for_each_map_elem: callback(map, &key, &value, ctx)
    "for_each": (H + LOOP.replace("mov r1, 4", "lddw r1, map:h").format(ctx=0).replace("call loop", "call for_each_map_elem")
                 + "mov r0, 2\nexit\ncb: ldxw r0, [r2+0]\nldxdw r5, [r3+0]\nstdw [r3+0], 1\nmov r0, 0\nexit", None),
    "for_each_key_oob": (H + LOOP.replace("mov r1, 4", "lddw r1, map:h").format(ctx=0)
                         .replace("call loop", "call for_each_map_elem")
                         + "mov r0, 2\nexit\ncb: ldxw r0, [r2+4]\nmov r0, 0\nexit", "map_key_oob"),
    "for_each_key_write": (H + LOOP.replace("mov r1, 4", "lddw r1, map:h").format(ctx=0)
                           .replace("call loop", "call for_each_map_elem")
                           + "mov r0, 2\nexit\ncb: stw [r2+0], 1\nmov r0, 0\nexit", "map_key_write"),
    "for_each_value_oob": (H + LOOP.replace("mov r1, 4", "lddw r1, map:h").format(ctx=0)
                           .replace("call loop", "call for_each_map_elem")
                           + "mov r0, 2\nexit\ncb: ldxdw r0, [r3+4]\nmov r0, 0\nexit", "map_value_oob"),
    "for_each_key_to_lookup": (H + LOOP.replace("mov r1, 4", "lddw r1, map:h").format(ctx=0)
                               .replace("call loop", "call for_each_map_elem")
                               + "mov r0, 2\nexit\ncb: lddw r1, map:h\ncall map_lookup_elem\nmov r0, 0\nexit", None),
    "for_each_stack_ctx": ("stdw [r10-8], 0\n" + H + LOOP.replace("mov r1, 4", "lddw r1, map:h")
                           .format(ctx="r10").replace("mov r4, 0", "add r3, -8\nmov r4, 0")
                           .replace("call loop", "call for_each_map_elem") + "ldxdw r0, [r10-8]\nand r0, 1\nexit\n"
                           "cb: ldxdw r1, [r4+0]\nadd r1, 1\nstxdw [r4+0], r1\nmov r0, 0\nexit", None),
    "for_each_on_queue": (Q + LOOP.replace("mov r1, 4", "lddw r1, map:q").format(ctx=0)
                          .replace("call loop", "call for_each_map_elem")
                          + "mov r0, 2\nexit\ncb: mov r0, 0\nexit", "map_helper"),
    "for_each_returns_2": (H + LOOP.replace("mov r1, 4", "lddw r1, map:h").format(ctx=0)
                           .replace("call loop", "call for_each_map_elem")
                           + "mov r0, 2\nexit\ncb: mov r0, 2\nexit", "callback_return"),
    "loop_cb_r0_after_call_uninit": (LOOP.format(ctx=0) + "mov r0, r1\nexit\ncb: mov r0, 1\nexit", "uninit_reg"),
}


def _program(text: str):
    return assemble(".type xdp\n.license GPL\n" + text, filename="variant.s")


def _check(prog, expected):
    k_ok, log = kernel_verdict(prog)
    a = analyze(prog, allow_uninit_stack=True)
    codes = sorted({p.code for p in a.problems})
    assert a.ok == k_ok, f"kernel ok={k_ok} log={log!r}; ours {[str(p) for p in a.problems]}"
    assert k_ok == (expected is None), f"the variant is meant to be {'accepted' if expected is None else 'rejected'}"
    if expected is not None:
        assert expected in codes, codes


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_helper_variant_verdict_matches_kernel(name):
    text, expected = VARIANTS[name]
    _check(_program(text), expected)


# -- map-in-map: programs built with an inner-map template (the assembler has no syntax for one) --

INNER_HASH = MapDef("inner", MapType.HASH, 4, 8, 16)
INNER_ARRAY = MapDef("inner", MapType.ARRAY, 4, 8, 4)
OUTER = ".map outer array_of_maps key=4 value=4 entries=4\n"
OUTER_LOOKUP = "stw [r10-4], 0\nlddw r1, map:outer\nmov r2, r10\nadd r2, -4\ncall map_lookup_elem\n"
INNER_LOOKUP = "mov r1, r0\nstw [r10-8], 1\nmov r2, r10\nadd r2, -8\ncall map_lookup_elem\n"

MAP_IN_MAP = {
    # (source, inner template, outer type, expected code)
    "mim_lookup": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\n" + INNER_LOOKUP + "jeq r0, 0, out\n"
                   "ldxdw r0, [r0+0]\nexit\nout: mov r0, 2\nexit", INNER_HASH, None, None),
    "mim_hash_of_maps": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\n" + INNER_LOOKUP + "jeq r0, 0, out\n"
                         "ldxdw r0, [r0+0]\nexit\nout: mov r0, 2\nexit", INNER_HASH, MapType.HASH_OF_MAPS, None),
    "mim_no_null_check": (OUTER + OUTER_LOOKUP + INNER_LOOKUP + "mov r0, 2\nexit", INNER_HASH, None, "arg_type"),
    "mim_inner_no_null_check": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\n" + INNER_LOOKUP +
                                "ldxdw r0, [r0+0]\nexit\nout: mov r0, 2\nexit", INNER_HASH, None, "null_deref"),
    "mim_inner_value_oob": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\n" + INNER_LOOKUP + "jeq r0, 0, out\n"
                            "ldxdw r0, [r0+4]\nexit\nout: mov r0, 2\nexit", INNER_HASH, None, "map_value_oob"),
    "mim_inner_update": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\nmov r1, r0\nstw [r10-8], 1\nstdw [r10-16], 3\n"
                         "mov r2, r10\nadd r2, -8\nmov r3, r10\nadd r3, -16\nmov r4, 0\ncall map_update_elem\n"
                         "out: mov r0, 2\nexit", INNER_HASH, None, None),
    "mim_outer_update": (OUTER + "stw [r10-4], 0\nstw [r10-8], 0\nlddw r1, map:outer\nmov r2, r10\nadd r2, -4\n"
                         "mov r3, r10\nadd r3, -8\nmov r4, 0\ncall map_update_elem\nmov r0, 2\nexit",
                         INNER_HASH, None, "map_helper"),
    "mim_inner_array_const_key": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\n" + INNER_LOOKUP +
                                  "ldxdw r0, [r0+0]\nexit\nout: mov r0, 2\nexit", INNER_ARRAY, None, None),
    "mim_pointer_arith": (OUTER + OUTER_LOOKUP + "jeq r0, 0, out\nadd r0, 8\n" + INNER_LOOKUP +
                          "out: mov r0, 2\nexit", INNER_HASH, None, "ptr_arith"),
}


def _map_in_map(text, inner, outer_type):
    prog = _program(text)
    maps = tuple(replace(m, inner=inner, type=outer_type or m.type) if m.name == "outer" else m
                 for m in prog.maps)
    return replace(prog, maps=maps)


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(MAP_IN_MAP))
def test_map_in_map_verdict_matches_kernel(name):
    text, inner, outer_type, expected = MAP_IN_MAP[name]
    _check(_map_in_map(text, inner, outer_type), expected)


# -- facts: what the analysis tells the lowering (no kernel needed) -------------------------------

def test_map_in_map_lookup_gives_the_inner_map():
    text, inner, _, _ = MAP_IN_MAP["mim_lookup"]
    prog = _map_in_map(text, inner, None)
    a = analyze(prog)
    assert a.ok, a.problems
    calls = [pc for pc, insn in prog.slots() if insn.is_helper_call]
    r1 = a.facts[calls[1]].regs[1]  # the second lookup's map argument: the inner-map template
    assert r1.kind == RegKind.MAP_PTR and a.maps[r1.map] is inner
    assert a.maps[: len(prog.maps)] == prog.maps


def test_ringbuf_record_facts():
    text, _ = VARIANTS["rb_submit"]
    prog = _program(text)
    a = analyze(prog)
    assert a.ok, a.problems
    store = next(pc for pc, insn in prog.slots() if insn.cls == InsnClass.ST)
    mem = a.facts[store].mem
    assert (mem.kind, mem.map, mem.offset, mem.size, mem.write) == (RegKind.RINGBUF_MEM, "rb", (8, 8), 8, True)
    assert a.facts[store].regs[6].range == 16  # the record's size


def test_loop_callback_is_analysed():
    text, _ = VARIANTS["loop_stack_ctx"]
    prog = _program(text)
    a = analyze(prog)
    assert a.ok, a.problems
    load = next((pc, insn) for pc, insn in prog.slots() if insn.is_ld_imm64 and insn.src == PseudoSrc.FUNC)
    cb = a.cfg.function_at(load[0] + 1 + load[1].imm)  # the assembler names it sub_<pc>
    assert cb.start != 0 and a.facts[cb.start].reachable
    assert a.facts[load[0] + 2].regs[2].kind == RegKind.FUNC
    r2 = a.facts[cb.start].regs[2]
    assert (r2.kind, r2.off, r2.frame) == (RegKind.STACK, -8, 0)  # the caller's context, on its stack
    # the callback counts in the caller's stack: the count is widened at each return, as the kernel
    # does for numbers it does not need precisely, so the walk converges after a few trips
    assert a.insns_processed < 200


def test_loop_callback_index_is_a_number():
    prog = _program(VARIANTS["loop_returns_bit"][0])
    a = analyze(prog)
    assert a.ok, a.problems
    cb = max(fn.start for fn in a.cfg.functions)
    assert a.facts[cb].regs[1].kind == RegKind.SCALAR and not a.facts[cb].regs[1].var.is_const


# -- generated programs using these helpers and maps: the kernel accepts them, so must we ---------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nfpjit.ebpf.opcodes import ProgType  # noqa: E402
from nfpjit.testing.strategies import programs  # noqa: E402


@pytest.mark.kernel
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_helper_programs_match_kernel(data):
    prog_type = data.draw(st.sampled_from([ProgType.XDP, ProgType.SCHED_CLS]), label="type")
    prog = data.draw(programs(prog_type, xdp_helpers=True, subprograms=data.draw(st.booleans())), label="program")
    k_ok, log = kernel_verdict(prog)
    a = analyze(prog, allow_uninit_stack=True, max_loop_iterations=2048)
    assert a.ok == k_ok, f"kernel ok={k_ok} log={log!r}; ours {[str(p) for p in a.problems]}"

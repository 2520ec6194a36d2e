"""The simulator's map table ids when it applies an image's MAP_ID relocations itself.

Every map's table id is its image id, also for a map the code never references whose MAP
symbol no relocation names (such a symbol keeps address 0 through ``relocate`` and must not
read as table id 0, where it would collide with the map whose id is 0).  Results are checked
against the reference interpreter.
"""

from __future__ import annotations

import dataclasses

import pytest

from nfpjit.driver import compile, run_sim
from nfpjit.ebpf.asm import assemble
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.result import PacketIn
from nfpjit.isa.image import RelocKind, Symbol, SymbolKind, relocate
from nfpjit.isa.sim import ROUTINE_ADDRESSES, simulate
from nfpjit.errors import UsageError


def _program(used_first: bool):
    decls = [".map used array key=4 value=8 entries=4", ".map spare array key=4 value=8 entries=4"]
    if not used_first:
        decls.reverse()
    return assemble("\n".join([".type xdp", *decls, """
    mov r1, 2
    stxw [r10-4], r1
    lddw r1, map:used
    mov r2, r10
    add r2, -4
    call 1
    jeq r0, 0, +2
    mov r1, 0x5a5a
    stxdw [r0+0], r1
    mov r0, 2
    exit
"""]))


@pytest.mark.parametrize("used_first", [True, False], ids=["used-is-map-0", "used-is-map-1"])
def test_unreferenced_map_symbol_does_not_collide(used_first):
    program = _program(used_first)
    image = compile(program, profile="permissive").image
    assert {r.symbol for r in image.relocations if r.kind == RelocKind.MAP_ID} == {"used"}
    # an image that also describes the map no code references: its MAP symbol is unrelocated (address 0)
    image = dataclasses.replace(image, symbols=image.symbols + (Symbol("spare", SymbolKind.MAP, 0),))
    frame = bytes(64)
    got = run_sim(image, frame)
    want = run(program, PacketIn(frame))
    assert got.fault is None and want.fault is None
    # the XDP result is r0's low word (the kernel's test_run returns a u32; -O1+ leave the dead high word)
    assert got.r0 & 0xFFFF_FFFF == want.r0 & 0xFFFF_FFFF and got.maps == want.maps
    assert got.maps["used"][(2).to_bytes(4, "little")] == (0x5A5A).to_bytes(8, "little")


def test_externally_relocated_ids_still_come_from_the_symbols():
    program = _program(True)
    image = compile(program, profile="permissive").image
    done = relocate(image, {"used": 7}, ROUTINE_ADDRESSES)
    assert any(s.name == "used" and s.address == 7 for s in done.symbols)
    got = simulate(done, bytes(64))
    assert got.fault is None and got.maps["used"][(2).to_bytes(4, "little")] == (0x5A5A).to_bytes(8, "little")
    # a relocated image whose symbols give two maps one table id is refused, not run
    clash = dataclasses.replace(done, symbols=done.symbols + (Symbol("spare", SymbolKind.MAP, 7),))
    with pytest.raises(UsageError, match="share table id 7"):
        simulate(clash, bytes(64))

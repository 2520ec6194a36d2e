"""The NIC daemon's program runners (nfpjit.nic.runner), without netdevs: the compiled-engine session and the
interpreting simulator give the same verdicts, frames, cycles and map tables, with control-message writes
between batches; a failed write changes neither side; a disagreement reloads the session from the tables."""

from __future__ import annotations

import dataclasses
import struct

import pytest

import nfpjit
from nfpjit.ebpf.opcodes import MapType, MapUpdateFlag
from nfpjit.isa.image import ImageMapType, SymbolKind, relocate
from nfpjit.isa.sim.firmware import ROUTINE_ADDRESSES
from nfpjit.nic import cmsg
from nfpjit.nic.runner import InterpRunner, NativeRunner, make_runner
from nfpjit.nic.tables import MapTables
from nfpjit.testing import PacketSpec, build_packet, crafted_packets

from conftest import CORPUS, ROOT

DROP = ROOT / "examples" / "xdp_drop_tcp_ports.o"


def compiled_ok() -> bool:
    from nfpjit.isa.sim.compiled import available

    return available()


needs_jit = pytest.mark.skipif(not compiled_ok(), reason="llvmlite's JIT does not work here")


def attach(obj, profile="default"):
    """What PROG_LOAD + PROG_ATTACH do: tables for the image's maps, the image relocated to them."""
    image = nfpjit.compile(obj, profile=profile).image
    tables = MapTables()
    ids = {m.name: tables.alloc(MapType.HASH if m.type == ImageMapType.HASH else MapType.ARRAY, m.key_size,
                                m.value_size, m.max_entries, name=m.name) for m in image.maps}
    relocated = relocate(image, ids, ROUTINE_ADDRESSES)
    symbols = tuple(dataclasses.replace(s, address=ids[s.name]) if s.kind == SymbolKind.MAP and s.name in ids else s
                    for s in relocated.symbols)
    return dataclasses.replace(relocated, symbols=symbols), tuple(sorted(ids.items())), tables


def tcp(port: int, n: int = 0) -> bytes:
    return build_packet(PacketSpec(l4="tcp", dst_port=port, src_port=1000 + n))


def frames() -> list[bytes]:
    out = []
    for n, f in enumerate(crafted_packets()):
        out += [f, tcp(80, n), tcp(8080, n), tcp(22, n)]
    return out


def contents(tables, maps):
    return {name: tables.contents(tid) for name, tid in maps}


def update(tables, runner, tid, key, value, flags=MapUpdateFlag.ANY):
    """A MAP_UPDATE as the daemon serves it: the tables answer, an accepted change goes to the runner."""
    req = cmsg.MapUpdate(tid, key, value, flags)
    with tables.lock:
        reply = tables.handle(req)
        if not isinstance(reply, cmsg.ErrorReply):
            runner.control_write(req)
    return reply


def delete(tables, runner, tid, key):
    req = cmsg.MapDelete(tid, key)
    with tables.lock:
        reply = tables.handle(req)
        if not isinstance(reply, cmsg.ErrorReply):
            runner.control_write(req)
    return reply


@needs_jit
@pytest.mark.parametrize("obj, profile", [(DROP, "default"), (CORPUS / "hash_counter.o", "permissive"),
                                          (CORPUS / "array_counter.o", "permissive")], ids=lambda p: getattr(p, "stem", p))
def test_native_and_interpreting_runners_agree(obj, profile):
    runs = {}
    for kind in (NativeRunner, InterpRunner):
        image, maps, tables = attach(obj, profile)
        runner = kind(image, maps, tables)
        tid = maps[0][1]
        table = tables.table(tid)
        got = []
        fs = frames()
        for k in range(0, len(fs), 7):              # batches, with control-plane writes in between
            got += runner.run(fs[k:k + 7])
            if k == 7:
                key = max(tables.contents(tid))     # a key the program has written
            if k == 14:
                assert not isinstance(update(tables, runner, tid, key, bytes([7]) * table.d.value_size), cmsg.ErrorReply)
            if k == 28 and not table.is_array:
                delete(tables, runner, tid, key)
        runs[kind.engine] = got, contents(tables, maps)
    (a, ta), (b, tb) = runs["compiled"], runs["interp"]
    def fields(runs):
        return [(v.action, bytes(v.frame), v.cycles, v.fault, v.redirect) for v in runs]

    assert fields(a) == fields(b)
    assert ta == tb
    assert any(v.cycles > 300 for v in a)              # the map routines ran
    if obj == DROP:
        drops = sum(v.action == 1 for v in a)
        assert drops > 0 and set(ta["drop_count"]) <= {struct.pack("<H", 80), struct.pack("<H", 8080)}


@needs_jit
def test_failed_update_leaves_both_sides_alone():
    image, maps, tables = attach(DROP)
    runner = NativeRunner(image, maps, tables)
    tid = maps[0][1]
    runner.run([tcp(80)])
    key80 = struct.pack("<H", 80)
    before_tables, before_session = contents(tables, maps), runner.session.maps()
    reply = update(tables, runner, tid, key80, bytes(8), MapUpdateFlag.NOEXIST)      # present: EEXIST
    assert isinstance(reply, cmsg.ErrorReply)
    reply = update(tables, runner, tid, key80, bytes(3))                              # wrong value size
    assert isinstance(reply, cmsg.ErrorReply)
    assert contents(tables, maps) == before_tables and runner.session.maps() == before_session
    # an accepted one reaches the session: the program counts on from the new value
    assert not isinstance(update(tables, runner, tid, key80, (100).to_bytes(8, "little")), cmsg.ErrorReply)
    runner.run([tcp(80), tcp(80)])
    assert tables.contents(tid)[key80] == (102).to_bytes(8, "little") == runner.session.maps()["drop_count"][key80]


@needs_jit
def test_disagreement_reloads_the_session_from_the_tables():
    image, maps, tables = attach(DROP)
    runner = NativeRunner(image, maps, tables)
    tid = maps[0][1]
    key = struct.pack("<H", 9)
    tables.store(tid, {key: bytes(8)})               # behind the runner's back
    # the tables accept an EXIST update of that key; the session does not have it: reload
    assert not isinstance(update(tables, runner, tid, key, (5).to_bytes(8, "little"), MapUpdateFlag.EXIST),
                          cmsg.ErrorReply)
    assert runner.resyncs == 1
    assert runner.session.maps()["drop_count"] == tables.contents(tid) == {key: (5).to_bytes(8, "little")}


def test_make_runner_falls_back_with_a_reason(monkeypatch):
    image, maps, tables = attach(DROP)
    r = make_runner(image, maps, tables, engine="interp")
    assert isinstance(r, InterpRunner) and r.reason
    from nfpjit.isa.sim import compiled

    monkeypatch.setattr(compiled, "available", lambda: False)
    r = make_runner(image, maps, tables)
    assert isinstance(r, InterpRunner) and "llvmlite" in r.reason
    (v,) = r.run([tcp(80)])
    assert v.action == 1 and v.fault is None and tables.contents(maps[0][1])

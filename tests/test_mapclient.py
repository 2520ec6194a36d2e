"""The host-side map client: errors with errno, dump, and the 4-entry 250 us reply cache (fake clock)."""

from __future__ import annotations

import errno
import threading

import pytest

from nfpjit.ebpf.opcodes import MapType
from nfpjit.nic import cmsg as C
from nfpjit.nic.errors import OffloadError
from nfpjit.nic.mapclient import CACHE_ENTRIES, CACHE_TTL_NS, MapClient, loopback
from nfpjit.nic.tables import MapTables


class Clock:
    def __init__(self):
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class Counting:
    """A loopback transport that counts the requests reaching the NIC."""

    def __init__(self, tables):
        self.inner = loopback(tables)
        self.sent: list = []

    def __call__(self, req):
        self.sent.append(req)
        return self.inner(req)


def k(i: int, n: int = 4) -> bytes:
    return i.to_bytes(n, "little")


@pytest.fixture
def nic():
    tables = MapTables()
    transport = Counting(tables)
    clock = Clock()
    client = MapClient(transport, clock=clock)
    hid = client.alloc(MapType.HASH, 4, 8, 8, name="hash")
    aid = client.alloc(MapType.ARRAY, 4, 8, 3, name="arr")
    transport.sent.clear()
    return client, tables, transport, clock, hid, aid


def _errno(fn, *args) -> int:
    with pytest.raises(OffloadError) as exc:
        fn(*args)
    return exc.value.errno


def test_operations_and_errnos(nic):
    client, tables, _, _, hid, aid = nic
    client.update(hid, k(1), k(10, 8))
    assert client.lookup(hid, k(1)) == k(10, 8)
    assert _errno(client.lookup, hid, k(2)) == errno.ENOENT
    assert _errno(client.update, hid, k(1), k(0, 8), "noexist") == errno.EEXIST
    assert _errno(client.update, hid, k(2), k(0, 8), "exist") == errno.ENOENT
    assert _errno(client.update, hid, k(2), k(0, 8), 7) == errno.EINVAL
    assert _errno(client.update, hid, k(2), k(0, 8), "sometimes") == errno.EINVAL
    assert _errno(client.delete, aid, k(0)) == errno.EINVAL
    assert _errno(client.update, aid, k(3), k(0, 8)) == errno.E2BIG
    assert _errno(client.lookup, 99, k(0)) == errno.EBADFD
    assert _errno(client.update, hid, k(1), b"x" * 100) == errno.E2BIG  # over the element limit: never sent
    client.update(hid, k(2), k(20, 8), "noexist")
    assert client.get_first(hid) == k(1)
    assert client.get_next(hid, k(1)) == k(2)
    assert client.get_next(hid, k(77)) == k(1)  # missing key: the first one, as the kernel
    assert client.get_next(hid, None) == k(1)
    assert _errno(client.get_next, hid, k(2)) == errno.ENOENT
    assert client.dump(hid) == [(k(1), k(10, 8)), (k(2), k(20, 8))]
    assert client.dump(aid) == [(k(i), k(0, 8)) for i in range(3)]
    client.delete(hid, k(1))
    assert client.dump(hid) == [(k(2), k(20, 8))]
    assert dict(client.dump(hid)) == tables.contents(hid)
    assert [t.name for t in client.tables()] == ["hash", "arr"]
    assert client.find("arr").tid == aid and client.find(str(hid)).tid == hid and client.find(aid).name == "arr"
    assert _errno(client.find, "nope") == errno.ENOENT
    client.free(aid)
    assert _errno(client.lookup, aid, k(0)) == errno.EBADFD
    with pytest.raises(OffloadError) as exc:
        client.lookup(hid, k(9))
    assert "not in" in str(exc.value) and exc.value.reason == "No such file or directory"


def test_cache_serves_repeated_reads_for_250us(nic):
    client, _, transport, clock, hid, _ = nic
    client.update(hid, k(1), k(10, 8))
    transport.sent.clear()
    assert client.lookup(hid, k(1)) == k(10, 8)
    assert client.lookup(hid, k(1)) == k(10, 8)
    assert len(transport.sent) == 1 and client.stats.hits == 1 and client.stats.misses == 1
    clock.now += CACHE_TTL_NS - 1
    client.lookup(hid, k(1))
    assert len(transport.sent) == 1  # still fresh
    clock.now += 1  # 250 us after the reply: stale
    client.lookup(hid, k(1))
    assert len(transport.sent) == 2 and client.stats.misses == 2
    assert CACHE_TTL_NS == 250_000 and CACHE_ENTRIES == 4


def test_cache_holds_four_entries_lru(nic):
    client, _, transport, _, hid, _ = nic
    for i in range(6):
        client.update(hid, k(i), k(i, 8))
    transport.sent.clear()
    for i in range(5):  # 5 distinct reads: the first is evicted
        client.lookup(hid, k(i))
    assert len(transport.sent) == 5
    for i in (1, 2, 3, 4):
        client.lookup(hid, k(i))
    assert len(transport.sent) == 5  # all four hit
    client.lookup(hid, k(0))
    assert len(transport.sent) == 6  # evicted one: a miss
    assert client.stats.hits == 4 and client.stats.misses == 6


def test_update_and_delete_invalidate_that_table_only(nic):
    client, tables, transport, _, hid, aid = nic
    client.update(hid, k(1), k(10, 8))
    client.update(aid, k(0), k(5, 8))
    client.lookup(hid, k(1))
    client.lookup(aid, k(0))
    client.get_first(hid)
    transport.sent.clear()
    client.update(hid, k(1), k(11, 8))
    assert client.lookup(hid, k(1)) == k(11, 8)  # not the cached 10
    assert client.lookup(aid, k(0)) == k(5, 8)  # the other table's entry survived
    assert [type(r) for r in transport.sent] == [C.MapUpdate, C.MapLookup]
    client.get_first(hid)
    client.delete(hid, k(1))
    assert _errno(client.get_first, hid) == errno.ENOENT  # not the cached first key
    assert _errno(client.lookup, hid, k(1)) == errno.ENOENT
    # a failed update invalidates too (the kernel's blockers do not care about the outcome)
    client.update(hid, k(2), k(2, 8))
    client.lookup(hid, k(2))
    tables.store(hid, {k(2): k(3, 8)})  # the NIC changed it (a packet), the host still has 2 cached
    assert client.lookup(hid, k(2)) == k(2, 8)
    assert _errno(client.update, hid, k(2), k(0, 8), "noexist") == errno.EEXIST
    assert client.lookup(hid, k(2)) == k(3, 8)


def test_failed_reads_are_not_cached(nic):
    client, tables, transport, _, hid, _ = nic
    assert _errno(client.lookup, hid, k(1)) == errno.ENOENT
    tables.store(hid, {k(1): k(1, 8)})
    assert client.lookup(hid, k(1)) == k(1, 8)


def test_read_in_flight_during_an_update_is_not_cached():
    """A lookup whose reply was produced before a concurrent update finished must not be cached."""
    tables = MapTables()
    tid = tables.alloc(MapType.HASH, 4, 8, 4)
    tables.store(tid, {k(1): k(1, 8)})
    inner = loopback(tables)
    in_lookup, release = threading.Event(), threading.Event()

    def transport(req):
        reply = inner(req)
        if isinstance(req, C.MapLookup) and not release.is_set():
            in_lookup.set()
            release.wait(5)  # the reply (old value) is on its way while the update happens
        return reply

    client = MapClient(transport, clock=Clock())
    reader = threading.Thread(target=client.lookup, args=(tid, k(1)))
    reader.start()
    assert in_lookup.wait(5)
    client.update(tid, k(1), k(2, 8))
    release.set()
    reader.join(5)
    assert client.lookup(tid, k(1)) == k(2, 8)


def test_dump_survives_deletes_during_the_walk():
    tables = MapTables()
    tid = tables.alloc(MapType.HASH, 4, 8, 8)
    tables.store(tid, {k(i): k(i, 8) for i in range(5)})
    inner = loopback(tables)

    def transport(req):  # delete the key being walked from, right after get-next was asked about it
        reply = inner(req)
        if isinstance(req, C.MapGetNext) and req.key == k(2):
            tables.handle(C.MapDelete(tid, k(3)))
        return reply

    client = MapClient(transport, cache_entries=0)
    got = dict(client.dump(tid))
    assert k(3) not in got or got[k(3)] == k(3, 8)
    assert set(got) >= {k(0), k(1), k(2), k(4)}


def test_unexpected_reply_is_eio():
    client = MapClient(lambda req: C.MapFreeReply())
    assert _errno(client.lookup, 1, k(0)) == errno.EIO


# ---------------------------------------------------------------- nfpjit map (CLI over a fake Device)


class FakeDevice:
    """What the CLI uses of nfpjit.offload.Device: ``.maps`` (a MapClient) and ``close()``."""

    def __init__(self, tables):
        self.maps = MapClient(loopback(tables))
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def cli(monkeypatch, capsys):
    import json as _json

    from nfpjit.cli import main
    from nfpjit.cli import map as map_cli

    tables = MapTables()
    hid = tables.alloc(MapType.HASH, 2, 8, 4, name="drop_count")
    aid = tables.alloc(MapType.ARRAY, 4, 4, 2, name="cfg")
    devices = []

    def device(ifname):
        assert ifname == "nfp0"
        devices.append(FakeDevice(tables))
        return devices[-1]

    monkeypatch.setattr(map_cli, "_device", device)

    def run(*argv, json: bool = False, dev_first: bool = False):
        argv = [*argv[:1], "--dev", "nfp0", *argv[1:]] if dev_first else [*argv, "--dev", "nfp0"]
        try:
            status = main(["map", *argv] + (["--json"] if json else []))
        except SystemExit as exc:  # argparse's own usage errors
            status = exc.code
        out, err = capsys.readouterr()
        assert all(d.closed for d in devices)
        return status, (_json.loads(out) if json and status == 0 else out), err

    return run, tables, hid, aid


def test_cli_update_lookup_dump_delete(cli):
    run, tables, hid, aid = cli
    assert run("dump", "drop_count", dev_first=True)[0] == 0  # `map dump --dev nfp0 NAME` as the issue spells it
    assert run("update", "drop_count", "--key", "0050", "--value", "03 00 00 00 00 00 00 00")[0] == 0
    assert run("update", str(hid), "--key", "1f90", "--value", "0x0100000000000000", "--flags", "noexist")[0] == 0
    assert tables.contents(hid) == {b"\x00\x50": k(3, 8), b"\x1f\x90": k(1, 8)}
    status, out, _ = run("lookup", "drop_count", "--key", "00:50")
    assert status == 0 and out == "key: 00 50  value: 03 00 00 00 00 00 00 00\n"
    status, doc, _ = run("lookup", "drop_count", "--key", "0050", json=True)
    assert doc == {"key": "0050", "key_le": 0x5000, "value": "0300000000000000", "value_le": 3}
    status, out, _ = run("dump", "drop_count")
    assert out.splitlines() == ["key: 00 50  value: 03 00 00 00 00 00 00 00",
                                "key: 1f 90  value: 01 00 00 00 00 00 00 00", "Found 2 elements"]
    status, doc, _ = run("dump", "drop_count", json=True)
    assert [(e["key"], e["value_le"]) for e in doc] == [("0050", 3), ("1f90", 1)]
    status, doc, _ = run("getnext", "drop_count", json=True)
    assert doc == {"key": None, "next_key": "0050"}
    status, out, _ = run("getnext", "drop_count", "--key", "0050")
    assert out == "key: 00 50\nnext key: 1f 90\n"
    assert run("delete", "drop_count", "--key", "0050")[0] == 0
    assert tables.contents(hid) == {b"\x1f\x90": k(1, 8)}
    status, doc, _ = run("list", json=True)
    assert doc == [
        {"id": hid, "name": "drop_count", "type": "hash", "key_size": 2, "value_size": 8, "max_entries": 4,
         "flags": 0, "entries": 1},
        {"id": aid, "name": "cfg", "type": "array", "key_size": 4, "value_size": 4, "max_entries": 2, "flags": 0,
         "entries": 2}]
    status, out, _ = run("list")
    assert out.splitlines()[1].split() == [str(hid), "drop_count", "hash", "2", "8", "4", "1"]


def test_cli_errors_carry_the_kernel_errno(cli):
    run, tables, hid, aid = cli
    status, _, err = run("lookup", "drop_count", "--key", "0051")
    assert status == 1 and "ENOENT" in err and err.startswith("nfpjit: error:")
    run("update", "drop_count", "--key", "0051", "--value", "00" * 8)
    status, _, err = run("update", "drop_count", "--key", "0051", "--value", "00" * 8, "--flags", "noexist")
    assert status == 1 and "EEXIST" in err
    status, _, err = run("delete", "cfg", "--key", "00000000")
    assert status == 1 and "EINVAL" in err
    status, _, err = run("getnext", "drop_count", "--key", "0051")
    assert status == 1 and "ENOENT" in err
    status, _, err = run("lookup", "nosuch", "--key", "00")
    assert status == 1 and "no map named 'nosuch'" in err
    # usage errors: status 2, nothing sent
    for argv in (("lookup", "drop_count"), ("lookup", "drop_count", "--key", "zz"), ("update", "cfg", "--key", "00"),
                 ("lookup", "drop_count", "--key", "000000"), ("list", "drop_count"),
                 ("dump", "drop_count", "--key", "00"), ("lookup", "drop_count", "--key", "0050", "--flags", "exist"),
                 ("delete",)):
        status, _, err = run(*argv)
        assert status == 2, argv

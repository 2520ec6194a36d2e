"""The offload path on virtual NICs, modelled on the kernel's netdevsim test_offload.py.

Load by device (ENODEV for a netdev that is not ours, EINVAL for a type the NIC cannot run or a
program the NIC's verifier rejects), XDP attach in HW mode (EINVAL without it or for another
device's program, EBUSY for a second attach without replace, EOPNOTSUPP for the NIC's limits),
detach (idempotent, every mode), device removal with a program attached, and the map semantics
through control messages (update flags, full tables, dump, get-next, delete, bad ids), every errno
checked.  Bad control messages get error replies and the daemon lives on.

Needs root and /dev/net/tun (skipped with the reason otherwise).  Two NICs for the whole module,
a third one made and removed by the device-removal test.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from pathlib import Path

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for virtual NICs")

from nfpjit.nic import registry  # noqa: E402

_PROBLEM = registry.support_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=f"virtual NICs unavailable: {_PROBLEM}")

from nfpjit.ebpf.opcodes import MapType, ProgType  # noqa: E402
from nfpjit.nic import cmsg  # noqa: E402
from nfpjit.nic.errors import OffloadError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DROP = ROOT / "examples" / "xdp_drop_tcp_ports.o"
PASS = ROOT / "tests" / "corpus" / "xdp_pass.o"
PERCPU = ROOT / "tests" / "corpus" / "percpu_array.o"
TAG = os.getpid() % 1000
NAME_A, NAME_B, NAME_C = f"nfpt{TAG}a", f"nfpt{TAG}b", f"nfpt{TAG}c"
NET = 100 + os.getpid() % 100  # 10.{12,13,15}.NET.0/24: only on the devices made here


def P(pin: str) -> str:
    """A pin name of this run: pins are machine-wide, as bpffs pins are."""
    return f"{pin}-{os.getpid()}"


def _up(name: str, second_octet: int, **kw):
    from nfpjit.offload.device import nic_down, nic_up

    if registry.state_dir(name).exists():
        nic_down(name)   # a stale NIC of an earlier run with the same name
    return nic_up(name, host_addr=f"10.{second_octet}.{NET}.1/24", wire_addr=f"10.{second_octet}.{NET}.2/24", **kw)


def _down(name: str) -> None:
    from nfpjit.offload.device import nic_down

    try:
        nic_down(name)
    except OffloadError:
        pass


@pytest.fixture(scope="module")
def nics():
    made = []
    try:
        made.append(_up(NAME_A, 12))
        made.append(_up(NAME_B, 13, mtu=9000))   # B: an MTU the NIC cannot hold (attach refuses)
        yield made
    finally:
        for n in (NAME_A, NAME_B, NAME_C):
            _down(n)


def _clean(dev) -> None:
    dev.detach()
    for p in dev.programs():
        dev.unload(p.id)


@pytest.fixture
def dev(nics):
    from nfpjit.offload import Device

    d = Device(NAME_A)
    try:
        yield d
    finally:
        _clean(d)
        d.close()


@pytest.fixture
def dev_b(nics):
    from nfpjit.offload import Device

    d = Device(NAME_B)
    try:
        yield d
    finally:
        _clean(d)
        d.close()


def _errno(excinfo) -> int:
    return excinfo.value.errno


# -- load -----------------------------------------------------------------------------------------


def test_load_for_non_offload_netdev_is_enodev(nics):
    from nfpjit.offload import Device

    with pytest.raises(OffloadError) as e:
        Device("lo")
    assert _errno(e) == errno.ENODEV and "does not support offload" in str(e.value)
    with pytest.raises(OffloadError) as e:
        Device(f"nfpt{TAG}none")
    assert _errno(e) == errno.ENODEV and "no network device" in str(e.value)
    # the veth wire port of our own NIC is a netdev, but not an offload device
    with pytest.raises(OffloadError) as e:
        Device(f"{NAME_A}-h")
    assert _errno(e) == errno.ENODEV


def test_load_cli_error_is_one_line_with_errno(nics, capsys):
    from nfpjit.cli import main

    assert main(["prog", "load", str(DROP), "--dev", "lo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nfpjit: error: ") and "ENODEV" in err[0]


def test_load_program_of_other_type_is_einval(dev):
    import nfpjit

    prog = dataclasses.replace(nfpjit.load(PASS), prog_type=ProgType.SOCKET_FILTER)
    with pytest.raises(OffloadError) as e:
        dev.load(prog)
    assert _errno(e) == errno.EINVAL and "SOCKET_FILTER" in str(e.value)
    assert dev.programs() == []


def test_load_rejected_by_the_nic_verifier_lists_every_problem(dev):
    import nfpjit
    from nfpjit.offload import Severity

    report = nfpjit.check(PERCPU, profile="nfp-kernel")  # the independent view: the capability report itself
    errors = [d for d in report.diagnostics if d.severity == Severity.ERROR]
    assert errors
    with pytest.raises(OffloadError) as e:
        dev.load(PERCPU, profile="nfp-kernel")  # per-CPU maps: the real card's rule
    assert _errno(e) == errno.EINVAL
    log = e.value.log
    assert all(line.startswith("[nfp] ") for line in log.splitlines())
    for d in errors:                           # every problem, with its source line
        assert d.message in log
        if d.line:
            assert f"{d.line}:" in log
    assert dev.programs() == [] and dev.map_tables() == []   # nothing left on the NIC


def test_load_binds_to_device_creates_maps_and_reports_like_bpftool(dev):
    import nfpjit

    prog = dev.load(DROP, pin=P("drop"))
    program = nfpjit.load(DROP)
    tables = {t.name: t for t in dev.map_tables()}
    assert set(tables) == {m.name for m in program.maps}
    assert prog.map_ids == tuple(sorted(t.tid for t in tables.values()))
    assert prog.ifname == NAME_A and prog.ifindex == dev.ifindex
    assert prog.xlated_size == 8 * program.nslots
    compiled = nfpjit.compile(DROP)
    assert prog.nfp_insns == len(compiled.image.code) and prog.jited_size == 8 * prog.nfp_insns
    assert prog.tag == compiled.image.metadata.source_tag[:8].hex()
    assert not prog.attached and prog.pinned == P("drop")
    assert "[nfp] " in prog.log and "MAP_ALLOC" in prog.log
    listed = dev.programs()
    assert [p.id for p in listed] == [prog.id]
    # a second program gets another id; a pin name is unique
    other = dev.load(PASS)
    assert other.id != prog.id
    with pytest.raises(OffloadError) as e:
        dev.load(PASS, pin=P("drop"))
    assert _errno(e) == errno.EEXIST
    # unload frees the program's tables
    dev.unload(prog.id)
    assert dev.map_tables() == []
    with pytest.raises(OffloadError) as e:
        dev.unload(prog.id)
    assert _errno(e) == errno.ENOENT


# -- attach / detach --------------------------------------------------------------------------------


def test_attach_detach_and_detach_many_times(dev):
    prog = dev.load(DROP)
    out = dev.attach(prog)
    from nfpjit.isa.sim.compiled import available

    # the NIC runs it on the compiled simulator where llvmlite's JIT works (docs/offload.md)
    assert out == {"id": prog.id, "mode": "hw", "replaced": None, "engine": "compiled" if available() else "interp"}
    assert dev.show()["program"]["engine"] == out["engine"]
    att = dev.attached()
    assert att is not None and att.id == prog.id and att.mode == "hw"
    stats = dev.show()
    assert stats["program"]["id"] == prog.id and stats["program"]["name"] == "xdp_drop_tcp_ports"
    with pytest.raises(OffloadError) as e:   # attached: unloading is refused
        dev.unload(prog.id)
    assert _errno(e) == errno.EBUSY
    for mode in ("hw", "hw", "drv", "drv", "skb", "skb"):   # "Test removing XDP program many times"
        dev.detach(mode=mode)
    assert dev.attached() is None and dev.show()["program"] is None


def test_attach_without_hw_mode_is_einval(dev):
    prog = dev.load(DROP)
    for mode in ("drv", "skb"):
        with pytest.raises(OffloadError) as e:
            dev.attach(prog, mode=mode)
        assert _errno(e) == errno.EINVAL and "without HW_MODE" in str(e.value)
    with pytest.raises(OffloadError) as e:
        dev.attach(prog, mode="bogus")
    assert _errno(e) == errno.EINVAL
    assert dev.attached() is None


def test_second_attach_is_ebusy_replace_swaps(dev):
    first = dev.load(DROP)
    second = dev.load(PASS, pin=P("pass"))
    dev.attach(first)
    with pytest.raises(OffloadError) as e:
        dev.attach(second)
    assert _errno(e) == errno.EBUSY and "already attached" in str(e.value)
    with pytest.raises(OffloadError) as e:     # also the same program again
        dev.attach(first)
    assert _errno(e) == errno.EBUSY
    assert dev.attached().id == first.id
    out = dev.attach(pin=P("pass"), replace=True)
    assert out["replaced"] == first.id and dev.attached().id == second.id


def test_tc_program_does_not_attach_as_xdp(dev):
    import nfpjit

    prog = dev.load(dataclasses.replace(nfpjit.load(PASS), prog_type=ProgType.SCHED_CLS))   # "return 2" as TC
    assert prog.type == "tc"
    with pytest.raises(OffloadError) as e:
        dev.attach(prog)
    assert _errno(e) == errno.EINVAL and "TC program" in str(e.value)


def test_attach_unknown_program_is_enoent(dev):
    with pytest.raises(OffloadError) as e:
        dev.attach(id=10 ** 9)
    assert _errno(e) == errno.ENOENT
    with pytest.raises(OffloadError) as e:
        dev.attach(pin="nothing-pinned-so")
    assert _errno(e) == errno.ENOENT


def test_program_for_another_device_is_einval(dev, dev_b):
    prog_b = dev_b.load(PASS, pin=P("on-b"))
    with pytest.raises(OffloadError) as e:
        dev.attach(prog_b)
    assert _errno(e) == errno.EINVAL and "different device" in str(e.value)
    with pytest.raises(OffloadError) as e:
        dev.attach(pin=P("on-b"))
    assert _errno(e) == errno.EINVAL and "different device" in str(e.value)
    with pytest.raises(OffloadError) as e:       # without HW mode the kernel complains about that first
        dev.attach(prog_b, mode="drv")
    assert _errno(e) == errno.EINVAL and "HW_MODE" in str(e.value)
    assert dev.attached() is None


def test_mtu_larger_than_the_nic_buffer_is_refused_at_attach(dev_b):
    prog = dev_b.load(PASS)
    with pytest.raises(OffloadError) as e:
        dev_b.attach(prog)
    assert _errno(e) == errno.EOPNOTSUPP and "MTU" in str(e.value)
    assert dev_b.attached() is None


def _raw_load(dev, image, info=None):
    reply = dev.client(cmsg.ProgLoad(image.to_bytes(), info or {"name": image.metadata.name, "maps": {}}))
    return reply


@pytest.mark.parametrize("what", ["stack", "length"])
def test_nic_limits_are_checked_at_attach(dev, what):
    """An image the NIC cannot hold (too deep a stack, too long for the instruction store) loads
    but does not attach: EOPNOTSUPP with the nfp driver's words."""
    import nfpjit
    from nfpjit.isa.encoding import encode
    from nfpjit.isa.table import Instruction, Op

    image = nfpjit.compile(PASS).image
    caps = dev.show()["caps"]
    if what == "stack":
        image = dataclasses.replace(image, metadata=dataclasses.replace(image.metadata,
                                                                         stack_size=caps["stack_size"] + 64))
        needle = "stack too large"
    else:
        nop = encode(Instruction(Op.NOP))
        image = dataclasses.replace(image, code=tuple(image.code) + (nop,) * caps["instruction_store"])
        needle = "program too long"
    reply = _raw_load(dev, image)
    assert reply.ok, reply
    with pytest.raises(OffloadError) as e:
        dev.attach(id=reply.body["id"])
    assert _errno(e) == errno.EOPNOTSUPP and needle in str(e.value)


def test_prog_load_of_a_bad_image_is_einval(dev):
    reply = dev.client(cmsg.ProgLoad(b"\x7fELF not an image", {"maps": {}}))
    assert not reply.ok and reply.errno == errno.EINVAL
    import nfpjit

    image = nfpjit.compile(DROP).image   # a map without a table on the NIC
    reply = _raw_load(dev, image)
    assert not reply.ok and reply.errno == errno.EINVAL and "drop_count" in reply.message


def test_cli_load_attach_show_detach(nics, capsys):
    from nfpjit.cli import main

    assert main(["prog", "load", str(DROP), "--dev", NAME_A, "--pin", P("cli")]) == 0
    assert "loaded program" in capsys.readouterr().out
    assert main(["net", "attach", "--dev", NAME_A, "--pin", P("cli")]) == 0
    assert "attached (hw)" in capsys.readouterr().out
    assert main(["net", "attach", "--dev", NAME_A, "--pin", P("cli")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "EBUSY" in err[0]
    assert main(["net", "attach", "--dev", NAME_A, "--pin", P("cli"), "--mode", "skb", "--replace"]) == 1
    assert "EINVAL" in capsys.readouterr().err
    assert main(["nic", "show", NAME_A, "--json"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["program"]["pinned"] == P("cli") and set(shown["counters"]["actions"]) >= {"pass", "drop", "tx",
                                                                                        "aborted"}
    assert main(["prog", "show", "--pin", P("cli"), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["dev"]["ifname"] == NAME_A and p["attached"] and p["map_ids"]
    assert main(["net", "detach", "--dev", NAME_A]) == 0
    assert main(["prog", "unload", "--pin", P("cli")]) == 0
    capsys.readouterr()


# -- device removal ----------------------------------------------------------------------------------


def test_device_removal_with_a_program_attached(nics):
    from nfpjit.offload import Device
    from nfpjit.offload.device import all_programs, nic_down
    from nfpjit.nic import netdev

    _up(NAME_C, 15)
    with Device(NAME_C) as c:
        prog = c.load(DROP, pin=P("on-c"))
        c.attach(prog)
    assert prog.id in {p.id for p in all_programs()}
    state = registry.read_state(NAME_C)
    pid = registry.read_pid(NAME_C)
    nic_down(NAME_C)
    assert not registry.pid_alive(pid)
    assert netdev.in_use(state) == [] and not registry.state_dir(NAME_C).exists()
    assert prog.id not in {p.id for p in all_programs()}
    with pytest.raises(OffloadError) as e:
        Device(NAME_C)
    assert _errno(e) == errno.ENODEV
    with Device(NAME_A) as a:                    # its pin went with it
        with pytest.raises(OffloadError) as e:
            a.attach(pin=P("on-c"))
        assert _errno(e) == errno.ENOENT
    with pytest.raises(OffloadError) as e:       # down again: nothing left
        nic_down(NAME_C)
    assert _errno(e) == errno.ENODEV


def test_nic_up_refuses_a_name_in_use(nics):
    from nfpjit.offload.device import nic_up

    with pytest.raises(OffloadError) as e:
        nic_up(NAME_A, host_addr="10.99.250.1/24", wire_addr="10.99.250.2/24")
    assert _errno(e) == errno.EEXIST and "in use" in str(e.value)
    with pytest.raises(OffloadError) as e:       # an existing netdev that is not ours
        nic_up("lo")
    assert _errno(e) == errno.EEXIST
    with pytest.raises(OffloadError) as e:
        nic_up("a" * 14)
    assert _errno(e) == errno.EINVAL


def test_crashed_daemon_leaves_nothing_down_cannot_clean(nics):
    import signal
    import time

    from nfpjit.nic import netdev
    from nfpjit.offload.device import nic_down, nic_list

    _up(NAME_C, 15)
    pid = registry.read_pid(NAME_C)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        os.waitpid(pid, os.WNOHANG) if _is_child(pid) else None
        if not registry.pid_alive(pid):
            break
        time.sleep(0.02)
    assert {n.name: n.alive for n in nic_list()}[NAME_C] is False
    state = registry.read_state(NAME_C)
    nic_down(NAME_C)
    assert netdev.in_use(state) == [] and not registry.state_dir(NAME_C).exists()


def _is_child(pid: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


# -- maps -----------------------------------------------------------------------------------------------


def _k(i: int) -> bytes:
    return struct.pack("<I", i)


def _v(i: int) -> bytes:
    return struct.pack("<Q", i)


@pytest.fixture
def two_maps(dev):
    """An array and a hash of two u32 -> u64 entries, as the kernel test's sample_map_ret0 has."""
    array = dev.maps.alloc(MapType.ARRAY, 4, 8, 2, name="array")
    htab = dev.maps.alloc(MapType.HASH, 4, 8, 2, name="htab")
    yield dev, array, htab
    for tid in (array, htab):
        try:
            dev.maps.free(tid)
        except OffloadError:
            pass


def test_map_update_flags_full_tables_and_errnos(two_maps):
    dev, array, htab = two_maps
    m = dev.maps
    for tid in (array, htab):
        for i in range(2):
            m.update(tid, _k(i), _v(3 * i))                    # no flags
    for tid in (array, htab):                                  # "added too many entries"
        with pytest.raises(OffloadError) as e:
            m.update(tid, _k(3), _v(9))
        assert _errno(e) == errno.E2BIG
    for tid in (array, htab):                                  # exist: present keys update
        for i in range(2):
            m.update(tid, _k(i), _v(3 * i), "exist")
    with pytest.raises(OffloadError) as e:                     # exist: a missing hash key
        m.update(htab, _k(3), _v(9), "exist")
    assert _errno(e) == errno.ENOENT
    for tid in (array, htab):                                  # noexist: present keys
        with pytest.raises(OffloadError) as e:
            m.update(tid, _k(1), _v(3), "noexist")
        assert _errno(e) == errno.EEXIST
    with pytest.raises(OffloadError) as e:                     # flags beyond ANY/NOEXIST/EXIST
        m.update(htab, _k(0), _v(0), 4)
    assert _errno(e) == errno.EINVAL
    with pytest.raises(OffloadError) as e:                     # a key of the wrong size
        m.update(htab, b"\x00" * 8, _v(0))
    assert _errno(e) == errno.EINVAL
    with pytest.raises(OffloadError) as e:                     # a key beyond the firmware limit
        m.update(htab, b"\x00" * 80, _v(0))
    assert _errno(e) == errno.E2BIG
    with pytest.raises(OffloadError) as e:                     # no such table
        m.lookup(10 ** 6, _k(0))
    assert _errno(e) == errno.EBADFD
    # a failed update changed nothing
    for tid in (array, htab):
        assert [(k, v) for k, v in m.dump(tid)] == [(_k(i), _v(3 * i)) for i in range(2)]


def test_map_dump_getnext_delete(two_maps):
    dev, array, htab = two_maps
    m = dev.maps
    for tid in (array, htab):
        for i in range(2):
            m.update(tid, _k(i), _v(3 * i))
    for tid in (array, htab):
        assert m.get_first(tid) == _k(0)
        assert m.get_next(tid, _k(0)) == _k(1)
        with pytest.raises(OffloadError) as e:                 # "got next key past the end of map"
            m.get_next(tid, _k(1))
        assert _errno(e) == errno.ENOENT
    for i in range(2):                                         # delete (htab)
        m.delete(htab, _k(i))
        with pytest.raises(OffloadError) as e:
            m.lookup(htab, _k(i))
        assert _errno(e) == errno.ENOENT
    with pytest.raises(OffloadError) as e:                     # nothing to delete
        m.delete(htab, _k(0))
    assert _errno(e) == errno.ENOENT
    with pytest.raises(OffloadError) as e:                     # empty hash: no first key
        m.get_first(htab)
    assert _errno(e) == errno.ENOENT
    for i in range(2):                                         # delete (array): refused
        with pytest.raises(OffloadError) as e:
            m.delete(array, _k(i))
        assert _errno(e) == errno.EINVAL
    assert m.lookup(array, _k(1)) == _v(3)
    # the name helpers of Device
    assert dev.map_id("array") == array and dev.map_lookup("array", _k(1)) == _v(3)


def test_map_of_a_loaded_program_cannot_be_freed(dev):
    prog = dev.load(DROP)
    (tid,) = prog.map_ids
    with pytest.raises(OffloadError) as e:
        dev.maps.free(tid)
    assert _errno(e) == errno.EBUSY


# -- bad control messages -----------------------------------------------------------------------------


def _bad_messages(tid: int) -> list[bytes]:
    good = cmsg.encode(cmsg.MapLookup(tid, _k(0)))
    header = cmsg.encode(cmsg.MapList())
    return [
        b"",                                                       # nothing
        good[:7],                                                  # truncated header
        good[:-1],                                                 # truncated payload
        bytes([9]) + good[1:],                                     # wrong version
        good[:1] + bytes([0x55]) + good[2:],                       # unknown type
        good[:1] + bytes([0x83]) + good[2:],                       # a reply sent as a request
        header + b"trailing",                                      # lengths that do not add up
        cmsg.HEADER.pack(1, 4, 0, 7, 16 + 100) + struct.pack("<IQHH", tid, 0, 100, 0) + b"\x00" * 100,  # big key
        cmsg.encode(cmsg.MapLookup(10 ** 6, _k(0))),               # wrong map id (well-formed)
        cmsg.HEADER.pack(1, 20, 0, 1, 5) + b"{oops",               # bad JSON
        os.urandom(300),
    ]


def test_bad_control_messages_get_error_replies_and_the_daemon_lives(dev):
    tid = dev.maps.alloc(MapType.HASH, 4, 8, 4, name="fuzz")
    try:
        for data in _bad_messages(tid):
            if not data:
                continue
            raw = dev.client.send_raw(data)
            reply = cmsg.decode_reply(raw)
            assert not reply.ok, data
        assert dev.show()["name"] == NAME_A
    finally:
        dev.maps.free(tid)


def test_fuzzed_control_messages_never_kill_the_daemon(dev):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings, strategies as st

    base = [cmsg.encode(m) for m in (cmsg.MapLookup(1, _k(0)), cmsg.MapList(), cmsg.MapGetFirst(1),
                                     cmsg.JsonRequest(cmsg.CmsgType.PROG_LIST, {}))]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.one_of(st.binary(min_size=1, max_size=64),
                     st.tuples(st.sampled_from(base), st.integers(0, 63), st.binary(min_size=1, max_size=4))
                     .map(lambda t: (t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]) or b"\x00")))
    def run(data):
        raw = dev.client.send_raw(data)
        assert raw is not None
        cmsg.decode_reply(raw)                  # a well-formed reply (error or, rarely, a real answer)

    del hypothesis
    run()
    assert dev.show()["name"] == NAME_A

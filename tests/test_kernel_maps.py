"""The kernel oracle's public map access (update, lookup, delete, get_next_key) against the interpreter's maps."""

from __future__ import annotations

import pytest

from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.asm import assemble
from nfpjit.kernel import KernelProgram

from xdp_cases import needs_kernel

pytestmark = [pytest.mark.kernel, needs_kernel]

PROG = """
.map h hash key=4 value=8 entries=3
.map a array key=4 value=8 entries=2
.map d devmap key=4 value=4 entries=2
lddw r1, map:h
lddw r1, map:a
lddw r1, map:d
mov r0, 2
exit
"""


def k(i: int) -> bytes:
    return i.to_bytes(4, "little")


def v(i: int) -> bytes:
    return i.to_bytes(8, "little")


def test_update_lookup_delete_next_key_agree():
    program = assemble(PROG, filename="maps")
    store = MapStore.from_program(program)
    h, a = store.by_name("h"), store.by_name("a")
    with KernelProgram(program) as kp:
        ops = [("h", k(1), v(10), 0), ("h", k(1), v(11), 1), ("h", k(2), v(20), 2), ("h", k(2), v(21), 1),
               ("h", k(3), v(30), 0), ("h", k(4), v(40), 0), ("h", k(5), v(50), 0), ("h", k(1), v(12), 2),
               ("h", k(1), v(1), 7), ("a", k(0), v(5), 0), ("a", k(1), v(6), 1), ("a", k(2), v(7), 0)]
        for name, key, value, flags in ops:
            assert kp.update(name, key, value, flags) == store.by_name(name).update(key, value, flags), (name, key,
                                                                                                      flags)
        for key in (k(1), k(2), k(9)):
            assert kp.lookup("h", key) == (bytes(h.lookup(key)) if h.lookup(key) is not None else None)
        for name, key in (("h", k(2)), ("h", k(2)), ("a", k(0)), ("a", k(5))):
            assert kp.delete(name, key) == store.by_name(name).delete(key)
        keys, key = [], None
        while (key := kp.get_next_key("h", key)) is not None:
            keys.append(key)
        assert sorted(keys) == sorted(k_ for k_, _ in h.items())
        assert kp.get_next_key("a") == k(0) and kp.get_next_key("a", k(1)) is None
        # a devmap slot needs a real device: lo (ifindex 1) is there, ifindex 0 empties the slot
        assert kp.update("d", k(0), k(1)) == 0 == store.by_name("d").update(k(0), k(1))
        assert kp.lookup("d", k(0))[:4] == k(1) and bytes(store.by_name("d").lookup(k(0))) == k(1)
        assert kp.update("d", k(0), k(0)) == 0 == store.by_name("d").update(k(0), k(0))
        assert kp.lookup("d", k(0)) is None and store.by_name("d").lookup(k(0)) is None


def test_redirect_map_updates_from_user_space_agree():
    program = assemble(".map c cpumap key=4 value=4 entries=4\n.map x xskmap key=4 value=4 entries=4\n"
                       ".map d devmap key=4 value=4 entries=4\n"
                       "lddw r1, map:c\nlddw r1, map:x\nlddw r1, map:d\nmov r0, 2\nexit", filename="redir")
    store = MapStore.from_program(program)
    ops = [("c", 0, 64, 0), ("c", 1, 0, 0), ("c", 3, 64, 0), ("c", 4, 64, 0), ("c", 0, 20000, 0), ("c", 0, 64, 1),
           ("d", 0, 1, 0), ("d", 0, 1, 1), ("d", 5, 1, 0), ("x", 0, 0, 0), ("x", 0, 3, 0), ("x", 9, 3, 0)]
    with KernelProgram(program) as kp:
        for name, key, value, flags in ops:   # (cpumap key 3: -ENODEV on a machine with fewer CPUs)
            assert kp.update(name, k(key), k(value), flags) == \
                store.by_name(name).update(k(key), k(value), flags), (name, key, value, flags)


def test_modelled_bound_xsk_socket():
    import nfpjit
    from nfpjit.ebpf.interp import run

    from conftest import CORPUS

    program = nfpjit.load(CORPUS / "af_xdp.o")
    store = MapStore.from_program(program)
    store.by_name("xsks_map").bind_socket(k(0), 0)
    res = run(program, bytes(60), maps=store)
    assert res.r0 == 4 and res.redirect == 0          # bound: XDP_REDIRECT to the socket
    assert run(program, bytes(60), maps=MapStore.from_program(program)).r0 == 2   # none bound: XDP_PASS

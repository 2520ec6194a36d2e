"""The XDP helper set against the kernel's BPF_PROG_TEST_RUN: redirect maps, FIB, MTU, queues, ring buffers.

Each program returns the helper's result (or stores what it wrote in a map), so the
comparison of r0, packet and maps shows exactly where the interpreter and the kernel part.
Tests that depend on devices and routes run in a private network namespace, which is what
the interpreter's default :class:`nfpjit.ebpf.net.Net` models (``lo`` only, forwarding off),
or in one configured like a router, modelled by a Net with the same devices and routes.
"""

from __future__ import annotations

import struct

import pytest

import nfpjit
from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.net import Device, Net, Route
from nfpjit.ebpf.result import PacketIn
from nfpjit.errors import UnsupportedError
from nfpjit.testing import build_packet, crafted_packets, PacketSpec

from conftest import CORPUS
from xdp_cases import both, build, fresh_netns, needs_kernel, netns_ifindex, sysctl_in

pytestmark = [pytest.mark.kernel, needs_kernel]

FRAMES = crafted_packets()[:12]
M32 = 0xFFFF_FFFF


def neg(e: int) -> int:
    return (-e) & M32


# -- redirects: xskmap, devmap, devmap_hash, cpumap ----------------------------------------------

def test_af_xdp_program_passes_every_packet_without_a_socket():
    program = nfpjit.load(CORPUS / "af_xdp.o")
    problems, want, got = both(program, crafted_packets())
    assert not problems, problems[:5]
    assert {w.r0 for w in want} == {2} and {g.r0 for g in got} == {2}   # XDP_PASS, as the issue reported


REDIRECT = """
struct {{ __uint(type, {mtype}); __uint(max_entries, 4); __type(key, u32); __type(value, u32); }} m SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u8 *b = data;
    if (b + 2 > (u8 *)end) return XDP_ABORTED;
    u64 flags = b[1];
    if (flags & 0x80) flags = (flags & 0x7f) << 3;
    return bpf_redirect_map(&m, b[0], flags);
}}
"""


@pytest.mark.parametrize("mtype,filled", [
    ("BPF_MAP_TYPE_DEVMAP", {1: 1}), ("BPF_MAP_TYPE_DEVMAP_HASH", {2: 1}),
    ("BPF_MAP_TYPE_CPUMAP", {0: 64}), ("BPF_MAP_TYPE_XSKMAP", {}),
])
def test_redirect_map_flags_and_fallback(mtype, filled):
    program = build(REDIRECT.format(mtype=mtype), name="redir")
    # byte 0: key; byte 1: flags (0x80 | n: n << 3, i.e. BROADCAST / EXCLUDE_INGRESS / an unknown bit)
    frames = [bytes([key, flags]) + bytes(58) for key in (0, 1, 2, 3, 9)
              for flags in (0, 1, 2, 3, 4, 7, 0x81, 0x83, 0x82, 0x84)]
    maps_in = {"m": [(k.to_bytes(4, "little"), v.to_bytes(4, "little")) for k, v in filled.items()]}
    problems, want, got = both(program, frames, maps_in=maps_in)
    assert not problems, problems[:5]
    assert {w.r0 for w in want} >= {0, 1, 2}   # fallbacks and ABORTED for bad flags were exercised


def test_redirect_map_hits_record_the_target():
    program = build(REDIRECT.format(mtype="BPF_MAP_TYPE_DEVMAP"), name="redir")
    store = MapStore.from_program(program)
    store.by_name("m").update((1).to_bytes(4, "little"), (1).to_bytes(4, "little"))
    res = run(program, bytes([1, 0]) + bytes(58), maps=store)
    assert res.r0 == 4 and res.redirect == 1
    res = run(program, bytes([2, 0]) + bytes(58), maps=store)
    assert res.r0 == 0 and res.redirect is None


LOOKUP = """
struct {{ __uint(type, {mtype}); __uint(max_entries, 4); __type(key, u32); __type(value, u32); }} m SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u8 *b = data;
    if (b + 1 > (u8 *)end) return XDP_ABORTED;
    u32 key = b[0];
    u32 *v = bpf_map_lookup_elem(&m, &key);
    return v ? 100 + *v : 7;
}}
"""


def test_cpumap_lookup_is_refused_as_by_the_verifier():
    from nfpjit.kernel import KernelProgram, KernelRejected

    program = build(LOOKUP.format(mtype="BPF_MAP_TYPE_CPUMAP"), name="lookup")
    with pytest.raises(KernelRejected, match="cannot pass map_type 16"):
        KernelProgram(program)
    assert "verifier refuses" in run(program, bytes(60)).fault.reason


@pytest.mark.parametrize("mtype,filled", [("BPF_MAP_TYPE_DEVMAP", {1: 1}), ("BPF_MAP_TYPE_DEVMAP_HASH", {3: 1})])
def test_redirect_map_lookups(mtype, filled):
    program = build(LOOKUP.format(mtype=mtype), name="lookup")
    frames = [bytes([k]) + bytes(59) for k in range(5)]
    maps_in = {"m": [(k.to_bytes(4, "little"), v.to_bytes(4, "little")) for k, v in filled.items()]}
    problems, want, _ = both(program, frames, maps_in=maps_in)
    assert not problems, problems[:5]
    assert {w.r0 for w in want} == {7, 100 + next(iter(filled.values()))}


def test_xskmap_lookup_without_socket_is_null():
    program = build(LOOKUP.format(mtype="BPF_MAP_TYPE_XSKMAP").replace("100 + *v", "100"), name="xlookup")
    problems, want, _ = both(program, [bytes([k]) + bytes(59) for k in range(5)])
    assert not problems and {w.r0 for w in want} == {7}


# -- bpf_fib_lookup -------------------------------------------------------------------------------

FIB = """
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32);
         __type(value, struct bpf_fib_lookup); } out SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct bpf_fib_lookup *in = data;
    struct bpf_fib_lookup fib;
    u32 zero = 0;
    if ((void *)(in + 1) + 4 > end) return XDP_ABORTED;
    __builtin_memcpy(&fib, in, sizeof(fib));
    long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), *(u32 *)(in + 1));
    bpf_map_update_elem(&out, &zero, &fib, BPF_ANY);
    return rc;
}
"""


def fib_params(family: int, ifindex: int, dst: bytes, src: bytes = b"", *, tot_len: int = 100, flags: int = 0,
               tbid: int = 0, l4: int = 6) -> bytes:
    p = bytearray(64)
    p[0] = family
    p[1] = l4
    struct.pack_into("<HI", p, 6, tot_len, ifindex)
    p[16:16 + len(src)] = src
    p[32:32 + len(dst)] = dst
    struct.pack_into("<I", p, 48, tbid)
    return bytes(p) + struct.pack("<I", flags) + bytes(8)


V4 = bytes([10, 1, 2, 3])
V6 = bytes.fromhex("20010db8000000000000000000000001")


def _fib_frames(ifindexes) -> list[bytes]:
    frames = []
    for ifx in ifindexes:
        for flags in (0, 1, 2, 4, 5, 0x40):
            frames.append(fib_params(2, ifx, V4, bytes([10, 9, 9, 9]), flags=flags))
            frames.append(fib_params(10, ifx, V6, V6[::-1], flags=flags))
        frames.append(fib_params(7, ifx, V4))                                          # -EAFNOSUPPORT
        frames.append(fib_params(10, ifx, bytes.fromhex("fe80" + "00" * 13 + "01")))   # link-local: NOT_FWDED
        frames.append(fib_params(10, ifx, bytes.fromhex("ff02" + "00" * 13 + "01")))   # multicast
        frames.append(fib_params(10, ifx, bytes(15) + b"\x01"))                        # ::1
        frames.append(fib_params(10, ifx, V6, bytes.fromhex("fe80" + "00" * 14)))      # link-local source
    return frames


def test_fib_lookup_in_a_fresh_namespace_is_not_forwarded():
    program = build(FIB, name="fib")
    with fresh_netns() as ns:
        problems, want, _ = both(program, _fib_frames([1, 0, 77]), netns=ns)
    assert not problems, problems[:5]
    codes = {w.r0 for w in want}
    assert {5, 4, neg(19), neg(22), neg(97)} <= codes   # FWD_DISABLED, NOT_FWDED, -ENODEV, -EINVAL, -EAFNOSUPPORT


def test_fib_router_corpus_program_in_a_fresh_namespace():
    program = nfpjit.load(CORPUS / "fib_router.o")
    with fresh_netns() as ns:
        problems, want, _ = both(program, crafted_packets(), netns=ns)
    assert not problems, problems[:5]
    assert 2 in {w.r0 for w in want}   # XDP_PASS: the router hands not-forwarded packets to the stack


ROUTER_MAC = bytes.fromhex("02aabbccdd01")
PEER_MAC = bytes.fromhex("02aabbccdd02")
GW_MAC = bytes.fromhex("0211223344ff")


def _router_setup() -> list[list[str]]:
    return [
        ["link", "add", "r0", "type", "veth", "peer", "name", "r1"],
        ["link", "set", "r0", "address", ROUTER_MAC.hex(":"), "mtu", "1400"],
        ["link", "set", "r1", "address", PEER_MAC.hex(":")],
        ["link", "set", "lo", "up"], ["link", "set", "r0", "up"], ["link", "set", "r1", "up"],
        ["addr", "add", "10.0.0.1/24", "dev", "r0"],
        ["-6", "addr", "add", "2001:db8::1/64", "dev", "r0", "nodad"],
        ["route", "add", "192.168.0.0/16", "via", "10.0.0.2", "dev", "r0"],
        ["route", "add", "172.16.0.0/12", "via", "10.0.0.3", "dev", "r0", "mtu", "1000"],
        ["route", "add", "172.20.0.0/16", "via", "10.0.0.2", "dev", "r0", "mtu", "lock", "1200"],
        ["route", "add", "blackhole", "10.66.0.0/16"],
        ["route", "add", "unreachable", "10.77.0.0/16"],
        ["route", "add", "prohibit", "10.88.0.0/16"],
        ["-6", "route", "add", "2001:db8:1::/48", "via", "2001:db8::2", "dev", "r0"],
        ["neigh", "add", "10.0.0.2", "lladdr", GW_MAC.hex(":"), "dev", "r0", "nud", "permanent"],
        ["-6", "neigh", "add", "2001:db8::2", "lladdr", GW_MAC.hex(":"), "dev", "r0", "nud", "permanent"],
    ]


def _router_net(r0: int, r1: int) -> Net:
    net = Net.default()
    net.devices[1].forwarding = net.devices[1].forwarding6 = True
    net.devices[r0] = Device(r0, "r0", 1400, ROUTER_MAC, forwarding=True, forwarding6=True,
                             addrs=("10.0.0.1", "2001:db8::1"))
    net.devices[r1] = Device(r1, "r1", 1500, PEER_MAC, forwarding=True, forwarding6=True)
    net.routes += [
        Route("10.0.0.0/24", r0), Route("2001:db8::/64", r0, metric=256),
        Route("192.168.0.0/16", r0, "10.0.0.2"), Route("172.16.0.0/12", r0, "10.0.0.3", mtu=1000),
        Route("172.20.0.0/16", r0, "10.0.0.2", mtu=1200, mtu_lock=True),
        Route("10.66.0.0/16", type="blackhole"), Route("10.77.0.0/16", type="unreachable"),
        Route("10.88.0.0/16", type="prohibit"), Route("2001:db8:1::/48", r0, "2001:db8::2", metric=1024),
    ]
    net.neighbours[(r0, "10.0.0.2")] = GW_MAC
    net.neighbours[(r0, "2001:db8::2")] = GW_MAC
    return net


def test_fib_lookup_against_a_configured_router_namespace():
    program = build(FIB, name="fib")
    dsts = [bytes([192, 168, 5, 5]), bytes([172, 16, 1, 1]), bytes([172, 20, 1, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 9]),
            bytes([10, 66, 1, 1]), bytes([10, 77, 1, 1]), bytes([10, 88, 1, 1]), bytes([10, 0, 0, 1]),
            bytes([8, 8, 8, 8])]
    v6 = [bytes.fromhex("20010db8000100000000000000000009"), bytes.fromhex("20010db8000000000000000000000002"),
          bytes.fromhex("20010db8000000000000000000000077"), bytes.fromhex("20010db9000000000000000000000001")]
    with fresh_netns(_router_setup()) as ns:
        for key in ("net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"):
            sysctl_in(ns, key, "1")
        r0, r1 = netns_ifindex(ns, "r0"), netns_ifindex(ns, "r1")
        frames = []
        for ifx in (r1, 1):
            for d in dsts:
                for flags, tot in ((0, 100), (4, 100), (0, 1300), (0, 1450), (1, 100)):
                    frames.append(fib_params(2, ifx, d, bytes([10, 0, 0, 2]), tot_len=tot, flags=flags))
                for flags in (16, 20):       # BPF_FIB_LOOKUP_SRC (and SKIP_NEIGH)
                    frames.append(fib_params(2, ifx, d, bytes([9, 9, 9, 9]), flags=flags))
                for tbid in (0, 254, 100):   # BPF_FIB_LOOKUP_TBID: the main table, a missing one
                    frames.append(fib_params(2, ifx, d, bytes([10, 0, 0, 2]), flags=9, tbid=tbid))
            for d in v6:
                for flags, tot in ((0, 100), (4, 100), (0, 1420), (16, 100), (20, 100)):
                    frames.append(fib_params(10, ifx, d, bytes.fromhex("20010db8000000000000000000000002"),
                                             tot_len=tot, flags=flags))
        problems, want, _ = both(program, frames, netns=ns, net=_router_net(r0, r1))
    assert not problems, "\n".join(problems[:8])
    assert {0, 1, 2, 3, 4, 7, 8} <= {w.r0 for w in want}   # success, the three drops, not forwarded, neigh, frag


def test_fib_lookup_tc_against_a_configured_router_namespace():
    program = build(FIB.replace('SEC("xdp") int p(struct xdp_md *ctx)', 'SEC("tc") int p(struct __sk_buff *ctx)'),
                    name="tcfib")
    with fresh_netns(_router_setup()) as ns:
        for key in ("net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"):
            sysctl_in(ns, key, "1")
        r0, r1 = netns_ifindex(ns, "r0"), netns_ifindex(ns, "r1")
        frames = []
        for d in (bytes([192, 168, 5, 5]), bytes([10, 0, 0, 9]), bytes([10, 66, 1, 1]), bytes([10, 0, 0, 1])):
            for flags, tot in ((0, 0), (4, 0), (0, 100), (0, 1450), (4, 1450)):
                for pad in (0, 1400):
                    frames.append(fib_params(2, r1, d, bytes([10, 0, 0, 2]), tot_len=tot, flags=flags) + bytes(pad))
        problems, want, _ = both(program, frames, netns=ns, net=_router_net(r0, r1), ingress_ifindex=0)
    assert not problems, "\n".join(problems[:8])
    assert {0, 1, 4, 7, 8} <= {w.r0 for w in want}


# -- bpf_check_mtu --------------------------------------------------------------------------------

MTU = """
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u32); } out SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u32 *in = data;
    u32 zero = 0;
    if ((void *)(in + 4) > end) return XDP_ABORTED;
    u32 mtu = in[1];
    long rc = bpf_check_mtu(ctx, in[0], &mtu, (s32)in[2], in[3]);
    bpf_map_update_elem(&out, &zero, &mtu, BPF_ANY);
    return rc;
}
"""


def test_check_mtu():
    program = build(MTU, name="mtu")
    frames = []
    for ifx in (0, 1, 4242):
        for mtu_len in (0, 100, 65535, 65537):
            for diff in (0, 100, -50, 65600, -(1 << 31)):
                for flags in (0, 1):
                    frames.append(struct.pack("<IIiI", ifx, mtu_len, diff, flags) + bytes(44))
    with fresh_netns() as ns:
        problems, want, _ = both(program, frames, netns=ns)
    assert not problems, problems[:5]
    assert {0, 1, neg(19), neg(22)} <= {w.r0 for w in want}


TC_MTU = MTU.replace('SEC("xdp") int p(struct xdp_md *ctx)', 'SEC("tc") int p(struct __sk_buff *ctx)')


def test_check_mtu_tc():
    program = build(TC_MTU, name="tcmtu")
    frames = []
    for ifx in (0, 1, 4242):
        for mtu_len in (0, 100, 65537):
            for diff in (0, 100, -50, 65600):
                for flags in (0, 1, 2):   # (bytes 12-13, the EtherType, are the flags: no IP header needed)
                    frames.append(struct.pack("<IIiI", ifx, mtu_len, diff, flags) + bytes(44))
    with fresh_netns() as ns:
        problems, want, _ = both(program, frames, netns=ns, ingress_ifindex=0)
    assert not problems, problems[:5]
    assert {0, 1, neg(19), neg(22)} <= {w.r0 for w in want}


# -- queue and stack maps --------------------------------------------------------------------------

QUEUE = """
struct { __uint(type, BPF_MAP_TYPE_%s); __uint(max_entries, 3); __type(value, u32); } q SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u32 *in = data;
    if ((void *)(in + 3) > end) return XDP_ABORTED;
    u32 v = 0xdeadbeef;
    if (in[0] == 0) return bpf_map_push_elem(&q, &in[1], in[2]);
    long rc = in[0] == 1 ? bpf_map_pop_elem(&q, &v) : bpf_map_peek_elem(&q, &v);
    return rc ? (v == 0 ? 1000 + rc : 2000 + rc) : v;
}
"""


@pytest.mark.parametrize("kind", ["QUEUE", "STACK"])
def test_queue_and_stack(kind):
    program = build(QUEUE % kind, name=f"q{kind}")
    ops = [(1, 0, 0), (0, 11, 0), (0, 12, 1), (0, 13, 3), (0, 14, 0), (0, 15, 0), (0, 16, 0), (0, 17, 2),
           (2, 0, 0), (1, 0, 0), (0, 18, 2), (1, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0), (2, 0, 0)]
    frames = [struct.pack("<III", *op) + bytes(48) for op in ops]
    problems, want, _ = both(program, frames)
    assert not problems, problems[:5]
    assert neg(7) in {w.r0 for w in want}        # -E2BIG when full without BPF_EXIST


def test_queue_user_program():
    program = nfpjit.load(CORPUS / "queue_user.o")
    problems, _, _ = both(program, crafted_packets())
    assert not problems, problems[:5]


# -- ring buffers -----------------------------------------------------------------------------------

def test_ringbuf_sampler_until_the_ring_is_full():
    program = nfpjit.load(CORPUS / "ringbuf_sampler.o")
    frames = crafted_packets() * 2
    problems, want, got = both(program, frames)
    assert not problems, problems[:5]
    stats = got[-1].maps["sampler_stats"]
    assert int.from_bytes(stats[(1).to_bytes(4, "little")], "little") > 0   # the ring filled up
    assert len(got[-1].maps["samples"]) > 40


RINGBUF = """
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u32 *in = data;
    if ((void *)(in + 4) > end) return XDP_ABORTED;
    u32 copy[4] = { in[0], in[1], in[2], in[3] };
    if (in[0] == 0) return bpf_ringbuf_output(&rb, copy, 16, in[1]);
    if (in[0] == 1) return bpf_ringbuf_query(&rb, in[1]);
    u8 *r = bpf_ringbuf_reserve(&rb, 24, 0);
    if (!r) return 77;
    __builtin_memcpy(r, copy, 16);
    if (in[1]) bpf_ringbuf_discard(r, 0); else bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
    return 0;
}
"""


def test_ringbuf_output_query_reserve():
    program = build(RINGBUF, name="rb")
    ops = [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3), (1, 9), (2, 0), (2, 1),
           (1, 0), (1, 3)] + [(2, 0)] * 140 + [(0, 0)] * 3 + [(1, 0), (1, 3)]
    frames = [struct.pack("<IIII", a, b, n, 0x5a5a5a5a) + bytes(44) for n, (a, b) in enumerate(ops)]
    problems, want, _ = both(program, frames)
    assert not problems, problems[:5]
    assert 77 in {w.r0 for w in want} and neg(22) in {w.r0 for w in want} and neg(11) in {w.r0 for w in want}


# -- perf event output, xdp_get_buff_len / load / store bytes -----------------------------------------

PERF = """
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY_); __uint(max_entries, 2); __type(key, u32);
         __type(value, u32); } ev SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u64 *in = data;
    if ((void *)(in + 1) > end) return XDP_ABORTED;
    u64 sample = 0x1122334455667788;
    return bpf_perf_event_output(ctx, &ev, *in, &sample, sizeof(sample));
}
"""


def test_perf_event_output_without_events():
    program = build(PERF, name="perf")
    flags = [0, 1, 2, 0xFFFFFFFF, 5 << 32, 100 << 32, 1 << 52, 3]
    problems, want, got = both(program, [struct.pack("<Q", f) + bytes(52) for f in flags])
    assert not problems, problems[:5]
    assert {neg(2), neg(7), neg(14), neg(22)} <= {w.r0 for w in want}
    assert all(g.perf_output == [] for g in got)


def test_perf_event_output_with_events_attached():
    from nfpjit.kernel import KernelProgram, _ncpus, perf_raw_payload

    program = build(PERF.replace("&sample, sizeof(sample)", "&sample, *in >> 60 ? 5 : 8").replace(
        "*in, &sample", "*in & ~(1ULL << 60), &sample"), name="perfev")
    store = MapStore.from_program(program)
    store.attach_perf_events(_ncpus())
    flags = [0, 1, 2, 0xFFFFFFFF, (3 << 32) | 0xFFFFFFFF, (1 << 60) | 0xFFFFFFFF, 9 << 32, 1 << 52]
    with KernelProgram(program, perf_events=True) as kp:
        if min(__import__("os").sched_getaffinity(0)) != 0:
            pytest.skip("the kernel oracle runs on CPU 0 only when this process may use it")
        for f in flags:
            frame = struct.pack("<Q", f) + bytes(52)
            want = kp.run(PacketIn(frame))
            got = run(program, PacketIn(frame), maps=store)
            assert want.r0 == got.r0 & M32, hex(f)
            assert want.perf_output == [perf_raw_payload(x) for x in got.perf_output], hex(f)
    assert got.perf_output == [] and want.r0 == neg(22)


BYTES = """
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } out SEC(".maps");
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    u32 *in = data;
    u64 buf = 0x0102030405060708;
    u32 zero = 0;
    if ((void *)(in + 2) > end) return XDP_ABORTED;
    u32 off = in[0], n = in[1] & 7;
    long a = bpf_xdp_load_bytes(ctx, off, &buf, n + 1);
    bpf_map_update_elem(&out, &zero, &buf, BPF_ANY);
    long b = bpf_xdp_store_bytes(ctx, off + 2, &buf, n + 1);
    return (a & 0xff) | ((b & 0xff) << 8) | (bpf_xdp_get_buff_len(ctx) << 16);
}
"""


def test_xdp_load_store_bytes_and_buff_len():
    program = build(BYTES, name="bytes")
    frames = [struct.pack("<II", off, n) + bytes(range(40)) for off in (0, 3, 30, 40, 47, 60, 1 << 31)
              for n in (0, 3, 7)]
    problems, _, _ = both(program, frames)
    assert not problems, problems[:5]


# -- bpf_loop and the loop-parser corpus program ------------------------------------------------------

def _with_ext_headers(frame: bytes, chain: list[int]) -> bytes:
    """Insert IPv6 extension headers of the given types (8 bytes each) in front of the transport header."""
    eth, ip6, rest = frame[:14], bytearray(frame[14:54]), frame[54:]
    nxt = ip6[6]
    hdrs = b""
    for kind in reversed(chain):
        hdrs = bytes([nxt, 0]) + bytes(6) + hdrs
        nxt = kind
    ip6[6] = nxt
    struct.pack_into("!H", ip6, 4, len(rest) + len(hdrs))
    return eth + bytes(ip6) + hdrs + rest


def test_loop_parser_program():
    program = nfpjit.load(CORPUS / "loop_parser.o")
    ext = []
    for l4 in ("tcp", "udp"):
        for chain in ([0], [0, 60], [43, 60, 44], [60] * 9, [0, 59]):
            ext.append(_with_ext_headers(build_packet(PacketSpec(l3="ipv6", l4=l4)), chain))
    problems, _, _ = both(program, crafted_packets() + ext)
    assert not problems, problems[:5]


# -- what is not modelled: one clear error ------------------------------------------------------------

TIMER = """
struct elem { struct bpf_timer_ { u64 a, b; } t; };
SEC("xdp") int p(struct xdp_md *ctx) {
    static long (*bpf_timer_init)(void *timer, void *map, u64 flags) = (void *)169;
    u64 t[2] = {};
    return bpf_timer_init(t, 0, 0) ? XDP_PASS : XDP_DROP;
}
"""


def test_timers_are_refused_before_the_run():
    program = build(TIMER, name="timer")
    with pytest.raises(UnsupportedError, match="bpf_timer_init .*not modelled"):
        run(program, bytes(60))


def test_unmodelled_helper_is_one_error_from_the_cli(tmp_path, capsys):
    from nfpjit.cli import main

    program = build(TIMER, name="timer")
    code = main(["run", program.source_path, "--packet", "00" * 60])
    err = capsys.readouterr().err
    assert code == 1 and "bpf_timer_init" in err and "Traceback" not in err
    assert err.count("error") == 1


def test_default_net_is_lo_only():
    net = Net.default()
    assert list(net.devices) == [1] and net.devices[1].mtu == 65536 and not net.devices[1].forwarding
    assert net.lookup(bytes([1, 2, 3, 4])) is None


def test_net_from_dict():
    net = Net.from_dict({"devices": [{"ifindex": 5, "mac": "02:00:00:00:00:05", "forwarding": True,
                                      "addrs": ["10.0.0.1"]}],
                         "routes": [{"dst": "0.0.0.0/0", "dev": 5, "via": "10.0.0.254"}],
                         "neighbours": [{"dev": 5, "ip": "10.0.0.254", "mac": "02:00:00:00:00:fe"}]})
    assert net.lookup(bytes([8, 8, 8, 8])).via == "10.0.0.254"
    assert net.lookup(bytes([10, 0, 0, 1])).type == "local"
    from nfpjit.errors import LoadError

    with pytest.raises(LoadError):
        Net.from_dict({"routes": [{"dst": "10.0.0.0/8", "type": "weird"}]})


# -- generated programs in a router namespace, with filled redirect maps and attached perf events --------

@pytest.fixture(scope="module")
def router_ns():
    setup = _router_setup() + [["route", "add", "default", "via", "10.0.0.2", "dev", "r0"],
                               ["-6", "route", "add", "default", "via", "2001:db8::2", "dev", "r0"]]
    with fresh_netns(setup) as ns:
        for key in ("net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"):
            sysctl_in(ns, key, "1")
        r0, r1 = netns_ifindex(ns, "r0"), netns_ifindex(ns, "r1")
        net = _router_net(r0, r1)
        net.routes += [Route("0.0.0.0/0", r0, "10.0.0.2"), Route("::/0", r0, "2001:db8::2", metric=1024)]
        yield ns, net


def test_generated_xdp_helper_programs_in_a_router_namespace(router_ns):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from nfpjit.kernel import KernelProgram, _ncpus, kernel_tailroom, perf_raw_payload
    from nfpjit.testing import compare_results, packets, programs

    ns, net = router_ns
    # dev[1] = lo, cpu[0] = a CPU queue: redirects that hit, devmap lookups that read a value
    maps_in = {"dev": [((1).to_bytes(4, "little"), (1).to_bytes(4, "little"))],
               "cpu": [(bytes(4), (64).to_bytes(4, "little"))]}
    if min(__import__("os").sched_getaffinity(0)) != 0:
        pytest.skip("the kernel oracle runs on CPU 0 only when this process may use it")

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(programs(xdp_helpers=True), st.lists(packets(max_len=200), min_size=1, max_size=3))
    def check(program, frames):
        store = MapStore.from_program(program)
        from nfpjit.ebpf.mapfile import apply_entries

        apply_entries(maps_in, store)
        store.attach_perf_events(_ncpus())
        with KernelProgram(program, maps_in=maps_in, netns=ns, perf_events=True) as kp:
            for frame in crafted_packets()[:4] + frames:
                pin = PacketIn(frame)
                want = kp.run(pin)
                got = run(program, pin, maps=store, tailroom=kernel_tailroom(program.prog_type, len(frame)), net=net)
                problems = compare_results(want, got)
                if want.perf_output != [perf_raw_payload(x) for x in got.perf_output]:
                    problems.append(f"perf samples differ: {want.perf_output} != {got.perf_output}")
                assert not problems, (frame.hex(), problems)

    check()


# -- the three reported failures, as a user meets them: nfpjit run --engine ref / kernel -----------------

@pytest.mark.parametrize("obj", ["katran_lb.o", "af_xdp.o", "fib_router.o"])
def test_reported_programs_run_from_the_cli(obj, tmp_path, capsys):
    import json

    from nfpjit.cli import main

    frames = [f.hex() for f in crafted_packets()[:6]]
    outs = {}
    for engine in ("ref", "kernel"):
        args = ["run", str(CORPUS / obj), "--engine", engine, "--json"]
        for f in frames:
            args += ["--packet", f]
        assert main(args) == 0, capsys.readouterr().err
        outs[engine] = json.loads(capsys.readouterr().out)
    ref, kern = outs["ref"], outs["kernel"]
    assert "FAULT" not in json.dumps(ref)
    assert [p.get("action") for p in ref["packets"]] == [p.get("action") for p in kern["packets"]]


SPIN = """
struct bpf_spin_lock_ { u32 val; };
struct counter { struct bpf_spin_lock_ lock; u32 n; u64 bytes; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, struct counter); } c SEC(".maps");
static long (*bpf_spin_lock)(void *lock) = (void *)93;
static long (*bpf_spin_unlock)(void *lock) = (void *)94;
static u64 (*bpf_jiffies64)(void) = (void *)118;
SEC("xdp") int p(struct xdp_md *ctx) {
    u32 zero = 0;
    struct counter *v = bpf_map_lookup_elem(&c, &zero);
    if (!v) return XDP_ABORTED;
    bpf_spin_lock(&v->lock);
    v->n++;
    v->bytes += ctx->data_end - ctx->data;
    bpf_spin_unlock(&v->lock);
    return bpf_jiffies64() > 1000 ? XDP_PASS : XDP_DROP;
}
"""


def test_spin_lock_and_jiffies_in_the_interpreter():
    # (the kernel oracle creates maps without BTF, which bpf_spin_lock needs: interpreter only)
    program = build(SPIN, name="spin")
    store = MapStore.from_program(program)
    res = None
    for n, frame in enumerate(crafted_packets()[:5]):
        res = run(program, frame, maps=store, clock_ns=2_000_000_000 * n)
        assert res.fault is None
    value = res.maps["c"][bytes(4)]
    assert value[:4] == bytes(4) and int.from_bytes(value[4:8], "little") == 5   # unlocked, five increments
    assert res.r0 == 2 and run(program, bytes(60), maps=store).r0 == 1        # jiffies of the controllable clock

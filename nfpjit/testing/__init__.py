"""Public testing helpers for driver and engine developers (see docs/testing-api.md).

- :func:`packets` / :func:`crafted_packets`: test frames (hypothesis strategy / fixed list).
- :func:`programs`: eBPF programs the kernel verifier accepts.
- :func:`compare_results`: what differs between two engines' :class:`~nfpjit.ebpf.result.RunResult`.
"""

from __future__ import annotations

from nfpjit.ebpf.result import RunResult
from nfpjit.testing.packets import PacketSpec, build_packet, crafted_packets, packets
from nfpjit.testing.strategies import GENERATED_MAPS, programs

__all__ = ["compare_results", "packets", "crafted_packets", "build_packet", "PacketSpec", "programs", "GENERATED_MAPS"]


def compare_results(a: RunResult, b: RunResult, *, maps: bool = True, r0_bits: int = 32) -> list[str]:
    """What differs between two engines' results on the same input, as readable lines (empty: they agree).

    ``r0`` is compared on its low ``r0_bits`` bits (the kernel's test_run returns a u32);
    maps only for the names both results contain (the kernel cannot dump prog arrays and the like);
    TC metadata (``skb``) on the fields both results report (the kernel reports mark, priority, cb);
    a fault on either side is always a difference.
    """
    diffs: list[str] = []
    for name, res in (("first", a), ("second", b)):
        if res.fault is not None:
            diffs.append(f"{name} engine faulted: {res.fault}")
    mask = (1 << r0_bits) - 1
    if a.r0 & mask != b.r0 & mask:
        diffs.append(f"r0 differs: {a.r0 & mask:#x} != {b.r0 & mask:#x}")
    if a.packet != b.packet:
        where = next((i for i, (x, y) in enumerate(zip(a.packet, b.packet)) if x != y), min(len(a.packet), len(b.packet)))
        diffs.append(f"packet differs (lengths {len(a.packet)}/{len(b.packet)}, first difference at byte {where})")
    if a.skb is not None and b.skb is not None:
        for key in [k for k in a.skb if k in b.skb]:
            if a.skb[key] != b.skb[key]:
                diffs.append(f"__sk_buff {key} differs: {a.skb[key]:#x} != {b.skb[key]:#x}")
    if maps:
        for name in sorted(set(a.maps) & set(b.maps)):
            ea, eb = a.maps[name], b.maps[name]
            if ea == eb:
                continue
            for key in sorted(set(ea) | set(eb)):
                va, vb = ea.get(key), eb.get(key)
                if va != vb:
                    diffs.append(f"map {name!r} key {key.hex()}: {va.hex() if va is not None else 'absent'} != "
                                 f"{vb.hex() if vb is not None else 'absent'}")
    return diffs

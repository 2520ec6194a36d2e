"""Public testing helpers for driver and engine developers (see docs/testing-api.md).

- :func:`packets` / :func:`crafted_packets`: test frames (hypothesis strategy / fixed list).
- :func:`programs`: eBPF programs the kernel verifier accepts.
- :func:`compare_results`: what differs between two engines' :class:`~nfpjit.ebpf.result.RunResult`.
"""

from __future__ import annotations

from nfpjit.testing.packets import PacketSpec, build_packet, crafted_packets, packets
from nfpjit.testing.strategies import GENERATED_MAPS, programs

__all__ = ["packets", "crafted_packets", "build_packet", "PacketSpec", "programs", "GENERATED_MAPS"]

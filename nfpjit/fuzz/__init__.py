"""Fuzzing campaigns: mutated inputs through the public entry points, generated programs through every engine.

- :mod:`nfpjit.fuzz.targets`: the input targets (``elf``, ``ebpf-asm``, ``nfp-asm``, ``image``, ``pcap``,
  ``profile``): seeds, mutator, what an input goes through; :func:`~nfpjit.fuzz.targets.is_failure`.
- :mod:`nfpjit.fuzz.mutators`: byte-level, ELF-structure-aware and token-level text mutators.
- :mod:`nfpjit.fuzz.diff`: the differential target (``diff``): programs x packets, interpreter vs
  simulator (-O2, -O0) vs kernel.
- :mod:`nfpjit.fuzz.shrink`: delta debugging of failing inputs.
- :mod:`nfpjit.fuzz.campaign`: chunks over an executor (this process, local processes, Dask),
  :func:`run_campaign`, the report.
- :mod:`nfpjit.fuzz.reproducer`: saving failures and replaying them.

``nfpjit fuzz`` is the command line (docs/fuzzing.md).
"""

from __future__ import annotations

from nfpjit.fuzz.campaign import CampaignConfig, CampaignReport, Chunk, ChunkResult, Failure, run_campaign, run_chunk
from nfpjit.fuzz.reproducer import replay, reproducers, save_failure

__all__ = ["CampaignConfig", "CampaignReport", "Chunk", "ChunkResult", "Failure", "run_campaign", "run_chunk",
           "replay", "reproducers", "save_failure"]

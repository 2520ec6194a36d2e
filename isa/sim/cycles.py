"""The simulator's cycle model: every cost the simulator charges, in one table.

A run's cycle count is the sum of the charges below; each charge is booked
to one :class:`Resource`, so the per-resource breakdown of a
:class:`~nfpjit.isa.sim.result.SimResult` adds up to its total.  Figures
follow the public descriptions of the NFP (see docs/simulator.md); where the
real chip has no single number we pick one and say so there.

=====================  =======  ===========  ==========================================================
key                    cycles   resource     charged when
=====================  =======  ===========  ==========================================================
issue                  1        ISSUE        every instruction executed (ALU, IMMED, MUL step, CSR,
                                             branch, command issue, halt, nop)
branch_taken           3        BRANCH       a taken br/br_bset/br_bclr/rtn, less one per defer slot
                                             (never below 0): br with defer=2 costs 1 extra, rtn with
                                             defer=3 costs nothing extra
lm_access              1        LM           per local-memory operand read or written (so an
                                             instruction with one LM operand takes 2 cycles)
xfer_read              0        XFER         per $in register read: transfer registers are read like
                                             GPRs (the access is counted, the cost is the issue cycle)
ctm                    50       CTM          a CTM command (packet buffer) completing
emem                   250      EMEM         an EMEM command (map values) completing
imem                   120      IMEM         an IMEM command completing (our figure)
cls                    25       CLS          a cluster-scratch command completing (our figure)
fw_map_lookup_miss     1000     FIRMWARE     map lookup routine, key not in the NIC-side map cache
fw_map_lookup_hit      300      FIRMWARE     map lookup routine, key in the map cache (LRU)
fw_map_update          1000     FIRMWARE     map update routine (write-through; evicts the key from
                                             the map cache)
fw_map_delete          1000     FIRMWARE     map delete routine (evicts the key from the map cache)
fw_adjust_head         14       FIRMWARE     adjust_head, general path (delta checked at run time)
fw_adjust_head_fast    5        FIRMWARE     adjust_head fast path (JIT proved the delta constant)
fw_adjust_tail         14       FIRMWARE     adjust_tail
fw_get_prandom         4        FIRMWARE     get_prandom_u32
fw_divide              12       FIRMWARE     division/modulo by a register: call, operand signs and
                                             magnitudes, the zero-divisor check, result sign
fw_divide_step32       3        FIRMWARE     per quotient bit of a 32-bit division (shift, subtract,
                                             select: bitlen(|n|) - bitlen(|d|) + 1 steps, 0 if negative)
fw_divide_step64       6        FIRMWARE     per quotient bit of a 64-bit division (every step works
                                             on word pairs with carries)
fw_redirect            4        FIRMWARE     bpf_redirect: flag check, the target into the packet's
                                             metadata (the egress decision is made at exit)
fw_bytes               10       FIRMWARE     xdp_load_bytes/xdp_store_bytes: the offset/length checks
fw_bytes_word          2        FIRMWARE     per 32-bit word copied between the packet and the buffer
fw_csum_diff           10       FIRMWARE     csum_diff: the path (push/pull/diff) and the final fold
fw_csum_word           2        FIRMWARE     per 32-bit word summed (from and to; a tail counts as one)
fw_csum_replace        12       FIRMWARE     l3/l4_csum_replace: flag and offset checks, the field's
                                             read, the incremental update (RFC 1624) and its write
=====================  =======  ===========  ==========================================================

A command issued with ``ctx_swap`` waits for completion: its memory cost
is charged at once.  A command with a ``signal`` and no ``ctx_swap`` runs
in the background: ``ctx_wait`` on its signal charges only the cycles still
left (memory cost minus the cycles executed since the issue).  A command
with neither is fire-and-forget (writes, ``mem_addi32``/``mem_addi64``): no cost beyond the
issue cycle.
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType


class Resource(IntEnum):
    """Where a run's cycles went."""

    ISSUE = 0
    BRANCH = 1
    LM = 2
    XFER = 3
    CTM = 4
    EMEM = 5
    IMEM = 6
    CLS = 7
    FIRMWARE = 8


CYCLES = MappingProxyType({
    "issue": 1,
    "branch_taken": 3,
    "lm_access": 1,
    "xfer_read": 0,
    "ctm": 50,
    "emem": 250,
    "imem": 120,
    "cls": 25,
    "fw_map_lookup_miss": 1000,
    "fw_map_lookup_hit": 300,
    "fw_map_update": 1000,
    "fw_map_delete": 1000,
    "fw_adjust_head": 14,
    "fw_adjust_head_fast": 5,
    "fw_adjust_tail": 14,
    "fw_get_prandom": 4,
    "fw_divide": 12,
    "fw_divide_step32": 3,
    "fw_divide_step64": 6,
    "fw_redirect": 4,
    "fw_bytes": 10,
    "fw_bytes_word": 2,
    "fw_csum_diff": 10,
    "fw_csum_word": 2,
    "fw_csum_replace": 12,
})

#: cycles between writing the T_INDEX CSR and ``*$index`` reading the register it names; a read
#: sooner waits (charged to XFER)
T_INDEX_DELAY = 3
DEFAULT_MAP_CACHE_SIZE = 16      # entries of the NIC-side map lookup cache (LRU)
DEFAULT_BUDGET = 1_000_000       # watchdog: cycles a run may take

"""The cycle-counting NFP-32 simulator (installed as ``nfpjit.isa.sim``).

``simulate(image_or_program, packet, *, maps_in=None, budget=..., map_cache_size=..., seed=0,
trace=False, ingress_ifindex=1, rx_queue_index=0) -> SimResult`` runs a firmware image (or an
assembled program, or a list of Instructions) on one packet.  The machine model, cycle table and
firmware ABI are described in docs/simulator.md; the cycle table itself is :data:`CYCLES`.
"""

from .cycles import CYCLES, DEFAULT_BUDGET, DEFAULT_MAP_CACHE_SIZE, Resource
from .firmware import (
    ARG_DELTA,
    ARG_FLAGS,
    ARG_KEY,
    ARG_MAP_ID,
    ARG_VALUE,
    FIRMWARE_BASE,
    MapCache,
    RETURN_ADDRESS_REG,
    ROUTINE_ADDRESSES,
    Routine,
)
from .machine import LM_POINTER_DELAY, Machine, simulate, simulate_threads
from .memory import CTM_BASE, EMEM_MAP_BASE, HEADROOM, LM_SIZE
from .result import FaultKind, MapState, PacketMeta, SimFault, SimResult, TraceEntry, Usage
from .semantics import HANDLERS, semantics

__all__ = [
    "CYCLES", "DEFAULT_BUDGET", "DEFAULT_MAP_CACHE_SIZE", "Resource",
    "ARG_DELTA", "ARG_FLAGS", "ARG_KEY", "ARG_MAP_ID", "ARG_VALUE", "FIRMWARE_BASE", "MapCache", "RETURN_ADDRESS_REG",
    "ROUTINE_ADDRESSES", "Routine",
    "LM_POINTER_DELAY", "Machine", "simulate", "simulate_threads",
    "CTM_BASE", "EMEM_MAP_BASE", "HEADROOM", "LM_SIZE",
    "FaultKind", "MapState", "PacketMeta", "SimFault", "SimResult", "TraceEntry", "Usage",
    "HANDLERS", "semantics",
]

"""Compare with the kernel without trusting what nondeterministic helpers wrote.

``bpf_ktime_get_ns`` and ``bpf_get_prandom_u32`` give the kernel and the interpreter different
numbers, so a program that stores them (or branches on them) cannot agree byte for byte.
Instead of skipping such programs, :class:`MaskingInterpreter` runs the interpreter several
times in lock-step with different seeds and clocks (each run with its own maps, as a device
would keep them): whatever differs between those runs depends on the helpers and is masked —
r0, packet bytes, TC metadata fields (``__sk_buff`` mark, priority, ...), map value bytes, or
whole map entries whose presence differs; a map whose set
of keys the helpers decided (on any packet so far) is left out of the comparison, since its
entries carry a history the kernel did not share.  Everything else must match the kernel exactly.

    eng = MaskingInterpreter(program)
    with KernelProgram(program) as kp:
        for frame in frames:
            got, mask = eng.run(PacketIn(frame), tailroom=None)
            problems += masked_differences(kp.run(PacketIn(frame)), got, mask)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nfpjit.ebpf.interp import run
from nfpjit.ebpf.maps import MapStore
from nfpjit.ebpf.opcodes import Helper
from nfpjit.ebpf.result import PacketIn, RunResult

NONDETERMINISTIC_HELPERS = frozenset({Helper.ktime_get_ns, Helper.ktime_get_boot_ns, Helper.ktime_get_coarse_ns,
                                      Helper.ktime_get_tai_ns, Helper.get_prandom_u32, Helper.jiffies64})

def _configs(n: int) -> tuple:
    import random

    rng = random.Random(0x5EED)
    out = [(0, 0, 0)]
    for i in range(1, n):
        out.append((i, rng.getrandbits(64), rng.getrandbits(rng.choice((8, 20, 36)))))
    # a kernel's clock moves between two test runs by anything from microseconds (a quiet machine)
    # to many milliseconds (a loaded one): runs whose clock hardly moves between packets, and runs
    # where it jumps, so that a rate limiter's verdicts are masked at both extremes
    for i, gap in enumerate((0, 20_000, 200_000, 50_000_000)):
        out.append((n + i, rng.getrandbits(64), 1, gap))
    return tuple(out)


# (seed, clock_ns, clock_step_ns[, gap_ns between packets, default 1 ms + 64 steps]) of each run:
# clocks far apart and stepping differently.  A value
# the helpers decide moves between runs; a one-bit decision stays the same in all 24 random runs with
# probability 2^-23, which is how rarely a helper-decided result escapes the mask.
RUN_CONFIGS = _configs(24)


def uses_nondeterministic_helpers(program) -> bool:
    return any(i.is_helper_call and i.imm in NONDETERMINISTIC_HELPERS for i in program.insns)


@dataclass
class Mask:
    r0: bool = False
    packet: set[int] = field(default_factory=set)      # byte positions; -1 = the length differs
    maps: dict[str, dict[bytes, set[int] | None]] = field(default_factory=dict)   # None: the whole entry
    unstable: set[str] = field(default_factory=set)    # maps whose set of keys the helpers decided
    skb: set[str] = field(default_factory=set)         # __sk_buff fields (TC metadata) the helpers decided

    def __bool__(self) -> bool:
        return self.r0 or bool(self.packet) or bool(self.maps) or bool(self.skb)


class MaskingInterpreter:
    """The interpreter run len(configs) times per packet; :meth:`run` gives the first run's result and the mask."""

    def __init__(self, program, configs=RUN_CONFIGS, *, maps_in: dict | None = None):
        from nfpjit.ebpf.mapfile import apply_entries

        self.program = program
        self.configs = configs
        self.stores = [MapStore.from_program(program) for _ in configs]
        for s in self.stores:
            if maps_in:
                apply_entries(maps_in, s)
        self.clocks = [c[1] for c in configs]
        self.calls = 0
        self.unstable: set[str] = set()   # maps whose keys the helpers decided, on any packet so far

    def run(self, pin: PacketIn, **kwargs) -> tuple[RunResult, Mask]:
        results = []
        for n, config in enumerate(self.configs):
            seed, _clock, step = config[:3]
            gap = config[3] if len(config) > 3 else step * 64 + 1_000_000
            # a fresh seed per packet and a clock that keeps running across packets
            res = run(self.program, pin, maps=self.stores[n], seed=seed * 1_000_003 + self.calls,
                      clock_ns=self.clocks[n], clock_step_ns=step, **kwargs)
            self.clocks[n] = (self.clocks[n] + gap) & ((1 << 64) - 1)
            results.append(res)
        self.calls += 1
        first = results[0]
        mask = Mask()
        for other in results[1:]:
            if (other.r0 ^ first.r0) & 0xFFFF_FFFF or (other.fault is None) != (first.fault is None):
                mask.r0 = True
            if len(other.packet) != len(first.packet):
                mask.packet.add(-1)
            mask.packet |= {i for i, (a, b) in enumerate(zip(first.packet, other.packet)) if a != b}
            if first.skb is not None and other.skb is not None:
                mask.skb |= {k for k in set(first.skb) | set(other.skb) if first.skb.get(k) != other.skb.get(k)}
            for name in set(first.maps) | set(other.maps):
                a, b = first.maps.get(name, {}), other.maps.get(name, {})
                for key in set(a) | set(b):
                    if key not in a or key not in b or len(a[key]) != len(b[key]):
                        mask.maps.setdefault(name, {})[key] = None
                        mask.unstable.add(name)
                        continue
                    diff = {i for i, (x, y) in enumerate(zip(a[key], b[key])) if x != y}
                    if diff:
                        slot = mask.maps.setdefault(name, {})
                        if key not in slot or slot[key] is not None:
                            slot[key] = (slot.get(key) or set()) | diff
        self.unstable |= mask.unstable
        mask.unstable = set(self.unstable)
        return first, mask


def _mask_bytes(data: bytes, positions: set[int]) -> bytes:
    return bytes(0 if i in positions else b for i, b in enumerate(data))


def apply_mask(result: RunResult, mask: Mask) -> RunResult:
    """A copy of ``result`` with the masked parts zeroed (r0), blanked (bytes) or removed (entries)."""
    from dataclasses import replace

    packet = result.packet
    if -1 in mask.packet:
        packet = b""
    elif mask.packet:
        packet = _mask_bytes(packet, mask.packet)
    maps = {}
    for name, entries in result.maps.items():
        m = mask.maps.get(name, {})
        out = {}
        for key, value in entries.items():
            if key in m and m[key] is None:
                continue
            out[key] = _mask_bytes(value, m[key]) if key in m else value
        maps[name] = out
    skb = result.skb
    if skb is not None and mask.skb:
        skb = {k: 0 if k in mask.skb else v for k, v in skb.items()}
    return replace(result, r0=0 if mask.r0 else result.r0, packet=packet, maps=maps, skb=skb)


def masked_differences(want: RunResult, got: RunResult, mask: Mask, **kwargs) -> list[str]:
    """``compare_results`` of kernel and interpreter after masking what the helpers decided."""
    from nfpjit.testing import compare_results

    if mask.r0 and (want.fault is None) != (got.fault is None):
        return []   # the helpers decided whether the run faulted
    a, b = apply_mask(want, mask), apply_mask(got, mask)
    for name in mask.unstable:
        # which keys exist was decided by the helpers (now or on an earlier packet): every entry
        # then carries a history the kernel did not share, so the map is not compared at all
        a.maps.pop(name, None)
        b.maps.pop(name, None)
    return compare_results(a, b, **kwargs)


__all__ = ["MaskingInterpreter", "Mask", "apply_mask", "masked_differences", "uses_nondeterministic_helpers",
           "NONDETERMINISTIC_HELPERS", "RUN_CONFIGS"]

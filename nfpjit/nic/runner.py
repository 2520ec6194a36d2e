"""How the NIC daemon runs the attached program: on the compiled simulator when it can, else the interpreting one.

:func:`make_runner` returns a runner for one attachment; ``runner.run(frames)`` runs a batch of
frames in order and returns one :class:`Verdict` per frame.  Both runners read and write the NIC's
map tables (:class:`~nfpjit.nic.tables.MapTables`), which stay the truth the control messages see:

- :class:`NativeRunner` keeps one compiled-engine session (:func:`nfpjit.isa.sim.compiled.session`)
  per attachment, its native map tables loaded from the NIC's tables at attach and its NIC-side
  map cache warm from frame to frame (as on the NIC).  After a batch whose runs changed a map it
  writes what changed back into the NIC's tables (``MapTables.store(..., base=...)``: a diff
  against what the tables held); a control-message update or delete that the NIC's tables
  accepted is applied to the session too (:meth:`control_write`, the firmware's semantics: the
  key leaves the map cache).  A failed update changed neither side; if the two sides ever
  disagree on an update's outcome, the session's maps are reloaded from the tables.
- :class:`InterpRunner` runs each frame in the interpreting simulator with the tables' contents
  as ``maps_in`` and stores the maps it changed back (the fallback when llvmlite's JIT does not
  work here, or the image is one the compiled engine does not translate; ``reason`` says why).

Callers hold ``MapTables.lock`` around ``run`` and ``control_write`` (the daemon does), so frames
and control messages never interleave inside a batch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One frame's run: the program's action (XDP), the frame after it, its cycles, the fault (None: none), the
    ifindex bpf_redirect named (None: no redirect)."""

    action: int
    frame: bytes
    cycles: int
    fault: str | None = None
    redirect: int | None = None


class InterpRunner:
    """Each frame in the interpreting simulator, maps in and out through the NIC's tables."""

    engine = "interp"

    def __init__(self, image, maps: tuple[tuple[str, int], ...], tables, *, ifindex: int = 1, reason: str | None = None):
        from nfpjit.isa.sim import DEFAULT_MAP_CACHE_SIZE
        from nfpjit.isa.sim.firmware import MapCache

        self.image, self.maps, self.tables, self.ifindex = image, maps, tables, ifindex
        self.reason = reason
        self.cache = MapCache(DEFAULT_MAP_CACHE_SIZE)     # warm from frame to frame, as the native runner's

    def run(self, frames) -> list[Verdict]:
        from nfpjit.driver import simulate_image

        out = []
        for frame in frames:
            maps_in = {name: self.tables.contents(tid) for name, tid in self.maps}
            sim = simulate_image(self.image, frame, maps_in=maps_in, ingress_ifindex=self.ifindex,
                                 map_cache=self.cache)
            if sim.fault is None:
                for name, tid in self.maps:
                    after = sim.maps.get(name)
                    if after is not None and after != maps_in[name]:
                        self.tables.store(tid, after, base=maps_in[name])
                out.append(Verdict(int(sim.action), bytes(sim.packet), sim.cycles, None, sim.redirect))
            else:
                out.append(Verdict(0, frame, sim.cycles, str(sim.fault)))
        return out

    def control_write(self, request) -> None:
        """Every run reads the tables afresh; the written key leaves the map cache (as the firmware's own writes)."""
        self.cache.entries.pop((request.tid, bytes(request.key)), None)


class NativeRunner:
    """One compiled-engine session for the attachment, its maps mirrored into the NIC's tables."""

    engine = "compiled"
    reason = None

    def __init__(self, image, maps: tuple[tuple[str, int], ...], tables, *, ifindex: int = 1):
        from nfpjit.isa.sim import DEFAULT_MAP_CACHE_SIZE, compiled
        from nfpjit.isa.sim.firmware import MapCache

        self.image, self.maps, self.tables = image, maps, tables
        self.names = {tid: name for name, tid in maps}
        with tables.lock:
            self.last = {name: tables.contents(tid) for name, tid in maps}    # what the tables hold, per map
            self.session = compiled.session(image, maps_in=self.last, map_cache=MapCache(DEFAULT_MAP_CACHE_SIZE))
        self.session.compact = False           # a long-running NIC keeps its slot allocation
        self.session.set_packet_context(ingress_ifindex=ifindex)
        self.resyncs = 0

    def run(self, frames) -> list[Verdict]:
        from nfpjit.isa.sim.compiled import engine, runtime as rt

        s = self.session
        data, offs, lens = engine.pack(frames)
        n = len(frames)
        out: list[Verdict] = []
        dirty = 0
        k = 0
        while k < n:
            sub = engine.pack(frames[k:]) if k else (data, offs, lens)
            done, recs, obuf, ooffs = s.run_columns(*sub)
            if not done:
                raise RuntimeError("the compiled simulator ran no frame of a batch")
            size = rt.R_SIZE
            for j in range(done):
                b = j * size
                dirty |= recs[b + rt.R_DIRTY]
                o = ooffs[j]
                if recs[b + rt.R_STATUS] == rt.STATUS_FAULT:
                    fault = s.result_of(recs, j, obuf, ooffs).fault
                    out.append(Verdict(0, frames[k + j], recs[b + rt.R_CYCLES], str(fault)))
                    continue
                frame = obuf[o:o + recs[b + rt.R_PKT_LEN]] if o >= 0 else b""
                target = recs[b + rt.R_REDIRECT]
                out.append(Verdict(recs[b + rt.R_ACTION] & 0xFFFFFFFF, frame, recs[b + rt.R_CYCLES], None,
                                   target & 0xFFFFFFFF if target >= 0 else None))
            k += done
        if dirty:
            self._store_back()
        return out

    def _store_back(self) -> None:
        """Write what the batch changed into the NIC's tables."""
        now = self.session.maps()
        for name, tid in self.maps:
            after, before = now[name], self.last[name]
            if after != before:
                self.tables.store(tid, after, base=before)
        self.last = now

    def control_write(self, request) -> None:
        """A MAP_UPDATE/MAP_DELETE the NIC's tables accepted: apply it to the session's copy of the table."""
        from nfpjit.nic import cmsg

        name = self.names.get(request.tid)
        if name is None:
            return
        key = bytes(request.key)
        if isinstance(request, cmsg.MapUpdate):
            value = bytes(request.value)
            rc = self.session.map_update(name, key, value, request.flags)
            if rc == 0:
                self.last[name][key] = value
        elif isinstance(request, cmsg.MapDelete):
            rc = self.session.map_delete(name, key)
            if rc == 0:
                self.last[name].pop(key, None)
        else:
            return
        if rc != 0:                 # the two sides disagree: the tables are the truth
            self.resync()

    def resync(self) -> None:
        with self.tables.lock:
            self.last = {name: self.tables.contents(tid) for name, tid in self.maps}
            self.session.reset_maps(self.last)
        self.resyncs += 1


def make_runner(image, maps: tuple[tuple[str, int], ...], tables, *, ifindex: int = 1, engine: str = "auto"):
    """The runner for an attached, relocated image: ``engine`` "auto" (compiled where it works), "compiled" or
    "interp"; a compiled engine that cannot run the image gives the interpreting runner with the reason."""
    if engine != "interp":
        from nfpjit.isa.sim import compiled
        from nfpjit.isa.sim.compiled.translate import Untranslatable
        from nfpjit.errors import UnsupportedError

        if not compiled.available():
            return InterpRunner(image, maps, tables, ifindex=ifindex, reason="llvmlite's JIT does not work here")
        try:
            return NativeRunner(image, maps, tables, ifindex=ifindex)
        except (Untranslatable, UnsupportedError) as exc:
            return InterpRunner(image, maps, tables, ifindex=ifindex, reason=f"not translated: {exc}")
    return InterpRunner(image, maps, tables, ifindex=ifindex, reason="the interpreting simulator was asked for")

"""The compiled engine's API without llvmlite: every run is the interpreting simulator's, with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from nfpjit.errors import UnsupportedError

from ..machine import simulate as _interp
from ..result import SimResult

REASON = "llvmlite is not installed: the interpreting simulator runs everything"


class Untranslatable(UnsupportedError):
    pass


CompiledImage = Session = None


@dataclass(frozen=True)
class Run:
    result: SimResult
    engine: str
    reason: str | None = None


def available() -> bool:
    return False


def why_not(image_or_program, **_) -> str:
    return REASON


def image_key(image) -> str:
    raise Untranslatable(REASON)


def compile_image(image, **_):
    raise Untranslatable(REASON)


def session(image_or_program, **_):
    raise Untranslatable(REASON)


def run(image_or_program, packet, **kw) -> Run:
    return Run(_interp(image_or_program, packet, **kw), "interp", REASON)


def simulate(image_or_program, packet, **kw) -> SimResult:
    return _interp(image_or_program, packet, **kw)


def run_batch(image_or_program, packets, maps_in=None, **kw) -> list[SimResult]:
    out, state = [], maps_in
    for p in packets:
        r = _interp(image_or_program, p, maps_in=state, **kw)
        out.append(r)
        state = r.maps
    return out

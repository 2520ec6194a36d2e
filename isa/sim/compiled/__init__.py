"""The compiled NFP-32 simulator: images translated to native code with llvmlite (issue 12).

``simulate(image, packet, ...)`` has the arguments and results of :func:`nfpjit.isa.sim.simulate`
(cycles, faults and all), run natively; ``run_batch(image, packets, maps_in)`` runs a packet
sequence with the maps persisting and the loop in native code; ``session(image, ...)`` keeps the
native state for streaming callers; ``available()`` says whether llvmlite's JIT works here;
``why_not(image)`` says why an image would fall back to the interpreter.  See docs/simulator.md,
"Compiled engine".
"""

try:
    from .engine import (CompiledImage, Run, Session, available, compile_image, image_key, run, run_batch, session,
                         simulate, why_not)
    from .translate import Untranslatable
except ImportError as _exc:          # no llvmlite: everything runs in the interpreting simulator
    from ._fallback import (CompiledImage, Run, Session, Untranslatable, available, compile_image, image_key,  # noqa
                            run, run_batch, session, simulate, why_not)
    _IMPORT_ERROR = _exc

__all__ = ["CompiledImage", "Run", "Session", "Untranslatable", "available", "compile_image", "image_key", "run",
           "run_batch", "session", "simulate", "why_not"]

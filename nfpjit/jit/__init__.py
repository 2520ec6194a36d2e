"""The eBPF → NFP-32 JIT: the only package (with the driver) that imports both the eBPF side and the ISA.

* :func:`lower` (``nfpjit.jit.lower``): Program + Analysis → :class:`MProgram`.
* :class:`MProgram` / :class:`MFunction` / :class:`MInstr` (``nfpjit.jit.mir``): the machine program;
  ``MProgram.assemble()`` → :class:`Assembled` (words, line_pcs, relocations, symbols).
* :func:`supported_opcodes`: the eBPF opcode bytes the JIT lowers.
* ``regs`` (register mapping), ``emit`` (the Emitter), ``lower_alu``/``lower_jmp`` (ALU, jumps,
  exit), ``lower_mem``/``lower_call`` (memory, helpers, BPF-to-BPF calls).
"""

from .lower import LowerCtx, lower, supported_opcodes
from .mir import Assembled, MFunction, MInstr, MirError, MProgram, MReloc

__all__ = ["Assembled", "LowerCtx", "MFunction", "MInstr", "MProgram", "MReloc", "MirError", "lower",
           "supported_opcodes"]

"""The one list of built-in passes: name -> "module:Class", imported only when a pipeline names it.

Empty so far: -O1/-O2 currently get their gains from analysis facts inside the lowering
(docs/jit.md).  A new pass is one line here, e.g.
``"pkt-cache": "nfpjit.passes.pkt_cache:PacketCache"``, plus its module.
"""

from nfpjit.passes.manager import register

BUILTIN: dict[str, str] = {}

for _name, _target in BUILTIN.items():
    register(_name, _target)

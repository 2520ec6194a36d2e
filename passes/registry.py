"""The one list of built-in passes: name -> "module:Class", imported only when used."""

from nfpjit.passes.manager import register

# Passes register here as they are written, e.g.
# register("zext-elim", "nfpjit.passes.zext:ZextElim")
_ = register

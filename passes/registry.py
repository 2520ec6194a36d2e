"""The one list of built-in passes: name -> "module:Class", imported only when a pipeline names it.

A new pass is one line here plus its module (and, once it is differentially tested, its name in
the -O2 pipeline of ``passes/pipelines.py``).  Passes from other packages register through the
``nfpjit.passes`` entry-point group (see docs/passes.md).
"""

from nfpjit.passes.manager import register

BUILTIN: dict[str, str] = {
    # inside the lowering (passes/lowering.py)
    "zext-elim": "nfpjit.passes.lowering:ZextElim",
    "branch-fold": "nfpjit.passes.lowering:BranchFold",
    "save-live": "nfpjit.passes.lowering:SaveLive",
    "lm-reuse": "nfpjit.passes.lowering:LmReuse",
    "shift-range": "nfpjit.passes.lowering:ShiftRange",
    "exit-range": "nfpjit.passes.lowering:ExitRange",
    "subreg": "nfpjit.passes.subreg:Subreg",
    "mul-const": "nfpjit.passes.alu_lowering:MulConst",
    "map-cache": "nfpjit.passes.map_cache:MapCache",
    "pkt-cache": "nfpjit.passes.pkt_cache:PacketCache",
    "memcpy-gather": "nfpjit.passes.memcpy_gather:MemcpyGather",
    # machine level (passes/machine.py is their dataflow)
    "dce": "nfpjit.passes.dce:Dce",
    "copy-prop": "nfpjit.passes.copy_prop:CopyProp",
    "const-fold": "nfpjit.passes.const_fold:ConstFold",
    "imm-materialise": "nfpjit.passes.imm:ImmMaterialise",
    "neg-add-sub": "nfpjit.passes.peephole:NegAddSub",
    "ld-mask": "nfpjit.passes.peephole:LdMask",
    "ld-shift": "nfpjit.passes.peephole:LdShift",
    "reg-init": "nfpjit.passes.peephole:RegInit",
    "atomic-imm": "nfpjit.passes.atomic_imm:AtomicImm",
    "defer-fill": "nfpjit.passes.defer_fill:DeferFill",
}

for _name, _target in BUILTIN.items():
    register(_name, _target)

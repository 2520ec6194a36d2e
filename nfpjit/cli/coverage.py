"""``nfpjit coverage``: which eBPF opcodes the JIT lowers to NFP-32.

Every eBPF opcode byte a valid instruction can have (built from the enums in
``nfpjit.ebpf.opcodes``, the same set the reference interpreter dispatches on)
is listed with its class and a short name, and whether
``nfpjit.jit.lower.supported_opcodes()`` contains it.  ``--missing`` lists only
the unsupported ones; ``--json`` prints
``{"supported": n, "total": n, "opcodes": [{"code", "class", "name", "supported"}]}``.
A program using an unsupported opcode is rejected by ``nfpjit compile`` with
the ``nfpjit check`` diagnostic for it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from nfpjit.ebpf.opcodes import AluOp, InsnClass, JmpOp, Mode, Size, Source

_SIZE = {Size.B: "b", Size.H: "h", Size.W: "w", Size.DW: "dw"}


@dataclass(frozen=True)
class OpcodeInfo:
    code: int
    cls: InsnClass
    name: str
    supported: bool

    def to_json(self) -> dict:
        return {"code": self.code, "class": self.cls.name.lower(), "name": self.name, "supported": self.supported}


def all_opcodes() -> dict[int, tuple[InsnClass, str]]:
    """Every valid eBPF opcode byte -> (class, short name)."""
    out: dict[int, tuple[InsnClass, str]] = {}
    for cls in (InsnClass.ALU, InsnClass.ALU64):
        suffix = "32" if cls == InsnClass.ALU else ""
        for op in AluOp:
            for src in Source:
                if op == AluOp.NEG and src == Source.X:
                    continue
                if op == AluOp.END:
                    if cls == InsnClass.ALU64 and src == Source.X:
                        continue
                    name = "bswap" if cls == InsnClass.ALU64 else ("be" if src == Source.X else "le")
                else:
                    name = op.name.lower() + suffix + ("" if op == AluOp.NEG else "_reg" if src == Source.X else "_imm")
                out[cls | op | src] = (cls, name)
    for cls in (InsnClass.JMP, InsnClass.JMP32):
        suffix = "32" if cls == InsnClass.JMP32 else ""
        for op in JmpOp:
            for src in Source:
                if op in (JmpOp.CALL, JmpOp.EXIT) and cls == InsnClass.JMP32:
                    continue
                if op == JmpOp.EXIT and src == Source.X:
                    continue
                if op == JmpOp.JA and src == Source.X:
                    continue
                if op == JmpOp.CALL:
                    name = "callx" if src == Source.X else "call"
                elif op == JmpOp.EXIT:
                    name = "exit"
                elif op == JmpOp.JA:
                    name = "gotol" if cls == InsnClass.JMP32 else "ja"
                else:
                    name = op.name.lower() + suffix + ("_reg" if src == Source.X else "_imm")
                out[cls | op | src] = (cls, name)
    for size in Size:
        s = _SIZE[size]
        out[InsnClass.LDX | Mode.MEM | size] = (InsnClass.LDX, f"ldx{s}")
        out[InsnClass.ST | Mode.MEM | size] = (InsnClass.ST, f"st{s}")
        out[InsnClass.STX | Mode.MEM | size] = (InsnClass.STX, f"stx{s}")
        if size != Size.DW:
            out[InsnClass.LDX | Mode.MEMSX | size] = (InsnClass.LDX, f"ldxs{s}")
            out[InsnClass.LD | Mode.ABS | size] = (InsnClass.LD, f"ldabs{s}")
            out[InsnClass.LD | Mode.IND | size] = (InsnClass.LD, f"ldind{s}")
    for size in (Size.W, Size.DW):
        out[InsnClass.STX | Mode.ATOMIC | size] = (InsnClass.STX, f"atomic{_SIZE[size]}")
    out[InsnClass.LD | Mode.IMM | Size.DW] = (InsnClass.LD, "lddw")
    return dict(sorted(out.items()))


def coverage() -> list[OpcodeInfo]:
    """Every valid opcode and whether the lowering handles it."""
    from nfpjit.jit.lower import supported_opcodes

    supported = supported_opcodes()
    return [OpcodeInfo(code, cls, name, code in supported) for code, (cls, name) in all_opcodes().items()]


def register(subparsers) -> None:
    p = subparsers.add_parser("coverage", help="which eBPF opcodes the JIT can lower to NFP-32",
                              description="List every eBPF opcode and whether the JIT lowers it.")
    p.add_argument("--missing", action="store_true", help="list only the opcodes the JIT does not lower")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = coverage()
    shown = [r for r in rows if not r.supported] if args.missing else rows
    done = sum(r.supported for r in rows)
    if args.json:
        doc = {"supported": done, "total": len(rows), "opcodes": [r.to_json() for r in shown]}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
        return 0
    lines = []
    for cls in InsnClass:
        group = [r for r in shown if r.cls == cls]
        if not group:
            continue
        have = sum(r.supported for r in rows if r.cls == cls)
        total = sum(1 for r in rows if r.cls == cls)
        lines.append(f"{cls.name.lower()} ({have}/{total}):")
        for r in group:
            lines.append(f"  0x{r.code:02x}  {r.name:<12} {'yes' if r.supported else 'NO'}")
    lines.append(f"{done}/{len(rows)} opcodes lowered ({100 * done / len(rows):.0f}%)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0

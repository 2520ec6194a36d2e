"""The ELF front end against llvm-objdump, the C sources and hand-made broken objects.

Oracles: llvm-objdump's raw bytes and relocation records for every program
section; the corpus .c files for source lines; llvmlite for the IR path.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import nfpjit
from nfpjit.errors import LoadError, UsageError
from nfpjit.ebpf.elf import read_object
from nfpjit.ebpf.loader import list_programs, load
from nfpjit.ebpf.opcodes import CallKind, MapType, ProgType, PseudoSrc
from tests.conftest import CORPUS, need_tool

OBJECTS = sorted(CORPUS.glob("*.o"))
ENTRIES = [(p, s) for p in OBJECTS for s, _ in list_programs(p)]


def _id(val):
    return val.name if isinstance(val, Path) else str(val)


# -- llvm-objdump oracle -------------------------------------------------------

_SECTION = re.compile(r"^Disassembly of section (.+):$")
_LABEL = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSN = re.compile(r"^\s*(\d+):\t((?:[0-9a-f]{2} ){7,15}[0-9a-f]{2})\s")
_RELOC = re.compile(r"^\s+([0-9a-f]+):\s+(R_BPF_\w+)\s+(\S+)")


def objdump(path: Path) -> dict:
    """``{section: {"slots": {slot: bytes}, "labels": {name: slot}, "relocs": {slot: (type, symbol)}}}``."""
    tool = need_tool("llvm-objdump")
    out = subprocess.run([tool, "-d", "-r", str(path)], capture_output=True, text=True, check=True).stdout
    sections: dict = {}
    cur = None
    for line in out.splitlines():
        if m := _SECTION.match(line):
            cur = sections.setdefault(m.group(1), {"slots": {}, "labels": {}, "relocs": {}})
        elif cur is None:
            continue
        elif m := _LABEL.match(line):
            cur["labels"][m.group(2)] = int(m.group(1), 16) // 8
        elif m := _INSN.match(line):
            raw = bytes.fromhex(m.group(2).replace(" ", ""))
            cur["slots"][int(m.group(1))] = raw
        elif m := _RELOC.match(line):
            cur["relocs"][int(m.group(1), 16) // 8] = (m.group(2), m.group(3))
    return sections


def _function_sections(dump: dict) -> dict[str, tuple[str, int]]:
    return {name: (sec, slot) for sec, d in dump.items() for name, slot in d["labels"].items()}


@pytest.mark.parametrize("path,section", ENTRIES, ids=lambda v: _id(v))
def test_instructions_match_llvm_objdump(path, section):
    prog = load(path, section=section)
    dump = objdump(path)
    where = _function_sections(dump)
    nfunc = len(prog.functions)
    assert prog.functions[0].name == list_programs(path)[[s for s, _ in list_programs(path)].index(section)][1]
    compared = 0
    for k, fn in enumerate(prog.functions):
        end = prog.functions[k + 1].start_pc if k + 1 < nfunc else prog.nslots
        sec, base = where[fn.name]
        d = dump[sec]
        for pc in range(fn.start_pc, end):
            if pc not in prog.index_at_pc:
                continue  # second half of an ld_imm64
            insn = prog.at(pc)
            ours = insn.encode()
            theirs = d["slots"][base + pc - fn.start_pc]
            reloc = d["relocs"].get(base + pc - fn.start_pc)
            assert len(ours) == len(theirs), (fn.name, pc)
            if reloc is None and not insn.is_local_call:
                assert ours == theirs, f"{fn.name} pc {pc}: {ours.hex()} != {theirs.hex()}"
            else:
                # relocated: same opcode, dst and off; the immediates (and a pseudo src) are ours to set
                assert ours[0] == theirs[0] and ours[1] & 0x0F == theirs[1] & 0x0F and ours[2:4] == theirs[2:4]
                if insn.is_ld_imm64:
                    assert reloc is not None and reloc[0] == "R_BPF_64_64"
                    assert insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE, PseudoSrc.FUNC)
                    assert ours[8:12] == theirs[8:12] == bytes(4)
                    if insn.src == PseudoSrc.MAP_FD:
                        assert prog.maps[insn.imm].name == reloc[1]
                    if insn.src == PseudoSrc.MAP_VALUE:
                        m = prog.maps[insn.imm]
                        assert m.origin == "global" and 0 <= insn.imm2 <= m.value_size
                elif insn.is_local_call:
                    target = insn.jump_target(pc)
                    callee = prog.function_at(target)
                    if reloc is not None and reloc[1] in dump:  # static callee: section symbol + imm
                        assert reloc[0] == "R_BPF_64_32"
                        slot = struct.unpack("<i", theirs[4:8])[0] + 1
                        labels = {v: k for k, v in dump[reloc[1]]["labels"].items() if not k.startswith("LBB")}
                        assert callee.name == labels[slot] and callee.start_pc == target
                    elif reloc is not None:  # call to a named function in another section
                        assert reloc[0] == "R_BPF_64_32"
                        assert callee.name == reloc[1] and callee.start_pc == target
                    else:  # call inside one section: same distance as in the object
                        assert target - pc == struct.unpack("<i", theirs[4:8])[0] + 1
                else:
                    pytest.fail(f"unexpected relocation {reloc} at {fn.name} pc {pc}")
            compared += 1
    assert compared == len(prog.insns)
    # every relocation objdump shows in the entry function was applied
    sec, base = where[prog.functions[0].name]
    first_end = prog.functions[1].start_pc if nfunc > 1 else prog.nslots
    for slot, (rtype, _sym) in dump[sec]["relocs"].items():
        if base <= slot < base + first_end:
            insn = prog.at(slot - base)
            assert insn.is_ld_imm64 or insn.is_local_call, (slot, rtype)


@pytest.mark.parametrize("path", OBJECTS, ids=_id)
def test_every_corpus_object_loads(path):
    entries = list_programs(path)
    assert entries
    for section, name in entries:
        prog = nfpjit.load(path, section=section)
        assert prog.name == name and prog.section == section
        assert prog.license == "GPL"
        assert prog.insns[-1].is_exit or any(i.is_exit for i in prog.insns)
        assert prog.functions[0].start_pc == 0
        assert prog.prog_type == (ProgType.XDP if section.startswith("xdp") else ProgType.SCHED_CLS)
        # every map a program references is listed, and only those
        used = {i.imm for i in prog.insns if i.is_ld_imm64 and i.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE)}
        assert used == set(range(len(prog.maps)))


def test_bpf2bpf_callees_linked_once_after_entry():
    prog = load(CORPUS / "bpf2bpf_call.o")
    assert [f.name for f in prog.functions] == ["xdp_call", "classify", "twice"]
    calls = [(pc, i) for pc, i in prog.slots() if i.is_call and i.src == CallKind.LOCAL]
    assert [prog.function_at(i.jump_target(pc)).name for pc, i in calls] == ["classify", "twice"]
    for pc, i in calls:
        assert i.jump_target(pc) == prog.function_at(i.jump_target(pc)).start_pc


def test_two_programs_need_a_section_and_share_callee():
    path = CORPUS / "two_programs.o"
    with pytest.raises(LoadError) as exc:
        load(path)
    assert "xdp/ingress" in str(exc.value) and "xdp.frags" in str(exc.value)
    with pytest.raises(LoadError, match="no program section 'nope'"):
        load(path, section="nope")
    a, b = load(path, section="xdp/ingress"), load(path, section="xdp.frags")
    assert [f.name for f in a.functions] == ["xdp_ingress", "note"]
    assert [f.name for f in b.functions] == ["xdp_frags", "note"]
    assert a.maps == b.maps and a.maps[0].name == "verdicts"


def test_global_data_maps_and_offsets():
    prog = load(CORPUS / "global_data.o")
    by_name = {m.name: m for m in prog.maps}
    assert set(by_name) == {".rodata", ".data", ".bss"}
    ro = by_name[".rodata"]
    assert ro.type == MapType.ARRAY and ro.max_entries == 1 and ro.key_size == 4 and ro.origin == "global"
    # .rodata holds blocked_port = 22 (u16) at 0 and verdict_on_block = XDP_DROP (u32) at 4
    assert struct.unpack_from("<H", ro.initial, 0)[0] == 22
    assert struct.unpack_from("<I", ro.initial, 4)[0] == 1
    assert struct.unpack("<Q", by_name[".data"].initial)[0] == 1000
    assert by_name[".bss"].initial == bytes(by_name[".bss"].value_size)
    refs = {(prog.maps[i.imm].name, i.imm2) for i in prog.insns
            if i.is_ld_imm64 and i.src == PseudoSrc.MAP_VALUE}
    assert refs == {(".rodata", 0), (".rodata", 4), (".data", 0), (".bss", 0)}


def test_line_info_matches_c_source():
    src = (CORPUS / "xdp_drop_tcp_ports.c").read_text().splitlines()
    prog = load(CORPUS / "xdp_drop_tcp_ports.o")
    assert prog.line_info
    for pc, loc in prog.line_info.items():
        assert pc in prog.index_at_pc
        assert loc.file == "xdp_drop_tcp_ports.c"
        assert src[loc.line - 1].strip() == loc.text
    # the map lookup's source line sits above the helper call that implements it
    line = next(n for n, t in enumerate(src, 1) if "bpf_map_lookup_elem(&drop_count" in t)
    pcs = sorted(pc for pc, loc in prog.line_info.items() if loc.line == line)
    assert pcs
    call_pc = next(pc for pc, i in prog.slots() if i.is_helper_call and i.imm == 1)
    owner = max(pc for pc in prog.line_info if pc <= call_pc)
    assert prog.line_info[owner].line == line


def test_line_info_of_callee_is_shifted():
    src = (CORPUS / "bpf2bpf_call.c").read_text().splitlines()
    prog = load(CORPUS / "bpf2bpf_call.o")
    twice = next(f for f in prog.functions if f.name == "twice")
    # clang's first record of a function is its declaration line, then the body
    assert "int twice(int x)" in prog.line_info[twice.start_pc].text
    body = [loc for pc, loc in prog.line_info.items() if pc > twice.start_pc]
    assert body and all(src[loc.line - 1].strip() == loc.text for loc in body)
    assert "return x + x;" in [loc.text for loc in body]


def test_legacy_maps_section():
    prog = load(CORPUS / "legacy_maps.o")
    assert [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.origin) for m in prog.maps] == [
        ("legacy_counts", MapType.ARRAY, 4, 8, 8, 0, "legacy"),
        ("legacy_flows", MapType.HASH, 4, 4, 1024, 1, "legacy"),
    ]


# -- error paths ----------------------------------------------------------------

def _elf_with(path: Path, patch) -> bytes:
    data = bytearray(path.read_bytes())
    patch(data)
    return bytes(data)


def _section_header(data: bytes, name: str) -> int:
    """File offset of the section header named ``name`` (independent of pyelftools)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    str_off, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    for i in range(shnum):
        hdr = shoff + i * shentsize
        (noff,) = struct.unpack_from("<I", data, hdr)
        end = data.index(b"\0", str_off + noff)
        if data[str_off + noff:end].decode() == name:
            return hdr
    raise KeyError(name)


def _load_bytes(data: bytes, tmp_path, **kw):
    p = tmp_path / "bad.o"
    p.write_bytes(data)
    return load(p, **kw)


def test_wrong_machine(tmp_path):
    data = _elf_with(CORPUS / "xdp_pass.o", lambda d: struct.pack_into("<H", d, 0x12, 62))  # EM_X86_64
    with pytest.raises(LoadError, match="not BPF"):
        _load_bytes(data, tmp_path)


def test_truncated(tmp_path):
    data = (CORPUS / "xdp_pass.o").read_bytes()
    for n in (4, 20, 64, len(data) // 2, len(data) - 1):
        with pytest.raises(LoadError) as exc:
            _load_bytes(data[:n], tmp_path)
        assert "bad.o" in str(exc.value)


def test_code_size_not_multiple_of_8(tmp_path):
    def patch(d):
        hdr = _section_header(d, "xdp")
        size, = struct.unpack_from("<Q", d, hdr + 0x20)
        struct.pack_into("<Q", d, hdr + 0x20, size - 3)
    with pytest.raises(LoadError, match="not a multiple of 8") as exc:
        _load_bytes(_elf_with(CORPUS / "xdp_pass.o", patch), tmp_path)
    assert "section xdp" in str(exc.value)


def test_relocation_with_bad_symbol_and_offset(tmp_path):
    def bad_sym(d):
        hdr = _section_header(d, ".relxdp")
        off, = struct.unpack_from("<Q", d, hdr + 0x18)
        struct.pack_into("<Q", d, off + 8, (9999 << 32) | 1)
    with pytest.raises(LoadError, match="symbol 9999"):
        _load_bytes(_elf_with(CORPUS / "array_counter.o", bad_sym), tmp_path)

    def bad_off(d):
        hdr = _section_header(d, ".relxdp")
        off, = struct.unpack_from("<Q", d, hdr + 0x18)
        struct.pack_into("<Q", d, off, 3)
    with pytest.raises(LoadError, match="not on an instruction"):
        _load_bytes(_elf_with(CORPUS / "array_counter.o", bad_off), tmp_path)


def test_line_info_out_of_range(tmp_path):
    def patch(d):
        hdr = _section_header(d, ".BTF.ext")
        off, = struct.unpack_from("<Q", d, hdr + 0x18)
        hdr_len, _fo, _fl, line_off, _ll = struct.unpack_from("<IIIII", d, off + 4)
        first = off + hdr_len + line_off + 4 + 8  # rec_size, then (sec name, count), then records
        struct.pack_into("<I", d, first, 0x10000)
    with pytest.raises(LoadError, match="line info offset 65536"):
        _load_bytes(_elf_with(CORPUS / "xdp_pass.o", patch), tmp_path)


def test_not_elf_is_raw_bytecode(tmp_path):
    p = tmp_path / "prog.bin"
    p.write_bytes(bytes.fromhex("b700000002000000" "9500000000000000"))
    prog = load(p)
    assert [i.code for i in prog.insns] == [0xB7, 0x95] and prog.insns[0].imm == 2
    p.write_bytes(b"\x95" * 7)
    with pytest.raises(LoadError, match="multiple of 8"):
        load(p)
    with pytest.raises(UsageError):
        load(p, section="xdp")
    with pytest.raises(UsageError):
        load(p, fmt="pdf")
    with pytest.raises(LoadError, match="cannot read"):
        load(tmp_path / "missing.o")


# -- LLVM IR through llvmlite ----------------------------------------------------

IR = r"""
%struct.xdp_md = type { i32, i32, i32, i32, i32, i32 }

@_license = global [4 x i8] c"GPL\00", section "license", align 1
@llvm.used = appending global [2 x ptr] [ptr @xdp_ir, ptr @_license], section "llvm.metadata"

define i32 @xdp_ir(ptr %ctx) section "xdp" {
entry:
  %p = getelementptr inbounds %struct.xdp_md, ptr %ctx, i32 0, i32 4
  %q = load i32, ptr %p, align 4
  %odd = and i32 %q, 1
  %c = icmp eq i32 %odd, 0
  %r = select i1 %c, i32 2, i32 1
  ret i32 %r
}
"""


def test_llvm_ir_compiles_and_loads(tmp_path):
    from nfpjit.ebpf.llvm import compile_ir, load_ir

    obj = compile_ir(IR, cpu="v3")
    assert obj.startswith(b"\x7fELF")
    prog = load_ir(IR)
    assert prog.name == "xdp_ir" and prog.section == "xdp" and prog.license == "GPL"
    # independent check of meaning: the load reads rx_queue_index (offset 16) and both verdicts appear
    loads = [i for i in prog.insns if i.code == 0x61]
    assert [i.off for i in loads] == [16]
    consts = {i.imm for i in prog.insns if i.code in (0xB4, 0xB7)}
    assert {1, 2} <= consts
    assert any(i.cls.name == "JMP32" for i in prog.insns) or any(i.code == 0x54 for i in prog.insns)
    if shutil.which("llvm-objdump"):
        tmp = tmp_path / "ir.o"
        tmp.write_bytes(obj)
        slots = objdump(tmp)["xdp"]["slots"]
        assert b"".join(slots[k] for k in sorted(slots)) == b"".join(i.encode() for i in prog.insns)
    with pytest.raises(LoadError, match="does not parse"):
        compile_ir("define i32 @f( {")
    with pytest.raises(UsageError):
        compile_ir(IR, cpu="v9")


def test_read_object_entries_in_file_order():
    obj = read_object((CORPUS / "two_programs.o").read_bytes(), "two_programs.o")
    assert obj.entries == (("xdp/ingress", "xdp_ingress"), ("xdp.frags", "xdp_frags"))
    assert obj.program("xdp.frags").name == "xdp_frags"


def test_huge_bss_is_rejected_not_allocated(tmp_path):
    def patch(d):
        hdr = _section_header(d, ".bss")
        struct.pack_into("<Q", d, hdr + 0x20, 1 << 40)
    with pytest.raises(LoadError, match="too large") as exc:
        _load_bytes(_elf_with(CORPUS / "global_data.o", patch), tmp_path)
    assert ".bss" in str(exc.value)


def test_classifier_action_sections_and_in_section_call():
    path = CORPUS / "tc_sections.o"
    assert list_programs(path) == [("classifier", "cls_small"), ("action", "act_mark")]  # static helper: no entry
    cls = load(path, section="classifier")
    assert cls.prog_type == ProgType.SCHED_CLS == load(path, section="action").prog_type
    assert [f.name for f in cls.functions] == ["cls_small", "is_small"]
    (call_pc, call), = [(pc, i) for pc, i in cls.slots() if i.is_local_call]
    assert cls.function_at(call.jump_target(call_pc)).name == "is_small"


def test_assembly_files_go_to_the_assembler(tmp_path):
    asm = pytest.importorskip("nfpjit.ebpf.disasm")
    prog = load(CORPUS / "ipv4_csum_update.o")
    for suffix in (".s", ".asm"):
        src = tmp_path / f"prog{suffix}"
        src.write_text(asm.disassemble(prog.insns))
        again = load(src)
        assert again.insns == prog.insns
        assert list_programs(src) == [("", "prog")]
    bad = tmp_path / "bad.s"
    bad.write_bytes(b"\xff\xfe mov r0")
    with pytest.raises(LoadError, match="not UTF-8"):
        load(bad)


CALLBACK_C = r"""
#include "bpf_defs.h"
static long (*bpf_loop)(u32 nr, void *cb, void *ctx, u64 flags) = (void *)181;
struct acc { u32 n; };
static int step(u32 i, struct acc *a) { a->n += i; return 0; }
static __noinline int other(int x) { return x * 3; }
SEC("xdp") int xdp_cb(struct xdp_md *ctx) {
	struct acc a = { 0 };
	bpf_loop(4, step, &a, 0);
	return other(a.n) & 1 ? XDP_DROP : XDP_PASS;
}
char _license[] SEC("license") = "GPL";
"""


def test_static_callees_and_callback_addresses(tmp_path):
    """Static .text functions are reached through the section symbol; a callback's address is an ld_imm64."""
    clang = need_tool("clang")
    src, obj = tmp_path / "cb.c", tmp_path / "cb.o"
    src.write_text(CALLBACK_C)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-I{CORPUS / 'include'}", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    prog = load(obj)
    names = {f.name: f.start_pc for f in prog.functions}
    assert set(names) == {"xdp_cb", "step", "other"}
    (lpc, ld), = [(pc, i) for pc, i in prog.slots() if i.is_ld_imm64]
    assert ld.src == PseudoSrc.FUNC and lpc + 1 + ld.imm == names["step"] and ld.imm2 == 0
    (cpc, call), = [(pc, i) for pc, i in prog.slots() if i.is_local_call]
    assert call.jump_target(cpc) == names["other"]
    # the callee bodies are the ones the C says: step adds, other multiplies by 3
    assert any(i.code == 0x27 and i.imm == 3 for i in prog.insns[prog.index_at_pc[names["other"]]:])


STATIC_DATA_C = r"""
#include "bpf_defs.h"
static volatile u32 a = 5;
static volatile u32 b = 7;
SEC("xdp") int xdp_st(struct xdp_md *ctx) {
	b += 1;
	return (int)(a & 3);
}
char _license[] SEC("license") = "GPL";
"""


def test_static_variables_through_section_symbol(tmp_path):
    """clang relocates static variables against the section symbol with the offset in imm; readelf has the truth."""
    clang, readelf = need_tool("clang"), need_tool("llvm-readelf")
    src, obj = tmp_path / "st.c", tmp_path / "st.o"
    src.write_text(STATIC_DATA_C)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-I{CORPUS / 'include'}", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    syms = subprocess.run([readelf, "-s", str(obj)], capture_output=True, text=True, check=True).stdout
    offsets = {m.group(2): int(m.group(1), 16) for m in re.finditer(r"([0-9a-f]{16})\s+4 OBJECT\s+LOCAL\s+\S+\s+\d+ (\w+)$",
                                                                   syms, re.MULTILINE)}
    assert set(offsets) == {"a", "b"}
    prog = load(obj)
    (data,) = prog.maps
    assert data.name == ".data" and data.value_size == 8
    assert struct.unpack_from("<I", data.initial, offsets["a"])[0] == 5
    assert struct.unpack_from("<I", data.initial, offsets["b"])[0] == 7
    refs = sorted(i.imm2 for i in prog.insns if i.is_ld_imm64 and i.src == PseudoSrc.MAP_VALUE)
    assert refs == sorted(offsets.values())


def test_two_programs_in_one_section(tmp_path):
    clang = need_tool("clang")
    src, obj = tmp_path / "same.c", tmp_path / "same.o"
    src.write_text('#include "bpf_defs.h"\n'
                   'SEC("xdp") int first(struct xdp_md *c) { return XDP_PASS; }\n'
                   'SEC("xdp") int second(struct xdp_md *c) { return XDP_DROP; }\n')
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-I{CORPUS / 'include'}", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    assert list_programs(obj) == [("xdp", "first"), ("xdp", "second")]
    with pytest.raises(LoadError) as exc:
        load(obj, section="xdp")
    assert "xdp:first" in str(exc.value) and "xdp:second" in str(exc.value)
    second = load(obj, section="xdp:second")
    assert second.name == "second" and second.insns[0].imm == 1 and second.functions[0].start_pc == 0
    assert load(obj, section="xdp:first").insns[0].imm == 2


def test_relocation_into_non_alloc_data_section(tmp_path):
    """Found by fuzzing: a .rodata that lost SHF_ALLOC is not a map, so its relocation is an error, not a KeyError."""
    def patch(d):
        hdr = _section_header(d, ".rodata")
        flags, = struct.unpack_from("<Q", d, hdr + 0x08)
        struct.pack_into("<Q", d, hdr + 0x08, flags & ~0x2)
    with pytest.raises(LoadError, match="neither a map nor global data") as exc:
        _load_bytes(_elf_with(CORPUS / "global_data.o", patch), tmp_path)
    assert "section xdp" in str(exc.value)


def test_object_without_program_sections_uses_text():
    from nfpjit.ebpf.llvm import load_ir

    ir = ("define i32 @helper(i32 %x) noinline { %y = mul i32 %x, 5\n ret i32 %y }\n"
          "define i32 @plain(ptr %ctx) { %r = call i32 @helper(i32 3)\n ret i32 %r }\n")
    with pytest.raises(LoadError, match="2 programs"):
        load_ir(ir)
    prog = load_ir(ir, section=".text:plain")
    assert prog.name == "plain" and prog.prog_type == ProgType.XDP
    assert [f.name for f in prog.functions] == ["plain", "helper"]
    (cpc, call), = [(pc, i) for pc, i in prog.slots() if i.is_local_call]
    assert call.jump_target(cpc) == prog.functions[1].start_pc

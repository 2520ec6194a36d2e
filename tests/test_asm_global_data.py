"""``nfpjit disasm`` output of images with global data re-assembles (``nfpjit asm --target nfp32``)."""

from __future__ import annotations

import pytest

import nfpjit
from nfpjit.cli import main
from nfpjit.driver import run_sim
from nfpjit.isa.asm import assemble
from nfpjit.isa.image import read_image, write_image
from nfpjit.isa.operands import IsaError
from nfpjit.testing import crafted_packets

from conftest import CORPUS


def _round_trip(capsys, tmp_path, obj, **kw):
    original = nfpjit.compile(obj, **kw).image
    path = tmp_path / "orig.nffw"
    write_image(path, original)
    assert main(["disasm", str(path)]) == 0
    text = capsys.readouterr().out
    src = tmp_path / "orig.s"
    src.write_text(text)
    out = tmp_path / "again.nffw"
    status = main(["asm", "--target", "nfp32", str(src), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 0, err
    return original, read_image(out), text


# (Images that call firmware helpers also carry ROUTINE_ADDR relocations, which the text form does
# not express yet; global_data.o calls none.)
@pytest.mark.parametrize("name, kw", [("global_data.o", {"profile": "permissive"})])
def test_disasm_asm_round_trip(capsys, tmp_path, name, kw):
    original, again, text = _round_trip(capsys, tmp_path, CORPUS / name, **kw)
    assert again.code == original.code
    assert again.maps == original.maps
    assert again.data == original.data
    assert again.relocations == original.relocations
    md, md2 = original.metadata, again.metadata
    assert (md2.prog_type, md2.entry, md2.stack_size) == (md.prog_type, md.entry, md.stack_size)
    if name == "global_data.o":
        assert ".map .bss " in text and ".data .data " in text and original.data
    # the re-assembled image behaves the same in the simulator, global data included
    for frame in crafted_packets()[:6]:
        a, b = run_sim(original, frame), run_sim(again, frame)
        assert (a.r0, a.packet, a.maps, a.cycles) == (b.r0, b.packet, b.maps, b.cycles)


def test_section_names_as_map_and_data_names():
    src = """
.map .bss array key=4 value=4 entries=1
.data .bss 1, 2, 3, 4
    immed a1, map(.bss)
    halt 2
"""
    result = assemble(src)
    assert [m.name for m in result.maps] == [".bss"]
    assert result.data[0].data == b"\x01\x02\x03\x04"
    assert result.map_refs == ((0, ".bss"),)
    for bad in (".map 1x array key=4 value=4 entries=1", ".map a-b array key=4 value=4 entries=1",
                ".data 9z 1", "    immed a1, map(.nosuch)"):
        with pytest.raises(IsaError):
            assemble(bad)

"""NIC capability profiles: the shipped ones say what the facts say, and broken files fail with file, key and hint."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfpjit.ebpf.opcodes import Helper, MapType
from nfpjit.errors import LoadError, NfpjitError, UsageError
from nfpjit.offload.profile import Features, Profile, builtin_profiles, load_profile, parse_profile


def _default_dict() -> dict:
    raw = resources.files("nfpjit.offload").joinpath("profiles", "default.toml").read_bytes()
    return tomllib.loads(raw.decode())


def test_shipped_profiles_listed():
    assert builtin_profiles() == ["default", "nfp-kernel", "permissive"]
    for name in builtin_profiles():
        assert isinstance(load_profile(name), Profile)


def test_nfp_kernel_follows_the_real_nfp_limits():
    # Numbers from the NFP offload facts: 512 B stack, HASH/ARRAY only (plus the host-side perf
    # event array that bpf_perf_event_output needs), no map flags,
    # up to 128 maps, about 2M entries, these seven helpers, atomic add only, no MOD.
    p = load_profile("nfp-kernel")
    assert p.name == "nfp-kernel"
    assert p.stack_size == 512
    assert p.map_types == {MapType.HASH, MapType.ARRAY, MapType.PERF_EVENT_ARRAY}  # the last stays in the host
    assert p.map_flags == 0
    assert p.max_maps == 128
    assert p.max_total_entries == 2 * 1024 * 1024
    assert 2560 <= p.instruction_store <= 4096
    assert p.max_entry_size == 64
    assert p.helpers == {Helper.map_lookup_elem, Helper.map_update_elem, Helper.map_delete_elem,
                         Helper.get_prandom_u32, Helper.xdp_adjust_head, Helper.xdp_adjust_tail,
                         Helper.perf_event_output}
    f = p.features
    assert f.atomic_add32 and f.atomic_add64 and not f.other_atomics
    assert not f.modulo and not f.division_by_register and not f.map_value_write
    assert not f.tail_calls and not f.kfuncs and f.queue_select


@pytest.mark.parametrize("wider, narrower", [("permissive", "nfp-kernel"), ("default", "nfp-kernel"),
                                            ("permissive", "default")])
def test_profile_is_a_superset(wider, narrower):
    # the real card's rules are the floor: our NIC (default) and the research profile take all it takes
    d, p = load_profile(narrower), load_profile(wider)
    assert d.map_types <= p.map_types and d.helpers <= p.helpers
    assert d.xdp_context_reads <= p.xdp_context_reads and d.tc_context_reads <= p.tc_context_reads
    assert p.stack_size >= d.stack_size and p.instruction_store >= d.instruction_store
    assert p.map_flags & d.map_flags == d.map_flags and p.packet_split >= d.packet_split
    for key in ("max_maps", "max_entries_per_map", "max_total_entries", "max_key_size", "max_value_size",
                "max_entry_size"):
        assert getattr(p, key) >= getattr(d, key), key
    assert d.xdp_actions <= p.xdp_actions and d.tc_actions <= p.tc_actions
    for f in fields(Features):
        if f.name == "v4_read_as_v3":
            continue  # not a capability: the real driver's way of misreading movsx/sdiv
        assert getattr(p.features, f.name) >= getattr(d.features, f.name), f.name


def test_feature_switches_the_helper():
    d = load_profile("nfp-kernel")
    assert d.helper_supported(Helper.xdp_adjust_head)
    from dataclasses import replace

    off = replace(d, features=replace(d.features, adjust_head=False))
    assert not off.helper_supported(Helper.xdp_adjust_head)
    assert off.helper_supported(Helper.map_lookup_elem)
    assert not d.helper_supported(Helper.ktime_get_ns)


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    data = (resources.files("nfpjit.offload").joinpath("profiles", "default.toml").read_text()
            .replace('name = "default"', 'name = "mine"').replace("stack_size = 512", "stack_size = 256"))
    path.write_text(data)
    p = load_profile(str(path))
    assert (p.name, p.stack_size, p.source) == ("mine", 256, str(path))


def _write(tmp_path, text: str):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


def _dumps(d: dict) -> str:
    """A minimal TOML writer for the profile's shapes (strings, ints, bools, lists, one table)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, float):
            return repr(v)
        return str(v)
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def test_bad_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "name = \n")
    with pytest.raises(LoadError) as exc:
        load_profile(path)
    assert path in str(exc.value) and "TOML" in str(exc.value)


def test_unknown_key_suggests_the_near_one(tmp_path):
    d = _default_dict()
    d["stack_sise"] = d.pop("stack_size")
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert exc.value.where.endswith("p.toml: stack_sise")
    assert "stack_size" in exc.value.hint


def test_unknown_feature_suggests(tmp_path):
    d = _default_dict()
    d["features"]["atomic_add_32"] = True
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert "features.atomic_add_32" in exc.value.where and "atomic_add32" in exc.value.hint


@pytest.mark.parametrize("key, value, expected", [
    ("stack_size", "512", "an integer"),
    ("stack_size", True, "an integer"),  # TOML booleans are not integers
    ("name", 3, "a string"),
    ("map_types", "hash", "a list"),
    ("features", 1, "a table"),
])
def test_wrong_type_names_key_and_expected_type(tmp_path, key, value, expected):
    d = _default_dict()
    d[key] = value
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert exc.value.where.endswith(f": {key}")
    assert expected in exc.value.message


def test_feature_must_be_bool(tmp_path):
    d = _default_dict()
    d["features"]["modulo"] = 1
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert "features.modulo" in exc.value.where and "true or false" in exc.value.message


def test_unknown_map_type_and_helper(tmp_path):
    d = _default_dict()
    d["map_types"] = ["hash", "arary"]
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert "arary" in exc.value.message and "'array'" in exc.value.hint
    d = _default_dict()
    d["helpers"] = ["bpf_map_lookup_elem", "bpf_ktime_get_nss"]
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert "ktime_get_ns" in exc.value.hint


def test_context_field_names_checked(tmp_path):
    d = _default_dict()
    d["xdp_context_reads"] = ["data", "rx_queue_idx"]
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert "xdp_context_reads" in exc.value.where and "rx_queue_index" in exc.value.hint
    default = load_profile("default")
    assert {"len", "data", "data_end", "mark", "hash", "cb[4]"} <= default.tc_context_reads
    assert default.tc_context_writes == {"mark", "priority", "queue_mapping", "tc_index", "tc_classid",
                                         *(f"cb[{i}]" for i in range(5))}
    d = _default_dict()
    d["tc_context_writes"] = ["mark", "hash_value"]
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert "tc_context_writes" in exc.value.where


def test_bpf_prefixes_accepted(tmp_path):
    d = _default_dict()
    d["map_types"] = ["BPF_MAP_TYPE_HASH"]
    d["helpers"] = ["bpf_ktime_get_ns"]
    p = load_profile(_write(tmp_path, _dumps(d)))
    assert p.map_types == {MapType.HASH} and p.helpers == {Helper.ktime_get_ns}


def test_missing_key_and_feature(tmp_path):
    d = _default_dict()
    del d["packet_split"]
    with pytest.raises(LoadError, match="missing") as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert exc.value.where.endswith("packet_split")
    d = _default_dict()
    del d["features"]["tail_calls"]
    with pytest.raises(LoadError, match="missing") as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert exc.value.where.endswith("features.tail_calls")


def test_negative_size_rejected(tmp_path):
    d = _default_dict()
    d["stack_size"] = -1
    with pytest.raises(LoadError, match="negative"):
        load_profile(_write(tmp_path, _dumps(d)))


def test_unknown_name_and_missing_file_are_usage_errors(tmp_path):
    with pytest.raises(UsageError) as exc:
        load_profile("defualt")
    assert "default" in exc.value.hint
    with pytest.raises(UsageError):
        load_profile(str(tmp_path / "absent.toml"))


def test_non_utf8_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(b"name = \"\xff\xfe\"\n")
    with pytest.raises(LoadError):
        load_profile(str(path))


_JUNK = st.one_of(st.integers(-3, 10**6), st.booleans(), st.text(max_size=8), st.floats(allow_nan=False),
                  st.lists(st.integers(0, 5), max_size=3), st.lists(st.text(max_size=6), max_size=3),
                  st.dictionaries(st.text(min_size=1, max_size=8), st.booleans(), max_size=3))


@settings(max_examples=150)
@given(key=st.sampled_from(sorted(_default_dict()) + ["extra", "stack"]), value=_JUNK)
def test_any_mangled_profile_loads_or_raises_load_error(key, value):
    d = _default_dict()
    d[key] = value
    try:
        p = parse_profile(d, "fuzz.toml")
    except LoadError as exc:
        assert exc.where.startswith("fuzz.toml")
        return
    except NfpjitError as exc:  # pragma: no cover - any other error class is a bug
        pytest.fail(f"unexpected {type(exc).__name__}: {exc}")
    assert isinstance(p, Profile)


# -- malformed profile files on the command line: one clear error, status 2, never a traceback ----

def _mangle(text: str, how: int, data: bytes) -> bytes:
    raw = text.encode()
    if how == 0:   # cut short anywhere
        return raw[: len(data) * 37 % (len(raw) + 1)]
    if how == 1:   # bytes spliced in anywhere
        at = len(data) * 53 % (len(raw) + 1)
        return raw[:at] + data + raw[at:]
    if how == 2:   # a line replaced by junk
        lines = raw.splitlines(keepends=True)
        i = len(data) * 11 % len(lines)
        return b"".join(lines[:i] + [data + b"\n"] + lines[i + 1:])
    return data    # nothing but junk


_PROFILE_TEXT = resources.files("nfpjit.offload").joinpath("profiles", "nfp-kernel.toml").read_text()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.integers(0, 3), data=st.binary(max_size=24) | st.sampled_from(
    [b"stack_size = -4", b"stack_size = 1e3", b'helpers = ["bpf_nope"]', b"[features]\nmodulo = 2",
     b'xdp_actions = ["abort"]', b"tc_actions = 3", b"max_maps = 99999999999999999999999", b"\xff\xfe",
     b"features = 1", b"[[features]]", b'tc_actions = ["unspec"]']))
def test_cli_malformed_profile_is_one_usage_error(tmp_path_factory, capsys, how, data):
    from nfpjit.cli import main

    path = tmp_path_factory.mktemp("prof") / "p.toml"
    path.write_bytes(_mangle(_PROFILE_TEXT, how, data))
    obj = str(resources.files("nfpjit").joinpath("..", "tests", "corpus", "xdp_pass.o"))
    status = main(["check", obj, "--profile", str(path)])
    out, err = capsys.readouterr()
    if status == 2:
        assert out == "" and err.startswith("nfpjit: error:") and "Traceback" not in err
        assert "p.toml" in err  # names the file
        assert err.count("\n") <= 2  # the message and at most a hint line
    else:  # the mangling left a valid profile (or one that changed nothing the program needs)
        assert status in (0, 1) and "Traceback" not in out + err


@pytest.mark.parametrize("key, value, words", [
    ("stack_size", 10**30, "at most"),
    ("xdp_actions", ["abort"], "'aborted'"),
    ("tc_actions", ["unspec"], "known names"),
])
def test_out_of_range_and_misspelt_values(tmp_path, key, value, words):
    d = tomllib.loads(_PROFILE_TEXT)
    d[key] = value
    with pytest.raises(LoadError) as exc:
        load_profile(_write(tmp_path, _dumps(d)))
    assert exc.value.where.endswith(f": {key}")
    assert words in f"{exc.value.message} {exc.value.hint}"

"""NIC capability profiles: what one SmartNIC (or firmware build) can run, loaded from TOML.

A :class:`Profile` is the single description the offload report checks a
program against: instruction store size, stack, the map types, flags, sizes
and helpers the firmware implements, the packet split boundary and a set of
:class:`Features` (atomics, adjust_head, queue select, ...).  Profiles ship in
``nfpjit/offload/profiles/*.toml``; ``load_profile`` also takes a path to a
user's own file.  docs/profiles.md documents every key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from nfpjit.errors import LoadError, UsageError
from nfpjit.ebpf.opcodes import Helper, MapType, TcAction, XdpAction

# the verdicts a tc_actions list may name: TC_ACT_UNSPEC and values above TC_ACT_REDIRECT always
# hand the packet on (the real driver's rule), so only OK..REDIRECT are choices
TC_CHOICES = tuple(a for a in TcAction if a != TcAction.UNSPEC)


@dataclass(frozen=True)
class Features:
    """Instruction-level capabilities that are either there or not."""

    atomic_add32: bool = True
    atomic_add64: bool = True
    other_atomics: bool = False  # and/or/xor/xchg/cmpxchg and every fetching form; also on the stack, words stay readable
    adjust_head: bool = True
    adjust_tail: bool = True
    queue_select: bool = True  # XDP store to xdp_md.rx_queue_index picks the RX queue
    bpf_to_bpf_calls: bool = True
    ld_abs: bool = True  # legacy ld_abs / ld_ind packet loads
    division_by_register: bool = False  # False: only by a constant (or a register known constant)
    modulo: bool = False
    modulo_by_register: bool = False
    signed_division: bool = False
    v4_instructions: bool = False  # movsx, ldsx, bswap, gotol, sdiv/smod
    map_value_write: bool = False  # plain stores through a map value pointer
    kfuncs: bool = False
    tail_calls: bool = False
    tc_variable_verdict: bool = False  # a TC verdict that is not one constant (the real driver wants a constant)
    unaligned_stack_args: bool = False  # helper key/value pointers into the stack not 4-byte aligned
    # movsx and sdiv share their opcodes with mov and div; a NIC that checks opcodes only (the real
    # driver) takes them and runs them as mov and unsigned div: a warning instead of an error
    v4_read_as_v3: bool = False
    variable_map_value_offset: bool = False  # map value loads at an offset the analysis only bounds


@dataclass(frozen=True)
class Profile:
    """One NIC's limits.  Sizes in bytes, counts in entries/instructions."""

    name: str
    description: str
    instruction_store: int  # NFP instructions available to the program
    stack_size: int
    map_types: frozenset[MapType]
    helpers: frozenset[Helper]
    max_maps: int
    max_entries_per_map: int
    max_total_entries: int
    max_key_size: int
    max_value_size: int
    max_entry_size: int  # firmware rule: round8(key) + round8(value) must fit
    map_flags: int  # mask of the BPF_F_* map flags the firmware accepts
    packet_split: int  # highest packet offset (exclusive) a program may read or write
    features: Features
    xdp_context_reads: frozenset[str] = frozenset({"data", "data_end"})  # struct xdp_md fields
    tc_context_reads: frozenset[str] = frozenset({"len", "data", "data_end"})  # struct __sk_buff fields
    # XDP verdicts the NIC carries out (any other return value is dropped as XDP_ABORTED), and TC
    # verdicts of TC_ACT_OK..TC_ACT_REDIRECT it accepts (the others are refused)
    xdp_actions: frozenset[XdpAction] = frozenset({XdpAction.ABORTED, XdpAction.DROP, XdpAction.PASS, XdpAction.TX})
    tc_actions: frozenset[TcAction] = frozenset({TcAction.SHOT, TcAction.STOLEN, TcAction.QUEUED})
    tc_context_writes: frozenset[str] = frozenset()  # struct __sk_buff fields a TC program may store to
    source: str = ""  # the file it was loaded from

    def helper_supported(self, helper_id: int) -> bool:
        if helper_id == Helper.xdp_adjust_head and not self.features.adjust_head:
            return False
        if helper_id == Helper.xdp_adjust_tail and not self.features.adjust_tail:
            return False
        return helper_id in {int(h) for h in self.helpers}


# key -> (expected TOML type description, python type check)
_INT_KEYS = (
    "instruction_store", "stack_size", "max_maps", "max_entries_per_map", "max_total_entries",
    "max_key_size", "max_value_size", "max_entry_size", "map_flags", "packet_split",
)
_TOP_KEYS = ("name", "description", *_INT_KEYS, "map_types", "helpers", "xdp_context_reads", "tc_context_reads",
             "xdp_actions", "tc_actions", "tc_context_writes",
             "features")
_FEATURE_KEYS = tuple(f.name for f in fields(Features))

_PROFILE_DIR = "profiles"
_INT_MAX = 0xFFFF_FFFF  # every size, count and flag mask is a 32-bit number on the NIC and in the UAPI


def _near(key: str, known) -> str | None:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _fail(path: str, key: str | None, message: str, hint: str | None = None) -> LoadError:
    where = f"{path}: {key}" if key else path
    return LoadError(message, where=where, hint=hint)


def _expect(path: str, key: str, value, kind: type, desc: str):
    # bool is an int in Python; TOML keeps them apart and so do we
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(path, key, f"expected {desc}, got {type(value).__name__} {value!r}")
    return value


def _enum_list(path: str, key: str, value, enum, strip: str):
    _expect(path, key, value, list, "a list of names")
    out = set()
    by_name = {m.name.lower(): m for m in enum}
    for item in value:
        _expect(path, key, item, str, "a list of names (strings)")
        name = item.lower().removeprefix(strip)
        if name not in by_name:
            raise _fail(path, key, f"unknown name '{item}'",
                        _near(name, by_name) or f"known names: {', '.join(sorted(by_name))}")
        out.add(by_name[name])
    return frozenset(out)


def _name_list(path: str, key: str, value, known: list[str]) -> frozenset[str]:
    _expect(path, key, value, list, "a list of names")
    for item in value:
        _expect(path, key, item, str, "a list of names (strings)")
        if item not in known:
            raise _fail(path, key, f"unknown field '{item}'", _near(item, known) or f"known fields: {', '.join(known)}")
    return frozenset(value)


def parse_profile(data: dict, path: str) -> Profile:
    """Build a Profile from parsed TOML; ``path`` only names the file in errors."""
    for key in data:
        if key not in _TOP_KEYS:
            raise _fail(path, key, "unknown key", _near(key, _TOP_KEYS) or f"known keys: {', '.join(_TOP_KEYS)}")
    for key in _TOP_KEYS:
        if key not in data:
            raise _fail(path, key, "missing required key")
    values: dict = {}
    values["name"] = _expect(path, "name", data["name"], str, "a string")
    values["description"] = _expect(path, "description", data["description"], str, "a string")
    for key in _INT_KEYS:
        v = _expect(path, key, data[key], int, "an integer")
        if v < 0:
            raise _fail(path, key, f"must not be negative, got {v}")
        if v > _INT_MAX:
            raise _fail(path, key, f"must be at most {_INT_MAX} (32 bits), got {v}")
        values[key] = v
    values["map_types"] = _enum_list(path, "map_types", data["map_types"], MapType, "bpf_map_type_")
    values["helpers"] = _enum_list(path, "helpers", data["helpers"], Helper, "bpf_")
    values["xdp_actions"] = _enum_list(path, "xdp_actions", data["xdp_actions"], XdpAction, "xdp_")
    values["tc_actions"] = _enum_list(path, "tc_actions", data["tc_actions"], TC_CHOICES, "tc_act_")
    from nfpjit.ebpf.context import SkbContext, XdpContext

    for key, ctx in (("xdp_context_reads", XdpContext), ("tc_context_reads", SkbContext),
                     ("tc_context_writes", SkbContext)):
        values[key] = _name_list(path, key, data[key], [f.name for f in ctx.FIELDS])
    feats = _expect(path, "features", data["features"], dict, "a table of booleans")
    flags = {}
    for key, v in feats.items():
        if key not in _FEATURE_KEYS:
            raise _fail(path, f"features.{key}", "unknown feature",
                        _near(key, _FEATURE_KEYS) or f"known features: {', '.join(_FEATURE_KEYS)}")
        flags[key] = _expect(path, f"features.{key}", v, bool, "true or false")
    missing = [k for k in _FEATURE_KEYS if k not in flags]
    if missing:
        raise _fail(path, f"features.{missing[0]}", "missing feature (every feature must be set explicitly)")
    return Profile(features=Features(**flags), source=path, **values)


def _shipped():
    """The folder of the shipped profiles (a plain directory next to this module when installed from
    files; importlib.resources, which costs more to import, otherwise)."""
    here = Path(__file__).with_name(_PROFILE_DIR)
    if here.is_dir():
        return here
    from importlib import resources

    return resources.files("nfpjit.offload").joinpath(_PROFILE_DIR)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with nfpjit, sorted."""
    folder = _shipped()
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path = "default") -> Profile:
    """A shipped profile by name (``default``, ``permissive``) or a TOML file by path.

    Raises UsageError for an unknown name, LoadError for a file that is not a valid profile.
    """
    text_name = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text_name or text_name.endswith(".toml")
    if looks_like_path:
        path = Path(name_or_path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read profile: {exc.strerror}", where=str(path),
                             hint="give a shipped profile name or a readable TOML file") from None
        shown = str(path)
    else:
        names = builtin_profiles()
        if text_name not in names:
            near = _near(text_name, names)
            raise UsageError(f"unknown profile '{text_name}'",
                             hint=(f"{near} " if near else "") + f"shipped profiles: {', '.join(names)}; "
                             "or give a path to a .toml file")
        raw = _shipped().joinpath(text_name + ".toml").read_bytes()
        shown = f"{text_name}.toml"
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(shown, None, "profile is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(shown, None, f"not valid TOML: {exc}") from None
    return parse_profile(data, shown)


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, frozenset):
        names = sorted(getattr(v, "name", v).lower() for v in value)
        return ", ".join(names) if names else "(none)"
    return str(value)


def feature_table(profiles: list[Profile]) -> str:
    """A Markdown table: one row per profile key (features included), one column per profile."""
    head = "| key | " + " | ".join(f"`{p.name}`" for p in profiles) + " |"
    rows = [head, "|" + "---|" * (len(profiles) + 1)]
    keys = [k for k in _TOP_KEYS if k not in ("name", "description", "features")]
    for key in keys:
        cells = (f"{getattr(p, key):#x}" if key == "map_flags" else _cell(getattr(p, key)) for p in profiles)
        rows.append(f"| `{key}` | " + " | ".join(cells) + " |")
    for key in _FEATURE_KEYS:
        rows.append(f"| `features.{key}` | " + " | ".join(_cell(getattr(p.features, key)) for p in profiles) + " |")
    return "\n".join(rows) + "\n"


__all__ = ["Features", "Profile", "load_profile", "parse_profile", "builtin_profiles", "feature_table"]

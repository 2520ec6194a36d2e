"""Map contents as files: preload maps from JSON or TOML, write them back as JSON.

The format is one table per map::

    {"counters": [{"key": "00000000", "value": "2a00000000000000"}, ...]}

An outer map (array/hash of maps) takes ``{"key": K, "map": [inner entries...]}`` (a new inner
map made from its template, filled with those entries) or ``{"key": K, "map": "name"}`` (a map
of the program); queue and stack maps take ``{"value": V}`` entries, pushed in file order.

Keys and values are hex strings of exactly the map's key/value size, or
non-negative integers, which are stored little-endian in that many bytes (as
the host kernel would).  In TOML the same shape is ``[[counters]]`` array
tables.  Every problem is a :class:`~nfpjit.errors.LoadError` naming the file,
the map and the entry.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from dataclasses import dataclass

from nfpjit.errors import LoadError
from nfpjit.ebpf.maps import MapOfMaps, MapStore, QueueStackMap
from nfpjit.ebpf.opcodes import MapType
from nfpjit.ebpf.result import MapState


@dataclass(frozen=True)
class InnerMap:
    """An outer map's value in a map file: an existing map by ``name``, or a fresh inner map
    (made from the outer map's template) holding ``entries``."""

    name: str | None = None
    entries: tuple = ()


def _field(raw, size: int, what: str, where: str) -> bytes:
    if isinstance(raw, bool):
        raise LoadError(f"{what} is a boolean, not hex or an integer", where=where)
    if isinstance(raw, int):
        if raw < 0 or raw >= 1 << (8 * size):
            raise LoadError(f"{what} {raw} does not fit in {size} bytes", where=where,
                            hint="integers are stored little-endian and must be non-negative")
        return raw.to_bytes(size, "little")
    if isinstance(raw, str):
        text = raw.strip().lower().removeprefix("0x").replace(" ", "").replace(":", "")
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise LoadError(f"{what} {raw!r} is not a hex string", where=where) from None
        if len(data) != size:
            raise LoadError(f"{what} has {len(data)} bytes, the map needs {size}", where=where)
        return data
    raise LoadError(f"{what} must be a hex string or an integer, not {type(raw).__name__}", where=where)


def parse_entries(doc: object, maps: MapStore, *, source: str = "<map file>") -> dict[str, list[tuple[bytes, bytes]]]:
    """Validate a decoded document against ``maps``: map name -> [(key, value)]."""
    if not isinstance(doc, dict):
        raise LoadError("a map file must be a table of map names", where=source)
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    for name, entries in _inner_map_tables(doc, maps):
        bpf_map = maps.get(name)
        if bpf_map is None:
            known = ", ".join(m.name for m in maps) or "none"
            raise LoadError(f"the program has no map named {name!r}", where=source, hint=f"maps: {known}")
        if not isinstance(entries, list):
            raise LoadError(f"map {name!r} must be a list of entries", where=source)
        rows = []
        for n, entry in enumerate(entries):
            where = f"{source}: map {name!r} entry {n}"
            if isinstance(bpf_map, MapOfMaps):
                rows.append(_inner_entry(entry, bpf_map, maps, where))
                continue
            if isinstance(bpf_map, QueueStackMap):
                if not isinstance(entry, dict) or set(entry) - {"key", "value"} or "value" not in entry:
                    raise LoadError("a queue/stack entry needs the field 'value'", where=where)
                rows.append((b"", _field(entry["value"], bpf_map.value_size, "value", where)))
                continue
            if bpf_map.mapdef.type == MapType.RINGBUF:
                raise LoadError("a ring buffer cannot be preloaded", where=where)
            if not isinstance(entry, dict) or set(entry) != {"key", "value"}:
                raise LoadError("an entry needs exactly the fields 'key' and 'value'", where=where)
            rows.append((_field(entry["key"], bpf_map.key_size, "key", where),
                         _field(entry["value"], bpf_map.value_size, "value", where)))
        out[name] = rows
    return out


def _inner_map_tables(doc: dict, maps: MapStore):
    """The document's tables, with dump-style ``"outer[key hex]": [entries]`` tables (what
    write_map_file writes for inner maps) turned into ``outer`` entries, so a dump reads back."""
    import re

    tables: dict = {}
    inner: dict[str, list] = {}
    for name, entries in doc.items():
        m = re.fullmatch(r"(.+)\[([0-9a-fA-F]+)\]", name) if isinstance(name, str) else None
        if m and maps.get(name) is None and isinstance(maps.get(m.group(1)), MapOfMaps) and isinstance(entries, list):
            inner.setdefault(m.group(1), []).append({"key": m.group(2), "map": entries})
        else:
            tables[name] = entries
    for outer, rows in inner.items():
        given = tables.get(outer, [])
        tables[outer] = given + rows if isinstance(given, list) else given   # a bad table keeps its error
    return tables.items()


def _inner_entry(entry, outer: MapOfMaps, maps: MapStore, where: str) -> tuple[bytes, InnerMap]:
    if not isinstance(entry, dict) or set(entry) != {"key", "map"}:
        raise LoadError(f"an entry of map-in-map {outer.name!r} needs exactly the fields 'key' and 'map'",
                        where=where, hint='"map": "name of a map" or "map": [{"key": ..., "value": ...}, ...]')
    key = _field(entry["key"], outer.key_size, "key", where)
    spec = entry["map"]
    if isinstance(spec, str):
        inner = maps.get(spec) or maps.hidden.get(spec)
        if inner is None:
            raise LoadError(f"no map named {spec!r} to put into {outer.name!r}", where=where)
        why = outer.compatible(inner)
        if why is not None:
            raise LoadError(why, where=where)
        return key, InnerMap(name=spec)
    if not isinstance(spec, list):
        raise LoadError("'map' must be a map name or a list of entries", where=where)
    template = outer.new_inner(f"{outer.name}[{key.hex()}]")
    rows = []
    for n, e in enumerate(spec):
        w = f"{where}: inner entry {n}"
        if not isinstance(e, dict) or set(e) != {"key", "value"}:
            raise LoadError("an entry needs exactly the fields 'key' and 'value'", where=w)
        rows.append((_field(e["key"], template.key_size, "key", w), _field(e["value"], template.value_size, "value", w)))
    return key, InnerMap(entries=tuple(rows))


def read_map_entries(path: str | Path, maps: MapStore) -> dict[str, list[tuple[bytes, bytes]]]:
    """Read and validate a JSON (``.json``) or TOML (``.toml``) map file: map name -> [(key, value)].

    ``maps`` supplies the names and key/value sizes; nothing is written to it.
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read map file: {exc.strerror}", where=source) from None
    try:
        if path.suffix.lower() == ".toml":
            doc = tomllib.loads(raw.decode("utf-8"))
        else:
            doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LoadError("map file is not UTF-8 text", where=source) from None
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON: {exc.msg}", where=f"{source}:{exc.lineno}:{exc.colno}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoadError(f"invalid TOML: {exc}", where=source) from None
    return parse_entries(doc, maps, source=source)


def load_map_file(path: str | Path, maps: MapStore) -> None:
    """Read a JSON or TOML map file and apply it to ``maps`` (BPF_ANY updates)."""
    apply_entries(read_map_entries(path, maps), maps, source=str(path))


def apply_entries(entries: dict[str, list[tuple[bytes, bytes]]], maps: MapStore, *, source: str = "<map file>") -> None:
    for name, rows in entries.items():
        bpf_map = maps.by_name(name)
        for n, (key, value) in enumerate(rows):
            if isinstance(bpf_map, MapOfMaps):
                if value.name is not None:
                    inner = maps.get(value.name) or maps.hidden[value.name]
                else:
                    inner = bpf_map.new_inner(f"{bpf_map.name}[{key.hex()}]")
                    for k, v in value.entries:
                        err = inner.update(k, v, 0)
                        if err:
                            raise LoadError(f"the inner map refused the entry (errno {-err})",
                                            where=f"{source}: map {name!r} entry {n}")
                err = bpf_map.set_inner(key, inner)
            else:
                err = bpf_map.update(key, value, 0)
            if err:
                raise LoadError(f"the map refused the entry (errno {-err})", where=f"{source}: map {name!r} entry {n}",
                                hint="array indices must be below max_entries; hashes hold max_entries entries")


def state_to_json(state: MapState) -> dict:
    """A MapState in the file format (hex keys and values)."""
    return {name: [{"key": k.hex(), "value": v.hex()} for k, v in entries.items()] for name, entries in state.items()}


def write_map_file(path: str | Path, state: MapState) -> None:
    Path(path).write_text(json.dumps(state_to_json(state), indent=2) + "\n")


__all__ = ["InnerMap", "read_map_entries", "load_map_file", "parse_entries", "apply_entries", "state_to_json", "write_map_file"]

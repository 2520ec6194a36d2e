"""``nfpjit map``: the maps of a virtual NIC, read and written through control messages.

``nfpjit map list|dump|lookup|update|delete|getnext [NAME|ID] --dev IFNAME [--key HEX] [--value HEX]
[--flags any|noexist|exist] [--json]``, a thin layer over ``nfpjit.offload.Device(ifname).maps``
(:class:`nfpjit.nic.mapclient.MapClient`).  Text output follows bpftool (``key: 00 50  value:
03 00 ...``); ``--json`` output is described in docs/offload.md ("Control messages and maps").
Keys and values are hex (``0050``, ``00 50``, ``00:50`` or ``0x0050``).
"""

from __future__ import annotations

import json
import sys

from nfpjit.errors import UsageError

ACTIONS = ("list", "dump", "lookup", "update", "delete", "getnext")
FLAGS = ("any", "noexist", "exist")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "map", help="list, dump, read and write the maps of a virtual NIC (control messages)",
        description="Map operations on a virtual NIC's tables, as bpftool map does them for an offloaded "
        "map: each one travels to the NIC as a control message. NAME|ID is the map's name or the NIC's "
        "table id (see `nfpjit map list`).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    helps = {"list": "the NIC's tables", "dump": "every entry of a map", "lookup": "one entry (--key)",
             "update": "write an entry (--key, --value, --flags)", "delete": "remove an entry (--key)",
             "getnext": "the key after --key (the first key without it)"}
    for action in ACTIONS:
        a = actions.add_parser(action, help=helps[action])
        if action != "list":
            a.add_argument("map", metavar="NAME|ID", help="the map's name or the NIC's table id")
        # options may come before or after NAME|ID: each action has its own parser
        a.add_argument("--dev", required=True, metavar="IFNAME", help="the virtual NIC's host netdev")
        if action in ("lookup", "update", "delete", "getnext"):
            a.add_argument("--key", metavar="HEX", help="the key (getnext: start after it)")
        if action == "update":
            a.add_argument("--value", metavar="HEX", help="the value")
            a.add_argument("--flags", choices=FLAGS, default="any",
                           help="update flags: BPF_ANY (default), BPF_NOEXIST, BPF_EXIST")
        a.add_argument("--json", action="store_true", help="machine-readable output (docs/offload.md)")
        own = {act.dest for act in a._actions}
        a.set_defaults(func=map_command, **{k: v for k, v in (("map", None), ("key", None), ("value", None),
                                                               ("flags", "any")) if k not in own})


def parse_hex(text: str, what: str) -> bytes:
    """``"00 50"``, ``"00:50"``, ``"0x0050"``, ``"0050"`` -> ``b"\\x00\\x50"``."""
    clean = text.strip().lower()
    clean = clean.removeprefix("0x") if " " not in clean else clean
    clean = "".join(part.removeprefix("0x") for part in clean.replace(":", " ").split())
    try:
        data = bytes.fromhex(clean)
    except ValueError:
        data = b""
    if not data:
        raise UsageError(f"{what} {text!r} is not hex bytes", hint=f"e.g. {what} 0050 or {what} '00 50'")
    return data


def _spaced(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def _entry_json(key: bytes | None, value: bytes | None) -> dict:
    out: dict = {}
    for name, data in (("key", key), ("value", value)):
        if data is not None:
            out[name] = data.hex()
            if len(data) <= 8:  # little-endian integer reading (counters, indices)
                out[f"{name}_le"] = int.from_bytes(data, "little")
    return out


def table_json(t) -> dict:
    return {"id": t.tid, "name": t.name, "type": t.map_type.kernel_name, "key_size": t.key_size,
            "value_size": t.value_size, "max_entries": t.max_entries, "flags": t.map_flags, "entries": t.count}


def _need(value, option: str, action: str):
    if value is None:
        raise UsageError(f"map {action} needs {option}")
    return value


def _device(ifname: str):
    from nfpjit.offload.device import Device

    return Device(ifname)


def map_command(args, out=None) -> int:
    out = out or sys.stdout
    action = args.action
    if action != "list":
        _need(args.map, "a map NAME or ID", action)
    elif args.map is not None:
        raise UsageError("map list takes no NAME|ID")
    if action in ("list", "dump") and (args.key or args.value):
        raise UsageError(f"map {action} takes no --key/--value")
    if action != "update" and args.value is not None:
        raise UsageError(f"--value is for map update, not map {action}")
    if action != "update" and args.flags != "any":
        raise UsageError(f"--flags is for map update, not map {action}")
    key = parse_hex(args.key, "--key") if args.key is not None else None
    value = parse_hex(args.value, "--value") if args.value is not None else None
    if action in ("lookup", "update", "delete"):
        _need(key, "--key HEX", action)
    if action == "update":
        _need(value, "--value HEX", action)

    dev = _device(args.dev)
    try:
        maps = dev.maps
        if action == "list":
            tables = maps.tables()
            if args.json:
                _json(out, [table_json(t) for t in tables])
                return 0
            out.write(f"{'id':>4}  {'name':<15}  {'type':<6}  {'key':>4}  {'value':>5}  {'max':>8}  entries\n")
            for t in tables:
                out.write(f"{t.tid:>4}  {t.name or '-':<15}  {t.map_type.kernel_name:<6}  {t.key_size:>4}  "
                          f"{t.value_size:>5}  {t.max_entries:>8}  {t.count}\n")
            return 0
        info = maps.find(args.map)
        for what, data, size in (("--key", key, info.key_size), ("--value", value, info.value_size)):
            if data is not None and len(data) != size:
                raise UsageError(f"{what} has {len(data)} bytes, map {info.name or info.tid} has {size}-byte "
                                 f"{what[2:]}s")
        tid = info.tid
        if action == "dump":
            entries = maps.dump(tid)
            if args.json:
                _json(out, [_entry_json(k, v) for k, v in entries])
                return 0
            for k, v in entries:
                out.write(f"key: {_spaced(k)}  value: {_spaced(v)}\n")
            out.write(f"Found {len(entries)} element{'s' * (len(entries) != 1)}\n")
            return 0
        if action == "lookup":
            v = maps.lookup(tid, key)
            if args.json:
                _json(out, _entry_json(key, v))
            else:
                out.write(f"key: {_spaced(key)}  value: {_spaced(v)}\n")
            return 0
        if action == "update":
            maps.update(tid, key, value, args.flags)
            if args.json:
                _json(out, {"updated": True, **_entry_json(key, value), "flags": args.flags})
            return 0
        if action == "delete":
            maps.delete(tid, key)
            if args.json:
                _json(out, {"deleted": True, **_entry_json(key, None)})
            return 0
        # getnext
        nxt = maps.get_next(tid, key)
        if args.json:
            _json(out, {**({"key": key.hex()} if key is not None else {"key": None}), "next_key": nxt.hex()})
        else:
            out.write(f"key: {_spaced(key) if key is not None else '(none)'}\nnext key: {_spaced(nxt)}\n")
        return 0
    finally:
        close = getattr(dev, "close", None)
        if close is not None:
            close()


def _json(out, doc) -> None:
    json.dump(doc, out, indent=2)
    out.write("\n")

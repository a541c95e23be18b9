"""``spool maps``: per-tenant stream maps (docs/stream-maps.md): set, show, history, test,
remove. Every change is a new version in the ledger; old versions are kept."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from datetime import UTC, datetime

from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    print_json,
    register_ledger_args,
    require_tenant,
)
from spool.ingest import shape as shaping
from spool.ledger.maps import MapStore
from spool.ledger.registry import Registry
from spool.maps import (
    CannotApply,
    MapError,
    StreamMap,
    changes,
    compile_map,
    load_text,
    parse,
)
from spool.secrets import SecretError
from spool.warehouse import naming

EXAMPLE = """examples:
  spool maps set acme users --file users-map.yaml
  spool maps test acme users < sample.jsonl          # the map in force, or --file a draft
  spool maps show acme
  spool maps history acme users
  spool maps remove acme users

A map (docs/stream-maps.md):
  filter: {and: [{eq: [status, active]}, {not: {is_null: email}}]}
  drop: [ssn, [profile, pii]]
  hash: [email]
  secret: env:ACME_MAP_KEY
  rename: {email: email_hash}
  alias: people"""


TEST_HELP = """Preview a map: sample records (JSON lines on stdin: envelopes, or bare records)
are mapped as the spool job would map them, and printed as JSON lines, one per input line:
{"line": N, "stream": S, "data": {...}}, {"line": N, "filtered": true} or {"line": N,
"rejected": WHY}. A summary and the columns the records would make go to stderr. Nothing is
read from Kafka, written anywhere or stored."""
TEST_EXAMPLE = """examples:
  spool maps test acme users < sample.jsonl                         # the map in force
  spool maps test acme users --file users-map.yaml < sample.jsonl   # a draft
  head -100 records.jsonl | spool maps test acme users"""
SHOW_HELP = """The map in force for each stream of a tenant: its version and the map itself (with
--json, the map as a JSON object). A removed map is not listed."""
SHOW_EXAMPLE = """examples:
  spool maps show acme
  spool maps show acme users --json"""
HISTORY_HELP = """Every version of a tenant's maps, oldest first: when it was set (set_at) and
by whom, the batches the spool job made under it and the records its filter dropped. A
removal is a version too (map "(removed)"; with --json, null)."""
HISTORY_EXAMPLE = """examples:
  spool maps history acme
  spool maps history acme users --json"""
REMOVE_HELP = """Stop mapping a stream: its records timestamped after the removal is stored load
unmapped. The removal is stored as a new version; the old versions stay in the history.
Removing a map that hashes, masks, drops or keeps out fields needs --yes."""
REMOVE_EXAMPLE = """examples:
  spool maps remove acme users
  spool maps remove acme users --by ann --yes"""


def register(sub) -> None:
    p = sub.add_parser("maps", help="per-tenant stream maps: drop, hash, mask, rename, "
                                    "filter, alias", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = p.add_subparsers(dest="maps_command", metavar="SUBCOMMAND", required=True)

    s = msub.add_parser("set", help="check a map and store it as the stream's next version",
                        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(s)
    s.add_argument("--file", default="-", help="the map, JSON or YAML (default: stdin)")
    s.add_argument("--by", default=None, help="who sets it (default: user@host)")
    s.add_argument("--yes", action="store_true",
                   help="store it even though it lets fields through that the version in "
                        "force keeps out (a hash, mask or drop removed, a field added to keep)")
    s.set_defaults(func=set_map)

    t = msub.add_parser("test", help="preview a map on sample records (JSON lines on stdin): "
                                     "nothing is read from Kafka or written anywhere",
                        description=TEST_HELP, epilog=TEST_EXAMPLE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(t)
    t.add_argument("--file", default=None, help="a draft map to test instead of the one in "
                                                "force")
    t.set_defaults(func=test_map)

    for name, helptext, description, example, func in (
            ("show", "the maps in force", SHOW_HELP, SHOW_EXAMPLE, show_maps),
            ("history", "every version, who set it and when, the batches it made and the "
                        "records its filter dropped", HISTORY_HELP, HISTORY_EXAMPLE,
             map_history)):
        sp = msub.add_parser(name, help=helptext, description=description, epilog=example,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        register_ledger_args(sp)
        sp.add_argument("tenant", help="the tenant whose maps to list ('spool tenants list' "
                                       "shows them)")
        sp.add_argument("stream", nargs="?", help="only this stream's (default: every stream "
                                                  "of the tenant)")
        sp.add_argument("--json", action="store_true", help="print JSON lines")
        sp.set_defaults(func=func)

    r = msub.add_parser("remove", help="stop mapping a stream (records sent from now on; the "
                                       "history keeps the old versions)",
                        description=REMOVE_HELP, epilog=REMOVE_EXAMPLE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(r)
    r.add_argument("--by", default=None, help="who removes it (default: user@host)")
    r.add_argument("--yes", action="store_true",
                   help="remove it even though it hashes, masks, drops or keeps out fields")
    r.set_defaults(func=remove_map)


def _common(p: argparse.ArgumentParser) -> None:
    register_ledger_args(p)
    p.add_argument("tenant", help="the tenant, as its records name it ('spool tenants list' "
                                  "shows them)")
    p.add_argument("stream", help="the stream (the table its records load into), as its "
                                  "records name it")


def _by(args) -> str:
    return args.by or f"{getpass.getuser()}@{socket.gethostname()}"


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise SystemExit(f"error: cannot read the map {path}: {exc.strerror}") from None


def _registered(store: MapStore, tenant: str) -> None:
    if tenant not in Registry(store.ledger).tenant_ids():
        raise SystemExit(f"error: tenant {tenant!r} is not registered; 'spool tenants add "
                         f"{tenant} ...' first")


def set_map(args: LedgerArgs) -> int:
    text = _read(args.file)
    store = MapStore(ledger_from(args))
    _registered(store, args.tenant)
    try:
        doc = load_text(text)
        keys = Keys(store, args.tenant)
        m = parse(doc, key_names=keys.sent(args.stream) or ())
        _keys_agree(keys, args.stream, m)
    except MapError as exc:
        raise SystemExit(f"error: map for {args.tenant}/{args.stream} not stored: {exc}") \
            from None
    _show_changes(store, args, m, "stored")
    saved = store.save(args.tenant, args.stream, doc, _by(args))
    print(f"map of {args.tenant}/{args.stream} is now version {saved.version}; it applies to "
          f"every record with a Kafka timestamp from {_from(saved)} on")
    return 0


def _show_changes(store: MapStore, args, m: StreamMap, what: str) -> None:
    """Print what ``m`` changes against the version in force; exit 2 when that lets
    through what the version in force keeps out and ``--yes`` was not given."""
    against, found = _in_force(store, args.tenant, args.stream)
    changed = changes(found, m)
    loosened = [str(c) for c in changed if c.loosens]
    if loosened and not args.yes:
        print(f"error: map for {args.tenant}/{args.stream} not {what}: it lets through what "
              f"{against} keeps out of the warehouse ({'; '.join(loosened)}); pass --yes if "
              "that is what you want", file=sys.stderr)
        raise SystemExit(2)
    print(f"changes against {against}:" if changed else f"no rule changes against {against}")
    for change in changed:
        print(f"  {change}")


def _in_force(store: MapStore, tenant: str, stream: str):
    """(what to call the version in force, it parsed; None: there is no map)."""
    history = store.history(tenant, stream)
    if not history:
        return "no map", None
    last = history[-1]
    if last.document is None:
        return f"version {last.version} (no map: it removed the map)", None
    try:
        return f"version {last.version}", parse(last.document, resolve_secret=False)
    except MapError:  # stored by an older Spool: every rule of the new one is new
        return f"version {last.version} (unreadable, so every rule counts as new)", None


def _from(version) -> str:
    """When a version applies from, by the ledger's clock, to the millisecond."""
    at = datetime.fromtimestamp(version.from_ms / 1000, UTC)
    return f"{at:%Y-%m-%d %H:%M:%S}.{version.from_ms % 1000:03d} UTC"


class Keys:
    """A tenant's streams' key properties, as sent and as their maps make them."""

    def __init__(self, store: MapStore, tenant: str) -> None:
        self.store, self.tenant = store, tenant
        self.maps = {}
        for v in store.current():
            if v.tenant_id == tenant:
                try:
                    self.maps[v.stream] = parse(v.document, resolve_secret=False)
                except MapError:  # stored by an older Spool: replacing it must still work
                    continue

    def sent(self, stream: str) -> tuple[str, ...] | None:
        """As the stream's records arrive (None: never seen). Seen in a batch after the
        stream's own map renamed them, they are named back."""
        found = self.store.newest_keys(self.tenant, stream)
        if found is None:
            return None
        keys, version = found
        made_by = [v.document for v in self.store.history(self.tenant, stream)
                   if v.version == version and v.document is not None]
        try:
            return parse(made_by[0], resolve_secret=False).renamed_keys(keys, back=True) \
                if made_by else keys
        except MapError:  # a version an older Spool stored: its keys as they are
            return keys

    def loaded(self, stream: str, m=None) -> tuple[str, ...] | None:
        """As the stream's records load: after ``m``, by default the map in force."""
        sent = self.sent(stream)
        m = m if m is not None else self.maps.get(stream)
        return sent if sent is None or m is None else m.renamed_keys(sent)


def _keys_agree(keys: Keys, stream: str, m) -> None:
    """An alias merges streams into one table: their records must have the same key
    properties (as their maps rename them), or the table would hold rows of several under
    one key. Streams not seen yet have nothing to compare."""

    def said(names):
        return "no key properties" if not names else f"key properties {', '.join(names)}"

    pairs = []  # (stream aliased, its keys, the stream it loads into, that one's keys)
    if m.alias is not None and m.alias != stream:
        pairs.append((stream, keys.loaded(stream, m), m.alias, keys.loaded(m.alias)))
    else:  # streams aliased into this one meet its records as mapped now
        pairs += [(other, keys.loaded(other), stream, keys.loaded(stream, m))
                  for other, theirs in sorted(keys.maps.items())
                  if theirs.alias == stream and other != stream]
    for source, own, target, theirs in pairs:
        if own is not None and theirs is not None and own != theirs:
            raise MapError(f"alias {target}: {source}'s records have {said(own)} (as their "
                           f"map makes them), {target}'s have {said(theirs)}; their rows "
                           "cannot share a table. Rename the key fields to agree, or alias "
                           "to another stream")


def remove_map(args: LedgerArgs) -> int:
    store = MapStore(ledger_from(args))
    require_tenant(store.ledger, args.tenant)
    current = store.history(args.tenant, args.stream)
    if not current or current[-1].document is None:
        raise SystemExit(f"error: {args.tenant}/{args.stream} has no map")
    _show_changes(store, args, StreamMap(), "removed")
    saved = store.save(args.tenant, args.stream, None, _by(args))
    print(f"map of {args.tenant}/{args.stream} removed (version {saved.version}); records with "
          f"a Kafka timestamp from {_from(saved)} on load unmapped")
    return 0


def show_maps(args: LedgerArgs) -> int:
    store = MapStore(ledger_from(args))
    require_tenant(store.ledger, args.tenant)
    rows = [(m.stream, m.version, m.document)
            for m in store.current() if m.tenant_id == args.tenant
            and (args.stream is None or m.stream == args.stream)]
    emit_table(["stream", "version", "map"], rows, args.json)
    return 0


def map_history(args: LedgerArgs) -> int:
    store = MapStore(ledger_from(args))
    require_tenant(store.ledger, args.tenant)
    counts = store.counts(args.tenant)
    removed = None if args.json else "(removed)"
    rows = [(m.stream, m.version, m.created_at, m.created_by,
             *counts.get((m.stream, m.version), (0, 0)),
             removed if m.document is None else m.document)
            for m in store.history(args.tenant, args.stream)]
    emit_table(["stream", "version", "set_at", "by", "batches", "records_filtered", "map"],
               rows, args.json)
    return 0


def test_map(args: LedgerArgs) -> int:
    """Mapped records as JSON lines, then the columns they would produce."""
    store = MapStore(ledger_from(args))
    require_tenant(store.ledger, args.tenant)
    keys = Keys(store, args.tenant).sent(args.stream) or ()
    if args.file:
        doc = load_text_or_exit(_read(args.file))
    else:
        found = [m for m in store.current()
                 if (m.tenant_id, m.stream) == (args.tenant, args.stream)]
        if not found:
            raise SystemExit(f"error: {args.tenant}/{args.stream} has no map; test a draft "
                             "with --file")
        doc = found[0].document
    try:
        apply = compile_map(parse(doc, key_names=keys), args.stream)
    except (MapError, SecretError) as exc:
        raise SystemExit(f"error: {exc}") from None
    columns: dict[tuple[str, str], set[str]] = {}
    counts = {"mapped": 0, "filtered": 0, "rejected": 0}
    for n, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise SystemExit(f"error: line {n} is not JSON") from None
        data = record.get("data", record) if isinstance(record, dict) else record
        if not isinstance(data, dict):
            raise SystemExit(f"error: line {n} is not a JSON object")
        try:
            got = apply(data, keys)
        except CannotApply as exc:
            counts["rejected"] += 1
            print_json({"line": n, "rejected": str(exc)})
            continue
        if got.data is None:
            counts["filtered"] += 1
            print_json({"line": n, "filtered": True})
            continue
        counts["mapped"] += 1
        print_json({"line": n, "stream": got.stream, "data": got.data})
        for table_path, row in shaping.shape(got.data, rid="preview", sequence=0,
                                             received_at_ms=0, key_names=got.key_names):
            table = naming.table_name(got.stream, [json.loads(p) for p in table_path])
            for path, value in row.items():
                if not path.startswith("[") or value is None:
                    continue  # system columns, nulls
                column = naming.path_name(json.loads(path), top_level_system=not table_path)
                columns.setdefault((table, column), set()).add(shaping.JSON_TYPE_NAMES[type(value)])
    print(f"-- {counts['mapped']} mapped, {counts['filtered']} filtered out, "
          f"{counts['rejected']} rejected; columns:", file=sys.stderr)
    for (table, column), types in sorted(columns.items()):
        print(f"--   {table}.{column} {'/'.join(sorted(types))}", file=sys.stderr)
    return 0


def load_text_or_exit(text: str) -> dict:
    try:
        return load_text(text)
    except MapError as exc:
        raise SystemExit(f"error: {exc}") from None

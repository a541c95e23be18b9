"""Planning a load: which tables and columns a group of batches needs, under which names.

Pure functions over the catalog state of one tenant schema (read by the loader) and what the
batches hold (their column summaries, or the staged data). The rules (docs/
warehouse-contract.md):

* a table path keeps the name it got first (``_sdc_tables``); a new one gets
  :func:`naming.table_name`, made unique against every relation in the schema;
* a (field path, type) keeps the column it got first (``_sdc_columns``); a new path's first
  type takes the base name, any other type of the same path gets the base name plus that
  type's suffix (``__st``, ``__it``, ``__fl``, ``__bo``, ``__ti``); names are unique within
  the table, with ``_2``, ``_3`` for collisions;
* a string field the stream's Singer schema marks ``format: date-time`` has the logical type
  ``date-time``; values that do not parse as one land in its ``string`` split column;
* (contract v3) a new field the Singer schema declares one type of gives that type its base
  name (created even when this load has only values of other types); its other types split;
* the order of decisions is fixed: tables by depth and path; fields and their types by
  first appearance (the earliest row of the load holding a value), ties by path and type
  name; so the same input always gets the same names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from spool import sdc
from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse import naming
from spool.warehouse.contract import (
    CHILD_SYSTEM_COLUMNS,
    LEVEL_COLUMN,
    REJECTED_COLUMNS,
    REJECTED_TABLE,
    ROOT_SYSTEM_COLUMNS,
    SOURCE_KEY_COLUMN,
)


def path_key(path) -> str:
    """A field path (list of names) as its compact JSON key, as batch files name it."""
    return json.dumps(list(path), ensure_ascii=False, separators=(",", ":"))


def table_key(table_path) -> str:
    """A table path (list of field paths) as its compact JSON key, as batch files name it."""
    return json.dumps([list(p) for p in table_path], ensure_ascii=False, separators=(",", ":"))


def table_order(tpath: str) -> tuple[int, str]:
    """Tables by depth, then path: parents before their children, the same every time."""
    return (len(json.loads(tpath)), tpath)


def source_key_column(key_column: str, limit_bytes: int) -> str:
    """A child table's copy of a root key column: ``_sdc_source_key_<column>``. Where that
    is longer than the warehouse allows, it is cut and a short digest of the key column
    keeps two long keys apart (the database would otherwise cut it silently)."""
    name = SOURCE_KEY_COLUMN.format(key_column)
    if len(name.encode()) <= limit_bytes:
        return name
    digest = hashlib.sha256(key_column.encode()).hexdigest()[:6]
    return naming.fit(name, limit_bytes, f"_{digest}")


@dataclass
class CatalogState:
    """What the warehouse already has, for one tenant schema."""

    tables: dict[tuple[str, str], str] = field(default_factory=dict)  # (stream, path) → name
    columns: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    relations: set[str] = field(default_factory=set)  # every table and view name
    physical: dict[str, dict[str, str]] = field(default_factory=dict)  # table → col → type
    unindexed_large: set[str] = field(default_factory=set)  # big tables without our index
    # (stream, the map's stream) → the newest stream map version logged (map_changed)
    map_versions: dict[tuple[str, str], int] = field(default_factory=dict)
    # (table, field path, type) whose values go to their declared type's column, logged
    declared_applied: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass
class Observed:
    """What a group of batches holds for one table: types and sizes per field path."""

    types: dict[str, dict[str, int]] = field(default_factory=dict)  # path → type → count
    max_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, type) → n
    first: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, type) → first row
    depth: int = 0  # array levels (child tables)
    mapped: bool = False  # rows a stream map made (with _sdc_map_version) are among them
    # contract v3, Singer streams: path → the type its schema declares (base_type), and
    # (path, the values' own type) → (the declared type they went to instead, first row)
    declared: dict[str, str] = field(default_factory=dict)
    moved: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)

    def add(self, path: str, json_type: str, count: int, max_bytes: int = 0,
            first_row: int = 0) -> None:
        per = self.types.setdefault(path, {})
        per[json_type] = per.get(json_type, 0) + count
        k = (path, json_type)
        self.max_bytes[k] = max(self.max_bytes.get(k, 0), max_bytes)
        self.first[k] = min(self.first.get(k, first_row), first_row)

    def first_row(self, path: str) -> int:
        return min((r for (p, _t), r in self.first.items() if p == path), default=0)


@dataclass
class TablePlan:
    path: str  # table path key
    name: str
    create: bool
    columns: dict[tuple[str, str], str]  # (field path key | system source, type) → column
    sql_types: dict[str, str]  # column → SQL type (after this load)
    new_columns: list[tuple[str, str]]  # (column, SQL type) to add, in order
    widen: list[tuple[str, str]]  # (column, wider SQL type)
    key_columns: list[str] = field(default_factory=list)  # root: keys; child: source keys
    level_columns: list[str] = field(default_factory=list)
    source_key_columns: dict[str, str] = field(default_factory=dict)  # key name → column
    index: bool = False  # create the merge indexes now (the table has grown large)


@dataclass
class Plan:
    tables: dict[str, TablePlan]  # table path key → plan
    new_tables: list[tuple[str, str, str]]  # (stream, table path key, name) for _sdc_tables
    new_columns: list[tuple[str, str, str, str]]  # (table, source, type, column)
    split: set[tuple[str, str]] = field(default_factory=set)  # (table, column): split columns


SCALAR_TYPES = ("string", "integer", "number", "boolean")


def declared_types(schema: dict | None) -> dict[tuple[str, str], frozenset[str]]:
    """(table path key, field path key) → the JSON types a Singer JSON schema declares for
    the field (``null`` left out; ``date-time`` for a string of ``format: date-time``),
    following objects (flattened) and arrays (child tables; their scalars at ``["value"]``).
    ``anyOf``/``oneOf`` alternatives add up."""
    out: dict[tuple[str, str], set[str]] = {}

    def types_of(node) -> set[str]:
        t = node.get("type", [])
        return {t} if isinstance(t, str) else {x for x in t or [] if isinstance(x, str)}

    def visit(node, table: list, path: list) -> None:
        """The schema ``node`` of the field at ``path`` of ``table`` (an array's element
        when ``path`` is ``["value"]`` of a child table)."""
        if not isinstance(node, dict):
            return
        for alt in [node, *(node.get("anyOf") or []), *(node.get("oneOf") or [])]:
            if not isinstance(alt, dict):
                continue
            kinds = types_of(alt)
            here = out.setdefault((table_key(table), path_key(path)), set())
            here.update(kinds & set(SCALAR_TYPES))
            if alt.get("format") == "date-time" and ("string" in kinds or not kinds):
                here.add("date-time")
            if "object" in kinds or "properties" in alt:
                element = path == ["value"] and len(table) > 0
                for name, sub in (alt.get("properties") or {}).items():
                    visit(sub, table, [name] if element else [*path, name])
            if "array" in kinds and isinstance(alt.get("items"), dict):
                visit(alt["items"], [*table, path], ["value"])

    if isinstance(schema, dict):
        for name, sub in (schema.get("properties") or {}).items():
            visit(sub, [], [name])
    return {k: frozenset(v) for k, v in out.items() if v}


def base_type(declared: frozenset[str] | None) -> str | None:
    """The type whose column takes a declared field's base name (contract v3): ``date-time``
    for a date-time string, else its one declared scalar type (``number`` for integer or
    number); None when the schema does not say (the field's first value decides)."""
    if not declared:
        return None
    if "date-time" in declared:
        return "date-time"
    scalars = declared & set(SCALAR_TYPES)
    if scalars == {"integer", "number"}:
        return "number"
    return next(iter(scalars)) if len(scalars) == 1 else None


@dataclass
class _Columns:
    sql_types: dict[str, str]
    taken: set[str]
    added: list[tuple[str, str]] = field(default_factory=list)

    def ensure(self, col: str, sql_type: str) -> None:
        """The column exists after this load (added with ``sql_type`` if it is new)."""
        if col not in self.sql_types:
            self.sql_types[col] = sql_type
            self.added.append((col, sql_type))
        self.taken.add(col)


def _system_columns(is_root: bool, is_rejected: bool) -> list[tuple[str, str, int]]:
    if is_rejected:
        return REJECTED_COLUMNS
    return ROOT_SYSTEM_COLUMNS if is_root else CHILD_SYSTEM_COLUMNS


def _taken(dialect, names: set[str]) -> set[str]:
    """Names as the warehouse compares them (Spool's own are lower case already)."""
    return {n.lower() for n in names} if dialect.caps.case_insensitive_names else names


@dataclass
class _Stream:
    """What planning one stream's tables shares: the rules, what exists, what is decided."""

    dialect: object
    name: str
    key_names: list[str]
    state: CatalogState
    plan: Plan
    relations: set[str]  # names taken in the schema
    root_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key → (col, type)

    @property
    def rejected(self) -> bool:
        return self.name == REJECTED_TABLE


def plan_load(dialect, stream: str, key_names: list[str], observed: dict[str, Observed],
              state: CatalogState) -> Plan:
    """Decide names, new tables, new columns and widenings for one stream's load."""
    ctx = _Stream(dialect, stream, key_names, state, Plan({}, [], []),
                  _taken(dialect, set(state.relations) | set(state.tables.values())))
    for tpath in sorted(observed, key=table_order):
        ctx.plan.tables[tpath] = _plan_table(ctx, tpath, _table_name(ctx, tpath),
                                             observed[tpath])
    return ctx.plan


def _table_name(ctx: _Stream, tpath: str) -> str:
    """The name a table path has, or gets now (unique in the schema, recorded as new)."""
    name = ctx.state.tables.get((ctx.name, tpath))
    if name is None:
        if ctx.rejected:
            name = REJECTED_TABLE
        else:
            base = naming.table_name(ctx.name, json.loads(tpath))
            name = naming.unique(base, ctx.relations, ctx.dialect.caps.identifier_bytes)
        ctx.relations.add(name)
        ctx.plan.new_tables.append((ctx.name, tpath, name))
    return name


def _plan_table(ctx: _Stream, tpath: str, name: str, obs: Observed) -> TablePlan:
    d = ctx.dialect
    is_root = tpath == ROOT_TABLE_KEY
    mapped = dict(ctx.state.columns.get(name, {}))
    physical = ctx.state.physical.get(name, {})
    cols = _Columns(sql_types=dict(physical),
                    taken=_taken(d, set(mapped.values()) | set(physical)))
    for col, logical, size in _system_columns(is_root, ctx.rejected):
        cols.ensure(col, d.types.column_type(logical, size))
    if is_root and obs.mapped:  # only tables of mapped streams have it
        cols.ensure(sdc.MAP_VERSION, d.types.column_type("integer"))
    levels = [LEVEL_COLUMN.format(n) for n in range(obs.depth)]
    for col in levels:
        cols.ensure(col, d.types.column_type("integer"))
    source_key_columns: dict[str, str] = {}
    if not is_root:  # each child row carries the root's key values
        for key in ctx.key_names:
            col_name, sql_type = ctx.root_keys.get(key, (None, None))
            if col_name is not None:
                source_key_columns[key] = source_key_column(col_name, d.caps.identifier_bytes)
                cols.ensure(source_key_columns[key], sql_type)
    widen: list[tuple[str, str]] = []
    # paths and types in order of first appearance, so the first comer owns a name
    for path in sorted(obs.types, key=lambda p: (obs.first_row(p), p)):
        first_type = _plan_field(ctx, name, path, obs, is_root, mapped, cols, widen)
        field_path = json.loads(path)
        if is_root and first_type and len(field_path) == 1 and field_path[0] in ctx.key_names:
            col = mapped[(path, first_type)]
            ctx.root_keys[field_path[0]] = (col, cols.sql_types[col])
    key_cols = [ctx.root_keys[k][0] for k in ctx.key_names if k in ctx.root_keys] if is_root \
        else list(source_key_columns.values())
    return TablePlan(path=tpath, name=name, create=name not in ctx.state.physical,
                     columns=mapped, index=name in ctx.state.unindexed_large,
                     sql_types=cols.sql_types, new_columns=cols.added, widen=widen,
                     key_columns=key_cols, level_columns=levels,
                     source_key_columns=source_key_columns)


def _plan_field(ctx: _Stream, table: str, path: str, obs: Observed, is_root: bool,
                mapped: dict, cols: _Columns, widen: list) -> str | None:
    """Columns for every type a field path has in this load; returns the type that owns
    the path's base name (None for a path only ever null)."""
    present = [t for t in obs.types[path] if t != "null"]
    if not present:
        return None
    existing = [t for (p, t) in mapped if p == path]
    declared = obs.declared.get(path)
    if declared and not existing and declared not in present:
        present.append(declared)  # a new field's declared type has its base name (v3)
    # the first type a path ever got owns its base name: its declared type, else the type
    # of its first value
    order = sorted(present, key=lambda t: (t not in existing, t != declared,
                                           obs.first.get((path, t), 0), t))
    base = naming.path_name(json.loads(path), top_level_system=is_root)
    for json_type in order:
        size = obs.max_bytes.get((path, json_type), 0)
        col = mapped.get((path, json_type))
        if col is None:
            suffix = "" if not existing and json_type == order[0] else \
                naming.TYPE_SUFFIXES[json_type]
            col = naming.unique(base, cols.taken, ctx.dialect.caps.identifier_bytes, suffix)
            mapped[(path, json_type)] = col
            ctx.plan.new_columns.append((table, path, json_type, col))
            if suffix:
                ctx.plan.split.add((table, col))
            existing.append(json_type)
        if col not in cols.sql_types:
            cols.ensure(col, ctx.dialect.types.column_type(json_type, size))
        else:
            cols.taken.add(col)
            wider = ctx.dialect.types.wider_type(cols.sql_types[col], json_type, size)
            if wider:
                widen.append((col, wider))
                cols.sql_types[col] = wider
    return order[0]

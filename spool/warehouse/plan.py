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
* the order of decisions is fixed: tables by depth and path; fields and their types by
  first appearance (the earliest row of the load holding a value), ties by path and type
  name; so the same input always gets the same names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from spool.warehouse import naming
from spool.warehouse.contract import (
    CHILD_SYSTEM_COLUMNS,
    LEVEL_COLUMN,
    REJECTED_COLUMNS,
    REJECTED_TABLE,
    ROOT_SYSTEM_COLUMNS,
    SOURCE_KEY_COLUMN,
)

ROOT = "[]"


def path_key(path) -> str:
    return json.dumps(list(path), ensure_ascii=False, separators=(",", ":"))


def table_key(table_path) -> str:
    return json.dumps([list(p) for p in table_path], ensure_ascii=False, separators=(",", ":"))


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


@dataclass
class Observed:
    """What a group of batches holds for one table: types and sizes per field path."""

    types: dict[str, dict[str, int]] = field(default_factory=dict)  # path → type → count
    max_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, type) → n
    first: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, type) → first row
    depth: int = 0  # array levels (child tables)

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
    staged_columns: list[str] = field(default_factory=list)  # set when staged
    index: bool = False  # create the merge indexes now (the table has grown large)


@dataclass
class Plan:
    tables: dict[str, TablePlan]  # table path key → plan
    new_tables: list[tuple[str, str, str]]  # (stream, table path key, name) for _sdc_tables
    new_columns: list[tuple[str, str, str, str]]  # (table, source, type, column)


def date_time_paths(schema: dict | None) -> set[tuple[str, str]]:
    """(table path key, field path key) of every ``format: date-time`` string in a Singer
    JSON schema, following objects (flattened) and arrays (child tables)."""
    out: set[tuple[str, str]] = set()

    def types_of(node) -> set[str]:
        t = node.get("type", [])
        return {t} if isinstance(t, str) else set(t or [])

    def walk(node, table: list, prefix: list) -> None:
        if not isinstance(node, dict):
            return
        for name, sub in (node.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            for alt in [sub, *(sub.get("anyOf") or [])]:
                if not isinstance(alt, dict):
                    continue
                kinds = types_of(alt)
                if alt.get("format") == "date-time" and ("string" in kinds or not kinds):
                    out.add((table_key(table), path_key([*prefix, name])))
                if "object" in kinds or "properties" in alt:
                    walk(alt, table, [*prefix, name])
                if "array" in kinds and isinstance(alt.get("items"), dict):
                    items = alt["items"]
                    child = [*table, [*prefix, name]]
                    if items.get("format") == "date-time":
                        out.add((table_key(child), path_key(["value"])))
                    walk(items, child, [])

    walk(schema or {}, [], [])
    return out


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


def plan_load(dialect, stream: str, key_names: list[str], observed: dict[str, Observed],
              state: CatalogState) -> Plan:
    """Decide names, new tables, new columns and widenings for one stream's load."""
    limit = dialect.caps.identifier_bytes
    rejected = stream == REJECTED_TABLE
    tables: dict[str, TablePlan] = {}
    new_tables, new_columns = [], []
    relations = set(state.relations) | set(state.tables.values())
    root_key_types: dict[str, tuple[str, str]] = {}  # key name → (column, SQL type)

    for tpath in sorted(observed, key=lambda t: (len(json.loads(t)), t)):
        obs = observed[tpath]
        is_root = tpath == ROOT
        name = state.tables.get((stream, tpath))
        if name is None:
            base = REJECTED_TABLE if rejected else naming.table_name(stream, json.loads(tpath))
            name = base if rejected else naming.unique(base, relations, limit)
            relations.add(name)
            new_tables.append((stream, tpath, name))
        mapped = dict(state.columns.get(name, {}))
        physical = state.physical.get(name, {})
        create = name not in state.physical
        cols = _Columns(sql_types=dict(physical), taken=set(mapped.values()) | set(physical))
        ensure, taken, sql_types, added = cols.ensure, cols.taken, cols.sql_types, cols.added
        widen: list[tuple[str, str]] = []

        for col, logical, size in _system_columns(is_root, rejected):
            ensure(col, dialect.column_type(logical, size))
        levels = [LEVEL_COLUMN.format(n) for n in range(obs.depth)]
        for col in levels:
            ensure(col, dialect.column_type("integer"))
        key_cols: list[str] = []
        source_key_columns: dict[str, str] = {}
        if not is_root:
            for key in key_names:
                col_name, sql_type = root_key_types.get(key, (None, None))
                if col_name is None:
                    continue
                col = source_key_column(col_name, dialect.caps.identifier_bytes)
                ensure(col, sql_type)
                key_cols.append(col)
                source_key_columns[key] = col

        # paths and types in order of first appearance, so the first comer owns a name
        for path in sorted(obs.types, key=lambda p: (obs.first_row(p), p)):
            counts = obs.types[path]
            present = [t for t in counts if t != "null"]
            if not present:
                continue
            existing = [t for (p, t) in mapped if p == path]
            # the first type a path ever got owns its base name
            order = sorted(present, key=lambda t: (t not in existing,
                                                   obs.first.get((path, t), 0), t))
            base = naming.path_name(json.loads(path), top_level_system=is_root)
            for json_type in order:
                size = obs.max_bytes.get((path, json_type), 0)
                col = mapped.get((path, json_type))
                if col is None:
                    suffix = "" if not existing and json_type == order[0] else \
                        naming.TYPE_SUFFIXES[json_type]
                    col = naming.unique(base, taken, limit, suffix)
                    mapped[(path, json_type)] = col
                    new_columns.append((name, path, json_type, col))
                    existing.append(json_type)
                if col not in sql_types:
                    ensure(col, dialect.column_type(json_type, size))
                else:
                    taken.add(col)
                    wider = dialect.wider_type(sql_types[col], json_type, size)
                    if wider:
                        widen.append((col, wider))
                        sql_types[col] = wider
            if is_root and json.loads(path)[0] in key_names and len(json.loads(path)) == 1:
                key = json.loads(path)[0]
                t = order[0]
                col = mapped[(path, t)]
                root_key_types[key] = (col, sql_types[col])
        if is_root:
            key_cols = [root_key_types[k][0] for k in key_names if k in root_key_types]
        tables[tpath] = TablePlan(path=tpath, name=name, create=create, columns=mapped,
                                  index=name in state.unindexed_large,
                                  sql_types=sql_types, new_columns=added,
                                  widen=widen, key_columns=key_cols, level_columns=levels,
                                  source_key_columns=source_key_columns)
    return Plan(tables=tables, new_tables=new_tables, new_columns=new_columns)

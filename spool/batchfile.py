"""The batch file: one Parquet file per batch, holding a stream's root and child table rows.

Layout (format version 1, documented in docs/batch-format.md):

* ``_sdc_table`` (int32) says which table a row belongs to: an index into the ``tables``
  list of the file's metadata; rows are grouped by table, root rows first.
* System columns have fixed names and types (``SYSTEM_TYPES``).
* ``_sdc_source_key:["<key>","<type>"]`` columns carry the root key values in child rows.
* Every data column is one (table, original field path, JSON type) and is named by the JSON
  text ``[<table index>, [<path>...], "<type>"]``, so a field whose type drifts has one
  column per type and nothing is cast. A field seen only as null has a column of type
  ``null``.
* The file's key-value metadata ``spool`` holds the batch metadata (tenant, stream, window,
  pane, key names, Singer schema, activated table version, row and record counts, and the
  column summary the ledger also stores).

Everything here is plain pyarrow; the object store and the ledger are elsewhere.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spool.shape import LEVEL_KEYS, SOURCE_KEY_PREFIX, TablePath

FORMAT_VERSION = 1
METADATA_KEY = b"spool"
TABLE_COLUMN = "_sdc_table"
REJECTED_TABLE = "_sdc_rejected"

TS_MS = pa.timestamp("ms", tz="UTC")
TS_US = pa.timestamp("us", tz="UTC")
SYSTEM_TYPES: dict[str, pa.DataType] = {
    "_sdc_record_id": pa.string(),
    "_sdc_sequence": pa.int64(),
    "_sdc_received_at": TS_MS,
    "_sdc_extracted_at": TS_US,
    "_sdc_table_version": pa.int64(),
    # rejected records
    "_sdc_rejected_at": TS_MS,
    "table_name": pa.string(),
    "reason_code": pa.string(),
    "reason": pa.string(),
    "record": pa.string(),
    "raw": pa.binary(),
    **{k: pa.int64() for k in LEVEL_KEYS},
}
JSON_TYPES: dict[type, tuple[str, pa.DataType]] = {
    str: ("string", pa.string()),
    int: ("integer", pa.int64()),
    float: ("number", pa.float64()),
    bool: ("boolean", pa.bool_()),
    type(None): ("null", pa.null()),
}
ARROW_OF_TYPE = {name: dt for name, dt in JSON_TYPES.values()}


@dataclass
class ColumnSummary:
    """What the loader needs to plan DDL for one (table, field path), without the file."""

    types: dict[str, int] = field(default_factory=dict)  # JSON type -> non-null values
    max_bytes: int = 0  # longest string value in UTF-8 bytes
    null_count: int = 0  # rows of the table without a non-null value here

    def to_json(self) -> dict:
        return {"types": self.types, "max_bytes": self.max_bytes, "null_count": self.null_count}


@dataclass
class BatchData:
    """A batch ready to be written: rows plus what the file's metadata says about them."""

    tenant: str
    stream: str
    rows: list  # [(TablePath, row dict)], any table order
    meta: dict = field(default_factory=dict)


def data_column_name(table_index: int, path: tuple[str, ...], type_name: str) -> str:
    return compact_json([table_index, list(path), type_name])


def source_key_column_name(key: str, type_name: str) -> str:
    return "_sdc_source_key:" + compact_json([key, type_name])


def parse_column_name(name: str) -> tuple[str, object]:
    """('system', name) | ('source_key', (key, type)) | ('data', (table, path, type))."""
    if name.startswith("["):
        t, path, type_name = json.loads(name)
        return "data", (t, tuple(path), type_name)
    if name.startswith("_sdc_source_key:"):
        key, type_name = json.loads(name[len("_sdc_source_key:"):])
        return "source_key", (key, type_name)
    return "system", name


def compact_json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def table_path_to_json(path: TablePath) -> list[list[str]]:
    return [list(p) for p in path]


def table_path_from_json(obj) -> TablePath:
    return tuple(tuple(p) for p in obj)


def _columns_of(rows: list[dict]) -> dict:
    """Dense Python lists per (key, value class), None where a row lacks the key."""
    cols: dict = {}
    for j, row in enumerate(rows):
        for k, v in row.items():
            key = (k, v.__class__)
            col = cols.get(key)
            if col is None:
                col = cols[key] = [None] * j if j else []
            elif len(col) < j:
                col.extend([None] * (j - len(col)))
            col.append(v)
    n = len(rows)
    for col in cols.values():
        if len(col) < n:
            col.extend([None] * (n - len(col)))
    return cols


def _pad(arr: pa.Array, before: int, after: int) -> pa.Array:
    if not before and not after:
        return arr
    parts = []
    if before:
        parts.append(pa.nulls(before, arr.type))
    parts.append(arr)
    if after:
        parts.append(pa.nulls(after, arr.type))
    return pa.concat_arrays(parts)


def build_table(rows: Iterable[tuple[TablePath, dict]]) -> tuple[pa.Table, list, dict]:
    """Columnarise shaped rows: (Arrow table, table paths, column summary)."""
    by_table: dict[TablePath, list[dict]] = {}
    for table, row in rows:
        lst = by_table.get(table)
        if lst is None:
            lst = by_table[table] = []
        lst.append(row)
    tables = sorted(by_table, key=lambda t: (len(t), t))  # root first
    total = sum(len(v) for v in by_table.values())
    arrays: dict[str, pa.Array] = {}
    summary: dict[str, dict[str, ColumnSummary]] = {}
    table_ids = []
    start = 0
    for t_index, table in enumerate(tables):
        t_rows = by_table[table]
        n = len(t_rows)
        table_ids.append(pa.array([t_index] * n, pa.int32()) if n else None)
        t_summary: dict[str, ColumnSummary] = {}
        non_null: dict[str, int] = {}
        for (key, cls), values in _columns_of(t_rows).items():
            if key.__class__ is str:
                if key.startswith(SOURCE_KEY_PREFIX):
                    type_name, dt = JSON_TYPES.get(cls, ("string", pa.string()))
                    name = source_key_column_name(key[len(SOURCE_KEY_PREFIX):], type_name)
                else:
                    name, dt = key, SYSTEM_TYPES[key]
                    type_name = None
                path_key = None
            else:
                type_name, dt = JSON_TYPES[cls]
                name = data_column_name(t_index, key, type_name)
                path_key = compact_json(list(key))
            arr = pa.array(values, dt)
            if path_key is not None:
                s = t_summary.get(path_key)
                if s is None:
                    s = t_summary[path_key] = ColumnSummary()
                valid = len(arr) - arr.null_count
                if type_name != "null":
                    s.types[type_name] = s.types.get(type_name, 0) + valid
                    non_null[path_key] = non_null.get(path_key, 0) + valid
                elif "null" not in s.types:
                    s.types["null"] = 0
                if type_name == "string" and valid:
                    s.max_bytes = max(s.max_bytes, pc.max(pc.binary_length(arr)).as_py() or 0)
            padded = _pad(arr, start, total - start - n)
            prev = arrays.get(name)
            if prev is None:
                arrays[name] = padded
            else:  # a system column shared by several tables: fill in this table's slice
                mask = pc.is_valid(padded)
                arrays[name] = pc.if_else(mask, padded, prev)
        for path_key, s in t_summary.items():
            s.null_count = n - non_null.get(path_key, 0)
            if len(s.types) > 1:
                s.types.pop("null", None)  # "null" only marks a field never seen with a value
        summary[compact_json(table_path_to_json(table))] = t_summary
        start += n
    ids = [a for a in table_ids if a is not None]
    columns = {TABLE_COLUMN: pa.concat_arrays(ids) if ids else pa.array([], pa.int32())}
    columns.update(dict(sorted(arrays.items(), key=lambda kv: _column_order(kv[0]))))
    table = pa.table(columns)
    summary_json = {t: {p: s.to_json() for p, s in cols.items()} for t, cols in summary.items()}
    return table, [table_path_to_json(t) for t in tables], summary_json


def _column_order(name: str) -> tuple:
    kind, _ = parse_column_name(name)
    return ({"system": 0, "source_key": 1, "data": 2}[kind], name)


def encode(batch: BatchData, compression: str = "zstd") -> tuple[bytes, dict]:
    """Parquet bytes of a batch and the metadata stored in the file (and in the ledger)."""
    table, tables, summary = build_table(batch.rows)
    meta = {
        "format": FORMAT_VERSION,
        "tenant": batch.tenant,
        "stream": batch.stream,
        "tables": tables,
        "row_count": table.num_rows,
        "columns": summary,
        **batch.meta,
    }
    table = table.replace_schema_metadata(
        {METADATA_KEY: json.dumps(meta, ensure_ascii=False).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, row_group_size=256 * 1024)
    return sink.getvalue().to_pybytes(), meta


def decode(data: bytes) -> tuple[dict, pa.Table]:
    """(metadata, Arrow table) of a batch file's bytes."""
    table = pq.read_table(io.BytesIO(data))
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    return meta, table


def read_meta(data: bytes) -> dict:
    schema = pq.read_schema(io.BytesIO(data))
    return json.loads(schema.metadata[METADATA_KEY])


def rows_of_table(table: pa.Table, index: int) -> pa.Table:
    """The rows of one table of the batch, with only the columns that table uses."""
    ids = table.column(TABLE_COLUMN)
    sub = table.filter(pc.equal(ids, index))
    keep = []
    for name in sub.column_names:
        if name == TABLE_COLUMN:
            continue
        kind, info = parse_column_name(name)
        if kind == "data" and info[0] != index:
            continue
        if sub.column(name).null_count == sub.num_rows and not (
                kind == "data" and info[2] == "null"):
            continue
        keep.append(name)
    return sub.select(keep)

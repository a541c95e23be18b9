"""The batch file: one Parquet file per batch, holding a stream's root and child table rows.

Layout (format version 1, documented in docs/batch-format.md):

* ``_sdc_table`` (string) names the table a row belongs to by its table path as compact
  JSON: ``[]`` for the root, ``[["items"]]`` for the child table of the root's ``items``
  array, ``[["items"],["subs"]]`` for an array inside its elements.
* System columns have fixed names and types (``SYSTEM_TYPES``).
* ``_sdc_source_key:["<key>","<type>"]`` columns carry the root key values in child rows.
* Every data column is one (table, original field path, JSON type) and is named by the JSON
  text ``[<table path>,[<field path>...],"<type>"]``, so a field whose type drifts has one
  column per type and nothing is cast. A field seen only as null has a column of type
  ``null``.
* The file's key-value metadata ``spool`` holds the batch metadata, :class:`BatchMeta`
  (tenant, stream, window, pane, key names, Singer schema, activated table version, row and
  record counts, and the column summary the ledger also stores).

Shaped rows become an Arrow table per part (``rows_to_table``), so what travels between
pipeline steps is columnar; a batch concatenates its parts' tables (``concat``), summarises
them (``summarize``) and writes Parquet (``encode``). Everything here is plain pyarrow.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spool import sdc
from spool.ingest.shape import JSON_TYPE_NAMES, LEVEL_KEYS, SOURCE_KEY_PREFIX, TablePath

FORMAT_VERSION = 1
METADATA_KEY = b"spool"
TABLE_COLUMN = "_sdc_table"
ROOT_TABLE_KEY = "[]"  # the root table's key: its table path () as compact JSON
SOURCE_KEY_COLUMN = "_sdc_source_key:"  # + ["<key>","<type>"]: a child row's root key

TS_MS = pa.timestamp("ms", tz="UTC")
TS_US = pa.timestamp("us", tz="UTC")
SYSTEM_TYPES: dict[str, pa.DataType] = {
    TABLE_COLUMN: pa.string(),
    sdc.RECORD_ID: pa.string(),
    sdc.SEQUENCE: pa.int64(),
    sdc.RECEIVED_AT: TS_MS,
    sdc.EXTRACTED_AT: TS_US,
    sdc.TABLE_VERSION: pa.int64(),
    sdc.MAP_VERSION: pa.int64(),
    # rejected records
    sdc.REJECTED_AT: TS_MS,
    "table_name": pa.string(),
    "reason_code": pa.string(),
    "reason": pa.string(),
    "record": pa.string(),
    "raw": pa.binary(),
    **{k: pa.int64() for k in LEVEL_KEYS},
}
_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
                type(None): pa.null()}
JSON_TYPES: dict[type, tuple[str, pa.DataType]] = {
    cls: (JSON_TYPE_NAMES[cls], dt) for cls, dt in _ARROW_TYPES.items()}
_NONE = type(None)


@dataclass
class BatchMeta:
    """The batch metadata, stored in the file; its ledger row repeats part of it
    (:meth:`ledger_meta`). ``tables``, ``row_count`` and ``columns`` are filled by
    :func:`encode` from the rows."""

    tenant: str = ""
    stream: str = ""
    batch_id: str = ""
    window_start: str = ""  # ISO 8601, UTC
    window_end: str = ""
    pane: int = 0
    record_count: int = 0
    key_names: list[str] = field(default_factory=list)
    schema: dict | None = None  # the stream's Singer JSON schema, when it came from a tap
    activate_version: int | None = None  # the highest ACTIVATE_VERSION in the batch
    batched_at_ms: int = 0  # _sdc_batched_at: the newest queue time of the batch's records
    # the stream maps that made its records (spool.maps): {the map's stream: its version}
    map_versions: dict | None = None
    records_filtered: int = 0  # of record_count, those the map's filter dropped
    records_filtered_by: dict | None = None  # of those, per map: {the map's stream: records}
    # records that reached their window after it had closed (all of a late pane's): counted,
    # never dropped (docs/spool-job.md, "Late records")
    records_late: int = 0
    tables: list = field(default_factory=list)  # table paths, in file order
    row_count: int = 0
    columns: dict = field(default_factory=dict)  # the column summary (ColumnSummary)
    format: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return {"format": self.format, "tables": self.tables, "row_count": self.row_count,
                "columns": self.columns, "tenant": self.tenant, "stream": self.stream,
                "batch_id": self.batch_id, "window_start": self.window_start,
                "window_end": self.window_end, "pane": self.pane,
                "record_count": self.record_count, "key_names": list(self.key_names),
                "schema": self.schema, "activate_version": self.activate_version,
                "batched_at_ms": self.batched_at_ms, "map_versions": self.map_versions,
                "records_filtered": self.records_filtered,
                "records_filtered_by": self.records_filtered_by,
                **({"records_late": self.records_late} if self.records_late else {})}

    @classmethod
    def from_json(cls, obj: dict) -> BatchMeta:
        if obj.get("map_version") is not None and obj.get("map_versions") is None:
            # written before maps were named (Spool 0.3 development): the stream's own map
            obj = {**obj, "map_versions": {obj.get("stream", ""): obj["map_version"]}}
        known = {f for f in cls.__dataclass_fields__}
        meta = cls(**{k: v for k, v in obj.items() if k in known})
        return meta if meta.key_names is not None else replace(meta, key_names=[])

    def ledger_meta(self) -> dict:
        """What the ledger row's ``meta`` holds of it (docs/ledger.md)."""
        return {"tables": self.tables, "schema": self.schema,
                "activate_version": self.activate_version, "batched_at_ms": self.batched_at_ms,
                "map_versions": self.map_versions, "records_filtered": self.records_filtered,
                "records_filtered_by": self.records_filtered_by,
                **({"records_late": self.records_late} if self.records_late else {})}


@dataclass
class ColumnSummary:
    """What the loader needs to plan DDL for one (table, field path), without the file."""

    types: dict[str, int] = field(default_factory=dict)  # JSON type -> non-null values
    max_bytes: int = 0  # longest string value in UTF-8 bytes
    null_count: int = 0  # rows of the table without a non-null value here

    def to_json(self) -> dict:
        return {"types": self.types, "max_bytes": self.max_bytes, "null_count": self.null_count}


def compact_json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def table_key(path: TablePath) -> str:
    """A table path (tuple of field path keys) as its compact JSON key."""
    return "[" + ",".join(path) + "]"


def data_column_name(table: str, path_key: str, type_name: str) -> str:
    return f'[{table},{path_key},"{type_name}"]'


def source_key_column_name(key: str, type_name: str) -> str:
    return SOURCE_KEY_COLUMN + compact_json([key, type_name])


@functools.lru_cache(maxsize=65536)
def parse_column_name(name: str) -> tuple[str, object]:
    """('system', name) | ('source_key', (key, type)) | ('data', (table, path, type)), where
    table and path are compact JSON keys."""
    if name.startswith("["):
        table, path, type_name = json.loads(name)
        return "data", (compact_json(table), compact_json(path), type_name)
    if name.startswith(SOURCE_KEY_COLUMN):
        key, type_name = json.loads(name[len(SOURCE_KEY_COLUMN):])
        return "source_key", (key, type_name)
    return "system", name


def _typed_columns(rows: list[dict]):
    """(key, value class, Python list) per column, one per JSON type of a drifting key."""
    keys = set().union(*rows)
    for key in sorted(keys):
        values = [r.get(key) for r in rows]
        if key in SYSTEM_TYPES:  # typed by the spool job itself: nothing to sort out
            yield key, None, values
            continue
        classes = set(map(type, values))
        if len(classes) == 1 or (len(classes) == 2 and _NONE in classes):
            classes.discard(_NONE)
            yield key, (classes.pop() if classes else _NONE), values
            continue
        classes.discard(_NONE)
        for cls in sorted(classes, key=lambda c: c.__name__):
            yield key, cls, [v if v.__class__ is cls else None for v in values]


def _table_arrays(table: str, t_rows: list[dict]) -> dict[str, pa.Array]:
    arrays: dict[str, pa.Array] = {}
    for key, cls, values in _typed_columns(t_rows):
        if key[0] == "[":
            type_name, dt = JSON_TYPES[cls]
            arrays[data_column_name(table, key, type_name)] = pa.array(values, dt)
        elif key.startswith(SOURCE_KEY_PREFIX):
            type_name, dt = JSON_TYPES.get(cls, ("string", pa.string()))
            arrays[source_key_column_name(key[len(SOURCE_KEY_PREFIX):], type_name)] = \
                pa.array(values, dt)
        else:
            arrays[key] = pa.array(values, SYSTEM_TYPES[key])
    arrays[TABLE_COLUMN] = pa.array([table] * len(t_rows), pa.string())
    return arrays


def rows_to_table(rows: Iterable[tuple[TablePath, dict]]) -> pa.Table:
    """Columnarise shaped rows (any tables, any order) into one Arrow table."""
    by_table: dict[TablePath, list[dict]] = {}
    for table, row in rows:
        lst = by_table.get(table)
        if lst is None:
            lst = by_table[table] = []
        lst.append(row)
    parts = [pa.table(_table_arrays(table_key(t), by_table[t]))
             for t in sorted(by_table, key=lambda t: (len(t), t))]
    return concat(parts)


def concat(tables: list[pa.Table]) -> pa.Table:
    """One table from several (columns unified, missing ones null), columns in file order."""
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({TABLE_COLUMN: pa.array([], pa.string())})
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables,
                                                                promote_options="default")
    return table.select(sorted(table.column_names, key=_column_order))


def _column_order(name: str) -> tuple:
    if name == TABLE_COLUMN:
        return (-1, name)
    if name[0] == "[":
        return (2, name)
    return (1 if name.startswith(SOURCE_KEY_COLUMN) else 0, name)


def summarize(table: pa.Table) -> tuple[list, dict]:
    """(table paths in file order, column summary per table and field path)."""
    counts = {v["values"]: v["counts"]
              for v in pc.value_counts(table.column(TABLE_COLUMN)).to_pylist()}
    tables = sorted(counts, key=lambda t: (len(json.loads(t)), t))
    summary: dict[str, dict[str, ColumnSummary]] = {t: {} for t in tables}
    for name in table.column_names:
        kind, info = parse_column_name(name)
        if kind != "data":
            continue
        t, path, type_name = info
        col = table.column(name)
        valid = len(col) - col.null_count if type_name != "null" else 0
        s = summary[t].get(path)
        if s is None:
            s = summary[t][path] = ColumnSummary(null_count=counts[t])
        s.types[type_name] = s.types.get(type_name, 0) + valid
        s.null_count -= valid
        if type_name == "string" and valid:
            s.max_bytes = max(s.max_bytes, pc.max(pc.binary_length(col)).as_py() or 0)
    for cols in summary.values():
        for s in cols.values():
            if len(s.types) > 1:
                s.types.pop("null", None)  # "null" only marks a field never seen with a value
    return ([json.loads(t) for t in tables],
            {t: {p: s.to_json() for p, s in cols.items()} for t, cols in summary.items()})


def encode(table: pa.Table, meta: BatchMeta,
           compression: str = "snappy") -> tuple[bytes, BatchMeta]:
    """Parquet bytes of a batch table, and its metadata as stored in the file (``meta`` with
    the tables, row count and column summary of ``table``)."""
    tables, summary = summarize(table)
    meta = replace(meta, tables=tables, row_count=table.num_rows, columns=summary)
    table = table.replace_schema_metadata(
        {METADATA_KEY: json.dumps(meta.to_json(), ensure_ascii=False).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, row_group_size=256 * 1024)
    return sink.getvalue().to_pybytes(), meta


def decode(data: bytes) -> tuple[BatchMeta, pa.Table]:
    """(metadata, Arrow table) of a batch file's bytes."""
    # ParquetFile, single-threaded: batch files are small, and read_table's dataset
    # machinery costs three times the read itself
    table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    return BatchMeta.from_json(json.loads(table.schema.metadata[METADATA_KEY])), table


def rows_of_table(table: pa.Table, table_path, only: bool = False) -> pa.Table:
    """The rows of one table of the batch (path as JSON list or key), with only the columns
    that table uses. ``only``: the batch holds no other table (no rows to filter out)."""
    key = table_path if isinstance(table_path, str) else compact_json(table_path)
    sub = table if only else table.filter(pc.equal(table.column(TABLE_COLUMN), key))
    keep = []
    for name in sub.column_names:
        if name == TABLE_COLUMN:
            continue
        kind, info = parse_column_name(name)
        if kind == "data":
            if info[0] == key:
                keep.append(name)
        elif sub.column(name).null_count < sub.num_rows:
            keep.append(name)
    return sub.select(keep)


# uncompressed: parts are small (tens of rows, ~18 columns), and LZ4 per column buffer cost
# 7x the write and read time of the raw bytes for 1.6x fewer bytes (measured on the bench
# corpus); the spool job ran 0.4 s faster on 200,000 records without it
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes: parts cross process boundaries between steps."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()

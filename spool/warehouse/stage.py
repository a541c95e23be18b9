"""Staging: batch files of one stream → per-table Arrow data in warehouse terms.

For a group of batches (loaded together, in sequence order) this reads each file once and,
per table of the stream, produces the rows with one column per (field path, logical type),
the system columns, and what was observed (types, longest strings) for planning:

* a record id seen in an earlier batch of the group is dropped (with its child rows): the
  spool is at-least-once, the warehouse is not;
* strings a Singer schema marks ``date-time`` become timestamps; a value that does not
  parse keeps its text and goes to the field's ``string`` column (nothing is cast away);
* (contract v3) integers of a field the schema declares ``number`` (not ``integer``) are
  numbers (those a double holds exactly: up to 2**53), and whole numbers of a field it
  declares ``integer`` (not ``number``) are integers; other values keep their own type;
  each field notes its declared type, which takes the base name (spool.warehouse.plan). Not
  for batches a stream map made: the schema describes the records before the map;
* NUL characters are removed from strings (PostgreSQL cannot store them) and the removal is
  reported like a truncation;
* where the dialect caps VARCHAR (Redshift, 65,535 bytes), a longer string is cut at a
  character boundary and the cut is reported: the loader writes the whole record to
  ``_sdc_rejected`` with the reason.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spool import sdc
from spool.ingest import batchfile
from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse.contract import BATCH_INDEX, STAGE_ORDINAL
from spool.warehouse.plan import Observed, base_type, declared_types

TS_US = pa.timestamp("us", tz="UTC")
TS_MS = pa.timestamp("ms", tz="UTC")
TEXT_SYSTEM_COLUMNS = ("record", "reason", "table_name")
LEVEL_PREFIX = sdc.LEVEL_ID.split("{")[0]
# a sequence at least this high may be a default of the old scale (Kafka ms * 1,000,000 +
# offset mod 1,000,000; ms of 1973 and later): see rescaled_sequences
OLD_DEFAULT_FLOOR = 10**17


@dataclass
class Cut:
    """A value changed to fit the warehouse: reported in _sdc_rejected. The whole value
    stays in the batch file, which the report names."""

    record_id: str
    table: str
    path: str
    reason: str
    batch: int  # index of the batch in the group
    value: str  # the value as it was, before the change


@dataclass
class StagedTable:
    path: str  # table path key
    data: dict[tuple[str, str], pa.Array] = field(default_factory=dict)  # (path, type) → values
    system: dict[str, pa.Array] = field(default_factory=dict)
    source_keys: dict[str, pa.Array] = field(default_factory=dict)  # key name → values
    observed: Observed = field(default_factory=Observed)
    rows: int = 0


@dataclass
class StagedGroup:
    stream: str
    key_names: list[str]
    tables: dict[str, StagedTable]
    batch_ids: list[str]
    activate_version: int | None
    cuts: list[Cut]
    row_counts: list[int]  # rows per batch of the group
    # per batch of the group: {the map's stream: version} of the maps that made its records
    map_versions: list[dict | None] = field(default_factory=list)


def _parse_times(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(timestamps, leftover strings) of a string array; each row is in exactly one."""
    try:
        return pc.cast(values, TS_US), pa.nulls(len(values), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    stamps, rest = [], []
    for v in values.to_pylist():
        if v is None:
            stamps.append(None)
            rest.append(None)
            continue
        try:
            parsed = datetime.fromisoformat(v)
        except ValueError:
            stamps.append(None)
            rest.append(v)
            continue
        stamps.append(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
        rest.append(None)
    return pa.array(stamps, TS_US), pa.array(rest, pa.string())


def _plain_string(values: pa.Array) -> bool:
    return pa.types.is_string(values.type) or pa.types.is_large_string(values.type)


def _offsets(values: pa.Array) -> np.ndarray:
    """The value offsets of a string array (a null's value is empty), without copying."""
    kind = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], kind)
    return offsets[values.offset:values.offset + len(values) + 1]


def _max_bytes(values: pa.Array) -> int:
    if values.null_count == len(values):
        return 0
    if not _plain_string(values):
        return pc.max(pc.binary_length(values)).as_py() or 0
    # from the offsets: per column and load, a compute kernel call costs more than the work
    return int(np.diff(_offsets(values)).max())


def _has_nul(values: pa.Array) -> bool:
    if not _plain_string(values):
        return pc.any(pc.match_substring(values, "\x00")).as_py()
    data = values.buffers()[2]
    if data is None:
        return False
    offsets = _offsets(values)
    chars = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]]
    return bool(chars.size) and not chars.all()


def _clean_strings(values: pa.Array, limit: int | None, ids: pa.Array, batches: pa.Array,
                   table: str, path: str, cuts: list[Cut]) -> pa.Array:
    if values.null_count == len(values):
        return values
    if _has_nul(values):
        for rid, b, v in zip(ids.to_pylist(), batches.to_pylist(), values.to_pylist(),
                             strict=True):
            if v is not None and "\x00" in v:
                cuts.append(Cut(rid, table, path, "NUL characters removed (the warehouse "
                                                   "cannot store them)", b, v))
        values = pc.replace_substring(values, "\x00", "")
    if limit is not None and _max_bytes(values) > limit:
        out = []
        for rid, b, v in zip(ids.to_pylist(), batches.to_pylist(), values.to_pylist(),
                             strict=True):
            if v is not None and len(v.encode()) > limit:
                cuts.append(Cut(rid, table, path, f"value cut to {limit} bytes (the "
                                                   "warehouse's longest VARCHAR)", b, v))
                v = v.encode()[:limit].decode("utf-8", errors="ignore")
            out.append(v)
        values = pa.array(out, pa.string())
    return values


def stage_group(stream: str, files: list[tuple[str, bytes]], dialect) -> StagedGroup:
    """``files``: (batch id, file bytes) in load order."""
    return stage_batches(stream, [(b, *batchfile.decode(data)) for b, data in files],
                         dialect)


def stage_batches(stream: str, batches: list[tuple[str, batchfile.BatchMeta, pa.Table]],
                  dialect) -> StagedGroup:
    """``batches``: (batch id, metadata, rows as in a batch file) in load order."""
    limit = dialect.caps.max_varchar_bytes
    parts: dict[str, list[pa.Table]] = {}  # table path → its rows of each batch
    seen: set[str] = set()
    key_names: list[str] = []
    schema = None
    activate = None
    row_counts = []
    map_versions = [meta.map_versions for _b, meta, _t in batches]
    for index, (_batch_id, meta, table) in enumerate(batches):
        key_names = meta.key_names  # the same in every batch of a group
        schema = meta.schema or schema
        if meta.activate_version is not None:
            activate = max(activate or meta.activate_version, meta.activate_version)
        if sdc.RECORD_ID not in table.column_names:  # no rows (an activation only)
            row_counts.append(0)
            continue
        table = rescaled_sequences(table)
        tpaths = {json.dumps(t, separators=(",", ":"), ensure_ascii=False)
                  for t in meta.tables}
        if index < len(batches) - 1 or seen:  # a later batch may repeat a record id
            roots = table if tpaths == {ROOT_TABLE_KEY} else table.filter(
                pc.equal(table.column(batchfile.TABLE_COLUMN), ROOT_TABLE_KEY))
            ids = roots.column(sdc.RECORD_ID)
            dupes = pc.is_in(ids, value_set=pa.array(list(seen), pa.string())) \
                if seen else None
            if dupes is not None and pc.any(dupes).as_py():
                drop = pc.filter(ids, dupes)
                table = table.filter(pc.invert(pc.is_in(table.column(sdc.RECORD_ID),
                                                        value_set=drop)))
            seen.update(ids.to_pylist())
        n = table.num_rows
        table = table.append_column(BATCH_INDEX, pa.array(np.full(n, index, np.int32)))
        table = table.append_column(
            sdc.BATCHED_AT, pa.array(np.full(n, meta.batched_at_ms, np.int64)).cast(TS_MS))
        row_counts.append(n)
        if len(tpaths) == 1:
            parts.setdefault(tpaths.pop(), []).append(table)
            continue
        # rows ordered by table once, then each table is a slice (a filter per table cost
        # more than the rest of staging at 10,000 streams)
        names = table.column(batchfile.TABLE_COLUMN).to_numpy(zero_copy_only=False)
        order = np.argsort(names, kind="stable")
        ordered, names = table.take(pa.array(order)), names[order]
        for tpath in tpaths:
            start = int(np.searchsorted(names, tpath, side="left"))
            end = int(np.searchsorted(names, tpath, side="right"))
            parts.setdefault(tpath, []).append(ordered.slice(start, end - start))
    declared = declared_types(schema)
    # a stream map made records (it may hash, mask or rename fields): the tap's schema
    # describes them as they were, so only its date-times apply, as in contract v2
    typed = not any(map_versions)
    cuts: list[Cut] = []
    staged: dict[str, StagedTable] = {}
    for tpath, tables in parts.items():
        rows = batchfile.concat([batchfile.rows_of_table(t, tpath, only=True)
                                 for t in tables])
        # only upserts break ties by arrival: the root table of a keyed stream
        staged[tpath] = _stage_table(tpath, rows, declared, typed, limit, cuts,
                                     ranked=bool(key_names) and tpath == ROOT_TABLE_KEY)
    return StagedGroup(stream=stream, key_names=list(key_names), tables=staged,
                       batch_ids=[b for b, _m, _t in batches], activate_version=activate,
                       cuts=cuts, row_counts=row_counts, map_versions=map_versions)


def rescaled_sequences(table: pa.Table) -> pa.Table:
    """A batch file's rows with default sequences of the old scale made Kafka ms.

    Before contract v3 a record sent without a sequence got its Kafka time in ms * 1,000,000
    + offset mod 1,000,000; a batch written then and loaded now would beat every later
    default (Kafka ms) and every explicit sequence in ms. A root row holds such a default
    when its sequence is exactly that of its own Kafka time and offset: it becomes the ms,
    and so do its child rows (same record id). Explicit sequences are left alone. A file of
    today's scale costs one max."""
    if sdc.SEQUENCE not in table.column_names or sdc.RECEIVED_AT not in table.column_names:
        return table
    top = pc.max(table.column(sdc.SEQUENCE)).as_py()
    if top is None or top < OLD_DEFAULT_FLOOR:
        return table
    ids = table.column(sdc.RECORD_ID).combine_chunks()
    try:
        _partition, offsets = sdc.split_record_ids(ids)
    except (pa.ArrowInvalid, pa.ArrowIndexError):  # not queue record ids: not defaults
        return table
    seq = table.column(sdc.SEQUENCE).combine_chunks().fill_null(-1).to_numpy()
    received = table.column(sdc.RECEIVED_AT).combine_chunks().cast(pa.int64()) \
        .fill_null(-1).to_numpy()
    offsets = offsets.fill_null(0).to_numpy()
    old_root = (received >= 0) & (seq == received * 1_000_000 + offsets % 1_000_000)
    if not old_root.any():
        return table
    old = pc.is_in(ids, value_set=pc.filter(ids, pa.array(old_root))).to_numpy(
        zero_copy_only=False) & (seq >= OLD_DEFAULT_FLOOR)
    rescaled = pa.array(np.where(old, seq // 1_000_000, seq), pa.int64(),
                        mask=table.column(sdc.SEQUENCE).combine_chunks().is_null()
                        .to_numpy(zero_copy_only=False))
    return table.set_column(table.column_names.index(sdc.SEQUENCE), sdc.SEQUENCE, rescaled)


def _stage_table(tpath: str, rows: pa.Table, declared, typed: bool, limit, cuts,
                 ranked: bool) -> StagedTable:
    st = StagedTable(path=tpath, rows=rows.num_rows)
    ids = rows.column(sdc.RECORD_ID)
    batches = rows.column(BATCH_INDEX)
    depth = 0
    for name in rows.column_names:
        kind, info = batchfile.parse_column_name(name)
        col = rows.column(name).combine_chunks()
        if kind == "source_key":
            key, _json_type = info
            st.source_keys[key] = col
        elif kind == "system":
            if name.startswith(LEVEL_PREFIX):
                depth = max(depth, int(name.split("_")[3]) + 1)
            if name in TEXT_SYSTEM_COLUMNS:  # a rejected message's text can be anything
                col = _clean_strings(col, limit, ids, batches, tpath, f'["{name}"]', cuts)
            elif name == sdc.MAP_VERSION:
                st.observed.mapped = True
            st.system[name] = col
        else:
            _t, path, json_type = info
            types = declared.get((tpath, path), ())
            if typed and base_type(types):
                st.observed.declared[path] = base_type(types)
            if json_type == "null":
                st.observed.add(path, "null", 0)
                continue
            if json_type == "string":
                col = _clean_strings(col, limit, ids, batches, tpath, path, cuts)
                if "date-time" in types:
                    stamps, rest = _parse_times(col)
                    _put(st, path, "date-time", stamps)
                    if rest.null_count < len(rest):
                        _put(st, path, "string", rest)
                    continue
            other = {"integer": "number", "number": "integer"}.get(json_type)
            if typed and other in types and json_type not in types:
                moved, col = _as_declared(col, other)
                if moved.null_count < len(moved):
                    first = pc.index(pc.is_valid(moved), True).as_py()
                    st.observed.moved[(path, json_type)] = (other, first)
                    _put(st, path, other, moved)
                if col.null_count == len(col):
                    continue
            _put(st, path, json_type, col)
    if ranked:
        st.system.setdefault(STAGE_ORDINAL, arrival_ordinal(rows))
    st.observed.depth = depth
    return st


def arrival_ordinal(rows: pa.Table) -> pa.Array:
    """Each row's rank in arrival order: batch of the group, then queue partition and offset
    (from the record id ``topic/partition/offset``). Upserts break sequence ties with it, so
    the later record of a partition wins however the spool job laid out parts in the file.
    """
    n = rows.num_rows
    if not n or sdc.RECORD_ID not in rows.column_names:
        return pa.array(range(n), pa.int64())
    ids = rows.column(sdc.RECORD_ID).combine_chunks()
    try:
        partition, offset = sdc.split_record_ids(ids)
    except (pa.ArrowInvalid, pa.ArrowIndexError):  # not a queue record id: keep file order
        return pa.array(range(n), pa.int64())
    order = pa.table({"b": rows.column(BATCH_INDEX), "p": partition, "o": offset,
                      "f": pa.array(range(n), pa.int64())})
    idx = pc.sort_indices(order, [("b", "ascending"), ("p", "ascending"),
                                  ("o", "ascending"), ("f", "ascending")]).to_numpy()
    ranks = np.empty(n, dtype=np.int64)
    ranks[idx] = np.arange(n, dtype=np.int64)
    return pa.array(ranks)


def _as_declared(values: pa.Array, declared: str) -> tuple[pa.Array, pa.Array]:
    """(values as the ``declared`` type, the rest as they were): integers a double holds
    exactly become numbers; whole numbers within 64 bits become integers. Each non-null
    value is in exactly one of the two."""
    if declared == "number":
        fits = pc.less_equal(pc.abs(values), 2 ** 53)
    else:
        fits = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), 2.0 ** 63))
    fits = pc.fill_null(fits, False)
    moved = pc.cast(pc.if_else(fits, values, pa.scalar(None, values.type)),
                    pa.float64() if declared == "number" else pa.int64())
    rest = pc.if_else(fits, pa.scalar(None, values.type), values)
    return moved, rest


def _put(st: StagedTable, path: str, json_type: str, values: pa.Array) -> None:
    """Stage ``values`` as the field's ``json_type`` (with those staged as it before: the
    schema's declared type gathers values of two types)."""
    count = len(values) - values.null_count
    if not count:
        return
    key = (path, json_type)
    if key in st.data:  # one row has one value: at most one of the two is set
        values = pc.coalesce(st.data[key], values)
    st.data[key] = values
    first = 0 if not values.null_count else pc.index(pc.is_valid(values), True).as_py()
    st.observed.add(path, json_type, count,
                    _max_bytes(values) if json_type == "string" else 0, first)


def without_batches(group: StagedGroup, done: set[str]) -> StagedGroup:
    """The group minus batches already loaded (their rows dropped via the batch index)."""
    keep = [i for i, b in enumerate(group.batch_ids) if b not in done]
    if len(keep) == len(group.batch_ids):
        return group
    renumber = {old: new for new, old in enumerate(keep)}
    mask_values = pa.array(keep, pa.int32())
    # a row's batch index names its batch in the group's list: renumbered with the list
    new_index = pa.array([renumber.get(i, -1) for i in range(len(group.batch_ids))],
                         pa.int32())
    tables = {}
    for tpath, st in group.tables.items():
        mask = pc.is_in(st.system[BATCH_INDEX], value_set=mask_values)
        sub = StagedTable(path=tpath, observed=st.observed)
        sub.data = {k: pc.filter(v, mask) for k, v in st.data.items()}
        sub.system = {k: pc.filter(v, mask) for k, v in st.system.items()}
        sub.system[BATCH_INDEX] = pc.take(new_index, sub.system[BATCH_INDEX])
        sub.source_keys = {k: pc.filter(v, mask) for k, v in st.source_keys.items()}
        sub.rows = pc.sum(mask).as_py() or 0
        tables[tpath] = sub
    return StagedGroup(group.stream, group.key_names, tables,
                       [group.batch_ids[i] for i in keep], group.activate_version,
                       [dataclasses.replace(c, batch=renumber[c.batch]) for c in group.cuts
                        if c.batch in renumber],
                       [group.row_counts[i] for i in keep],
                       [group.map_versions[i] for i in keep] if group.map_versions else [])

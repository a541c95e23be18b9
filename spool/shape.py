"""Shaping: one decoded record becomes rows of a root table and of its child tables.

The rule (docs/batch-format.md has the long form):

* Nested objects are flattened; each value keeps its *original field path* (a tuple of the
  source field names, e.g. ``("customer", "address", "city")``) and its JSON type (the Python
  type of the value: str, int, float, bool or None). Column *naming* is the loader's job.
* An array at path ``p`` becomes rows of a child table whose table path is the parent's plus
  ``p``. Each child row carries the root record's key values (``_sdc_source_key_<k>``), its
  position in every enclosing array (``_sdc_level_<n>_id``, n = 0 for the outermost), the
  root's ``_sdc_record_id`` and ``_sdc_sequence``. An array element that is an object is
  flattened into the child row; a scalar goes to the field path ``("value",)``; an array
  inside an array is a grandchild table under ``("value",)``.
* Empty objects and empty arrays produce nothing. Integers beyond 64 bits are kept exactly as
  their decimal text (a string value); a float that is not finite (JSON like 1e999) is kept
  as its text.
* The root row gets the system fields ``_sdc_record_id`` (``topic/partition/offset``),
  ``_sdc_sequence`` (the envelope's, else Kafka time in ms * 1,000,000 + offset mod
  1,000,000, which orders a partition's records), ``_sdc_received_at`` (Kafka time, ms),
  ``_sdc_extracted_at`` and ``_sdc_table_version`` when given.

Row dicts use two kinds of keys: tuples are data field paths, strings are system fields.
"""

from __future__ import annotations

from collections.abc import Iterable

from spool.envelope import INT64_MAX, INT64_MIN

TablePath = tuple[tuple[str, ...], ...]  # () is the root; (("items",),) its child, ...
Row = dict  # {field path tuple | system name: value}

ROOT: TablePath = ()
VALUE_PATH = ("value",)
SOURCE_KEY_PREFIX = "_sdc_source_key_"
LEVEL_KEYS = tuple(f"_sdc_level_{n}_id" for n in range(64))


class ShapeError(ValueError):
    """The record cannot be shaped (e.g. it nests deeper than Python can walk)."""


def record_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def default_sequence(timestamp_ms: int, offset: int) -> int:
    return timestamp_ms * 1_000_000 + offset % 1_000_000


def _scalar(v):
    cls = v.__class__
    if cls is int:
        if INT64_MIN <= v <= INT64_MAX:
            return v
        return str(v)
    if cls is float and v - v != 0:  # inf or nan
        return repr(v)
    return v


def _flatten(obj: dict, prefix: tuple, out: dict, arrays: list) -> None:
    for k, v in obj.items():
        cls = v.__class__
        if cls is dict:
            if v:
                _flatten(v, (*prefix, k), out, arrays)
        elif cls is list:
            if v:
                arrays.append(((*prefix, k), v))
        elif cls is int or cls is float:
            out[(*prefix, k)] = _scalar(v)
        else:
            out[(*prefix, k)] = v


def _explode(arrays: list, table: TablePath, levels: tuple, common: dict,
             rows: list) -> None:
    depth = len(levels)
    level_key = LEVEL_KEYS[depth]
    for path, items in arrays:
        child: TablePath = (*table, path)
        child_rows = []
        for i, item in enumerate(items):
            row = dict(common)
            for d, idx in enumerate(levels):
                row[LEVEL_KEYS[d]] = idx
            row[level_key] = i
            cls = item.__class__
            if cls is dict:
                nested: list = []
                _flatten(item, (), row, nested)
                child_rows.append(row)
                if nested:
                    _explode(nested, child, (*levels, i), common, rows)
            elif cls is list:
                child_rows.append(row)
                if item:
                    _explode([(VALUE_PATH, item)], child, (*levels, i), common, rows)
            else:
                row[VALUE_PATH] = _scalar(item)
                child_rows.append(row)
        rows.extend((child, r) for r in child_rows)


def shape(
    data: dict,
    *,
    rid: str,
    sequence: int,
    received_at_ms: int,
    key_names: Iterable[str] = (),
    extracted_at_us: int | None = None,
    table_version: int | None = None,
) -> list[tuple[TablePath, Row]]:
    """Rows of the root table (first) and of child tables for one record."""
    root: Row = {}
    arrays: list = []
    try:
        _flatten(data, (), root, arrays)
        root["_sdc_record_id"] = rid
        root["_sdc_sequence"] = sequence
        root["_sdc_received_at"] = received_at_ms
        if extracted_at_us is not None:
            root["_sdc_extracted_at"] = extracted_at_us
        if table_version is not None:
            root["_sdc_table_version"] = table_version
        rows: list[tuple[TablePath, Row]] = [(ROOT, root)]
        if arrays:
            common: Row = {"_sdc_record_id": rid, "_sdc_sequence": sequence}
            if table_version is not None:
                common["_sdc_table_version"] = table_version
            for k in key_names:
                common[SOURCE_KEY_PREFIX + k] = _scalar(data[k])
            _explode(arrays, ROOT, (), common, rows)
    except RecursionError as exc:
        raise ShapeError("the record nests too deeply to be flattened") from exc
    except IndexError as exc:  # more than 64 levels of arrays
        raise ShapeError("the record nests arrays more than 64 levels deep") from exc
    return rows

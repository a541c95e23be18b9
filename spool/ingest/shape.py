"""Shaping: one decoded record becomes rows of a root table and of its child tables.

The rule (docs/batch-format.md has the long form):

* Nested objects are flattened; each value keeps its *original field path* (the list of
  source field names, e.g. ``["customer", "address", "city"]``) and its JSON type (the
  Python type of the value: str, int, float, bool or None). Column *naming* is the loader's.
* An array at path ``p`` becomes rows of a child table whose table path is the parent's plus
  ``p``. Each child row carries the root record's key values (``_sdc_source_key_<k>``), its
  position in every enclosing array (``_sdc_level_<n>_id``, n = 0 for the outermost), the
  root's ``_sdc_record_id`` and ``_sdc_sequence``. An array element that is an object is
  flattened into the child row; a scalar goes to the field path ``["value"]``; an array
  inside an array is a grandchild table under ``["value"]``.
* Empty objects and empty arrays produce nothing. Integers beyond 64 bits are kept exactly as
  their decimal text (a string value); a float that is not finite (JSON like 1e999) is kept
  as its text.
* The root row gets the system fields ``_sdc_record_id`` (``topic/partition/offset``),
  ``_sdc_sequence`` (the envelope's, else the Kafka time in ms, the scale of the envelope's
  documented example: records of one ms tie, and ties go to the later arrival),
  ``_sdc_received_at`` (Kafka time, ms),
  ``_sdc_extracted_at`` and ``_sdc_table_version`` when given.

A row is a dict with string keys: a data field's key is its path as compact JSON (always
starting with ``[``, e.g. ``["customer","address","city"]``), a system field's key is its
name (``_sdc_record_id``). Strings cache their hash, so the dicts stay cheap downstream. A
table path is a tuple of such path keys: ``()`` for the root, ``('["items"]',)`` for the
child table of the root's ``items`` array, and so on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from spool import sdc
from spool.ingest.messages import INT64_MAX, INT64_MIN

TablePath = tuple[str, ...]
Row = dict

ROOT_TABLE_PATH: TablePath = ()
WHOLE_RECORD = "[]"  # the path key of the record object itself (no field name yet)
VALUE_KEY = '["value"]'
SOURCE_KEY_PREFIX = sdc.SOURCE_KEY.format("")
LEVEL_KEYS = tuple(sdc.LEVEL_ID.format(n) for n in range(64))
# the JSON type of each Python type a shaped value has (the batch file's and warehouse's)
JSON_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean",
                   type(None): "null"}

# Path keys cached per parent path key, shared by every shaper of the worker process: the
# keys are pure functions of the field names, so whichever bundle or thread fills an entry
# fills it with the same string (dict updates are atomic under the GIL; a lost count in a
# race only moves the next clearing a little). Cleared when it grows past the limit, since
# records that use ids as field names would otherwise grow it without end.
_PATHS: dict[str, dict[str, str]] = {}
_PATH_CACHE_LIMIT = 200_000
_path_count = 0


class ShapeError(ValueError):
    """The record cannot be shaped (e.g. it nests deeper than Python can walk)."""


class InexactNumber(ValueError):
    """A float at or beyond 2**63 may be a big integer a fast JSON parser rounded; the caller
    parses the message exactly and shapes it again with ``exact=True``."""


BIG_FLOAT = 9.2e18


def _child_key(prefix: str, name: str) -> str:
    """The path key of field ``name`` under the object at path key ``prefix`` (cached)."""
    global _path_count
    children = _PATHS.get(prefix)
    if children is None:
        children = _PATHS[prefix] = {}
    key = children.get(name)
    if key is None:
        if _path_count > _PATH_CACHE_LIMIT:  # keys that are data (ids as keys) must not leak
            _PATHS.clear()
            _path_count = 0
            children = _PATHS[prefix] = {}
        enc = json.dumps(name, ensure_ascii=False)
        key = children[name] = f"[{enc}]" if prefix == WHOLE_RECORD else f"{prefix[:-1]},{enc}]"
        _path_count += 1
    return key


def default_sequence(timestamp_ms: int) -> int:
    """The sequence of a record sent without one: its Kafka time in ms, the scale of an
    explicit sequence in epoch ms (docs/envelope.md), so the two compare as times. Records of
    one ms tie; upserts break ties by arrival (queue partition and offset, then load)."""
    return timestamp_ms


def _scalar(v):
    cls = v.__class__
    if cls is int:
        if INT64_MIN <= v <= INT64_MAX:
            return v
        return str(v)
    if cls is float and v - v != 0:  # inf or nan
        return repr(v)
    return v


def _flatten(obj: dict, prefix: str, out: dict, arrays: list, exact: bool) -> None:
    children = _PATHS.get(prefix)
    for k, v in obj.items():
        key = children.get(k) if children is not None else None
        if key is None:
            key = _child_key(prefix, k)
            children = _PATHS.get(prefix)
        cls = v.__class__
        if cls is dict:
            if v:
                _flatten(v, key, out, arrays, exact)
        elif cls is list:
            if v:
                arrays.append((key, v))
        elif cls is int or cls is float:
            if not exact and cls is float and (v >= BIG_FLOAT or v <= -BIG_FLOAT):
                raise InexactNumber
            out[key] = _scalar(v)
        else:
            out[key] = v


def _explode(arrays: list, table: TablePath, levels: tuple, common: dict,
             rows: list, exact: bool) -> None:
    depth = len(levels)
    level_key = LEVEL_KEYS[depth]
    for key, items in arrays:
        child: TablePath = (*table, key)
        child_rows = []
        for i, item in enumerate(items):
            row = dict(common)
            for d, idx in enumerate(levels):
                row[LEVEL_KEYS[d]] = idx
            row[level_key] = i
            cls = item.__class__
            if cls is dict:
                nested: list = []
                _flatten(item, WHOLE_RECORD, row, nested, exact)
                child_rows.append(row)
                if nested:
                    _explode(nested, child, (*levels, i), common, rows, exact)
            elif cls is list:
                child_rows.append(row)
                if item:
                    _explode([(VALUE_KEY, item)], child, (*levels, i), common, rows, exact)
            else:
                if not exact and cls is float and (item >= BIG_FLOAT or item <= -BIG_FLOAT):
                    raise InexactNumber
                row[VALUE_KEY] = _scalar(item)
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
    map_version: int | None = None,
    exact: bool = True,
) -> list[tuple[TablePath, Row]]:
    """Rows of the root table (first) and of child tables for one record.

    ``exact=False`` says ``data`` came from a parser that rounds big integers to floats:
    shaping then raises InexactNumber at the first float beyond 64-bit integer range.
    """
    root: Row = {}
    arrays: list = []
    try:
        _flatten(data, WHOLE_RECORD, root, arrays, exact)
        root[sdc.RECORD_ID] = rid
        root[sdc.SEQUENCE] = sequence
        root[sdc.RECEIVED_AT] = received_at_ms
        if extracted_at_us is not None:
            root[sdc.EXTRACTED_AT] = extracted_at_us
        if table_version is not None:
            root[sdc.TABLE_VERSION] = table_version
        if map_version is not None:
            root[sdc.MAP_VERSION] = map_version
        rows: list[tuple[TablePath, Row]] = [(ROOT_TABLE_PATH, root)]
        if arrays:
            common: Row = {sdc.RECORD_ID: rid, sdc.SEQUENCE: sequence}
            if table_version is not None:
                common[sdc.TABLE_VERSION] = table_version
            for k in key_names:
                common[SOURCE_KEY_PREFIX + k] = _scalar(data[k])
            _explode(arrays, ROOT_TABLE_PATH, (), common, rows, exact)
    except RecursionError as exc:
        raise ShapeError("the record nests too deeply to be flattened") from exc
    except IndexError as exc:  # more than 64 levels of arrays
        raise ShapeError("the record nests arrays more than 64 levels deep") from exc
    return rows

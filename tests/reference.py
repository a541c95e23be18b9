"""An independent reference model of the warehouse contract, for the corpus in corpus.py.

It computes, from the input messages alone, what every warehouse table must hold: table
names, the base column name of every field path, and the rows (as {field path: value}),
with upsert streams reduced to the latest record per key and child tables per array. It
shares no code with spool/ on purpose.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict

from tests.corpus import Message


def norm(name: str) -> str:
    """The naming rule, re-implemented for the names the corpus uses."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))
    s = re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")
    return s or "field"


def flatten(obj: dict, prefix=()) -> tuple[dict, dict]:
    """({path tuple: scalar}, {path tuple: list}) of one object."""
    scalars, arrays = {}, {}
    for k, v in obj.items():
        path = (*prefix, k)
        if isinstance(v, dict):
            s, a = flatten(v, path)
            scalars.update(s)
            arrays.update(a)
        elif isinstance(v, list):
            if v:
                arrays[path] = v
        elif v is not None:
            scalars[path] = v
    return scalars, arrays


def expected_tables(messages: list[Message], ids: list[str]) -> dict:
    """{(tenant, table name): {"rows": [(record id, level ids, {path: value})],
    "paths": set of paths}}"""
    latest: dict = {}
    order: list = []
    for rid, m in zip(ids, messages, strict=True):
        if m.expect != "valid":
            continue
        key = (m.tenant, m.stream, m.data["id"]) if m.key_names else (m.tenant, m.stream, rid)
        prev = latest.get(key)
        if prev is None:
            order.append(key)
        if prev is None or m.sequence >= prev[1].sequence:
            latest[key] = (rid, m)
    tables: dict = defaultdict(lambda: {"rows": [], "paths": set()})
    for key in order:
        rid, m = latest[key]
        root_name = norm(m.stream)
        scalars, arrays = flatten(m.data)
        t = tables[(m.tenant, root_name)]
        t["rows"].append((rid, (), scalars))
        t["paths"].update(scalars)
        for path, items in arrays.items():
            child = tables[(m.tenant, root_name + "__" + "__".join(norm(p) for p in path))]
            for i, item in enumerate(items):
                row = flatten(item)[0] if isinstance(item, dict) else {("value",): item}
                child["rows"].append((rid, (i,), row))
                child["paths"].update(row)
    return tables


def canonical(value):
    """Values as the warehouse returns them, comparable with JSON input, and tagged with
    their type (in Python True == 1; here they differ)."""
    if isinstance(value, float):
        return ("float", round(value, 9))
    return (type(value).__name__, value)


def rows_from_warehouse(cur, schema: str, table: str, level_columns: int) -> list:
    """[(record id, level ids, {path: value})] read back through the table's column map."""
    cur.execute(f'SELECT source, column_name FROM "{schema}"."_sdc_columns" '
                "WHERE table_name = %s", (table,))
    mapping = {col: tuple(json.loads(src)) for src, col in cur.fetchall()}
    cols = list(mapping)
    levels = [f"_sdc_level_{n}_id" for n in range(level_columns)]
    select = ", ".join(f'"{c}"' for c in ["_sdc_record_id", *levels, *cols])
    cur.execute(f'SELECT {select} FROM "{schema}"."{table}"')
    out = []
    for row in cur.fetchall():
        rid, lv, values = row[0], tuple(row[1:1 + len(levels)]), row[1 + len(levels):]
        data = {}
        for col, v in zip(cols, values, strict=True):
            if v is not None:
                assert mapping[col] not in data, f"{table}: two columns hold {mapping[col]}"
                data[mapping[col]] = v
        out.append((rid, lv, data))
    return out

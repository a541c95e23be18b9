"""The batch file format: columns per (table, path, type), summary, round trip."""

from __future__ import annotations

import pyarrow as pa

from spool.ingest import batchfile
from spool.ingest.parts import Part
from spool.ingest.shape import shape
from spool.ingest.writer import assemble, batch_key, merge_parts


def rows(*records, key_names=("id",)):
    out = []
    for i, data in enumerate(records):
        out.extend(shape(data, rid=f"q/0/{i}", sequence=i, received_at_ms=1_000 + i,
                         key_names=key_names))
    return out


def test_type_drift_gets_one_column_per_type_and_nothing_is_cast():
    table = batchfile.rows_to_table(rows({"id": 1, "amount": 5}, {"id": 2, "amount": "5.00"},
                                         {"id": 3, "amount": 2.5}, {"id": 4, "amount": None}))
    assert table.column('[[],["amount"],"integer"]').to_pylist() == [5, None, None, None]
    assert table.column('[[],["amount"],"string"]').to_pylist() == [None, "5.00", None, None]
    assert table.column('[[],["amount"],"number"]').to_pylist() == [None, None, 2.5, None]
    _, summary = batchfile.summarize(table)
    assert summary["[]"]['["amount"]'] == {"types": {"integer": 1, "string": 1, "number": 1},
                                           "max_bytes": 4, "null_count": 1}


def test_summary_and_round_trip_through_parquet():
    data = rows({"id": 1, "name": "Zoë", "items": [{"sku": "a"}, {"sku": "bb"}], "n": None},
                {"id": 2, "name": "東京", "items": []})
    table = batchfile.rows_to_table(data)
    blob, meta = batchfile.encode(table, batchfile.BatchMeta(tenant="acme", stream="orders"))
    assert meta.tables == [[], [["items"]]]
    assert meta.columns["[]"]['["name"]'] == {"types": {"string": 2}, "max_bytes": 6,
                                              "null_count": 0}
    assert meta.columns["[]"]['["n"]'] == {"types": {"null": 0}, "max_bytes": 0,
                                           "null_count": 2}
    assert meta.columns['[["items"]]']['["sku"]']["max_bytes"] == 2
    meta2, back = batchfile.decode(blob)
    assert meta2 == meta
    root = batchfile.rows_of_table(back, [])
    assert root.column("_sdc_record_id").to_pylist() == ["q/0/0", "q/0/1"]
    assert "_sdc_level_0_id" not in root.column_names
    items = batchfile.rows_of_table(back, [["items"]])
    assert items.column('[[["items"]],["sku"],"string"]').to_pylist() == ["a", "bb"]
    assert items.column('_sdc_source_key:["id","integer"]').to_pylist() == [1, 1]
    assert items.column("_sdc_level_0_id").to_pylist() == [0, 1]
    assert root.schema.field("_sdc_received_at").type == pa.timestamp("ms", tz="UTC")
    assert "_sdc_received_at" not in items.column_names


def test_parts_travel_as_arrow_and_merge():
    a, b = Part(rows=rows({"id": 1, "x": 1})), Part(rows=rows({"id": 2, "y": "z"}))
    a.note_record("q/0", 5, 10, 1_000)
    b.note_record("q/1", 3, 20, 1_500)
    back = [Part.loads(p.dumps()) for p in (a, b)]
    merged = merge_parts(back)
    assert merged.n_rows == 2 and merged.records == 2 and merged.bytes == 30
    assert merged.offsets == {"q/0": [5, 5, 1], "q/1": [3, 3, 1]}
    assert set(merged.table.column_names) >= {'[[],["x"],"integer"]', '[[],["y"],"string"]'}


def test_batch_names_come_from_content_only():
    def part(ids):
        p = Part(rows=[r for i in ids for r in shape({"id": i}, rid=f"q/2/{i}", sequence=i,
                                                      received_at_ms=0)])
        for i in ids:
            p.note_record("q/2", i, 1, 0)
        return p.seal()

    k1 = batch_key("a.b", "x/y z", 120_000, 3, part([4, 5]))
    k2 = batch_key("a.b", "x/y z", 120_000, 3, part([4, 5]))
    k3 = batch_key("a.b", "x/y z", 120_000, 3, part([4, 6]))
    assert k1 == k2 != k3
    assert k1.startswith("a.b/x%2Fy%20z/19700101T000200Z/00003-2-4-")
    uri, blob, record = assemble("acme", "orders", 0, 60_000, 0, part([1, 2]), "s3://b/p",
                                 batched_at_ms=5)
    assert uri == f"s3://b/p/{record.batch_id}.parquet"
    assert (record.record_count, record.row_count, record.file_bytes) == (2, 2, len(blob))

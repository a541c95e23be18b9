"""What a user can read about the changes Spool made to their schema, and about each load.

``_sdc_schema_changes`` is pinned by a golden file per dialect (Redshift's SQL run on
PostgreSQL) for one stream that goes through every kind of change; ``_sdc_loads`` is checked
against counts worked out by hand. SPOOL_UPDATE_GOLDEN=1 rewrites the golden files.
"""

from __future__ import annotations

import psycopg2
import pytest

from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.parts import Part, rejected_row
from spool.ingest.writer import assemble
from spool.warehouse import CONTRACT_VERSION
from spool.warehouse.load import Loader
from spool.warehouse.report import CHANGE_KINDS
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import CopyStdinStager
from tests.integration.test_loader_postgres import PG, RS, load, rows
from tests.unit.test_contract_golden import check
from tests.warehouse_helpers import make_batch


@pytest.fixture
def wh(stack, pg_schema):
    conn = psycopg2.connect(stack.warehouse_dsn)
    yield conn, pg_schema
    conn.close()


def changes_as_read(wh, batch_names: dict[str, str]) -> list[dict]:
    """The schema change log as SQL returns it, with what differs between runs (times,
    load ids, batch ids) replaced by stable names."""
    got = rows(wh, "SELECT changed_at, load_id, kind, stream, table_name, column_name, "
                   "source, json_type, old_type, new_type, batch_id, detail, contract_version "
                   "FROM S._sdc_schema_changes ORDER BY changed_at, load_id, position")
    loads: dict[str, str] = {}
    out = []
    for (_at, load_id, kind, stream, table, column, source, json_type, old, new, batch,
         detail, version) in got:
        loads.setdefault(load_id, f"load {len(loads) + 1}")
        out.append({k: v for k, v in {
            "load": loads[load_id], "kind": kind, "stream": stream, "table": table,
            "column": column, "source": source, "json_type": json_type, "old_type": old,
            "new_type": new, "batch": batch_names.get(batch, batch), "detail": detail,
            "contract_version": version}.items() if v is not None})
    return out


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_schema_change_log_names_every_kind_of_change(wh, dialect):
    d = RS if dialect == "redshift" else PG
    names: dict[str, str] = {}

    def batch(name, records, **kw):
        batch_id, data = make_batch("orders", records, key_names=["id"], **kw)
        names[batch_id] = name
        return batch_id, data

    # 1: the table and a child table are created
    load(wh, "orders", batch("b1", [{"id": 1, "note": "short", "amount": 10,
                                     "items": [{"sku": "a"}]}], table_version=1), dialect=d)
    conn, schema = wh
    with conn, conn.cursor() as cur:  # an analyst's view on the table
        cur.execute(f'CREATE VIEW "{schema}".order_notes AS SELECT id, note FROM '
                    f'"{schema}".orders')
    # 2: a stream map's first version makes the records: a new column, a split column
    # (amount arrives as a string), a longer note
    load(wh, "orders", batch("b2", [{"id": 2, "note": "a note far longer than thirty-two "
                                     "bytes, so Redshift widens its VARCHAR", "amount": "ten",
                                     "coupon": "X1"}], table_version=1, map_version=1),
         dialect=d)
    # 3: table version 2 becomes active
    load(wh, "orders", batch("b3", [{"id": 3, "note": "v2"}], table_version=2,
                             activate_version=2), dialect=d)
    # 4 (contract v3): the stream's Singer schema declares amount a number: its integers
    # go to a number column (added, as a split column) instead of the integer column
    load(wh, "orders", batch("b4", [{"id": 4, "amount": 12}], table_version=2,
                             schema={"properties": {"amount": {"type": "number"}}}), dialect=d)
    got = changes_as_read(wh, names)
    check(f"schema_changes_{dialect}.json", got)
    kinds = {c["kind"] for c in got}
    expected = set(CHANGE_KINDS) if dialect == "redshift" else \
        set(CHANGE_KINDS) - {"column_widened", "view_rebuilt"}  # text never widens
    assert kinds == expected
    assert {c["contract_version"] for c in got} == {CONTRACT_VERSION}
    # the analyst's view survived the widening
    assert rows(wh, "SELECT id FROM S.order_notes ORDER BY id") == [(3,), (4,)]


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_load_report_counts_what_each_table_gained_and_lost(wh, dialect):
    # PostgreSQL reads its per-transaction row counters; Redshift's SQL counts with queries
    d = RS if dialect == "redshift" else PG
    first = load(wh, "users", make_batch("users", [
        {"id": 1, "name": "a", "tags": ["x", "y"]}, {"id": 2, "name": "b"},
        {"id": 3, "name": "c"}], key_names=["id"], sequences=[5, 5, 5]), dialect=d)
    (report_users,) = [r for r in first.reports if r.table == "users"]
    assert (report_users.rows_inserted, report_users.rows_updated) == (3, 0)
    assert [r.rows_inserted for r in first.reports if r.table == "users__tags"] == [2]
    # key 1 newer (updated, its tags replaced), key 2 older than stored (loses), key 4 new
    second = load(wh, "users", make_batch("users", [
        {"id": 1, "name": "a2", "tags": ["z"]}, {"id": 2, "name": "old"},
        {"id": 4, "name": "d"}], key_names=["id"], sequences=[6, 4, 6]), dialect=d)
    by_table = {r.table: r for r in second.reports}
    # key 2's record lost to the stored higher sequence: superseded, not silently nothing
    assert (by_table["users"].rows_inserted, by_table["users"].rows_updated,
            by_table["users"].rows_superseded) == (1, 1, 1)
    assert by_table["users__tags"].rows_inserted == 1
    assert by_table["users"].max_received_at >= by_table["users"].min_received_at
    # an append-only stream: a record delivered twice goes in once
    bid, data = make_batch("clicks", [{"n": 1}, {"n": 2}], offsets=[900, 901])
    load(wh, "clicks", (bid, data), dialect=d)
    again = load(wh, "clicks", make_batch("clicks", [{"n": 2}, {"n": 3}], offsets=[901, 902]),
                 dialect=d)
    assert [(r.rows_inserted, r.rows_updated) for r in again.reports] == [(1, 0)]
    # the warehouse has the same, for SQL
    stored = rows(wh, "SELECT table_name, rows_inserted, rows_updated, rows_superseded, "
                      "rows_retired FROM S._sdc_loads WHERE load_id = %s ORDER BY table_name",
                  second.reports[0].load_id)
    assert stored == [("users", 1, 1, 1, 0), ("users__tags", 1, 0, 0, 0)]


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_load_report_counts_rows_a_table_version_retires(wh, dialect):
    d = RS if dialect == "redshift" else PG
    load(wh, "plans", make_batch("plans", [{"id": i, "tier": "free"} for i in range(4)],
                                 key_names=["id"], table_version=1), dialect=d)
    result = load(wh, "plans", make_batch("plans", [{"id": 9, "tier": "pro"}],
                                          key_names=["id"], table_version=2,
                                          activate_version=2), dialect=d)
    (report,) = result.reports
    assert (report.rows_inserted, report.rows_retired) == (1, 4)
    assert rows(wh, "SELECT count(*) FROM S.plans") == [(1,)]


class _BrokenStager(CopyStdinStager):
    """Stages nothing: the load fails after its DDL ran, inside its transaction."""

    def stage(self, *args, **kwargs):
        raise RuntimeError("staging failed")


def test_a_load_that_fails_leaves_no_change_in_the_log_nor_in_the_schema(wh):
    load(wh, "items", make_batch("items", [{"id": 1}], key_names=["id"]))
    conn, schema = wh
    with pytest.raises(RuntimeError, match="staging failed"):
        Loader(PG, _BrokenStager()).load(conn, schema, stage_group(
            "items", [make_batch("items", [{"id": 2, "colour": "red"}], key_names=["id"])],
            PG))
    assert rows(wh, "SELECT kind, column_name FROM S._sdc_schema_changes ORDER BY position") \
        == [("table_created", None), ("column_added", "id")]
    assert rows(wh, "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = 'items' AND column_name = 'colour'", schema) == [(0,)]
    assert rows(wh, "SELECT count(*) FROM S._sdc_loads") == [(1,)]


def test_load_report_counts_rejections_by_reason_and_by_stream(wh):
    dec = Decoder(DecodeRules(), lambda t: t == "acme", lambda t, s: None)
    part = Part()
    raws = [b'{"tenant": "acme", "stream": "orders", "record": {"id": 1}}', b"{oops",
            b'{"tenant": "acme", "stream": "orders", "data": {"id": 2}, "colour": 1}']
    for i, raw in enumerate(raws):
        part.rows.append(((), rejected_row(dec.decode(raw), f"q/0/{700 + i}", 1, 2, raw)))
        part.note_record("q/0", 700 + i, len(raw), 0)
    _uri, data, record = assemble("acme", "_sdc_rejected", 0, 60_000, 0, part, "/unused", 3)
    conn, schema = wh
    groups = [stage_group("orders", [make_batch("orders", [{"id": 3}], key_names=["id"])], PG),
              stage_group("_sdc_rejected", [(record.batch_id, data)], PG)]
    result = Loader(PG, CopyStdinStager()).load(conn, schema, groups)
    by_table = {r.table: r for r in result.reports}
    assert by_table["_sdc_rejected"].rejected_by_reason == {"unknown_field": 2, "not_json": 1}
    assert by_table["_sdc_rejected"].rows_inserted == 3
    assert (by_table["orders"].rows_inserted, by_table["orders"].rows_rejected) == (1, 2)


def test_a_load_found_committed_hands_on_its_report_again(wh):
    """The loader died after the warehouse commit, before the ledger heard: the retry finds
    the batches in the load log, loads nothing, and returns the first load's report and
    changes, so the ledger and the webhooks still get them."""
    conn, schema = wh
    batches = [make_batch("tags", [{"id": 1, "t": "a"}], key_names=["id"])]
    first = Loader(PG, CopyStdinStager()).load(conn, schema, stage_group("tags", batches, PG))
    again = Loader(PG, CopyStdinStager()).load(conn, schema, stage_group("tags", batches, PG))
    assert (again.loaded, again.skipped) == ([], first.loaded)
    assert [(r.load_id, r.table, r.rows_inserted) for r in again.reports] == \
        [(r.load_id, r.table, r.rows_inserted) for r in first.reports]
    assert [(c.kind, c.column) for c in again.changes] == \
        [(c.kind, c.column) for c in first.changes]


def test_a_schema_of_contract_v1_is_upgraded_by_its_next_load(wh):
    conn, schema = wh
    load(wh, "legacy", make_batch("legacy", [{"id": 1}], key_names=["id"]))
    with conn, conn.cursor() as cur:  # as Spool 0.1 left it
        cur.execute(f'DROP TABLE "{schema}"._sdc_loads, "{schema}"._sdc_schema_changes')
        cur.execute(f'ALTER TABLE "{schema}"._sdc_load_log DROP COLUMN load_id')
        cur.execute(f'UPDATE "{schema}"._sdc_contract SET version = 1')
    # a new loader (a new process) meets the schema for the first time
    result = Loader(PG, CopyStdinStager()).load(conn, schema, stage_group(
        "legacy", [make_batch("legacy", [{"id": 2, "new": "x"}], key_names=["id"])], PG))
    assert rows(wh, "SELECT version FROM S._sdc_contract ORDER BY version") == \
        [(1,), (CONTRACT_VERSION,)]
    assert rows(wh, "SELECT kind, column_name FROM S._sdc_schema_changes") == \
        [("column_added", "new")]
    assert rows(wh, "SELECT count(*) FROM S._sdc_load_log WHERE load_id = %s",
                result.reports[0].load_id) == [(1,)]


def test_a_schema_of_contract_v2_gets_the_superseded_column_with_its_next_load(wh):
    conn, schema = wh
    load(wh, "legacy", make_batch("legacy", [{"id": 1}], key_names=["id"], sequences=[5]))
    with conn, conn.cursor() as cur:  # as Spool 0.2 left it
        cur.execute(f'ALTER TABLE "{schema}"._sdc_loads DROP COLUMN rows_superseded')
        cur.execute(f'UPDATE "{schema}"._sdc_contract SET version = 2')
    result = Loader(PG, CopyStdinStager()).load(conn, schema, stage_group(
        "legacy", [make_batch("legacy", [{"id": 1}], key_names=["id"], sequences=[4])], PG))
    assert rows(wh, "SELECT version FROM S._sdc_contract ORDER BY version") == [(2,), (3,)]
    assert rows(wh, "SELECT rows_superseded FROM S._sdc_loads ORDER BY finished_at") == \
        [(None,), (1,)]
    assert [r.rows_superseded for r in result.reports] == [1]


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_default_sequences_stored_before_contract_v3_become_ms_and_lose_to_updates(wh,
                                                                                  dialect):
    d = RS if dialect == "redshift" else PG
    conn, schema = wh
    ms = 1_700_000_000_000  # make_batch's records arrive at this + their offset
    explicit = (ms + 5_000) * 1_000_000  # an explicit sequence in ns: not a default

    def old(offset: int) -> int:  # what Spool 0.2 gave a record sent without a sequence
        return (ms + offset) * 1_000_000 + offset % 1_000_000

    load(wh, "users", make_batch("users", [{"id": 1, "tags": ["a"]}, {"id": 2},
                                           {"id": 3, "tags": ["c"]}], key_names=["id"],
                                 offsets=[61, 62, 63], sequences=[0, explicit, 0]), dialect=d)
    with conn, conn.cursor() as cur:  # as Spool 0.2 left them
        for table in ("users", "users__tags"):
            for offset in (61, 63):
                cur.execute(f'UPDATE "{schema}".{table} SET _sdc_sequence = %s '
                            "WHERE _sdc_record_id = %s", (old(offset), f"q/0/{offset}"))
        cur.execute(f'ALTER TABLE "{schema}"._sdc_loads DROP COLUMN rows_superseded')
        cur.execute(f'UPDATE "{schema}"._sdc_contract SET version = 2')
    # a loader of v3 meets the schema: key 1 again, sent without a sequence a second later
    second = load(wh, "users", make_batch("users", [{"id": 1, "tags": ["b"]}],
                                          key_names=["id"], offsets=[1061],
                                          sequences=[ms + 1061]), dialect=d)
    (users,) = [r for r in second.reports if r.table == "users"]
    assert (users.rows_updated, users.rows_superseded) == (1, 0)
    assert rows(wh, "SELECT id, _sdc_sequence FROM S.users ORDER BY id") == \
        [(1, ms + 1061), (2, explicit), (3, ms + 63)]
    assert rows(wh, "SELECT _sdc_record_id, _sdc_sequence FROM S.users__tags ORDER BY 1") == \
        [("q/0/1061", ms + 1061), ("q/0/63", ms + 63)]


def test_rejections_that_name_no_stream_are_counted_by_reason(wh):
    dec = Decoder(DecodeRules(), lambda t: t == "acme", lambda t, s: None)
    part = Part()
    for i, raw in enumerate([b"{oops", b"[1]"]):
        part.rows.append(((), rejected_row(dec.decode(raw), f"q/0/{800 + i}", 1, 2, raw)))
        part.note_record("q/0", 800 + i, len(raw), 0)
    _uri, data, record = assemble("acme", "_sdc_rejected", 0, 60_000, 0, part, "/unused", 3)
    conn, schema = wh
    result = Loader(PG, CopyStdinStager()).load(
        conn, schema, [stage_group("_sdc_rejected", [(record.batch_id, data)], PG)])
    (report,) = result.reports
    assert report.rejected_by_reason == {"not_json": 1, "not_object": 1}

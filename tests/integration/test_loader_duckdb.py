"""The load transaction on a real DuckDB database file (embedded: nothing to start).

The golden input's rows as DuckDB holds them are pinned like PostgreSQL's; upserts, appends
deduplicated by record id, split columns, table versions and the schema change log behave as
the contract says for PostgreSQL.
"""

from __future__ import annotations

import duckdb
import pytest

from spool.warehouse.dialects.duckdb import DUCKDB
from spool.warehouse.duckdb_session import DuckDBConnection, literal, render
from spool.warehouse.load import Loader
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import DuckDBArrowStager
from tests.unit.test_contract_golden import check, golden_input
from tests.warehouse_helpers import (
    AFTER_V3_TAGS,
    AFTER_V3_USERS,
    MAPPED_CHANGES,
    MAPPED_ROWS,
    before_v3,
    make_batch,
    mapped_loads,
)


def load(conn, stream, *batches):
    return Loader(DUCKDB, DuckDBArrowStager()).load(conn, "tenant",
                                                    stage_group(stream, list(batches), DUCKDB))


def rows(path, sql):
    db = duckdb.connect(path, read_only=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("version", ["v1", "v3"])
def test_golden_rows_on_duckdb(tmp_path, version):
    spec, batch = golden_input(version=version)
    conn = DuckDBConnection(str(tmp_path / "wh.duckdb"))
    load(conn, spec["stream"], batch)
    tables = {}
    cur = conn.cursor()
    cur.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'tenant' AND "
                "table_name NOT IN ('_sdc_load_log', '_sdc_contract', '_sdc_loads', "
                "'_sdc_schema_changes') ORDER BY 1")
    for (table,) in cur.fetchall():
        cur.execute(f'SELECT * FROM "tenant"."{table}"')
        names = [c[0] for c in cur.description]
        got = [{n: str(v) for n, v in zip(names, row, strict=True)
                if v is not None and n not in ("created_at",)} for row in cur.fetchall()]
        tables[table] = sorted(got, key=lambda r: sorted(r.items()))
    conn.close()
    check(f"contract_{version}_duckdb_rows.json", tables)


def test_upserts_appends_versions_and_the_change_log_on_duckdb(tmp_path):
    path = str(tmp_path / "wh.duckdb")
    conn = DuckDBConnection(path)
    load(conn, "users", make_batch("users", [{"id": 1, "name": "a", "tags": ["x"]},
                                             {"id": 2, "name": "b"}],
                                   key_names=["id"], sequences=[5, 5], table_version=1))
    second = load(conn, "users", make_batch("users", [
        {"id": 1, "name": "it's new", "tags": ["y", "z"], "age": "unknown"},
        {"id": 2, "name": "older", "age": 7}], key_names=["id"], sequences=[6, 4],
        table_version=1))
    by_table = {r.table: r for r in second.reports}
    # key 2's record (sequence 4) lost to the stored one (5): reported as superseded
    assert (by_table["users"].rows_inserted, by_table["users"].rows_updated,
            by_table["users"].rows_superseded) == (0, 1, 1)
    bid, data = make_batch("clicks", [{"n": 1}, {"n": 2}], offsets=[900, 901])
    load(conn, "clicks", (bid, data))
    again = load(conn, "clicks", make_batch("clicks", [{"n": 2}, {"n": 3}], offsets=[901, 902]))
    assert [r.rows_inserted for r in again.reports] == [1]
    assert load(conn, "clicks", (bid, data)).skipped == [bid]  # loaded once, ever
    retire = load(conn, "users", make_batch("users", [{"id": 9, "name": "v2"}],
                                            key_names=["id"], table_version=2,
                                            activate_version=2))
    assert [(r.table, r.rows_retired) for r in retire.reports if r.table == "users"] == \
        [("users", 2)]
    conn.close()
    assert rows(path, 'SELECT id, name FROM tenant.users ORDER BY id') == [(9, "v2")]
    assert rows(path, "SELECT n FROM tenant.clicks ORDER BY n") == [(1,), (2,), (3,)]
    assert rows(path, "SELECT kind, table_name, column_name, new_type FROM "
                      "tenant._sdc_schema_changes WHERE load_id = "
                      f"'{second.reports[0].load_id}' ORDER BY position") == [
        ("column_added", "users", "age", "VARCHAR"),
        ("split_column_added", "users", "age__it", "BIGINT")]


def test_rows_say_which_stream_map_made_them_and_each_newer_version_is_logged_on_duckdb(
        tmp_path):
    path = str(tmp_path / "wh.duckdb")
    conn = DuckDBConnection(path)
    for batches in mapped_loads():
        load(conn, "users", *batches)
    conn.close()
    assert rows(path, "SELECT id, _sdc_map_version FROM tenant.users ORDER BY id") == \
        MAPPED_ROWS
    assert rows(path, "SELECT source, old_type, new_type FROM tenant._sdc_schema_changes "
                      "WHERE kind = 'map_changed' ORDER BY changed_at, position") == \
        MAPPED_CHANGES


def test_changes_of_a_load_retried_with_a_batch_loaded_before_name_their_own_batch(tmp_path):
    path = str(tmp_path / "wh.duckdb")
    conn = DuckDBConnection(path)
    b1 = make_batch("users", [{"id": 1, "name": "a"}], key_names=["id"])
    b2 = make_batch("users", [{"id": 2, "full_name": "b"}], key_names=["id"], map_version=2)
    load(conn, "users", b1)
    load(conn, "users", b1, b2)  # b1 is skipped: b2's rows are the load's first
    conn.close()
    assert rows(path, "SELECT batch_id, detail FROM tenant._sdc_schema_changes WHERE "
                      "column_name = 'full_name'") == \
        [(b2[0], "in a batch under stream map v2 of users")]


def test_a_map_version_that_only_filtered_is_logged_with_the_first_rows_it_lets_through(
        tmp_path):
    path = str(tmp_path / "wh.duckdb")
    conn = DuckDBConnection(path)
    load(conn, "users", make_batch("users", [], key_names=["id"], map_version=1))
    later = make_batch("users", [{"id": 1}], key_names=["id"], map_version=1)
    load(conn, "users", later)
    conn.close()
    assert rows(path, "SELECT table_name, new_type, batch_id FROM tenant._sdc_schema_changes "
                      "WHERE kind = 'map_changed'") == [("users", "v1", later[0])]


def test_values_are_rendered_as_literals_that_round_trip():
    db = duckdb.connect()
    nasty = "it's %s; DROP TABLE x; -- 100% \\ \"q\""
    assert db.execute(render("SELECT %s, '100%%'", [nasty])).fetchall() == [(nasty, "100%")]
    assert db.execute("SELECT " + render("%(a)s, %(b)s", {"a": nasty, "b": None})
                      ).fetchall() == [(nasty, None)]
    assert db.execute("SELECT 1 WHERE 'b' IN " + literal(("a", "b"))).fetchall() == [(1,)]


def test_default_sequences_stored_before_contract_v3_become_ms_on_duckdb(tmp_path):
    path = str(tmp_path / "wh.duckdb")
    conn = DuckDBConnection(path)

    def execute(sql):
        with conn, conn.cursor() as cur:
            cur.execute(sql)

    second = before_v3(lambda batch: load(conn, "users", batch), execute,
                       "tenant.users", "tenant.users__tags", "tenant._sdc_loads",
                       "tenant._sdc_contract")
    conn.close()
    (users,) = [r for r in second.reports if r.table == "users"]
    assert (users.rows_updated, users.rows_superseded) == (1, 0)
    assert rows(path, "SELECT id, _sdc_sequence FROM tenant.users ORDER BY id") == \
        AFTER_V3_USERS
    assert rows(path, "SELECT _sdc_record_id, _sdc_sequence FROM tenant.users__tags "
                      "ORDER BY 1") == AFTER_V3_TAGS

"""The load transaction on Snowflake, as fakesnow emulates it.

fakesnow puts the Snowflake connector's API over an in-memory DuckDB: it translates each
statement from Snowflake SQL, keeps table stages (``PUT``) on local disk, runs ``COPY INTO``
from Parquet with ``MATCH_BY_COLUMN_NAME``, and commits before and after DDL as Snowflake
does. It is an emulator: what it cannot check (names compared without case, VARCHAR length,
``COPY`` from S3, locks between sessions) is listed in docs/warehouse-contract.md, and the
opt-in test_snowflake_real.py runs the same loads on a real account.
"""

from __future__ import annotations

import json
import warnings

import fakesnow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from spool.ledger.store import Ledger
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore, S3Config
from spool.warehouse import evolve
from spool.warehouse import merge as merge_module
from spool.warehouse.destination import Destination
from spool.warehouse.dialects.snowflake import SNOWFLAKE
from spool.warehouse.history import schema_changes
from spool.warehouse.load import Loader
from spool.warehouse.snowflake_session import SnowflakeConnection, SnowflakeCursor, render
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import SnowflakeStager
from tests import nasty
from tests.integration.test_cli import spool as cli
from tests.integration.test_tenant_loader import spool as spool_batch
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

URL = "snowflake://spool:not-a-secret@test_account/analytics?warehouse=load_wh"
SYSTEM_TABLES = ("_sdc_load_log", "_sdc_contract", "_sdc_loads", "_sdc_schema_changes",
                 "_sdc_stage", "_sdc_tables", "_sdc_columns")


@pytest.fixture
def snowflake():
    """A fresh emulated Snowflake account; the connection the loader would open."""
    with warnings.catch_warnings():
        # fakesnow's own notes on copies of Arrow results
        warnings.simplefilter("ignore", UserWarning)
        with fakesnow.patch():
            conn = SnowflakeConnection(URL)
            yield conn
            conn.close()


def load(conn, stream, *batches, schema="tenant"):
    return Loader(SNOWFLAKE, SnowflakeStager()).load(
        conn, schema, stage_group(stream, list(batches), SNOWFLAKE))


def query(conn, sql, params=None):
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur.fetchall()


def user_tables(conn, schema="tenant"):
    return sorted(t for (t,) in query(conn, "SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = %s", (schema,))
                  if t not in SYSTEM_TABLES and t != "_sdc_rejected")


@pytest.mark.parametrize("version", ["v1", "v3"])
def test_golden_rows_on_snowflake(snowflake, version):
    spec, batch = golden_input(version=version)
    load(snowflake, spec["stream"], batch)
    tables = {}
    cur = snowflake.cursor()
    for (table,) in query(snowflake, "SELECT table_name FROM information_schema.tables WHERE "
                                     "table_schema = 'tenant' AND table_name NOT IN ("
                                     "'_sdc_load_log', '_sdc_contract', '_sdc_loads', "
                                     "'_sdc_schema_changes')"):
        cur.execute(f'SELECT * FROM "tenant"."{table}"')
        names = [c[0] for c in cur.description]
        got = [{n: str(v) for n, v in zip(names, row, strict=True)
                if v is not None and n != "created_at"} for row in cur.fetchall()]
        tables[table] = sorted(got, key=lambda r: sorted(r.items()))
    check(f"contract_{version}_snowflake_rows.json", tables)


def test_upserts_appends_versions_and_the_change_log_on_snowflake(snowflake):
    load(snowflake, "users", make_batch("users", [{"id": 1, "name": "a", "tags": ["x"]},
                                                  {"id": 2, "name": "b"}],
                                        key_names=["id"], sequences=[5, 5], table_version=1))
    second = load(snowflake, "users", make_batch("users", [
        {"id": 1, "name": "it's new \\ 100%", "tags": ["y", "z"], "age": "unknown"},
        {"id": 2, "name": "older", "age": 7}], key_names=["id"], sequences=[6, 4],
        table_version=1))
    by_table = {r.table: r for r in second.reports}
    # key 2's record (sequence 4) lost to the stored one (5): reported as superseded
    assert (by_table["users"].rows_inserted, by_table["users"].rows_updated,
            by_table["users"].rows_superseded) == (0, 1, 1)
    assert query(snowflake, 'SELECT "name" FROM "tenant"."users" ORDER BY "id"') == \
        [("it's new \\ 100%",), ("b",)]
    assert query(snowflake, 'SELECT "value" FROM "tenant"."users__tags" ORDER BY 1') == \
        [("y",), ("z",)]
    # a record replaced as a whole: the fields its new version lacks are NULL, not kept
    load(snowflake, "users", make_batch("users", [{"id": 1, "tags": ["w"]}],
                                        key_names=["id"], sequences=[7], table_version=1))
    assert query(snowflake, 'SELECT "name", "age" FROM "tenant"."users" WHERE "id" = 1') == \
        [(None, None)]
    bid, data = make_batch("clicks", [{"n": 1}, {"n": 2}], offsets=[900, 901])
    load(snowflake, "clicks", (bid, data))
    again = load(snowflake, "clicks", make_batch("clicks", [{"n": 2}, {"n": 3}],
                                                 offsets=[901, 902]))
    assert [r.rows_inserted for r in again.reports] == [1]
    assert load(snowflake, "clicks", (bid, data)).skipped == [bid]  # loaded once, ever
    retire = load(snowflake, "users", make_batch("users", [{"id": 9, "name": "v2"}],
                                                 key_names=["id"], table_version=2,
                                                 activate_version=2))
    assert [(r.table, r.rows_retired) for r in retire.reports if r.table == "users"] == \
        [("users", 2)]
    assert query(snowflake, 'SELECT "id", "name" FROM "tenant"."users"') == [(9, "v2")]
    assert query(snowflake, 'SELECT "n" FROM "tenant"."clicks" ORDER BY 1') == \
        [(1,), (2,), (3,)]
    assert query(snowflake, 'SELECT kind, table_name, column_name, new_type FROM '
                            '"tenant"."_sdc_schema_changes" WHERE load_id = %s ORDER BY '
                            'position', (second.reports[0].load_id,)) == [
        ("column_added", "users", "age", "VARCHAR"),
        ("split_column_added", "users", "age__it", "NUMBER(38,0)")]


def test_rows_say_which_stream_map_made_them_and_each_newer_version_is_logged_on_snowflake(
        snowflake):
    for batches in mapped_loads():
        load(snowflake, "users", *batches)
    assert query(snowflake, 'SELECT "id", "_sdc_map_version" FROM "tenant"."users" '
                            'ORDER BY 1') == MAPPED_ROWS
    assert query(snowflake, 'SELECT source, old_type, new_type FROM '
                            '"tenant"."_sdc_schema_changes" WHERE kind = \'map_changed\' '
                            'ORDER BY changed_at, position') == MAPPED_CHANGES


def test_a_load_whose_ddl_committed_before_it_died_is_completed_by_its_retry(
        snowflake, monkeypatch):
    """Snowflake commits before and after every DDL statement: a load that dies after its
    DDL leaves the tables it created. Its names were committed with them, so the retry
    loads into those tables (it does not take them for a user's and name its own
    page_views_2), and the schema changes are logged once."""
    spec, batch = golden_input()

    def die(name):
        if name == "load.ddl":
            raise RuntimeError("the loader died after its DDL")

    monkeypatch.setattr(evolve, "failpoint", die)
    with pytest.raises(RuntimeError):
        load(snowflake, spec["stream"], batch)
    assert "page_views" in user_tables(snowflake)  # the DDL stayed
    assert query(snowflake, 'SELECT count(*) FROM "tenant"."page_views"') == [(0,)]
    monkeypatch.undo()
    retry = load(snowflake, spec["stream"], batch)
    assert retry.loaded == [batch[0]]
    tables = user_tables(snowflake)
    assert not [t for t in tables if t.endswith("_2")], tables
    assert query(snowflake, 'SELECT count(*) FROM "tenant"."page_views"') == [(2,)]
    logged = query(snowflake, 'SELECT kind, table_name, column_name FROM '
                              '"tenant"."_sdc_schema_changes" ORDER BY position')
    assert len(logged) == len(set(logged)) == len(retry.changes)
    assert {(c.kind, c.table, c.column) for c in retry.changes} == set(logged)


def test_a_load_that_dies_after_its_copy_leaves_the_tables_as_they_were(snowflake,
                                                                        monkeypatch):
    """The rows, the load log and the reports of a load are one transaction on Snowflake
    too (only DDL commits on its own): a load that dies after its rows were copied into the
    stage leaves nothing there or anywhere, and its retry loads the batch once. (fakesnow
    commits a MERGE, which it runs around a temporary table; a death after the MERGE is
    the opt-in live test's.)"""
    load(snowflake, "users", make_batch("users", [{"id": 1, "name": "a"}, {"id": 2}],
                                        key_names=["id"], sequences=[1, 1]))
    batch = make_batch("users", [{"id": 1, "name": "b"}, {"id": 3, "name": "c"}],
                       key_names=["id"], sequences=[2, 2])

    def die(name):
        if name == "load.copy":
            raise RuntimeError("the loader died after its COPY")

    monkeypatch.setattr(merge_module, "failpoint", die)
    with pytest.raises(RuntimeError):
        load(snowflake, "users", batch)
    rows = 'SELECT "id", "name" FROM "tenant"."users" ORDER BY "id"'
    assert query(snowflake, rows) == [(1, "a"), (2, None)]
    assert query(snowflake, 'SELECT count(*) FROM "tenant"."_sdc_stage"') == [(0,)]
    assert query(snowflake, 'SELECT count(*) FROM "tenant"."_sdc_load_log"') == [(1,)]
    monkeypatch.undo()
    retry = load(snowflake, "users", batch)
    assert [(r.rows_inserted, r.rows_updated) for r in retry.reports] == [(1, 1)]
    assert query(snowflake, rows) == [(1, "b"), (2, None), (3, "c")]


def _statements(text: str) -> list[exp.Expression]:
    return [e for e in sqlglot.parse(text, read="snowflake") if e is not None]


def test_every_statement_a_load_sends_parses_as_snowflake_sql_for_the_nasty_corpus(
        snowflake, monkeypatch):
    """The nasty corpus's records (odd names, unicode, SQL in names and values) loaded as
    new tables, merged by key, appended, and a table version activated: every statement
    the loader sent parses with sqlglot's Snowflake dialect into a statement it models."""
    sent: list[str] = []
    execute = SnowflakeCursor.execute

    def recording(self, sql, params=None):
        text = sql.decode() if isinstance(sql, bytes) else sql
        sent.append(render(text, params))
        return execute(self, sql, params)

    monkeypatch.setattr(SnowflakeCursor, "execute", recording)
    records = [json.loads(c.value)["data"] for c in nasty.CASES if c.expect == "record"
               and isinstance(json.loads(c.value).get("data"), dict)]
    assert len(records) > 10
    for stream in ['orders', 'odd "stream"', "100% sure", "naïve café", "select"]:
        keyed = [{**r, "id": i} for i, r in enumerate(records)]
        load(snowflake, stream, make_batch(stream, keyed, key_names=["id"]))
        # a field seen late (a column added), and one whose type changes (a split column)
        later = [{**r, 'late "field" %s': i, "id": i if i % 2 else str(i)}
                 for i, r in enumerate(keyed)]
        load(snowflake, stream, make_batch(stream, later[::-1], key_names=["id"],
                                           table_version=2, activate_version=2))
        load(snowflake, stream + " log", make_batch(stream + " log", records))
        load(snowflake, stream + " log", make_batch(stream + " log", records[:3]))
    kinds = set()
    for text in sent:
        for statement in _statements(text):
            assert not isinstance(statement, exp.Command), text[:300]
            kinds.add(type(statement).__name__)
    assert {"Create", "Alter", "Insert", "Delete", "Update", "Merge", "Copy", "Put",
            "Select"} <= kinds
    # run once, when a v3 loader upgrades a schema (the contract_v3 test runs them)
    for sql in SNOWFLAKE.bookkeeping.rescale_sequences('"s"."users"', ['"s"."users__tags"']):
        assert isinstance(sqlglot.parse_one(sql, read="snowflake"), exp.Update), sql


def test_rows_for_s3_staging_are_parquet_and_copied_with_the_storage_integration(
        stack, s3_prefix):
    """With --staging-uri and --storage-integration the file goes to S3 (the local S3
    endpoint here) and COPY reads it from there. fakesnow cannot read S3 (its DuckDB has no
    httpfs extension here), so this checks the file and the statement; the opt-in live test
    runs the COPY."""
    spec, batch = golden_input()
    group = stage_group(spec["stream"], [batch], SNOWFLAKE)

    class Recorder:
        sent: list[str] = []

        def execute(self, sql, params=None):
            self.sent.append(sql)

    store = ObjectStore(S3Config(endpoint_url=stack.s3_endpoint,
                                 access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                                 secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"]))
    staging = f"s3://{stack.s3_bucket}/{s3_prefix}snowflake"
    stager = SnowflakeStager(store, staging, "SPOOL_S3")
    root = group.tables["[]"]
    arrays = {f"c{i}": v for i, v in enumerate([*root.data.values(), *root.system.values()])}
    cur = Recorder()
    stager.stage_parts(cur, SNOWFLAKE, '"tenant"."page_views"', list(arrays),
                       [pa.table(arrays)])
    (copy,) = cur.sent
    statement = sqlglot.parse_one(copy, read="snowflake")
    assert isinstance(statement, exp.Copy)
    assert "STORAGE_INTEGRATION = SPOOL_S3" in copy and "MATCH_BY_COLUMN_NAME" in copy
    uri = copy.split("FROM '")[1].split("'")[0]
    assert uri.startswith(staging + "/") and uri.endswith(".parquet")
    staged = pq.read_table(pa.BufferReader(store.read(uri)))
    assert staged.column_names == list(arrays) and staged.num_rows == root.rows


def test_a_snowflake_tenant_is_registered_and_loaded_by_the_tenant_loader(
        snowflake, ledger_dsn, tmp_path, monkeypatch):
    rc, _, err = cli(ledger_dsn, "tenants", "add", "initech", "--warehouse", "snowflake")
    assert rc == 2 and "--dsn env:NAME" in err
    rc, _, err = cli(ledger_dsn, "tenants", "add", "initech", "--warehouse", "snowflake",
                     "--dsn", URL)
    assert rc == 2 and "holds a password" in err
    rc, _, err = cli(ledger_dsn, "tenants", "add", "initech", "--warehouse", "snowflake",
                     "--dsn", "env:INITECH_SNOWFLAKE", "--staging-uri", "s3://b/p")
    assert rc == 2 and "--storage-integration NAME" in err
    rc, _, err = cli(ledger_dsn, "tenants", "add", "initech", "--warehouse", "snowflake",
                     "--dsn", "env:INITECH_SNOWFLAKE", "--staging-uri", "s3://b/p",
                     "--storage-integration", "x; DROP")
    assert rc == 2 and "not a Snowflake identifier" in err
    rc, _, err = cli(ledger_dsn, "tenants", "add", "initech", "--warehouse", "snowflake",
                     "--dsn", "env:INITECH_SNOWFLAKE", "--schema", "initech")
    assert rc == 0, err
    monkeypatch.setenv("INITECH_SNOWFLAKE", URL)
    ledger = Ledger(ledger_dsn)
    first = spool_batch(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}, {"id": 2}],
                        tenant="initech")
    second = spool_batch(ledger, tmp_path, "orders", [{"id": 1, "amount": 7, "note": "x"}],
                         tenant="initech")
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    attempts = list(loader.load("initech", ["orders"]))
    assert [a.status for a in attempts] == [Status.LOADED], attempts
    assert set(attempts[0].batch_ids) == {first, second}
    assert query(snowflake, 'SELECT "id", "amount", "note" FROM "initech"."orders" '
                            'ORDER BY "id"') == [(1, 7, "x"), (2, None, None)]
    # what 'spool changes' reads (the CLI itself runs in a process fakesnow does not reach)
    dest = Destination.register("initech", "snowflake", dsn="env:INITECH_SNOWFLAKE",
                                schema="initech")
    assert sorted((kind, table, column or "") for _at, _t, table, kind, column, *_ in
                  schema_changes(dest)) == [("column_added", "orders", "amount"),
                                            ("column_added", "orders", "id"),
                                            ("column_added", "orders", "note"),
                                            ("table_created", "orders", "")]


def test_values_are_rendered_as_snowflake_literals_that_round_trip(snowflake):
    from datetime import UTC, datetime

    odd = "it's %s; DROP TABLE x; -- 100% \\ \"q\" \\n"
    at = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)
    assert query(snowflake, "SELECT %s, %s, '100%%'", (odd, at)) == [(odd, at, "100%")]
    assert query(snowflake, "SELECT 1 WHERE 'b' IN %s", (("a", "b"),)) == [(1,)]


def test_default_sequences_stored_before_contract_v3_become_ms_on_snowflake(snowflake):
    def execute(sql):
        with snowflake, snowflake.cursor() as cur:
            cur.execute(sql)

    second = before_v3(lambda batch: load(snowflake, "users", batch), execute,
                       '"tenant"."users"', '"tenant"."users__tags"', '"tenant"."_sdc_loads"',
                       '"tenant"."_sdc_contract"')
    (users,) = [r for r in second.reports if r.table == "users"]
    assert (users.rows_updated, users.rows_superseded) == (1, 0)
    assert query(snowflake, 'SELECT "id", "_sdc_sequence" FROM "tenant"."users" '
                            'ORDER BY "id"') == AFTER_V3_USERS
    assert query(snowflake, 'SELECT "_sdc_record_id", "_sdc_sequence" FROM '
                            '"tenant"."users__tags" ORDER BY 1') == AFTER_V3_TAGS

"""The loader against a real PostgreSQL: names, types, merges, customisations, dialects."""

from __future__ import annotations

import dataclasses

import psycopg2
import psycopg2.extensions
import pytest
import sqlglot
from sqlglot import exp

from spool.warehouse.dialects import DIALECTS
from spool.warehouse.load import Loader
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import CopyStdinStager
from tests.warehouse_helpers import make_batch

# Redshift's SQL where PostgreSQL accepts it; Redshift-only clauses (its stage tables) get
# PostgreSQL's equivalent (their Redshift text is parsed with sqlglot below)
PG = DIALECTS["postgres"]
RS = dataclasses.replace(DIALECTS["redshift"], staging=PG.staging)


class RecordingCursor(psycopg2.extensions.cursor):
    statements: list[str] = []

    def execute(self, query, vars=None):
        RecordingCursor.statements.append(query)
        return super().execute(query, vars)

    def executemany(self, query, vars_list):
        RecordingCursor.statements.append(query)
        return super().executemany(query, vars_list)

    def copy_expert(self, sql, file, size=8192):
        RecordingCursor.statements.append(sql)
        return super().copy_expert(sql, file, size)


@pytest.fixture
def wh(stack, pg_schema):
    conn = psycopg2.connect(stack.warehouse_dsn, cursor_factory=RecordingCursor)
    yield conn, pg_schema
    conn.close()


def load(wh, stream, *batches, dialect=PG):
    conn, schema = wh
    group = stage_group(stream, list(batches), dialect)
    return Loader(dialect, CopyStdinStager()).load(conn, schema, group)


def rows(wh, sql, *params):
    conn, schema = wh
    with conn, conn.cursor() as cur:
        cur.execute(sql.replace("S.", f'"{schema}".'), params)
        return cur.fetchall()


def columns(wh, table):
    conn, schema = wh
    with conn, conn.cursor() as cur:
        cur.execute("SELECT column_name, data_type, character_maximum_length FROM "
                    "information_schema.columns WHERE table_schema = %s AND table_name = %s "
                    "ORDER BY ordinal_position", (schema, table))
        return {name: (t, n) for name, t, n in cur.fetchall()}


def test_nested_objects_arrays_and_friendly_names(wh):
    load(wh, "pageViews", make_batch("pageViews", [
        {"id": 1, "firstName": "Zoë", "select": "s", "user": {"order": 3, "Größe": 1.5},
         "items": [{"sku": "a", "qty": 2}, {"sku": "b"}], "tags": ["x", "y"]}],
        key_names=["id"]))
    cols = columns(wh, "page_views")
    assert {"id", "first_name", "select", "user__order", "user__grosse", "_sdc_record_id",
            "_sdc_sequence", "_sdc_received_at", "_sdc_batched_at", "_sdc_extracted_at",
            "_sdc_table_version"} <= set(cols)
    assert cols["user__grosse"][0] == "double precision" and cols["id"][0] == "bigint"
    assert rows(wh, 'SELECT "select", user__order FROM S.page_views') == [("s", 3)]
    items = rows(wh, "SELECT _sdc_source_key_id, _sdc_level_0_id, sku, qty FROM "
                     "S.page_views__items ORDER BY 2")
    assert items == [(1, 0, "a", 2), (1, 1, "b", None)]
    assert rows(wh, "SELECT value FROM S.page_views__tags ORDER BY _sdc_level_0_id") == \
        [("x",), ("y",)]
    assert rows(wh, "SELECT table_path, table_name FROM S._sdc_tables ORDER BY 2") == [
        ("[]", "page_views"), ('[["items"]]', "page_views__items"),
        ('[["tags"]]', "page_views__tags")]


def test_upsert_keeps_the_highest_sequence_and_replaces_child_rows(wh):
    load(wh, "users", make_batch("users", [
        {"id": 1, "v": "one", "pets": ["cat", "dog"]}, {"id": 2, "v": "two", "pets": ["fish"]}],
        key_names=["id"], sequences=[10, 10]))
    # same batch of changes, out of order: 2 is older than what is stored, 1 is newer
    load(wh, "users", make_batch("users", [
        {"id": 1, "v": "one-b", "pets": []}, {"id": 2, "v": "two-old", "pets": ["x"]},
        {"id": 3, "v": "three"}], key_names=["id"], sequences=[11, 5, 1]))
    assert rows(wh, "SELECT id, v FROM S.users ORDER BY id") == \
        [(1, "one-b"), (2, "two"), (3, "three")]
    # 1's new version has no pets: its old child rows are gone; 2 kept its own
    assert rows(wh, "SELECT _sdc_source_key_id, value FROM S.users__pets ORDER BY 1") == \
        [(2, "fish")]
    # an equal sequence replaces (the later arrival wins)
    load(wh, "users", make_batch("users", [{"id": 3, "v": "three-b"}], key_names=["id"],
                                 sequences=[1]))
    assert rows(wh, "SELECT v FROM S.users WHERE id = 3") == [("three-b",)]


def test_duplicates_in_one_batch_keep_the_latest(wh):
    load(wh, "s", make_batch("s", [{"id": 1, "v": "a"}, {"id": 1, "v": "b"},
                                   {"id": 1, "v": "c"}], key_names=["id"], sequences=[5, 7, 7]))
    assert rows(wh, "SELECT v FROM S.s") == [("c",)]


def test_many_tables_merge_through_one_stage_that_is_empty_after_the_load(wh):
    conn, schema = wh
    loader = Loader(PG, CopyStdinStager())

    def load_all(n):
        groups = [stage_group("narrow", [make_batch("narrow", [{"id": 1, "v": n}],
                                                    key_names=["id"], sequences=[n])], PG),
                  stage_group("events", [make_batch("events", [{"e": n, "tags": ["a"]}],
                                                    offsets=[n])], PG)]
        if n > 1:  # a stream with more columns than the stage has yet
            wide = {f"c{i}": i for i in range(30)}
            groups.append(stage_group("wide", [make_batch("wide", [wide],
                                                          offsets=[n])], PG))
        loader.load(conn, schema, groups)

    for n in (1, 2, 3):  # first load creates the tables; then both merge into them
        load_all(n)
    assert rows(wh, "SELECT id, v FROM S.narrow") == [(1, 3)]
    assert rows(wh, "SELECT e FROM S.events ORDER BY e") == [(1,), (2,), (3,)]
    assert rows(wh, "SELECT count(*) FROM S.events__tags") == [(3,)]
    assert rows(wh, "SELECT count(*), min(c29) FROM S.wide") == [(2, 29)]
    helpers = rows(wh, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                       "c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' AND "
                       "c.relname NOT IN ('narrow', 'events', 'events__tags', 'wide') "
                       "AND c.relname NOT IN (SELECT table_name FROM S._sdc_tables) "
                       "ORDER BY 1", schema)
    assert [h for (h,) in helpers if not h.startswith(("_sdc_contract", "_sdc_tables",
                                                      "_sdc_columns", "_sdc_load_log",
                                                      "_sdc_rejected", "_sdc_loads",
                                                      "_sdc_schema_changes"))] == ["_sdc_stage"]
    assert rows(wh, "SELECT count(*) FROM S._sdc_stage") == [(0,)]


def test_append_deduplicates_records_spooled_twice(wh):
    first = make_batch("events", [{"n": 1, "a": [1]}, {"n": 2}], offsets=[100, 101])
    again = make_batch("events", [{"n": 2}, {"n": 3, "a": [3]}], offsets=[101, 102])
    load(wh, "events", first)
    load(wh, "events", again)
    assert rows(wh, "SELECT n FROM S.events ORDER BY n") == [(1,), (2,), (3,)]
    assert rows(wh, "SELECT value FROM S.events__a ORDER BY value") == [(1,), (3,)]
    # two copies of a record inside one load go in once too
    load(wh, "events", make_batch("events", [{"n": 4}], offsets=[200]),
         make_batch("events", [{"n": 4}], offsets=[200], pane=1))
    assert rows(wh, "SELECT count(*) FROM S.events WHERE n = 4") == [(1,)]


def test_a_batch_in_the_load_log_is_never_loaded_twice(wh):
    batch = make_batch("s", [{"a": 1}])
    assert load(wh, "s", batch).loaded == [batch[0]]
    again = load(wh, "s", batch)
    assert again.loaded == [] and again.skipped == [batch[0]]
    assert rows(wh, "SELECT count(*) FROM S.s") == [(1,)]
    assert rows(wh, "SELECT batch_id FROM S._sdc_load_log") == [(batch[0],)]
    # every load looks its batch ids up in the log, which only grows: that stays indexed
    _conn, schema = wh
    indexes = rows(wh, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s "
                       "AND tablename = '_sdc_load_log'", schema)
    assert any("(batch_id)" in d for (d,) in indexes), indexes


def test_type_drift_goes_to_split_columns_and_the_first_type_keeps_the_name(wh):
    load(wh, "m", make_batch("m", [{"x": 1, "y": "a"}]))
    load(wh, "m", make_batch("m", [{"x": "one", "y": 2.5}, {"x": True, "y": "b"}]))
    cols = columns(wh, "m")
    assert cols["x"][0] == "bigint" and cols["x__st"][0] == "text"
    assert cols["x__bo"][0] == "boolean"
    assert cols["y"][0] == "text" and cols["y__fl"][0] == "double precision"
    assert rows(wh, "SELECT x, x__st, x__bo, y, y__fl FROM S.m ORDER BY _sdc_sequence") == [
        (1, None, None, "a", None), (None, "one", None, None, 2.5), (None, None, True, "b", None)]


def test_user_customisations_survive_loads_that_add_columns(wh):
    conn, schema = wh
    load(wh, "orders", make_batch("orders", [{"id": 1, "total": 5}], key_names=["id"]))
    with conn, conn.cursor() as cur:
        cur.execute(f'CREATE INDEX my_idx ON "{schema}".orders (total)')
        cur.execute(f'ALTER TABLE "{schema}".orders ADD COLUMN my_note text DEFAULT \'mine\'')
        cur.execute(f'COMMENT ON TABLE "{schema}".orders IS \'my orders\'')
        cur.execute("DO $$ BEGIN CREATE ROLE spool_test_analyst; EXCEPTION WHEN "
                    "duplicate_object THEN NULL; END $$")
        cur.execute(f'GRANT SELECT ON "{schema}".orders TO spool_test_analyst')
        cur.execute(f'CREATE VIEW "{schema}".big_orders AS SELECT id, total FROM '
                    f'"{schema}".orders WHERE total > 1')
    load(wh, "orders", make_batch("orders", [{"id": 2, "total": 7, "brandNew": "x"}],
                                  key_names=["id"]))
    assert "brand_new" in columns(wh, "orders")
    assert rows(wh, "SELECT id, my_note FROM S.orders ORDER BY id") == [(1, "mine"), (2, "mine")]
    assert rows(wh, "SELECT id FROM S.big_orders ORDER BY id") == [(1,), (2,)]
    assert rows(wh, "SELECT obj_description(%s::regclass)", f'"{schema}".orders') == \
        [("my orders",)]
    assert rows(wh, "SELECT has_table_privilege('spool_test_analyst', %s, 'SELECT')",
                f'"{schema}".orders') == [(True,)]
    assert rows(wh, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = "
                    "'my_idx'", schema) == [(1,)]


def test_redshift_varchar_widens_under_a_dependent_view(wh):
    conn, schema = wh
    load(wh, "notes", make_batch("notes", [{"id": 1, "text": "short"}], key_names=["id"]),
         dialect=RS)
    assert columns(wh, "notes")["text"] == ("character varying", 32)
    with conn, conn.cursor() as cur:
        cur.execute("DO $$ BEGIN CREATE ROLE spool_test_analyst; EXCEPTION WHEN "
                    "duplicate_object THEN NULL; END $$")
        cur.execute(f'CREATE VIEW "{schema}".note_texts AS SELECT id, text FROM "{schema}".notes')
        cur.execute(f'CREATE VIEW "{schema}".note_lengths AS SELECT id, length(text) AS n '
                    f'FROM "{schema}".note_texts')
        cur.execute(f'GRANT SELECT ON "{schema}".note_texts TO spool_test_analyst')
        cur.execute(f'COMMENT ON VIEW "{schema}".note_texts IS \'for analysts\'')
        # a name and a comment that a parameterised statement would misread
        cur.execute(f'CREATE VIEW "{schema}"."100% notes" AS SELECT text FROM "{schema}".notes')
        cur.execute(f'COMMENT ON VIEW "{schema}"."100% notes" IS \'it\'\'s %s, 100%%\'')
    long_text = "ü" * 100  # 200 bytes
    load(wh, "notes", make_batch("notes", [{"id": 2, "text": long_text}], key_names=["id"]),
         dialect=RS)
    assert columns(wh, "notes")["text"] == ("character varying", 256)
    assert rows(wh, "SELECT n FROM S.note_lengths WHERE id = 2") == [(100,)]
    assert rows(wh, "SELECT obj_description(%s::regclass)", f'"{schema}".note_texts') == \
        [("for analysts",)]
    assert rows(wh, "SELECT obj_description(%s::regclass)", f'"{schema}"."100% notes"') == \
        [("it's %s, 100%%",)]
    assert rows(wh, "SELECT has_table_privilege('spool_test_analyst', %s, 'SELECT')",
                f'"{schema}".note_texts') == [(True,)]


def test_redshift_cuts_values_over_65535_bytes_and_reports_them(wh):
    big = "€" * 30_000  # 90,000 bytes
    load(wh, "docs", make_batch("docs", [{"id": 1, "body": big, "info": {"note": big}}],
                                key_names=["id"]), dialect=RS)
    (body,) = rows(wh, "SELECT body FROM S.docs")[0]
    assert len(body.encode()) <= 65535 and big.startswith(body) and len(body) == 21845
    cut = rows(wh, "SELECT reason, record, reason_code FROM S._sdc_rejected ORDER BY reason")
    assert [code for _r, _rec, code in cut] == ["value_cut", "value_cut"]
    # each reason names the table and column a user can query, and where the value is whole
    reasons = [r for r, _rec, _c in cut]
    assert "column body of table docs," in reasons[0] and "65535" in reasons[0]
    assert "column info__note of table docs," in reasons[1]
    assert all("acme/docs/" in r for r in reasons)  # the batch whose file keeps the value
    for _r, record, _c in cut:
        assert len(record.encode()) <= 65535 and record.startswith('{"_sdc_record_id": "q/0/')


def test_long_names_are_cut_and_collisions_numbered_stably(wh):
    long_a = "a" * 80 + "x"
    long_b = "a" * 80 + "y"
    load(wh, "t", make_batch("t", [{long_a: 1, long_b: 2, "Name": "n", "name": "m"}]))
    cols = columns(wh, "t")
    assert "a" * 63 in cols and "a" * 61 + "_2" in cols
    assert {"name", "name_2"} <= set(cols)
    mapping = dict(rows(wh, "SELECT source, column_name FROM S._sdc_columns WHERE "
                            "table_name = 't'"))
    assert mapping['["Name"]'] == "name" and mapping['["name"]'] == "name_2"
    # the same paths keep their columns, whatever order later batches bring them in
    load(wh, "t", make_batch("t", [{"name": "later", "Name": "later-N", long_b: 3}]))
    assert rows(wh, 'SELECT "name", name_2 FROM S.t ORDER BY _sdc_sequence') == \
        [("n", "m"), ("later-N", "later")]


def test_sql_in_names_and_a_dotted_schema(stack):
    conn = psycopg2.connect(stack.warehouse_dsn)
    schema = 'a.b"; DROP SCHEMA public; --'
    try:
        load((conn, schema), 'x"; DROP TABLE t; --', make_batch(
            'x"; DROP TABLE t; --', [{'x"; DROP TABLE t; --': 1, "ok": "yes"}]))
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = %s ORDER BY 1", (schema,))
            assert ("x_drop_table_t",) in cur.fetchall()
            cur.execute(f'SELECT x_drop_table_t, ok FROM "{schema.replace(chr(34), 2 * chr(34))}"'
                        '."x_drop_table_t"')
            assert cur.fetchall() == [(1, "yes")]
            cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'public'")
            assert cur.fetchone() == (1,)
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema.replace(chr(34), 2 * chr(34))}" CASCADE')
        conn.close()


def test_activate_version_retires_rows_of_older_versions(wh):
    load(wh, "full", make_batch("full", [{"id": 1}, {"id": 2}], key_names=["id"],
                                table_version=1, activate_version=1))
    load(wh, "full", make_batch("full", [{"id": 2}, {"id": 3}], key_names=["id"],
                                table_version=2))
    assert rows(wh, "SELECT id, _sdc_table_version FROM S.full ORDER BY id") == \
        [(1, 1), (2, 2), (3, 2)]
    load(wh, "full", make_batch("full", [], activate_version=2))
    assert rows(wh, "SELECT id FROM S.full ORDER BY id") == [(2,), (3,)]


def test_singer_date_time_fields_become_timestamps_and_bad_values_are_kept(wh):
    schema = {"properties": {"at": {"type": ["null", "string"], "format": "date-time"}}}
    load(wh, "ev", make_batch("ev", [{"at": "2024-01-02T03:04:05Z"}, {"at": "2024-01-02"},
                                     {"at": "not a date"}], schema=schema))
    cols = columns(wh, "ev")
    assert cols["at"][0] == "timestamp with time zone" and cols["at__st"][0] == "text"
    got = rows(wh, "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), at__st "
                   "FROM S.ev ORDER BY _sdc_sequence")
    assert got == [("2024-01-02 03:04:05", None), ("2024-01-02 00:00:00", None),
                   (None, "not a date")]


def test_rejected_records_load_into_sdc_rejected(wh):
    from spool.ingest.decode import Decoder, DecodeRules
    from spool.ingest.parts import Part, rejected_row
    from spool.ingest.writer import assemble

    dec = Decoder(DecodeRules(), lambda t: True, lambda t, s: None)
    decoded = dec.decode(b"{oops")
    part = Part(rows=[((), rejected_row(decoded, "q/0/9", 1_000, 2_000, b"{oops"))])
    part.note_record("q/0", 9, 5, 0)
    _uri, data, record = assemble("acme", "_sdc_rejected", 0, 60_000, 0, part, "/x", 3_000)
    load(wh, "_sdc_rejected", (record.batch_id, data))
    load(wh, "_sdc_rejected", (record.batch_id + "-again", data))  # spooled twice
    assert rows(wh, "SELECT table_name, reason_code, record, _sdc_record_id FROM "
                    "S._sdc_rejected") == [(None, "not_json", "{oops", "q/0/9")]


def test_every_redshift_statement_parses_as_redshift(wh):
    RecordingCursor.statements = []
    test_redshift_varchar_widens_under_a_dependent_view(wh)
    load(wh, "ev", make_batch("ev", [{"id": 1, "a": [1, 2]}], key_names=["id"]), dialect=RS)
    load(wh, "ev2", make_batch("ev2", [{"n": 1}]), dialect=RS)
    # the test's own setup statements, and the stand-in stager's COPY FROM STDIN (on Redshift
    # rows arrive by COPY from S3, checked below), are not the loader's Redshift SQL
    recorded = [s.decode() if isinstance(s, bytes) else s for s in RecordingCursor.statements]
    # statements sent together in one round trip are separated by ";\n"
    single = [part for s in recorded for part in s.split(";\n")]
    assert any('"_sdc_stage"' in s and s.startswith("CREATE") for s in single)
    spool_statements = [s for s in single
                        if not s.lstrip().upper().startswith(("DO ", "GRANT SELECT ON \"T_",
                                                              "COMMENT ON VIEW \"T_",
                                                              "CREATE VIEW \"T_"))
                        and "FROM STDIN" not in s]
    assert len(spool_statements) > 30
    # sqlglot has no model of these two Redshift statements and keeps them as commands
    unmodelled = ("LOCK ", "ALTER TABLE")
    for sql in spool_statements:
        sql = sql.replace("%s", "'x'")
        parsed = sqlglot.parse_one(sql, read="redshift")
        assert not isinstance(parsed, exp.Command) or (
            sql.startswith(unmodelled) and ("OWNER TO" in sql or sql.startswith("LOCK"))), sql
    real = DIALECTS["redshift"]
    copy = real.staging.copy_s3('"_sdc_stage"', ["_sdc_slot", "v1"])
    assert isinstance(sqlglot.parse_one(copy.replace("%s", "'x'"), read="redshift"), exp.Copy)
    stage = real.staging.create_stage_table('"s"."_sdc_stage"', [("v1", "varchar(65535)")])
    assert isinstance(sqlglot.parse_one(stage, read="redshift"), exp.Create)
    # run once, when a v3 loader upgrades a schema (test_schema_changes runs them)
    for sql in real.bookkeeping.rescale_sequences('"s"."users"', ['"s"."users__tags"']):
        assert isinstance(sqlglot.parse_one(sql, read="redshift"), exp.Update), sql

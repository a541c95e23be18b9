"""Contract v3 on a real PostgreSQL: a Singer stream's declared schema types its columns,
and a table an older contract version loaded moves to it with the change in its log."""

from __future__ import annotations

import psycopg2
import pytest

from spool.warehouse import CONTRACT_VERSION
from spool.warehouse.load import Loader
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import CopyStdinStager
from tests.integration.test_loader_postgres import PG, rows
from tests.warehouse_helpers import make_batch

SCORE = {"properties": {"id": {"type": "integer"}, "score": {"type": "number"},
                        "note": {"type": ["null", "string"]}}}


@pytest.fixture
def wh(stack, pg_schema):
    conn = psycopg2.connect(stack.warehouse_dsn)
    yield conn, pg_schema
    conn.close()


def load(wh, records, schema=SCORE):
    """One load by a new loader (as a new process would: it checks the contract)."""
    conn, name = wh
    batch = make_batch("games", records, key_names=["id"], schema=schema)
    return Loader(PG, CopyStdinStager()).load(conn, name, stage_group("games", [batch], PG))


def table_columns(wh):
    return [c for (c,) in rows(wh, "SELECT column_name FROM information_schema.columns WHERE "
                                   "table_schema = %s AND table_name = 'games' AND "
                                   "column_name NOT LIKE '\\_sdc%%' ORDER BY 1", wh[1])]


def test_a_declared_number_holds_integers_and_a_nullable_string_holds_strings(wh):
    load(wh, [{"id": 1, "score": 1.5, "note": 7}, {"id": 2, "score": 2, "note": None},
              {"id": 3, "score": "n/a", "note": "x"}])
    assert rows(wh, "SELECT id, score, note FROM S.games ORDER BY id") == \
        [(1, 1.5, None), (2, 2.0, None), (3, None, "x")]
    # what the schema does not cover keeps its own type, in a split column
    assert rows(wh, "SELECT id, score__st, note__it FROM S.games ORDER BY id") == \
        [(1, None, 7), (2, None, None), (3, "n/a", None)]
    assert table_columns(wh) == ["id", "note", "note__it", "score", "score__st"]
    assert rows(wh, "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = 'games' AND column_name = 'score'", wh[1]) == \
        [("double precision",)]
    assert rows(wh, "SELECT detail FROM S._sdc_schema_changes WHERE column_name = "
                    "'note__it'") == [("values of type integer of a field whose declared type "
                                       "has the base name",)]


def test_a_table_of_contract_v2_moves_to_v3_and_logs_where_integers_go_now(wh):
    conn, schema = wh
    # what contract v2 made of a number field: an integer went to score__it
    load(wh, [{"id": 1, "score": 1.5}, {"id": 2, "score": 2}], schema=None)
    with conn, conn.cursor() as cur:  # as a loader of contract v2 left the schema
        cur.execute(f'UPDATE "{schema}"._sdc_contract SET version = 2')
        cur.execute(f'ALTER TABLE "{schema}"._sdc_loads DROP COLUMN rows_superseded')
    assert table_columns(wh) == ["id", "score", "score__it"]
    # a loader of v3 meets it: the stream's schema says score is a number
    load(wh, [{"id": 3, "score": 4}])
    load(wh, [{"id": 4, "score": 5}])  # logged once, not with every load
    assert rows(wh, "SELECT id, score, score__it FROM S.games ORDER BY id") == \
        [(1, 1.5, None), (2, None, 2), (3, 4.0, None), (4, 5.0, None)]
    assert rows(wh, "SELECT version FROM S._sdc_contract ORDER BY version") == \
        [(2,), (CONTRACT_VERSION,)]
    assert table_columns(wh) == ["id", "score", "score__it"]  # nothing added, nothing dropped
    changes = rows(wh, "SELECT kind, column_name, source, json_type, old_type, new_type, "
                       "detail, contract_version FROM S._sdc_schema_changes "
                       "WHERE kind = 'declared_type_applied'")
    assert changes == [(
        "declared_type_applied", "score", '["score"]', "integer", "bigint", "double precision",
        "integer values of this field go to score (number, as the stream's Singer schema "
        "declares) from this batch on; score__it keeps those loaded before (warehouse "
        "contract v3)", 3)]

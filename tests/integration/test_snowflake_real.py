"""Opt-in: the Snowflake destination against a real account.

Runs only when SPOOL_TEST_SNOWFLAKE_URL is set (snowflake://USER:PASSWORD@ACCOUNT/DATABASE
?warehouse=WH&role=ROLE; the role may create schemas in the database). With
SPOOL_TEST_SNOWFLAKE_STAGING (s3://bucket/prefix) and SPOOL_TEST_SNOWFLAKE_INTEGRATION (a
storage integration allowed to read it) it also stages on S3; AWS credentials for the
bucket come from the usual boto3 chain. It checks what fakesnow cannot: quoted names keep
their case, COPY INTO from a table stage and from S3, a MERGE inside the load's
transaction (a load that dies after it leaves nothing), DDL committing on its own.
"""

from __future__ import annotations

import os
import uuid

import pytest

from spool.objectstore import ObjectStore
from spool.warehouse import load as load_module
from spool.warehouse.dialects.snowflake import SNOWFLAKE
from spool.warehouse.load import Loader
from spool.warehouse.snowflake_session import SnowflakeConnection
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import SnowflakeStager
from tests.unit.test_contract_golden import golden_input
from tests.warehouse_helpers import make_batch

URL = os.environ.get("SPOOL_TEST_SNOWFLAKE_URL")
STAGING = os.environ.get("SPOOL_TEST_SNOWFLAKE_STAGING")
INTEGRATION = os.environ.get("SPOOL_TEST_SNOWFLAKE_INTEGRATION")
pytestmark = pytest.mark.skipif(not URL, reason="opt-in: set SPOOL_TEST_SNOWFLAKE_URL")

STAGERS = ["table_stage", "s3"] if STAGING and INTEGRATION else ["table_stage"]


@pytest.mark.parametrize("staging", STAGERS)
def test_golden_input_upserts_and_case_on_a_real_account(staging):
    conn = SnowflakeConnection(URL)
    schema = f"spool_test_{uuid.uuid4().hex[:8]}"
    stager = SnowflakeStager(ObjectStore(), STAGING, INTEGRATION) if staging == "s3" \
        else SnowflakeStager()
    loader = Loader(SNOWFLAKE, stager)
    try:
        spec, batch = golden_input()
        loader.load(conn, schema, stage_group(spec["stream"], [batch], SNOWFLAKE))
        second = loader.load(conn, schema, stage_group(spec["stream"], [make_batch(
            spec["stream"], [{"id": 1, "firstName": "Zoë"}], key_names=["id"],
            sequences=[10 ** 12])], SNOWFLAKE))
        assert [(r.rows_inserted, r.rows_updated) for r in second.reports
                if r.table == "page_views"] == [(0, 1)]
        cur = conn.cursor()
        cur.execute(f'SELECT "first_name", "name" FROM "{schema}"."page_views" '
                    'WHERE "id" = 1')
        assert cur.fetchall() == [("Zoë", None)]  # replaced as a whole, by MERGE
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name = 'page_views'", (schema,))
        assert cur.fetchall() == [("page_views",)]  # lower case, as the contract says
        cur.execute(f'SELECT count(*) FROM "{schema}"."_sdc_load_log"')
        assert cur.fetchone() == (2,)
        # a load that dies after its MERGE, before it commits, leaves nothing (fakesnow
        # cannot show this: it commits the temporary table it runs a MERGE around)
        third = stage_group(spec["stream"], [make_batch(
            spec["stream"], [{"id": 1, "firstName": "Zed"}], key_names=["id"],
            sequences=[10 ** 13])], SNOWFLAKE)

        def die(name):
            if name == "load.before_commit":
                raise RuntimeError("the loader died before its commit")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(load_module, "failpoint", die)
            with pytest.raises(RuntimeError):
                loader.load(conn, schema, third)
        cur.execute(f'SELECT "first_name" FROM "{schema}"."page_views" WHERE "id" = 1')
        assert cur.fetchall() == [("Zoë",)]
        assert loader.load(conn, schema, third).loaded
    finally:
        with conn:
            conn.cursor().execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()

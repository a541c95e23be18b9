"""Opt-in: the Redshift dialect against a real cluster.

Runs only when SPOOL_TEST_REDSHIFT_DSN (postgresql://user:pass@cluster:5439/db),
SPOOL_TEST_REDSHIFT_STAGING (s3://bucket/prefix) and SPOOL_TEST_REDSHIFT_IAM_ROLE (a role
the cluster may use to read the staging prefix) are set; AWS credentials for the staging
bucket come from the usual boto3 chain. Everything else about Redshift is checked without a
cluster (sqlglot parsing, the statements PostgreSQL also runs).
"""

from __future__ import annotations

import os
import uuid

import psycopg2
import pytest

from spool.objectstore import ObjectStore
from spool.warehouse.dialects import DIALECTS
from spool.warehouse.load import Loader
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import S3ManifestStager
from tests.unit.test_contract_golden import golden_input
from tests.warehouse_helpers import make_batch

NEEDED = ("SPOOL_TEST_REDSHIFT_DSN", "SPOOL_TEST_REDSHIFT_STAGING",
          "SPOOL_TEST_REDSHIFT_IAM_ROLE")
pytestmark = pytest.mark.skipif(not all(os.environ.get(n) for n in NEEDED),
                                reason="opt-in: set " + ", ".join(NEEDED))


def test_golden_input_and_widening_on_a_real_cluster():
    rs = DIALECTS["redshift"]
    conn = psycopg2.connect(os.environ["SPOOL_TEST_REDSHIFT_DSN"])
    schema = f"spool_test_{uuid.uuid4().hex[:8]}"
    stager = S3ManifestStager(ObjectStore(), os.environ["SPOOL_TEST_REDSHIFT_STAGING"],
                              os.environ["SPOOL_TEST_REDSHIFT_IAM_ROLE"])
    loader = Loader(rs, stager)
    try:
        spec, batch = golden_input()
        loader.load(conn, schema, stage_group(spec["stream"], [batch], rs))
        long_text = "ü" * 100
        second = loader.load(conn, schema, stage_group(spec["stream"], [make_batch(
            spec["stream"], [{"id": 9, "firstName": long_text}], key_names=["id"])], rs))
        # the report counted with queries (Redshift has no per-transaction row counters)
        assert [(r.rows_inserted, r.rows_updated) for r in second.reports
                if r.table == "page_views"] == [(1, 0)]
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{schema}"."page_views"')
            assert cur.fetchone()[0] == 3
            cur.execute("SELECT character_maximum_length FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = 'page_views' AND "
                        "column_name = 'first_name'", (schema,))
            assert cur.fetchone()[0] == 256
            cur.execute(f'SELECT old_type, new_type FROM "{schema}"._sdc_schema_changes '
                        "WHERE kind = 'column_widened' AND column_name = 'first_name'")
            assert cur.fetchall() == [("varchar(32)", "varchar(256)")]
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()

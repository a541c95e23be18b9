"""The warehouse contract pinned: the golden inputs' rows (versions 1 and 3) as PostgreSQL
holds them, for both dialects' DDL (Redshift's run on PostgreSQL)."""

from __future__ import annotations

import psycopg2
import pytest

from spool.warehouse.dialects import DIALECTS
from spool.warehouse.load import Loader
from spool.warehouse.stage import stage_group
from spool.warehouse.stagers import CopyStdinStager
from tests.integration.test_loader_postgres import RS
from tests.unit.test_contract_golden import check, golden_input


@pytest.mark.parametrize("version", ["v1", "v3"])
@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_golden_rows(stack, pg_schema, dialect, version):
    spec, batch = golden_input(max_name=63 if dialect == "redshift" else None, version=version)
    conn = psycopg2.connect(stack.warehouse_dsn)
    d = RS if dialect == "redshift" else DIALECTS[dialect]
    Loader(d, CopyStdinStager()).load(conn, pg_schema, stage_group(spec["stream"], [batch], d))
    tables = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name NOT IN ('_sdc_load_log', '_sdc_contract', '_sdc_loads', "
                    "'_sdc_schema_changes') ORDER BY 1",
                    (pg_schema,))
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT * FROM "{pg_schema}"."{table}"')
            names = [c[0] for c in cur.description]
            rows = [{n: str(v) for n, v in zip(names, row, strict=True)
                     if v is not None and n not in ("created_at",)}
                    for row in cur.fetchall()]
            tables[table] = sorted(rows, key=lambda r: sorted(r.items()))
    conn.close()
    check(f"contract_{version}_{dialect}_rows.json", tables)

"""The warehouse contract pinned: golden input → DDL for every target.

Two inputs: version 1's (``contract_v1_input.json``; its output is unchanged since) and
version 3's (``contract_v3_input.json``: a Singer stream whose schema declares the types of
its fields). The rows they load are pinned by tests/integration/test_contract_rows.py (and
the DuckDB and Snowflake loader tests). To
accept an intended change (a new contract version), run with SPOOL_UPDATE_GOLDEN=1 and
review the diff of tests/golden/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spool.warehouse.dialects import DIALECTS
from spool.warehouse.dialects.duckdb import DUCKDB
from spool.warehouse.dialects.snowflake import SNOWFLAKE
from spool.warehouse.plan import CatalogState, plan_load
from spool.warehouse.stage import stage_group
from tests.warehouse_helpers import make_batch

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden_input(max_name: int | None = None, version: str = "v1"):
    """The golden input of a contract ``version``; ``max_name`` drops fields with longer
    names (PostgreSQL cuts identifiers at 63 bytes, so Redshift's 127-byte names cannot run
    there)."""
    spec = json.loads((GOLDEN / f"contract_{version}_input.json").read_text())
    if max_name:
        for rec in spec["records"]:
            for name in [n for n in rec if len(n) > max_name]:
                del rec[name]
    batch = make_batch(spec["stream"], spec["records"], key_names=spec["key_names"],
                       schema=spec["schema"],
                       offsets=list(range(1, len(spec["records"]) + 1)))
    return spec, batch


def ddl(dialect_name: str, version: str = "v1") -> list[str]:
    spec, batch = golden_input(version=version)
    d = {"duckdb": DUCKDB, "snowflake": SNOWFLAKE}.get(dialect_name) or DIALECTS[dialect_name]
    group = stage_group(spec["stream"], [batch], d)
    plan = plan_load(d, spec["stream"], group.key_names,
                     {t: st.observed for t, st in group.tables.items()}, CatalogState())
    out = []
    for path in sorted(plan.tables, key=lambda t: (len(json.loads(t)), t)):
        tp = plan.tables[path]
        out.append(d.ddl.create_table("tenant", tp.name, tp.new_columns))
    out += [f"-- {t} {s} {j} -> {c}" for t, s, j, c in sorted(plan.new_columns)]
    return out


def check(name: str, got) -> None:
    path = GOLDEN / name
    if os.environ.get("SPOOL_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text()), f"contract output changed: {name}"


VERSIONS = pytest.mark.parametrize("version", ["v1", "v3"])


@VERSIONS
def test_postgres_ddl_is_the_contract(version):
    check(f"contract_{version}_postgres_ddl.json", ddl("postgres", version))


@VERSIONS
def test_redshift_ddl_is_the_contract(version):
    check(f"contract_{version}_redshift_ddl.json", ddl("redshift", version))


@VERSIONS
def test_duckdb_ddl_is_the_contract_and_runs_on_duckdb(version):
    import duckdb

    got = ddl("duckdb", version)
    check(f"contract_{version}_duckdb_ddl.json", got)
    conn = duckdb.connect()  # a real DuckDB, in memory
    conn.execute('CREATE SCHEMA "tenant"')
    for sql in got:
        if not sql.startswith("--"):
            conn.execute(sql)
    tables = {t for (t,) in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'tenant'").fetchall()}
    assert tables == {sql.split('"tenant"."')[1].split('"')[0] for sql in got
                      if sql.startswith("CREATE TABLE")}


@VERSIONS
def test_snowflake_ddl_is_the_contract_and_parses_as_snowflake_sql(version):
    import sqlglot
    from sqlglot import exp

    got = ddl("snowflake", version)
    check(f"contract_{version}_snowflake_ddl.json", got)
    for sql in got:
        if not sql.startswith("--"):
            assert isinstance(sqlglot.parse_one(sql, read="snowflake"), exp.Create), sql


def test_snowflake_merge_statements_parse_for_nasty_names():
    import sqlglot
    from sqlglot import exp

    from spool.warehouse.dialects import qualified

    d = SNOWFLAKE
    stage = qualified("tenant", "_sdc_stage")
    for name in ['orders', 'odd "name"', "100% sure", "naïve café", "select"]:
        target = qualified("tenant", name)
        keys = [("id", "v1", "NUMBER(38,0)"), (name, "v2", "VARCHAR")]
        seq, rid = ("_sdc_sequence", "v3", "NUMBER(38,0)"), ("_sdc_record_id", "v4", "VARCHAR")
        cols = [*keys, seq, rid]
        for sql in (d.merge.delete_replaced(target, stage, 1, keys, seq),
                    d.merge.insert_winners(target, stage, 1, cols, keys),
                    d.merge.merge_append(target, stage, 2, cols, rid),
                    d.merge.counts([d.merge.count_replaced(target, stage, 1, keys, seq),
                                    d.merge.count_retired(target, 3)]),
                    d.ddl.add_column("tenant", name, name, "VARCHAR")):
            # parsed into statements sqlglot models (a parse error raises; an unknown
            # statement would come back as a bare Command)
            assert not isinstance(sqlglot.parse_one(sql, read="snowflake"), exp.Command), sql

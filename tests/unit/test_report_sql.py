"""The load report's count statements, as Redshift would read them (sqlglot): Redshift has
no per-transaction row counters, so there the loader counts with these."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from spool.warehouse.dialects import DIALECTS

RS = DIALECTS["redshift"]


def test_count_statements_parse_as_one_select_in_redshift_sql():
    stage, target = '"t"."_sdc_stage"', '"t"."odd ""name"" 100%"'
    keys = [("id", "v1", "bigint"), ("Key", "v2", "varchar(32)")]
    seq, rid = ("_sdc_sequence", "v3", "bigint"), ("_sdc_record_id", "v4", "varchar(512)")
    sql = RS.merge.counts([RS.merge.count_replaced(target, stage, 1, keys, seq),
                           RS.merge.count_present(target, stage, 2, rid),
                           RS.merge.count_retired(target, 7)])
    parsed = sqlglot.parse_one(sql, read="redshift")
    assert isinstance(parsed, exp.Union)
    assert len(list(parsed.find_all(exp.Select))) >= 3
    assert RS.catalog.transaction_counts() is None
    assert DIALECTS["postgres"].catalog.transaction_counts() is not None

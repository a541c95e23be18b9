"""What a user reads about loads and schema changes: ``spool loads``, ``spool changes`` and
the freshness column of ``spool status``, after real loads into a real warehouse."""

from __future__ import annotations

import json

from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore
from tests.integration.test_cli import spool as cli
from tests.integration.test_tenant_loader import ledger, spool  # noqa: F401


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_loads_changes_and_freshness_after_two_loads(ledger, ledger_dsn, tmp_path):  # noqa: F811
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}])
    assert [a.status for a in loader.load("acme", ["orders"])] == [Status.LOADED]
    spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 6, "coupon": "x"},
                                       {"id": 2, "amount": 1}])
    (attempt,) = loader.load("acme", ["orders"])
    loader.close()
    assert [(r.table, r.rows_inserted, r.rows_updated) for r in attempt.reports] == \
        [("orders", 1, 1)]

    rc, out, err = cli(ledger_dsn, "loads", "--tenant", "acme", "--json")
    assert rc == 0, err
    assert [(r["table"], r["inserted"], r["updated"], r["batches"]) for r in lines(out)] == \
        [("orders", 1, 1, 1), ("orders", 1, 0, 1)]

    rc, out, err = cli(ledger_dsn, "changes", "--tenant", "acme", "--since", "1h", "--json")
    assert rc == 0, err
    assert [(r["kind"], r["table"], r["column"]) for r in lines(out)] == \
        [("column_added", "orders", "coupon"), ("column_added", "orders", "id"),
         ("column_added", "orders", "amount"), ("table_created", "orders", None)]
    rc, out, _ = cli(ledger_dsn, "changes", "--tenant", "acme", "--table", "nothing_here")
    assert rc == 0 and "no schema changes" in out

    rc, out, _ = cli(ledger_dsn, "status", "--tenant", "acme", "--json")
    (row,) = lines(out)
    # the records were received in November 2023 (their _sdc_received_at): seconds
    assert row["newest_row_age"] > 365 * 86_400


def test_history_commands_name_the_bad_input(ledger, ledger_dsn):  # noqa: F811
    rc, _, err = cli(ledger_dsn, "changes", "--since", "last tuesday")
    assert rc == 2 and "'last tuesday' is neither a date/time" in err and "7d" in err
    rc, _, err = cli(ledger_dsn, "changes", "--tenant", "nobody")
    assert rc == 1 and "no tenant 'nobody'" in err and "spool tenants list" in err

"""``spool loads``: what each load did to each table, newest first."""

from __future__ import annotations

import argparse

from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    register_history_args,
    require_tenant,
)
from spool.ledger import reports

EXAMPLE = """examples:
  spool loads
  spool loads --tenant acme --table orders --since 1h
  spool loads --tenant acme --json

columns: rows inserted (new keys, appended rows), updated (replaced by a newer record of
their key), superseded (records that lost to a stored row of their key with a higher
sequence: nothing written), retired (older table versions), rejected (went to
_sdc_rejected), values cut;
newest_row is the newest _sdc_received_at the load put in the table. The tenant's
_sdc_loads table holds the same (docs/warehouse-contract.md)."""


def register(sub) -> None:
    p = sub.add_parser("loads", help="per-load reports: rows inserted, updated, superseded, "
                                     "retired, rejected per table",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_history_args(p, "loads", 50, per=" rows")
    p.set_defaults(func=loads)


def loads(args: LedgerArgs) -> int:
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    rows = reports.recent(ledger, args.tenant, args.table, args.since, args.limit)
    emit_table(reports.REPORT_COLUMNS, rows, as_json=args.json)
    if not rows and not args.json:
        print("(no loads yet: run the loader, see 'python -m pipelines.loader_job --help')")
    return 0

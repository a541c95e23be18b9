"""``spool changes``: what the loader changed in tenants' tables, when and why.

Read from each tenant's own ``_sdc_schema_changes`` (docs/warehouse-contract.md), where an
analyst can query the same with SQL."""

from __future__ import annotations

import argparse
import sys

from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    no_tenant,
    register_history_args,
)
from spool.ledger.registry import Registry
from spool.warehouse.destination import Destination
from spool.warehouse.history import CHANGE_COLUMNS, HistoryError, schema_changes

EXAMPLE = """examples:
  spool changes                              # every tenant with a warehouse
  spool changes --tenant acme --since 7d
  spool changes --tenant acme --table orders --json

kinds: table_created, child_table_created, column_added, split_column_added,
column_widened, view_rebuilt, table_version_activated, map_changed,
declared_type_applied (docs/warehouse-contract.md)"""


def register(sub) -> None:
    p = sub.add_parser("changes", help="schema changes the loader applied: tables created, "
                                       "columns added or widened, versions activated",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_history_args(p, "changes", 100, per=" per tenant")
    p.set_defaults(func=changes)


def changes(args: LedgerArgs) -> int:
    registry = Registry(ledger_from(args))
    if args.tenant:
        record = registry.tenant(args.tenant)
        if record is None:
            raise no_tenant(args.tenant)
        records = [record]
    else:
        records = registry.tenants()
    rows, failed = [], 0
    for record in records:
        if record.destination_kind == "none":
            continue
        try:
            rows += schema_changes(Destination.from_record(record), args.table, args.since,
                                   args.limit)
        except HistoryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    rows.sort(key=lambda r: r[0], reverse=True)
    emit_table(CHANGE_COLUMNS, rows, as_json=args.json)
    if not rows and not args.json:
        print("(no schema changes yet: they are recorded from the first load by Spool 0.2)")
    return 1 if failed else 0

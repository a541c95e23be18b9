"""``spool status``: per tenant and table, where the data is and how fresh it is."""

from __future__ import annotations

import argparse

from spool.commands.common import LedgerArgs, emit_table, ledger_from, register_ledger_args
from spool.ledger import queries

EXAMPLE = """examples:
  spool status
  spool status --tenant acme
  spool status --tenant acme --table orders --json"""


def register(sub) -> None:
    p = sub.add_parser("status", help="batches by state, rows, freshness, last load, last error",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(p)
    p.add_argument("--tenant", help="only this tenant")
    p.add_argument("--table", help="only this stream (table)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(func=status)


def status(args: LedgerArgs) -> int:
    rows = queries.status(ledger_from(args), args.tenant, args.table)
    emit_table(queries.STATUS_COLUMNS, rows, as_json=args.json)
    if not rows and not args.json:
        print("(no batches yet: run the spool job, see 'python -m pipelines.spool_job --help')")
    return 0

"""``spool status``: per tenant and table, where the data is and how fresh it is."""

from __future__ import annotations

import argparse

from spool.commands.common import LedgerArgs, emit_table, ledger_from, register_ledger_args

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
    ledger = ledger_from(args)

    def q(cur):
        cur.execute("""
            SELECT tenant_id, stream,
                   count(*) FILTER (WHERE state = 'READY') AS ready,
                   count(*) FILTER (WHERE state = 'LOADING') AS loading,
                   count(*) FILTER (WHERE state = 'LOADED') AS loaded,
                   count(*) FILTER (WHERE state = 'FAILED') AS failed,
                   sum(record_count) AS records_spooled,
                   coalesce(sum(record_count) FILTER (WHERE state = 'LOADED'), 0)
                       AS records_loaded,
                   date_trunc('second', now() - min(created_at) FILTER (WHERE state <> 'LOADED'))
                       AS oldest_unloaded,
                   max(loaded_at) AS last_load,
                   (array_agg(last_error ORDER BY updated_at DESC)
                        FILTER (WHERE last_error IS NOT NULL))[1] AS last_error
            FROM batches
            WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
              AND (%(s)s::text IS NULL OR stream = %(s)s)
            GROUP BY 1, 2 ORDER BY 1, 2""", {"t": args.tenant, "s": args.table})
        return cur.fetchall()

    rows = ledger.run(q)
    cols = ["tenant", "table", "ready", "loading", "loaded", "failed", "records_spooled",
            "records_loaded", "oldest_unloaded", "last_load", "last_error"]
    emit_table(cols, rows, as_json=args.json)
    if not rows and not args.json:
        print("(no batches yet: run the spool job, see 'python -m pipelines.spool_job --help')")
    return 0

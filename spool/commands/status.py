"""``spool status``: per tenant and table, where the data is and how fresh it is.

Messages that name no registered tenant are rejected into the reserved tenant
``_unassigned``. Until an operator gives it a destination its batches are held, not a load
backlog, so they are one line of their own instead of an "oldest unloaded" age that only
grows; once it has one, it is a tenant like any other.
"""

from __future__ import annotations

import argparse
from datetime import UTC, timedelta

from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    print_json,
    register_ledger_args,
    require_tenant,
)
from spool.ledger import outbox, queries
from spool.ledger.queries import REJECTED, UNASSIGNED_TENANT

HELD_HINT = (f"give them a destination with 'spool tenants add {UNASSIGNED_TENANT} --warehouse "
             "postgres --dsn env:NAME --schema spool_unassigned'; 'spool rejected --tenant "
             f"{UNASSIGNED_TENANT}' shows why each was rejected")

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
    require_tenant(ledger, args.tenant)
    rows = queries.status(ledger, args.tenant, args.table)
    asked = args.tenant in (None, UNASSIGNED_TENANT) and args.table in (None, REJECTED)
    messages, batches = queries.held(ledger) if asked else (0, 0)
    emit_table(queries.STATUS_COLUMNS, rows, as_json=args.json)
    if messages or batches:
        if args.json:
            print_json({"tenant": UNASSIGNED_TENANT, "table": REJECTED,
                        "held_messages": messages, "held_batches": batches, "hint": HELD_HINT})
        else:
            print(f"{UNASSIGNED_TENANT}: {messages} messages held (no tenant matched); "
                  f"{HELD_HINT}")
    _failing_webhooks(ledger, args)
    _stalled_reads(ledger, args)
    if not rows and not batches and not args.json:
        print("(no batches yet: run the spool job, see 'python -m pipelines.spool_job --help')")
    return 0


def _failing_webhooks(ledger, args: LedgerArgs) -> None:
    """A tenant whose webhook's last attempt failed: its events wait in the outbox (loads go
    on; docs/webhooks.md)."""
    if args.table is not None:
        return
    for tenant, url, pending, age, attempts, code, error in outbox.failing(ledger,
                                                                            args.tenant):
        if args.json:
            print_json({"tenant": tenant, "webhook": url, "pending_events": pending,
                        "oldest_pending_age": age, "attempts": attempts,
                        "last_status": code, "last_error": error})
        else:
            print(f"{tenant}: webhook failing: {pending} event(s) waiting, the oldest "
                  f"{age} old, after {attempts} attempt(s); last error: {error}; "
                  f"'spool webhooks list --tenant {tenant} --failing'")


def _stalled_reads(ledger, args: LedgerArgs) -> None:
    """Partitions the spool job cannot read now (a broker down or restarting): no batch of
    their new records comes until they answer; the job retries on its own (docs/spool-job.md,
    "Outages")."""
    for st in queries.read_stalls(ledger):
        since = st.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if args.json:
            print_json({"topic": st.topic, "partition": st.partition,
                        "consumer_group": st.consumer_group,
                        "stalled_seconds": round(st.stalled_seconds),
                        "since": st.started_at, "error": st.error})
        else:
            print(f"reading {st.topic} partition {st.partition} (group {st.consumer_group}): "
                  f"stalled for {_age(st.stalled_seconds)} since {since}: {st.error}; the "
                  "spool job retries until the partition answers")


def _age(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 120 else str(timedelta(seconds=seconds))

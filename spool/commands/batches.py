"""``spool batches list|show|retry``: where each batch is, and a second chance for FAILED ones."""

from __future__ import annotations

import argparse

from spool.commands.common import (
    LedgerArgs,
    count,
    emit_table,
    ledger_from,
    print_json,
    register_ledger_args,
    require_tenant,
    usage_error,
)
from spool.ledger import claims, queries
from spool.ledger.states import BatchState

LIST_EXAMPLE = """examples:
  spool batches list --state FAILED
  spool batches list --tenant acme --table orders --limit 20 --json"""


def register(sub) -> None:
    p = sub.add_parser("batches", help="list, show and retry batches",
                       description="Batches as the ledger tracks them: READY (spooled), "
                       "LOADING (claimed by a loader), LOADED, FAILED (with the reason).",
                       epilog=LIST_EXAMPLE + "\n  spool batches retry --tenant acme "
                       "--all-failed", formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = p.add_subparsers(dest="batches_command", metavar="SUBCOMMAND", required=True)

    ls = bsub.add_parser("list", help="list batches, newest first", epilog=LIST_EXAMPLE,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(ls)
    ls.add_argument("--tenant", help="only this tenant")
    ls.add_argument("--table", help="only this stream (table)")
    ls.add_argument("--state", choices=[s.value for s in BatchState],
                    help="only batches in this state")
    ls.add_argument("--limit", type=count, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    ls.set_defaults(func=list_batches)

    show = bsub.add_parser("show", help="everything the ledger knows about one batch",
                           epilog="example:\n  spool batches show acme/orders/20241126T101500Z/"
                           "00000-0-1710-9b701d6f8758",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(show)
    show.add_argument("batch_id")
    show.set_defaults(func=show_batch)

    retry = bsub.add_parser(
        "retry", help="put FAILED batches back to READY (after fixing the cause)",
        epilog="examples:\n  spool batches retry acme/orders/20241126T101500Z/00000-0-17-9b70\n"
        "  spool batches retry --tenant acme --all-failed",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(retry)
    retry.add_argument("batch_ids", nargs="*", help="batch ids to retry")
    retry.add_argument("--tenant", help="with --all-failed: only this tenant's")
    retry.add_argument("--all-failed", action="store_true", help="every FAILED batch")
    retry.set_defaults(func=retry_batches)


def list_batches(args: LedgerArgs) -> int:
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    rows = queries.batches(ledger, args.tenant, args.table, args.state, args.limit)
    emit_table(queries.BATCH_COLUMNS, rows, as_json=args.json)
    return 0


def show_batch(args: LedgerArgs) -> int:
    row = queries.batch(ledger_from(args), args.batch_id)
    if row is None:
        raise SystemExit(f"error: no batch {args.batch_id!r}; 'spool batches list' shows ids")
    print_json(row, indent=2)
    return 0


def retry_batches(args: LedgerArgs) -> int:
    if not args.batch_ids and not args.all_failed:
        usage_error("name batch ids, or pass --all-failed (with --tenant to limit it)")
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    n = claims.retry_failed(ledger, args.batch_ids or None, tenant=args.tenant)
    print(f"{n} batch(es) back to READY; the next loader run loads them")
    return 0 if n or args.all_failed else 1

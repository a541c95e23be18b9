"""``spool webhooks deliver|list|retry|test``: the events each tenant's webhook is sent.

Events wait in the ledger's outbox until their endpoint answers 2xx. A loader delivers them
on its own (``--no_webhooks`` turns that off); ``deliver`` runs a deliverer apart from any
loader, ``list`` shows what waits and why, ``retry`` makes waiting events due now (the
endpoint is back), ``test`` sends a signed ``ping`` at once (docs/webhooks.md).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from datetime import UTC, datetime

from spool import secrets
from spool.commands.common import (
    LedgerArgs,
    count,
    emit_table,
    ledger_from,
    plain,
    print_json,
    register_ledger_args,
    require_tenant,
    usage_error,
)
from spool.ledger import outbox
from spool.webhooks import events
from spool.webhooks.delivery import Deliverer, DeliveryConfig, headers_for, post

EXAMPLE = """examples:
  spool tenants update acme --webhook https://hooks.acme.example/spool \\
      --webhook-secret env:ACME_WEBHOOK_SECRET
  spool webhooks test acme                 # a signed ping, now
  spool webhooks list --failing            # what waits, and why
  spool webhooks retry --tenant acme       # the endpoint is back: try now
  spool webhooks deliver --once            # deliver what is due, then end"""


def register(sub) -> None:
    p = sub.add_parser("webhooks", help="deliver | list | retry | test: events sent to "
                       "tenants' webhooks", description=plain(__doc__), epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    wsub = p.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND", required=True)

    d = wsub.add_parser("deliver", help="deliver due events until stopped (or --once)",
                        epilog="examples:\n  spool webhooks deliver\n  spool webhooks deliver "
                        "--once\n\nSecrets are read here: export the variables the tenants' "
                        "--webhook-secret name.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(d)
    d.add_argument("--once", action="store_true",
                   help="deliver what is due now, then end: exit 1 if any was not delivered")
    d.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for an endpoint to answer (default 10)")
    d.add_argument("--retry-base-seconds", type=float, default=10.0,
                   help="after a failed attempt, try again after base * 2^(attempts-1) "
                   "seconds (default 10) ...")
    d.add_argument("--retry-cap-seconds", type=float, default=600.0,
                   help="... but never waiting longer than this (default 600)")
    d.add_argument("--poll-seconds", type=float, default=2.0,
                   help="look for due events this often (default 2)")
    d.set_defaults(func=deliver)

    ls = wsub.add_parser("list", help="events not delivered yet (or all, with --delivered)",
                         epilog="examples:\n  spool webhooks list\n  spool webhooks list "
                         "--tenant acme --failing\n  spool webhooks list --delivered --json",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(ls)
    ls.add_argument("--tenant", help="only this tenant's")
    ls.add_argument("--failing", action="store_true",
                    help="only events whose last attempt failed")
    ls.add_argument("--delivered", action="store_true", help="delivered events too")
    ls.add_argument("--limit", type=count, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    ls.set_defaults(func=list_events)

    r = wsub.add_parser("retry", help="make waiting events due now (the endpoint is back)",
                        epilog="example:\n  spool webhooks retry --tenant acme",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(r)
    r.add_argument("--tenant", help="only this tenant's")
    r.set_defaults(func=retry)

    t = wsub.add_parser("test", help="send a signed ping to a tenant's webhook now",
                        epilog="example:\n  spool webhooks test acme\n\nThe ping is not "
                        "stored nor retried; exit 1 if the endpoint does not answer 2xx.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(t)
    t.add_argument("tenant")
    t.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the endpoint (default 10)")
    t.set_defaults(func=ping)


def _positive(flag: str, value: float) -> float:
    if not value > 0:
        usage_error(f"{flag} {value}: give a number of seconds above 0")
    return value


def deliver(args: LedgerArgs) -> int:
    config = DeliveryConfig(
        timeout_seconds=_positive("--timeout", args.timeout),
        retry_base_seconds=_positive("--retry-base-seconds", args.retry_base_seconds),
        retry_cap_seconds=_positive("--retry-cap-seconds", args.retry_cap_seconds),
        poll_seconds=_positive("--poll-seconds", args.poll_seconds))
    deliverer = Deliverer(ledger_from(args), config)
    if args.once:
        done = deliverer.drain()
        print(f"delivered {done.delivered}, not delivered {done.failed}"
              + ("; 'spool webhooks list --failing' shows why" if done.failed else ""))
        return 1 if done.failed else 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("delivering webhooks until stopped (Ctrl-C)", flush=True)
    deliverer.run(stop)
    return 0


def list_events(args: LedgerArgs) -> int:
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    rows = outbox.events(ledger, args.tenant, failing=args.failing,
                         delivered=args.delivered, limit=args.limit)
    emit_table(outbox.EVENT_COLUMNS, rows, as_json=args.json)
    if not rows and not args.json:
        print("(no events waiting)" if not args.delivered else "(no events)")
    return 0


def retry(args: LedgerArgs) -> int:
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    n = outbox.retry_now(ledger, args.tenant)
    print(f"{n} event(s) due now; a running loader or 'spool webhooks deliver' sends them")
    return 0


def ping(args: LedgerArgs) -> int:
    timeout = _positive("--timeout", args.timeout)
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    hook = outbox.webhook(ledger, args.tenant)
    if hook is None:
        raise SystemExit(f"error: tenant {args.tenant!r} has no webhook; add one with 'spool "
                         f"tenants update {args.tenant} --webhook URL --webhook-secret env:NAME'")
    url, secret_ref = hook
    try:
        secret = secrets.resolve(secret_ref)
    except secrets.SecretError as exc:
        raise SystemExit(f"error: webhook secret of {args.tenant!r}: {exc}") from None
    now = datetime.now(tz=UTC)
    due = outbox.Due(events.event_id(args.tenant, events.PING, now.isoformat()), args.tenant,
                     events.PING, {"message": "a test from 'spool webhooks test'"}, now, 1, url,
                     secret_ref)
    body = events.body(due.event_id, due.type, due.tenant, due.created_at, due.payload)
    answer = post(url, body, headers_for(due, secret, body, time.time()),
                  timeout)
    if answer.error is not None:
        raise SystemExit(f"error: {url} did not take the ping: {answer.error}")
    print_json({"tenant": args.tenant, "url": url, "status": answer.status,
                "event_id": due.event_id})
    return 0

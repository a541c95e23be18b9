"""``spool tenants add|update|list|show|check|remove``: the tenant registry, each tenant's
warehouse and webhook.

Secrets are given by reference and stored by reference: ``--dsn env:ACME_DSN`` (an
environment variable the loader reads) or ``--dsn file:/run/secrets/acme``. A literal DSN
with a password is refused, so no password ever sits in the ledger or in a listing; so is
a literal ``--webhook-secret``.
"""

from __future__ import annotations

import argparse
import sys

from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    no_tenant,
    print_json,
    register_ledger_args,
    require_tenant,
    usage_error,
)
from spool.ledger import outbox
from spool.ledger.registry import Registry
from spool.warehouse import probe
from spool.warehouse.destination import (
    KINDS,
    TENANT_PATTERN,
    Destination,
    DestinationError,
    tenant_name_problem,
)
from spool.webhooks.delivery import secret_problem, url_problem

ADD_EXAMPLE = """examples:
  spool tenants add acme --warehouse postgres --dsn env:ACME_WAREHOUSE_DSN --schema acme
  spool tenants add globex --warehouse redshift --dsn file:/run/secrets/globex_dsn \\
      --staging-uri s3://spool-staging/globex --iam-role env:GLOBEX_COPY_ROLE
  spool tenants add umbrella --warehouse duckdb --path var/warehouse/umbrella/warehouse.duckdb
  spool tenants add initech --warehouse snowflake --dsn env:INITECH_SNOWFLAKE_URL
      # the URL: snowflake://USER:PASSWORD@ACCOUNT/DATABASE?warehouse=WH&role=ROLE
  spool tenants add sandbox            # accepted into the spool, loaded nowhere (yet)
  spool tenants update acme --webhook https://hooks.acme.example/spool \\
      --webhook-secret env:ACME_WEBHOOK_SECRET"""
UPDATE_EXAMPLE = """examples:
  spool tenants update acme --webhook https://hooks.acme.example/spool \\
      --webhook-secret env:ACME_WEBHOOK_SECRET
  spool tenants update acme --no-webhook

The webhook gets load.completed, schema.changed, rejected and batch.failed events, signed
with the secret (docs/webhooks.md). A destination is changed with 'spool tenants add'."""


def register_webhook_args(parser, removable: bool) -> None:
    parser.add_argument("--webhook", metavar="URL",
                        help="POST this tenant's events (JSON, signed) to this http(s) URL")
    parser.add_argument("--webhook-secret", metavar="REF",
                        help="the key that signs them, BY REFERENCE: env:NAME or file:/path, "
                        "read by whatever delivers (the loader, 'spool webhooks deliver')")
    if removable:
        parser.add_argument("--no-webhook", action="store_true",
                            help="send this tenant no more events; those not delivered yet "
                            "are dropped")


def register(sub) -> None:
    p = sub.add_parser("tenants", help="register tenants and their warehouses",
                       description="The tenants whose records the spool job accepts, and where "
                       "the loader loads each one.", epilog=ADD_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="tenants_command", metavar="SUBCOMMAND", required=True)

    add = tsub.add_parser("add", help="register a tenant, or change its destination",
                          epilog=ADD_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(add)
    add.add_argument("tenant", help="the tenant id used in envelopes and Singer headers: "
                     f"lower-case letters, digits and _ ({TENANT_PATTERN})")
    add.add_argument("--warehouse", choices=KINDS, default="none",
                     help="the kind of warehouse (default none: spooled, not loaded)")
    add.add_argument("--dsn", help="connection string BY REFERENCE: env:NAME or file:/path")
    add.add_argument("--schema", help="warehouse schema: lower-case letters, digits and _ "
                     "(default: the tenant id, normalised like a table name)")
    add.add_argument("--staging-uri", help="Redshift (required), Snowflake (optional): "
                     "s3://bucket/prefix for COPY files")
    add.add_argument("--iam-role", help="Redshift: IAM role ARN for COPY, or env:NAME")
    add.add_argument("--storage-integration", metavar="NAME",
                     help="Snowflake, with --staging-uri: the storage integration that lets "
                     "Snowflake read it (without both, files go to each table's own stage)")
    add.add_argument("--path", help="DuckDB: the database file (created if missing), say "
                                    "var/warehouse/acme.duckdb")
    register_webhook_args(add, removable=False)
    add.set_defaults(func=add_tenant)

    up = tsub.add_parser("update", help="change a tenant's webhook", epilog=UPDATE_EXAMPLE,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(up)
    up.add_argument("tenant")
    register_webhook_args(up, removable=True)
    up.set_defaults(func=update_tenant)

    ls = tsub.add_parser("list", help="list tenants and their destinations",
                         epilog="examples:\n  spool tenants list\n  spool tenants list --json",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(ls)
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    ls.set_defaults(func=list_tenants)

    show = tsub.add_parser("show", help="one tenant's registration",
                           epilog="example:\n  spool tenants show acme",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(show)
    show.add_argument("tenant")
    show.set_defaults(func=show_tenant)

    check = tsub.add_parser(
        "check", help="try each tenant's destination as the loader would",
        description="Connect to each tenant's warehouse (or the given tenant's) with the "
        "secrets as this machine resolves them, and ask whether its schema can be made or "
        "takes new tables. One line per tenant; exit 1 if any cannot be loaded.",
        epilog="examples:\n  spool tenants check\n  spool tenants check acme",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(check)
    check.add_argument("tenant", nargs="?", help="only this tenant (default: every tenant)")
    check.add_argument("--connect-timeout", type=int, default=5, metavar="SECONDS",
                       help="seconds to wait for each warehouse (default 5)")
    check.set_defaults(func=check_tenants)

    rm = tsub.add_parser("remove", help="unregister a tenant (its data stays where it is)",
                         epilog="example:\n  spool tenants remove sandbox\n\nNew records for "
                         "it are then rejected (kept in _sdc_rejected of\nthe _unassigned "
                         "tenant).", formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(rm)
    rm.add_argument("tenant")
    rm.set_defaults(func=remove_tenant)


def _checked_webhook(args: LedgerArgs) -> tuple[str, str] | None:
    """(url, secret reference) from --webhook and --webhook-secret, or None when neither is
    given; a bad one ends the command naming the flag."""
    if args.webhook is None and args.webhook_secret is None:
        return None
    problem = url_problem(args.webhook) or secret_problem(args.webhook_secret)
    if problem:
        usage_error(problem)
    return args.webhook, args.webhook_secret


def add_tenant(args: LedgerArgs) -> int:
    bad_name = tenant_name_problem(args.tenant)
    if bad_name and Registry(ledger_from(args)).tenant(args.tenant) is None:
        print(f"error: {bad_name}", file=sys.stderr)  # a tenant from before the check may
        return 2  # change its destination; a new one gets a name that is safe everywhere
    try:
        dest = Destination.register(args.tenant, args.warehouse, args.dsn, args.schema,
                                    args.staging_uri, args.iam_role, args.path,
                                    args.storage_integration)
    except DestinationError as exc:
        usage_error(str(exc))
    hook = _checked_webhook(args)
    registry = Registry(ledger_from(args))
    if dest.kind != "none":
        others = registry.schema_owners(dest.connection, dest.schema, besides=dest.tenant_id)
        if others:
            raise SystemExit(f"error: tenant {others[0]!r} already loads into schema "
                             f"{dest.schema!r} of that warehouse; choose another --schema")
    registry.add_tenant(dest.tenant_id, dest.kind, dest.connection, dest.schema)
    if hook:
        outbox.set_webhook(registry.ledger, dest.tenant_id, *hook)
    print(f"tenant {args.tenant!r} registered: {args.warehouse}"
          + (f", schema {dest.schema!r}" if dest.kind != "none" else "")
          + (f", webhook {hook[0]}" if hook else ""))
    _warn(dest)
    return 0


def _warn(dest: Destination) -> None:
    """What may keep the loader from this destination, said now on stderr (registered
    all the same: the loader may run where the variable is set and the warehouse answers)."""
    for warning in probe.warnings(dest):
        print(f"warning: tenant {dest.tenant_id}: {warning}", file=sys.stderr)


def check_tenants(args: LedgerArgs) -> int:
    registry = Registry(ledger_from(args))
    if args.tenant is not None:
        record = registry.tenant(args.tenant)
        if record is None:
            raise no_tenant(args.tenant)
        records = [record]
    else:
        records = list(registry.tenants())
    failed = 0
    for record in records:
        dest = Destination.from_record(record)
        if dest.kind == "none":
            print(f"{dest.tenant_id}: no warehouse (its batches are spooled, not loaded)")
            continue
        problem = probe.probe(dest, args.connect_timeout)
        where = f"{dest.kind}, schema {dest.schema}"
        if problem:
            failed += 1
            print(f"{dest.tenant_id}: FAILED ({where}): {problem}")
        else:
            print(f"{dest.tenant_id}: ok ({where})")
    if failed:
        print(f"error: {failed} of {len(records)} tenant(s) cannot be loaded; fix the cause, "
              "then 'spool batches retry --tenant T --all-failed' for batches that failed",
              file=sys.stderr)
        return 1
    return 0


def update_tenant(args: LedgerArgs) -> int:
    hook = _checked_webhook(args)
    if hook and args.no_webhook:
        usage_error("--no-webhook and --webhook together; give one of them")
    if not hook and not args.no_webhook:
        usage_error("nothing to change: give --webhook URL --webhook-secret env:NAME, or "
                    "--no-webhook")
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    if hook:
        outbox.set_webhook(ledger, args.tenant, *hook)
        print(f"tenant {args.tenant!r}: webhook {hook[0]}, signed with {hook[1]}")
        _warn(Destination.from_record(Registry(ledger).tenant(args.tenant)))
        return 0
    had, dropped = outbox.remove_webhook(ledger, args.tenant)
    print(f"tenant {args.tenant!r}: " + (f"webhook removed, {dropped} undelivered event(s) "
                                         "dropped" if had else "had no webhook"))
    return 0


def list_tenants(args: LedgerArgs) -> int:
    rows = [(r.tenant_id, r.destination_kind, r.schema_name,
             r.connection, r.created_at)
            for r in Registry(ledger_from(args)).tenants()]
    emit_table(["tenant", "warehouse", "schema", "connection", "since"], rows,
               as_json=args.json)
    return 0


def show_tenant(args: LedgerArgs) -> int:
    ledger = ledger_from(args)
    record = Registry(ledger).tenant(args.tenant)
    if record is None:
        raise no_tenant(args.tenant)
    dest = Destination.from_record(record)
    hook = outbox.webhook(ledger, args.tenant)
    print_json({"tenant": dest.tenant_id, "warehouse": dest.kind,
                "schema": dest.schema, "connection": dest.connection,
                "load_options": dest.load_options,
                "webhook": {"url": hook[0], "secret": hook[1]} if hook else None}, indent=2)
    return 0


def remove_tenant(args: LedgerArgs) -> int:
    if not Registry(ledger_from(args)).remove_tenant(args.tenant):
        raise no_tenant(args.tenant)
    print(f"tenant {args.tenant!r} removed; its batches and warehouse data are kept")
    return 0

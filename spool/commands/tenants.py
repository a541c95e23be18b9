"""``spool tenants add|list|show|remove``: the tenant registry and each tenant's warehouse.

Secrets are given by reference and stored by reference: ``--dsn env:ACME_DSN`` (an
environment variable the loader reads) or ``--dsn file:/run/secrets/acme``. A literal DSN
with a password is refused, so no password ever sits in the ledger or in a listing.
"""

from __future__ import annotations

import argparse
import json
import re

from spool.commands.common import LedgerArgs, emit_table, ledger_from, register_ledger_args
from spool.ledger import claims
from spool.warehouse.naming import segment

ADD_EXAMPLE = """examples:
  spool tenants add acme --warehouse postgres --dsn env:ACME_WAREHOUSE_DSN --schema acme
  spool tenants add globex --warehouse redshift --dsn file:/run/secrets/globex_dsn \\
      --staging-uri s3://spool-staging/globex --iam-role env:GLOBEX_COPY_ROLE
  spool tenants add sandbox            # accepted into the spool, loaded nowhere (yet)"""


def register(sub) -> None:
    p = sub.add_parser("tenants", help="register tenants and their warehouses",
                       description="The tenants whose records the spool job accepts, and where "
                       "the loader loads each one.", epilog=ADD_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="tenants_command", metavar="SUBCOMMAND", required=True)

    add = tsub.add_parser("add", help="register a tenant, or change its destination",
                          epilog=ADD_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(add)
    add.add_argument("tenant", help="the tenant id used in envelopes and Singer headers")
    add.add_argument("--warehouse", choices=["postgres", "redshift", "none"], default="none",
                     help="the kind of warehouse (default none: spooled, not loaded)")
    add.add_argument("--dsn", help="connection string BY REFERENCE: env:NAME or file:/path")
    add.add_argument("--schema", help="warehouse schema: lower-case letters, digits and _ "
                     "(default: the tenant id, normalised like a table name)")
    add.add_argument("--staging-uri", help="Redshift: s3://bucket/prefix for COPY files")
    add.add_argument("--iam-role", help="Redshift: IAM role ARN for COPY, or env:NAME")
    add.set_defaults(func=add_tenant)

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

    rm = tsub.add_parser("remove", help="unregister a tenant (its data stays where it is)",
                         epilog="example:\n  spool tenants remove sandbox\n\nNew records for "
                         "it are then rejected (kept in _sdc_rejected of\nthe _unassigned "
                         "tenant).", formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(rm)
    rm.add_argument("tenant")
    rm.set_defaults(func=remove_tenant)


_LITERAL_SECRET = re.compile(r"://[^/@\s]*:[^@\s]+@|password\s*=", re.I)
# a schema name every warehouse takes as it is: no quoting surprises in users' own SQL
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def add_tenant(args: LedgerArgs) -> int:
    connection: dict = {}
    if args.warehouse != "none":
        if not args.dsn:
            raise SystemExit(f"error: a {args.warehouse} warehouse needs --dsn env:NAME or "
                             "--dsn file:/path")
        if not args.dsn.startswith(("env:", "file:")) and _LITERAL_SECRET.search(args.dsn):
            raise SystemExit("error: --dsn holds a password; give it by reference instead: "
                             "--dsn env:NAME (and export NAME for the loader) or "
                             "--dsn file:/path")
        connection["dsn"] = args.dsn
    if args.warehouse == "redshift":
        if not args.staging_uri or not args.iam_role:
            raise SystemExit("error: a Redshift warehouse needs --staging-uri s3://... and "
                             "--iam-role (COPY reads staged files with that role)")
        connection.update(staging_uri=args.staging_uri, iam_role=args.iam_role)
    if args.schema is not None and (not _SCHEMA.fullmatch(args.schema)
                                    or args.schema.startswith("pg_")):
        raise SystemExit(f"error: --schema {args.schema!r} is not a plain warehouse schema "
                         "name: use lower-case letters, digits and _, starting with a letter "
                         "or _ (not pg_), at most 63 characters; for example --schema "
                         f"{re.sub('^pg_', '', segment(args.schema, empty='tenant')) or 'tenant'}")
    schema = args.schema or segment(args.tenant, empty="tenant")
    ledger = ledger_from(args)

    def clash(cur):
        cur.execute("SELECT tenant_id FROM tenants WHERE tenant_id <> %s AND connection = %s "
                    "AND coalesce(schema_name, '') = %s AND destination_kind <> 'none'",
                    (args.tenant, json.dumps(connection), schema))
        return [r[0] for r in cur.fetchall()]

    if args.warehouse != "none":
        others = ledger.run(clash)
        if others:
            raise SystemExit(f"error: tenant {others[0]!r} already loads into schema "
                             f"{schema!r} of that warehouse; choose another --schema")
    ledger.add_tenant(args.tenant, args.warehouse, connection, schema)
    print(f"tenant {args.tenant!r} registered: {args.warehouse}"
          + (f", schema {schema!r}" if args.warehouse != "none" else ""))
    return 0


def _rows(ledger):
    def q(cur):
        cur.execute("SELECT tenant_id, destination_kind, schema_name, connection, created_at "
                    "FROM tenants ORDER BY tenant_id")
        return cur.fetchall()

    return ledger.run(q)


def list_tenants(args: LedgerArgs) -> int:
    rows = [(t, k, s, json.dumps(c, sort_keys=True), at) for t, k, s, c, at in
            _rows(ledger_from(args))]
    emit_table(["tenant", "warehouse", "schema", "connection", "since"], rows,
               as_json=args.json)
    return 0


def show_tenant(args: LedgerArgs) -> int:
    dest = claims.destination(ledger_from(args), args.tenant)
    if dest is None:
        raise SystemExit(f"error: no tenant {args.tenant!r}; 'spool tenants list' shows them")
    print(json.dumps({"tenant": dest.tenant_id, "warehouse": dest.kind,
                      "schema": dest.schema_name, "connection": dest.connection,
                      "load_options": dest.load_options}, indent=2))
    return 0


def remove_tenant(args: LedgerArgs) -> int:
    ledger = ledger_from(args)

    def q(cur):
        cur.execute("DELETE FROM tenants WHERE tenant_id = %s", (args.tenant,))
        return cur.rowcount

    if not ledger.run(q):
        raise SystemExit(f"error: no tenant {args.tenant!r}")
    print(f"tenant {args.tenant!r} removed; its batches and warehouse data are kept")
    return 0

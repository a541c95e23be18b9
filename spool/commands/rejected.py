"""``spool rejected``: what the spool job refused, per tenant and reason, with samples."""

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
)
from spool.ledger import queries

EXAMPLE = """examples:
  spool rejected                       # every tenant, counts by reason
  spool rejected --tenant acme --samples 5
  spool rejected --tenant _unassigned  # messages no registered tenant could be named for

The rejected messages themselves are in each tenant's _sdc_rejected table once loaded (and
in the spool's _sdc_rejected batch files until then)."""


def register(sub) -> None:
    p = sub.add_parser("rejected", help="rejected records: counts by reason, with samples",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(p)
    p.add_argument("--tenant", help="only this tenant")
    p.add_argument("--samples", type=count, default=1, help="samples per reason (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(func=rejected)


def rejected(args: LedgerArgs) -> int:
    counts: dict = {}
    samples: dict = {}
    ledger = ledger_from(args)
    require_tenant(ledger, args.tenant)
    for tenant, meta in queries.rejection_summaries(ledger, args.tenant):
        for code, n in (meta.get("rejected") or {}).items():
            counts[(tenant, code)] = counts.get((tenant, code), 0) + n
            keep = samples.setdefault((tenant, code), [])
            for s in (meta.get("rejected_samples") or {}).get(code, []):
                if len(keep) < args.samples:
                    keep.append(s)
    rows = []
    for (tenant, code), n in sorted(counts.items()):
        for i, s in enumerate(samples.get((tenant, code)) or [{}]):
            rows.append((tenant if i == 0 else "", code if i == 0 else "", n if i == 0 else "",
                         s.get("record_id", ""), s.get("reason", ""), s.get("record", "")))
    if args.json:
        for (tenant, code), n in sorted(counts.items()):
            print_json({"tenant": tenant, "reason_code": code, "count": n,
                        "samples": samples.get((tenant, code), [])})
        return 0
    emit_table(["tenant", "reason", "count", "sample record", "why", "message"], rows)
    if not rows:
        print("(no rejected records)")
    return 0

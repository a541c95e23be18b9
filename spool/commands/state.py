"""``spool state``: the Singer STATE the spool job saved for a tenant, per state id, and the
file a tap resumes from.

The spool job keeps each tenant's latest STATE per state id (``spool produce --singer
--state-id NAME``; ``default`` without one). ``show`` lists a tenant's state ids or prints
one state; ``export`` writes exactly the JSON a Singer tap takes with ``--state``.
"""

from __future__ import annotations

import argparse
import json
import sys

from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    no_tenant,
    print_json,
    register_ledger_args,
)
from spool.ledger.registry import Registry, SavedState

EXAMPLE = """examples:
  spool state show --tenant acme                          # its state ids, when each was saved
  spool state show --tenant acme --state-id tap-postgres  # one state, as JSON
  spool state export --tenant acme --state-id tap-postgres -o state.json
  tap-postgres --config tap.json --state state.json | \\
      spool produce --singer --tenant acme --state-id tap-postgres

exit codes: 0 ok; 1 no such tenant or state id (the message names them), or no ledger;
2 bad command line."""

COLUMNS = ["state_id", "updated", "record_id"]


def register(sub) -> None:
    p = sub.add_parser("state", help="a tenant's Singer STATE per state id: show it, export "
                                     "it for a tap's --state", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="state_command", metavar="SUBCOMMAND", required=True)

    s = ssub.add_parser("show", help="a tenant's state ids with when each was saved; with "
                                     "--state-id, that state", epilog=EXAMPLE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(s)
    s.add_argument("--tenant", required=True, help="the tenant")
    s.add_argument("--state-id", metavar="NAME", help="only this state id, with its state")
    s.add_argument("--json", action="store_true",
                   help="print JSON lines (state id, updated, record id and the state)")
    s.set_defaults(func=show)

    e = ssub.add_parser("export", help="write the JSON a Singer tap takes with --state",
                        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(e)
    e.add_argument("--tenant", required=True, help="the tenant")
    e.add_argument("--state-id", required=True, metavar="NAME",
                   help="whose state: the --state-id the tap's output was sent with "
                        "('default' if none)")
    e.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="write to FILE (default: stdout)")
    e.set_defaults(func=export)


def _states(args: LedgerArgs) -> list[SavedState]:
    """The tenant's saved states (only ``--state-id``'s when given); exits 1 naming what
    is not there."""
    registry = Registry(ledger_from(args))
    states = registry.tenant_states(args.tenant)
    if not states and registry.tenant(args.tenant) is None:
        raise no_tenant(args.tenant)
    if args.state_id is None:
        return states
    found = [s for s in states if s.state_id == args.state_id]
    if not found:
        known = ", ".join(s.state_id for s in states) or "none yet"
        raise SystemExit(f"error: tenant {args.tenant!r} has no state id {args.state_id!r} "
                         f"(its state ids: {known}); a tap's STATE is saved under the "
                         "--state-id given to 'spool produce --singer'")
    return found


def show(args: LedgerArgs) -> int:
    states = _states(args)
    if args.json:
        for s in states:
            print_json({"state_id": s.state_id, "updated": s.updated_at,
                        "record_id": s.record_id, "state": s.value})
        return 0
    if not states:
        print(f"(no Singer STATE saved for tenant {args.tenant} yet)")
        return 0
    emit_table(COLUMNS, [(s.state_id, s.updated_at, s.record_id) for s in states])
    if args.state_id is not None:
        print()
        print(json.dumps(states[0].value, indent=2, ensure_ascii=False))
    return 0


def export(args: LedgerArgs) -> int:
    (state,) = _states(args)
    text = json.dumps(state.value, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise SystemExit(f"error: cannot write {args.output}: {exc.strerror}") from None
    saved = state.updated_at.strftime("%Y-%m-%d %H:%M:%S")
    print(f"state {state.state_id!r} of tenant {args.tenant!r} (saved {saved}, record "
          f"{state.record_id}) written to {args.output}", file=sys.stderr)
    return 0

"""What every ``spool`` command shares: the ledger connection, the tenant check, usage
errors, and plain or JSON output.

``--json`` is the same in every command: numbers are JSON numbers, nested objects JSON
objects, ages (durations) seconds as a number, times ISO 8601 with their time zone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from spool import secrets
from spool.ledger import queries
from spool.ledger.store import Ledger

LedgerArgs = argparse.Namespace


def register_ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger-dsn", default=None, metavar="DSN",
        help="the ledger database: postgresql://... or env:NAME / file:/path "
        "(default: $SPOOL_LEDGER_DSN)")


class UsageError(Exception):
    """A mistake on the command line: ``spool`` prints it on one line and exits 2, as
    argparse does for its own."""


def usage_error(text: str) -> NoReturn:
    raise UsageError(text)


def count(text: str) -> int:
    """An argparse type: a whole number of 0 or more (``--limit``, ``--samples``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 0 or more")
    return value


def ledger_from(args: LedgerArgs) -> Ledger:
    ref = args.ledger_dsn or ("env:SPOOL_LEDGER_DSN" if os.environ.get("SPOOL_LEDGER_DSN")
                              else None)
    if not ref:
        usage_error("no ledger: pass --ledger-dsn or set SPOOL_LEDGER_DSN "
                    "(scripts/services.sh env prints the local one)")
    try:
        secrets.resolve(ref)
    except secrets.SecretError as exc:
        raise SystemExit(f"error: {exc}") from None
    # patience=0: a command answers in seconds, it does not wait out a ledger outage
    ledger = Ledger(ref, application_name="spool-cli", patience=0)
    try:
        ledger.migrate()
    except Exception as exc:  # noqa: BLE001 - any connection problem ends here, explained
        raise SystemExit(f"error: cannot reach the ledger ({secrets.redact(str(exc)).strip()})"
                         "; is PostgreSQL running (scripts/services.sh status)?") from None
    return ledger


def no_tenant(tenant: str) -> SystemExit:
    """What ends a command (exit 1) that names a tenant the ledger does not know."""
    return SystemExit(f"error: no tenant {tenant!r}; 'spool tenants list' shows the "
                      "registered ones")


def require_tenant(ledger: Ledger, tenant: str | None) -> None:
    """End the command (exit 1) when ``tenant`` is given and the ledger does not know it: an
    unknown name must not look like a tenant with nothing yet."""
    if tenant is not None and not queries.tenant_known(ledger, tenant):
        raise no_tenant(tenant)


_RST = re.compile(r"``(.+?)``|:[a-z]+:`~?(.+?)`")


def plain(doc: str) -> str:
    """A module's docstring as --help text: RST's ``code`` in quotes, :role:`name` plain."""
    return _RST.sub(lambda m: f"'{m[1]}'" if m[1] else m[2], doc)


_AGO = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since(text: str) -> datetime:
    """``--since``: an ISO date or time (UTC unless it says otherwise), or an age such as
    ``30m``, ``12h``, ``7d``."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return datetime.now(tz=UTC) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a date/time (2026-12-01, 2026-12-01T09:30) nor an age "
            "(30m, 12h, 7d)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def register_history_args(parser: argparse.ArgumentParser, what: str, limit: int,
                          per: str = "") -> None:
    """The filters of the commands that list what happened (loads, schema changes)."""
    register_ledger_args(parser)
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--table", help="only this warehouse table")
    parser.add_argument("--since", type=since, metavar="WHEN",
                        help=f"only {what} since WHEN: a date/time (2026-12-01T09:00) or an "
                             "age (30m, 12h, 7d)")
    parser.add_argument("--limit", type=count, default=limit,
                        help=f"the newest N{per} (default {limit})")
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _utc(at: datetime) -> datetime:
    """A time in UTC; one without a zone (a DuckDB warehouse's) is UTC already."""
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _json_value(value: Any) -> Any:
    """What ``json`` cannot write itself, as --json writes it (see the module's doc)."""
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(value: Any, indent: int | None = None) -> str:
    """One value as --json prints it, in every command."""
    return json.dumps(value, default=_json_value, ensure_ascii=False, indent=indent)


def print_json(value: Any, indent: int | None = None) -> None:
    print(to_json(value, indent))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=_json_value)
    text = str(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def emit_table(columns: list[str], rows: list, as_json: bool = False) -> None:
    if as_json:
        for row in rows:
            print_json(dict(zip(columns, row, strict=True)))
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())

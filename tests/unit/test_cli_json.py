"""``--json`` is written the same way by every ``spool`` command (spool/commands/common.py):
numbers as numbers, objects as objects, ages in seconds, times ISO 8601 in UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from spool.commands.common import emit_table, to_json


def test_values_from_the_ledger_are_written_as_json_types():
    got = json.loads(to_json({
        "sum": Decimal("4"), "ratio": Decimal("0.5"), "age": timedelta(minutes=2, seconds=16),
        "short": timedelta(milliseconds=1500),
        "at": datetime(2026, 12, 8, 3, 30, tzinfo=timezone(timedelta(hours=1))),
        "naive": datetime(2026, 12, 8, 2, 30),  # noqa: DTZ001 - as a DuckDB warehouse gives
        "map": {"drop": ["ssn"]}, "keys": ("id",)}))
    assert got == {"sum": 4, "ratio": 0.5, "age": 136, "short": 1.5,
                   "at": "2026-12-08T02:30:00+00:00", "naive": "2026-12-08T02:30:00+00:00",
                   "map": {"drop": ["ssn"]}, "keys": ["id"]}


def test_a_table_shows_objects_as_json_and_times_in_utc(capsys):
    emit_table(["map", "at"], [({"drop": ["ssn"]},
                                datetime(2026, 12, 8, 3, 30, tzinfo=timezone(timedelta(hours=1))))])
    assert capsys.readouterr().out.splitlines()[1] == '{"drop": ["ssn"]}  2026-12-08 02:30:00'
    emit_table(["at"], [(datetime(2026, 12, 8, 2, 30, tzinfo=UTC),)], as_json=True)
    assert json.loads(capsys.readouterr().out) == {"at": "2026-12-08T02:30:00+00:00"}

"""The batch state machine is a guard: every state change the ledger's SQL makes is in the
table of allowed transitions, and no SQL moves a batch except through that table.

The statements checked are the ones the ledger functions send (recorded from a cursor that
answers nothing); sqlglot parses each, and for every ``UPDATE batches`` that sets ``state``
the (from, to) pairs are read from its SET and WHERE clauses, not from what the code says.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from spool.ledger import claims, queries, states
from spool.ledger.states import ALLOWED, BatchState

ROOT = Path(__file__).resolve().parents[2]


class RecordingCursor:
    def __init__(self, sent: list[str]) -> None:
        self.sent = sent
        self.rowcount = 0
        self.description = []

    def execute(self, sql, params=None):
        self.sent.append(sql)

    def fetchall(self):
        return []

    def fetchone(self):
        return None


class RecordingLedger:
    """Runs the ledger's statement functions against a cursor that records them."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def run(self, fn, *args):
        return fn(RecordingCursor(self.sent), *args)


def ledger_statements() -> list[str]:
    led = RecordingLedger()
    claims.claimable_tables(led)
    claims.claim(led, "acme", ["orders"], "me", 60, 10)
    claims.renew(led, ["b"], "me", 60)
    claims.mark_loaded(led, ["b"])
    claims.mark_retry(led, ["b"], "me", "error", 5)
    claims.release(led, ["b"], "me")
    claims.mark_failed(led, ["b"], "me", "error")
    claims.retry_failed(led, ["b"], tenant="acme")
    queries.status(led)
    queries.batches(led, state="FAILED")
    queries.batch(led, "b")
    queries.rejection_summaries(led)
    return led.sent


def _states_in(node) -> set[BatchState]:
    """The batch states a WHERE condition lets through: ``state = '...'``/``state IN (...)``."""
    found: set[BatchState] = set()
    for cond in node.find_all(exp.In, exp.EQ):
        if isinstance(cond.this, exp.Column) and cond.this.name == "state":
            values = cond.expressions if isinstance(cond, exp.In) else [cond.expression]
            found |= {BatchState(v.this) for v in values if isinstance(v, exp.Literal)}
    return found


def transitions_in(sql: str) -> list[tuple[BatchState | None, BatchState]]:
    """(from, to) of every batch state change in ``sql``; from is None when the UPDATE does
    not say which states it moves (it would move a batch from any state)."""
    text = re.sub(r"%\(\w+\)s|%s", "NULL", sql if isinstance(sql, str) else sql.decode())
    out = []
    for statement in sqlglot.parse(text, read="postgres"):
        for update in statement.find_all(exp.Update):
            if update.this.name != "batches":
                continue
            targets = [BatchState(e.expression.this) for e in update.expressions
                       if isinstance(e, exp.EQ) and e.this.name == "state"]
            where = update.args.get("where")
            sources = _states_in(where) if where is not None else set()
            for target in targets:
                out += [(s, target) for s in sources] or [(None, target)]
    return out


def forbidden(sql: str) -> list[str]:
    return [f"{s.value if s else 'any state'} -> {t.value}" for s, t in transitions_in(sql)
            if s is None or t not in ALLOWED[s]]


def test_every_state_change_in_the_ledger_sql_is_an_allowed_transition():
    statements = ledger_statements()
    changes = {pair for sql in statements for pair in transitions_in(sql)}
    # every declared transition is really in the SQL ...
    declared = {(s, t.target) for t in states.TRANSITIONS for s in t.sources}
    assert changes == declared
    # ... and nothing the table forbids
    assert [(sql, forbidden(sql)) for sql in statements if forbidden(sql)] == []
    # reclaiming an expired lease is a transition of its own
    assert (BatchState.LOADING, BatchState.LOADING) in changes


def test_the_check_catches_a_forbidden_transition(monkeypatch):
    assert forbidden("UPDATE batches SET state = 'LOADED', loaded_at = now() "
                     "WHERE batches.state IN ('READY') AND batch_id = %s") == \
        ["READY -> LOADED"]
    assert forbidden("UPDATE batches SET state = 'FAILED' WHERE batch_id = ANY(%s)") == \
        ["any state -> FAILED"]
    # the claim's SQL reclaims expired leases (LOADING -> LOADING): without that row of the
    # table, the very same statement is refused
    claim = next(s for s in ledger_statements() if "FOR UPDATE OF b SKIP LOCKED" in s)
    monkeypatch.setitem(ALLOWED, BatchState.LOADING,
                        ALLOWED[BatchState.LOADING] - {BatchState.LOADING})
    assert forbidden(claim) == ["LOADING -> LOADING"]


def test_a_transition_the_table_forbids_cannot_be_declared():
    with pytest.raises(ValueError, match="cannot go from LOADED to READY"):
        states.Transition("undo", (BatchState.LOADED,), BatchState.READY)


def sql_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal and f-string in a module."""
    source = path.read_text()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            out.append((node.lineno, ast.get_source_segment(source, node) or ""))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def test_no_sql_outside_the_state_machine_sets_a_batch_state():
    """A statement that moves a batch is built by states.Transition.update, nowhere else."""
    setting = re.compile(r"UPDATE\s+batches\s+SET\b(?:(?!\bWHERE\b|\bFROM\b).)*\bstate\s*=",
                         re.I | re.S)
    found = [f"{path.relative_to(ROOT)}:{line}"
             for path in sorted((ROOT / "spool").rglob("*.py")) if path.name != "states.py"
             for line, text in sql_literals(path) if setting.search(text)]
    assert found == []
    # the pattern does find one where it is
    assert setting.search("UPDATE batches SET lease_owner = NULL, state = 'READY' WHERE x")

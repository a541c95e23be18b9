"""What the ledger records with a load's outcome, in the transaction that marks it.

A load that committed in the warehouse is marked LOADED together with its per-table reports
(``spool loads``, ``spool status``) and the webhook events it causes; a batch that failed
alone is marked FAILED together with its ``batch.failed`` event. Either all of it is in the
ledger or none of it: an event is never announced for a state the ledger does not hold, and
never lost for one it does.
"""

from __future__ import annotations

from spool.ledger import outbox
from spool.ledger import reports as ledger_reports
from spool.warehouse.report import SchemaChange, TableReport
from spool.webhooks import events


def loaded(cur, tenant: str, reports: list[TableReport], changes: list[SchemaChange]) -> None:
    """Record a committed load's reports (and its events) with its LOADED state."""
    ledger_reports.save(cur, tenant, reports)
    if outbox.has_webhook(cur, tenant):
        # one set of events per load: a retry may hand on an earlier load's report (its
        # loader died before the ledger heard) beside its own
        for load_id in sorted({r.load_id for r in reports} | {c.load_id for c in changes}):
            outbox.enqueue(cur, events.for_load(
                tenant, [r for r in reports if r.load_id == load_id],
                [c for c in changes if c.load_id == load_id]))


def failed(cur, tenant: str, batch_ids: list[str], error: str) -> None:
    """Record what goes with batches that failed alone (their events)."""
    if outbox.has_webhook(cur, tenant):
        batches, claimed_at = outbox.failed_batches(cur, batch_ids)
        outbox.enqueue(cur, [events.for_failure(tenant, batches, error, claimed_at)])

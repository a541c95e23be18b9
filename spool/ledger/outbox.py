"""Webhooks in the ledger: each tenant's endpoint, and the outbox of events to deliver.

Events are written by :func:`enqueue` with the cursor of the transaction that marks a load
LOADED or batches FAILED (spool.loader.outcomes), so an event exists exactly when the state
it announces does; its id comes from the data and ``ON CONFLICT DO NOTHING`` keeps the first
row, so a retried transaction cannot write it twice. Only a tenant with a webhook gets
events.

Deliverers (spool.webhooks.delivery) claim due events with a lease (``FOR UPDATE SKIP
LOCKED``: several run side by side without waiting for each other, and an event whose
deliverer died is claimed again when its lease ends), then record the attempt: delivered, or
due again after a backoff, with the status and error for ``spool webhooks list`` and
``spool status``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from psycopg2.extras import execute_values

from spool.ledger.store import Ledger

# -- each tenant's webhook ----------------------------------------------------------------


def set_webhook(ledger: Ledger, tenant: str, url: str, secret_ref: str) -> None:
    def q(cur):
        cur.execute("""INSERT INTO webhooks (tenant_id, url, secret_ref) VALUES (%s, %s, %s)
                       ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url,
                           secret_ref = excluded.secret_ref, updated_at = now()""",
                    (tenant, url, secret_ref))

    ledger.run(q)


def remove_webhook(ledger: Ledger, tenant: str) -> tuple[bool, int]:
    """Forget a tenant's webhook and drop its undelivered events: (had one, events
    dropped)."""

    def q(cur):
        cur.execute("DELETE FROM webhooks WHERE tenant_id = %s", (tenant,))
        had = cur.rowcount > 0
        cur.execute("DELETE FROM webhook_events WHERE tenant_id = %s AND delivered_at IS NULL",
                    (tenant,))
        return had, cur.rowcount

    return ledger.run(q)


def webhook(ledger: Ledger, tenant: str) -> tuple[str, str] | None:
    """(url, secret reference) of a tenant's webhook, or None."""

    def q(cur):
        cur.execute("SELECT url, secret_ref FROM webhooks WHERE tenant_id = %s", (tenant,))
        row = cur.fetchone()
        return None if row is None else (row[0], row[1])

    return ledger.run(q)


# -- writing events (inside the outcome's transaction) -------------------------------------


def has_webhook(cur, tenant: str) -> bool:
    cur.execute("SELECT 1 FROM webhooks WHERE tenant_id = %s", (tenant,))
    return cur.fetchone() is not None


def failed_batches(cur, batch_ids: list[str]) -> tuple[list[tuple[str, str, int]],
                                                        datetime | None]:
    """(batch id, stream, attempts) of batches, and when their latest claim began."""
    cur.execute("SELECT batch_id, stream, attempts, load_started_at FROM batches "
                "WHERE batch_id = ANY(%s) ORDER BY batch_id", (list(batch_ids),))
    rows = cur.fetchall()
    started = [r[3] for r in rows if r[3] is not None]
    return [(b, s, a) for b, s, a, _ in rows], max(started, default=None)


def enqueue(cur, events) -> int:
    """Add events (spool.webhooks.events.Event) to the outbox of their tenants that have a
    webhook; an id already there is left alone. Returns how many were new."""
    if not events:
        return 0
    inserted = execute_values(cur, """
        INSERT INTO webhook_events (event_id, tenant_id, type, payload)
        SELECT v.event_id, v.tenant_id, v.type, v.payload::jsonb
        FROM (VALUES %s) AS v (event_id, tenant_id, type, payload)
        WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = v.tenant_id)
        ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
        [(e.event_id, e.tenant, e.type, json.dumps(e.data, default=str)) for e in events],
        fetch=True)
    return len(inserted)


# -- delivering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """An event claimed for one delivery attempt, with where it goes."""

    event_id: str
    tenant: str
    type: str
    payload: dict
    created_at: datetime
    attempts: int  # this attempt included
    url: str
    secret_ref: str


def claim_due(ledger: Ledger, owner: str, lease_seconds: float, limit: int) -> list[Due]:
    """Claim up to ``limit`` due events (oldest due first) of tenants that have a webhook,
    counting the attempt; events another deliverer holds are skipped, not waited for."""

    def q(cur):
        cur.execute("""
            WITH due AS (
                SELECT e.event_id FROM webhook_events e
                WHERE e.delivered_at IS NULL AND e.next_attempt_at <= now()
                  AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now())
                  AND EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = e.tenant_id)
                ORDER BY e.next_attempt_at, e.created_at, e.event_id
                LIMIT %s FOR UPDATE OF e SKIP LOCKED)
            UPDATE webhook_events e SET attempts = e.attempts + 1, lease_owner = %s,
                   lease_expires_at = now() + %s * interval '1 second'
            FROM due, webhooks w
            WHERE e.event_id = due.event_id AND w.tenant_id = e.tenant_id
            RETURNING e.event_id, e.tenant_id, e.type, e.payload, e.created_at, e.attempts,
                      w.url, w.secret_ref""", (limit, owner, lease_seconds))
        rows = sorted(cur.fetchall(), key=lambda r: (r[4], r[0]))
        return [Due(r[0], r[1], r[2], r[3] if isinstance(r[3], dict) else json.loads(r[3]),
                    *r[4:]) for r in rows]

    return ledger.run(q)


def mark_delivered(ledger: Ledger, event_id: str, status: int) -> None:
    """The endpoint took it (whichever deliverer's attempt it was: it is delivered)."""

    def q(cur):
        cur.execute("""UPDATE webhook_events SET delivered_at = now(), last_attempt_at = now(),
                           last_status = %s,
                           last_error = NULL, lease_owner = NULL, lease_expires_at = NULL
                       WHERE event_id = %s AND delivered_at IS NULL""", (status, event_id))

    ledger.run(q)


def mark_undelivered(ledger: Ledger, event_id: str, owner: str, status: int | None,
                     error: str, delay_seconds: float) -> None:
    """The attempt failed: due again after ``delay_seconds``."""

    def q(cur):
        cur.execute("""UPDATE webhook_events SET last_status = %s, last_error = %s,
                           last_attempt_at = now(),
                           next_attempt_at = now() + %s * interval '1 second',
                           lease_owner = NULL, lease_expires_at = NULL
                       WHERE event_id = %s AND lease_owner = %s AND delivered_at IS NULL""",
                    (status, error[:2000], delay_seconds, event_id, owner))

    ledger.run(q)


def prune_delivered(ledger: Ledger, keep_days: float) -> int:
    """Forget events delivered more than ``keep_days`` ago: how many."""

    def q(cur):
        cur.execute("DELETE FROM webhook_events WHERE delivered_at < now() - %s * interval "
                    "'1 day'", (keep_days,))
        return cur.rowcount

    return ledger.run(q)


def retry_now(ledger: Ledger, tenant: str | None = None) -> int:
    """Make undelivered events due at once (the endpoint is back): how many."""

    def q(cur):
        cur.execute("""UPDATE webhook_events SET next_attempt_at = now()
                       WHERE delivered_at IS NULL AND next_attempt_at > now()
                         AND (%(t)s::text IS NULL OR tenant_id = %(t)s)""", {"t": tenant})
        return cur.rowcount

    return ledger.run(q)


# -- reading (spool webhooks list, spool status) ----------------------------------------------

EVENT_COLUMNS = ["created", "tenant", "type", "event_id", "state", "attempts", "next_attempt",
                 "last_status", "last_error"]
FAILING_COLUMNS = ["tenant", "url", "pending", "oldest_pending_age", "attempts",
                   "last_status", "last_error"]


def events(ledger: Ledger, tenant: str | None = None, failing: bool = False,
           delivered: bool = False, limit: int = 50) -> list[tuple]:
    """Events, newest first (``EVENT_COLUMNS``): undelivered ones, or only those whose last
    attempt failed (``failing``), or delivered ones too (``delivered``)."""

    def q(cur):
        cur.execute("""
            SELECT date_trunc('second', created_at), tenant_id, type, event_id,
                   CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
                        WHEN last_error IS NOT NULL THEN 'failing' ELSE 'pending' END,
                   attempts,
                   CASE WHEN delivered_at IS NULL THEN date_trunc('second', next_attempt_at)
                   END,
                   last_status, last_error
            FROM webhook_events
            WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
              AND (%(d)s OR delivered_at IS NULL)
              AND (NOT %(f)s OR (delivered_at IS NULL AND last_error IS NOT NULL))
            ORDER BY created_at DESC, event_id LIMIT %(n)s""",
                    {"t": tenant, "d": delivered and not failing, "f": failing, "n": limit})
        return cur.fetchall()

    return ledger.run(q)


def failing(ledger: Ledger, tenant: str | None = None) -> list[tuple]:
    """Per tenant whose webhook's last attempt failed (``FAILING_COLUMNS``): undelivered
    events, the age of the oldest, the most attempts any has had, and the newest error."""

    def q(cur):
        cur.execute("""
            WITH pending AS (
                SELECT tenant_id, count(*) AS n, min(created_at) AS oldest,
                       max(attempts) AS attempts
                FROM webhook_events
                WHERE delivered_at IS NULL AND (%(t)s::text IS NULL OR tenant_id = %(t)s)
                GROUP BY tenant_id),
            latest AS (
                SELECT DISTINCT ON (tenant_id) tenant_id, last_status, last_error
                FROM webhook_events
                WHERE delivered_at IS NULL AND last_error IS NOT NULL
                  AND (%(t)s::text IS NULL OR tenant_id = %(t)s)
                ORDER BY tenant_id, last_attempt_at DESC)
            SELECT p.tenant_id, w.url, p.n, date_trunc('second', now() - p.oldest),
                   p.attempts, l.last_status, l.last_error
            FROM pending p JOIN latest l USING (tenant_id)
                 LEFT JOIN webhooks w USING (tenant_id)
            ORDER BY 1""", {"t": tenant})
        return cur.fetchall()

    return ledger.run(q)

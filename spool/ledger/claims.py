"""The loader's side of the ledger: claims with leases, and one function per transition.

A batch is *claimable* when it is READY and due (``next_attempt_at`` passed), or LOADING
with an expired lease (its loader died: no batch is ever stranded). Claims take row locks
with ``FOR UPDATE SKIP LOCKED``, so loaders side by side never wait for each other and never
claim the same batch. Every state change is a transition of :mod:`spool.ledger.states`,
whose SQL checks the current state; the functions here add the lease owner where one
applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spool.ledger import states
from spool.ledger.states import BatchState, sql_states
from spool.ledger.store import Ledger
from spool.secrets import redact

READY, LOADING = BatchState.READY.value, BatchState.LOADING.value


@dataclass(frozen=True)
class Claimed:
    batch_id: str
    tenant_id: str
    stream: str
    uri: str
    min_sequence: int | None
    row_count: int
    attempts: int
    key_names: tuple[str, ...] = ()


def claimable_tables(ledger: Ledger) -> list[tuple[str, str, int]]:
    """(tenant, stream, claimable batches) for tenants that have a warehouse."""

    def q(cur):
        cur.execute(f"""SELECT b.tenant_id, b.stream, count(*)
                        FROM batches b JOIN tenants t ON t.tenant_id = b.tenant_id
                        WHERE t.destination_kind <> 'none' AND (
                          (b.state = '{READY}' AND (b.next_attempt_at IS NULL
                                                    OR b.next_attempt_at <= now()))
                          OR (b.state = '{LOADING}' AND b.lease_expires_at < now()))
                        GROUP BY 1, 2 ORDER BY 1, 2""")
        return [(t, s, n) for t, s, n in cur.fetchall()]

    return ledger.run(q)


def claim(ledger: Ledger, tenant: str, streams: list[str] | str, owner: str,
          lease_seconds: float, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` batches of a tenant's streams, ordered by stream, then
    sequence.

    A stream loads in order: a batch is claimed only when every earlier unloaded batch of
    its stream is claimed with it (or already by ``owner``). A batch waiting out a retry
    delay, or leased by another loader, holds the later ones back, so two loaders side by
    side end exactly where one would (a sequence tie goes to the batch loaded last), and an
    ACTIVATE_VERSION never runs ahead of the records of its version. FAILED batches are set
    aside and do not hold a stream back. Claims of one tenant take turns (a transaction
    lock), so each sees the leases of the one before.
    """
    streams = [streams] if isinstance(streams, str) else list(streams)
    claim_sql = states.CLAIM.update(
        "lease_owner = %s, lease_expires_at = now() + %s * interval '1 second', "
        "attempts = attempts + 1, load_started_at = now(), updated_at = now()",
        "batches.batch_id = picked.batch_id", from_clause="picked")

    def q(cur):
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"spool-claim:{tenant}",))
        cur.execute(f"""WITH pending AS (
                          SELECT b.batch_id, b.stream, b.min_sequence, b.window_start, b.pane,
                                 (b.state = '{READY}' AND (b.next_attempt_at IS NULL
                                                           OR b.next_attempt_at <= now()))
                                 OR (b.state = '{LOADING}' AND (b.lease_expires_at < now()
                                                                OR b.lease_owner = %s)) AS due
                          FROM batches b
                          WHERE b.tenant_id = %s AND b.stream = ANY(%s)
                            AND b.state IN {sql_states(states.CLAIM.sources)}),
                        in_turn AS (
                          SELECT batch_id, bool_and(due) OVER (
                                   PARTITION BY stream ORDER BY min_sequence NULLS FIRST,
                                   window_start, pane, batch_id) AS ok
                          FROM pending),
                        picked AS (
                          SELECT b.batch_id FROM batches b JOIN in_turn USING (batch_id)
                          WHERE in_turn.ok
                          ORDER BY b.stream, b.min_sequence NULLS FIRST, b.window_start,
                                   b.pane, b.batch_id
                          LIMIT %s
                          FOR UPDATE OF b SKIP LOCKED)
                        {claim_sql}
                        RETURNING batches.batch_id, batches.tenant_id, batches.stream,
                                  batches.uri, batches.min_sequence, batches.row_count,
                                  batches.attempts, batches.key_names, batches.window_start,
                                  batches.pane""",
                    (owner, tenant, streams, limit, owner, lease_seconds))
        rows = sorted(cur.fetchall(), key=lambda r: (r[2], r[4] is not None, r[4] or 0, r[8],
                                                     r[9], r[0]))
        return [Claimed(*r[:7], tuple(r[7] or ())) for r in rows]

    return ledger.run(q)


def renew(ledger: Ledger, batch_ids: list[str], owner: str, lease_seconds: float) -> int:
    def q(cur):
        cur.execute(f"""UPDATE batches SET lease_expires_at = now() + %s * interval '1 second'
                        WHERE batch_id = ANY(%s) AND state = '{LOADING}' AND lease_owner = %s""",
                    (lease_seconds, list(batch_ids), owner))
        return cur.rowcount

    return ledger.run(q)


def mark_loaded(ledger: Ledger, batch_ids: list[str],
                also: Callable[[object], None] | None = None) -> int:
    """LOADING → LOADED (by whichever loader: the warehouse's load log decided). ``also``
    runs with the same cursor, in the same ledger transaction (the load's reports and
    events are recorded with the state change, or not at all)."""
    sql = states.LOADED.update("loaded_at = now(), updated_at = now(), lease_owner = NULL, "
                               "lease_expires_at = NULL, last_error = NULL, "
                               "next_attempt_at = NULL", "batch_id = ANY(%s)")

    def q(cur):
        cur.execute(sql, (list(batch_ids),))
        n = cur.rowcount
        if also is not None:
            also(cur)
        return n

    return ledger.run(q)


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Capped exponential backoff: base, 2*base, 4*base, ... up to cap."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def mark_retry(ledger: Ledger, batch_ids: list[str], owner: str, error: str,
               delay_seconds: float) -> int:
    """LOADING → READY, due again after ``delay_seconds`` (see backoff_seconds)."""
    sql = states.RETRY_LATER.update(
        "lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), last_error = %s, "
        "next_attempt_at = now() + %s * interval '1 second'",
        "batch_id = ANY(%s) AND lease_owner = %s")

    def q(cur):
        cur.execute(sql, (redact(error)[:4000], delay_seconds, list(batch_ids), owner))
        return cur.rowcount

    return ledger.run(q)


def release(ledger: Ledger, batch_ids: list[str], owner: str) -> int:
    """LOADING → READY at once, not counted as an attempt (claimed but not tried)."""
    sql = states.RELEASE.update("lease_owner = NULL, lease_expires_at = NULL, "
                                "attempts = greatest(attempts - 1, 0), updated_at = now()",
                                "batch_id = ANY(%s) AND lease_owner = %s")

    def q(cur):
        cur.execute(sql, (list(batch_ids), owner))
        return cur.rowcount

    return ledger.run(q)


def mark_failed(ledger: Ledger, batch_ids: list[str], owner: str, error: str,
                also: Callable[[object], None] | None = None) -> int:
    """LOADING → FAILED with the reason (credentials redacted); ``also`` as in
    :func:`mark_loaded`."""
    sql = states.FAIL.update("lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), "
                             "last_error = %s", "batch_id = ANY(%s) AND lease_owner = %s")

    def q(cur):
        cur.execute(sql, (redact(error)[:4000], list(batch_ids), owner))
        n = cur.rowcount
        if also is not None:
            also(cur)
        return n

    return ledger.run(q)


def retry_failed(ledger: Ledger, batch_ids: list[str] | None = None,
                 tenant: str | None = None) -> int:
    """FAILED → READY (a person fixed the cause), with the attempts counted afresh."""
    sql = states.RETRY_FAILED.update(
        "attempts = 0, next_attempt_at = NULL, updated_at = now()",
        "(%(ids)s::text[] IS NULL OR batch_id = ANY(%(ids)s::text[])) "
        "AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)")

    def q(cur):
        cur.execute(sql, {"ids": list(batch_ids) if batch_ids else None, "tenant": tenant})
        return cur.rowcount

    return ledger.run(q)


@dataclass(frozen=True)
class Trouble:
    """Batches of one tenant that one reason kept from loading (see :func:`troubles`)."""

    tenant_id: str
    failed: bool  # FAILED; else READY, waiting on a retry
    error: str
    batches: int
    attempts: int  # the most any of them had


def ledger_now(ledger: Ledger):
    """The ledger's clock: what :func:`troubles` compares with."""
    return ledger.run(lambda cur: (cur.execute("SELECT now()"), cur.fetchone()[0])[1])


def troubles(ledger: Ledger, since) -> list[Trouble]:
    """What loads since ``since`` (the ledger's clock) left undone, per tenant and reason:
    batches that went FAILED, and batches set to retry later (READY with an error)."""

    def q(cur):
        cur.execute(f"""SELECT tenant_id, state = '{BatchState.FAILED.value}', last_error,
                               count(*), max(attempts)
                        FROM batches
                        WHERE updated_at >= %s AND last_error IS NOT NULL
                          AND (state = '{BatchState.FAILED.value}'
                               -- set to retry later (mark_retry), not merely released or
                               -- given a second chance by 'spool batches retry'
                               OR (state = '{READY}' AND next_attempt_at > updated_at))
                        GROUP BY 1, 2, 3 ORDER BY 1, 2 DESC, 3""", (since,))
        return [Trouble(*r) for r in cur.fetchall()]

    return ledger.run(q)

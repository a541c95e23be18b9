"""What the ``spool`` command reads from the ledger: status, batches, rejected records.

Read-only statements, each one short transaction. Filters left None match everything.
"""

from __future__ import annotations

import json

from spool.ledger.states import BatchState
from spool.ledger.store import Ledger
from spool.sdc import REJECTED, UNASSIGNED_TENANT

STATUS_COLUMNS = ["tenant", "table", "ready", "loading", "loaded", "failed", "records_spooled",
                  "records_loaded", "records_filtered", "late", "oldest_unloaded", "last_load",
                  "newest_row_age", "last_error"]
BATCH_COLUMNS = ["batch_id", "tenant", "table", "state", "records", "rows", "attempts",
                 "created", "loaded", "last_error"]
_S = {s: s.value for s in BatchState}
# _unassigned with no destination: its batches are held, not waiting for a load
_HELD = """(tenant_id = %(u)s AND NOT EXISTS (
                 SELECT 1 FROM tenants WHERE tenant_id = %(u)s AND destination_kind <> 'none'))"""


def status(ledger: Ledger, tenant: str | None = None, stream: str | None = None) -> list[tuple]:
    """Per (tenant, stream): batches by state, records spooled and loaded, the age of the
    oldest batch not loaded, the last load and the newest error (``STATUS_COLUMNS``).

    ``_unassigned`` is left out while it has no destination: nothing will load its batches,
    so they are no backlog; :func:`held` counts them."""

    # the newest error per stream comes from its own (small) set of rows: an ordered
    # aggregate in the main query forces a sort of every batch row, 1.2 s at 1,000,000
    # batches against 0.4 s this way
    def q(cur):
        cur.execute(f"""
            WITH totals AS (
                SELECT tenant_id, stream,
                       count(*) FILTER (WHERE state = '{_S[BatchState.READY]}') AS ready,
                       count(*) FILTER (WHERE state = '{_S[BatchState.LOADING]}') AS loading,
                       count(*) FILTER (WHERE state = '{_S[BatchState.LOADED]}') AS loaded,
                       count(*) FILTER (WHERE state = '{_S[BatchState.FAILED]}') AS failed,
                       sum(record_count) AS records_spooled,
                       coalesce(sum(record_count)
                                FILTER (WHERE state = '{_S[BatchState.LOADED]}'), 0)
                           AS records_loaded,
                       -- records a stream map's filter dropped (docs/stream-maps.md)
                       coalesce(sum((meta ->> 'records_filtered')::bigint), 0)
                           AS records_filtered,
                       -- records that reached their window after it closed, loaded in a
                       -- later pane (meta's records_late, kept as a column)
                       coalesce(sum(records_late), 0) AS late,
                       date_trunc('second', now() - min(created_at)
                                  FILTER (WHERE state <> '{_S[BatchState.LOADED]}'))
                           AS oldest_unloaded,
                       max(loaded_at) AS last_load
                FROM batches
                WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
                  AND (%(s)s::text IS NULL OR stream = %(s)s)
                  AND NOT {_HELD}
                GROUP BY 1, 2),
            errors AS (
                SELECT DISTINCT ON (tenant_id, stream) tenant_id, stream, last_error
                FROM batches
                WHERE last_error IS NOT NULL
                  AND (%(t)s::text IS NULL OR tenant_id = %(t)s)
                  AND (%(s)s::text IS NULL OR stream = %(s)s)
                ORDER BY tenant_id, stream, updated_at DESC)
            SELECT t.*, date_trunc('second', now() - f.newest_received), e.last_error
            FROM totals t LEFT JOIN errors e USING (tenant_id, stream)
                 LEFT JOIN stream_freshness f USING (tenant_id, stream)
            ORDER BY 1, 2""", {"t": tenant, "s": stream, "u": UNASSIGNED_TENANT})
        return cur.fetchall()

    return ledger.run(q)


def tenant_known(ledger: Ledger, tenant: str) -> bool:
    """Whether the ledger knows ``tenant``: registered, reserved (``_unassigned``), or with
    batches left from before it was removed. An unknown one is a typo, not an empty tenant."""
    if tenant == UNASSIGNED_TENANT:
        return True

    def q(cur):
        cur.execute("""SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = %(t)s)
                              OR EXISTS (SELECT 1 FROM batches WHERE tenant_id = %(t)s)""",
                    {"t": tenant})
        return bool(cur.fetchone()[0])

    return ledger.run(q)


def held(ledger: Ledger) -> tuple[int, int]:
    """(messages, batches) of ``_unassigned`` not loaded while it has no destination: the
    rejected messages that named no registered tenant, which nothing loads until an operator
    gives ``_unassigned`` a destination; (0, 0) once it has one."""

    def q(cur):
        cur.execute(f"""SELECT coalesce(sum(record_count), 0), count(*) FROM batches
                        WHERE state <> '{_S[BatchState.LOADED]}' AND {_HELD}""",
                    {"u": UNASSIGNED_TENANT})
        messages, batches = cur.fetchone()
        return int(messages), int(batches)

    return ledger.run(q)


def batches(ledger: Ledger, tenant: str | None = None, stream: str | None = None,
            state: str | None = None, limit: int = 50) -> list[tuple]:
    """Batches, newest first (``BATCH_COLUMNS``)."""

    def q(cur):
        cur.execute("""SELECT batch_id, tenant_id, stream, state, record_count, row_count,
                              attempts, created_at, loaded_at, last_error
                       FROM batches
                       WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
                         AND (%(s)s::text IS NULL OR stream = %(s)s)
                         AND (%(st)s::text IS NULL OR state = %(st)s::batch_state)
                       ORDER BY created_at DESC, batch_id LIMIT %(n)s""",
                    {"t": tenant, "s": stream, "st": state, "n": limit})
        return cur.fetchall()

    return ledger.run(q)


def batch(ledger: Ledger, batch_id: str) -> dict | None:
    """Everything the ledger holds about one batch, by column name."""

    def q(cur):
        cur.execute("SELECT * FROM batches WHERE batch_id = %s", (batch_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row,
                                                  strict=True))

    return ledger.run(q)


def rejection_summaries(ledger: Ledger, tenant: str | None = None) -> list[tuple[str, dict]]:
    """(tenant, summary) of every batch of rejected records, oldest first: the summary is
    the ``rejected`` counts per reason code and ``rejected_samples`` the spool job keeps in
    the batch's ledger metadata (spool.ingest.writer.rejection_summary)."""

    def q(cur):
        cur.execute("""SELECT tenant_id, meta FROM batches
                       WHERE stream = %(rejected)s AND (%(t)s::text IS NULL OR tenant_id = %(t)s)
                       ORDER BY created_at""", {"t": tenant, "rejected": REJECTED})
        return [(t, m if isinstance(m, dict) else json.loads(m)) for t, m in cur.fetchall()]

    return ledger.run(q)


def read_stalls(ledger: Ledger) -> list:
    """Partitions the spool job cannot read now, the longest stalled first
    (spool.ledger.stalls.Stall: group, topic, partition, since, seconds, error)."""
    from spool.ledger import stalls

    return stalls.open_stalls(ledger)

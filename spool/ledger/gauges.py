"""What the jobs' metrics endpoints report, read from the ledger at scrape time.

One short read per scrape, with a statement timeout: the ledger knows the state of every
batch whichever worker or machine handled it, so one endpoint (the job's launcher) answers
for the whole job, from the moment the job starts, idle or not. At 1,000,000 batches
:func:`read` takes about 0.08 s and :func:`written` as much (benchmarks' status_speed ledger).

Freshness (the age of the newest loaded row) comes from ``stream_freshness``, which each
load's report updates. A tenant whose loads all predate the load reports (a ledger upgraded
from version 1) has no row there; its age is then taken from the newest LOADED batch's
window end, which is at most one window later than its newest row's receipt. That lookup
runs only for such tenants (0.7 s at 1,000,000 batches if all 200 tenants need it) and
stops once each has loaded since the upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

from spool.ledger.states import BatchState
from spool.ledger.store import Ledger

_S = {s: s.value for s in BatchState}
STATEMENT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class TenantGauges:
    tenant: str
    ready: int
    loading: int
    failed: int
    claimable: int  # READY and due, or LOADING with an expired lease (a loader will take it)
    oldest_unloaded_seconds: float | None
    newest_row_age_seconds: float | None  # since the newest loaded row was received
    rows_loaded: int  # warehouse rows inserted or updated, over every load


def read(ledger: Ledger) -> tuple[list[TenantGauges], float | None]:
    """Per tenant, the figures above; and the age in seconds of the newest batch written."""

    def q(cur):
        _bounded(cur)
        cur.execute(f"""
            WITH open AS (
                SELECT tenant_id,
                       count(*) FILTER (WHERE state = '{_S[BatchState.READY]}') AS ready,
                       count(*) FILTER (WHERE state = '{_S[BatchState.LOADING]}') AS loading,
                       count(*) FILTER (WHERE state = '{_S[BatchState.FAILED]}') AS failed,
                       count(*) FILTER (WHERE (state = '{_S[BatchState.READY]}'
                                               AND (next_attempt_at IS NULL
                                                    OR next_attempt_at <= now()))
                                           OR (state = '{_S[BatchState.LOADING]}'
                                               AND lease_expires_at < now())) AS claimable,
                       extract(epoch FROM now() - min(created_at)) AS oldest
                FROM batches WHERE state <> '{_S[BatchState.LOADED]}' GROUP BY 1),
            fresh AS (
                SELECT tenant_id, extract(epoch FROM now() - max(newest_received)) AS age,
                       sum(rows_loaded) AS rows_loaded
                FROM stream_freshness GROUP BY 1)
            SELECT t.tenant_id, coalesce(o.ready, 0), coalesce(o.loading, 0),
                   coalesce(o.failed, 0),
                   CASE WHEN t.destination_kind <> 'none' THEN coalesce(o.claimable, 0)
                        ELSE 0 END, o.oldest,
                   CASE WHEN f.tenant_id IS NOT NULL THEN f.age
                        ELSE (SELECT extract(epoch FROM now() - max(b.window_end))
                              FROM batches b WHERE b.state = '{_S[BatchState.LOADED]}'
                                               AND b.tenant_id = t.tenant_id) END,
                   coalesce(f.rows_loaded, 0)
            FROM tenants t LEFT JOIN open o USING (tenant_id) LEFT JOIN fresh f USING (tenant_id)
            UNION ALL  -- batches of tenants no longer (or never) registered: _unassigned
            SELECT o.tenant_id, o.ready, o.loading, o.failed, 0, o.oldest, NULL, 0
            FROM open o WHERE NOT EXISTS (SELECT 1 FROM tenants t
                                          WHERE t.tenant_id = o.tenant_id)
            ORDER BY 1""")
        rows = [TenantGauges(t, int(r), int(ld), int(f), int(c),
                             float(o) if o is not None else None,
                             float(a) if a is not None else None, int(n))
                for t, r, ld, f, c, o, a, n in cur.fetchall()]
        cur.execute("SELECT extract(epoch FROM now() - max(created_at)) FROM batches")
        newest = cur.fetchone()[0]
        return rows, float(newest) if newest is not None else None

    return ledger.run(q)


@dataclass(frozen=True)
class TenantWritten:
    tenant: str
    batches: int  # batches the spool job recorded for the tenant, in every state
    newest_window_end_age_seconds: float  # since the end of its newest batch's window
    records_late: int = 0  # records that reached their window after it closed


def written(ledger: Ledger) -> list[TenantWritten]:
    """Per tenant with batches, what the spool job wrote (its streaming page)."""

    def q(cur):
        _bounded(cur)
        cur.execute("""
            SELECT tenant_id, count(*), extract(epoch FROM now() - max(window_end)),
                   sum(records_late)
            FROM batches GROUP BY 1 ORDER BY 1""")
        return [TenantWritten(t, int(n), float(age), int(late))
                for t, n, age, late in cur.fetchall()]

    return ledger.run(q)


def _bounded(cur) -> None:
    """A scrape waits at most STATEMENT_TIMEOUT_MS for the ledger; these plans are too
    short to repay the JIT compilation PostgreSQL would choose for their cost estimates."""
    cur.execute("SET LOCAL statement_timeout = %s", (STATEMENT_TIMEOUT_MS,))
    cur.execute("SET LOCAL jit = off")

"""Read stalls: partitions the spool job could not read, as the ledger tells ``spool status``.

The spool job's reader writes a row when it finds a partition unreachable and closes it when
it reads the partition again (spool.stalls.ReadStalls, best-effort: a ledger that is down
too is skipped, never waited for). One row per (consumer group, topic, partition) holds its
current stall (``ended_at`` NULL) or its last one. Times come from the reader's clock; they
describe an outage, never a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from spool.ledger.store import Ledger


@dataclass(frozen=True)
class Stall:
    consumer_group: str
    topic: str
    partition: int
    started_at: datetime
    stalled_seconds: float
    error: str


def started(ledger: Ledger, group: str, topic: str, partition: int, at: datetime,
            error: str) -> None:
    """A stall began at ``at`` (a stall already open keeps its earlier start)."""

    def q(cur):
        cur.execute("""INSERT INTO read_stalls AS s (consumer_group, topic, partition,
                           started_at, error)
                       VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
                         started_at = CASE WHEN s.ended_at IS NULL
                                           THEN least(s.started_at, excluded.started_at)
                                           ELSE excluded.started_at END,
                         ended_at = NULL, error = excluded.error, updated_at = now()""",
                    (group, topic, partition, at, error[:2000]))

    ledger.run(q)


def ended(ledger: Ledger, group: str, topic: str, partition: int, at: datetime) -> int:
    """The partition was read at ``at``: its open stall, if any, ends. Returns 1 if one
    was open."""

    def q(cur):
        cur.execute("""UPDATE read_stalls SET ended_at = greatest(started_at, %s),
                           updated_at = now()
                       WHERE consumer_group = %s AND topic = %s AND partition = %s
                         AND ended_at IS NULL""", (at, group, topic, partition))
        return cur.rowcount

    return ledger.run(q)


def open_stalls(ledger: Ledger) -> list[Stall]:
    """Every stall not ended yet, longest first."""

    def q(cur):
        cur.execute("""SELECT consumer_group, topic, partition, started_at,
                              greatest(0, extract(epoch FROM now() - started_at)), error
                       FROM read_stalls WHERE ended_at IS NULL
                       ORDER BY started_at, consumer_group, topic, partition""")
        return [Stall(g, t, p, at, float(s), e) for g, t, p, at, s, e in cur.fetchall()]

    return ledger.run(q)

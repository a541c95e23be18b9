"""What the offset check reads from the ledger: which offsets the batches hold.

``batch_offsets`` has one row per batch and partition, with the exact set of offsets the
batch holds there (packed; spool.ingest.offsets unpacks it). Read-only statements; the sets
of a partition are streamed in order of their first offset, a chunk at a time, so a check
of a long history holds a chunk in memory, not the history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from spool.ledger.store import Ledger

CHUNK_ROWS = 5000


def first_offsets(ledger: Ledger, topic: str, partitions: Sequence[int],
                  since: datetime | None = None) -> dict[int, int]:
    """Per partition, the first offset a batch holds (of the batches created since
    ``since``, when given); a partition no batch holds records of is left out."""

    def q(cur):
        if since is None:  # one index probe per partition
            cur.execute("""SELECT p, (SELECT min(first_offset) FROM batch_offsets
                                      WHERE topic = %(t)s AND partition = p)
                           FROM unnest(%(p)s::int[]) AS p""",
                        {"t": topic, "p": list(partitions)})
        else:
            cur.execute("""SELECT o.partition, min(o.first_offset)
                           FROM batches b JOIN batch_offsets o USING (batch_id)
                           WHERE b.created_at >= %(s)s AND o.topic = %(t)s
                             AND o.partition = ANY(%(p)s::int[])
                           GROUP BY 1""", {"t": topic, "p": list(partitions), "s": since})
        return {int(p): int(first) for p, first in cur.fetchall() if first is not None}

    return ledger.run(q)


def stream_sets(ledger: Ledger, topic: str, partition: int, start: int, stop: int,
                consume: Callable[[list[tuple]], None], chunk: int = CHUNK_ROWS) -> None:
    """Call ``consume`` with chunks of (first offset, last offset, packed set, exact) of
    every batch holding offsets of ``partition`` in [start, stop), in order of first offset
    (ties in batch id order), at most ``chunk`` rows at a time."""

    def q(cur):
        cur.execute("SET LOCAL jit = off")  # a long plan for its estimate, a short run
        named = cur.connection.cursor(name="spool_offset_sets")
        try:
            named.itersize = chunk
            named.execute("""SELECT first_offset, last_offset, offsets, exact
                             FROM batch_offsets
                             WHERE topic = %(t)s AND partition = %(p)s
                               AND last_offset >= %(start)s AND first_offset < %(stop)s
                             ORDER BY first_offset, batch_id""",
                          {"t": topic, "p": partition, "start": start, "stop": stop})
            while rows := named.fetchmany(chunk):
                consume(rows)  # the packed sets as memoryviews, read at once
        finally:
            named.close()

    # not Ledger.run: a statement run again after a lost connection would hand ``consume``
    # the same chunks twice; the check reports the lost connection instead
    with ledger.transaction() as cur:
        q(cur)


def known_tenants(ledger: Ledger) -> set[str]:
    """Every tenant the ledger has heard of: registered now, or with a Singer stream schema
    or state learnt (a tenant registered then and removed since)."""

    def q(cur):
        cur.execute("""SELECT tenant_id FROM tenants UNION SELECT tenant_id FROM streams
                       UNION SELECT tenant_id FROM tenant_state""")
        return {t for (t,) in cur.fetchall()}

    return ledger.run(q)


def records_late(ledger: Ledger) -> int:
    """Records of every batch that reached their window after it had closed."""

    def q(cur):
        cur.execute("SELECT coalesce(sum(records_late), 0) FROM batches")
        return int(cur.fetchone()[0])

    return ledger.run(q)

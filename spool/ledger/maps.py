"""Stream maps in the ledger: one row per version, the newest is in force; nothing is
deleted (removing a map stores a version without a document). See spool.maps.

A version applies to the records whose Kafka timestamp is at or after its ``created_at``:
the ledger's clock when ``set`` stored it, read after taking the maps' lock. The spool job
reads the versions under the same lock, shared (:meth:`MapStore.read`), with the ledger's
clock: every version it does not see was set after that moment, so the versions it read are
all that will ever apply to records up to it, and a record after it sends the job back to
the ledger before it is shaped (spool.ingest.directory.MapDirectory).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spool.ledger.store import Ledger

# the maps' lock (a two-key advisory lock: apart from the one-key locks elsewhere): `set`
# holds it alone while it stores a version, readers share it
LOCK = (0x5370, 0x6D61)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(at: datetime, up: bool) -> int:
    """``at`` in whole milliseconds since the epoch, rounded up or down."""
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000) if up else micros // 1000


@dataclass(frozen=True)
class MapVersion:
    tenant_id: str
    stream: str
    version: int
    document: dict | None  # None: removed
    created_at: datetime  # the ledger's clock when it was set: it applies from then on
    created_by: str

    @property
    def from_ms(self) -> int:
        """The first Kafka timestamp (ms) the version applies to."""
        return _ms(self.created_at, up=True)


@dataclass(frozen=True)
class Snapshot:
    """What the spool job knows of the maps (:meth:`MapStore.read`)."""

    read_at_ms: int  # the ledger's clock: every version set up to this ms is in ``versions``
    stamp: tuple  # changes whenever a version is stored
    versions: list[MapVersion] | None  # None: the same as when ``stamp`` was read


def _row(row) -> MapVersion:
    t, s, v, doc, at, by = row
    return MapVersion(t, s, v, doc if doc is None or isinstance(doc, dict) else json.loads(doc),
                      at, by)



class MapStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def save(self, tenant_id: str, stream: str, document: dict | None, by: str) -> MapVersion:
        """A new version (``document`` None: the map removed), as stored."""

        def q(cur):
            # alone: versions of a stream are numbered one after the other, and a version is
            # stamped with the clock after every reader that might have missed it is done
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", LOCK)
            cur.execute("""INSERT INTO stream_maps (tenant_id, stream, version, document,
                                                    created_at, created_by)
                            SELECT %s, %s, coalesce(max(version), 0) + 1, %s,
                                   clock_timestamp(), %s
                            FROM stream_maps WHERE tenant_id = %s AND stream = %s
                            RETURNING tenant_id, stream, version, document, created_at,
                                      created_by""",
                        (tenant_id, stream, json.dumps(document) if document is not None
                         else None, by, tenant_id, stream))
            return _row(cur.fetchone())

        return self.ledger.run(q)

    def history(self, tenant_id: str, stream: str | None = None) -> list[MapVersion]:
        """Every version of a tenant's maps (of one stream), oldest first."""

        def q(cur):
            cur.execute("SELECT tenant_id, stream, version, document, created_at, created_by "
                        "FROM stream_maps WHERE tenant_id = %s AND "
                        "(%s::text IS NULL OR stream = %s) ORDER BY stream, version",
                        (tenant_id, stream, stream))
            return [_row(r) for r in cur.fetchall()]

        return self.ledger.run(q)

    def counts(self, tenant_id: str) -> dict[tuple[str, int], tuple[int, int]]:
        """(the map's stream, version) → (batches it made records of, records its filter
        dropped), from the tenant's batches in the ledger (``meta``: docs/ledger.md)."""

        def q(cur):
            cur.execute("""SELECT m.key, m.value::int, count(*),
                                  coalesce(sum((b.meta -> 'records_filtered_by' ->> m.key)
                                               ::bigint), 0)::bigint
                           FROM batches b, jsonb_each_text(
                               CASE jsonb_typeof(b.meta -> 'map_versions') WHEN 'object'
                                    THEN b.meta -> 'map_versions' ELSE '{}'::jsonb END) m
                           WHERE b.tenant_id = %s GROUP BY 1, 2""", (tenant_id,))
            return {(s, v): (n, f) for s, v, n, f in cur.fetchall()}

        return self.ledger.run(q)

    def read(self, stamp: tuple | None = None) -> Snapshot:
        """Every version of every map, with the ledger's clock before they were read (the
        spool job picks a version per record by its timestamp); ``versions`` is None when
        nothing was stored since ``stamp`` (a Snapshot's), so a check costs little."""

        def q(cur):
            # after the lock, so no `set` is half done: one stores its version alone, later,
            # with a later clock
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", LOCK)
            cur.execute("SELECT statement_timestamp(), count(*), coalesce(sum(version), 0) "
                        "FROM stream_maps")
            at, n, total = cur.fetchone()
            now = (int(n), int(total))
            if now == stamp:
                return Snapshot(_ms(at, up=False), now, None)
            cur.execute("SELECT tenant_id, stream, version, document, created_at, created_by "
                        "FROM stream_maps ORDER BY tenant_id, stream, version")
            return Snapshot(_ms(at, up=False), now, [_row(r) for r in cur.fetchall()])

        return self.ledger.run(q)

    def current(self) -> list[MapVersion]:
        """The version in force of every stream that has a map (removed ones left out)."""

        def q(cur):
            cur.execute("""SELECT DISTINCT ON (tenant_id, stream) tenant_id, stream, version,
                                   document, created_at, created_by
                            FROM stream_maps ORDER BY tenant_id, stream, version DESC""")
            return [m for m in map(_row, cur.fetchall()) if m.document is not None]

        return self.ledger.run(q)

    def newest_keys(self, tenant_id: str, stream: str) -> tuple[tuple[str, ...], int | None] \
            | None:
        """The stream's key properties as last seen, and the version of the stream's own map
        they were seen after (None: as sent). From its Singer SCHEMA (as sent), else the
        newest batch known to hold its records: one its own map made (which may be another
        stream's batch, by an alias), or one of the stream that no map made (a batch of
        the stream with only records aliased into it says nothing of its own keys); None
        when neither says (the stream was never seen)."""

        def q(cur):
            cur.execute("SELECT key_names FROM streams WHERE tenant_id = %s AND stream = %s",
                        (tenant_id, stream))
            row = cur.fetchone()
            if row is not None:
                return tuple(row[0]), None
            cur.execute("""SELECT key_names, (meta -> 'map_versions' ->> %s)::int
                           FROM batches WHERE tenant_id = %s
                           AND (meta -> 'map_versions' ? %s OR stream = %s AND
                                jsonb_typeof(meta -> 'map_versions') IS DISTINCT FROM
                                'object')
                           ORDER BY created_at DESC LIMIT 1""",
                        (stream, tenant_id, stream, stream))
            row = cur.fetchone()
            return (tuple(row[0]), row[1]) if row else None

        return self.ledger.run(q)

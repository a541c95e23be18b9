"""Stream maps in the ledger: one row per version, the newest is in force; nothing is
deleted (removing a map stores a version without a document). See spool.maps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from spool.ledger.store import Ledger


@dataclass(frozen=True)
class MapVersion:
    tenant_id: str
    stream: str
    version: int
    document: dict | None  # None: removed
    created_at: datetime
    created_by: str


def _row(row) -> MapVersion:
    t, s, v, doc, at, by = row
    return MapVersion(t, s, v, doc if doc is None or isinstance(doc, dict) else json.loads(doc),
                      at, by)



class MapStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def save(self, tenant_id: str, stream: str, document: dict | None, by: str) -> int:
        """A new version (``document`` None: the map removed); returns its number."""

        def q(cur):
            # versions of one stream are numbered one after the other: take turns
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                        (f"spool-map:{tenant_id}:{stream}",))
            cur.execute("""INSERT INTO stream_maps (tenant_id, stream, version, document,
                                                    created_at, created_by)
                            SELECT %s, %s, coalesce(max(version), 0) + 1, %s, now(), %s
                            FROM stream_maps WHERE tenant_id = %s AND stream = %s
                            RETURNING version""",
                        (tenant_id, stream, json.dumps(document) if document is not None
                         else None, by, tenant_id, stream))
            return cur.fetchone()[0]

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

    def versions(self) -> list[MapVersion]:
        """Every version of every map (the spool job picks one per window)."""

        def q(cur):
            cur.execute("SELECT tenant_id, stream, version, document, created_at, created_by "
                        "FROM stream_maps ORDER BY tenant_id, stream, version")
            return [_row(r) for r in cur.fetchall()]

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

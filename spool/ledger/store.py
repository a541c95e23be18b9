"""The ledger's connection, its migrations, and the spool job's READY rows.

``Ledger`` wraps one psycopg2 connection. Every statement runs in one short transaction
(:meth:`Ledger.run`); a lost connection is reopened once and the statement retried, since
each write to the ledger is idempotent (an upsert keyed by content-derived ids, or a state
change guarded by the current state). The other modules of the package hold their own
statements and run them through :meth:`Ledger.run`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg2
import psycopg2.extras

from spool import secrets
from spool.ledger.migrations import MIGRATIONS
from spool.ledger.notify import notify_ready
from spool.ledger.states import INITIAL

log = logging.getLogger(__name__)
MIGRATION_LOCK = 0x5F5F_0001  # advisory lock key for schema migrations


@dataclass(frozen=True)
class BatchRecord:
    """One batch file as the spool job records it (state READY)."""

    batch_id: str
    tenant_id: str
    stream: str
    uri: str
    window_start: datetime
    window_end: datetime
    pane: int
    record_count: int
    row_count: int
    byte_count: int
    file_bytes: int
    min_sequence: int | None
    max_sequence: int | None
    offsets: dict  # {"topic/partition": [first offset, last offset, record count]}
    key_names: tuple[str, ...]
    columns: dict
    meta: dict


class Ledger:
    """``dsn`` may be a secret reference (``env:NAME``, ``file:/path``), resolved on connect."""

    def __init__(self, dsn: str, application_name: str = "spool") -> None:
        self._dsn = dsn
        self._app = application_name
        self._conn = None

    # -- connection -----------------------------------------------------------------------

    def _connect(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(secrets.resolve(self._dsn),
                                          application_name=self._app, connect_timeout=10)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    @contextmanager
    def transaction(self) -> Iterator:
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except psycopg2.InterfaceError:
            self.close()
            raise

    def run(self, fn: Callable, *args):
        """Run ``fn(cursor, *args)`` in a transaction. If the connection was lost, reconnect
        and run it once more (every ledger write is idempotent)."""
        for attempt in (1, 2):
            try:
                with self.transaction() as cur:
                    return fn(cur, *args)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                broken = self._conn is None or self._conn.closed
                if attempt == 2 or not broken:
                    raise
                log.warning("ledger connection lost (%s); reconnecting", type(exc).__name__)
                self.close()
        raise AssertionError("unreachable")

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply missing migrations; returns the schema version."""

        def apply(cur):
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("""CREATE TABLE IF NOT EXISTS spool_schema_version (
                               version integer PRIMARY KEY,
                               description text NOT NULL,
                               applied_at timestamptz NOT NULL DEFAULT now())""")
            cur.execute("SELECT coalesce(max(version), 0) FROM spool_schema_version")
            current = cur.fetchone()[0]
            for version, description, sql in MIGRATIONS:
                if version > current:
                    cur.execute(sql)
                    cur.execute("INSERT INTO spool_schema_version (version, description) "
                                "VALUES (%s, %s)", (version, description))
                    log.info("ledger migrated to version %d: %s", version, description)
                    current = version
            return current

        return self.run(apply)

    # -- batches (spool side) -------------------------------------------------------------

    def record_batches(self, batches: list[BatchRecord]) -> int:
        """Insert READY batches; a batch id already present is left as it is (its content
        is the same, since ids derive from content). New batches are announced to following
        loaders when the transaction commits. Returns how many were new."""

        def q(cur):
            rows = [
                (b.batch_id, b.tenant_id, b.stream, b.uri, INITIAL.value,
                 b.window_start, b.window_end, b.pane, b.record_count, b.row_count,
                 b.byte_count, b.file_bytes, b.min_sequence, b.max_sequence,
                 json.dumps(b.offsets), list(b.key_names), json.dumps(b.columns),
                 json.dumps(b.meta))
                for b in batches
            ]
            inserted = psycopg2.extras.execute_values(
                cur,
                """INSERT INTO batches (batch_id, tenant_id, stream, uri, state, window_start,
                       window_end, pane, record_count, row_count, byte_count, file_bytes,
                       min_sequence, max_sequence, offsets, key_names, columns, meta)
                   VALUES %s ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id""",
                rows, fetch=True)
            if inserted:
                notify_ready(cur)  # a following loader looks at once (spool.ledger.notify)
            return len(inserted)

        return self.run(q) if batches else 0

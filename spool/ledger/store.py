"""The ledger's connection, its migrations, and the spool job's READY rows.

``Ledger`` wraps one psycopg2 connection. Every statement runs in one short transaction
(:meth:`Ledger.run`); a lost connection is reopened at once and the statement retried, since
each write to the ledger is idempotent (an upsert keyed by content-derived ids, or a state
change guarded by the current state). The other modules of the package hold their own
statements and run them through :meth:`Ledger.run`.

A ledger that is down or restarting is waited for (spool.retry.patiently: backoff from
0.5 s to 10 s, a warning a minute) for as long as the Ledger's ``patience``: without end by
default, which is what the jobs need (a restarted PostgreSQL must not end them); the
``spool`` commands and the metrics page pass ``patience=0``, so they answer in seconds, as
before. Only a lost or refused connection is waited for: a rejected password, a database
that does not exist or a statement's own error is raised at once.

Retrying is safe because a statement that may have committed before its connection dropped
does the same thing again or nothing: ``record_batches`` leaves existing ids alone; a state
change is guarded by the current state and the lease owner, and the reports and events
written with it are keyed by load and event ids; a claim retried by its owner returns the
batches it already holds (their attempts counted once more); the registry's writes are
upserts.
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

from spool import retry, secrets
from spool.ledger.migrations import MIGRATIONS
from spool.ledger.notify import notify_ready
from spool.ledger.states import INITIAL

log = logging.getLogger(__name__)
MIGRATION_LOCK = 0x5F5F_0001  # advisory lock key for schema migrations
# One warning a minute per process about a ledger outage, whichever Ledger meets it first
# (a job holds several: one per DoFn instance). Process-wide on purpose and safe: it only
# thins out log lines, never decides whether a statement runs.
_ONCE = retry.OncePer()
# a connection refused with one of these is a configuration error, never an outage
_CONFIG_ERRORS = ("authentication failed", "does not exist", "no pg_hba.conf entry",
                  "invalid dsn", "invalid connection option", "invalid sslmode",
                  "could not translate host name", "ssl is not enabled", "certificate")


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
    # {"topic/partition": (first, last, offsets, packed set, exact)}: which offsets it holds
    # (spool.ingest.parts.Part.packed_offsets; the table batch_offsets)
    exact_offsets: dict | None = None


class Ledger:
    """``dsn`` may be a secret reference (``env:NAME``, ``file:/path``), resolved on connect.
    ``patience``: how many seconds a lost or refused connection is retried before a
    statement fails (None: until the ledger answers; 0: one immediate reconnect)."""

    def __init__(self, dsn: str, application_name: str = "spool",
                 patience: float | None = None, connect_timeout: int = 10) -> None:
        self._dsn = dsn
        self._app = application_name
        self._conn = None
        self.patience = patience
        self._connect_timeout = connect_timeout
        self._once = _ONCE
        self._connected_once = False

    # -- connection -----------------------------------------------------------------------

    def _connect(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(secrets.resolve(self._dsn),
                                          application_name=self._app,
                                          connect_timeout=self._connect_timeout)
            self._connected_once = True
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
        and run it once more (every ledger write is idempotent); if the ledger is down, wait
        for it as long as ``patience`` says (see the module docstring)."""
        return retry.patiently(lambda: self._run_once(fn, args), "ledger", log, self._lost,
                               patience=self.patience, backoff=retry.Backoff(0.5, 10.0),
                               once=self._once)

    def _lost(self, exc: BaseException) -> bool:
        """An outage, not a mistake: the connection broke or was refused (the ledger is
        down, restarting or failing over), and not for a reason that lasts."""
        if not isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return False
        if self._conn is not None and not self._conn.closed:
            return False  # the statement failed on a live connection: its own error
        text = str(exc).lower()
        if self._connected_once and "could not translate host name" in text:
            return True  # it resolved before: a DNS hiccup during a failover, not a typo
        return not any(marker in text for marker in _CONFIG_ERRORS)

    def _run_once(self, fn: Callable, args: tuple):
        """``fn`` in a transaction; a live connection that broke under it is reopened and
        ``fn`` run once more at once (a restarted ledger that is back already)."""
        for attempt in (1, 2):
            live = self._conn is not None and not self._conn.closed
            try:
                with self.transaction() as cur:
                    return fn(cur, *args)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                broken = self._conn is None or self._conn.closed
                if attempt == 2 or not broken or not live:
                    raise
                if self._once.allow("lost"):  # one line a minute through an outage
                    log.warning("ledger connection lost (%s); reconnecting",
                                type(exc).__name__)
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
                 json.dumps(b.meta), int(b.meta.get("records_late") or 0))
                for b in batches
            ]
            inserted = psycopg2.extras.execute_values(
                cur,
                """INSERT INTO batches (batch_id, tenant_id, stream, uri, state, window_start,
                       window_end, pane, record_count, row_count, byte_count, file_bytes,
                       min_sequence, max_sequence, offsets, key_names, columns, meta,
                       records_late)
                   VALUES %s ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id""",
                rows, fetch=True)
            # every batch's, not only the new ones': a batch recorded by a Spool without
            # offset sets gets them when a retry records it again (same id, same records)
            sets = [(b.batch_id, tp.rsplit("/", 1)[0], int(tp.rsplit("/", 1)[1]), first, last,
                     n, packed, exact)
                    for b in batches for tp, (first, last, n, packed, exact)
                    in (b.exact_offsets or {}).items() if n]
            if sets:
                psycopg2.extras.execute_values(
                    cur,
                    """INSERT INTO batch_offsets (batch_id, topic, partition, first_offset,
                           last_offset, records, offsets, exact)
                       VALUES %s ON CONFLICT DO NOTHING""", sets)
            if inserted:
                notify_ready(cur)  # a following loader looks at once (spool.ledger.notify)
            return len(inserted)

        return self.run(q) if batches else 0

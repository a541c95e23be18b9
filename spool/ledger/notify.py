"""Wake-ups from the ledger: the spool job announces new READY batches, a loader waits for them.

The spool job runs ``NOTIFY spool_ready`` in the transaction that records its batches
(:meth:`spool.ledger.store.Ledger.record_batches`); PostgreSQL delivers it when that
transaction commits, and folds the notices of one transaction into one. A follow-mode loader
holds a :class:`ReadyListener` (one connection in ``LISTEN spool_ready``) and looks for
claimable batches as soon as a notice arrives, instead of on its next poll.

Polling stays the rule: a notice only cuts a wait short. A listener whose connection fails
(a restarted ledger, a connection pooler in transaction mode that cannot ``LISTEN``) waits
out the poll interval, as if no notice had come, and connects again on the next wait, so a
loader never depends on a notice arriving. While the ledger is away the listener says so
once a minute, and once when it listens again. Batches due again after a retry delay, or
whose lease expired, are found by polling alone.
"""

from __future__ import annotations

import logging
import select
import time

import psycopg2
import psycopg2.extensions

from spool import retry, secrets

log = logging.getLogger(__name__)

READY_CHANNEL = "spool_ready"


def notify_ready(cur) -> None:
    """Announce new READY batches; delivered when ``cur``'s transaction commits."""
    cur.execute(f"NOTIFY {READY_CHANNEL}")


class ReadyListener:
    """Waits for the spool job's READY notices on one ledger connection."""

    def __init__(self, dsn: str, application_name: str = "spool-loader-listen") -> None:
        self._dsn = dsn
        self._app = application_name
        self._conn = None
        self._away = retry.Backoff()  # how long LISTEN has failed (the waits are the polls')
        self._once = retry.OncePer()

    def _connect(self):
        if self._conn is None or self._conn.closed:
            conn = psycopg2.connect(secrets.resolve(self._dsn), application_name=self._app,
                                    connect_timeout=10)
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {READY_CHANNEL}")
            self._conn = conn
            lasted = self._away.succeeded()
            if lasted is not None:
                self._once.forget("listen")
                log.info("listening for new batches again after %.0f s", lasted)
        return self._conn

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True as soon as new batches were announced (every
        notice that arrived since the last wait counts), False when the time ran out."""
        deadline = time.monotonic() + timeout
        try:
            conn = self._connect()
            while True:
                conn.poll()
                if conn.notifies:
                    conn.notifies.clear()
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([conn], [], [], left)
        except (psycopg2.Error, OSError) as exc:
            self._away.failed()
            if self._once.allow("listen"):
                log.warning("cannot listen for new batches for %.0f s (%s); polling only "
                            "until the ledger accepts LISTEN again", self._away.down_for(),
                            retry.brief(exc))
            self.close()
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

"""What the loader left undone, told by its launcher from the ledger, in Spool's own lines.

The loads run in SDK workers, whose log lines go wherever the runner puts them (nowhere a
drain's user sees, or wrapped in the runner's own log format). The ledger knows every
batch's outcome, whichever worker loaded it, so the launcher reads it and tells:

* a drain run, when it ends: one line per tenant and reason for the batches it left FAILED
  or waiting on a retry (:func:`lines`), and the exit status 1 when there is any;
* a following loader, while it runs (:class:`Watch`): the same lines as warnings, at most
  one per tenant, state and reason per minute, so an outage of an hour logs sixty lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from spool import retry
from spool.ledger import claims
from spool.ledger.claims import Trouble
from spool.ledger.store import Ledger
from spool.loader.tenant import WARN_EVERY_SECONDS, reason_key

log = logging.getLogger("spool.loader")


def line(t: Trouble, max_attempts: int = 0) -> str:
    """One line: the tenant, how many batches, what became of them, why, what to do."""
    reason = (t.error.strip().splitlines() or [""])[0][:400]
    if t.failed:
        return (f"tenant {t.tenant_id}: {t.batches} batch(es) FAILED: {reason} (fix the cause, "
                f"then 'spool batches retry --tenant {t.tenant_id} --all-failed')")
    limit = f" of {max_attempts}" if max_attempts else ""
    return (f"tenant {t.tenant_id}: {t.batches} batch(es) waiting on a retry (attempt "
            f"{t.attempts}{limit}): {reason}")


def lines(ledger_dsn: str, since, max_attempts: int = 0) -> list[str]:
    """The lines for what loads since ``since`` (the ledger's clock) left undone."""
    ledger = Ledger(ledger_dsn, application_name="spool-loader")
    try:
        return [line(t, max_attempts) for t in claims.troubles(ledger, since)]
    finally:
        ledger.close()


def started(ledger_dsn: str):
    """The ledger's clock now: where a run's troubles start."""
    ledger = Ledger(ledger_dsn, application_name="spool-loader")
    try:
        return claims.ledger_now(ledger)
    finally:
        ledger.close()


class Watch:
    """A daemon thread of a following loader's launcher that logs new troubles every
    ``every`` seconds, each (tenant, state, reason) at most once per minute."""

    def __init__(self, ledger_dsn: str, max_attempts: int = 0, every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger_dsn = ledger_dsn
        self.max_attempts = max_attempts
        self.every = every
        self._once = retry.OncePer(WARN_EVERY_SECONDS, clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-troubles", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self, ledger: Ledger, since) -> None:
        for t in claims.troubles(ledger, since):
            if self._once.allow((t.tenant_id, t.failed, reason_key(t.error))):
                log.warning("%s", line(t, self.max_attempts))

    def _run(self) -> None:
        # the ledger's own patience: an outage is waited out (and logged) by Ledger.run
        ledger = Ledger(self.ledger_dsn, application_name="spool-loader", patience=None)
        since = None
        try:
            while since is None or not self._stop.wait(self.every):
                try:
                    now = claims.ledger_now(ledger)
                    if since is not None:
                        self.check(ledger, since)
                    since = now
                except Exception as exc:  # noqa: BLE001 - telling must never end the job
                    if self._once.allow("watch"):
                        log.warning("cannot read the loads' outcomes from the ledger (%s); "
                                    "trying again", retry.brief(exc))
                    if since is None and self._stop.wait(self.every):
                        return
        finally:
            ledger.close()

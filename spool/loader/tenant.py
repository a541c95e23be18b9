"""Loading one tenant's READY batches into its warehouse, exactly once.

:meth:`TenantLoader.load` follows a batch the whole way, in this order:

1. **claim** the tenant's due batches of the given streams, with a lease, each stream in
   sequence order (spool.ledger.claims);
2. **cut** them into warehouse transactions of at most ``max_rows`` rows
   (spool.loader.transactions); between transactions, renew the leases of every batch still
   to load once half a lease has passed;
3. per transaction, reach the **destination** first (a warehouse that is down or
   misconfigured fails before any batch file is read), then **stage** the batch files
   (spool.warehouse.stage) and **load** them in one transaction (spool.warehouse.load);
4. **classify** a failure once (spool.loader.errors):

   * transient (unreachable, restarting, lock timeout, S3 throttling): the batches go back to
     READY with a capped exponential backoff, the destination counts as down for
     ``down_seconds``, and the tenant's other claimed batches are released: this loader
     moves on to other tenants instead of waiting on it. Once the batches reach
     ``max_attempts``, they and the rest of the claim go FAILED, saying why;
   * refused (the warehouse refuses the destination's credentials, privileges, database or
     schema: the dialect's ``refused``): terminal for every batch at once, none is isolated;
   * terminal: a transaction of several streams is **isolated** stream by stream, and a
     stream's batches one by one, so only a batch that fails alone ends FAILED, with the
     reason (credentials redacted); a destination no batch can load into fails its batches
     at once;

5. **mark** the outcome in the ledger: LOADED after the warehouse commit, FAILED, or READY
   again later.

The warehouse's load log, written in the load transaction, makes every step safe to repeat:
a batch whose lease expired mid-load (its loader died) is claimed again and found loaded.
Everything outside is injected (ledger, object store, warehouses, dialects, clock), so the
rules run without Beam.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from spool import retry, secrets
from spool.failpoints import failpoint
from spool.ledger import claims
from spool.ledger.claims import Claimed
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.loader import outcomes, transactions
from spool.loader.errors import classify
from spool.loader.warehouses import Warehouses
from spool.objectstore import ObjectStore
from spool.warehouse.destination import Destination
from spool.warehouse.dialects import DIALECTS, Dialect, TerminalError, TransientError
from spool.warehouse.report import SchemaChange, TableReport
from spool.warehouse.stage import stage_group

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderConfig:
    lease_seconds: float = 600.0
    max_rows: int = 1_000_000  # rows per warehouse transaction
    max_batches: int = 500  # batches per claim
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 300.0
    down_seconds: float = 10.0  # a destination that was unreachable is skipped this long
    connect_timeout: int = 5
    # a batch whose transient failures reach this many attempts is FAILED, saying why
    # (0: retried without end)
    max_attempts: int = 20


class Status(enum.Enum):
    LOADED = "loaded"  # committed by this transaction (or found in the load log)
    FAILED = "failed"  # fails alone, or the destination cannot take any batch: FAILED
    RETRY = "retry"  # the warehouse or object store is unavailable: READY again later


# one warning per tenant and reason per minute: a warehouse that is down for an hour, with
# a retry every few seconds, logs sixty lines, not thousands
WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Attempt:
    """What became of one warehouse transaction's batches."""

    status: Status
    batch_ids: tuple[str, ...]  # LOADED: committed by this transaction; else: the batches
    skipped: tuple[str, ...] = ()  # LOADED: found in the load log (committed before)
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None  # FAILED, RETRY: the reason (credentials redacted)
    reports: tuple[TableReport, ...] = ()  # LOADED: what the load did, per table
    changes: tuple[SchemaChange, ...] = ()  # LOADED: the schema changes it applied
    gave_up: bool = False  # FAILED: transient failures reached LoaderConfig.max_attempts


def reason_key(error: str) -> str:
    """An error's reason for throttling its warnings: its first line without numbers
    (seconds, ports and counts change from one try to the next; the cause does not)."""
    return re.sub(r"\d+", "N", (error.splitlines() or [""])[0])[:200]


@dataclass
class _Tried:
    """A transaction's result before the ledger hears of it."""

    ok: bool
    loaded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    rows: int = 0
    error: str = ""
    transient: bool = False
    destination_ok: bool = False  # the warehouse was reached: a batch may be the culprit
    reports: tuple[TableReport, ...] = ()
    changes: tuple[SchemaChange, ...] = ()


class TenantLoader:
    def __init__(self, ledger: Ledger, store: ObjectStore, config: LoaderConfig, owner: str,
                 dialects: Mapping[str, Dialect] = DIALECTS,
                 clock: Callable[[], float] = time.monotonic,
                 warehouses: Warehouses | None = None) -> None:
        self.ledger = ledger
        self.store = store
        self.cfg = config
        self.owner = owner  # the lease owner: unique per loader
        self.dialects = dialects
        self.clock = clock
        self.warehouses = warehouses or Warehouses(store, dialects, owner,
                                                   config.connect_timeout)
        self._down_until: dict[str, float] = {}  # destination key → clock time
        self._warned = retry.OncePer(WARN_EVERY_SECONDS, clock)

    def close(self) -> None:
        self.warehouses.close()

    def load(self, tenant: str, streams: list[str]) -> Iterator[Attempt]:
        """Claim and load the tenant's batches of ``streams`` until none is left, or its
        warehouse is down (then the last attempt is a RETRY). Each transaction's outcome is
        yielded as soon as the ledger has it."""
        record = Registry(self.ledger).tenant(tenant)
        if record is None or record.destination_kind == "none":
            return
        dest = Destination.from_record(record)
        while self._down_until.get(dest.key, 0) <= self.clock():
            claimed = claims.claim(self.ledger, tenant, streams, self.owner,
                                   self.cfg.lease_seconds, self.cfg.max_batches)
            if not claimed:
                return
            for attempt in self._load_claimed(dest, claimed):
                yield attempt
                if attempt.status is Status.RETRY:
                    return

    def _load_claimed(self, dest: Destination, claimed: list[Claimed]) -> Iterator[Attempt]:
        """Load one claim's batches transaction by transaction, until the warehouse is down
        (a RETRY; the batches not tried yet are released)."""
        renewed_at = self.clock()
        work = transactions.cut(claimed, self.cfg.max_rows)
        for i, batches in enumerate(work):
            if self.clock() - renewed_at > self.cfg.lease_seconds / 2:
                # every batch still to load keeps its lease, not only the next ones
                claims.renew(self.ledger, [c.batch_id for w in work[i:] for c in w],
                             self.owner, self.cfg.lease_seconds)
                renewed_at = self.clock()
            for attempt in self._load_isolating(dest, batches):
                if attempt.gave_up:
                    # the destination stayed unreachable: what this claim holds fails with
                    # it, so a backlog does not wait out the limit once per transaction
                    rest = [c.batch_id for w in work[i + 1:] for c in w]
                    if rest:
                        claims.mark_failed(self.ledger, rest, self.owner, attempt.error,
                                           also=lambda cur, ids=rest, e=attempt.error:
                                           outcomes.failed(cur, dest.tenant_id, ids, e))
                    yield Attempt(Status.FAILED, attempt.batch_ids + tuple(rest),
                                  error=attempt.error, gave_up=True)
                    return
                if attempt.status is Status.RETRY:
                    # batches loaded, failed or set to retry are no longer LOADING: the
                    # rest goes back at once, not counted as an attempt
                    claims.release(self.ledger, [c.batch_id for c in claimed], self.owner)
                    yield attempt
                    return
                yield attempt

    def _load_isolating(self, dest: Destination, batches: list[Claimed]) -> Iterator[Attempt]:
        """Load ``batches`` in one transaction; if that fails terminally, again stream by
        stream, then batch by batch, so that only a batch that fails alone is FAILED. Stops
        after the first RETRY (the warehouse is down)."""
        started = self.clock()
        tried = self._try(dest, batches)
        ids = [c.batch_id for c in batches]
        if tried.ok:
            failpoint("load.after_commit")
            claims.mark_loaded(self.ledger, ids, also=lambda cur: outcomes.loaded(
                cur, dest.tenant_id, list(tried.reports), list(tried.changes)))
            yield Attempt(Status.LOADED, tried.loaded, tried.skipped, tried.rows,
                          self.clock() - started, reports=tried.reports,
                          changes=tried.changes)
            return
        if tried.transient:
            self.warehouses.discard(dest)
            self._down_until[dest.key] = self.clock() + self.cfg.down_seconds
            attempts = max(c.attempts for c in batches)
            if self.cfg.max_attempts and attempts >= self.cfg.max_attempts:
                error = (f"gave up after {attempts} attempts (--retry_max_attempts): "
                         f"{tried.error}")
                claims.mark_failed(self.ledger, ids, self.owner, error,
                                   also=lambda cur: outcomes.failed(cur, dest.tenant_id, ids,
                                                                    error))
                log.error("%d batch(es) of %s failed: %s", len(ids), dest.tenant_id, error)
                yield Attempt(Status.FAILED, tuple(ids), error=error, gave_up=True)
                return
            delay = claims.backoff_seconds(attempts, self.cfg.backoff_base_seconds,
                                           self.cfg.backoff_cap_seconds)
            claims.mark_retry(self.ledger, ids, self.owner, tried.error, delay)
            if self._warned.allow((dest.tenant_id, reason_key(tried.error))):
                log.warning("warehouse or object store of %s unavailable (attempt %d of %s), "
                            "%d batch(es) retry in %.0f s: %s", dest.tenant_id, attempts,
                            self.cfg.max_attempts or "unlimited", len(ids), delay, tried.error)
            yield Attempt(Status.RETRY, tuple(ids), error=tried.error)
            return
        if len(batches) > 1 and tried.destination_ok:
            parts = [b for _s, b in transactions.by_stream(batches)]
            if len(parts) == 1:
                parts = [[c] for c in batches]
            log.warning("load of %d batches of %s failed (%s); retrying them in %d parts",
                        len(batches), dest.tenant_id, tried.error, len(parts))
            for part in parts:
                for attempt in self._load_isolating(dest, part):
                    yield attempt
                    if attempt.status is Status.RETRY:
                        return
            return
        # one culprit batch, or a destination no batch can load into (no culprit)
        claims.mark_failed(self.ledger, ids, self.owner, tried.error,
                           also=lambda cur: outcomes.failed(cur, dest.tenant_id, ids,
                                                            tried.error))
        log.error("%d batch(es) of %s failed (%s): %s", len(ids), dest.tenant_id, ids[0],
                  tried.error)
        yield Attempt(Status.FAILED, tuple(ids), error=tried.error)

    def _try(self, dest: Destination, batches: list[Claimed]) -> _Tried:
        """One warehouse transaction; failures classified, nothing marked."""
        destination_ok = False
        dialect = self.dialects.get(dest.kind, self.dialects["postgres"])
        try:
            problem = dest.problem()
            if problem:
                raise TerminalError(problem)
            # the destination first: a warehouse that is down or misconfigured fails
            # before any batch file is read
            conn, loader = self.warehouses.session(dest)
            destination_ok = True
            groups = [stage_group(stream, [(c.batch_id, self.store.read(c.uri)) for c in part],
                                  dialect)
                      for stream, part in transactions.by_stream(batches)]
            try:
                result = loader.load(conn, dest.schema, groups)
            finally:
                if dest.exclusive:  # other loader processes take their turn at the file
                    self.warehouses.discard(dest)
        except Exception as exc:  # noqa: BLE001 - classified here, nothing is swallowed
            # a destination that refuses the loader (credentials, privilege, database,
            # schema) fails every batch at once: none of them is the culprit
            return _Tried(ok=False, error=secrets.redact(f"{type(exc).__name__}: {exc}".strip()),
                          transient=classify(dialect, exc) is TransientError,
                          destination_ok=destination_ok and not dialect.errors.refused(exc))
        return _Tried(ok=True, loaded=tuple(result.loaded), skipped=tuple(result.skipped),
                      rows=result.rows, reports=tuple(result.reports),
                      changes=tuple(result.changes))

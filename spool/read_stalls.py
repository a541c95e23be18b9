"""A partition the spool job cannot read: wait with backoff, say so once a minute, show it.

:class:`ReadStalls` is the Kafka readers' memory of their partitions' outages (one per
worker process and consumer group, see transforms/kafka_read.py ``_STALLS``). A reader calls
:meth:`ReadStalls.failed` when a poll, a consumer or the check that a partition is caught up
fails with an outage (spool.kafka_config.transient), and :meth:`ReadStalls.read` whenever
the partition answered. For each partition it:

* says how long to wait before the next try: 1 s, doubled after each failure in a row, at
  most 30 s (the reader hands the partition back to the runner for that long);
* logs ``kafka: partition P of topic T unreachable for N s (error); retrying`` at most once
  a minute, and one line when the partition answers again;
* sets this process's gauge ``spool_kafka_partition_unreachable_seconds`` (0 once it
  answers) and counts the retries (spool.metrics.reader_metrics);
* writes the stall's start to the ledger's ``read_stalls`` (``spool status``, the job's
  metrics page) and its end once the partition answers. These writes are best-effort: a
  ledger that is down as well is skipped (a warning a minute) and tried again at the next
  failure or read, never waited for and never raised. The first read of a partition by a
  reader also ends a stall row left open by a reader that died while it waited.

Its methods take a lock: every reader of a worker process shares it (a partition's
restriction moves between DoFn instances, and one stall must stay one stall).

A stall whose last failure is long past (more than twice the longest wait) was ended by a
read elsewhere (the runner moved the partition to another reader): the next failure starts
a new one. The clocks are injected, so the rules run in unit tests without waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from spool import retry

log = logging.getLogger("spool.kafka")
Gauge = Callable[[str, int, float | None], None]  # (topic, partition, seconds or None: back)


class StallLedger:
    """The ledger's ``read_stalls`` rows, written best-effort: True when written."""

    def __init__(self, ledger_dsn: str) -> None:
        from spool.ledger.store import Ledger

        # patience 0 and a short connect timeout: never hold the reader for the ledger
        self._ledger = Ledger(ledger_dsn, application_name="spool-job-reader", patience=0,
                              connect_timeout=3)
        self._once = retry.OncePer()

    def started(self, group: str, topic: str, partition: int, at: datetime,
                error: str) -> bool:
        from spool.ledger import stalls

        return self._try(lambda: stalls.started(self._ledger, group, topic, partition, at,
                                                error))

    def ended(self, group: str, topic: str, partition: int, at: datetime) -> bool:
        from spool.ledger import stalls

        return self._try(lambda: stalls.ended(self._ledger, group, topic, partition, at))

    def _try(self, write: Callable[[], object]) -> bool:
        import psycopg2

        try:
            write()
        except (psycopg2.Error, OSError) as exc:
            if self._once.allow("ledger"):
                log.warning("kafka: could not note a read stall in the ledger (%s); the "
                            "reader goes on without it", retry.brief(exc))
            return False
        finally:
            self._ledger.close()  # notes are rare: no connection is held between them
        return True


@dataclass
class _Partition:
    backoff: retry.Backoff
    last_failure: float | None = None
    noted: bool = False  # the ledger has this stall's start
    to_end: bool = True  # the ledger may hold an open stall of this partition


@dataclass
class ReadStalls:
    group: str
    ledger: StallLedger | None = None
    gauge: Gauge | None = None
    base: float = 1.0
    cap: float = 30.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _parts: dict = field(default_factory=dict, init=False)
    _once: retry.OncePer = field(init=False)
    _retry_end: retry.OncePer = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._once = retry.OncePer(retry.MINUTE, self.clock)
        self._retry_end = retry.OncePer(self.cap, self.clock)  # a down ledger, tried again

    def _part(self, key: tuple[str, int]) -> _Partition:
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = _Partition(retry.Backoff(self.base, self.cap, self.clock))
        return part

    def failed(self, topic: str, partition: int, exc: BaseException) -> tuple[float, float]:
        """An outage of the partition: (seconds to wait, seconds it has lasted)."""
        with self._lock:
            return self._failed(topic, partition, exc)

    def read(self, topic: str, partition: int) -> None:
        """The partition answered: its stall, if any, is over."""
        with self._lock:
            self._read(topic, partition)

    def _failed(self, topic: str, partition: int, exc: BaseException) -> tuple[float, float]:
        key = (topic, partition)
        part = self._part(key)
        now = self.clock()
        if part.last_failure is not None and now - part.last_failure > 2 * self.cap:
            part.backoff.succeeded()  # read elsewhere since: this is a new stall
            part.noted = False
            self._once.forget(key)
        delay = part.backoff.failed()
        part.last_failure = now
        lasted = part.backoff.down_for()
        error = retry.brief(exc)
        if self._once.allow(key):
            log.warning("kafka: partition %d of topic %s unreachable for %.0f s (%s); "
                        "retrying", partition, topic, lasted, error)
        if self.gauge is not None:
            self.gauge(topic, partition, lasted)
        if not part.noted and self.ledger is not None:
            part.noted = self.ledger.started(self.group, topic, partition,
                                             self.wall() - timedelta(seconds=lasted), error)
        part.to_end = True
        return delay, lasted

    def _read(self, topic: str, partition: int) -> None:
        key = (topic, partition)
        part = self._part(key)
        lasted = part.backoff.succeeded()
        if lasted is not None:
            part.last_failure = None
            part.noted = False
            self._once.forget(key)
            log.info("kafka: partition %d of topic %s readable again after %.0f s",
                     partition, topic, lasted)
            if self.gauge is not None:
                self.gauge(topic, partition, None)
        if part.to_end:
            due = self._retry_end.allow(key)  # a ledger that was down: tried again later
            if lasted is not None or due:
                part.to_end = self.ledger is not None and not self.ledger.ended(
                    self.group, topic, partition, self.wall())

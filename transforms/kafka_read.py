"""ReadFromKafka: a Python-native splittable DoFn on kafka-python.

One restriction per (topic, partition): an offset range that starts at the consumer group's
committed offset (or the earliest/latest offset when the group has none) and ends at the end
offset seen at start (drain mode, or earlier with ``max_records``) or never (streaming).

Each output element is a *chunk*: up to ``chunk_records`` consecutive records of one
partition, as ``(topic, partition, floor_ms, records, (origin, start, stop))`` with
kafka-python's records (offset, timestamp, value, headers); the chunk accounts for the
offsets ``[start, stop)`` (from the offset after the previous chunk's claim to the end of its
own, so the chunks of a partition tile its offsets without a hole even where the log has
gaps) and ``origin`` is the offset this job started the partition at (CommitOffsets
commits a partition only through chunks whose every record is in a recorded batch).

A record's *event time* is its Kafka timestamp (at most ten minutes ahead of the clock: see
``spool.ingest.chunks.MAX_FUTURE_MS``) clamped to be non-decreasing within the partition:
``max(floor_ms, timestamps so far)``, so no record is behind its own partition's watermark.
(A runner may still deliver a part after its window closed: BatchByTable puts it in a later
pane and counts it as late; nothing is dropped for lateness.) The chunk's
element timestamp is its first record's event time.

Watermark: a partition's *floor* is its last ``event_ms``; when a partition has nothing new
(streaming), its floor moves to *now - idle lag*, so idle partitions never hold windows back,
and the restriction is deferred for a moment. With ``watermark_scope="partition"`` each
restriction reports its own floor, which is right on runners that hold a watermark per
residual (Flink, Dataflow). Prism instead takes the minimum over the residuals of the *last
bundle* as the stage's watermark, so a bundle holding one partition would let the watermark
pass records other partitions have not read yet; with ``watermark_scope="process"`` every
restriction reports the minimum of its own floor and the *settled* floors of the topic's
other partitions as known in this worker process (Prism runs a job's Python code in one
process), which keeps it right there. A settled floor is a partition's floor when its
current bundle began, so a bundle never leans on output of another bundle that may not be
committed yet.
Streaming restrictions are split only by checkpoints (never fractionally: an unbounded offset
range has no meaningful middle).

Outages: a broker that is down, restarting or changing leaders is waited out, never
treated as an idle partition and never a reason to end the job. When the consumer cannot be
made, a poll fails, or the check that an empty poll means "caught up" (the partition's end
offset, asked of its leader) fails with a transient error (spool.kafka_config.transient),
the reader hands the partition back to the runner for a backoff of 1 s to 30 s
(spool.read_stalls) with nothing claimed beyond what it emitted and its watermark where it
was, so windows wait for it; the consumer is made again if it failed. It logs one line per
partition a minute at most, counts the retries, and notes the stall in the ledger for
``spool status``. Only errors that waiting cannot fix (credentials, SASL, TLS,
authorization, configuration) end the job. Listing the partitions at start retries
transient errors the same way (the topic was already confirmed by the launcher).

Beam 2.77's MonotonicWatermarkEstimator default provider starts from ``None`` and crashes
once an SDF defers; this module's provider always carries a real timestamp.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from spool import metrics, retry
from spool.failpoints import stall
from spool.ingest.budget import allocate
from spool.ingest.chunks import queue_time, timestamp_ceiling
from spool.kafka_config import consumer_config, transient
from spool.read_stalls import ReadStalls, StallLedger

log = logging.getLogger(__name__)

UNBOUNDED = 2**63 - 1
CHECK_MS = 3000  # how long asking a partition's end offset may take before it is an outage
BOOTSTRAP_MS = 10_000  # a new consumer's first metadata (kafka-python's default: 30 s)


@dataclass(frozen=True)
class ReadConfig:
    bootstrap: str
    topic: str
    group: str
    start_offset: str = "earliest"  # where to start when the group has no committed offset
    streaming: bool = False
    max_records: int | None = None
    chunk_records: int = 20_000
    poll_timeout_ms: int = 500
    max_bundle_seconds: float = 0.5  # streaming: a bundle of reads hands back this often
    idle_lag_seconds: float = 1.0
    idle_defer_seconds: float = 0.5
    watermark_scope: str = "partition"  # or "process", see the module docstring
    kafka_config: tuple[str, ...] = ()
    partitions: tuple[int, ...] = ()  # read only these (default: every partition)
    ledger_dsn: str | None = None  # where read stalls are noted (spool status); None: not


@dataclass(frozen=True)
class PartitionRange:
    topic: str
    partition: int
    start: int
    stop: int
    partitions: tuple[int, ...] = ()  # every partition of the topic


# Per (topic, partition), shared by the restrictions of one worker process:
# _FLOORS: the partition's floor so far (also records read by a bundle still running);
# _SETTLED: its floor when its current bundle began, i.e. covering only output that the
# runner has already committed. Other partitions may lean on settled floors only: a bundle
# running beside them could still fail or commit after they report.
# Process-wide on purpose (watermark_scope="process" needs what the other partitions'
# readers in this process reached), and safe: a value is written only by the reader of its
# own partition, only holds watermarks back (never lets a record be skipped), and a reader
# restarted from a checkpoint takes the larger of its own watermark and this floor.
_FLOORS: dict[tuple[str, int], int] = {}
_SETTLED: dict[tuple[str, int], int] = {}
_NO_FLOOR = MIN_TIMESTAMP.micros // 1000
# Per consumer group, the partitions' outages as this worker process sees them
# (spool.read_stalls), shared by the process's readers because a partition's restriction
# moves between DoFn instances: one stall is one stall, logged once a minute, however many
# instances retry it. Safe: only the wait before a retry, logs, metrics and best-effort
# ledger notes depend on it, never which records are read or the watermark.
_STALLS: dict[str, ReadStalls] = {}
_STALLS_LOCK = threading.Lock()


def _read_stalls(cfg: ReadConfig) -> ReadStalls:
    with _STALLS_LOCK:
        stalls = _STALLS.get(cfg.group)
        if stalls is None:
            ledger = StallLedger(cfg.ledger_dsn) if cfg.ledger_dsn else None
            stalls = _STALLS[cfg.group] = ReadStalls(cfg.group, ledger,
                                                     gauge=metrics.reader_stall)
        return stalls


class _ListPartitionsFn(beam.DoFn):
    """Impulse → one PartitionRange per partition of the topic, resolved at run time."""

    def __init__(self, cfg: ReadConfig) -> None:
        self.cfg = cfg

    def process(self, _):
        # the launcher confirmed the topic: a broker that is away now is waited for
        tps, parts, starts, end = retry.patiently(
            self._offsets, f"kafka: topic {self.cfg.topic} on {self.cfg.bootstrap}", log,
            transient)
        yield from self._ranges(tps, parts, starts, end)

    def _offsets(self):
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaTimeoutError

        cfg = self.cfg
        consumer = KafkaConsumer(**consumer_config(cfg.bootstrap, cfg.kafka_config,
                                                   group_id=cfg.group))
        try:
            deadline = time.monotonic() + 60
            parts = consumer.partitions_for_topic(cfg.topic)
            while not parts:
                if time.monotonic() > deadline:
                    # the launcher found the topic: no metadata now is a broker away (waited
                    # out, logged once a minute), or the topic was deleted under the job
                    raise KafkaTimeoutError(f"topic {cfg.topic!r} not found on "
                                            f"{cfg.bootstrap}; waiting for it (create it "
                                            "again if it was deleted)")
                time.sleep(0.5)
                parts = consumer.partitions_for_topic(cfg.topic)
            if cfg.partitions:
                missing = sorted(set(cfg.partitions) - parts)
                if missing:
                    raise RuntimeError(f"topic {cfg.topic!r} has no partition {missing[0]} "
                                       f"(it has {len(parts)}); fix --partitions")
                parts = set(cfg.partitions)
            tps = [TopicPartition(cfg.topic, p) for p in sorted(parts)]
            begin = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            starts = {}
            for tp in tps:
                committed = consumer.committed(tp)
                if committed is not None:
                    starts[tp] = max(committed, begin[tp])
                else:
                    starts[tp] = begin[tp] if cfg.start_offset == "earliest" else end[tp]
        finally:
            consumer.close()
        return tps, parts, starts, end

    def _ranges(self, tps, parts, starts, end):
        cfg = self.cfg
        if cfg.streaming:
            stops = {tp: UNBOUNDED for tp in tps}
        else:
            stops = {tp: max(end[tp], starts[tp]) for tp in tps}
            if cfg.max_records is not None:
                budget = allocate(cfg.max_records,
                                  {tp.partition: stops[tp] - starts[tp] for tp in tps})
                stops = {tp: starts[tp] + budget[tp.partition] for tp in tps}
        for tp in tps:
            log.info("reading %s/%d from offset %d to %s", tp.topic, tp.partition, starts[tp],
                     "the end of time" if stops[tp] == UNBOUNDED else stops[tp])
            yield PartitionRange(tp.topic, tp.partition, starts[tp], stops[tp],
                                 tuple(sorted(parts)))


@dataclass(frozen=True)
class UpTo:
    """A claim of every offset up to ``last`` that the restriction still holds."""

    last: int


class _OffsetTracker(OffsetRestrictionTracker):
    """Offset tracker that claims a whole chunk at once and never splits an unbounded range
    fractionally.

    ``try_claim(UpTo(last))`` claims through ``min(last, stop - 1)`` and returns that offset
    (None if nothing is left). It runs under the same lock as the runner's splits, so a split
    that lands while a poll is in flight shortens the claim instead of failing it: the records
    before the split point are claimed and emitted, none is left between two owners.
    """

    def try_claim(self, position):
        if not isinstance(position, UpTo):
            return super().try_claim(position)
        start = self._range.start if self._last_claim_attempt is None \
            else self._last_claim_attempt + 1
        end = min(position.last, self._range.stop - 1)
        if end < start:
            return None
        super().try_claim(end)
        return end

    def try_split(self, fraction_of_remainder):
        if self._range.stop >= UNBOUNDED and fraction_of_remainder != 0:
            return None
        return super().try_split(fraction_of_remainder)

    def is_bounded(self):
        return self._range.stop < UNBOUNDED


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, element: PartitionRange):
        return OffsetRange(element.start, element.stop)

    def create_tracker(self, restriction):
        return _OffsetTracker(restriction)

    def restriction_size(self, element, restriction):
        if restriction.stop >= UNBOUNDED:
            return 1  # unknown backlog
        return max(restriction.stop - restriction.start, 0)

    def truncate(self, element, restriction):
        # on a runner's drain, stop reading new records
        return None


class ManualWatermarks(WatermarkEstimatorProvider):
    """Manual watermark whose state is always a Timestamp, never None (see the module
    docstring); transforms.wakeups uses it too."""

    def initial_estimator_state(self, element, restriction):
        return MIN_TIMESTAMP

    def create_watermark_estimator(self, estimator_state):
        return ManualWatermarkEstimator(estimator_state or MIN_TIMESTAMP)


_RESTRICTIONS = _PartitionRestrictions()
_WATERMARKS = ManualWatermarks()


class _ReadPartitionFn(beam.DoFn):
    """Reads one partition's offset range in chunks (bounded: drain mode)."""

    def __init__(self, cfg: ReadConfig) -> None:
        self.cfg = cfg
        self.retries = Metrics.counter("spool.kafka", "unreachable_retries")
        self.stalled = Metrics.gauge("spool.kafka", "unreachable_seconds")

    def setup(self):
        self._consumers: dict = {}
        self._next: dict = {}
        self._closing = False
        self._gauged = False  # the unreachable gauge shows an outage
        self._stalls = _read_stalls(self.cfg)

    def start_bundle(self):
        # a runner may put several partitions' reads in one bundle (Prism takes every pending
        # residual of the stage), and the watermark moves only when the bundle ends: so the
        # time limit is the bundle's, and reads after the first get one chunk each once it
        # has run out
        self._bundle_deadline = time.monotonic() + self.cfg.max_bundle_seconds

    def _consumer(self, topic: str, partition: int, start: int):
        from kafka import KafkaConsumer, TopicPartition

        tp = TopicPartition(topic, partition)
        consumer = self._consumers.get(tp)
        if consumer is None:
            consumer = KafkaConsumer(**consumer_config(
                self.cfg.bootstrap, self.cfg.kafka_config,
                max_poll_records=self.cfg.chunk_records, bootstrap_timeout_ms=BOOTSTRAP_MS,
                # an offset retention has deleted moves to the oldest record left, never to
                # the end of the log (kafka-python's default), which would skip what is there
                auto_offset_reset="earliest"))
            consumer.assign([tp])
            self._consumers[tp] = consumer
        if self._next.get(tp) != start:
            consumer.seek(tp, start)
            self._next[tp] = start
        return consumer, tp

    def _drop(self, topic: str, partition: int) -> None:
        """Forget a consumer in an unknown state; the next read makes a new one."""
        from kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        self._next.pop(tp, None)
        consumer = self._consumers.pop(tp, None)
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=1000)
            except Exception as exc:  # noqa: BLE001 - a broken consumer is let go either way
                log.debug("closing a broken consumer: %s", retry.brief(exc))

    def _wait_out(self, element: PartitionRange, exc: BaseException, tracker,
                  drop: bool) -> None:
        """An outage of the partition: hand it back to the runner for the backoff's delay.
        Nothing past the last emitted chunk was claimed and the watermark was not moved, so
        the residual starts at the next unread offset and windows wait for it. An error
        that waiting cannot fix is raised."""
        if self._closing:
            # the worker is stopping and teardown closed the consumer under this call: hand
            # the rest back unread (nothing of it was claimed) instead of a traceback
            tracker.defer_remainder()
            return
        if not transient(exc):
            raise exc
        if drop:
            self._drop(element.topic, element.partition)
        delay, lasted = self._stalls.failed(element.topic, element.partition, exc)
        self.retries.inc()
        self.stalled.set(int(lasted))
        self._gauged = True
        tracker.defer_remainder(Duration(seconds=delay))

    def _caught_up(self, consumer, tp, position: int | None) -> bool:
        """An empty poll means "nothing new" only if the partition's leader says its end
        offset is our position: a broker that is away raises (an outage, not an idle
        partition), and records not fetched yet keep the watermark where it is."""
        if position is None:
            return False
        end = consumer.end_offsets([tp], timeout_ms=CHECK_MS).get(tp)
        return end is not None and end <= position

    def process(
        self,
        element: PartitionRange,
        tracker=beam.DoFn.RestrictionParam(_RESTRICTIONS),
        watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
    ):
        cfg = self.cfg
        restriction = tracker.current_restriction()
        try:
            consumer, tp = self._consumer(element.topic, element.partition, restriction.start)
        except Exception as exc:  # noqa: BLE001 - _wait_out raises all but outages
            self._wait_out(element, exc, tracker, drop=True)
            return
        me = (element.topic, element.partition)
        floor = max(watermark.current_watermark().micros // 1000, _FLOORS.get(me, _NO_FLOOR))
        _SETTLED[me] = floor
        shared = cfg.watermark_scope == "process"
        deadline = self._bundle_deadline
        claimed_from = restriction.start  # the next chunk accounts for offsets from here

        def report(floor: int) -> None:
            _FLOORS[me] = floor
            mark = floor
            if shared:
                mark = min([floor] + [_SETTLED.get((element.topic, p), _NO_FLOOR)
                                      for p in element.partitions if p != element.partition])
            if mark > watermark.current_watermark().micros // 1000:
                watermark.set_watermark(Timestamp(micros=mark * 1000))

        while True:
            stop = tracker.current_restriction().stop
            try:
                polled = consumer.poll(timeout_ms=cfg.poll_timeout_ms,
                                       max_records=cfg.chunk_records)
            except Exception as exc:  # noqa: BLE001 - _wait_out raises all but outages
                self._wait_out(element, exc, tracker, drop=True)
                return
            records = polled.get(tp)
            if records:
                self._stalls.read(element.topic, element.partition)
                if self._gauged:  # the outage is over: the gauge says so
                    self.stalled.set(0)
                    self._gauged = False
                end = tracker.try_claim(UpTo(records[-1].offset))
                if end is None:
                    # the range was split away under the poll: the consumer has moved past
                    # records this reader does not own; whoever reads them next must seek
                    self._next.pop(tp, None)
                    return
                last_of_range = end < records[-1].offset
                if last_of_range:  # the range ends inside this chunk (a split or drain's end)
                    records = [r for r in records if r.offset <= end]
                    self._next.pop(tp, None)  # the consumer is past ``end``: seek next time
                    if not records:
                        return
                else:
                    self._next[tp] = records[-1].offset + 1
                stall(f"read.partition.{element.partition}")  # tests: a reader held up
                ceiling = timestamp_ceiling(time.time())
                first = max(floor, queue_time(records[0].timestamp, ceiling))
                yield beam.window.TimestampedValue(
                    (element.topic, element.partition, floor, records,
                     (element.start, claimed_from, end + 1)),
                    Timestamp(micros=first * 1000))
                claimed_from = end + 1
                floor = max(floor, queue_time(max(r.timestamp for r in records), ceiling))
                report(floor)
                if last_of_range:
                    return
            else:
                try:
                    position = consumer.position(tp, timeout_ms=CHECK_MS)
                    done = position is not None and position >= stop
                    idle = cfg.streaming and not done and self._caught_up(consumer, tp,
                                                                          position)
                except Exception as exc:  # noqa: BLE001 - _wait_out raises all but outages
                    self._wait_out(element, exc, tracker, drop=False)
                    return
                if done:
                    tracker.try_claim(stop)
                    return
                if idle:
                    self._stalls.read(element.topic, element.partition)
                    floor = max(floor, int((time.time() - cfg.idle_lag_seconds) * 1000))
                    report(floor)
                    tracker.defer_remainder(Duration(seconds=cfg.idle_defer_seconds))
                    return
            if cfg.streaming and time.monotonic() > deadline:
                tracker.defer_remainder()
                return

    def teardown(self):
        self._closing = True
        for consumer in getattr(self, "_consumers", {}).values():
            consumer.close(autocommit=False)
        self._consumers = {}


class _ReadPartitionStreamingFn(_ReadPartitionFn):
    """The same reader over unbounded ranges (streaming mode)."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: PartitionRange,
        tracker=beam.DoFn.RestrictionParam(_RESTRICTIONS),
        watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
    ):
        yield from super().process(element, tracker, watermark)


class ReadFromKafka(beam.PTransform):
    """Chunks of raw records from every partition of one topic (see the module docstring)."""

    def __init__(self, cfg: ReadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        read_fn = _ReadPartitionStreamingFn if self.cfg.streaming else _ReadPartitionFn
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "ListPartitions" >> beam.ParDo(_ListPartitionsFn(self.cfg))
            | "SpreadPartitions" >> beam.Reshuffle()
            | "ReadPartitions" >> beam.ParDo(read_fn(self.cfg))
        )

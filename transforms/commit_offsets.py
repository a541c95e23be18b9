"""CommitOffsets: a partition's group offset passes only records already in the ledger.

Two inputs meet under one key (the topic), in the global window: DecodeAndShape's *takes*
(which offsets a set of parts accounts for) and WriteBatches' markers (which parts of which
takes the batches it recorded hold). A stateful DoFn keeps the bookkeeping of
spool.ingest.progress and commits each partition's offset as far as every record before it
is in a recorded batch. Nothing here waits for a watermark: a part a runner delivers late
is written in a later pane, and the commit waits for it like for any other.

The offset commit rides through a broker outage: a failed commit is logged (once a minute)
and tried again with the next input, which comes as soon as the reader reads again; the
bookkeeping keeps what is due meanwhile. A take whose parts stay unrecorded for
``stall_seconds`` is named in a warning once a minute: its partition's commits wait for it.

A bounded run (drain mode) has no next input: when its input ends, an end-of-window timer of
the global window commits what is due, retrying an unavailable broker for up to
``final_commit_seconds``, and ends the job with an error if it still cannot. A drain run
therefore never exits 0 with offsets it spooled left uncommitted (the next run would read
those records again). Streaming runs never reach the global window's end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow

from spool import kafka_config
from spool.ingest.progress import Progress
from spool.kafka_config import consumer_config
from spool.retry import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitConfig:
    bootstrap: str
    group: str
    kafka_config: tuple[str, ...] = ()
    stall_seconds: float = 300.0
    final_commit_seconds: float = 120.0


class _CommitFn(beam.DoFn):
    PROGRESS = ReadModifyWriteStateSpec("progress", PickleCoder())
    INPUT_END = TimerSpec("input_end", TimeDomain.WATERMARK)

    def __init__(self, cfg: CommitConfig) -> None:
        self.cfg = cfg
        self.commits = Metrics.counter("spool", "offset_commits")
        self.failures = Metrics.counter("spool", "offset_commit_failures")
        # takes read but not yet passed by their partitions' commits: a number that only
        # grows says a part never reached a recorded batch (the warning names it)
        self.waiting = Metrics.gauge("spool", "takes_waiting")

    def setup(self):
        self._consumer = None
        self._committed: dict = {}  # (topic, partition) → offset committed by this worker
        self._said: dict[str, float] = {}  # what was logged when (once a minute each)
        self._backoff = Backoff(base=1.0, cap=30.0)
        self._next_try = 0.0

    def _say(self, what: str, level: int, text: str, *args) -> None:
        now = time.monotonic()
        if now - self._said.get(what, -1e9) >= 60:
            self._said[what] = now
            log.log(level, text, *args)

    def _kafka(self):
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(**consumer_config(
                self.cfg.bootstrap, self.cfg.kafka_config, group_id=self.cfg.group))
        return self._consumer

    def process(self, element, progress=beam.DoFn.StateParam(PROGRESS),
                input_end=beam.DoFn.TimerParam(INPUT_END)):
        topic, (kind, value) = element
        book = progress.read()
        if book is None:  # the key's first input: the final commit when a bounded input ends
            book = Progress()
            input_end.set(GlobalWindow().max_timestamp())
        if kind == "take":
            take_id, ranges, origins, parts = value
            book.add_take(take_id, ranges, origins, parts, time.time())
        else:
            book.add_recorded(value)
        book.advance()
        self.waiting.set(len(book.takes))
        self._commit(topic, book)
        for stall in book.waiting(time.time(), self.cfg.stall_seconds):
            self._say(f"stall:{stall['partition']}", logging.WARNING,
                      "offsets of %s/%d from %d are not committed yet: %d of the %d parts "
                      "read with them (take %s) are not in a recorded batch after %d s",
                      topic, stall["partition"], stall["offset"], stall["missing"],
                      stall["parts"], stall["take"], stall["seconds"])
        progress.write(book)

    @on_timer(INPUT_END)
    def on_input_end(self, key=beam.DoFn.KeyParam, progress=beam.DoFn.StateParam(PROGRESS)):
        """A bounded input is read: commit what is due now, there is no next input to."""
        topic, book = key, progress.read() or Progress()
        book.advance()
        deadline = time.monotonic() + self.cfg.final_commit_seconds
        while not self._commit(topic, book, final=True):
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"cannot commit the offsets of {topic} for consumer group "
                    f"{self.cfg.group!r} after {self.cfg.final_commit_seconds:.0f} s: Kafka "
                    f"does not answer. The batches are recorded; the next run reads "
                    f"the records after the last committed offsets again. Due: "
                    f"{dict(sorted(book.cursor.items()))}")
            time.sleep(max(0.0, min(self._next_try, deadline) - time.monotonic()))
        for stall in book.waiting(time.time(), 0):
            log.warning("the input of %s is read but offsets of partition %d from %d are not "
                        "committed: %d of the %d parts read with them (take %s) are not in a "
                        "recorded batch; the next run reads them again", topic,
                        stall["partition"], stall["offset"], stall["missing"],
                        stall["parts"], stall["take"])
        progress.write(book)

    def _commit(self, topic: str, book: Progress, final: bool = False) -> bool:
        """Commit each partition's cursor that is ahead of its committed offset. False when
        some are still due: the broker failed (or failed a moment ago and ``final`` is not
        set: the next input tries again)."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        due = {p: o for p, o in book.cursor.items()
               if o > self._committed.get((topic, p), -1)}
        if not due:
            return True
        if not final and time.monotonic() < self._next_try:
            return False  # the broker was down a moment ago: the next input tries
        try:
            consumer = self._kafka()
            todo = {}
            for partition, offset in due.items():
                tp = TopicPartition(topic, partition)
                if (topic, partition) not in self._committed:
                    # never move a group's offset back (another job may own the partition)
                    self._committed[(topic, partition)] = consumer.committed(tp) or 0
                if offset > self._committed[(topic, partition)]:
                    todo[tp] = OffsetAndMetadata(offset, "", -1)
            if todo:
                consumer.commit(todo)
        except Exception as exc:  # an outage is waited out, anything else raised
            if not kafka_config.transient(exc):
                raise RuntimeError(f"cannot commit offsets of {topic} for consumer group "
                                   f"{self.cfg.group!r}: {type(exc).__name__}: {exc}; check "
                                   "the group's authorization and that no other consumer "
                                   "uses the group") from exc
            self.failures.inc()
            self._next_try = time.monotonic() + self._backoff.failed()
            self._say("commit", logging.WARNING,
                      "could not commit offsets of %s to Kafka (%s: %s); they stay due and "
                      "are committed once the broker answers", topic, type(exc).__name__, exc)
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close(autocommit=False)
            return False
        self._backoff.succeeded()
        for tp, om in todo.items():
            self._committed[(tp.topic, tp.partition)] = om.offset
        self.commits.inc(len(todo))
        log.info("committed offsets %s", {f"{tp.topic}/{tp.partition}": om.offset
                                          for tp, om in todo.items()})
        return True

    def teardown(self):
        if getattr(self, "_consumer", None) is not None:
            self._consumer.close(autocommit=False)


class CommitOffsets(beam.PTransform):
    def __init__(self, cfg: CommitConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, inputs):
        takes, written = inputs
        tagged_takes = takes | "TagTakes" >> beam.Map(lambda kv: (kv[0], ("take", kv[1])))
        tagged_written = written | "TagMarkers" >> beam.Map(
            lambda kv: (kv[0], ("recorded", kv[1])))
        return (
            (tagged_takes, tagged_written)
            | "Merge" >> beam.Flatten()
            | "Commit" >> beam.ParDo(_CommitFn(self.cfg))
        )

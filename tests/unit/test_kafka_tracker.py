"""Chunk claims against a runner's splits: no record is left between two owners; a streaming
read hands its watermark back at the end of each read, and ends quietly on teardown."""

from __future__ import annotations

import time

from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import ThreadsafeRestrictionTracker
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.kafka_read import (
    UNBOUNDED,
    PartitionRange,
    ReadConfig,
    UpTo,
    _OffsetTracker,
    _ReadPartitionFn,
)


def test_a_split_during_a_poll_shortens_the_claim_instead_of_failing_it():
    tracker = _OffsetTracker(OffsetRange(100, 200))
    assert tracker.try_claim(UpTo(109)) == 109
    # the runner splits while the next poll (offsets 110..150) is in flight
    primary, residual = tracker.try_split(0.1)
    assert (primary.stop, residual.start) == (118, 118)
    assert tracker.try_claim(UpTo(150)) == 117  # 110..117 are still ours: emitted
    assert tracker.try_claim(UpTo(160)) is None
    tracker.check_done()  # the primary's range is fully attempted


def test_unbounded_ranges_split_only_at_checkpoints():
    tracker = _OffsetTracker(OffsetRange(0, UNBOUNDED))
    assert tracker.try_claim(UpTo(9)) == 9
    assert tracker.try_split(0.5) is None
    primary, residual = tracker.try_split(0)
    assert (primary.stop, residual.start, residual.stop) == (10, 10, UNBOUNDED)
    assert tracker.try_claim(UpTo(20)) is None


class _Record:
    def __init__(self, offset: int, timestamp: int) -> None:
        self.offset, self.timestamp, self.value, self.headers = offset, timestamp, b"{}", []


class _SteadyConsumer:
    """A partition that always has one more record, stamped now (a busy topic)."""

    def __init__(self, tp) -> None:
        self.tp, self.next, self.closed_under_poll = tp, 0, False

    def poll(self, timeout_ms, max_records):
        if self.closed_under_poll:
            raise RuntimeError("KafkaConsumer is closed")
        record = _Record(self.next, int(time.time() * 1000))
        self.next += 1
        return {self.tp: [record]}


def _streaming_read(bundle_seconds: float):
    fn = _ReadPartitionFn(ReadConfig(bootstrap="-", topic="q", group="g", streaming=True,
                                     max_bundle_seconds=bundle_seconds))
    fn.setup()
    fn.start_bundle()
    consumer = _SteadyConsumer(("q", 0))
    fn._consumer = lambda topic, partition, start: (consumer, ("q", 0))
    tracker = ThreadsafeRestrictionTracker(_OffsetTracker(OffsetRange(0, UNBOUNDED)))
    watermark = ManualWatermarkEstimator(MIN_TIMESTAMP)
    element = PartitionRange("q", 0, 0, UNBOUNDED, (0,))
    return fn, consumer, tracker, watermark, element


def test_a_busy_partition_hands_back_its_watermark_at_the_end_of_each_read():
    fn, consumer, tracker, watermark, element = _streaming_read(bundle_seconds=0.05)
    started = int(time.time() * 1000)
    chunks = list(fn.process(element, tracker, watermark))  # ends although records keep coming
    assert chunks and consumer.next == len(chunks)
    residual, _delay = tracker.deferred_status()  # the rest goes back to the runner
    assert (residual.start, residual.stop) == (len(chunks), UNBOUNDED)
    # the watermark it hands back is the newest record's time, not where the read began
    newest = chunks[-1].value[3][-1].timestamp
    assert watermark.current_watermark() == Timestamp(micros=newest * 1000)
    assert newest >= started


def test_reads_that_share_a_bundle_share_its_time_limit():
    """Prism puts every pending partition read of the stage in one bundle, and the
    watermark moves when the bundle ends: a read that starts after the bundle's time is up
    reads one chunk and hands back, so the bundle does not last a time limit per read."""
    fn, _first, tracker, watermark, element = _streaming_read(bundle_seconds=0.05)
    assert len(list(fn.process(element, tracker, watermark))) >= 1
    second = _SteadyConsumer(("q", 1))
    fn._consumer = lambda topic, partition, start: (second, ("q", 1))
    tracker = ThreadsafeRestrictionTracker(_OffsetTracker(OffsetRange(0, UNBOUNDED)))
    chunks = list(fn.process(PartitionRange("q", 1, 0, UNBOUNDED, (0, 1)), tracker,
                             ManualWatermarkEstimator(MIN_TIMESTAMP)))
    assert len(chunks) == 1
    assert tracker.deferred_status()[0].start == 1
    fn.start_bundle()  # the next bundle has its own time
    tracker = ThreadsafeRestrictionTracker(_OffsetTracker(OffsetRange(1, UNBOUNDED)))
    assert len(list(fn.process(PartitionRange("q", 1, 1, UNBOUNDED, (0, 1)), tracker,
                               ManualWatermarkEstimator(MIN_TIMESTAMP)))) > 1


def test_a_read_whose_consumer_is_closed_by_teardown_ends_quietly():
    fn, consumer, tracker, watermark, element = _streaming_read(bundle_seconds=60)
    consumer.closed_under_poll = True
    fn._closing = True  # teardown ran while this read was polling
    assert list(fn.process(element, tracker, watermark)) == []
    residual, _delay = tracker.deferred_status()
    assert residual.start == 0  # nothing claimed: every record is read again later

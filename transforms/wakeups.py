"""WakeUps: an endless source of ticks for a follow-mode loader, one per look at the ledger.

A tick goes out as soon as the spool job announces new READY batches
(:class:`spool.ledger.notify.ReadyListener`), and at the latest ``poll_seconds`` after the
previous one, so batches that become due without an announcement (a retry delay that ran
out, an expired lease) are found by polling, as before. With ``listen=False`` it is a plain
poll.

It is a splittable DoFn over an endless count: each call waits for one tick, emits it with
the current time as its timestamp and watermark, and hands the rest back to the runner, so
each tick reaches the transforms downstream at once (output leaves a splittable DoFn when
its bundle ends). The listening connection is the DoFn instance's and outlives bundles, so
a notice that arrives between two calls is kept for the next.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Timestamp

from spool.ledger.notify import ReadyListener
from transforms.kafka_read import ManualWatermarks

ENDLESS = 2**63 - 1


class _Endless(RestrictionProvider):
    def initial_restriction(self, element):
        return OffsetRange(0, ENDLESS)

    def create_tracker(self, restriction):
        return _TickTracker(restriction)

    def restriction_size(self, element, restriction):
        return 1

    def truncate(self, element, restriction):
        return None  # a drained pipeline stops ticking


class _TickTracker(OffsetRestrictionTracker):
    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder != 0:
            return None  # only checkpoints: an endless count has no middle
        return super().try_split(fraction_of_remainder)

    def is_bounded(self):
        return False


_RESTRICTION = _Endless()
_WATERMARK = ManualWatermarks()


class _WakeUpFn(beam.DoFn):
    def __init__(self, ledger_dsn: str, poll_seconds: float, listen: bool) -> None:
        self.ledger_dsn = ledger_dsn
        self.poll_seconds = poll_seconds
        self.listen = listen

    def setup(self):
        self._listener = ReadyListener(self.ledger_dsn) if self.listen else None
        self._last = 0.0  # monotonic time of the last tick

    @beam.DoFn.unbounded_per_element()
    def process(self, _, tracker=beam.DoFn.RestrictionParam(_RESTRICTION),
                watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARK)):
        due = self._last + self.poll_seconds - time.monotonic()
        if due > 0:
            if self._listener is not None:
                self._listener.wait(due)
            else:
                time.sleep(due)
        position = tracker.current_restriction().start
        if not tracker.try_claim(position):
            return
        self._last = time.monotonic()
        now = Timestamp.now()
        watermark.set_watermark(now)
        yield beam.window.TimestampedValue(position, now)
        tracker.defer_remainder()

    def teardown(self):
        if getattr(self, "_listener", None) is not None:
            self._listener.close()


class WakeUps(beam.PTransform):
    """Ticks (ints) on announced READY batches, at least every ``poll_seconds``."""

    def __init__(self, ledger_dsn: str, poll_seconds: float, listen: bool = True) -> None:
        super().__init__()
        self.ledger_dsn = ledger_dsn
        self.poll_seconds = poll_seconds
        self.listen = listen

    def expand(self, pbegin):
        return (pbegin
                | "Impulse" >> beam.Impulse()
                | "Tick" >> beam.ParDo(_WakeUpFn(self.ledger_dsn, self.poll_seconds,
                                                 self.listen)).with_output_types(int))

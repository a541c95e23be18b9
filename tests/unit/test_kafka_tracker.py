"""Chunk claims against a runner's splits: no record is left between two owners."""

from __future__ import annotations

from apache_beam.io.restriction_trackers import OffsetRange

from transforms.kafka_read import UNBOUNDED, UpTo, _OffsetTracker


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

"""The commit rule: a partition's offset passes a record only once its batch is recorded."""

from __future__ import annotations

from spool.ingest.progress import Progress


def _book() -> Progress:
    book = Progress()
    # partition 0 started at 100; three takes tile 100..130, partition 1 started at 7
    book.add_take("0:100", [(0, 100, 110), (1, 7, 9)], {0: 100, 1: 7}, parts=2, now=0)
    book.add_take("0:110", [(0, 110, 120)], {0: 100}, parts=3, now=0)
    book.add_take("0:120", [(0, 120, 130)], {0: 100}, parts=1, now=0)
    return book


def test_a_partition_commits_only_through_takes_whose_every_part_is_recorded():
    book = _book()
    assert book.advance() == {}
    book.add_recorded({"0:110": 0b111, "0:120": 0b1})  # later takes first: nothing to commit
    assert book.advance() == {}
    book.add_recorded({"0:100": 0b01})
    assert book.advance() == {}  # one part of the first take is still out
    book.add_recorded({"0:100": 0b10})
    assert book.advance() == {0: 130, 1: 9}
    assert not book.takes and not book.recorded  # what is passed is forgotten


def test_a_late_part_holds_the_commit_until_its_later_pane_is_recorded():
    book = _book()
    book.add_recorded({"0:100": 0b11, "0:120": 0b1, "0:110": 0b011})
    assert book.advance() == {0: 110, 1: 9}
    assert book.waiting(now=400, after_s=300) == [
        {"partition": 0, "offset": 110, "take": "0:110", "parts": 3, "missing": 1,
         "seconds": 400}]
    book.add_recorded({"0:110": 0b100})  # the late pane, written after the window closed
    assert book.advance() == {0: 130}


def test_a_part_recorded_twice_does_not_stand_in_for_a_missing_one():
    book = _book()
    book.add_recorded({"0:100": 0b01})
    book.add_recorded({"0:100": 0b01})
    assert book.advance() == {}


def test_markers_may_come_before_their_take_and_a_take_without_parts_is_spooled():
    book = Progress()
    book.add_recorded({"3:0": 0b1})
    book.add_take("3:0", [(3, 0, 50)], {3: 0}, parts=1, now=0)
    book.add_take("3:50", [(3, 50, 60)], {3: 0}, parts=0, now=0)  # SCHEMA and STATE only
    assert book.advance() == {3: 60}


def test_a_take_seen_again_changes_nothing():
    book = _book()
    book.add_take("0:100", [(0, 100, 110), (1, 7, 9)], {0: 100, 1: 7}, parts=2, now=5)
    book.add_recorded({"0:100": 0b11, "0:110": 0b111, "0:120": 0b1})
    assert book.advance() == {0: 130, 1: 9}

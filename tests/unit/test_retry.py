"""spool.retry and spool.read_stalls: backoff, patient retries and log throttling, on an
injected clock (nothing here waits)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from spool import retry
from spool.read_stalls import ReadStalls


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Down(Exception):
    pass


class Broken(Exception):
    pass


def flaky(failures: int, clock: Clock | None = None, error=Down):
    """A function failing ``failures`` times, then returning how often it was called."""
    calls = []

    def fn():
        calls.append(clock() if clock else None)
        if len(calls) <= failures:
            raise error("connection refused\nsecond line")
        return len(calls)

    return fn, calls


def is_down(exc: BaseException) -> bool:
    return isinstance(exc, Down)


def test_backoff_doubles_up_to_its_cap_and_says_how_long_the_outage_lasted():
    clock = Clock()
    backoff = retry.Backoff(1.0, 30.0, clock)
    delays = []
    for _ in range(8):
        delays.append(backoff.failed())
        clock.sleep(delays[-1])
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.down_for() == sum(delays)
    assert backoff.succeeded() == sum(delays)
    assert backoff.succeeded() is None  # no outage now
    assert backoff.failed() == 1  # a new outage starts from the base again
    with pytest.raises(ValueError):
        retry.Backoff(0, 1)


def test_once_per_lets_one_line_a_minute_through_per_key():
    clock = Clock()
    once = retry.OncePer(60, clock)
    assert once.allow("a") and once.allow("b")
    clock.sleep(59)
    assert not once.allow("a")
    clock.sleep(1)
    assert once.allow("a") and not once.allow("a")
    once.forget("a")
    assert once.allow("a")


def test_patiently_waits_out_an_outage_and_logs_once_a_minute(caplog):
    clock = Clock()
    fn, calls = flaky(20, clock)
    with caplog.at_level(logging.INFO, logger="t"):
        got = retry.patiently(fn, "ledger", logging.getLogger("t"), is_down,
                              backoff=retry.Backoff(1, 30, clock), sleep=clock.sleep)
    assert got == 21
    # 1, 2, 4, 8, 16 s, then 30 s for each of the other 15 failures
    waited = calls[-1] - calls[0]
    assert waited == 1 + 2 + 4 + 8 + 16 + 15 * 30
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 8  # failures at 0, 61, 121, ... 421 s, not the 20 of them
    assert warnings[0] == "ledger unreachable for 0 s (Down: connection refused); retrying"
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert back == [f"ledger reachable again after {waited:.0f} s"]


def test_patiently_raises_at_once_what_is_not_an_outage():
    clock = Clock()
    fn, calls = flaky(1, clock, error=Broken)
    with pytest.raises(Broken):
        retry.patiently(fn, "ledger", logging.getLogger("t"), is_down, sleep=clock.sleep)
    assert len(calls) == 1


def test_patiently_gives_up_after_its_patience():
    clock = Clock()
    fn, calls = flaky(100, clock)
    with pytest.raises(Down):
        retry.patiently(fn, "s3", logging.getLogger("t"), is_down, patience=10,
                        backoff=retry.Backoff(1, 30, clock), sleep=clock.sleep)
    assert calls[-1] - calls[0] >= 10 and len(calls) == 5  # waited 1, 2, 4, 8
    fn, calls = flaky(100, clock)
    with pytest.raises(Down):  # patience 0: no wait at all
        retry.patiently(fn, "s3", logging.getLogger("t"), is_down, patience=0,
                        sleep=clock.sleep)
    assert len(calls) == 1


class Notes:
    """A stand-in for the ledger's read_stalls rows (spool.read_stalls.StallLedger)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.up = True

    def started(self, group, topic, partition, at, error) -> bool:
        if self.up:
            self.rows.append(("started", group, topic, partition, at, error))
        return self.up

    def ended(self, group, topic, partition, at) -> bool:
        if self.up:
            self.rows.append(("ended", group, topic, partition, at))
        return self.up


def stalls(notes: Notes, clock: Clock, gauge: list) -> ReadStalls:
    return ReadStalls("g", notes, lambda t, p, s: gauge.append((t, p, s)), clock=clock,
                      wall=lambda: datetime.fromtimestamp(clock.now, UTC))


def test_a_stalled_partition_waits_logs_once_a_minute_and_is_noted_once(caplog):
    clock, notes, gauge = Clock(), Notes(), []
    reader = stalls(notes, clock, gauge)
    reader.read("fatq", 3)  # a new reader closes a stall a dead one may have left open
    assert notes.rows == [("ended", "g", "fatq", 3, datetime.fromtimestamp(1000, UTC))]
    notes.rows.clear()
    waits = []
    with caplog.at_level(logging.INFO, logger="spool.kafka"):
        for _ in range(10):
            delay, _lasted = reader.failed("fatq", 3, Down("111 ECONNREFUSED"))
            waits.append(delay)
            clock.sleep(delay)
        reader.read("fatq", 3)
        reader.read("fatq", 3)
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("kafka: partition 3 of topic fatq unreachable for 0 s "
                        "(Down: 111 ECONNREFUSED); retrying")
    # failures at 0, 1, 3, 7, 15, 31, 61, 91, 121 and 151 s: warned at 0, 61 and 121
    assert len([m for m in lines if "unreachable" in m]) == 3
    assert lines[-1] == f"kafka: partition 3 of topic fatq readable again after {sum(waits):.0f} s"
    assert [r[0] for r in notes.rows] == ["started", "ended"]  # once each
    assert notes.rows[0][4] == datetime.fromtimestamp(1000, UTC)  # when it began
    assert gauge[0] == ("fatq", 3, 0) and gauge[-1] == ("fatq", 3, None)
    assert [s for *_k, s in gauge[:-1]] == [sum(waits[:i]) for i in range(10)]


def test_a_ledger_that_is_down_too_is_skipped_and_noted_later():
    clock, notes, gauge = Clock(), Notes(), []
    reader = stalls(notes, clock, gauge)
    notes.up = False
    reader.failed("fatq", 0, Down("x"))
    clock.sleep(1)
    notes.up = True
    reader.failed("fatq", 0, Down("x"))  # noted now, with the stall's real start
    assert notes.rows == [("started", "g", "fatq", 0, datetime.fromtimestamp(1000, UTC),
                           "Down: x")]
    notes.up = False
    clock.sleep(2)
    reader.read("fatq", 0)  # the end cannot be noted yet ...
    reader.read("fatq", 0)  # ... nor tried again at once
    notes.up = True
    reader.read("fatq", 0)
    assert len(notes.rows) == 1
    clock.sleep(30)
    reader.read("fatq", 0)  # ... but after a while
    assert notes.rows[-1][0] == "ended"


def test_a_failure_long_after_the_last_starts_a_new_stall():
    clock, notes, gauge = Clock(), Notes(), []
    reader = stalls(notes, clock, gauge)
    for _ in range(3):
        reader.failed("fatq", 1, Down("x"))
    clock.sleep(600)  # read by another reader meanwhile
    delay, lasted = reader.failed("fatq", 1, Down("x"))
    assert (delay, lasted) == (1, 0)
    assert [r[0] for r in notes.rows] == ["started", "started"]

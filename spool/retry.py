"""Riding out a service's outage: capped backoff, a patient retry, warnings once a minute.

The jobs treat a queue, ledger or object store that is down, restarting or failing over as
something to wait out, never as a reason to end (docs/spool-job.md, "Outages"). The rules
are here, free of Beam and of any client library, with the clock injected:

* :class:`Backoff` says how long to wait after each failure in a row (``base``, doubled each
  time, at most ``cap``) and how long the outage has lasted;
* :class:`OncePer` lets one warning per key through per interval, so an outage of an hour
  logs sixty lines per partition or service, not thousands;
* :func:`patiently` calls a function until it succeeds, retrying what ``transient`` says is
  an outage (anything else is raised at once: a configuration error ends the caller), with
  a warning once a minute while it waits and one line when the service is back. With a
  ``patience`` of N seconds it gives up (raises the last error) once the outage has lasted
  that long: a command line tool should answer in seconds, a job waits without end.

A function retried by :func:`patiently` must be safe to repeat: a write whose connection
dropped may have taken effect before the error reached the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")
MINUTE = 60.0


class Backoff:
    """Capped exponential backoff over one outage: ``base``, ``2 * base``, ... ``cap``."""

    def __init__(self, base: float = 1.0, cap: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff: need 0 < base ({base}) <= cap ({cap})")
        self.base = base
        self.cap = cap
        self.clock = clock
        self.failures = 0
        self.since: float | None = None  # clock time of the outage's first failure

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        if self.since is None:
            self.since = self.clock()
        delay = min(self.cap, self.base * 2 ** min(self.failures, 62))
        self.failures += 1
        return delay

    def down_for(self) -> float:
        """Seconds since the outage's first failure (0 when there is none)."""
        return 0.0 if self.since is None else max(0.0, self.clock() - self.since)

    def succeeded(self) -> float | None:
        """End the outage; how long it lasted, or None if there was none."""
        lasted = None if self.since is None else self.down_for()
        self.failures = 0
        self.since = None
        return lasted


class OncePer:
    """``allow(key)`` is True at most once per ``seconds`` for each key (a log throttle)."""

    def __init__(self, seconds: float = MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return False
        self._last[key] = now
        return True

    def forget(self, key: Hashable) -> None:
        """The next ``allow(key)`` is True (the condition it warned about is over)."""
        self._last.pop(key, None)


def brief(exc: BaseException) -> str:
    """``Type: first line of the message``, for a one-line warning."""
    text = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def patiently(fn: Callable[[], T], what: str, log: logging.Logger,
              transient: Callable[[BaseException], bool], *,
              patience: float | None = None, backoff: Backoff | None = None,
              once: OncePer | None = None,
              sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, retried after each error ``transient`` accepts, with ``backoff`` between
    tries, until it succeeds; with ``patience`` seconds, until the outage has lasted that
    long (then the last error is raised). Logs ``what`` unreachable once a minute (``once``,
    keyed by ``what``) and back once it answers."""
    backoff = backoff or Backoff()
    once = once or OncePer(MINUTE, backoff.clock)
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not transient(exc):
                raise
            delay = backoff.failed()
            lasted = backoff.down_for()
            if patience is not None and lasted >= patience:
                raise
            if once.allow(what):
                log.warning("%s unreachable for %.0f s (%s); retrying", what, lasted,
                            brief(exc))
            sleep(delay)
            continue
        lasted = backoff.succeeded()
        if lasted is not None:
            once.forget(what)
            log.info("%s reachable again after %.0f s", what, lasted)
        return result

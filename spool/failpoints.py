"""Failpoints: named places where a test can make the process die or stall, to prove crash
safety and that a slow step loses nothing.

``SPOOL_FAILPOINTS="load.copy=2,load.after_commit=1"`` makes the process group receive
SIGKILL the 2nd time execution reaches ``failpoint("load.copy")`` (and so on).
``SPOOL_STALLS="read.partition.1=12@3"`` makes the 3rd pass through
``stall("read.partition.1")`` sleep 12 seconds (``@N`` defaults to 1), as a reader stuck on
a slow broker or a bundle starved of CPU would. Unset, each is one dictionary lookup.
Nothing but tests sets the variables.
"""

from __future__ import annotations

import os
import signal
import time

_ARMED: dict[str, int] = {}
_HITS: dict[str, int] = {}
_STALLS: dict[str, tuple[float, int]] = {}  # name → (seconds, on which pass)


def _load() -> None:
    for item in filter(None, os.environ.get("SPOOL_FAILPOINTS", "").split(",")):
        name, _, count = item.partition("=")
        _ARMED[name.strip()] = int(count or 1)
    for item in filter(None, os.environ.get("SPOOL_STALLS", "").split(",")):
        name, _, spec = item.partition("=")
        seconds, _, nth = spec.partition("@")
        _STALLS[name.strip()] = (float(seconds), int(nth or 1))


_load()


def failpoint(name: str) -> None:
    if not _ARMED or name not in _ARMED:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] == _ARMED[name]:
        os.killpg(os.getpgrp(), signal.SIGKILL)


def stall(name: str) -> None:
    if not _STALLS or name not in _STALLS:
        return
    key = f"stall:{name}"
    _HITS[key] = _HITS.get(key, 0) + 1
    seconds, nth = _STALLS[name]
    if _HITS[key] == nth:
        time.sleep(seconds)

"""Failpoints: named places where a test can make the process die, to prove crash safety.

``SPOOL_FAILPOINTS="load.copy=2,load.after_commit=1"`` makes the process group receive
SIGKILL the 2nd time execution reaches ``failpoint("load.copy")`` (and so on). Unset, a
failpoint is one dictionary lookup. Nothing but tests sets the variable.
"""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, int] = {}
_HITS: dict[str, int] = {}


def _load() -> None:
    for item in filter(None, os.environ.get("SPOOL_FAILPOINTS", "").split(",")):
        name, _, count = item.partition("=")
        _ARMED[name.strip()] = int(count or 1)


_load()


def failpoint(name: str) -> None:
    if not _ARMED or name not in _ARMED:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] == _ARMED[name]:
        os.killpg(os.getpgrp(), signal.SIGKILL)

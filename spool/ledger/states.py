"""The batch state machine.

::

    READY ──claim──► LOADING ──loaded──► LOADED
      ▲                │  │
      │   retry later  │  └──terminal error──► FAILED ──retry (by a user)──► READY
      └────────────────┘  (transient error, or a lease that expired)

A transition not in ``ALLOWED`` is a bug, not a state.
"""

from __future__ import annotations

import enum


class BatchState(enum.Enum):
    READY = "READY"
    LOADING = "LOADING"
    LOADED = "LOADED"
    FAILED = "FAILED"


ALLOWED: dict[BatchState, frozenset[BatchState]] = {
    BatchState.READY: frozenset({BatchState.LOADING}),
    BatchState.LOADING: frozenset({BatchState.LOADED, BatchState.READY, BatchState.FAILED}),
    BatchState.FAILED: frozenset({BatchState.READY}),
    BatchState.LOADED: frozenset(),
}


def check_transition(current: BatchState, target: BatchState) -> None:
    if target not in ALLOWED[current]:
        raise ValueError(f"a batch cannot go from {current.value} to {target.value}")

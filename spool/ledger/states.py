"""The batch state machine, and the only place where SQL that moves a batch is written.

::

    READY ──claim──► LOADING ──loaded──► LOADED
      ▲               │ ▲ │
      │  retry later, │ │ └──terminal error──► FAILED ──retry (by a user)──► READY
      │  release      │ │
      └───────────────┘ └── reclaim: the lease expired (its loader died), or the owner
                            claims its own unfinished batches again

A batch is inserted READY (:data:`INITIAL`). Every other state change is a
:class:`Transition`, declared below from :data:`ALLOWED` (a transition the table forbids
cannot be declared: the module does not import) and turned into its ``UPDATE`` by
:meth:`Transition.update`, so the states in the SQL are the states of the table.
tests/unit/test_state_machine.py parses the statements the ledger sends and checks every
(from, to) pair in them against :data:`ALLOWED`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BatchState(enum.Enum):
    READY = "READY"
    LOADING = "LOADING"
    LOADED = "LOADED"
    FAILED = "FAILED"


INITIAL = BatchState.READY

ALLOWED: dict[BatchState, frozenset[BatchState]] = {
    BatchState.READY: frozenset({BatchState.LOADING}),
    BatchState.LOADING: frozenset({BatchState.LOADED, BatchState.READY, BatchState.FAILED,
                                   BatchState.LOADING}),
    BatchState.FAILED: frozenset({BatchState.READY}),
    BatchState.LOADED: frozenset(),
}


def sql_states(states: tuple[BatchState, ...]) -> str:
    """``('READY', 'LOADING')``: an SQL list of states (enum values, never user text)."""
    return "(" + ", ".join(f"'{s.value}'" for s in states) + ")"


@dataclass(frozen=True)
class Transition:
    """A move of batches from any of ``sources`` to ``target``."""

    name: str
    sources: tuple[BatchState, ...]
    target: BatchState

    def __post_init__(self) -> None:
        for source in self.sources:
            if self.target not in ALLOWED[source]:
                raise ValueError(f"transition {self.name}: a batch cannot go from "
                                 f"{source.value} to {self.target.value}")

    def update(self, assignments: str, where: str, from_clause: str = "",
               table: str = "batches") -> str:
        """``UPDATE batches SET state = <target>, <assignments> [FROM ...] WHERE state IN
        (<sources>) AND (<where>)``; ``table`` is the name (or alias) the WHERE uses."""
        from_sql = f" FROM {from_clause}" if from_clause else ""
        return (f"UPDATE batches SET state = '{self.target.value}', {assignments}{from_sql} "
                f"WHERE {table}.state IN {sql_states(self.sources)} AND ({where})")


R, L, D, F = BatchState.READY, BatchState.LOADING, BatchState.LOADED, BatchState.FAILED
CLAIM = Transition("claim", (R, L), L)  # LOADING: an expired lease, or the owner's own
LOADED = Transition("loaded", (L,), D)
RETRY_LATER = Transition("retry later", (L,), R)  # a transient error: due again after a delay
RELEASE = Transition("release", (L,), R)  # claimed but not tried: the warehouse went down
FAIL = Transition("fail", (L,), F)
RETRY_FAILED = Transition("retry failed", (F,), R)  # a person fixed the cause
TRANSITIONS = (CLAIM, LOADED, RETRY_LATER, RELEASE, FAIL, RETRY_FAILED)

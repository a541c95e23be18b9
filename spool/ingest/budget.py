"""How drain mode's ``--max_records`` is spread over a topic's partitions (a pure rule)."""

from __future__ import annotations


def allocate(limit: int, backlog: dict[int, int]) -> dict[int, int]:
    """Split a record budget over partitions in proportion to their backlog (deterministic)."""
    total = sum(backlog.values())
    if total <= limit:
        return dict(backlog)
    share = {p: backlog[p] * limit // total for p in backlog}
    left = limit - sum(share.values())
    for p in sorted(backlog, key=lambda p: (-(backlog[p] * limit % total), p)):
        if left <= 0:
            break
        if share[p] < backlog[p]:
            share[p] += 1
            left -= 1
    return share

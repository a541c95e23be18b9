"""Cutting a tenant's claimed batches into warehouse transactions."""

from __future__ import annotations

from spool.ledger.claims import Claimed


def cut(claimed: list[Claimed], max_rows: int) -> list[list[Claimed]]:
    """Claimed batches (ordered by stream, then sequence) cut into transactions of at most
    ``max_rows`` rows; a stream's batches stay in order across transactions. Where a
    stream's key names change, a new transaction starts: a load plans each stream once,
    so one transaction never holds a stream's upsert and append batches together."""
    out, current, rows = [], [], 0
    keys: dict[str, tuple] = {}  # stream → key names in the current transaction
    for c in claimed:
        if current and (rows + c.row_count > max_rows
                        or keys.get(c.stream, c.key_names) != c.key_names):
            out.append(current)
            current, rows, keys = [], 0, {}
        current.append(c)
        keys[c.stream] = c.key_names
        rows += c.row_count
    if current:
        out.append(current)
    return out


def by_stream(batches: list[Claimed]) -> list[tuple[str, list[Claimed]]]:
    """(stream, its batches in claim order) for each stream, streams in order."""
    out: dict[str, list[Claimed]] = {}
    for c in batches:
        out.setdefault(c.stream, []).append(c)
    return list(out.items())

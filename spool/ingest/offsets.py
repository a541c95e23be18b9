"""Exact offset sets: which Kafka offsets of one partition a part or a batch holds.

A batch's ``[first, last, count]`` per partition cannot prove that a given offset is in it;
the set can. Sets are packed (``pack``) into about a byte per record, stored with the batch
in the ledger (``batch_offsets``, docs/ledger.md) and read back by the offset check
(``spool check offsets``, spool/offset_check.py), which unpacks many at once (``unpack_many``).

The format, version 1: one byte ``0x01``, then unsigned LEB128 varints: the first offset,
then one token per step to the next offsets, ascending, each offset once::

    token even t: one offset, (t >> 1) + 2 after the previous one (a gap of t/2 + 1)
    token odd t:  the (t >> 1) + 1 offsets right after the previous one (a run)

A run of consecutive offsets costs one token of a few bytes whatever its length; a
sparse set (a stream whose records are every 2nd to 65th message of a partition) costs one
byte per offset. An empty set is the version byte alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

VERSION = 1
_HEADER = bytes([VERSION])
_SMALL = 48  # up to this many offsets, plain Python beats numpy's per-call overhead


class BadOffsets(ValueError):
    """A packed set that is not in the format above."""


def pack(offsets: Iterable[int]) -> bytes:
    """The packed set of ``offsets`` (any order, repeats allowed, each >= 0)."""
    values = offsets if isinstance(offsets, (list, tuple, np.ndarray)) else list(offsets)
    if len(values) <= _SMALL:
        return _pack_small(sorted(set(values)))
    a = sorted_unique(np.asarray(values, dtype=np.int64))
    if a[0] < 0:
        raise ValueError(f"a Kafka offset is never negative: {int(a[0])}")
    d = np.diff(a)
    if not d.size:
        return _HEADER + _varints(a.astype(np.uint64))
    # a token starts at each gap and at the first step of each run of steps of 1
    starts = np.empty(d.size, dtype=bool)
    starts[0] = True
    starts[1:] = (d[1:] != 1) | (d[:-1] != 1)
    idx = np.flatnonzero(starts)
    lengths = np.diff(np.append(idx, d.size))
    step = d[idx]
    tokens = np.where(step == 1, 2 * (lengths - 1) + 1, 2 * (step - 2))
    return _HEADER + _varints(np.concatenate((a[:1], tokens)).astype(np.uint64))


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """``a`` ascending, each value once (np.unique hashes; a sort is faster on the mostly
    ascending offsets of a part or a sweep, and nothing at all when they already are)."""
    if a.size < 2:
        return a
    step = np.diff(a)
    if (step > 0).all():
        return a
    if (step >= 0).all():
        return a[np.concatenate(([True], step != 0))]
    a = np.sort(a, kind="stable")
    return a[np.concatenate(([True], a[1:] != a[:-1]))]


def _pack_small(ordered: Sequence[int]) -> bytes:
    out = bytearray(_HEADER)
    if not ordered:
        return bytes(out)
    if ordered[0] < 0:
        raise ValueError(f"a Kafka offset is never negative: {ordered[0]}")
    prev = ordered[0]
    _varint(out, prev)
    run = 0
    for offset in ordered[1:]:
        if offset == prev + 1:
            run += 1
        else:
            if run:
                _varint(out, 2 * run - 1)
                run = 0
            _varint(out, 2 * (offset - prev - 2))
        prev = offset
    if run:
        _varint(out, 2 * run - 1)
    return bytes(out)


def _varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _varints(values: np.ndarray) -> bytes:
    """LEB128 of each uint64 value, in order."""
    rows = np.zeros((values.size, 10), dtype=np.uint8)
    used = np.zeros((values.size, 10), dtype=bool)
    rest = values.copy()
    used[:, 0] = True
    width = 10
    for k in range(10):
        low = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
        more = rest > 0
        rows[:, k] = low | (more.astype(np.uint8) << 7)
        if not more.any():
            width = k + 1
            break
        used[:, k + 1] = more
    return rows[:, :width][used[:, :width]].tobytes()


def unpack(blob: bytes) -> np.ndarray:
    """The offsets of one packed set, ascending (int64)."""
    return unpack_many([blob])


def unpack_many(blobs: Sequence[bytes]) -> np.ndarray:
    """The offsets of many packed sets, one set after the other (int64): each set in
    ascending order; the whole not sorted."""
    if not len(blobs):
        return np.zeros(0, dtype=np.int64)
    sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    heads = np.cumsum(sizes) - sizes
    if (sizes == 0).any() or (raw[heads[sizes > 0]] != VERSION).any():
        bad = next(bytes(b[:8]) for b in blobs if not len(b) or b[0] != VERSION)
        raise BadOffsets(f"not a packed offset set of version {VERSION}: {bad!r}")
    full = sizes > 1
    if (raw[(heads + sizes - 1)[full]] & 0x80).any():
        raise BadOffsets("a packed offset set ends inside a number")
    keep = np.ones(raw.size, dtype=bool)
    keep[heads] = False
    buf = raw[keep]  # the numbers, the version bytes left out
    if not buf.size:
        return np.zeros(0, dtype=np.int64)
    set_starts = np.zeros(buf.size, dtype=bool)  # the bytes where a set's numbers begin
    set_starts[(heads - np.arange(sizes.size))[full]] = True
    if buf.max() < 0x80:  # every number one byte: the usual sparse set
        values = buf.astype(np.int64)
        opens = set_starts
    else:
        last = np.flatnonzero(buf < 0x80)
        first = np.empty_like(last)
        first[0] = 0
        first[1:] = last[:-1] + 1
        # each byte's place in its number: the numbers' bits do not overlap, so sum is or
        place = np.arange(buf.size, dtype=np.int64) - np.repeat(first, last - first + 1)
        if place.max() > 9:
            raise BadOffsets("a packed offset set holds a number over 64 bits")
        bits = (buf & 0x7F).astype(np.uint64) << (np.uint64(7) * place.astype(np.uint64))
        values = np.add.reduceat(bits, first).astype(np.int64)
        opens = set_starts[first]  # the first number of a set is its first offset
    odd = (values & 1).astype(bool)
    odd[opens] = False
    if odd.any():  # runs: a token stands for several offsets
        count = np.where(odd, (values >> 1) + 1, 1)
        step = np.where(odd, 1, (values >> 1) + 2)
        step[opens] = 0
        at_open = (np.cumsum(count) - count)[opens]
        step = np.repeat(step, count)
    else:
        step = (values >> 1) + 2
        step[opens] = 0
        at_open = np.flatnonzero(opens)
    total = np.cumsum(step)
    base = values[opens] - total[at_open]
    return total + np.repeat(base, np.diff(np.append(at_open, total.size)))


def merge(blobs: Sequence[bytes]) -> bytes:
    """One packed set holding every offset of ``blobs``."""
    return combine(blobs)[3]


def combine(blobs: Sequence[bytes]) -> tuple[int, int, int, bytes]:
    """(first, last, how many, packed) of the union of ``blobs``; (-1, -1, 0, empty set)
    when it is empty."""
    values = sorted_unique(unpack_many(blobs))
    if not values.size:
        return -1, -1, 0, _HEADER
    packed = blobs[0] if len(blobs) == 1 else pack(values)
    return int(values[0]), int(values[-1]), int(values.size), packed


def span(blob: bytes) -> tuple[int, int, int]:
    """(first, last, how many) offsets of a packed set; (-1, -1, 0) when it is empty."""
    return combine([blob])[:3]

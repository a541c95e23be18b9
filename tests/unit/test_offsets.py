"""Exact offset sets (spool.ingest.offsets) and how parts keep them."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from spool.ingest import batchfile, offsets
from spool.ingest.parts import Part
from spool.ingest.shape import shape
from spool.ingest.writer import assemble, merge_parts


def shapes(seed: int) -> list[list[int]]:
    """Offset lists of every shape a part sees: empty, one, runs, strides, huge, mixed."""
    rng = random.Random(seed)
    out = [[], [0], [7], [2**62], list(range(100)), list(range(5, 5000, 50)),
           list(range(0, 10**6, 3)), [1, 2, 3, 5, 8, 13, 21, 34, 10**12, 10**12 + 1]]
    for n in (2, 47, 48, 49, 200, 5000):
        x, mixed = rng.randrange(10**9), []
        for _ in range(n):
            x += rng.choice([1, 1, 1, 2, 3, 65, 66, 67, 130, 10**5])
            mixed.append(x)
        out.append(mixed)
        out.append([rng.randrange(10 * n) for _ in range(n)])  # unordered, repeats
    return out


@pytest.mark.parametrize("values", shapes(1), ids=lambda v: f"{len(v)}")
def test_a_set_comes_back_sorted_and_once_each(values):
    packed = offsets.pack(values)
    assert offsets.unpack(packed).tolist() == sorted(set(values))
    # the numpy and the plain-Python packers write the same bytes
    ordered = sorted(set(values))
    assert offsets._pack_small(ordered) == offsets.pack(np.array(ordered, dtype=np.int64))


def test_sizes_are_what_the_format_promises():
    assert offsets.pack([]) == bytes([offsets.VERSION])
    assert len(offsets.pack(range(10**6))) <= 6  # a run costs one token
    assert len(offsets.pack(range(0, 50_000, 50))) == 1 + 1 + 999  # a byte per sparse offset
    assert offsets.span(offsets.pack([9, 3, 4])) == (3, 9, 3)
    assert offsets.span(offsets.pack([])) == (-1, -1, 0)


def test_many_sets_unpack_at_once_and_merge():
    sets = shapes(2)
    got = offsets.unpack_many([offsets.pack(s) for s in sets])
    assert got.tolist() == [o for s in sets for o in sorted(set(s))]
    merged = offsets.merge([offsets.pack(s) for s in sets])
    assert offsets.unpack(merged).tolist() == sorted({o for s in sets for o in s})


@pytest.mark.parametrize("blob", [b"", b"\x02\x00", b"\x01\x85", b"\x01" + b"\xff" * 10 + b"\x01"])
def test_a_damaged_set_is_refused(blob):
    with pytest.raises(offsets.BadOffsets):
        offsets.unpack(blob)


def test_a_negative_offset_is_refused():
    with pytest.raises(ValueError, match="never negative"):
        offsets.pack([-1, 3])
    with pytest.raises(ValueError, match="never negative"):
        offsets.pack(list(range(-1, 100)))


def _part(tp_offsets: dict) -> Part:
    part = Part()
    for tp, offs in tp_offsets.items():
        for o in offs:
            part.rows.extend(shape({"id": o}, rid=f"{tp}/{o}", sequence=o, received_at_ms=0))
            part.note_record(tp, o, 10, 1_000)
    return part


def test_parts_keep_exact_offsets_through_pickles_and_merges():
    a = _part({"q/0": [5, 7, 9], "q/1": [1]})
    b = _part({"q/0": [6, 8, 100]})
    back = [Part.loads(p.dumps()) for p in (a, b)]
    assert back[0].offset_log == {} and len(back[0].offset_sets["q/0"]) == 1
    merged = merge_parts(back)
    got = merged.packed_offsets()
    assert {tp: (f, last, n, e) for tp, (f, last, n, _p, e) in got.items()} == {
        "q/0": (5, 100, 6, True), "q/1": (1, 1, 1, True)}
    assert offsets.unpack(got["q/0"][3]).tolist() == [5, 6, 7, 8, 9, 100]
    assert merged.offsets == {"q/0": [5, 100, 6], "q/1": [1, 1, 1]}


def test_a_batch_record_carries_the_sets(tmp_path):
    part = _part({"q/0": [3, 4, 40]})
    _uri, _data, record = assemble("acme", "orders", 0, 60_000, 0, part, str(tmp_path))
    first, last, n, packed, exact = record.exact_offsets["q/0"]
    assert (first, last, n, exact) == (3, 40, 3, True)
    assert offsets.unpack(packed).tolist() == [3, 4, 40]


def _old_pickle(part: Part) -> bytes:
    """A part as a Spool before offset sets pickled it: no offset_log, offset_sets."""
    part.seal()
    meta = {k: v for k, v in part.__dict__.items()
            if k not in ("rows", "table", "offset_log", "offset_sets", "offsets_inexact")}
    return pickle.dumps((meta, batchfile.to_ipc(part.table)))


def test_a_part_pickled_before_offset_sets_loads_exact_where_it_can():
    dense = Part.loads(_old_pickle(_part({"q/0": [10, 11, 12]})))
    assert dense.offsets_inexact is None
    assert offsets.unpack(dense.packed_offsets()["q/0"][3]).tolist() == [10, 11, 12]
    # a sparse span cannot be told apart from its holes: assumed whole, marked not exact
    sparse = Part.loads(_old_pickle(_part({"q/0": [10, 20], "q/1": [4]})))
    assert sparse.offsets_inexact == {"q/0": [10, 20]}
    merged = merge_parts([sparse, _part({"q/0": [30]}).seal()])
    got = merged.packed_offsets()
    assert got["q/0"][:3] == (10, 30, 12) and got["q/0"][4] is False
    assert got["q/1"][4] is True


@pytest.mark.parametrize("seed", range(12))
def test_gaps_are_what_no_set_holds_whatever_the_chunks(seed, monkeypatch):
    """The check's sweep (spool.offset_check._Gaps) against a plain set difference: sets in
    order of their first offset, wide ones reaching past later ones, any chunk size; by
    bitmap and (odd seeds) by sorting."""
    from spool import offset_check
    from spool.offset_check import _Gaps

    if seed % 2:
        monkeypatch.setattr(offset_check, "BITMAP_MIN", -10**9)

    rng = random.Random(seed)
    sets = []
    for _ in range(rng.randrange(0, 40)):
        lo = rng.randrange(0, 400)
        width = rng.choice([1, 3, 20, 150])
        sets.append(sorted(rng.sample(range(lo, lo + width), rng.randrange(1, width + 1))))
    rows = sorted((s[0], s[-1], offsets.pack(s), True) for s in sets)
    start, stop = rng.randrange(0, 100), rng.randrange(100, 500)
    covered = {o for s in sets for o in s}
    want = [o for o in range(start, stop) if o not in covered]
    found = _Gaps(start, stop)
    size = rng.choice([1, 2, 5, 1000])
    for i in range(0, len(rows), size):
        found.add(rows[i:i + size])
    lo, hi = found.finish()
    assert [o for a, b in zip(lo.tolist(), hi.tolist(), strict=True)
            for o in range(a, b + 1)] == want
    assert all(b + 1 < a for a, b in zip(lo[1:].tolist(), hi[:-1].tolist(), strict=True))

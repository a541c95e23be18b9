"""The batch cutting rule (rows, bytes, stream meta) and its Beam step in drain mode."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from transforms.batching import BatchByTable, BatchConfig, cut


def test_cut_closes_at_rows_bytes_and_meta_changes():
    parts = [(40, 10, "m1", b"a"), (40, 10, "m1", b"b"), (40, 10, "m1", b"c"),
             (5, 500, "m1", b"d"), (1, 1, "m2", b"e"), (1, 1, "m2", b"f")]
    assert list(cut(parts, max_rows=80, max_bytes=400)) == [[b"a", b"b"], [b"c", b"d"],
                                                            [b"e", b"f"]]


def test_drain_batches_per_key_and_window():
    cfg = BatchConfig(window_seconds=60, max_rows=100, max_bytes=10**9)
    with TestPipeline() as p:
        parts = p | beam.Create([
            TimestampedValue((("t", "s"), (60, 1, "m", b"p1")), 1),
            TimestampedValue((("t", "s"), (60, 1, "m", b"p2")), 2),
            TimestampedValue((("t", "s"), (10, 1, "m", b"p3")), 3),
            TimestampedValue((("t", "s"), (5, 1, "m", b"p4")), 61),
            TimestampedValue((("u", "s"), (5, 1, "m", b"p5")), 4),
        ]).with_output_types(tuple[tuple[str, str], tuple[int, int, str, bytes]])
        out = parts | BatchByTable(cfg, streaming=False)
        assert_that(out, equal_to([
            (("t", "s"), (0, 0, [b"p1", b"p2"], False)),
            (("t", "s"), (0, 1, [b"p3"], False)),
            (("t", "s"), (60_000, 0, [b"p4"], False)),
            (("u", "s"), (0, 0, [b"p5"], False)),
        ]))

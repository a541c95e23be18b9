"""The streaming batcher closes batches on count, on meta change and at the window's end."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to_per_window
from apache_beam.transforms.window import IntervalWindow

from transforms.batching import BatchByTable, BatchConfig

KEY = ("t", "s")


def test_streaming_batches_close_by_rows_meta_and_watermark():
    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([(KEY, (60, 1, "m", b"a"))], event_timestamp=1)
              .add_elements([(KEY, (60, 1, "m", b"b"))], event_timestamp=2)   # 120 rows: close
              .add_elements([(KEY, (10, 1, "m", b"c"))], event_timestamp=3)
              .add_elements([(KEY, (10, 1, "x", b"d"))], event_timestamp=4)   # new meta: close
              .advance_watermark_to(59)
              .add_elements([(KEY, (1, 1, "x", b"e"))], event_timestamp=61)
              .advance_watermark_to(60)                                      # window 0 ends
              .advance_watermark_to(120)
              .advance_watermark_to_infinity())
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        out = (p | stream.with_output_types(tuple[tuple[str, str], tuple[int, int, str, bytes]])
               | BatchByTable(BatchConfig(window_seconds=60, max_rows=100, max_bytes=10**9),
                              streaming=True))
        assert_that(out, equal_to_per_window({
            IntervalWindow(0, 60): [(KEY, (0, 0, [b"a", b"b"], False)),
                                    (KEY, (0, 1, [b"c"], False)),
                                    (KEY, (0, 2, [b"d"], False))],
            IntervalWindow(60, 120): [(KEY, (60_000, 0, [b"e"], False))],
        }))


def test_a_part_that_reaches_its_window_after_it_closed_is_batched_in_a_later_late_pane():
    # the watermark passes window 0's end (its timer fires and closes the first batch), then
    # two more parts of window 0 arrive, as a split bundle's rest or a late read delivers them
    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([(KEY, (1, 1, "m", b"on-time"))], event_timestamp=1)
              .advance_watermark_to(70)                                      # window 0 closed
              .add_elements([(KEY, (1, 1, "m", b"late-1"))], event_timestamp=5)
              .add_elements([(KEY, (1, 1, "m", b"late-2"))], event_timestamp=59)
              .add_elements([(KEY, (1, 1, "m", b"next-window"))], event_timestamp=61)
              .advance_watermark_to(130)  # window 0's state is collected (lateness 5 s)
              .add_elements([(("t", "other"), (1, 1, "m", b"late-fresh-key"))],
                            event_timestamp=30)
              .advance_watermark_to(140)
              .advance_watermark_to_infinity())
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        out = (p | stream.with_output_types(tuple[tuple[str, str], tuple[int, int, str, bytes]])
               | BatchByTable(BatchConfig(window_seconds=60, max_rows=100, max_bytes=10**9,
                                          allowed_lateness_seconds=5), streaming=True))
        assert_that(out, equal_to_per_window({
            # the re-set timer is already due: each late part closes at the next step
            IntervalWindow(0, 60): [(KEY, (0, 0, [b"on-time"], False)),
                                    (KEY, (0, 1, [b"late-1"], True)),
                                    (KEY, (0, 2, [b"late-2"], True)),
                                    # a key's first part: no timer of its own fired yet
                                    (("t", "other"), (0, 0, [b"late-fresh-key"], False))],
            IntervalWindow(60, 120): [(KEY, (60_000, 0, [b"next-window"], False))],
        }))

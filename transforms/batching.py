"""BatchByTable: parts keyed by (tenant, stream) → closed batches.

The rule: event-time fixed windows of ``window_seconds``; within a (key, window), parts are
collected in arrival order and a batch closes at ``max_rows`` rows or ``max_bytes`` bytes
(as soon as a part takes it there), or when the watermark passes the window's end, whichever
comes first. A batch also closes early when the stream's meta (key names, Singer schema)
changes, so a batch never mixes two.

Streaming (unbounded input): a stateful DoFn keeps the open batch in state and closes it on
count or on an event-time timer at the window's end. State and the timer exist only for keys
that have data in an open window: an idle stream has no state, no timer, no file and no
thread. Event-time timers and counts, rather than GroupIntoBatches or processing-time timers,
keep this runnable on Prism, Flink and Dataflow.

Late parts (the lateness rule): a part may reach its window after the window's timer fired:
a runner that splits a bundle hands the rest back to be processed later (Prism does, with
timers in it: apache/beam#35771), or a reader's watermark ran ahead. Such a part is never
dropped: it opens a later pane of its window, whose timer is set again at the window's end
(already passed, so it fires at the next watermark step), and that batch is marked late, so
its records are counted (``spool.records_late``, the batch's ``records_late``). A part is late
when its key's window timer has already fired. A part that only waited in the step's queue
while the watermark passed its window is not late: its key's timer has not fired, and Prism
runs a key's queued parts before that key's timer. The window keeps its state
``allowed_lateness`` past its end; a late part after that finds no state and opens the window
afresh (pane 0 again, a distinct batch id): still written, but no longer known to be late.
Runners that drop data later than the allowed lateness (Flink, Dataflow) must be given an
``--allowed_lateness_seconds`` longer than any stall they may see.

On Prism the job runs with the experiment ``prism_disable_sdf_split``: Prism's dynamic split
of a bundle of a stateful step releases the rest's keys while the first part still runs, so
one key's state can be written by two bundles at once, and a bag cleared by a closing timer
in one can swallow a part appended in the other (a lost part; apache/beam#35771 is the same
split).

Drain (bounded input): every window is complete when the input ends, so a GroupByKey per
(key, window) followed by the same cutting rule gives the same batches without per-element
state traffic (Beam's in-process runner weighs every state value it caches, which costs
about half a millisecond per access).

Output: ``((tenant, stream), (window_start_ms, pane, [part blobs], late))``, where ``pane``
counts the batches closed so far in that (key, window) and ``late`` says that every part of
the batch reached the window after it had closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import BytesCoder, StrUtf8Coder, TupleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import Duration


@dataclass(frozen=True)
class BatchConfig:
    window_seconds: float = 60.0
    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    allowed_lateness_seconds: float = 60.0  # the job passes one window by default


PART_CODER = TupleCoder([VarIntCoder(), VarIntCoder(), BytesCoder()])
# (rows, bytes, meta key, next pane, flags) of the window's batch: one state value, one read
# and one write per element (each state access has a cost on the SDK side)
OPEN_CODER = TupleCoder([VarIntCoder(), VarIntCoder(), StrUtf8Coder(), VarIntCoder(),
                         VarIntCoder()])
ARMED = 1  # the close timer is set: it has not fired since the last part came
LATE = 2  # the open batch's parts came after the window's timer fired


class _BatchFn(beam.DoFn):
    PARTS = BagStateSpec("parts", PART_CODER)
    OPEN = ReadModifyWriteStateSpec("open", OPEN_CODER)
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, cfg: BatchConfig) -> None:
        self.cfg = cfg
        self.late_parts = Metrics.counter("spool", "parts_late")

    def process(
        self,
        element,
        window=beam.DoFn.WindowParam,
        parts=beam.DoFn.StateParam(PARTS),
        state=beam.DoFn.StateParam(OPEN),
        close=beam.DoFn.TimerParam(CLOSE),
    ):
        key, (n_rows, n_bytes, meta_key, blob) = element
        current = state.read()
        if current is None:
            rows, size, meta, pane, flags = 0, 0, meta_key, 0, 0
        else:
            rows, size, meta, pane, flags = current
        if not flags & ARMED:
            # the window's first part, or the first since its timer fired (a late part):
            # the timer is set again; at a time the watermark has passed, it fires at once
            late = current is not None
            close.set(window.max_timestamp())
            flags = ARMED | (LATE if late else 0)
        if flags & LATE:
            self.late_parts.inc()
        if (rows or size) and meta != meta_key:
            yield from self._close(key, window, parts, pane, flags)
            rows, size, pane = 0, 0, pane + 1
        parts.add((n_rows, n_bytes, blob))
        rows, size = rows + n_rows, size + n_bytes
        if rows >= self.cfg.max_rows or size >= self.cfg.max_bytes:
            yield from self._close(key, window, parts, pane, flags)
            rows, size, pane = 0, 0, pane + 1
        state.write((rows, size, meta_key, pane, flags))

    @on_timer(CLOSE)
    def on_close(
        self,
        key=beam.DoFn.KeyParam,
        window=beam.DoFn.WindowParam,
        parts=beam.DoFn.StateParam(PARTS),
        state=beam.DoFn.StateParam(OPEN),
    ):
        current = state.read()
        if current is None:
            return
        rows, size, meta, pane, flags = current
        if rows or size:  # rows or bytes still open
            yield from self._close(key, window, parts, pane, flags)
            pane += 1
        # the timer is spent: a part that still comes opens a later, late pane
        state.write((0, 0, meta, pane, 0))

    @staticmethod
    def _close(key, window, parts, pane, flags):
        blobs = [blob for _, _, blob in parts.read()]
        parts.clear()
        if blobs:
            yield key, (window.start.micros // 1000, pane, blobs, bool(flags & LATE))


def cut(parts, max_rows: int, max_bytes: int):
    """Batches of a complete (key, window): lists of part blobs, cut by the rule above."""
    batch: list[bytes] = []
    rows = size = 0
    meta = None
    for n_rows, n_bytes, meta_key, blob in parts:
        if batch and meta_key != meta:
            yield batch
            batch, rows, size = [], 0, 0
        batch.append(blob)
        meta = meta_key
        rows += n_rows
        size += n_bytes
        if rows >= max_rows or size >= max_bytes:
            yield batch
            batch, rows, size = [], 0, 0
    if batch:
        yield batch


class _CutGroupFn(beam.DoFn):
    def __init__(self, cfg: BatchConfig) -> None:
        self.cfg = cfg

    def process(self, element, window=beam.DoFn.WindowParam):
        key, parts = element
        # arrival order is not defined after a shuffle: sort for replay-stable batches, parts
        # of one meta (key names, schema) together so a change of meta cuts only once
        ordered = sorted(parts, key=lambda p: (p[2], p[3]))
        for pane, blobs in enumerate(cut(ordered, self.cfg.max_rows, self.cfg.max_bytes)):
            yield key, (window.start.micros // 1000, pane, blobs, False)


BATCH_TYPE = tuple[tuple[str, str], tuple[int, int, list[bytes], bool]]


class BatchByTable(beam.PTransform):
    def __init__(self, cfg: BatchConfig, streaming: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.streaming = streaming

    def expand(self, parts):
        if self.streaming:
            # the window's state is kept this long after its end, so a late part finds its
            # pane count; no step of Spool drops a part for lateness (the module docstring)
            windowed = parts | "Window" >> beam.WindowInto(
                FixedWindows(self.cfg.window_seconds),
                allowed_lateness=Duration(seconds=self.cfg.allowed_lateness_seconds))
        else:
            windowed = parts | "Window" >> beam.WindowInto(FixedWindows(self.cfg.window_seconds))
        if self.streaming:
            return windowed | "CloseBatches" >> beam.ParDo(
                _BatchFn(self.cfg)).with_output_types(BATCH_TYPE)
        return (windowed
                | "GroupWindow" >> beam.GroupByKey()
                | "CutBatches" >> beam.ParDo(_CutGroupFn(self.cfg)).with_output_types(
                    BATCH_TYPE))

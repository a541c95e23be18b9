"""WriteBatches: closed batches → Parquet files on the spool location + READY ledger rows.

The rules and their order are spool.ingest.writer.BatchWriter's (file, then durable, then
the ledger row, all replay-safe); this step adds the Beam side: the bundle's files are made
durable and recorded at the end of the bundle, and only then one marker goes out, saying
which parts of which takes the bundle's batches hold (``(topic, {take id: bitmask})``);
CommitOffsets waits for those before it lets a partition's committed offset pass their
records (spool.ingest.progress). A late batch (every part of it reached its window after
the window closed) is written like any other, and its records are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from spool.ingest.parts import Part
from spool.ingest.writer import BatchWriter
from spool.ledger.store import Ledger
from spool.objectstore import S3Config
from transforms.filesystems import object_store


@dataclass(frozen=True)
class WriteConfig:
    topic: str
    spool_location: str
    ledger_dsn: str
    window_seconds: float
    compression: str = "snappy"
    s3: S3Config = field(default_factory=S3Config)


class _WriteBatchFn(beam.DoFn):
    def __init__(self, cfg: WriteConfig) -> None:
        self.cfg = cfg
        self.batches = Metrics.counter("spool", "batches_written")
        self.rows = Metrics.counter("spool", "rows_written")
        self.file_bytes = Metrics.counter("spool", "bytes_written")
        self.batch_rows = Metrics.distribution("spool", "batch_rows")
        self.late = Metrics.counter("spool", "records_late")

    def setup(self):
        self._ledger = Ledger(self.cfg.ledger_dsn, application_name="spool-job")
        self._store = object_store(self.cfg.s3)

    def start_bundle(self):
        self._writer = BatchWriter(self._store, self._ledger, self.cfg.spool_location,
                                   int(self.cfg.window_seconds * 1000), self.cfg.compression)
        self._takes: dict[str, int] = {}  # take id → parts of it in this bundle's batches

    def process(self, element):
        (tenant, stream), (window_start_ms, pane, blobs, late) = element
        record, merged = self._writer.add(tenant, stream, window_start_ms, pane,
                                          [Part.loads(b) for b in blobs], late=late)
        for take_id, mask in (merged.takes or {}).items():
            self._takes[take_id] = self._takes.get(take_id, 0) | mask
        self.batches.inc()
        self.rows.inc(record.row_count)
        self.file_bytes.inc(record.file_bytes)
        self.batch_rows.update(record.row_count)
        if late:
            self.late.inc(record.record_count)

    def finish_bundle(self):
        # steps 2 and 3 (durable files, READY rows), then the marker: CommitOffsets may now
        # pass these parts' records
        self._writer.flush()
        if self._takes:
            yield WindowedValue((self.cfg.topic, self._takes), MIN_TIMESTAMP, [GlobalWindow()])
        self._takes = {}

    def teardown(self):
        if getattr(self, "_ledger", None) is not None:
            self._ledger.close()


class WriteBatches(beam.PTransform):
    def __init__(self, cfg: WriteConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, batches):
        # batches leave their windows here: a bundle's one marker covers batches of any
        # window, and CommitOffsets keeps its bookkeeping in the global window
        return (batches
                | "Unwindow" >> beam.WindowInto(GlobalWindows())
                | "WriteAndRecord" >> beam.ParDo(_WriteBatchFn(self.cfg)))

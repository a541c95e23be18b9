"""WriteBatches: closed batches → Parquet files on the spool location + READY ledger rows.

The rules and their order are spool.ingest.writer.BatchWriter's (file, then durable, then
the ledger row, all replay-safe); this step adds the Beam side: the bundle's files are made
durable and recorded at the end of the bundle, and only then one marker per batch goes out,
which CommitOffsets waits for before it lets a partition's committed offset pass the
batch's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from spool.ingest.parts import Part
from spool.ingest.writer import BatchWriter
from spool.ledger.store import Ledger
from spool.objectstore import S3Config
from transforms.filesystems import object_store


@dataclass(frozen=True)
class WriteConfig:
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

    def setup(self):
        self._ledger = Ledger(self.cfg.ledger_dsn, application_name="spool-job")
        self._store = object_store(self.cfg.s3)

    def start_bundle(self):
        self._writer = BatchWriter(self._store, self._ledger, self.cfg.spool_location,
                                   int(self.cfg.window_seconds * 1000), self.cfg.compression)
        self._windows: dict[str, object] = {}  # batch id → its window, for the markers

    def process(self, element, window=beam.DoFn.WindowParam):
        (tenant, stream), (window_start_ms, pane, blobs) = element
        record = self._writer.add(tenant, stream, window_start_ms, pane,
                                  [Part.loads(b) for b in blobs])
        self._windows[record.batch_id] = window
        self.batches.inc()
        self.rows.inc(record.row_count)
        self.file_bytes.inc(record.file_bytes)
        self.batch_rows.update(record.row_count)

    def finish_bundle(self):
        for record in self._writer.flush():
            window = self._windows[record.batch_id]
            yield WindowedValue(record.batch_id, window.max_timestamp(), [window])
        self._windows = {}

    def teardown(self):
        if getattr(self, "_ledger", None) is not None:
            self._ledger.close()


class WriteBatches(beam.PTransform):
    def __init__(self, cfg: WriteConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, batches):
        return batches | "WriteAndRecord" >> beam.ParDo(_WriteBatchFn(self.cfg)).with_output_types(
            str)

"""WriteBatches: closed batches → Parquet files on the spool location + READY ledger rows.

The order is the contract (STYLE 8):

1. write the file under its content-derived name (atomically visible; a retry rewrites the
   same object);
2. record the batch in the ledger (state READY; an id already there is left alone), for all
   batches of the bundle in one transaction at the end of the bundle;
3. only then emit one marker per batch, which CommitOffsets waits for before it lets a
   partition's committed offset pass the batch's records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from spool.ledger import Ledger
from spool.parts import Part
from spool.writer import assemble, merge_parts
from transforms.objectstore import ObjectStore, S3Config


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
        self._store = ObjectStore(self.cfg.s3)

    def start_bundle(self):
        self._pending: list = []

    def process(self, element, window=beam.DoFn.WindowParam):
        (tenant, stream), (window_start_ms, pane, blobs) = element
        part: Part = merge_parts([Part.loads(b) for b in blobs])
        uri, data, record = assemble(
            tenant, stream, window_start_ms, int(self.cfg.window_seconds * 1000), pane, part,
            self.cfg.spool_location, batched_at_ms=int(time.time() * 1000),
            compression=self.cfg.compression)
        self._store.put_atomic(uri, data, durable=False)  # flushed in finish_bundle
        self._pending.append((record, window))
        self.batches.inc()
        self.rows.inc(record.row_count)
        self.file_bytes.inc(record.file_bytes)
        self.batch_rows.update(record.row_count)

    def finish_bundle(self):
        if not self._pending:
            return
        records = [record for record, _ in self._pending]
        self._store.make_durable([r.uri for r in records])
        self._ledger.record_batches(records)
        for record, window in self._pending:
            yield WindowedValue(record.batch_id, window.max_timestamp(), [window])
        self._pending = []

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

"""DecodeAndShape: chunks of raw records → keyed parts, plus read positions for commits.

Per-record work (decode, validate, shape) is plain Python in ``spool.ingest.chunks``; this DoFn
collects the parts of a whole bundle and emits one element per (tenant, stream, window) at
the end of the bundle (or earlier once ``flush_rows`` rows are buffered), so Beam's
per-element cost is paid per part, not per record.

Outputs:

* main: ``((tenant, stream), (rows, bytes, meta_key, blob))`` timestamped at the part's
  first record, where ``blob`` is the pickled :class:`spool.ingest.parts.Part`;
* ``positions``: ``((topic, partition), next_offset)`` per chunk, timestamped at the chunk's
  last record, for CommitOffsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from spool.ingest.chunks import ChunkShaper
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.directory import Directory, MapDirectory
from spool.ledger.maps import MapStore
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger

POSITIONS = "positions"
# ((tenant, stream), (rows, bytes, meta key, pickled part))
PART_TYPE = tuple[tuple[str, str], tuple[int, int, str, bytes]]


@dataclass(frozen=True)
class ShapeConfig:
    ledger_dsn: str
    window_seconds: float
    rules: DecodeRules = DecodeRules()
    flush_rows: int = 200_000
    part_max_rows: int = 25_000
    part_max_bytes: int = 16 * 1024 * 1024
    tenant_refresh_seconds: float = 5.0


class _DecodeShapeFn(beam.DoFn):
    def __init__(self, cfg: ShapeConfig) -> None:
        self.cfg = cfg
        self.records_read = Metrics.counter("spool", "records_read")
        self.parts_out = Metrics.counter("spool", "parts")

    def setup(self):
        self._ledger = Ledger(self.cfg.ledger_dsn, application_name="spool-job")
        registry = Registry(self._ledger)
        directory = Directory(registry, self.cfg.tenant_refresh_seconds)
        decoder = Decoder(self.cfg.rules, directory.is_tenant, directory.stream_keys)
        maps = MapDirectory(MapStore(self._ledger).versions, self.cfg.tenant_refresh_seconds)
        self._shaper = ChunkShaper(decoder, directory, int(self.cfg.window_seconds * 1000),
                                   registry.save_tenant_state,
                                   part_max_rows=self.cfg.part_max_rows,
                                   part_max_bytes=self.cfg.part_max_bytes, maps=maps)

    def start_bundle(self):
        self._shaper.take_parts()

    def process(self, chunk):
        topic, partition, floor_ms, records = chunk
        last_event_ms = self._shaper.add_chunk(topic, partition, floor_ms, records)
        self.records_read.inc(len(records))
        yield beam.pvalue.TaggedOutput(
            POSITIONS, beam.window.TimestampedValue(
                ((topic, partition), records[-1].offset + 1),
                Timestamp(micros=last_event_ms * 1000)))
        if self._shaper.rows >= self.cfg.flush_rows:
            for key, value, ts in self._take():
                yield beam.window.TimestampedValue((key, value), ts)

    def finish_bundle(self):
        for key, value, ts in self._take():
            yield WindowedValue((key, value), ts, [GlobalWindow()])

    def _take(self):
        stats = self._shaper.take_stats()
        for code, n in (stats.rejected or {}).items():
            Metrics.counter("spool.rejected", code).inc(n)
        for (tenant, stream, version), n in (stats.filtered or {}).items():
            # records a stream map's filter dropped, by map version: never silently gone
            Metrics.counter("spool.filtered", f"{tenant}/{stream}/v{version}").inc(n)
        for (tenant, stream, _window, _keys), part in self._shaper.take_parts():
            self.parts_out.inc()
            value = (part.n_rows, part.bytes, part.meta_key(), part.dumps())
            yield (tenant, stream), value, Timestamp(micros=part.min_event_ms * 1000)

    def teardown(self):
        if getattr(self, "_ledger", None) is not None:
            self._ledger.close()


class DecodeAndShape(beam.PTransform):
    def __init__(self, cfg: ShapeConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, chunks):
        return chunks | "DecodeShape" >> beam.ParDo(_DecodeShapeFn(self.cfg)).with_output_types(
            PART_TYPE).with_outputs(POSITIONS, main="parts")

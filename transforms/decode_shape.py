"""DecodeAndShape: chunks of raw records → keyed parts, plus read positions for commits.

Per-record work (decode, validate, shape) is plain Python in ``spool.ingest.chunks``; this DoFn
collects the parts of a whole bundle and emits one element per (tenant, stream, window) at
the end of the bundle (or earlier once ``flush_rows`` rows are buffered), so Beam's
per-element cost is paid per part, not per record.

Outputs:

* main: ``((tenant, stream), (rows, bytes, meta_key, blob))`` timestamped at the part's
  first record, where ``blob`` is the pickled :class:`spool.ingest.parts.Part`;
* ``positions``: one element per *take* (the parts emitted together, and the chunks whose
  records they hold): ``(topic, (take_id, [(partition, start, stop)], {partition: origin},
  parts))``, for CommitOffsets (spool.ingest.progress). Each part of the take carries
  ``takes = {take_id: 1 << its index}``.
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
        maps = MapDirectory(MapStore(self._ledger).read)
        self._shaper = ChunkShaper(decoder, directory, int(self.cfg.window_seconds * 1000),
                                   registry.save_tenant_state,
                                   part_max_rows=self.cfg.part_max_rows,
                                   part_max_bytes=self.cfg.part_max_bytes, maps=maps)

    def start_bundle(self):
        self._shaper.take_parts()
        self._chunks: list[tuple] = []  # (topic, partition, origin, start, stop, floor)

    def process(self, chunk):
        topic, partition, floor_ms, records, (origin, start, stop) = chunk
        self._shaper.add_chunk(topic, partition, floor_ms, records)
        self.records_read.inc(len(records))
        self._chunks.append((topic, partition, origin, start, stop, floor_ms))
        if self._shaper.rows >= self.cfg.flush_rows:
            for tag, value, ts in self._take():
                out = beam.window.TimestampedValue(value, ts)
                yield out if tag is None else beam.pvalue.TaggedOutput(tag, out)

    def finish_bundle(self):
        for tag, value, ts in self._take():
            out = WindowedValue(value, ts, [GlobalWindow()])
            yield out if tag is None else beam.pvalue.TaggedOutput(tag, out)

    def _take(self):
        """The take: every part so far, then the position that names them (the order of
        the two outputs does not matter to CommitOffsets)."""
        stats = self._shaper.take_stats()
        for code, n in (stats.rejected or {}).items():
            Metrics.counter("spool.rejected", code).inc(n)
        for (tenant, stream, version), n in (stats.filtered or {}).items():
            # records a stream map's filter dropped, by map version: never silently gone
            Metrics.counter("spool.filtered", f"{tenant}/{stream}/v{version}").inc(n)
        chunks, self._chunks = self._chunks, []
        parts = self._shaper.take_parts()
        if not chunks:
            return
        topic, first_partition, _, first_start, _, floor_ms = chunks[0]
        take_id = f"{first_partition}:{first_start}"  # a chunk is in one take only
        ranges: list[list[int]] = []
        origins = {}
        for _topic, partition, origin, start, stop, _floor in chunks:
            origins[partition] = origin
            last = next((r for r in reversed(ranges) if r[0] == partition), None)
            if last is not None and last[2] == start:
                last[2] = stop
            else:
                ranges.append([partition, start, stop])
        for index, ((tenant, stream, _window, _keys), part) in enumerate(parts):
            self.parts_out.inc()
            part.takes = {take_id: 1 << index}
            value = (part.n_rows, part.bytes, part.meta_key(), part.dumps())
            yield None, ((tenant, stream), value), Timestamp(micros=part.min_event_ms * 1000)
        yield POSITIONS, (topic, (take_id, [tuple(r) for r in ranges], origins, len(parts))), \
            Timestamp(micros=max(floor_ms, 0) * 1000)

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

"""Per-record work on a chunk of queue records: decode, validate, shape, sort into parts.

``ChunkShaper.add_chunk`` takes consecutive records of one partition (objects with
``offset``, ``timestamp``, ``value`` and ``headers``, as kafka-python returns them) and files
every record into the part of its (tenant, stream, window) by its *event time*: the Kafka
timestamp (at most ``MAX_FUTURE_MS`` ahead of the clock) clamped to be non-decreasing within
the partition, starting from ``floor_ms``;
``take_parts`` hands the parts over. The
spool job's Beam step and the plain-consumer baseline of the benchmark both use this class,
so they do identical per-record work.

Control messages act here: a Singer SCHEMA updates the stream's key properties (in the
ledger, through the directory), STATE is saved as the latest state of its (tenant, state
id), and ACTIVATE_VERSION marks the stream's part so the loader can retire older table
versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from spool import sdc
from spool.ingest.decode import Decoder
from spool.ingest.messages import Decoded, Kind, Reason
from spool.ingest.parts import Part, rejected_row, rejected_tenant, shape_decoded
from spool.ingest.shape import InexactNumber, ShapeError, default_sequence
from spool.maps import CannotApply, Inexact

PartKey = tuple  # (tenant, stream, window_start_ms, key names)
# A producer clock far ahead would carry its partition's event time (and every later record
# of it) into a window that closes only when the wall clock gets there: timestamps count as
# at most this far ahead of the spool job's clock.
MAX_FUTURE_MS = 10 * 60 * 1000


def timestamp_ceiling(now_s: float) -> int:
    return int(now_s * 1000) + MAX_FUTURE_MS


def queue_time(timestamp_ms: int, ceiling_ms: int) -> int:
    """A record's Kafka timestamp, within [0, ceiling] (-1 means none was set)."""
    return 0 if timestamp_ms < 0 else min(timestamp_ms, ceiling_ms)


@dataclass
class ChunkStats:
    records: int = 0
    rejected: dict | None = None
    filtered: dict | None = None  # (tenant, stream, map version) → records a filter dropped

    def reject(self, code: str) -> None:
        if self.rejected is None:
            self.rejected = {}
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def filter(self, tenant: str, stream: str, version: int) -> None:
        if self.filtered is None:
            self.filtered = {}
        key = (tenant, stream, version)
        self.filtered[key] = self.filtered.get(key, 0) + 1


class ChunkShaper:
    def __init__(self, decoder: Decoder, directory, window_ms: int,
                 save_state: Callable[[str, str, object, str], None],
                 part_max_rows: int = 25_000, part_max_bytes: int = 16 * 1024 * 1024,
                 clock: Callable[[], float] = time.time, maps=None) -> None:
        self.decoder = decoder
        self.maps = maps  # spool.ingest.directory.MapDirectory, or None: no stream maps
        self.directory = directory
        self.window_ms = window_ms
        self.save_state = save_state
        self.part_max_rows = part_max_rows
        self.part_max_bytes = part_max_bytes
        self.clock = clock
        self.parts: dict[PartKey, Part] = {}
        self.full: list[tuple[PartKey, Part]] = []
        self.rows = 0
        self.stats = ChunkStats()

    def _part(self, tenant: str, stream: str, event_ms: int, key_names: tuple = ()) -> Part:
        # records of one stream with other key names never share a part (nor a batch)
        key = (tenant, stream, event_ms - event_ms % self.window_ms, key_names)
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = Part(key_names=key_names)
        elif len(part.rows) >= self.part_max_rows or part.bytes >= self.part_max_bytes:
            # a part is at most a fraction of a batch, so batches close near their limits
            self.full.append((key, part))
            part = self.parts[key] = Part(key_names=key_names)
        return part

    def add_chunk(self, topic: str, partition: int, floor_ms: int, records: list) -> int:
        """Shape a chunk; returns the partition's event-time floor after it."""
        decode = self.decoder.decode
        tp = sdc.queue_position(topic, partition)
        states: dict[tuple[str, str], tuple] = {}  # (tenant, state id) → (value, record)
        event_ms = floor_ms
        ceiling = timestamp_ceiling(self.clock())
        if self.maps is not None and records:  # the maps known must cover every record
            top = max(r.timestamp for r in records)
            self.maps.cover(max(floor_ms, queue_time(top, ceiling)))
        for r in records:
            offset, kafka_ms, value, headers = r.offset, r.timestamp, r.value, r.headers
            if kafka_ms > ceiling or kafka_ms < 0:
                kafka_ms = queue_time(kafka_ms, ceiling)
            if kafka_ms > event_ms:
                event_ms = kafka_ms
            decoded = decode(value, headers)
            rid = sdc.record_id(topic, partition, offset)
            kind = decoded.kind
            version = applied = source = None
            exact = False
            if kind is Kind.RECORD and self.maps is not None:
                source = decoded.stream
                try:
                    decoded, version, applied = self._mapped(decoded, event_ms, False)
                except Inexact:  # a number the map meets may be rounded: decode exactly
                    decoded, exact = decode(value, headers, exact=True), True
                    if decoded.kind is not Kind.RECORD:
                        self._reject(decoded, rid, kafka_ms, event_ms, value, tp, offset)
                        continue
                    decoded, version, applied = self._mapped(decoded, event_ms, True)
                if self._filed(decoded, source, version, rid, kafka_ms, event_ms, len(value),
                               tp, offset):
                    continue
            if kind is Kind.RECORD:
                try:
                    try:
                        rows, seq = shape_decoded(decoded, rid, kafka_ms, exact=exact,
                                                  map_version=version if applied else None)
                    except InexactNumber:
                        decoded = decode(value, headers, exact=True)
                        if decoded.kind is not Kind.RECORD:
                            self._reject(decoded, rid, kafka_ms, event_ms, value, tp, offset)
                            continue
                        if version is not None:  # decoded again: mapped again, exactly
                            decoded, version, applied = self._mapped(decoded, event_ms, True)
                            if self._filed(decoded, source, version, rid, kafka_ms, event_ms,
                                           len(value), tp, offset):
                                continue
                        rows, seq = shape_decoded(decoded, rid, kafka_ms, exact=True,
                                                  map_version=version if applied else None)
                except ShapeError as exc:
                    decoded = Decoded(Kind.REJECTED, tenant=decoded.tenant,
                                      stream=decoded.stream, reason=Reason.TOO_DEEP,
                                      message=f"{exc}; flatten it before sending")
                    # a mapped record's message is not kept (its stream may be an alias now)
                    self._reject(decoded, rid, kafka_ms, event_ms,
                                 None if applied else value, tp, offset)
                    continue
                part = self._part(decoded.tenant, decoded.stream, event_ms,
                                  tuple(decoded.key_names or ()))
                if version is not None and (part.map_versions is None or
                                            part.map_versions.get(source) != version):
                    part.note_map(source, version)
                part.rows.extend(rows)
                self.rows += len(rows)
                part.note_record(tp, offset, len(value), event_ms)
                part.note_sequence(seq)
                if decoded.singer and part.schema is None:
                    part.schema = self.directory.schema(decoded.tenant, decoded.stream)
            elif kind is Kind.REJECTED:
                self._reject(decoded, rid, kafka_ms, event_ms, value, tp, offset)
            elif kind is Kind.SCHEMA:
                self.directory.learn_schema(decoded.tenant, decoded.stream, decoded.key_names,
                                            decoded.schema, rid)
            elif kind is Kind.ACTIVATE_VERSION:
                keys = tuple(self.directory.stream_keys(decoded.tenant, decoded.stream) or ())
                stream, made_by = decoded.stream, None
                if self.maps is not None:  # where the stream's map sends its records
                    stream, keys, made_by = self.maps.routed(decoded.tenant, decoded.stream,
                                                             event_ms, keys)
                part = self._part(decoded.tenant, stream, event_ms, keys)
                if made_by is not None:  # (the batch's keys come from that map)
                    part.note_map(decoded.stream, made_by)
                part.activate_version = max(part.activate_version or decoded.table_version,
                                            decoded.table_version)
                part.note_record(tp, offset, len(value), event_ms)
                # its place among the stream's records: batches load in sequence order
                part.note_sequence(default_sequence(kafka_ms))
            else:  # STATE
                states[(decoded.tenant, decoded.state_id)] = (decoded.data["value"], rid)
        self.stats.records += len(records)
        for (tenant, state_id), (state, rid) in states.items():
            self.save_state(tenant, state_id, state, rid)
        return event_ms

    def _filed(self, decoded: Decoded, source: str, version: int | None, rid: str,
               kafka_ms: int, event_ms: int, size: int, tp: str, offset: int) -> bool:
        """Whether the map rejected the record or its filter dropped it (it is filed
        then: rejected without its message, or counted), so there is nothing to shape."""
        if decoded.kind is Kind.REJECTED:
            # without the message: the map exists to keep some of it out of the warehouse
            # (the record stays in the topic, at its _sdc_record_id)
            self._reject(decoded, rid, kafka_ms, event_ms, None, tp, offset)
            return True
        if decoded.data is None:  # the map's filter dropped it: counted, not lost
            part = self._part(decoded.tenant, decoded.stream, event_ms,
                              tuple(decoded.key_names or ()))
            part.note_map(source, version)
            part.note_filtered(source)
            part.note_record(tp, offset, size, event_ms)
            return True
        return False

    def _mapped(self, decoded: Decoded, event_ms: int,
                exact: bool) -> tuple[Decoded, int | None, bool]:
        """The record as its stream's map makes it (data None: filtered out), or rejected
        with the reason; the map's version (of a removed map too: the version that removed
        it); and whether a map was applied. Raises maps.Inexact (unless ``exact``) where a
        number the fast decoder may have rounded meets a hash or a comparison."""
        found = self.maps.at(decoded.tenant, decoded.stream, event_ms)
        if found is None:
            return decoded, None, False
        version, apply = found
        if apply is None:  # removed
            return decoded, version, False
        try:
            applied = apply(decoded.data, tuple(decoded.key_names or ()), exact)
        except CannotApply as exc:
            return Decoded(Kind.REJECTED, tenant=decoded.tenant, stream=decoded.stream,
                           reason=Reason.MAP_FAILED,
                           message=f"stream map v{version} of {decoded.tenant}/"
                                   f"{decoded.stream}: {exc}; fix the map (try it with "
                                   "'spool maps test') or the record"), version, True
        if applied.data is None:
            self.stats.filter(decoded.tenant, decoded.stream, version)
        # changed in place: each record's Decoded is its own (a copy cost 2 % of the job)
        decoded.data, decoded.stream = applied.data, applied.stream
        decoded.key_names = applied.key_names
        return decoded, version, True

    def _reject(self, decoded: Decoded, rid: str, kafka_ms: int, event_ms: int, value,
                tp: str, offset: int) -> None:
        tenant = rejected_tenant(decoded, self.decoder.is_tenant)
        if value is not None and self.maps is not None and decoded.stream is not None and \
                (self.maps.at(tenant, decoded.stream, event_ms) or (0, None))[1]:
            # a stream with a map keeps some of what its records hold out of the warehouse:
            # its rejected messages are kept without their text (the topic has them, at
            # their _sdc_record_id)
            value = None
        part = self._part(tenant, sdc.REJECTED, event_ms)
        # rejected "at" the queue time the partition had reached: from the data, not the
        # clock, so a retried bundle writes the same row
        part.rows.append(((), rejected_row(decoded, rid, kafka_ms, event_ms, value)))
        self.rows += 1
        part.note_record(tp, offset, len(value or b""), event_ms)
        self.stats.reject(decoded.reason.value if decoded.reason else "unknown")

    def take_parts(self) -> list[tuple[PartKey, Part]]:
        """All parts so far (sealed: columnar), in the order they were started; the shaper
        starts afresh."""
        parts = self.full
        parts.extend(self.parts.items())
        self.parts, self.full, self.rows = {}, [], 0
        for _, part in parts:
            part.seal()
        return parts

    def take_stats(self) -> ChunkStats:
        stats, self.stats = self.stats, ChunkStats()
        return stats

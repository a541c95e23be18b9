"""Parts: the rows of one (tenant, stream, window) from a stretch of the queue.

Decoding and shaping happen per record in plain Python; what moves between Beam steps is a
part, so Beam's per-element cost is paid per (tenant, stream, window, bundle), not per record.
While shaping, a part collects row dicts; ``seal`` turns them into one Arrow table, so what
travels is columnar (``dumps``: the part's metadata plus the table as Arrow IPC bytes). The
batch step only needs a part's row and byte counts and its *stream meta* (key names, Singer
schema), which travel beside the blob so that it never opens a part it only counts.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field

import pyarrow as pa

from spool import sdc
from spool.ingest import batchfile
from spool.ingest import offsets as offset_sets
from spool.ingest import shape as shaping
from spool.ingest.messages import Decoded, Kind, Reason


@dataclass
class Part:
    rows: list = field(default_factory=list)  # shaped rows, until sealed
    table: pa.Table | None = None  # the rows as Arrow, once sealed
    n_rows: int = 0
    records: int = 0
    bytes: int = 0
    min_seq: int | None = None
    max_seq: int | None = None
    offsets: dict = field(default_factory=dict)  # "topic/partition" -> [min, max, count]
    min_event_ms: int | None = None
    max_event_ms: int | None = None
    key_names: tuple = ()
    schema: dict | None = None
    activate_version: int | None = None
    # the stream maps that made these records (spool.maps): {the map's stream: version};
    # another stream than the part's when its map aliases records into this one
    map_versions: dict | None = None
    filtered: int = 0  # records (counted in ``records``) the map's filter dropped
    filtered_by: dict | None = None  # of those, per map (its stream → records)
    # which parts of which takes this is (spool.ingest.progress): take id → bitmask of part
    # indexes; a batch's is the union of its parts', and CommitOffsets commits by them
    takes: dict | None = None
    # the exact offsets of the records (spool.ingest.offsets) per "topic/partition":
    # appended while shaping, packed when sealed (``offsets`` above holds only their span)
    offset_log: dict = field(default_factory=dict)  # "topic/partition" → [offset, ...]
    offset_sets: dict = field(default_factory=dict)  # "topic/partition" → [packed, ...]
    # "topic/partition" → [first, last] of records whose offsets are not known one by one
    # (a part pickled by a Spool without offset sets): its batch's set is not exact there
    offsets_inexact: dict | None = None

    def meta_key(self) -> str:
        """Records with different stream meta never share a batch."""
        digest = hashlib.sha256(json.dumps([list(self.key_names), self.schema],
                                           sort_keys=True).encode()).hexdigest()[:16]
        return digest

    def note_map(self, stream: str, version: int) -> None:
        """Records of the part were made by ``stream``'s map ``version`` (or the newer)."""
        if self.map_versions is None:
            self.map_versions = {}
        self.map_versions[stream] = max(version, self.map_versions.get(stream, version))

    def note_filtered(self, stream: str, n: int = 1) -> None:
        """``n`` records of the part were dropped by ``stream``'s map's filter."""
        if self.filtered_by is None:
            self.filtered_by = {}
        self.filtered += n
        self.filtered_by[stream] = self.filtered_by.get(stream, 0) + n

    def note_record(self, topic_partition: str, offset: int, size: int, event_ms: int) -> None:
        self.records += 1
        self.bytes += size
        rng = self.offsets.get(topic_partition)
        if rng is None:
            self.offsets[topic_partition] = [offset, offset, 1]
        else:
            if offset < rng[0]:
                rng[0] = offset
            if offset > rng[1]:
                rng[1] = offset
            rng[2] += 1
        log = self.offset_log.get(topic_partition)
        if log is None:
            self.offset_log[topic_partition] = [offset]
        else:
            log.append(offset)
        if self.min_event_ms is None or event_ms < self.min_event_ms:
            self.min_event_ms = event_ms
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms

    def note_sequence(self, seq: int) -> None:
        if self.min_seq is None or seq < self.min_seq:
            self.min_seq = seq
        if self.max_seq is None or seq > self.max_seq:
            self.max_seq = seq

    def seal(self) -> Part:
        """Columnarise the shaped rows (once); the row dicts are dropped. The offsets noted
        so far are packed."""
        if self.table is None:
            self.n_rows = len(self.rows)
            self.table = batchfile.rows_to_table(self.rows)
            self.rows = []
        self._pack_offsets()
        return self

    def _pack_offsets(self) -> None:
        if self.offset_log:
            for tp, log in self.offset_log.items():
                self.offset_sets.setdefault(tp, []).append(offset_sets.pack(log))
            self.offset_log = {}

    def packed_offsets(self) -> dict[str, tuple[int, int, int, bytes, bool]]:
        """Per "topic/partition": (first, last, how many, packed set, exact) of the offsets
        of the part's records, as the ledger keeps them with a batch (``batch_offsets``).
        Not exact: the set covers [first, last] of records of an older part whole."""
        self.seal()
        out = {}
        loose = self.offsets_inexact or {}
        for tp in sorted(set(self.offset_sets) | set(loose)):
            blobs = self.offset_sets.get(tp, [])
            if tp in loose:
                lo, hi = loose[tp]
                blobs = [*blobs, offset_sets.pack(range(lo, hi + 1))]
            first, last, n, packed = offset_sets.combine(blobs)
            out[tp] = (first, last, n, packed, tp not in loose)
        return out

    def dumps(self) -> bytes:
        self.seal()
        meta = {k: v for k, v in self.__dict__.items() if k not in ("rows", "table")}
        return pickle.dumps((meta, batchfile.to_ipc(self.table)),
                            protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, blob: bytes) -> Part:
        meta, ipc = pickle.loads(blob)  # noqa: S301 - our own bytes between pipeline steps
        # a part pickled by an older Spool (in a streaming job's state across an upgrade)
        known = cls.__dataclass_fields__
        part = cls(**{k: v for k, v in meta.items() if k in known})
        part.table = batchfile.from_ipc(ipc)
        if "offset_sets" not in meta:  # older than offset sets: a dense span is exact
            for tp, (lo, hi, n) in part.offsets.items():
                if hi - lo + 1 == n:
                    part.offset_sets[tp] = [offset_sets.pack(range(lo, hi + 1))]
                else:
                    part.offsets_inexact = {**(part.offsets_inexact or {}), tp: [lo, hi]}
        return part

    def merge_meta(self, other: Part) -> None:
        """Fold another part's counts and ranges into this one (not its rows)."""
        other._pack_offsets()
        for tp, packed in other.offset_sets.items():
            self.offset_sets.setdefault(tp, []).extend(packed)
        for tp, (lo, hi) in (other.offsets_inexact or {}).items():
            was = (self.offsets_inexact or {}).get(tp, [lo, hi])
            self.offsets_inexact = {**(self.offsets_inexact or {}),
                                    tp: [min(was[0], lo), max(was[1], hi)]}
        self.n_rows += other.n_rows
        self.records += other.records
        self.bytes += other.bytes
        for tp, (lo, hi, n) in other.offsets.items():
            rng = self.offsets.get(tp)
            if rng is None:
                self.offsets[tp] = [lo, hi, n]
            else:
                self.offsets[tp] = [min(rng[0], lo), max(rng[1], hi), rng[2] + n]
        for seq in (other.min_seq, other.max_seq):
            if seq is not None:
                self.note_sequence(seq)
        if other.min_event_ms is not None and (self.min_event_ms is None
                                               or other.min_event_ms < self.min_event_ms):
            self.min_event_ms = other.min_event_ms
        if other.max_event_ms is not None and (self.max_event_ms is None
                                               or other.max_event_ms > self.max_event_ms):
            self.max_event_ms = other.max_event_ms
        if other.activate_version is not None:
            self.activate_version = max(self.activate_version or other.activate_version,
                                        other.activate_version)
        for stream, version in (other.map_versions or {}).items():
            self.note_map(stream, version)
        for stream, n in (other.filtered_by or {}).items():
            self.note_filtered(stream, n)
        if other.filtered_by is None:  # a part pickled before counts were kept per map
            self.filtered += other.filtered
        for take_id, mask in (other.takes or {}).items():
            if self.takes is None:
                self.takes = {}
            self.takes[take_id] = self.takes.get(take_id, 0) | mask
        self.key_names = other.key_names
        self.schema = other.schema


def rejected_row(decoded: Decoded, rid: str, kafka_ms: int, rejected_at_ms: int,
                 value: bytes | None) -> dict:
    """The row of a rejected message; ``rejected_at_ms`` is the queue time at which the spool
    job rejected it (from the data, so a retry writes the same row)."""
    raw = value or b""
    return {
        sdc.RECORD_ID: rid,
        sdc.RECEIVED_AT: kafka_ms,
        sdc.REJECTED_AT: rejected_at_ms,
        "table_name": decoded.stream,
        "reason_code": decoded.reason.value if decoded.reason else "unknown",
        "reason": decoded.message,
        "record": raw.decode("utf-8", errors="replace"),
        "raw": raw,
    }


def rejected_tenant(decoded: Decoded, is_tenant) -> str:
    """The tenant whose ``_sdc_rejected`` gets a rejected message: its own when it names a
    registered one, else ``_unassigned``."""
    if decoded.tenant is not None and decoded.reason is not None and \
            decoded.reason is not Reason.UNKNOWN_TENANT and is_tenant(decoded.tenant):
        return decoded.tenant
    return sdc.UNASSIGNED_TENANT


def shape_decoded(decoded: Decoded, rid: str, kafka_ms: int,
                  exact: bool = False, map_version: int | None = None) -> tuple[list, int]:
    """(rows, sequence) of a decoded RECORD (may raise shape.ShapeError, and InexactNumber
    unless ``exact``)."""
    assert decoded.kind is Kind.RECORD
    seq = decoded.sequence
    if seq is None:
        seq = shaping.default_sequence(kafka_ms)
    return shaping.shape(decoded.data, rid=rid, sequence=seq, received_at_ms=kafka_ms,
                         key_names=decoded.key_names or (),
                         extracted_at_us=decoded.extracted_at,
                         table_version=decoded.table_version, map_version=map_version,
                         exact=exact), seq

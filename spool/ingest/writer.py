"""Write batches: from parts to a replay-safe name, Parquet bytes, a file and a ledger row.

Names *and content* come from the data, never from a clock or uuid4, so a retried bundle
that rebuilds the same batch rewrites the same object with the same bytes and upserts the
same ledger row (STYLE 7, 7b): even ``_sdc_batched_at`` is the newest queue time among the
batch's records, not the moment it was written. The name::

    <tenant>/<stream>/<window start, UTC>/<pane>-<partition>-<offset>-<digest>

``tenant`` and ``stream`` are encoded into one safe segment each (spool.ingest.keys: no
segment is ``.`` or ``..``), and the key is checked to lie under the tenant's prefix before
anything is written. ``pane`` is the batch's number within its (tenant, stream, window),
``partition-offset`` its first record, and ``digest`` a hash of all its record ids, so two
batches share a name only when they hold the same records.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from spool import sdc
from spool.ingest import batchfile
from spool.ingest.keys import check_under, segment
from spool.ingest.parts import Part
from spool.ledger.store import BatchRecord, Ledger
from spool.objectstore import ObjectStore


def _first_record(offsets: dict) -> tuple[int, int]:
    firsts = [(sdc.partition_of(tp), lo) for tp, (lo, _hi, _n) in offsets.items()]
    return min(firsts) if firsts else (0, 0)


def _digest(table: pa.Table) -> str:
    if sdc.RECORD_ID not in table.column_names:
        rids = []
    else:
        roots = pc.equal(table.column(batchfile.TABLE_COLUMN), batchfile.ROOT_TABLE_KEY)
        rids = sorted(pc.filter(table.column(sdc.RECORD_ID), roots).to_pylist())
    h = hashlib.sha256()
    for rid in rids:
        h.update(rid.encode())
        h.update(b"\n")
    return h.hexdigest()[:12]


def batch_key(tenant: str, stream: str, window_start_ms: int, pane: int, part: Part) -> str:
    start = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC)
    partition, offset = _first_record(part.offsets)
    part.seal()
    return (f"{segment(tenant)}/{segment(stream)}/{start:%Y%m%dT%H%M%SZ}/"
            f"{pane:05d}-{partition}-{offset}-{_digest(part.table)}")


def merge_parts(parts: list[Part]) -> Part:
    """One sealed part holding all rows and metadata of ``parts``."""
    merged = Part()
    for part in parts:
        merged.merge_meta(part.seal())
    merged.table = batchfile.concat([p.table for p in parts])
    return merged


def assemble(tenant: str, stream: str, window_start_ms: int, window_ms: int, pane: int,
             part: Part, base_uri: str, batched_at_ms: int | None = None,
             compression: str = "snappy", late: bool = False) -> tuple[str, bytes, BatchRecord]:
    """(uri, Parquet bytes, ledger record) of one batch. ``batched_at_ms`` defaults to the
    newest queue time (event time) of the batch's records: by then it held all of them.
    ``late``: every record of the batch reached its window after the window had closed."""
    part.seal()
    key = check_under(batch_key(tenant, stream, window_start_ms, pane, part), tenant)
    uri = f"{base_uri.rstrip('/')}/{key}.parquet"
    window_start = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC)
    window_end = datetime.fromtimestamp((window_start_ms + window_ms) / 1000, tz=UTC)
    if batched_at_ms is None:
        batched_at_ms = part.max_event_ms if part.max_event_ms is not None else window_start_ms
    meta = batchfile.BatchMeta(
        tenant=tenant, stream=stream, batch_id=key, window_start=window_start.isoformat(),
        window_end=window_end.isoformat(), pane=pane, record_count=part.records,
        key_names=list(part.key_names), schema=part.schema,
        activate_version=part.activate_version, batched_at_ms=batched_at_ms,
        map_versions=part.map_versions, records_filtered=part.filtered,
        records_filtered_by=part.filtered_by, records_late=part.records if late else 0)
    data, meta = batchfile.encode(part.seal().table, meta, compression=compression)
    record = BatchRecord(
        batch_id=key,
        tenant_id=tenant,
        stream=stream,
        uri=uri,
        window_start=window_start,
        window_end=window_end,
        pane=pane,
        record_count=part.records,
        row_count=meta.row_count,
        byte_count=part.bytes,
        file_bytes=len(data),
        min_sequence=part.min_seq,
        max_sequence=part.max_seq,
        offsets=part.offsets,
        key_names=tuple(part.key_names),
        columns=meta.columns,
        meta={**meta.ledger_meta(), **rejection_summary(part.table)},
        exact_offsets=part.packed_offsets(),
    )
    return uri, data, record


class BatchWriter:
    """Writes the batches of one bundle, in the order the contract needs (STYLE 8):

    1. each batch's file, under its content-derived name, as the batch is added (visible at
       once and whole; a retry rewrites the same bytes);
    2. at :meth:`flush`, every file of the bundle made durable (one flush for all);
    3. then their ledger rows, READY, in one transaction (an id already there is left as it
       is: it describes the same bytes).

    The caller lets Kafka offsets pass the batches' records only after :meth:`flush`.
    """

    def __init__(self, store: ObjectStore, ledger: Ledger, spool_location: str,
                 window_ms: int, compression: str = "snappy") -> None:
        self.store = store
        self.ledger = ledger
        self.spool_location = spool_location
        self.window_ms = window_ms
        self.compression = compression
        self.pending: list[BatchRecord] = []

    def add(self, tenant: str, stream: str, window_start_ms: int, pane: int,
            parts: list[Part], late: bool = False) -> tuple[BatchRecord, Part]:
        """The batch's ledger record, and its merged part (whose ``takes`` say which parts
        of which takes it holds)."""
        merged = merge_parts(parts)
        uri, data, record = assemble(tenant, stream, window_start_ms, self.window_ms, pane,
                                     merged, self.spool_location,
                                     compression=self.compression, late=late)
        self.store.put_atomic(uri, data, durable=False)  # made durable in flush()
        self.pending.append(record)
        return record, merged

    def flush(self) -> list[BatchRecord]:
        """Steps 2 and 3 for every batch added since the last flush; returns them."""
        records, self.pending = self.pending, []
        if records:
            self.store.make_durable([r.uri for r in records])
            self.ledger.record_batches(records)
        return records


def rejection_summary(table: pa.Table, samples: int = 3) -> dict:
    """For a batch of rejected records: counts per reason code and a few samples of each
    (record id, reason, the start of the message), so ``spool rejected`` needs no file."""
    if "reason_code" not in table.column_names:
        return {}
    reasons: dict[str, int] = {}
    examples: dict[str, list] = {}
    for rid, code, reason, record in zip(table.column(sdc.RECORD_ID).to_pylist(),
                                         table.column("reason_code").to_pylist(),
                                         table.column("reason").to_pylist(),
                                         table.column("record").to_pylist(), strict=True):
        reasons[code] = reasons.get(code, 0) + 1
        if len(examples.setdefault(code, [])) < samples:
            examples[code].append({"record_id": rid, "reason": _storable(reason),
                                   "record": _storable((record or "")[:200])})
    return {"rejected": reasons, "rejected_samples": examples}


def _storable(text: str | None) -> str | None:
    """``text`` as the ledger's JSON can hold it: PostgreSQL stores no NUL character, and a
    reason may quote one a producer sent (a field name, a Kafka header)."""
    return text.replace("\0", "\\u0000") if text else text

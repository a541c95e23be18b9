"""Assemble a batch from parts: its replay-safe name, its Parquet bytes, its ledger record.

Names come from the content, never from a clock or uuid4, so a retried bundle that rebuilds
the same batch rewrites the same object and upserts the same ledger row::

    <tenant>/<stream>/<window start, UTC>/<pane>-<partition>-<offset>-<digest>

``tenant`` and ``stream`` are percent-encoded (any text is a safe key), ``pane`` is the
batch's number within its (tenant, stream, window), ``partition-offset`` its first record,
and ``digest`` a hash of all its record ids, so two batches share a name only when they hold
the same records.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from spool import batchfile
from spool.ledger import BatchRecord
from spool.parts import Part


def _first_record(offsets: dict) -> tuple[int, int]:
    firsts = []
    for tp, (lo, _hi, _n) in offsets.items():
        firsts.append((int(tp.rsplit("/", 1)[1]), lo))
    return min(firsts) if firsts else (0, 0)


def _digest(table: pa.Table) -> str:
    if "_sdc_record_id" not in table.column_names:
        rids = []
    else:
        roots = pc.equal(table.column(batchfile.TABLE_COLUMN), batchfile.ROOT_TABLE)
        rids = sorted(pc.filter(table.column("_sdc_record_id"), roots).to_pylist())
    h = hashlib.sha256()
    for rid in rids:
        h.update(rid.encode())
        h.update(b"\n")
    return h.hexdigest()[:12]


def batch_key(tenant: str, stream: str, window_start_ms: int, pane: int, part: Part) -> str:
    start = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC)
    partition, offset = _first_record(part.offsets)
    part.seal()
    return (f"{quote(tenant, safe='')}/{quote(stream, safe='')}/"
            f"{start:%Y%m%dT%H%M%SZ}/{pane:05d}-{partition}-{offset}-{_digest(part.table)}")


def merge_parts(parts: list[Part]) -> Part:
    """One sealed part holding all rows and metadata of ``parts``."""
    merged = Part()
    for part in parts:
        merged.merge_meta(part.seal())
    merged.table = batchfile.concat([p.table for p in parts])
    return merged


def assemble(tenant: str, stream: str, window_start_ms: int, window_ms: int, pane: int,
             part: Part, base_uri: str, batched_at_ms: int,
             compression: str = "snappy") -> tuple[str, bytes, BatchRecord]:
    """(uri, Parquet bytes, ledger record) of one batch."""
    part.seal()
    key = batch_key(tenant, stream, window_start_ms, pane, part)
    uri = f"{base_uri.rstrip('/')}/{key}.parquet"
    window_start = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC)
    window_end = datetime.fromtimestamp((window_start_ms + window_ms) / 1000, tz=UTC)
    meta = {
        "batch_id": key,
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
        "pane": pane,
        "record_count": part.records,
        "key_names": list(part.key_names),
        "schema": part.schema,
        "activate_version": part.activate_version,
        "batched_at_ms": batched_at_ms,
    }
    data, file_meta = batchfile.encode(part.seal().table,
                                       {"tenant": tenant, "stream": stream, **meta},
                                       compression=compression)
    record = BatchRecord(
        batch_id=key,
        tenant_id=tenant,
        stream=stream,
        uri=uri,
        window_start=window_start,
        window_end=window_end,
        pane=pane,
        record_count=part.records,
        row_count=file_meta["row_count"],
        byte_count=part.bytes,
        file_bytes=len(data),
        min_sequence=part.min_seq,
        max_sequence=part.max_seq,
        offsets=part.offsets,
        key_names=tuple(part.key_names),
        columns=file_meta["columns"],
        meta={"tables": file_meta["tables"], "schema": part.schema,
              "activate_version": part.activate_version, "batched_at_ms": batched_at_ms,
              **rejection_summary(part.table)},
    )
    return uri, data, record


def rejection_summary(table: pa.Table, samples: int = 3) -> dict:
    """For a batch of rejected records: counts per reason code and a few samples of each
    (record id, reason, the start of the message), so ``spool rejected`` needs no file."""
    if "reason_code" not in table.column_names:
        return {}
    reasons: dict[str, int] = {}
    examples: dict[str, list] = {}
    for rid, code, reason, record in zip(table.column("_sdc_record_id").to_pylist(),
                                         table.column("reason_code").to_pylist(),
                                         table.column("reason").to_pylist(),
                                         table.column("record").to_pylist(), strict=True):
        reasons[code] = reasons.get(code, 0) + 1
        if len(examples.setdefault(code, [])) < samples:
            examples[code].append({"record_id": rid, "reason": reason,
                                   "record": (record or "")[:200]})
    return {"rejected": reasons, "rejected_samples": examples}

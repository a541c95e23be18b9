"""Webhook events as data: types, ids and payloads (docs/webhooks.md).

An event's id comes from what it announces (tenant, type, the load id or the failed batches
and their claim), never from a clock or a random number: the ledger transaction that writes
it may be retried, and the outbox keeps the first row of an id, so an event is written once
however often its transaction runs. Receivers deduplicate by that id.

The body a receiver gets is :func:`body` of the stored row: the same bytes on every
delivery attempt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from spool.sdc import REJECTED as REJECTED_TABLE
from spool.secrets import redact

LOAD_COMPLETED = "load.completed"  # a load committed: what it did per table
SCHEMA_CHANGED = "schema.changed"  # the load changed the tenant's schema
BATCH_FAILED = "batch.failed"  # batches failed alone and wait for a person
REJECTED = "rejected"  # the load put records in _sdc_rejected or cut values to fit
PING = "ping"  # `spool webhooks test`: not stored, not retried
TYPES = (LOAD_COMPLETED, SCHEMA_CHANGED, BATCH_FAILED, REJECTED)


@dataclass(frozen=True)
class Event:
    event_id: str
    tenant: str
    type: str
    data: dict


def event_id(tenant: str, type_: str, *key: str) -> str:
    """``evt_`` and 32 hex digits of SHA-256 over tenant, type and the key, one per line."""
    digest = hashlib.sha256("\n".join((tenant, type_, *key)).encode()).hexdigest()
    return f"evt_{digest[:32]}"


def _sum(reports, field: str) -> int:
    return sum(getattr(r, field) for r in reports)


def for_load(tenant: str, reports: list, changes: list) -> list[Event]:
    """The events of one committed load: ``load.completed`` (when it has reports),
    ``schema.changed`` (when it changed the schema) and ``rejected`` (when it loaded
    rejected records into ``_sdc_rejected`` or cut values to fit). ``reports`` are
    TableReports, ``changes`` SchemaChanges (spool.warehouse.report); the load id is
    theirs."""
    load_ids = sorted({r.load_id for r in reports} | {c.load_id for c in changes})
    if not load_ids:
        return []
    load_id = load_ids[0] if len(load_ids) == 1 else "+".join(load_ids)
    batch_ids = sorted({b for r in reports for b in r.batch_ids})
    events = []
    if reports:
        events.append(Event(event_id(tenant, LOAD_COMPLETED, load_id), tenant, LOAD_COMPLETED, {
            "load_id": load_id,
            "batch_ids": batch_ids,
            "rows_inserted": _sum(reports, "rows_inserted"),
            "rows_updated": _sum(reports, "rows_updated"),
            "rows_superseded": _sum(reports, "rows_superseded"),
            "rows_retired": _sum(reports, "rows_retired"),
            "rows_rejected": _sum(reports, "rows_rejected"),
            "values_cut": _sum(reports, "values_cut"),
            "tables": [r.to_json() for r in reports],
        }))
    if changes:
        events.append(Event(event_id(tenant, SCHEMA_CHANGED, load_id), tenant, SCHEMA_CHANGED, {
            "load_id": load_id,
            "changes": [c.to_json() for c in changes],
        }))
    # a rejected message that names no stream counts on no stream's table, only in
    # _sdc_rejected: the rows the load put there are every rejection of the load
    records = sum(r.rows_inserted for r in reports if r.table == REJECTED_TABLE)
    rejected = [r for r in reports if r.rows_rejected or r.values_cut or r.rejected_by_reason
                or (r.table == REJECTED_TABLE and r.rows_inserted)]
    if rejected:
        by_reason: dict[str, int] = {}
        for r in rejected:
            for reason, n in r.rejected_by_reason.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        events.append(Event(event_id(tenant, REJECTED, load_id), tenant, REJECTED, {
            "load_id": load_id,
            "records_rejected": records,  # rows the load put in _sdc_rejected
            "rows_rejected": _sum(reports, "rows_rejected"),
            "values_cut": _sum(reports, "values_cut"),
            "by_reason": dict(sorted(by_reason.items())),
            "tables": [{"stream": r.stream, "table": r.table, "rows_rejected": r.rows_rejected,
                        "values_cut": r.values_cut,
                        "by_reason": dict(sorted(r.rejected_by_reason.items()))}
                       for r in rejected],
        }))
    return events


def for_failure(tenant: str, batches: list[tuple[str, str, int]], error: str,
                claimed_at: datetime | None) -> Event:
    """``batch.failed``: ``batches`` are (batch id, stream, attempts). ``claimed_at``, when
    the failed claim began, tells this failure from an earlier one of the same batches (a
    person retried them, and they failed again), yet is the same when the transaction that
    marks this failure is retried."""
    ids = sorted(b for b, _s, _a in batches)
    key = [*ids, claimed_at.isoformat() if claimed_at else ""]
    return Event(event_id(tenant, BATCH_FAILED, *key), tenant, BATCH_FAILED, {
        "batch_ids": ids,
        "streams": sorted({s for _b, s, _a in batches}),
        "attempts": max((a for _b, _s, a in batches), default=0),
        "error": redact(error)[:4000],
        "retry": f"spool batches retry --tenant {tenant} --all-failed",
    })


def body(event_id_: str, type_: str, tenant: str, created_at: datetime, data: dict) -> bytes:
    """The JSON a receiver gets, the same bytes on every attempt: keys sorted, no spaces."""
    return json.dumps({"id": event_id_, "type": type_, "tenant": tenant,
                       "created_at": created_at.isoformat(), "data": data},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()

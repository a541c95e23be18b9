"""Build batch files from plain records, the way the spool job would, for loader tests."""

from __future__ import annotations

import itertools

from spool.ingest.parts import Part
from spool.ingest.shape import shape
from spool.ingest.writer import assemble

_offsets = itertools.count(1)


def make_batch(stream: str, records: list[dict], key_names=(), tenant: str = "acme",
               sequences=None, schema=None, activate_version=None, table_version=None,
               window_ms: int = 0, pane: int = 0, offsets=None) -> tuple[str, bytes]:
    """(batch id, Parquet bytes) of one batch holding ``records``."""
    part = Part(key_names=tuple(key_names), schema=schema, activate_version=activate_version)
    for i, data in enumerate(records):
        offset = offsets[i] if offsets else next(_offsets)
        seq = sequences[i] if sequences else offset
        part.rows.extend(shape(data, rid=f"q/0/{offset}", sequence=seq,
                               received_at_ms=1_700_000_000_000 + offset, key_names=key_names,
                               table_version=table_version))
        part.note_record("q/0", offset, 10, window_ms)
        part.note_sequence(seq)
    if not records:
        part.note_record("q/0", next(_offsets), 10, window_ms)
    _uri, data, record = assemble(tenant, stream, window_ms, 60_000, pane, part, "/unused",
                                  batched_at_ms=1_700_000_100_000)
    return record.batch_id, data

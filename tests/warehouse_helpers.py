"""Build batch files from plain records, the way the spool job would, for loader tests."""

from __future__ import annotations

import itertools

from spool.ingest.parts import Part
from spool.ingest.shape import shape
from spool.ingest.writer import assemble

_offsets = itertools.count(1)


def make_batch(stream: str, records: list[dict], key_names=(), tenant: str = "acme",
               sequences=None, schema=None, activate_version=None, table_version=None,
               window_ms: int = 0, pane: int = 0, offsets=None,
               map_version=None) -> tuple[str, bytes]:
    """(batch id, Parquet bytes) of one batch holding ``records`` (made by version
    ``map_version`` of the stream's map, when given)."""
    part = Part(key_names=tuple(key_names), schema=schema, activate_version=activate_version)
    if map_version is not None:
        part.note_map(stream, map_version)
    for i, data in enumerate(records):
        offset = offsets[i] if offsets else next(_offsets)
        seq = sequences[i] if sequences else offset
        part.rows.extend(shape(data, rid=f"q/0/{offset}", sequence=seq,
                               received_at_ms=1_700_000_000_000 + offset, key_names=key_names,
                               table_version=table_version, map_version=map_version))
        part.note_record("q/0", offset, 10, window_ms)
        part.note_sequence(seq)
    if not records:
        part.note_record("q/0", next(_offsets), 10, window_ms)
    _uri, data, record = assemble(tenant, stream, window_ms, 60_000, pane, part, "/unused",
                                  batched_at_ms=1_700_000_100_000)
    return record.batch_id, data


def mapped_loads() -> list[list[tuple[str, bytes]]]:
    """Three loads of ``users``: no map; map v1; v2 with a late batch of v1 after it."""
    return [[make_batch("users", [{"id": 1, "name": "a"}], key_names=["id"])],
            [make_batch("users", [{"id": 2, "name": "b"}], key_names=["id"], map_version=1)],
            [make_batch("users", [{"id": 3, "full_name": "c"}], key_names=["id"],
                        map_version=2),
             make_batch("users", [{"id": 4, "name": "d"}], key_names=["id"], map_version=1)]]


# each row says which map version made it; each newer version is logged once, the late
# batch of v1 changes nothing
MAPPED_ROWS = [(1, None), (2, 1), (3, 2), (4, 1)]
MAPPED_CHANGES = [("users", None, "v1"), ("users", "v1", "v2")]

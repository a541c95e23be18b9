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


def ready_batch(ledger, location: str, stream: str, records: list[dict], tenant: str = "acme",
                store=None, old_name: str | None = None):
    """A batch of ``records`` stored under ``location`` (a folder or s3://) and READY in the
    ledger, as the spool job leaves it; at ``old_name`` under ``location`` when given (a file
    written under an older naming). Returns its BatchRecord."""
    import dataclasses
    from pathlib import PurePosixPath

    from spool.objectstore import ObjectStore

    part = Part(key_names=("id",))
    for data in records:
        offset = next(_offsets)
        part.rows.extend(shape(data, rid=f"q/0/{offset}", sequence=offset,
                               received_at_ms=1_700_000_000_000 + offset, key_names=["id"]))
        part.note_record("q/0", offset, 10, 1_700_000_000_000 + offset)
        part.note_sequence(offset)
    uri, data, record = assemble(tenant, stream, 1_699_999_980_000, 60_000, 0, part, location)
    if old_name:
        path = PurePosixPath(uri)
        uri = f"{location.rstrip('/')}/{old_name}/{path.parent.name}/{path.name}"
        record = dataclasses.replace(record, uri=uri)
    (store or ObjectStore()).put_atomic(uri, data)
    ledger.record_batches([record])
    return record


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


# a schema loaded before contract v3 (Spool 0.2): default sequences on the old scale
OLD_MS = 1_700_000_000_000  # make_batch's records arrive at this + their offset
OLD_EXPLICIT = (OLD_MS + 5_000) * 1_000_000  # an explicit sequence in ns: not a default


def old_default(offset: int) -> int:
    """What Spool before contract v3 gave a record sent without a sequence."""
    return (OLD_MS + offset) * 1_000_000 + offset % 1_000_000


def before_v3(load, execute, users: str, tags: str, loads: str, contract: str):
    """Keys 1 and 3 (with child rows) stored with old-scale defaults, key 2 with an explicit
    ns sequence, the schema marked v2; then a v3 loader loads key 1 again, sent without a
    sequence a second later (today's default: its Kafka ms). ``load(batch)`` loads a batch,
    ``execute(sql, params)`` runs a statement in a transaction; the others name the tables
    as the dialect quotes them. Returns the second load's result."""
    load(make_batch("users", [{"id": 1, "tags": ["a"]}, {"id": 2}, {"id": 3, "tags": ["c"]}],
                    key_names=["id"], offsets=[61, 62, 63], sequences=[0, OLD_EXPLICIT, 0]))
    for table in (users, tags):
        for offset in (61, 63):
            execute(f'UPDATE {table} SET "_sdc_sequence" = {old_default(offset)} '
                    f"WHERE \"_sdc_record_id\" = 'q/0/{offset}'")
    execute(f'ALTER TABLE {loads} DROP COLUMN "rows_superseded"')
    execute(f'UPDATE {contract} SET "version" = 2')
    return load(make_batch("users", [{"id": 1, "tags": ["b"]}], key_names=["id"],
                           offsets=[1061], sequences=[OLD_MS + 1061]))


# what before_v3 leaves: (id, sequence) of users; (record id, sequence) of users__tags
AFTER_V3_USERS = [(1, OLD_MS + 1061), (2, OLD_EXPLICIT), (3, OLD_MS + 63)]
AFTER_V3_TAGS = [("q/0/1061", OLD_MS + 1061), ("q/0/63", OLD_MS + 63)]

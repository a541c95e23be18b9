"""The ``_sdc`` names and the record-id format, shared by the spool job and the loader.

Stitch users know these names; the warehouse contract (docs/warehouse-contract.md) and the
batch format (docs/batch-format.md) are written in them. Each name and format is defined
here once: shaping writes them, the batch file types them, the loader stages, merges and
reports with them.
"""

from __future__ import annotations

PREFIX = "_sdc"

# system columns
RECORD_ID = "_sdc_record_id"  # the source message: RECORD_ID_FORMAT
SEQUENCE = "_sdc_sequence"  # the order of upserts
RECEIVED_AT = "_sdc_received_at"  # the message's queue (Kafka) time
BATCHED_AT = "_sdc_batched_at"  # the queue time by which its batch was complete
EXTRACTED_AT = "_sdc_extracted_at"
TABLE_VERSION = "_sdc_table_version"
MAP_VERSION = "_sdc_map_version"  # the version of the stream map that made the record
DELETED_AT = "_sdc_deleted_at"  # a source field of this name is the system column
REJECTED_AT = "_sdc_rejected_at"
LEVEL_ID = "_sdc_level_{}_id"  # child rows: position in the n-th enclosing array
SOURCE_KEY = "_sdc_source_key_{}"  # child rows: the root record's key value

# the stream (and table) of rejected records, per tenant; records no registered tenant can
# be named for belong to the tenant UNASSIGNED_TENANT
REJECTED = "_sdc_rejected"
UNASSIGNED_TENANT = "_unassigned"

# A record id names the queue message a record came from; a queue position
# (``topic/partition``) keys a batch's offset ranges. The topic may hold a "/" (a record id
# is split from the right).
RECORD_ID_FORMAT = "{topic}/{partition}/{offset}"


def record_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def queue_position(topic: str, partition: int) -> str:
    """``topic/partition``: the key of a batch's offset ranges (ledger ``offsets``)."""
    return f"{topic}/{partition}"


def partition_of(position: str) -> int:
    """The partition of a ``topic/partition`` key."""
    return int(position.rsplit("/", 1)[1])


def split_record_ids(ids):
    """(partition, offset) int64 arrays of an Arrow array of record ids; raises
    ``pyarrow.ArrowInvalid`` (or ``ArrowIndexError``) when one is not a queue record id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pieces = pc.split_pattern(ids, "/", max_splits=2, reverse=True)
    return (pc.cast(pc.list_element(pieces, 1), pa.int64()),
            pc.cast(pc.list_element(pieces, 2), pa.int64()))

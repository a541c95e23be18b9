"""The warehouse contract as data: system columns, catalog tables, types (version 3).

docs/warehouse-contract.md is the prose; golden tests pin both. A change that would alter
existing output is a new CONTRACT_VERSION.
"""

from __future__ import annotations

from spool import sdc
from spool.warehouse import CONTRACT_VERSION

# (column, logical type, max bytes for strings) — logical types map to SQL per dialect
ROOT_SYSTEM_COLUMNS = [
    (sdc.RECORD_ID, "string", 512),
    (sdc.SEQUENCE, "integer", 0),
    (sdc.RECEIVED_AT, "date-time", 0),
    (sdc.BATCHED_AT, "date-time", 0),
    (sdc.EXTRACTED_AT, "date-time", 0),
    (sdc.TABLE_VERSION, "integer", 0),
]
CHILD_SYSTEM_COLUMNS = [
    (sdc.RECORD_ID, "string", 512),
    (sdc.SEQUENCE, "integer", 0),
    (sdc.BATCHED_AT, "date-time", 0),
    (sdc.TABLE_VERSION, "integer", 0),
]
REJECTED_TABLE = sdc.REJECTED  # the rejected stream loads into the table of its name
REJECTED_COLUMNS = [
    (sdc.REJECTED_AT, "date-time", 0),
    ("table_name", "string", 1024),
    ("reason_code", "string", 64),
    ("reason", "string", 4096),
    ("record", "string", 65535),
    (sdc.RECORD_ID, "string", 512),
    (sdc.RECEIVED_AT, "date-time", 0),
    (sdc.BATCHED_AT, "date-time", 0),
]
LEVEL_COLUMN = sdc.LEVEL_ID
SOURCE_KEY_COLUMN = sdc.SOURCE_KEY
# columns a load works with but never writes (never in a user's table): arrival order, the
# tie-breaker of upserts; which batch of the load a row came from
STAGE_ORDINAL = "_sdc_row"
BATCH_INDEX = "_sdc_batch"
# the one table a load stages rows in before merging them, kept in the tenant schema, empty
# between loads: a slot number per target table of the load, then the table's columns as
# text, in order (v1, v2, ...); the merge casts them to the target's types. One stage for
# every table: a tenant with 10,000 tables has one helper, not 10,000, and a load one COPY.
STAGE_TABLE = "_sdc_stage"
STAGE_SLOT = "_sdc_slot"


def stage_column(i: int) -> str:
    """The stage's column for the ``i``-th (from 1) staged column of a table."""
    return f"v{i}"


# catalog tables in every tenant schema
CONTRACT_TABLE = "_sdc_contract"
TABLES_TABLE = "_sdc_tables"
COLUMNS_TABLE = "_sdc_columns"
LOAD_LOG_TABLE = "_sdc_load_log"
LOADS_TABLE = "_sdc_loads"  # v2: what each load did, per table
SCHEMA_CHANGES_TABLE = "_sdc_schema_changes"  # v2: every change a load applied to the schema
CATALOG = {
    CONTRACT_TABLE: [("version", "integer", 0), ("applied_at", "date-time", 0)],
    TABLES_TABLE: [("stream", "string", 1024), ("table_path", "string", 4096),
                   ("table_name", "string", 512), ("created_at", "date-time", 0)],
    COLUMNS_TABLE: [("table_name", "string", 512), ("source", "string", 4096),
                    ("json_type", "string", 32), ("column_name", "string", 512),
                    ("created_at", "date-time", 0)],
    LOAD_LOG_TABLE: [("batch_id", "string", 1024), ("stream", "string", 1024),
                     ("row_count", "integer", 0), ("loaded_at", "date-time", 0),
                     ("loader", "string", 256), ("load_id", "string", 64)],
    REJECTED_TABLE: REJECTED_COLUMNS,
    LOADS_TABLE: [("load_id", "string", 64), ("stream", "string", 1024),
                  ("table_name", "string", 512), ("rows_inserted", "integer", 0),
                  ("rows_updated", "integer", 0), ("rows_superseded", "integer", 0),
                  ("rows_retired", "integer", 0),
                  ("rows_rejected", "integer", 0), ("values_cut", "integer", 0),
                  ("min_received_at", "date-time", 0), ("max_received_at", "date-time", 0),
                  ("min_extracted_at", "date-time", 0), ("max_extracted_at", "date-time", 0),
                  ("batch_ids", "string", 65535), ("started_at", "date-time", 0),
                  ("finished_at", "date-time", 0), ("loader", "string", 256)],
    SCHEMA_CHANGES_TABLE: [("changed_at", "date-time", 0), ("load_id", "string", 64),
                           ("position", "integer", 0),
                           ("kind", "string", 64), ("stream", "string", 1024),
                           ("table_name", "string", 512), ("column_name", "string", 512),
                           ("source", "string", 4096), ("json_type", "string", 32),
                           ("old_type", "string", 64), ("new_type", "string", 64),
                           ("batch_id", "string", 1024), ("detail", "string", 4096),
                           ("contract_version", "integer", 0)],
}

# what a schema of an older contract version needs to become this one: (table, column)
# added to a table it already has (the new tables are created like in a new schema)
# (v3 also changes how a Singer stream's values are typed: that adds nothing here)
UPGRADES = {1: [(LOAD_LOG_TABLE, "load_id")], 2: [(LOADS_TABLE, "rows_superseded")]}
# the version that added a catalog table (the others are in every version): a schema of an
# older version got it created whole, so no upgrade adds columns to it
TABLE_SINCE = {LOADS_TABLE: 2, SCHEMA_CHANGES_TABLE: 2}

__all__ = ["CATALOG", "CONTRACT_VERSION"]

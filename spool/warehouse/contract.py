"""The warehouse contract as data: system columns, catalog tables, types (version 1).

docs/warehouse-contract.md is the prose; golden tests pin both. A change that would alter
existing output is a new CONTRACT_VERSION.
"""

from __future__ import annotations

from spool.warehouse import CONTRACT_VERSION

# (column, logical type, max bytes for strings) — logical types map to SQL per dialect
ROOT_SYSTEM_COLUMNS = [
    ("_sdc_record_id", "string", 512),
    ("_sdc_sequence", "integer", 0),
    ("_sdc_received_at", "date-time", 0),
    ("_sdc_batched_at", "date-time", 0),
    ("_sdc_extracted_at", "date-time", 0),
    ("_sdc_table_version", "integer", 0),
]
CHILD_SYSTEM_COLUMNS = [
    ("_sdc_record_id", "string", 512),
    ("_sdc_sequence", "integer", 0),
    ("_sdc_batched_at", "date-time", 0),
    ("_sdc_table_version", "integer", 0),
]
REJECTED_TABLE = "_sdc_rejected"
REJECTED_COLUMNS = [
    ("_sdc_rejected_at", "date-time", 0),
    ("table_name", "string", 1024),
    ("reason_code", "string", 64),
    ("reason", "string", 4096),
    ("record", "string", 65535),
    ("_sdc_record_id", "string", 512),
    ("_sdc_received_at", "date-time", 0),
    ("_sdc_batched_at", "date-time", 0),
]
LEVEL_COLUMN = "_sdc_level_{}_id"
SOURCE_KEY_COLUMN = "_sdc_source_key_{}"

# catalog tables in every tenant schema
CONTRACT_TABLE = "_sdc_contract"
TABLES_TABLE = "_sdc_tables"
COLUMNS_TABLE = "_sdc_columns"
LOAD_LOG_TABLE = "_sdc_load_log"
CATALOG = {
    CONTRACT_TABLE: [("version", "integer", 0), ("applied_at", "date-time", 0)],
    TABLES_TABLE: [("stream", "string", 1024), ("table_path", "string", 4096),
                   ("table_name", "string", 512), ("created_at", "date-time", 0)],
    COLUMNS_TABLE: [("table_name", "string", 512), ("source", "string", 4096),
                    ("json_type", "string", 32), ("column_name", "string", 512),
                    ("created_at", "date-time", 0)],
    LOAD_LOG_TABLE: [("batch_id", "string", 1024), ("stream", "string", 1024),
                     ("row_count", "integer", 0), ("loaded_at", "date-time", 0),
                     ("loader", "string", 256)],
    REJECTED_TABLE: REJECTED_COLUMNS,
}

__all__ = ["CATALOG", "CONTRACT_VERSION"]

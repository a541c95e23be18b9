"""What a load did, as data: per-table reports and the schema changes it applied.

A load (one warehouse transaction) fills these while it runs; they are written to the
tenant schema in that transaction (``_sdc_loads``, ``_sdc_schema_changes``), and handed to
the caller, which records them in the ledger (``spool loads``, ``spool status``) and turns
them into webhook events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

# the kinds of change a load applies to a tenant schema (docs/warehouse-contract.md)
TABLE_CREATED = "table_created"
CHILD_TABLE_CREATED = "child_table_created"
COLUMN_ADDED = "column_added"
SPLIT_COLUMN_ADDED = "split_column_added"
COLUMN_WIDENED = "column_widened"
VERSION_ACTIVATED = "table_version_activated"
VIEW_REBUILT = "view_rebuilt"
MAP_CHANGED = "map_changed"  # a newer version of a stream map made the stream's records
# v3: values of a field's type go to the column of the type its Singer schema declares,
# no longer to the column of their own type that an earlier load made
DECLARED_TYPE_APPLIED = "declared_type_applied"
CHANGE_KINDS = (TABLE_CREATED, CHILD_TABLE_CREATED, COLUMN_ADDED, SPLIT_COLUMN_ADDED,
                COLUMN_WIDENED, VERSION_ACTIVATED, VIEW_REBUILT, MAP_CHANGED,
                DECLARED_TYPE_APPLIED)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class TableReport:
    """One table's part of one load."""

    load_id: str
    stream: str
    table: str
    rows_inserted: int = 0  # rows that were not there before (new keys, appended rows)
    rows_updated: int = 0  # stored rows replaced by a newer record of the same key
    rows_superseded: int = 0  # records that lost to a stored row of their key with a higher
    # sequence: nothing of theirs was written
    rows_retired: int = 0  # rows of older table versions deleted after ACTIVATE_VERSION
    rows_rejected: int = 0  # records of the stream that went to _sdc_rejected instead
    values_cut: int = 0  # values changed to fit the warehouse (reported in _sdc_rejected)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # reason code → count
    min_received_at: datetime | None = None
    max_received_at: datetime | None = None
    min_extracted_at: datetime | None = None
    max_extracted_at: datetime | None = None
    batch_ids: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration_ms(self) -> int:
        if self.started_at is None or self.finished_at is None:
            return 0
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    def to_json(self) -> dict:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = _iso(v)
        out["duration_ms"] = self.duration_ms
        return out


@dataclass
class SchemaChange:
    """One change a load applied to a tenant schema."""

    load_id: str
    kind: str  # one of CHANGE_KINDS
    stream: str
    table: str
    column: str | None = None
    source_path: str | None = None  # the field path (JSON list) or table path it came from
    json_type: str | None = None
    old_type: str | None = None
    new_type: str | None = None
    batch_id: str | None = None  # the batch that caused it (first of the load for its stream)
    detail: str | None = None  # e.g. the table version activated, the view rebuilt
    changed_at: datetime | None = None
    contract_version: int = 0

    def to_json(self) -> dict:
        out = asdict(self)
        out["changed_at"] = _iso(self.changed_at)
        return out

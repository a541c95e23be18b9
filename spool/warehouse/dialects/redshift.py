"""Redshift: PostgreSQL's SQL with VARCHAR limits, no indexes and S3 staging.

Only the parts that differ are subclassed; its limits are data (:class:`Capabilities`).
"""

from __future__ import annotations

from spool.warehouse.contract import LOAD_LOG_TABLE
from spool.warehouse.dialects.base import Capabilities, Dialect, TransientError, qualified, quote
from spool.warehouse.dialects.postgres import (
    PostgresBookkeeping,
    PostgresErrors,
    PostgresMerge,
    PostgresTypes,
    PostgresViews,
    UncountedCatalog,
    UnindexedDdl,
    UnindexedStaging,
)

VARCHAR_LADDER = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65535)


def varchar_width(max_bytes: int) -> int:
    """The smallest width of the ladder 32, 64, ... 65535 that holds ``max_bytes``."""
    for width in VARCHAR_LADDER:
        if max_bytes <= width:
            return width
    return VARCHAR_LADDER[-1]


class RedshiftTypes(PostgresTypes):
    SQL_TYPES = {**PostgresTypes.SQL_TYPES, "string": "varchar"}

    def column_type(self, json_type: str, max_bytes: int = 0) -> str:
        if json_type == "string":
            return f"varchar({varchar_width(max_bytes)})"
        return self.SQL_TYPES[json_type]

    def wider_type(self, current_sql_type: str, json_type: str, max_bytes: int) -> str | None:
        if json_type != "string" or not current_sql_type.lower().startswith(
                ("varchar", "character varying")):
            return None
        current = int(current_sql_type[current_sql_type.index("(") + 1:-1])
        wanted = varchar_width(max_bytes)
        return f"varchar({wanted})" if wanted > current else None


class RedshiftErrors(PostgresErrors):
    # Redshift reports these as internal errors (XX000); they pass on their own
    TRANSIENT_MESSAGES = ("serializable isolation violation", "s3serviceexception",
                          "slow down", "please try again", "concurrent transaction")

    def classify(self, exc: BaseException) -> type[Exception]:
        text = str(exc).lower()
        if any(m in text for m in self.TRANSIENT_MESSAGES):
            return TransientError
        return super().classify(exc)


class RedshiftDdl(UnindexedDdl):
    """Redshift has no indexes (sort and distribution keys are a user's to choose)."""


class RedshiftStaging(UnindexedStaging):
    CREATE_STAGE = "CREATE TABLE {table} ({columns}) BACKUP NO"

    def clear(self, table: str) -> str:
        return f"DELETE FROM {table}"  # TRUNCATE would commit the load's transaction

    def copy_s3(self, target: str, columns: list[str]) -> str:
        """``target``: a table already quoted; parameters: manifest URI, IAM role."""
        cols = ", ".join(quote(c) for c in columns)
        # EMPTYASNULL: Arrow writes a null as an empty field; without it Redshift would load
        # '' into every VARCHAR a record lacks (an empty string then loads as NULL too)
        return (f"COPY {target} ({cols}) FROM %s IAM_ROLE %s MANIFEST "
                "CSV GZIP TIMEFORMAT 'auto' EMPTYASNULL ACCEPTINVCHARS")


class RedshiftBookkeeping(PostgresBookkeeping):
    def lock_schema(self, schema: str) -> tuple[str, tuple]:
        """No advisory locks: the load log's table lock serialises loads of a schema."""
        return f"LOCK {qualified(schema, LOAD_LOG_TABLE)}", ()


REDSHIFT = Dialect(
    name="redshift",
    caps=Capabilities(identifier_bytes=127, max_varchar_bytes=65535,
                      staging="s3_manifest_csv_gzip", advisory_locks=False, indexes=False),
    types=RedshiftTypes(), ddl=RedshiftDdl(), staging=RedshiftStaging(),
    merge=PostgresMerge(), bookkeeping=RedshiftBookkeeping(), catalog=UncountedCatalog(),
    views=PostgresViews(), errors=RedshiftErrors())

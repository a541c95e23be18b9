"""What every dialect shares: identifier quoting, error classes, capabilities, composition.

A dialect is composed of small parts, one per concern, each a class of statement builders
(SQL text only, no connection): ``types`` (contract types → SQL types, widening), ``ddl``
(schemas, tables, columns, indexes), ``staging`` (helper tables and COPY), ``merge`` (upserts
and deduplicated appends), ``bookkeeping`` (Spool's ``_sdc_*`` tables in the tenant schema),
``catalog`` (what the warehouse's own catalog says), ``views`` (rebuilding dependent views)
and ``errors`` (driver errors → transient or terminal). A new warehouse subclasses the parts
that differ and states its limits as :class:`Capabilities`.

Every identifier goes through :func:`quote` and every value through driver parameters or
COPY.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parts' reference implementations; dialects subclass them
    from spool.warehouse.dialects.postgres import (
        PostgresBookkeeping,
        PostgresCatalog,
        PostgresDdl,
        PostgresErrors,
        PostgresMerge,
        PostgresStaging,
        PostgresTypes,
        PostgresViews,
    )


def quote(identifier: str) -> str:
    """The one way an identifier enters SQL: double-quoted, inner quotes doubled."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot contain NUL")
    return '"' + identifier.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}"


class TransientError(Exception):
    """Retry later: the warehouse is unreachable, busy or restarting."""


class TerminalError(Exception):
    """Retrying the same batch will fail the same way; it needs a person."""


@dataclass(frozen=True)
class Capabilities:
    identifier_bytes: int
    max_varchar_bytes: int | None  # None: unbounded text
    staging: str  # "copy_stdin", "s3_manifest_csv_gzip", "arrow" or "parquet_copy_into"
    advisory_locks: bool
    indexes: bool
    # identifiers equal without regard to case, even quoted (DuckDB): a user's "Orders"
    # takes the name orders
    case_insensitive_names: bool = False
    # DDL runs inside the load's transaction (PostgreSQL, Redshift, DuckDB); Snowflake commits
    # before and after every DDL statement, so a load there records its names first
    transactional_ddl: bool = True


@dataclass(frozen=True)
class Dialect:
    name: str
    caps: Capabilities
    types: PostgresTypes
    ddl: PostgresDdl
    staging: PostgresStaging
    merge: PostgresMerge
    bookkeeping: PostgresBookkeeping
    catalog: PostgresCatalog
    views: PostgresViews
    errors: PostgresErrors

    def classify(self, exc: BaseException) -> type[Exception]:
        """TransientError or TerminalError: how the loader treats ``exc``."""
        return self.errors.classify(exc)

"""Warehouse dialects: PostgreSQL, and Redshift, DuckDB and Snowflake as its variants with
declared limits.

SQL text is built only in this package (see base for how a dialect is composed). ``DIALECTS``
maps a destination's warehouse kind to its dialect.
"""

from spool.warehouse.dialects.base import (
    Capabilities,
    Dialect,
    TerminalError,
    TransientError,
    qualified,
    quote,
)
from spool.warehouse.dialects.duckdb import DUCKDB
from spool.warehouse.dialects.postgres import POSTGRES
from spool.warehouse.dialects.redshift import REDSHIFT
from spool.warehouse.dialects.snowflake import SNOWFLAKE

DIALECTS: dict[str, Dialect] = {"postgres": POSTGRES, "redshift": REDSHIFT, "duckdb": DUCKDB,
                                "snowflake": SNOWFLAKE}

__all__ = ["DIALECTS", "DUCKDB", "POSTGRES", "REDSHIFT", "SNOWFLAKE", "Capabilities", "Dialect",
           "TerminalError", "TransientError", "qualified", "quote"]

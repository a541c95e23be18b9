"""Warehouse dialects: PostgreSQL, and Redshift as its variant with declared limits.

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
from spool.warehouse.dialects.postgres import POSTGRES
from spool.warehouse.dialects.redshift import REDSHIFT

DIALECTS: dict[str, Dialect] = {"postgres": POSTGRES, "redshift": REDSHIFT}

__all__ = ["DIALECTS", "POSTGRES", "REDSHIFT", "Capabilities", "Dialect", "TerminalError",
           "TransientError", "qualified", "quote"]

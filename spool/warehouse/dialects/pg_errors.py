"""PostgreSQL's errors (and Redshift's, which speaks its protocol): what waiting fixes
(a transient outage, retried with backoff) and what it cannot (terminal: the batch FAILED
with the reason), and of the terminal ones, what refuses the whole destination.
"""

from __future__ import annotations

import re

import psycopg2
import psycopg2.errorcodes as codes

from spool.warehouse.dialects.base import TerminalError, TransientError

TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")  # connection, resources, operator, tx
# lock timeout, cancelled statement, a replica still read-only after a failover
TRANSIENT_SQLSTATES = {codes.LOCK_NOT_AVAILABLE, codes.QUERY_CANCELED,
                       codes.READ_ONLY_SQL_TRANSACTION}
# what waiting cannot fix: credentials refused (class 28), a missing privilege, database
# or schema; a connection refused this way carries no SQLSTATE, so its message decides
TERMINAL_SQLSTATE_CLASSES = ("28",)
TERMINAL_SQLSTATES = {codes.INSUFFICIENT_PRIVILEGE, codes.INVALID_CATALOG_NAME,
                      codes.INVALID_SCHEMA_NAME}
# of those, what refuses the whole destination (a privilege on one table is that table's)
_WHOLE = re.compile(r"permission denied for (database|schema)|schema \S+ does not exist")
TERMINAL_CONNECT_MESSAGES = ("fe_sendauth", "password authentication failed",
                             "no pg_hba.conf entry", "authentication failed",
                             "permission denied")
_MISSING = re.compile(r'(database|role|schema) "[^"]*" does not exist')


class PostgresErrors:
    def classify(self, exc: BaseException) -> type[Exception]:
        if isinstance(exc, (TransientError, TerminalError)):
            return type(exc)
        if self.refused(exc):
            return TerminalError
        if isinstance(exc, psycopg2.OperationalError) and getattr(exc, "pgcode", None) is None:
            return TransientError  # could not connect, connection lost
        if isinstance(exc, psycopg2.InterfaceError):
            return TransientError
        code = getattr(exc, "pgcode", None) or ""
        if code in TERMINAL_SQLSTATES or code[:2] in TERMINAL_SQLSTATE_CLASSES:
            return TerminalError  # a privilege on one table: that table's batches fail
        if code in TRANSIENT_SQLSTATES or code[:2] in TRANSIENT_SQLSTATE_CLASSES:
            return TransientError
        return TerminalError

    @staticmethod
    def refused(exc: BaseException) -> bool:
        """The warehouse refuses the destination itself: its credentials, the database,
        the schema or the privilege to make it. No batch can load until a person fixes
        it, so all its batches fail at once (with the reason), never retried for ever."""
        if not isinstance(exc, psycopg2.Error):
            return False
        code = exc.pgcode or ""
        text = str(exc).lower()
        if code[:2] in TERMINAL_SQLSTATE_CLASSES or code == codes.INVALID_CATALOG_NAME:
            return True
        if code in TERMINAL_SQLSTATES:
            return bool(_WHOLE.search(text))
        if code:
            return False
        return any(m in text for m in TERMINAL_CONNECT_MESSAGES) or bool(_MISSING.search(text))

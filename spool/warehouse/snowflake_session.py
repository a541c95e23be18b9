"""A Snowflake connection as the loader meets a warehouse: the little of psycopg2's interface
the load uses, over the Snowflake connector, so one load runs unchanged on Snowflake.

``with conn:`` ends a transaction (committed, or rolled back on an exception); the
connection runs with autocommit off, and Snowflake itself commits before and after each DDL
statement (see spool.warehouse.dialects.snowflake). A cursor sends SQL with psycopg2's
placeholders, whose values it renders as Snowflake literals on the client (as psycopg2 and
the connector's own ``pyformat`` do), so ``Statements`` and ``execute_values`` work as they
do for PostgreSQL; several statements at once go through the connector's ``execute_string``,
which splits them where Snowflake would.

A warehouse is named by a URL, given by reference (``--dsn env:NAME``)::

    snowflake://USER:PASSWORD@ACCOUNT/DATABASE?warehouse=WH&role=ROLE

Other query parameters are passed to ``snowflake.connector.connect`` as they are
(``authenticator``, ``private_key_file``, ``host``, ``port``, ``protocol``, ...); those
in upper case are session parameters (``LOCK_TIMEOUT=60``).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import parse_qsl, unquote, urlsplit

import snowflake.connector

from spool.warehouse.duckdb_session import RenderingCursor
from spool.warehouse.duckdb_session import render as _render

# connect() settings that are numbers, when given in the URL
_INTEGERS = {"port", "login_timeout", "network_timeout"}


def literal(value) -> str:
    """``value`` as a Snowflake SQL literal (backslash is an escape in its strings)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"CAST('{value}' AS FLOAT)"
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a value sent to Snowflake cannot hold NUL")
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, datetime):
        kind = "TIMESTAMP_TZ" if value.tzinfo else "TIMESTAMP_NTZ"
        return f"CAST('{value.isoformat()}' AS {kind})"
    if isinstance(value, date):
        return f"CAST('{value.isoformat()}' AS DATE)"
    if isinstance(value, tuple):  # psycopg2 renders a tuple as a list for IN
        return "(" + ", ".join(literal(v) for v in value) + ")"
    raise TypeError(f"no Snowflake literal for a {type(value).__name__}")


def render(sql: str, params) -> str:
    """``sql`` with its psycopg2 placeholders replaced by Snowflake literals of ``params``."""
    return _render(sql, params, literal)


def connect_args(url: str) -> dict:
    """``snowflake.connector.connect`` arguments from a ``snowflake://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "snowflake" or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("a Snowflake warehouse is a URL snowflake://USER:PASSWORD@ACCOUNT/"
                         "DATABASE?warehouse=WH&role=ROLE (the database holds the tenant "
                         "schemas)")
    args: dict = {"account": parts.hostname, "user": unquote(parts.username or ""),
                  "database": unquote(parts.path.strip("/"))}
    if parts.password:
        args["password"] = unquote(parts.password)
    session: dict = {}
    for name, value in parse_qsl(parts.query):
        if name.isupper():
            session[name] = int(value) if value.isdigit() else value
        else:
            args[name] = int(value) if name in _INTEGERS else value
    if session:
        args["session_parameters"] = session
    return args


class SnowflakeCursor(RenderingCursor):
    literal = staticmethod(literal)

    def __init__(self, conn) -> None:
        self._conn = conn
        self._cur = None
        self.description = None

    def execute(self, sql, params=None) -> None:
        text = self.rendered(sql, params)
        if ";\n" in text:  # statements sent together (Statements): split as Snowflake does
            cursors = list(self._conn.execute_string(text))
            self._cur = cursors[-1] if cursors else None
        else:
            self._cur = self._conn.cursor()
            self._cur.execute(text)
        self.description = self._cur.description if self._cur is not None else None

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self._cur.fetchall()]

    def fetchone(self):
        row = self._cur.fetchone()
        return None if row is None else tuple(row)


class SnowflakeConnection:
    """One Snowflake session, autocommit off.

    Quoted identifiers keep their case in this session whatever the account says
    (``QUOTED_IDENTIFIERS_IGNORE_CASE``): with it on, the lower-case names of the contract
    would be stored in upper case, and names made before would no longer resolve.

    A statement waits at most ``LOCK_TIMEOUT`` (120 s unless the URL says otherwise) for a
    lock, then fails and the load is retried later: Snowflake's default is 12 hours, and a
    loader killed mid-load leaves its transaction detached, holding its locks, until it is
    aborted (``SYSTEM$ABORT_TRANSACTION``) or has been idle for four hours."""

    SESSION = {"QUOTED_IDENTIFIERS_IGNORE_CASE": False, "LOCK_TIMEOUT": 120}

    def __init__(self, url: str, login_timeout: int = 10,
                 application: str = "spool-loader") -> None:
        args = {"login_timeout": login_timeout, **connect_args(url)}
        session = {**self.SESSION, **args.pop("session_parameters", {}),
                   "QUOTED_IDENTIFIERS_IGNORE_CASE": False}
        self._conn = snowflake.connector.connect(autocommit=False, application=application,
                                                 session_parameters=session, **args)

    @property
    def closed(self) -> bool:
        return self._conn.is_closed()

    def cursor(self) -> SnowflakeCursor:
        return SnowflakeCursor(self._conn)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_rest) -> None:
        if exc_type:
            self._conn.rollback()
        else:
            self._conn.commit()

    def close(self) -> None:
        if not self.closed:
            self._conn.close()

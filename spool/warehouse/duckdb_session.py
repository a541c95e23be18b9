"""A DuckDB database as the loader meets a warehouse: the little of psycopg2's interface the
load uses, so one load transaction runs unchanged on DuckDB.

``with conn:`` is one transaction (committed, or rolled back on an exception); a cursor sends
SQL with psycopg2's placeholders (``%s``, ``%(name)s``), whose values it renders as SQL
literals on the client, as psycopg2 itself does (``mogrify``), so ``Statements`` and
``execute_values`` work as they do for PostgreSQL. Only the value types a load sends are
rendered; anything else is refused rather than guessed.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal

import duckdb

_PLACEHOLDER = re.compile(r"%%|%s|%\((\w+)\)s")


def literal(value) -> str:
    """``value`` as a DuckDB SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'::DOUBLE"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("DuckDB strings cannot hold NUL")
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo else "TIMESTAMP"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, tuple):  # psycopg2 renders a tuple as a list for IN
        return "(" + ", ".join(literal(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"no DuckDB literal for a {type(value).__name__}")


def render(sql: str, params, literal=literal) -> str:
    """``sql`` with its placeholders replaced by ``params`` (a sequence or a mapping), each
    value written by ``literal`` (DuckDB's, unless another warehouse's is given)."""
    if params is None:
        return sql
    values = iter(params) if not isinstance(params, dict) else None

    def one(match: re.Match) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) is not None:
            return literal(params[match.group(1)])
        return literal(next(values))

    return _PLACEHOLDER.sub(one, sql)


class _Encoding:
    encoding = "UTF8"  # psycopg2.extras.execute_values asks the connection


class RenderingCursor:
    """What a psycopg2-like cursor over another driver shares: values rendered on the
    client with the warehouse's ``literal`` (a staticmethod of the subclass)."""

    connection = _Encoding()
    literal = staticmethod(literal)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def rendered(self, sql, params=None) -> str:
        return render(sql.decode() if isinstance(sql, bytes) else sql, params, self.literal)

    def mogrify(self, sql, params=None) -> bytes:
        return self.rendered(sql, params).encode()


class DuckDBCursor(RenderingCursor):
    def __init__(self, db) -> None:
        self._db = db
        self.description = None

    def execute(self, sql, params=None) -> None:
        self._db.execute(self.rendered(sql, params))
        self.description = self._db.description

    def execute_with_arrow(self, name: str, rows, sql: str) -> None:
        """Run ``sql`` with the pyarrow Table ``rows`` readable as the view ``name``."""
        self._db.register(name, rows)
        try:
            self._db.execute(sql)
        finally:
            self._db.unregister(name)

    def fetchall(self) -> list[tuple]:
        return self._db.fetchall()

    def fetchone(self):
        return self._db.fetchone()


class DuckDBConnection:
    """One DuckDB database file (or ``:memory:``), one writer at a time."""

    # the file is attached under a name no Spool schema can have: DuckDB names a database
    # after its file, and a file acme.duckdb holding schema acme makes acme.t ambiguous
    CATALOG = "spool-warehouse"

    def __init__(self, path: str, read_only: bool = False) -> None:
        self.path = path
        self._db = duckdb.connect()
        mode = " (READ_ONLY)" if read_only else ""
        self._db.execute(f'ATTACH {literal(path)} AS "{self.CATALOG}"{mode}')
        self._db.execute(f'USE "{self.CATALOG}"')
        self.closed = False

    def cursor(self) -> DuckDBCursor:
        return DuckDBCursor(self._db)

    def __enter__(self):
        self._db.execute("BEGIN TRANSACTION")
        return self

    def __exit__(self, exc_type, *_rest) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")

    def close(self) -> None:
        if not self.closed:
            self._db.close()
            self.closed = True

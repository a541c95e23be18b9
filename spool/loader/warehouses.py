"""The warehouses a loader talks to: one open connection per warehouse, reused.

Destinations with the same connection settings share a connection (and the warehouse
:class:`~spool.warehouse.load.Loader` bound to it, which remembers the schemas it made
ready). A connection that failed is discarded; the next load opens a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path

import psycopg2

from spool import secrets
from spool.objectstore import ObjectStore
from spool.warehouse.destination import Destination
from spool.warehouse.dialects import Dialect, TerminalError
from spool.warehouse.duckdb_session import DuckDBConnection
from spool.warehouse.load import Loader
from spool.warehouse.snowflake_session import SnowflakeConnection
from spool.warehouse.stagers import stager_for


class Warehouses:
    def __init__(self, store: ObjectStore, dialects: Mapping[str, Dialect], name: str,
                 connect_timeout: int = 5, connect: Callable = psycopg2.connect) -> None:
        self.store = store
        self.dialects = dialects
        self.name = name  # recorded in each load log row: which loader committed it
        self.connect_timeout = connect_timeout
        self.connect = connect
        self._open: dict[str, tuple[object, dict[str, Loader]]] = {}

    def session(self, dest: Destination) -> tuple[object, Loader]:
        """(connection, loader) for ``dest``; TerminalError if its secrets cannot be read.
        The loader stages as ``dest`` says (its secrets read again for every load)."""
        try:
            stager = stager_for(dest, self.store)
            found = self._open.get(dest.key)
            if found is None or found[0].closed:
                if dest.kind == "duckdb":
                    Path(dest.path).parent.mkdir(parents=True, exist_ok=True)
                    conn = DuckDBConnection(dest.path)
                elif dest.kind == "snowflake":
                    conn = SnowflakeConnection(secrets.resolve(dest.dsn),
                                               login_timeout=self.connect_timeout)
                else:
                    conn = self.connect(secrets.resolve(dest.dsn),
                                        connect_timeout=self.connect_timeout,
                                        application_name="spool-loader")
                found = self._open[dest.key] = (conn, {})
        except (secrets.SecretError, ValueError) as exc:  # ValueError: a malformed URL
            raise TerminalError(str(exc)) from None
        conn, loaders = found
        # one warehouse loader per kind of warehouse on a connection (a test may reach one
        # PostgreSQL with PostgreSQL's and with Redshift's SQL)
        loader = loaders.get(dest.kind)
        if loader is None:
            loader = loaders[dest.kind] = Loader(self.dialects[dest.kind], stager,
                                                 name=self.name)
        loader.stager = stager
        return conn, loader

    def discard(self, dest: Destination) -> None:
        found = self._open.pop(dest.key, None)
        if found is not None and not found[0].closed:
            with contextlib.suppress(Exception):  # closing what failed: nothing to keep
                found[0].close()

    def close(self) -> None:
        for conn, _loader in self._open.values():
            if not conn.closed:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
        self._open = {}

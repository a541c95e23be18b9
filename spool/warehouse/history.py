"""Reading a tenant schema's own history back: the schema change log, for ``spool changes``.

One short read-only connection per tenant warehouse; a warehouse that cannot be reached,
or a schema no version-2 loader has written yet, is said in one line, not a traceback.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import psycopg2

from spool import secrets
from spool.warehouse.destination import Destination
from spool.warehouse.dialects import DIALECTS
from spool.warehouse.duckdb_session import DuckDBConnection

CHANGE_COLUMNS = ["changed", "tenant", "table", "kind", "column", "old_type", "new_type",
                  "batch", "detail"]


class HistoryError(Exception):
    """The tenant's warehouse could not be read; the message says why."""


def schema_changes(dest: Destination, table: str | None = None,
                   since: datetime | None = None, limit: int = 100,
                   connect_timeout: int = 5) -> list[tuple]:
    """The newest ``limit`` rows of the tenant's ``_sdc_schema_changes`` (``CHANGE_COLUMNS``),
    newest first; none if the schema has no log yet."""
    d = DIALECTS[dest.kind]
    errors: tuple = (psycopg2.Error, duckdb.Error)
    if dest.kind == "snowflake":  # imported only here: the connector takes 0.3 s to import
        import snowflake.connector.errors as sf_errors

        from spool.warehouse.snowflake_session import SnowflakeConnection
        errors += (sf_errors.Error,)
    try:
        if dest.kind == "duckdb":  # read-only: a loader may open the file meanwhile
            conn = DuckDBConnection(dest.path, read_only=True)
        elif dest.kind == "snowflake":
            conn = SnowflakeConnection(secrets.resolve(dest.dsn), login_timeout=connect_timeout,
                                       application="spool-cli")
        else:
            conn = psycopg2.connect(secrets.resolve(dest.dsn), connect_timeout=connect_timeout,
                                    application_name="spool-cli")
    except (*errors, secrets.SecretError, ValueError) as exc:
        raise HistoryError(f"cannot reach the warehouse of tenant {dest.tenant_id}: "
                           f"{secrets.redact(str(exc)).strip()}") from None
    try:
        with conn, conn.cursor() as cur:
            cur.execute(d.catalog.relations(), (dest.schema,))
            if "_sdc_schema_changes" not in {r[0] for r in cur.fetchall()}:
                return []
            cur.execute(d.bookkeeping.select_schema_changes(dest.schema),
                        {"table": table, "since": since, "limit": limit})
            return [(at, dest.tenant_id, *rest) for at, *rest in cur.fetchall()]
    except errors as exc:
        raise HistoryError(f"cannot read the schema change log of tenant {dest.tenant_id} "
                           f"({dest.schema}): {secrets.redact(str(exc)).strip()}") from None
    finally:
        conn.close()

"""Can the loader reach a tenant's destination? Asked by ``spool tenants check`` and, as
warnings, by ``spool tenants add|update`` (no SQL in the CLI: it is here).

:func:`probe` does what a load does first, and nothing it does not: resolve the secrets,
connect, and ask whether the schema can be made (or exists and takes new tables). It
writes nothing (a DuckDB file's folder is made, as the loader would make it), and opens
the file only if it exists, read-only. :func:`warnings`
adds what is worth a word before any load: a DSN's variable unset here, a DSN without a
password.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg2
from psycopg2.extensions import parse_dsn

from spool import secrets
from spool.warehouse.destination import Destination
from spool.warehouse.duckdb_session import DuckDBConnection

# the schema exists and takes new tables, or the database lets the user make it
CAN_CREATE = """SELECT CASE WHEN n.oid IS NULL THEN has_database_privilege(current_database(),
                                                                        'CREATE')
                            ELSE has_schema_privilege(n.nspname, 'CREATE') END
                FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = %s"""


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return secrets.redact(f"{type(exc).__name__}: {text}")[:300]


def probe(dest: Destination, connect_timeout: int = 5) -> str | None:
    """Why the loader could not load into ``dest`` now, in one line; None when it could."""
    problem = dest.problem()
    if problem or dest.kind == "none":
        return problem
    if dest.kind == "duckdb":
        return _probe_duckdb(dest)
    try:
        dsn = secrets.resolve(dest.dsn)
    except secrets.SecretError as exc:
        return str(exc)
    if dest.kind == "snowflake":
        return _probe_snowflake(dest, dsn, connect_timeout)
    try:
        conn = psycopg2.connect(dsn, connect_timeout=connect_timeout,
                                application_name="spool-cli")
    except (psycopg2.Error, ValueError) as exc:
        return f"cannot connect: {_first_line(exc)}"
    try:
        with conn.cursor() as cur:
            cur.execute(CAN_CREATE, (dest.schema,))
            if not cur.fetchone()[0]:
                return (f"the user may not create tables in schema {dest.schema!r} (nor the "
                        "schema): GRANT CREATE on it, or on the database")
    except psycopg2.Error as exc:
        return f"connected, but {_first_line(exc)}"
    finally:
        conn.close()
    return None


def _probe_duckdb(dest: Destination) -> str | None:
    path = Path(dest.path)
    try:  # as the loader does before its first load: the folder made, a file written in it
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror or exc} ({exc.filename or path.parent})"
    if not path.exists():
        return None  # the first load creates it
    if not os.access(path, os.R_OK | os.W_OK):
        return f"cannot write {path}: permission denied"
    try:
        DuckDBConnection(str(path), read_only=True).close()
    except Exception as exc:  # noqa: BLE001 - any reason the file cannot be opened is said
        text = str(exc).lower()
        if "lock" in text:
            return None  # a loader has it open right now: it is reachable
        return f"cannot open {path}: {_first_line(exc)}"
    return None


def _probe_snowflake(dest: Destination, url: str, connect_timeout: int) -> str | None:
    from spool.warehouse.snowflake_session import SnowflakeConnection

    try:
        conn = SnowflakeConnection(url, login_timeout=connect_timeout, application="spool-cli")
    except Exception as exc:  # noqa: BLE001 - the connector's errors have no common base here
        return f"cannot connect: {_first_line(exc)}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        return f"connected, but {_first_line(exc)}"
    finally:
        conn.close()
    return None


def warnings(dest: Destination, connect_timeout: int = 5) -> list[str]:
    """What may keep the loader from loading into ``dest``, as seen from here: the DSN's
    variable unset, a DSN without a password, a warehouse that does not answer."""
    if dest.kind in ("none", "duckdb"):
        problem = probe(dest, connect_timeout) if dest.kind == "duckdb" else None
        return [problem] if problem else []
    ref = dest.dsn or ""
    try:
        dsn = secrets.resolve(ref)
    except secrets.SecretError as exc:
        return [f"{exc}: set it wherever the loader runs (the loader reads it there)"]
    out = []
    if not _has_password(dest.kind, dsn):
        out.append(f"the DSN in {ref} has no password: the warehouse will refuse the loader "
                   "unless it trusts this host, or PGPASSWORD or a .pgpass file gives one")
    problem = probe(dest, connect_timeout)
    if problem:
        out.append(f"the warehouse does not answer as the loader needs: {problem}")
    return out


def _has_password(kind: str, dsn: str) -> bool:
    if kind == "snowflake":
        from urllib.parse import urlsplit

        return bool(urlsplit(dsn).password) or "authenticator" in dsn.lower() \
            or "private_key" in dsn.lower()
    try:
        return bool(parse_dsn(dsn).get("password")) or bool(os.environ.get("PGPASSWORD"))
    except psycopg2.ProgrammingError:
        return True  # a malformed DSN: probe() says so

"""A tenant's destination: which warehouse, how to reach it, which schema, how to stage.

One type for both ends of a registration: ``spool tenants add`` builds it with
:meth:`Destination.register` (which refuses what could never load, naming the flag to fix),
and the loader builds it from the registry with :meth:`Destination.from_record` and asks
:meth:`Destination.problem` before it touches a batch file. Secrets are references
(``env:NAME``, ``file:/path``), resolved only where a connection is made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from spool.warehouse.naming import segment

KINDS = ("postgres", "redshift", "duckdb", "snowflake", "none")
# stage rows through the warehouse connection (COPY FROM STDIN) even where the warehouse
# would stage on S3: Redshift's SQL run on a PostgreSQL, in tests
COPY_STDIN = "copy_stdin"
_LITERAL_SECRET = re.compile(r"://[^/@\s]*:[^@\s]+@|password\s*=", re.I)
# a schema name every warehouse takes as it is: no quoting surprises in users' own SQL
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# a new tenant's id: the same, so it is its own default schema, a plain word in envelopes,
# Singer headers and batch keys (tenants registered before names were checked keep theirs)
TENANT_PATTERN = "[a-z_][a-z0-9_]{0,62}"
# a Snowflake storage integration: an account-level name, written into COPY as it is
_INTEGRATION = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,254}")


class DestinationError(ValueError):
    """A registration no load can use; the message says what to change."""


def default_schema(tenant: str) -> str:
    """A tenant's schema unless it names one: its id, normalised like a table name."""
    return segment(tenant, empty="tenant")


def tenant_name_problem(tenant: str) -> str | None:
    """Why ``tenant`` cannot be a new tenant's id, or None when it can."""
    if re.fullmatch(TENANT_PATTERN, tenant):
        return None
    return (f"tenant name {tenant!r} does not match {TENANT_PATTERN}: use lower-case letters, "
            "digits and _, starting with a letter or _, at most 63 characters; for example "
            f"{default_schema(tenant)[:63]}")


@dataclass(frozen=True)
class Destination:
    tenant_id: str
    kind: str  # one of KINDS
    schema: str
    connection: dict = field(default_factory=dict)  # dsn, staging_uri, iam_role, staging_mode
    load_options: dict = field(default_factory=dict)

    @property
    def dsn(self) -> str | None:
        return self.connection.get("dsn")

    @property
    def path(self) -> str | None:
        """DuckDB: the database file."""
        return self.connection.get("path")

    @property
    def exclusive(self) -> bool:
        """One writing process at a time (a DuckDB file): a loader holds it only while it
        loads, so that other loader processes get their turn."""
        return self.kind == "duckdb"

    @property
    def stages_on_s3(self) -> bool:
        """Rows reach the warehouse as staged files on S3 (Redshift's COPY), not through
        the connection."""
        return self.kind == "redshift" and self.connection.get("staging_mode") != COPY_STDIN

    @property
    def key(self) -> str:
        """The same warehouse, whichever tenant: destinations with equal keys share a
        connection."""
        return json.dumps(self.connection, sort_keys=True)

    @classmethod
    def from_record(cls, record) -> Destination:
        """From a registry row (spool.ledger.registry.TenantRecord)."""
        return cls(record.tenant_id, record.destination_kind,
                   record.schema_name or default_schema(record.tenant_id),
                   dict(record.connection), dict(record.load_options))

    @classmethod
    def register(cls, tenant: str, kind: str = "none", dsn: str | None = None,
                 schema: str | None = None, staging_uri: str | None = None,
                 iam_role: str | None = None, path: str | None = None,
                 storage_integration: str | None = None) -> Destination:
        """A new registration, checked: raises DestinationError naming the flag to fix."""
        if kind not in KINDS:
            raise DestinationError(f"--warehouse {kind!r}: choose one of {', '.join(KINDS)}")
        connection: dict = {}
        if kind == "duckdb":
            if not path:
                raise DestinationError("a duckdb warehouse needs --path: its database file, "
                                       "say var/warehouse/acme.duckdb")
            if Path(path).stem == (schema or default_schema(tenant)):
                raise DestinationError(
                    f"--path {path!r} is named like the schema {Path(path).stem!r}: DuckDB "
                    "names a database after its file, and a query of "
                    f"{Path(path).stem}.<table> would be ambiguous; name the file otherwise, "
                    f"say --path {Path(path).with_name('warehouse.duckdb')}")
            connection["path"] = path
        elif kind != "none":
            if not dsn:
                raise DestinationError(f"a {kind} warehouse needs --dsn env:NAME or "
                                       "--dsn file:/path")
            if not dsn.startswith(("env:", "file:")) and _LITERAL_SECRET.search(dsn):
                raise DestinationError("--dsn holds a password; give it by reference instead: "
                                       "--dsn env:NAME (and export NAME for the loader) or "
                                       "--dsn file:/path")
            connection["dsn"] = dsn
        if kind == "redshift":
            connection.update(staging_uri=staging_uri, iam_role=iam_role)
        if kind == "snowflake" and (staging_uri or storage_integration):
            if not (staging_uri and staging_uri.startswith("s3://") and storage_integration):
                raise DestinationError(
                    "a Snowflake warehouse staging on S3 needs both --staging-uri s3://bucket/"
                    "prefix and --storage-integration NAME (the integration that lets "
                    "Snowflake read it); without both, files go to each table's own stage")
            if not _INTEGRATION.fullmatch(storage_integration):
                raise DestinationError(
                    f"--storage-integration {storage_integration!r} is not a Snowflake "
                    "identifier: give the integration's name as SHOW INTEGRATIONS lists it, "
                    "say SPOOL_S3")
            connection.update(staging_uri=staging_uri, storage_integration=storage_integration)
        if schema is not None and (not _SCHEMA.fullmatch(schema) or schema.startswith("pg_")):
            suggestion = re.sub("^pg_", "", default_schema(schema)) or "tenant"
            raise DestinationError(
                f"--schema {schema!r} is not a plain warehouse schema name: use lower-case "
                "letters, digits and _, starting with a letter or _ (not pg_), at most 63 "
                f"characters; for example --schema {suggestion}")
        dest = cls(tenant, kind, schema or default_schema(tenant), connection)
        problem = dest.problem()
        if problem:
            raise DestinationError(problem)
        return dest

    def problem(self) -> str | None:
        """Why no batch can load into this destination, or None."""
        if self.kind == "none":
            return None
        if self.kind not in KINDS:
            return (f"tenant {self.tenant_id} has warehouse kind {self.kind!r}, which this "
                    f"Spool does not know ({', '.join(KINDS)}); upgrade Spool or "
                    f"'spool tenants add {self.tenant_id} --warehouse ...'")
        if self.kind == "duckdb":
            return None if self.path else (
                f"tenant {self.tenant_id} has no DuckDB file; set it with 'spool tenants add "
                f"{self.tenant_id} --warehouse duckdb --path var/warehouse/"
                f"{self.tenant_id}.duckdb'")
        if not self.dsn:
            return (f"tenant {self.tenant_id} has no warehouse dsn; set it with "
                    f"'spool tenants add {self.tenant_id} --warehouse {self.kind} --dsn env:NAME'")
        if self.stages_on_s3 and not (self.connection.get("staging_uri")
                                      and self.connection.get("iam_role")):
            return (f"a Redshift warehouse needs --staging-uri s3://... and --iam-role (COPY "
                    f"reads staged files with that role): 'spool tenants add {self.tenant_id} "
                    "--warehouse redshift ... --staging-uri s3://... --iam-role env:NAME'")
        return None

"""Stagers: how a load's rows (CSV) reach a stage table in the warehouse.

* :class:`CopyStdinStager`: ``COPY ... FROM STDIN`` through the connection (PostgreSQL; and
  Redshift's SQL run on a PostgreSQL in tests, ``staging_mode: copy_stdin``);
* :class:`S3ManifestStager`: Redshift: the rows as gzipped CSV on S3 with a manifest, then
  ``COPY ... FROM <manifest> IAM_ROLE ... MANIFEST``. File names are digests of the
  content, so a retried load rewrites the same objects.

:func:`stager_for` picks one for a destination.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tempfile

from spool import secrets
from spool.objectstore import ObjectStore
from spool.warehouse.destination import Destination


class CopyStdinStager:
    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        """``table``: a quoted (qualified) table name."""
        cur.copy_expert(dialect.staging.copy_stdin(table, columns), io.BytesIO(csv))


class S3ManifestStager:
    def __init__(self, store: ObjectStore, staging_uri: str, iam_role: str) -> None:
        self.store = store
        self.staging_uri = staging_uri.rstrip("/")
        self.iam_role = iam_role

    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        digest = hashlib.sha256(csv).hexdigest()[:24]
        data_uri = f"{self.staging_uri}/{digest}.csv.gz"
        manifest_uri = f"{data_uri}.manifest"
        self.store.put_atomic(data_uri, gzip.compress(csv, compresslevel=5))
        manifest = {"entries": [{"url": data_uri, "mandatory": True}]}
        self.store.put_atomic(manifest_uri, json.dumps(manifest).encode())
        cur.execute(dialect.staging.copy_s3(table, columns), (manifest_uri, self.iam_role))


def stager_for(dest: Destination, store: ObjectStore):
    """The stager of a destination whose problem() is None (the IAM role resolved here)."""
    if dest.kind == "duckdb":
        return DuckDBArrowStager()
    if dest.stages_on_s3:
        return S3ManifestStager(store, dest.connection["staging_uri"],
                                secrets.resolve(dest.connection["iam_role"]))
    return CopyStdinStager()


class DuckDBArrowStager:
    """DuckDB: the rows as Arrow, inserted by DuckDB from memory (no text round trip)."""

    takes_arrow = True

    VIEW = "spool_arrow_rows"

    def stage_arrow(self, cur, dialect, table: str, rows) -> None:
        """``rows``: a pyarrow Table whose column names are ``table``'s."""
        cur.execute_with_arrow(self.VIEW, rows, dialect.staging.insert_arrow(
            table, rows.column_names, self.VIEW))

    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        DuckDBFileStager().stage(cur, dialect, table, columns, csv)


class DuckDBFileStager:
    """DuckDB: the rows as a CSV file beside the database, COPYed in (deleted after)."""

    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        fd, path = tempfile.mkstemp(suffix=".csv", prefix="spool-stage-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(csv)
            cur.execute(dialect.staging.copy_file(table, columns), (path,))
        finally:
            os.unlink(path)

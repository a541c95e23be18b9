"""Stagers: how a load's rows reach a table (the schema's stage, or a new table) in the
warehouse. A load hands a stager Arrow tables (:meth:`stage_parts`); the stager picks the
format its warehouse reads best.

* :class:`CopyStdinStager`: ``COPY ... FROM STDIN`` through the connection (PostgreSQL; and
  Redshift's SQL run on a PostgreSQL in tests, ``staging_mode: copy_stdin``);
* :class:`S3ManifestStager`: Redshift: the rows as gzipped CSV on S3 with a manifest, then
  ``COPY ... FROM <manifest> IAM_ROLE ... MANIFEST``. File names are digests of the
  content, so a retried load rewrites the same objects;
* :class:`DuckDBArrowStager`: DuckDB inserts the Arrow tables from memory.

:func:`stager_for` picks one for a destination.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv

from spool import secrets
from spool.objectstore import ObjectStore
from spool.warehouse.destination import Destination

CSV_OPTIONS = pacsv.WriteOptions(include_header=False)


class CsvStager:
    """Stagers that send CSV: the parts written one after the other, each padded with
    empty fields to the target's columns (``names``)."""

    def stage_parts(self, cur, dialect, table: str, names: list[str],
                    parts: list[pa.Table]) -> None:
        buf = io.BytesIO()
        for part in parts:
            pad = pa.nulls(part.num_rows)  # a table with fewer columns: the rest empty
            part = pa.Table.from_arrays(
                [*part.columns, *[pad] * (len(names) - part.num_columns)], names=names)
            pacsv.write_csv(part, buf, CSV_OPTIONS)
        self.stage(cur, dialect, table, names, buf.getvalue())

    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        raise NotImplementedError


class CopyStdinStager(CsvStager):
    def stage(self, cur, dialect, table: str, columns: list[str], csv: bytes) -> None:
        """``table``: a quoted (qualified) table name."""
        cur.copy_expert(dialect.staging.copy_stdin(table, columns), io.BytesIO(csv))


class S3ManifestStager(CsvStager):
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

    VIEW = "spool_arrow_rows"

    def stage_parts(self, cur, dialect, table: str, names: list[str],
                    parts: list[pa.Table]) -> None:
        """Each part inserted by its own column names (the target's others stay NULL);
        DuckDB casts each column to the target's type."""
        for part in parts:
            cur.execute_with_arrow(self.VIEW, part, dialect.staging.insert_arrow(
                table, part.column_names, self.VIEW))

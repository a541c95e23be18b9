"""Stagers: how a load's rows reach a table (the schema's stage, or a new table) in the
warehouse. A load hands a stager Arrow tables (:meth:`stage_parts`); the stager picks the
format its warehouse reads best.

* :class:`CopyStdinStager`: ``COPY ... FROM STDIN`` through the connection (PostgreSQL; and
  Redshift's SQL run on a PostgreSQL in tests, ``staging_mode: copy_stdin``);
* :class:`S3ManifestStager`: Redshift: the rows as gzipped CSV on S3 with a manifest, then
  ``COPY ... FROM <manifest> IAM_ROLE ... MANIFEST``. File names are digests of the
  content, so a retried load rewrites the same objects;
* :class:`DuckDBArrowStager`: DuckDB inserts the Arrow tables from memory;
* :class:`SnowflakeStager`: the rows as one Parquet file, uploaded to the target table's own
  stage (``PUT``) or written to S3 (read with a storage integration), then ``COPY INTO``
  matching columns by name.

:func:`stager_for` picks one for a destination.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from spool import secrets
from spool.objectstore import ObjectStore
from spool.warehouse.contract import STAGE_SLOT, STAGE_TABLE
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
    if dest.kind == "snowflake":
        return SnowflakeStager(store, dest.connection.get("staging_uri"),
                               dest.connection.get("storage_integration"))
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


class SnowflakeStager:
    """Snowflake: a load's rows for one table as one Parquet file, then ``COPY INTO`` the
    table with columns matched by name (``MATCH_BY_COLUMN_NAME``).

    Without a staging URI the file is uploaded to the target table's own stage (``PUT``,
    nothing to set up) and removed once copied; with one (``s3://bucket/prefix``) it is
    written there and Snowflake reads it through the storage integration. File names are
    digests of the content, so a retried load rewrites the same file.

    Rows bound for the tenant's stage (text columns, cast by the merge) are written as
    text, date-times in ISO 8601; rows copied straight into a new table keep their types.
    """

    def __init__(self, store: ObjectStore | None = None, staging_uri: str | None = None,
                 integration: str | None = None) -> None:
        self.store = store
        self.staging_uri = staging_uri.rstrip("/") if staging_uri else None
        self.integration = integration

    def stage_parts(self, cur, dialect, table: str, names: list[str],
                    parts: list[pa.Table]) -> None:
        as_text = table.endswith(f'."{STAGE_TABLE}"')
        tables = [_padded(part, names, as_text) for part in parts]
        buf = io.BytesIO()
        pq.write_table(pa.concat_tables(tables), buf, compression="zstd")
        data = buf.getvalue()
        name = hashlib.sha256(data).hexdigest()[:24] + ".parquet"
        staging = dialect.staging
        if self.staging_uri:
            uri = f"{self.staging_uri}/{name}"
            self.store.put_atomic(uri, data)
            cur.execute(staging.copy_into(table, "'" + uri.replace("'", "''") + "'",
                                          self.integration))
            return
        schema, target = _identifiers(table)
        table_stage = staging.table_stage(schema, target)
        with tempfile.TemporaryDirectory(prefix="spool-snowflake-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            cur.execute(staging.put(str(path), table_stage))
        cur.execute(staging.copy_into(table, f"{table_stage}/{name}") + " PURGE = TRUE")


def _padded(part: pa.Table, names: list[str], as_text: bool) -> pa.Table:
    """``part`` under the target's column ``names`` (the missing ones null); as text for the
    stage (its slot number stays an integer)."""
    columns = list(part.columns)
    columns += [pa.nulls(part.num_rows, pa.string())] * (len(names) - len(columns))
    if as_text:
        columns = [c if n == STAGE_SLOT else _text(c)
                   for n, c in zip(names, columns, strict=True)]
    return pa.Table.from_arrays(columns, names=names)


def _text(values) -> pa.Array:
    if pa.types.is_timestamp(values.type):  # stored in UTC: ISO 8601 with its offset
        iso = pc.strftime(values, "%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise(iso, pa.scalar("+00:00"), "")
    return values.cast(pa.string())


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def _identifiers(qualified_name: str) -> tuple[str, str]:
    """(schema, table) of a qualified, quoted name (spool.warehouse.dialects.qualified)."""
    schema, table = (m.replace('""', '"') for m in _QUOTED.findall(qualified_name))
    return schema, table

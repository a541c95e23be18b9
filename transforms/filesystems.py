"""Beam's FileSystems as the object store's fallback, for schemes other than local and s3://.

spool.objectstore handles local folders and S3 itself (one reused boto3 client); a spool
location on gs:// or another scheme Beam knows goes through Beam's FileSystems.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from spool.objectstore import ObjectStore, S3Config


class BeamFileSystems:
    def write(self, uri: str, data: bytes) -> None:
        with FileSystems.create(uri) as fh:
            fh.write(data)

    def read(self, uri: str) -> bytes:
        with FileSystems.open(uri) as fh:
            return fh.read()

    def exists(self, uri: str) -> bool:
        return FileSystems.exists(uri)

    def delete(self, uri: str) -> None:
        FileSystems.delete([uri])


def object_store(s3: S3Config, patience: float | None = None) -> ObjectStore:
    """The object store a DoFn uses: local and S3 natively, anything else through Beam; an
    S3 outage is waited out for ``patience`` seconds (None: until S3 answers)."""
    return ObjectStore(s3, fallback=BeamFileSystems(), patience=patience)

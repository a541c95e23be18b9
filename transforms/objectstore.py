"""Batch files on the spool location, through Beam's FileSystems.

The spool location is a local folder or ``s3://bucket/prefix``; Beam's S3 options
(``--s3_endpoint_url``, ``--s3_access_key_id``, ...) configure the S3 client, so the files
live wherever the pipeline's own file I/O points. A file becomes visible atomically: an S3
PUT is atomic by itself; a local file is written beside its name and renamed over it.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems


def is_remote(uri: str) -> bool:
    return "://" in uri


def put_atomic(uri: str, data: bytes) -> None:
    if is_remote(uri):
        with FileSystems.create(uri) as fh:
            fh.write(data)
        return
    # pid in the temporary name: two workers rewriting one batch never share a temp file
    tmp = f"{uri}.tmp-{os.getpid()}"
    with FileSystems.create(tmp) as fh:
        fh.write(data)
    os.replace(tmp, uri)


def read(uri: str) -> bytes:
    with FileSystems.open(uri) as fh:
        return fh.read()


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)

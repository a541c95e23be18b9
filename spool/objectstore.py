"""Batch files on the spool location: a local folder or ``s3://bucket/prefix``.

S3 is configured by Beam's own S3 options (``--s3_endpoint_url``, ``--s3_access_key_id``,
``--s3_secret_access_key``, ``--s3_region_name``, ``--s3_verify``), read once into an
:class:`S3Config`; unset values fall back to boto3's usual chain (environment, profile, IAM
role). One boto3 client per process and config is reused: Beam's FileSystems builds a new
client for every file, which costs ~70 ms per file against ~4 ms for the request itself, and
a spool writes thousands of small files. Other schemes (gs://, ...) go through a
*fallback* file system given by the caller (transforms.filesystems wraps Beam's
FileSystems; this package imports no Beam).

A file becomes visible atomically: an S3 PUT is atomic by itself; a local file is written
beside its name and renamed over it.

S3 outages are waited out: botocore retries a request a few times (standard mode), and a
request that still fails with a connection error, a timeout, throttling or a 5xx
(:func:`transient`) is tried again with a backoff of 1 s to 15 s, with a warning once a
minute, for as long as the store's ``patience`` (spool.retry.patiently): without end by
default, which the spool job's writer needs; the loader gives its reads a bound and then
treats the batch as a transient failure. Every S3 call here is safe to repeat: a PUT writes
the same bytes under the same key, a GET, HEAD or DELETE changes nothing twice.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spool import retry

log = logging.getLogger(__name__)
# One boto3 client per S3Config per worker process, shared by every DoFn instance, bundle
# and thread of it: boto3 clients are thread-safe, the key is a frozen (hashable) config,
# and the lock makes sure one is built per key. Nothing about a bundle is kept in them.
_CLIENTS: dict = {}
_LOCK = threading.Lock()
MULTIPART_BYTES = 64 * 1024 * 1024
# S3 error codes that pass on their own (throttling, a node restarting, a slow request)
TRANSIENT_S3_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                      "RequestTimeTooSkewed", "Throttling", "ThrottlingException", "500", "502",
                      "503", "504"}


def transient(exc: BaseException) -> bool:
    """True for an S3 outage that passes on its own: the endpoint unreachable, a connection
    reset, a timeout, throttling, a 5xx. False for what waiting cannot fix (a missing key or
    bucket, access denied, bad credentials)."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (ConnectionError, TimeoutError, BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_S3_CODES or status >= 500 or status == 429
    return False


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region_name: str | None = None
    verify: str | None = None

    def client(self):
        with _LOCK:
            client = _CLIENTS.get(self)
            if client is None:
                import boto3
                from botocore.config import Config

                kwargs = {"config": Config(retries={"max_attempts": 5, "mode": "standard"},
                                           max_pool_connections=32)}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                if self.access_key_id:
                    kwargs["aws_access_key_id"] = self.access_key_id
                    kwargs["aws_secret_access_key"] = self.secret_access_key
                if self.region_name:
                    kwargs["region_name"] = self.region_name
                if self.verify is not None:  # false, or a CA bundle's path
                    kwargs["verify"] = False if self.verify in ("false", "False", "0") \
                        else True if self.verify in ("true", "True", "1") else self.verify
                client = _CLIENTS[self] = boto3.client("s3", **kwargs)
            return client


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


MAX_KNOWN_DIRS = 100_000


class FileSystem(Protocol):
    """What a fallback file system does for the schemes ObjectStore does not know."""

    def write(self, uri: str, data: bytes) -> None: ...
    def read(self, uri: str) -> bytes: ...
    def exists(self, uri: str) -> bool: ...
    def delete(self, uri: str) -> None: ...


class ObjectStore:
    """put/read/exists/delete for local paths and s3://; other schemes go to ``fallback``.
    ``patience``: how many seconds an S3 outage is retried before a call fails (None: until
    S3 answers; 0: botocore's own retries only)."""

    def __init__(self, s3: S3Config | None = None, fallback: FileSystem | None = None,
                 patience: float | None = None) -> None:
        self.s3 = s3 or S3Config()
        self.fallback = fallback
        self.patience = patience
        self._once = retry.OncePer()
        # local directories this store made or found: a window's batch files each sit in
        # a new directory, and asking the OS again for each file cost 3 % of the spool job
        # at 10,000 streams
        self._dirs: set[Path] = set()

    def _patiently(self, call, bucket: str):
        return retry.patiently(call, f"S3 bucket {bucket}", log, transient,
                               patience=self.patience, backoff=retry.Backoff(1.0, 15.0),
                               once=self._once)

    def _other(self, uri: str) -> FileSystem:
        if self.fallback is None:
            raise ValueError(f"{uri}: only local paths and s3:// are supported here")
        return self.fallback

    def put_atomic(self, uri: str, data: bytes, durable: bool = True) -> None:
        """Make ``data`` visible at ``uri`` all at once. A local file is on disk when this
        returns, unless ``durable`` is False: then call ``make_durable`` before anything
        points at it (one flush for many files costs a fraction of one per file)."""
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            client = self.s3.client()
            if len(data) < MULTIPART_BYTES:
                self._patiently(lambda: client.put_object(Bucket=bucket, Key=key, Body=data),
                                bucket)
            else:
                import io

                self._patiently(lambda: client.upload_fileobj(io.BytesIO(data), bucket, key),
                                bucket)
        elif "://" in uri:
            self._other(uri).write(uri, data)
        else:
            path = Path(uri)
            if path.parent not in self._dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                if len(self._dirs) >= MAX_KNOWN_DIRS:  # bounded: old windows' go
                    self._dirs.clear()
                self._dirs.add(path.parent)
            # pid in the temporary name: two workers rewriting one batch never share it
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            try:
                tmp.write_bytes(data)
            except FileNotFoundError:  # removed since (a clean-up): make it again
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
            os.replace(tmp, path)
            if durable:
                self.make_durable([uri])

    @staticmethod
    def make_durable(uris: list[str]) -> None:
        """Flush local files and their directory entries to disk (object stores and Beam's
        file systems are durable once a put returns). A ledger row may point at a file only
        after this: a power cut must not leave READY pointing at nothing."""
        local = [Path(u) for u in uris if "://" not in u]
        for target in [*local, *dict.fromkeys(p.parent for p in local)]:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self, uri: str) -> bytes:
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            client = self.s3.client()
            return self._patiently(
                lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), bucket)
        if "://" in uri:
            return self._other(uri).read(uri)
        return Path(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            client = self.s3.client()
            try:
                self._patiently(lambda: client.head_object(Bucket=bucket, Key=key), bucket)
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    return False
                raise
            return True
        if "://" in uri:
            return self._other(uri).exists(uri)
        return Path(uri).exists()

    def delete(self, uri: str) -> None:
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            client = self.s3.client()
            self._patiently(lambda: client.delete_object(Bucket=bucket, Key=key), bucket)
        elif "://" in uri:
            self._other(uri).delete(uri)
        else:
            Path(uri).unlink(missing_ok=True)

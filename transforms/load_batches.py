"""ClaimTables and LoadTables: READY batches → tenant warehouses, exactly once.

``ClaimTables`` lists the (tenant, stream) pairs that have claimable batches; grouped by
tenant (its destination), ``LoadTables`` claims the batches of those streams (with a lease),
loads them, each stream's batches in sequence order, in warehouse transactions of up to
``max_rows`` rows that may span several tables (spool.warehouse.load), then moves them to
LOADED. Destinations load in parallel. Errors are classified once by the destination's
dialect:

* transient (unreachable, restarting, lock timeout): the batches go back to READY with a
  capped exponential backoff, and the destination counts as down for a short while, so this
  worker moves on to other tenants' tables instead of waiting on it again;
* terminal: a transaction of several streams is retried stream by stream, and a stream's
  batches one by one, so only the batch that fails alone ends FAILED, with the reason
  (credentials redacted).

The warehouse's load log, written in the load transaction, makes every step safe to repeat:
a batch whose lease expired mid-load (its loader died) is claimed again and found loaded.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import apache_beam as beam
import psycopg2
from apache_beam.metrics import Metrics

from spool import metrics, secrets
from spool.failpoints import failpoint
from spool.ledger import Ledger
from spool.ledger import claims as ledger_claims
from spool.warehouse.dialects import DIALECTS, TerminalError, TransientError
from spool.warehouse.load import CopyStdinStager, Loader
from spool.warehouse.stage import stage_group
from transforms.objectstore import ObjectStore, S3Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadConfig:
    ledger_dsn: str
    lease_seconds: float = 600.0
    max_rows: int = 1_000_000
    max_batches: int = 500
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 300.0
    down_seconds: float = 10.0
    connect_timeout: int = 5
    metrics_port: int = 0  # Prometheus text metrics on 127.0.0.1 (follow mode); 0: off
    s3: S3Config = field(default_factory=S3Config)


class S3ManifestStager:
    """Redshift: stage rows as gzipped CSV on S3 with a manifest, then COPY."""

    def __init__(self, store: ObjectStore, staging_uri: str, iam_role: str) -> None:
        self.store = store
        self.staging_uri = staging_uri.rstrip("/")
        self.iam_role = iam_role

    def stage(self, cur, dialect, target: str, columns: list[str], csv: bytes) -> None:
        digest = hashlib.sha256(csv).hexdigest()[:24]
        data_uri = f"{self.staging_uri}/{digest}.csv.gz"
        manifest_uri = f"{data_uri}.manifest"
        self.store.put_atomic(data_uri, gzip.compress(csv, compresslevel=5))
        manifest = {"entries": [{"url": data_uri, "mandatory": True}]}
        self.store.put_atomic(manifest_uri, json.dumps(manifest).encode())
        cur.execute(dialect.copy_s3(target, columns), (manifest_uri, self.iam_role))


class _ClaimTablesFn(beam.DoFn):
    def __init__(self, ledger_dsn: str, metrics_port: int = 0) -> None:
        self.ledger_dsn = ledger_dsn
        self.metrics_port = metrics_port

    def process(self, _):
        ledger = Ledger(self.ledger_dsn, application_name="spool-loader")
        backlog: dict[str, int] = {}
        try:
            for tenant, stream, count in ledger_claims.claimable_tables(ledger):
                backlog[tenant] = backlog.get(tenant, 0) + count
                yield tenant, stream
        finally:
            ledger.close()
        if self.metrics_port:
            gauge = metrics.loader_metrics()["backlog"]
            for tenant in list(gauge._metrics):  # tenants with nothing left show 0
                gauge.labels(*tenant).set(0)
            for tenant, count in backlog.items():
                gauge.labels(tenant).set(count)


class _LoadTenantFn(beam.DoFn):
    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.rows = Metrics.counter("spool.loader", "rows_loaded")
        self.loaded = Metrics.counter("spool.loader", "batches_loaded")
        self.failed = Metrics.counter("spool.loader", "batches_failed")
        self.retried = Metrics.counter("spool.loader", "batches_retried")
        self.latency = Metrics.distribution("spool.loader", "load_ms")

    def setup(self):
        self._ledger = Ledger(self.cfg.ledger_dsn, application_name="spool-loader")
        self._store = ObjectStore(self.cfg.s3)
        self._conns: dict[str, object] = {}
        self._down: dict[str, float] = {}
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._prom = metrics.loader_metrics() if metrics.serve(self.cfg.metrics_port) else None

    def process(self, element):
        tenant, streams = element
        yield from self._load_tenant(tenant, sorted(set(streams)))

    def _load_tenant(self, tenant: str, streams: list[str]) -> list:
        """Claim and load the tenant's batches of ``streams`` until none is left (or its
        warehouse is down)."""
        out: list = []
        dest = ledger_claims.destination(self._ledger, tenant)
        if dest is None or dest.kind == "none":
            return out
        conn_key = json.dumps(dest.connection, sort_keys=True)
        while self._down.get(conn_key, 0) <= time.monotonic():
            claimed = ledger_claims.claim(self._ledger, tenant, streams, self._owner,
                                          self.cfg.lease_seconds, self.cfg.max_batches)
            if not claimed:
                break
            renewed_at = time.monotonic()
            transactions = _transactions(claimed, self.cfg.max_rows)
            for i, work in enumerate(transactions):
                if time.monotonic() - renewed_at > self.cfg.lease_seconds / 2:
                    # every batch still to load keeps its lease, not only the next ones
                    ledger_claims.renew(self._ledger, [c.batch_id for w in transactions[i:]
                                                       for c in w],
                                        self._owner, self.cfg.lease_seconds)
                    renewed_at = time.monotonic()
                outcome = self._load(dest, conn_key, work)
                if outcome == "down":
                    # leave the rest to later: the warehouse is down. Batches already
                    # loaded, failed or set to retry are no longer LOADING; release the rest
                    ledger_claims.release(self._ledger, [c.batch_id for c in claimed],
                                          self._owner)
                    return out
                out.extend(outcome)
        return out

    def _load(self, dest, conn_key: str, work: list):
        """Load batches (of one or more streams) in one transaction; returns results to
        emit, or "down" if the warehouse is unreachable."""
        ids = [c.batch_id for c in work]
        started = time.monotonic()
        destination_ok = False
        try:
            dialect = DIALECTS[dest.kind]
            # the destination first: a warehouse that is down or misconfigured fails
            # before any batch file is read
            conn = self._connect(conn_key, dest)
            loader = self._loader(dest, dialect)
            destination_ok = True
            groups = []
            for stream, batches in _by_stream(work):
                files = [(c.batch_id, self._store.read(c.uri)) for c in batches]
                groups.append(stage_group(stream, files, dialect))
            result = loader.load(conn, dest.schema_name, groups)
        except Exception as exc:  # noqa: BLE001 - classified below, nothing is swallowed
            kind = _classify(dest, exc)
            message = secrets.redact(f"{type(exc).__name__}: {exc}".strip())
            if kind is TransientError:
                self._discard(conn_key)
                delay = ledger_claims.backoff_seconds(max(c.attempts for c in work),
                                                      self.cfg.backoff_base_seconds,
                                                      self.cfg.backoff_cap_seconds)
                ledger_claims.mark_retry(self._ledger, ids, self._owner, message, delay)
                self.retried.inc(len(ids))
                self._count(dest.tenant_id, "retry", len(ids))
                self._down[conn_key] = time.monotonic() + self.cfg.down_seconds
                log.warning("warehouse of %s unavailable, %d batch(es) retry in %.0f s: %s",
                            dest.tenant_id, len(ids), delay, message)
                return "down"
            if len(work) > 1 and destination_ok:
                # isolate the culprit: stream by stream, then batch by batch
                parts = [b for _s, b in _by_stream(work)]
                if len(parts) == 1:
                    parts = [[c] for c in work]
                log.warning("load of %d batches of %s failed (%s); retrying them in %d parts",
                            len(work), dest.tenant_id, message, len(parts))
                out = []
                for part in parts:
                    single = self._load(dest, conn_key, part)
                    if single == "down":
                        return "down"
                    out.extend(single)
                return out
            # one culprit batch, or a destination no batch can load into (no culprit)
            ledger_claims.mark_failed(self._ledger, ids, self._owner, message)
            self.failed.inc(len(ids))
            self._count(dest.tenant_id, "failed", len(ids))
            log.error("%d batch(es) of %s failed (%s): %s", len(ids), dest.tenant_id,
                      ids[0], message)
            return [("failed", b, message) for b in ids]
        failpoint("load.after_commit")
        ledger_claims.mark_loaded(self._ledger, ids)
        self.loaded.inc(len(result.loaded))
        self.rows.inc(result.rows)
        self.latency.update(int((time.monotonic() - started) * 1000))
        self._count(dest.tenant_id, "loaded", len(result.loaded), result.rows,
                    time.monotonic() - started)
        return [("loaded", b, result.rows) for b in result.loaded] + \
            [("already_loaded", b, 0) for b in result.skipped]

    def _count(self, tenant: str, outcome: str, batches: int, rows: int = 0,
               seconds: float | None = None) -> None:
        if self._prom is None:
            return
        self._prom["batches"].labels(tenant, outcome).inc(batches)
        if rows:
            self._prom["rows"].labels(tenant).inc(rows)
        if seconds is not None:
            self._prom["seconds"].observe(seconds)

    def _loader(self, dest, dialect) -> Loader:
        if dialect.caps.staging == "s3_manifest_csv_gzip" and \
                dest.connection.get("staging_mode") != "copy_stdin":
            staging = dest.connection.get("staging_uri")
            role = dest.connection.get("iam_role")
            if not staging or not role:
                raise TerminalError(f"tenant {dest.tenant_id}: a Redshift destination needs "
                                    "staging_uri (s3://...) and iam_role in its connection")
            stager = S3ManifestStager(self._store, staging, secrets.resolve(role))
        else:
            stager = CopyStdinStager()
        return Loader(dialect, stager, name=self._owner)

    def _connect(self, conn_key: str, dest):
        conn = self._conns.get(conn_key)
        if conn is not None and not conn.closed:
            return conn
        ref = dest.connection.get("dsn")
        if not ref:
            raise TerminalError(f"tenant {dest.tenant_id} has no warehouse dsn; set it with "
                                "'spool tenants add'")
        try:
            dsn = secrets.resolve(ref)
        except secrets.SecretError as exc:
            raise TerminalError(str(exc)) from None
        conn = psycopg2.connect(dsn, connect_timeout=self.cfg.connect_timeout,
                                application_name="spool-loader")
        self._conns[conn_key] = conn
        return conn

    def _discard(self, conn_key: str) -> None:
        conn = self._conns.pop(conn_key, None)
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg2.Error):
                conn.close()

    def teardown(self):
        for key in list(getattr(self, "_conns", {})):
            self._discard(key)
        if getattr(self, "_ledger", None) is not None:
            self._ledger.close()


# S3 error codes that pass on their own (throttling, a node restarting, a slow request)
TRANSIENT_S3_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                      "RequestTimeTooSkewed", "Throttling", "ThrottlingException", "500", "502",
                      "503", "504"}


def _classify(dest, exc: BaseException) -> type[Exception]:
    """Object store outages are transient like warehouse outages; a missing or unreadable
    batch file is terminal; warehouse errors are the dialect's to judge."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (ConnectionError, TimeoutError, BotoConnectionError, HTTPClientError)):
        return TransientError  # unreachable endpoint, reset connection, read timeout
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return TransientError if code in TRANSIENT_S3_CODES else TerminalError
    return DIALECTS.get(dest.kind, DIALECTS["postgres"]).classify(exc)


def _transactions(claimed: list, max_rows: int) -> list[list]:
    """Claimed batches (ordered by stream, then sequence) cut into transactions of at most
    ``max_rows`` rows; a stream's batches stay in order across transactions. Where a
    stream's key names change, a new transaction starts: a load plans each stream once,
    so one transaction never holds a stream's upsert and append batches together."""
    out, current, rows = [], [], 0
    keys: dict[str, tuple] = {}  # stream → key names in the current transaction
    for c in claimed:
        if current and (rows + c.row_count > max_rows
                        or keys.get(c.stream, c.key_names) != c.key_names):
            out.append(current)
            current, rows, keys = [], 0, {}
        current.append(c)
        keys[c.stream] = c.key_names
        rows += c.row_count
    if current:
        out.append(current)
    return out


def _by_stream(batches: list) -> list[tuple[str, list]]:
    """(stream, its batches in claim order) for each stream, streams in order."""
    out: dict[str, list] = {}
    for c in batches:
        out.setdefault(c.stream, []).append(c)
    return list(out.items())


class ClaimTables(beam.PTransform):
    def __init__(self, ledger_dsn: str, metrics_port: int = 0) -> None:
        super().__init__()
        self.ledger_dsn = ledger_dsn
        self.metrics_port = metrics_port

    def expand(self, ticks):
        return ticks | "ListTables" >> beam.ParDo(_ClaimTablesFn(self.ledger_dsn,
                                                                 self.metrics_port))


class LoadTables(beam.PTransform):
    def __init__(self, cfg: LoadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, tables):
        # a destination's tables load together (one transaction per up to max_rows rows);
        # destinations load in parallel
        return (tables
                | "GroupByTenant" >> beam.GroupByKey()
                | "Load" >> beam.ParDo(_LoadTenantFn(self.cfg)))

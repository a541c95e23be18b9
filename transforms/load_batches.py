"""ListDueTables and LoadBatches: READY batches → tenant warehouses, exactly once.

``ListDueTables`` lists, per tenant, the streams that have claimable batches (READY and
due, or LOADING with an expired lease). ``LoadBatches`` spreads the tenants over the
workers, so that tenants (destinations) load in parallel, and hands each tenant to
:class:`spool.loader.tenant.TenantLoader`, which claims, loads and marks its batches; the
rules are there, in plain Python. This module is the Beam side: lifecycle, metrics.

Claim, load and mark stay in one DoFn on purpose: a claim's lease belongs to the worker
that holds it, and a batch that crossed a shuffle between its claim and its load would be
loaded by a bundle that may be retried elsewhere after its lease was renewed by nobody.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics

from spool import metrics
from spool.ledger import claims
from spool.ledger.store import Ledger
from spool.loader.tenant import Attempt, LoaderConfig, Status, TenantLoader
from spool.objectstore import S3Config
from transforms.filesystems import object_store


@dataclass(frozen=True)
class LoadConfig:
    ledger_dsn: str
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    worker_metrics_port: int = 0  # each worker process's counters from this port up; 0: off
    worker_metrics_address: str = "127.0.0.1"
    s3: S3Config = field(default_factory=S3Config)
    # how long a batch file's read waits out an S3 outage before the load counts as a
    # transient failure (its batches retry later): well within a claim's lease
    s3_patience_seconds: float = 60.0


class _ListDueTablesFn(beam.DoFn):
    def __init__(self, ledger_dsn: str) -> None:
        self.ledger_dsn = ledger_dsn

    def process(self, _):
        ledger = Ledger(self.ledger_dsn, application_name="spool-loader")
        streams: dict[str, list[str]] = {}
        try:
            for tenant, stream, _count in claims.claimable_tables(ledger):
                streams.setdefault(tenant, []).append(stream)
        finally:
            ledger.close()
        yield from streams.items()


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
        owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        store = object_store(self.cfg.s3, patience=self.cfg.s3_patience_seconds)
        self._loader = TenantLoader(self._ledger, store, self.cfg.loader, owner)
        # counted in the process's registry: on the launcher's page where the worker runs
        # in the launcher, on a port of its own when asked (spool.metrics)
        self._prom = metrics.loader_metrics()
        metrics.serve_worker(self.cfg.worker_metrics_port, self.cfg.worker_metrics_address)

    def process(self, element):
        tenant, streams = element
        for attempt in self._loader.load(tenant, sorted(streams)):
            self._count(tenant, attempt)
            for batch_id in attempt.batch_ids:
                yield attempt.status.value, batch_id
            for batch_id in attempt.skipped:
                yield "already_loaded", batch_id

    def _count(self, tenant: str, attempt: Attempt) -> None:
        n = len(attempt.batch_ids)
        if attempt.status is Status.LOADED:
            self.loaded.inc(n)
            self.rows.inc(attempt.rows)
            self.latency.update(int(attempt.seconds * 1000))
        else:
            (self.failed if attempt.status is Status.FAILED else self.retried).inc(n)
        if self._prom is not None:
            self._prom["batches"].labels(tenant, attempt.status.value).inc(n)
            if attempt.rows:
                self._prom["rows"].labels(tenant).inc(attempt.rows)
            if attempt.status is Status.LOADED:
                self._prom["seconds"].observe(attempt.seconds)

    def teardown(self):
        if getattr(self, "_loader", None) is not None:
            self._loader.close()
        if getattr(self, "_ledger", None) is not None:
            self._ledger.close()


class ListDueTables(beam.PTransform):
    def __init__(self, ledger_dsn: str) -> None:
        super().__init__()
        self.ledger_dsn = ledger_dsn

    def expand(self, ticks):
        return ticks | "ListTables" >> beam.ParDo(_ListDueTablesFn(self.ledger_dsn))


class LoadBatches(beam.PTransform):
    def __init__(self, cfg: LoadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, tenants):
        # a destination's tables load together (one transaction per up to max_rows rows);
        # destinations load in parallel: Reshuffle spreads the tenants over the workers
        # without waiting for a window to close (a GroupByKey here held each tick's tables
        # until the poll's watermark passed, which Prism sometimes never let happen)
        return (tenants
                | "SpreadTenants" >> beam.Reshuffle()
                | "Load" >> beam.ParDo(_LoadTenantFn(self.cfg)))

"""Prometheus text metrics of both jobs.

**The launcher's endpoint** (``--metrics_port``: the loader in follow mode, 9464 by default;
the spool job in streaming mode, 9465) is served by the process that starts the job, from
before the job is submitted until it ends, idle or busy. What it reports comes from the
ledger at scrape time (spool.ledger.gauges), so one endpoint describes the whole job however
many workers and machines run it: per tenant, batches READY / LOADING / FAILED, batches a
loader may claim, the age of the oldest batch not loaded, the age of the newest loaded row,
rows loaded; the age of the newest batch written; and whether the ledger answered. The
spool job's page adds, per tenant, the batches written, the age of the newest one's
window end and the records that reached their window after it had closed. Where SDK
workers run inside the launcher (Prism's default LOOPBACK environment, the local default),
their counters are on the same page.

**Workers' own counters** (rows and batches by outcome, seconds per warehouse transaction)
are what each loader worker process did since it started; a spool job worker process adds
how long each partition it reads has been unreachable and how often it retried
(:func:`reader_stall`), while the launcher's page has the same stalls from the ledger for
every worker. Workers in processes of their own
(a portable job server's worker pools, Flink, Dataflow) serve them only when asked
(``--worker_metrics_port``), each process on the first free port from that one up, since
several workers on one machine cannot share a port. Beam's counters and distributions
(read from the job result) cover every mode as well.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_STARTED: dict[int, int | None] = {}  # asked port → the port serving (None: none free)
_METRICS: dict = {}
_READER: dict = {}
WORKER_PORTS = 16  # a worker tries its port and the next 15


def loader_metrics() -> dict:
    """The loader workers' Prometheus metric objects (created once per process)."""
    with _LOCK:
        if not _METRICS:
            from prometheus_client import Counter, Histogram

            _METRICS.update(
                rows=Counter("spool_loader_rows_loaded", "Warehouse rows loaded", ["tenant"]),
                batches=Counter("spool_loader_batches", "Batches handled, by outcome",
                                ["tenant", "outcome"]),
                seconds=Histogram("spool_loader_load_seconds",
                                  "Seconds per warehouse transaction",
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)),
            )
        return _METRICS


def reader_stall(topic: str, partition: int, seconds: float | None) -> None:
    """A spool job reader's partition is unreachable for ``seconds`` (a retry), or answers
    again (None): this process's gauge and retry count (spool.read_stalls)."""
    with _LOCK:
        if not _READER:
            from prometheus_client import Counter, Gauge

            _READER.update(
                unreachable=Gauge("spool_kafka_partition_unreachable_seconds",
                                  "Seconds this worker process has not reached the "
                                  "partition (0: it reads)", ["topic", "partition"]),
                retries=Counter("spool_kafka_read_retries",
                                "Reads of the partition that failed with an outage and are "
                                "tried again", ["topic", "partition"]),
            )
    labels = (topic, str(partition))
    _READER["unreachable"].labels(*labels).set(seconds or 0.0)
    if seconds is not None:
        _READER["retries"].labels(*labels).inc()


def serve_worker(port: int, addr: str = "127.0.0.1") -> int | None:
    """Serve this process's counters on ``addr``, on the first free port of ``port`` ..
    ``port + 15`` (once per process); the port, or None."""
    if not port:
        return None
    with _LOCK:
        if port in _STARTED:
            return _STARTED[port]
        from prometheus_client import start_http_server

        _STARTED[port] = None
        for candidate in range(port, port + WORKER_PORTS):
            try:
                start_http_server(candidate, addr=addr)
            except OSError:
                continue
            _STARTED[port] = candidate
            log.info("worker metrics on http://%s:%d/metrics", addr, candidate)
            break
        else:
            log.warning("no worker metrics: ports %d-%d are taken", port,
                        port + WORKER_PORTS - 1)
        return _STARTED[port]


class LedgerCollector:
    """Collects the ledger's figures at each scrape (a prometheus_client collector)."""

    def __init__(self, ledger_dsn: str, job: str) -> None:
        self.ledger_dsn = ledger_dsn
        self.job = job  # "loader" or "spool_job": which figures belong on its page

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from spool.ledger import gauges, stalls
        from spool.ledger.store import Ledger

        up = GaugeMetricFamily("spool_ledger_up", "1 if the ledger answered this scrape")
        ledger = Ledger(self.ledger_dsn, application_name=f"spool-{self.job}-metrics",
                        patience=0)  # a scrape reports the ledger down, it does not wait
        try:
            tenants, newest_batch = gauges.read(ledger)
            written = gauges.written(ledger) if self.job == "spool_job" else []
            stalled = stalls.open_stalls(ledger) if self.job == "spool_job" else []
        except Exception as exc:  # noqa: BLE001 - a scrape reports the ledger down, not a 500
            log.warning("metrics: the ledger did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        finally:
            ledger.close()
        up.add_metric([], 1)
        yield up
        batches = GaugeMetricFamily("spool_batches", "Batches not loaded yet, by state",
                                    labels=["tenant", "state"])
        oldest = GaugeMetricFamily("spool_oldest_unloaded_seconds",
                                   "Age of the tenant's oldest batch not loaded",
                                   labels=["tenant"])
        fresh = GaugeMetricFamily("spool_newest_row_age_seconds",
                                  "Seconds since the newest row loaded for the tenant was "
                                  "received by Kafka", labels=["tenant"])
        rows = CounterMetricFamily("spool_ledger_rows_loaded",
                                   "Warehouse rows inserted or updated, every loader together",
                                   labels=["tenant"])
        claimable = GaugeMetricFamily("spool_loader_claimable_batches",
                                      "Batches a loader may claim now (READY and due, or "
                                      "lease expired)", labels=["tenant"])
        for t in tenants:
            for state, n in (("READY", t.ready), ("LOADING", t.loading), ("FAILED", t.failed)):
                batches.add_metric([t.tenant, state], n)
            oldest.add_metric([t.tenant], t.oldest_unloaded_seconds or 0.0)
            if t.newest_row_age_seconds is not None:
                fresh.add_metric([t.tenant], t.newest_row_age_seconds)
            rows.add_metric([t.tenant], t.rows_loaded)
            claimable.add_metric([t.tenant], t.claimable)
        yield from (batches, oldest, fresh, rows)
        if self.job == "loader":
            yield claimable
        if newest_batch is not None:
            newest = GaugeMetricFamily("spool_newest_batch_age_seconds",
                                       "Seconds since the spool job wrote its newest batch")
            newest.add_metric([], newest_batch)
            yield newest
        if self.job == "spool_job":
            count = CounterMetricFamily("spool_batches_written",
                                        "Batches the spool job recorded, in every state",
                                        labels=["tenant"])
            window = GaugeMetricFamily("spool_newest_window_end_age_seconds",
                                       "Seconds since the end of the window of the tenant's "
                                       "newest batch", labels=["tenant"])
            late = CounterMetricFamily("spool_records_late",
                                       "Records that reached their window after it had "
                                       "closed, spooled in a later pane", labels=["tenant"])
            for w in written:
                count.add_metric([w.tenant], w.batches)
                window.add_metric([w.tenant], w.newest_window_end_age_seconds)
                late.add_metric([w.tenant], w.records_late)
            yield from (count, window, late)
            stall = GaugeMetricFamily("spool_read_stalled_seconds",
                                      "Seconds since the spool job last could read the "
                                      "partition, while it cannot (read_stalls, every "
                                      "reader together)",
                                      labels=["consumer_group", "topic", "partition"])
            for st in stalled:
                stall.add_metric([st.consumer_group, st.topic, str(st.partition)],
                                 st.stalled_seconds)
            yield stall


class _ThisProcess:
    """The process's own registry (workers running in the launcher), on the same page."""

    def collect(self):
        from prometheus_client import REGISTRY

        return REGISTRY.collect()


def serve_launcher(port: int, ledger_dsn: str, job: str, addr: str = "127.0.0.1"):
    """Serve the job's page on ``addr``:``port`` from this (the launcher's) process; the
    server (``.shutdown()`` stops it), or None if the port is 0. A port in use is an error
    the caller reports: a scrape target that silently is another process would mislead."""
    if not port:
        return None
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger_dsn, job))
    registry.register(_ThisProcess())
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    log.info("%s metrics on http://%s:%d/metrics", job, addr, port)
    return server

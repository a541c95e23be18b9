"""Prometheus metrics of the loader in follow mode, served as text on a loopback port.

Beam's own counters and distributions (read from the job result) cover every mode; a
long-running loader also answers ``GET http://127.0.0.1:<port>/metrics`` so a Prometheus
server can scrape it. The server starts once per worker process.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_STARTED: dict[int, bool] = {}
_METRICS: dict = {}


def loader_metrics() -> dict:
    """The loader's Prometheus metric objects (created once per process)."""
    with _LOCK:
        if not _METRICS:
            from prometheus_client import Counter, Gauge, Histogram

            _METRICS.update(
                rows=Counter("spool_loader_rows_loaded", "Warehouse rows loaded", ["tenant"]),
                batches=Counter("spool_loader_batches", "Batches handled, by outcome",
                                ["tenant", "outcome"]),
                seconds=Histogram("spool_loader_load_seconds",
                                  "Seconds per warehouse transaction",
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)),
                backlog=Gauge("spool_loader_claimable_batches",
                              "Batches waiting to be loaded (READY and due, or lease expired)",
                              ["tenant"]),
            )
        return _METRICS


def serve(port: int) -> bool:
    """Serve /metrics on 127.0.0.1:port (once per process); False if the port is taken."""
    if not port:
        return False
    with _LOCK:
        if port in _STARTED:
            return _STARTED[port]
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr="127.0.0.1")
            _STARTED[port] = True
            log.info("Prometheus metrics on http://127.0.0.1:%d/metrics", port)
        except OSError as exc:
            _STARTED[port] = False
            log.warning("no Prometheus metrics: port %d: %s", port, exc.strerror)
        return _STARTED[port]

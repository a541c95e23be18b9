"""The jobs' metrics endpoints answer from the start, from the ledger, idle or busy.

A loader in follow mode that has nothing to load, and a spool job in streaming mode that has
read nothing yet, serve their page at once: a scrape never reports the target down while all
is well. What the page says comes from the ledger, so it describes the whole job.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request

from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.metrics import LedgerCollector
from tests.e2e.jobs import ROOT, job_env, kill, start_spool_job, wait_for
from tests.e2e.test_loader import free_port
from tests.integration.test_claims import record


def scrape(port: int) -> str | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                      timeout=5).read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_an_idle_follow_loader_serves_the_ledger_figures_from_its_start(stack, ledger_dsn,
                                                                        tmp_path):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("parked", "none")  # spooled, loaded nowhere: nothing to do
    ledger.record_batches([record("parked/orders/1", 1, tenant="parked"),
                           record("parked/orders/2", 2, tenant="parked")])
    ledger.close()
    port = free_port()
    log = open(tmp_path / "loader.log", "wb")  # noqa: SIM115 - closed below
    loader = subprocess.Popen([sys.executable, "-m", "pipelines.loader_job", "--mode=follow",
                               "--poll_seconds=1", f"--metrics_port={port}"], cwd=ROOT,
                              env=job_env(stack, ledger_dsn), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        page = wait_for("the idle loader's metrics page", lambda: scrape(port), 60,
                        interval=0.2)
        assert "spool_ledger_up 1.0" in page
        assert 'spool_batches{state="READY",tenant="parked"} 2.0' in page
        assert 'spool_loader_claimable_batches{tenant="parked"} 0.0' in page  # no warehouse
        assert 'spool_oldest_unloaded_seconds{tenant="parked"}' in page
        assert loader.poll() is None
    finally:
        kill(loader, signal.SIGTERM, timeout=60)
        log.close()


def test_a_second_loader_on_the_same_port_says_so_at_once(stack, ledger_dsn, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "pipelines.loader_job", "--mode=follow",
                              f"--metrics_port={port}"], cwd=ROOT,
                             env=job_env(stack, ledger_dsn), capture_output=True, text=True,
                             timeout=120)
    assert res.returncode == 1
    assert f"error: --metrics_port {port}:" in res.stderr and "--metrics_port=0" in res.stderr


def test_a_streaming_spool_job_serves_its_page_before_it_reads(stack, ledger_dsn, make_topic,
                                                               unique, tmp_path):
    topic = make_topic(partitions=1)
    port = free_port()
    job = start_spool_job(["--mode=streaming", f"--topic={topic}",
                           f"--consumer_group={unique}", f"--spool_location={tmp_path}/spool",
                           f"--metrics_port={port}"], job_env(stack, ledger_dsn),
                          tmp_path / "job.log")
    try:
        page = wait_for("the streaming spool job's metrics page", lambda: scrape(port), 60,
                        interval=0.2)
        assert "spool_ledger_up 1.0" in page
        assert "spool_loader_claimable_batches" not in page  # the loader's figure
        assert job.poll() is None
    finally:
        kill(job, signal.SIGTERM, timeout=60)


def test_a_ledger_that_does_not_answer_is_reported_not_raised():
    families = list(LedgerCollector("postgresql://nobody@127.0.0.1:1/none", "loader").collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == \
        [("spool_ledger_up", [0.0])]


def test_workers_on_one_machine_each_find_a_port_of_their_own():
    import socket

    from spool import metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = metrics.serve_worker(port)  # the asked port is taken: the next free one
    assert got is not None and port < got < port + metrics.WORKER_PORTS
    assert scrape(got) is not None  # this process's counters, served there

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

import psycopg2
from prometheus_client.parser import text_string_to_metric_families

from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.metrics import LedgerCollector
from tests import corpus
from tests.e2e.jobs import (
    ROOT,
    job_env,
    kill,
    ledger_rows,
    register_tenants,
    run_spool_job,
    start_spool_job,
    wait_for,
)
from tests.e2e.test_loader import free_port, register
from tests.integration.test_claims import record


def scrape(port: int) -> str | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                      timeout=5).read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def samples(page: str | None) -> dict[tuple, float]:
    """{(sample name, tenant label or None, state label or None): value} of a scraped page."""
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(page or ""):
        for s in family.samples:
            out[(s.name, s.labels.get("tenant"), s.labels.get("state"))] = s.value
    return out


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


def test_the_loader_page_follows_a_tenant_from_waiting_to_loaded(
        stack, make_topic, ledger_dsn, unique, tmp_path):
    """Batches spooled for a tenant without a warehouse show as READY and not claimable;
    once it has one, the same page shows nothing waiting, the rows its loads reported and
    how fresh the newest of them is."""
    messages = corpus.generate(600, tenants=1, streams=2, invalid_ratio=0.0, seed=21)
    (tenant,) = corpus.tenants_of(messages)
    topic = make_topic(partitions=1)
    register(ledger_dsn, [tenant], f"{unique}_a", kinds={tenant: "none"})
    corpus.produce(stack.kafka_bootstrap, topic, messages, 1)
    env = job_env(stack, ledger_dsn)
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path / 'spool'}", "--batch_max_rows=100"], env)
    (spooled,) = ledger_rows(ledger_dsn, "SELECT count(*) FROM batches WHERE tenant_id = %s "
                             "AND state = 'READY'", tenant)[0]
    assert spooled > 1
    port = free_port()
    log = open(tmp_path / "loader.log", "wb")  # noqa: SIM115 - closed below
    loader = subprocess.Popen([sys.executable, "-m", "pipelines.loader_job", "--mode=follow",
                               "--poll_seconds=1", f"--metrics_port={port}"], cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        def shown():
            m = samples(scrape(port))
            return m if m.get(("spool_batches", tenant, "READY")) == spooled else None

        waiting = wait_for("the spooled batches on the page", shown, 60, interval=0.2)
        assert waiting[("spool_loader_claimable_batches", tenant, None)] == 0
        assert waiting[("spool_oldest_unloaded_seconds", tenant, None)] > 0
        assert ("spool_newest_row_age_seconds", tenant, None) not in waiting  # none loaded
        assert waiting[("spool_ledger_rows_loaded_total", tenant, None)] == 0

        register(ledger_dsn, [tenant], f"{unique}_a")  # now it has a warehouse

        def loaded():
            m = samples(scrape(port))
            done = (m.get(("spool_batches", tenant, "READY")) == 0
                    and m.get(("spool_batches", tenant, "LOADING")) == 0
                    and ("spool_newest_row_age_seconds", tenant, None) in m)
            return m if done else None

        page = wait_for("the tenant's batches loaded, on the page", loaded, 120, interval=0.5)
    finally:
        kill(loader, signal.SIGTERM, timeout=60)
        log.close()
        conn = psycopg2.connect(stack.warehouse_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{unique}_a_{tenant}" CASCADE')
        conn.close()
    (reported,) = ledger_rows(ledger_dsn, "SELECT sum(rows_inserted + rows_updated) "
                              "FROM load_reports WHERE tenant_id = %s", tenant)[0]
    assert reported > 0
    assert page[("spool_ledger_rows_loaded_total", tenant, None)] == reported
    assert page[("spool_oldest_unloaded_seconds", tenant, None)] == 0
    assert page[("spool_batches", tenant, "FAILED")] == 0
    assert page[("spool_newest_row_age_seconds", tenant, None)] >= 0


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
    messages = corpus.generate(300, tenants=2, streams=2, invalid_ratio=0.0, seed=23)
    tenants = sorted(corpus.tenants_of(messages))
    register_tenants(ledger_dsn, tenants)
    port = free_port()
    job = start_spool_job(["--mode=streaming", f"--topic={topic}",
                           f"--consumer_group={unique}", f"--spool_location={tmp_path}/spool",
                           "--batch_seconds=2", f"--metrics_port={port}"],
                          job_env(stack, ledger_dsn),
                          tmp_path / "job.log")
    try:
        page = wait_for("the streaming spool job's metrics page", lambda: scrape(port), 60,
                        interval=0.2)
        assert "spool_ledger_up 1.0" in page
        assert "spool_loader_claimable_batches" not in page  # the loader's figure
        assert "spool_batches_written_total{" not in page  # nothing written yet
        assert job.poll() is None

        # what it writes shows on the same page, per tenant
        corpus.produce(stack.kafka_bootstrap, topic, messages, 1)

        def written():
            m = samples(scrape(port))
            counts = {t: m.get(("spool_batches_written_total", t, None)) for t in tenants}
            # nothing loads them: every batch written is READY
            if all(counts.values()) and all(
                    m.get(("spool_batches", t, "READY")) == n for t, n in counts.items()):
                return m
            return None

        page = wait_for("the batches written, per tenant", written, 120, interval=0.5)
        assert all(page[("spool_newest_window_end_age_seconds", t, None)] >= 0
                   for t in tenants)
        assert job.poll() is None
    finally:
        kill(job, signal.SIGTERM, timeout=60)
    in_ledger = dict(ledger_rows(ledger_dsn, "SELECT tenant_id, count(*) FROM batches "
                                 "GROUP BY 1"))
    assert all(page[("spool_batches_written_total", t, None)] <= in_ledger[t]
               for t in tenants)


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


def test_the_launcher_listens_where_it_is_told(ledger_dsn):
    from spool import metrics

    port = free_port()
    server = metrics.serve_launcher(port, ledger_dsn, "loader", "0.0.0.0")  # noqa: S104
    try:
        assert server.server_address[0] == "0.0.0.0"  # noqa: S104 - every interface
        assert "spool_ledger_up" in scrape(port)
    finally:
        server.shutdown()
        server.server_close()
    assert metrics.serve_launcher(0, ledger_dsn, "loader") is None  # --metrics_port=0: off

"""The jobs ride through outages of the queue, the ledger and the object store.

Each test runs its own instance of the service it takes away (tests/e2e/outages.py: the
session's shared Kafka, PostgreSQL and S3 endpoint serve every other test and are never
stopped), sends records before, during and after a 30 s outage of it, and then checks that
the jobs are still running and that every acknowledged record arrived exactly once: in the
READY batches of the ledger (the spool job alone), or in the warehouse (with a loader).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg2

from tests.e2e.jobs import (
    ROOT,
    job_env,
    kill,
    ledger_rows,
    spooled,
    start_spool_job,
    store,
    wait_for,
)
from tests.e2e.outages import Feed, PrivateService

OUTAGE_S = 30
PARTITIONS = 3
TENANTS = ["acme", "globex"]


def register(ledger_dsn: str, schema_prefix: str | None) -> None:
    """The tenants, loading into ``<prefix>_<tenant>`` of the stack's warehouse if a prefix
    is given."""
    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    for t in TENANTS:
        if schema_prefix:
            Registry(ledger).add_tenant(t, "postgres", {"dsn": "env:SPOOL_WAREHOUSE_DSN"},
                                        f"{schema_prefix}_{t}")
        else:
            Registry(ledger).add_tenant(t)
    ledger.close()


def streaming(topic: str, group: str, spool: str, *extra: str) -> list[str]:
    return [f"--topic={topic}", f"--consumer_group={group}", f"--spool_location={spool}",
            "--mode=streaming", "--batch_seconds=2", "--log_level=INFO", "--metrics_port=0",
            *extra]


def start_loader(env: dict, log: Path, *extra: str) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - closed by kill()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.loader_job", "--mode=follow",
                             "--poll_seconds=1", "--metrics_port=0", *extra], cwd=ROOT, env=env,
                            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    proc._log = fh  # type: ignore[attr-defined]
    return proc


def reading(log: Path) -> bool:
    return log.exists() and log.read_text().count("to the end of time") == PARTITIONS


def alive(jobs: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    for name, (proc, log) in jobs.items():
        assert proc.poll() is None, \
            f"the {name} ended (exit {proc.returncode}):\n{log.read_text()[-3000:]}"


def outage(service: PrivateService, jobs: dict, during=None) -> None:
    """Stop the service for OUTAGE_S seconds (the jobs must stay up all along), calling
    ``during()`` each second until it returns True; then start it again."""
    service.stop()
    seen = during is None
    end = time.monotonic() + OUTAGE_S
    while time.monotonic() < end:
        alive(jobs)
        if not seen:
            seen = bool(during())
        time.sleep(1)
    service.start()
    assert seen, "what the outage should show did not show while it lasted"


def warehouse_ids(dsn: str, prefix: str) -> Counter:
    """Record id → rows with it, over the tenants' ``events`` tables."""
    conn = psycopg2.connect(dsn)
    found: Counter = Counter()
    try:
        with conn.cursor() as cur:
            for t in TENANTS:
                cur.execute("SELECT to_regclass(%s)", (f'"{prefix}_{t}".events',))
                if cur.fetchone()[0] is None:
                    continue
                cur.execute(f'SELECT _sdc_record_id FROM "{prefix}_{t}".events')
                found.update(r[0] for r in cur.fetchall())
    finally:
        conn.close()
    return found


def drop_schemas(dsn: str, prefix: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for t in TENANTS:
            cur.execute(f'DROP SCHEMA IF EXISTS "{prefix}_{t}" CASCADE')
    conn.close()

def through_outage(service, jobs: dict, feed, warehouse_dsn: str, prefix: str):
    """The outage of ``service`` while ``feed`` sends, then records after it; the
    acknowledged ids and what the warehouse holds once every one of them arrived."""
    outage(service, jobs)
    sent_at_restart = feed.sent
    wait_for("records sent after the outage", lambda: feed.sent > sent_at_restart + 100, 60)
    acked = feed.finish()
    wait_for("every acknowledged record in the warehouse",
             lambda: set(warehouse_ids(warehouse_dsn, prefix)) >= acked, 150, interval=2)
    alive(jobs)
    return acked, warehouse_ids(warehouse_dsn, prefix)


def test_the_spool_job_rides_through_a_kafka_outage(stack, prism, ledger_dsn, unique,
                                                    tmp_path):
    from kafka.admin import KafkaAdminClient, NewTopic

    register(ledger_dsn, None)
    with PrivateService("kafka") as kafka:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        admin.create_topics([NewTopic(unique, PARTITIONS, 1)])
        admin.close()
        log = tmp_path / "job.log"
        job = start_spool_job(streaming(unique, unique, str(tmp_path / "spool"),
                                        f"--kafka_bootstrap={kafka.bootstrap}"),
                              job_env(stack, ledger_dsn), log)
        jobs = {"spool job": (job, log)}
        feed = Feed(kafka.bootstrap, unique, PARTITIONS, TENANTS)
        objects = store(stack)
        try:
            wait_for("the job reading its partitions", lambda: reading(log), 90)
            feed.start()
            wait_for("a first batch", lambda: spooled(ledger_dsn, objects), 60)

            def stall_shown() -> bool:
                res = subprocess.run([sys.executable, "-m", "spool.cli", "status",
                                      "--ledger-dsn", ledger_dsn], cwd=ROOT,
                                     capture_output=True, text=True, timeout=60, check=False)
                return f"reading {unique} partition" in res.stdout

            outage(kafka, jobs, during=stall_shown)
            sent_at_restart = feed.sent
            wait_for("records sent after the outage",
                     lambda: feed.sent > sent_at_restart + 100, 60)
            acked = feed.finish()
            wait_for("every acknowledged record in a READY batch",
                     lambda: set(spooled(ledger_dsn, objects)) >= acked, 120, interval=2)
            alive(jobs)
            found = spooled(ledger_dsn, objects)
            assert "unreachable for" in log.read_text()
            # the stall the reader noted has ended
            assert ledger_rows(ledger_dsn, "SELECT count(*) FROM read_stalls "
                                           "WHERE ended_at IS NULL") == [(0,)]
        finally:
            feed.stop()
            kill(job, signal.SIGTERM, timeout=60)
    assert acked and set(found) >= acked
    assert [rid for rid, places in found.items() if len(places) != 1] == []


def test_both_jobs_ride_through_a_ledger_outage(stack, prism, make_topic, unique, tmp_path):
    topic = make_topic(partitions=PARTITIONS)
    with PrivateService("postgres") as pg:
        ledger = pg.dsn("ledger")
        register(ledger, unique)
        env = job_env(stack, ledger)
        spool_log, loader_log = tmp_path / "job.log", tmp_path / "loader.log"
        job = start_spool_job(streaming(topic, unique, str(tmp_path / "spool")), env,
                              spool_log)
        loader = start_loader(env, loader_log)
        jobs = {"spool job": (job, spool_log), "loader": (loader, loader_log)}
        feed = Feed(stack.kafka_bootstrap, topic, PARTITIONS, TENANTS)
        try:
            wait_for("the job reading its partitions", lambda: reading(spool_log), 90)
            feed.start()
            wait_for("first rows in the warehouse",
                     lambda: warehouse_ids(stack.warehouse_dsn, unique), 90)
            acked, found = through_outage(pg, jobs, feed, stack.warehouse_dsn, unique)
        finally:
            feed.stop()
            kill(job, signal.SIGTERM, timeout=60)
            kill(loader, signal.SIGTERM, timeout=60)
            drop_schemas(stack.warehouse_dsn, unique)
    assert acked and set(found) >= acked
    assert [rid for rid, n in found.items() if n != 1] == []


def test_both_jobs_ride_through_an_object_store_outage(stack, prism, make_topic, ledger_dsn,
                                                       unique, tmp_path):
    topic = make_topic(partitions=PARTITIONS)
    register(ledger_dsn, unique)
    with PrivateService("s3") as s3:
        env = job_env(stack, ledger_dsn)
        endpoint = f"--s3_endpoint_url={s3.endpoint}"
        spool_log, loader_log = tmp_path / "job.log", tmp_path / "loader.log"
        job = start_spool_job(streaming(topic, unique, f"s3://{stack.s3_bucket}/{unique}",
                                        endpoint), env, spool_log)
        loader = start_loader(env, loader_log, endpoint)
        jobs = {"spool job": (job, spool_log), "loader": (loader, loader_log)}
        feed = Feed(stack.kafka_bootstrap, topic, PARTITIONS, TENANTS)
        try:
            wait_for("the job reading its partitions", lambda: reading(spool_log), 90)
            feed.start()
            wait_for("first rows in the warehouse",
                     lambda: warehouse_ids(stack.warehouse_dsn, unique), 90)
            # the emulator forgets its objects when it stops (a real store keeps them): the
            # records so far are loaded first, so no batch file is lost with it
            feed.pause()
            wait_for("the records so far acknowledged", lambda: len(feed.acked) == feed.sent,
                     60)
            before = feed.acknowledged()
            wait_for("the records so far loaded",
                     lambda: set(warehouse_ids(stack.warehouse_dsn, unique)) >= before, 90,
                     interval=1)
            feed.resume()
            acked, found = through_outage(s3, jobs, feed, stack.warehouse_dsn, unique)
        finally:
            feed.stop()
            kill(job, signal.SIGTERM, timeout=60)
            kill(loader, signal.SIGTERM, timeout=60)
            drop_schemas(stack.warehouse_dsn, unique)
    assert acked and set(found) >= acked
    assert [rid for rid, n in found.items() if n != 1] == []

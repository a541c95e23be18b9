"""Helpers for end-to-end tests: run the jobs as users do, read back what they spooled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg2

from spool.ingest import batchfile
from spool.objectstore import ObjectStore, S3Config

ROOT = Path(__file__).resolve().parents[2]


def job_env(stack, ledger_dsn: str) -> dict:
    env = dict(os.environ)
    env.update(stack.env)
    env["SPOOL_LEDGER_DSN"] = ledger_dsn
    return env


def start_spool_job(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """The spool job as its own process group (Prism and SDK workers die with it)."""
    fh = open(log, "ab")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.spool_job", *args], cwd=ROOT,
                            env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc._log = fh  # type: ignore[attr-defined]
    return proc


def kill(proc: subprocess.Popen, sig=signal.SIGKILL, timeout: float = 30) -> None:
    """SIGKILL hits the whole group at once (a crash); other signals go to the job's own
    process, which is expected to stop its runner; leftovers are SIGKILLed afterwards."""
    with contextlib.suppress(ProcessLookupError):
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # children in the group (prism, workers) must be gone too
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.1)
    log = getattr(proc, "_log", None)
    if log is not None:
        log.close()


def run_spool_job(args: list[str], env: dict, timeout: float = 300) -> None:
    res = subprocess.run([sys.executable, "-m", "pipelines.spool_job", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, res.stderr[-4000:]


def ledger_rows(ledger_dsn: str, sql: str, *args) -> list[tuple]:
    """The rows a query of the ledger returns (its connection closed)."""
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def batches(ledger_dsn: str) -> list[tuple]:
    return ledger_rows(ledger_dsn, "SELECT batch_id, tenant_id, stream, uri, state, "
                                   "record_count, created_at, window_end FROM batches "
                                   "ORDER BY batch_id")


def store(stack) -> ObjectStore:
    return ObjectStore(S3Config(endpoint_url=stack.s3_endpoint,
                                access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                                secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
                                region_name=stack.env["AWS_DEFAULT_REGION"]))


def spooled(ledger_dsn: str, objects: ObjectStore) -> dict[str, list[tuple]]:
    """record id → [(batch id, tenant, stream, reason code or None)] over READY batches."""
    out: dict[str, list[tuple]] = defaultdict(list)
    for batch_id, tenant, stream, uri, state, _n, _c, _w in batches(ledger_dsn):
        assert state == "READY", (batch_id, state)
        _, table = batchfile.decode(objects.read(uri))
        root = batchfile.rows_of_table(table, [])
        ids = root.column("_sdc_record_id").to_pylist()
        codes = (root.column("reason_code").to_pylist() if "reason_code" in root.column_names
                 else [None] * len(ids))
        for rid, code in zip(ids, codes, strict=True):
            out[rid].append((batch_id, tenant, stream, code))
    return out


def committed_offsets(bootstrap: str, topic: str, group: str, partitions: int) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()


def wait_for(what: str, check, deadline_s: float, interval: float = 0.5):
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not reached within {deadline_s:.0f} s")
        time.sleep(interval)


def register_tenants(ledger_dsn: str, tenants) -> None:
    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    for t in sorted(tenants):
        Registry(ledger).add_tenant(t)
    ledger.close()

"""Both jobs on a portable cluster: Prism as a standalone job server, worker pools that run
from a worker image without Spool, Spool's code shipped by --setup_file.

This is the protocol Flink's job server and Dataflow Runner v2 drive Python with, so what
breaks Beam Python jobs on a cluster breaks here too: code that is not shipped, state that
lives only in the launcher, a worker or a job server that dies. After every fault the
warehouse must equal the reference model: no valid record missing, none there twice.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from tests import corpus
from tests.conftest import STACK
from tests.e2e import cluster
from tests.e2e.jobs import kill, wait_for

pytestmark = pytest.mark.cluster
PARTITIONS = 3


@pytest.fixture(scope="session")
def portable(stack, prism) -> cluster.Cluster:
    """The job server and two worker pools, started once per session (stopped afterwards if
    this session started them)."""
    import subprocess

    before = cluster.status()
    cluster.start("jobserver", "workers")
    st = cluster.status()
    assert len(st["workers"]["pools"]) >= 2, st["workers"]
    yield cluster.Cluster(st["jobserver"]["address"],
                          tuple(st["workers"]["address"].split(",")))
    with contextlib.suppress(Exception):
        cluster.cancel_all(st["jobserver"]["address"])
    for name in ("workers", "jobserver"):
        if not before[name]["running"]:
            subprocess.run([*STACK, "stop", name], capture_output=True, check=False)


@pytest.fixture
def warehouse_prefix(stack, unique):
    """Tenant schemas ``<unique>_<tenant>`` in the warehouse, dropped afterwards."""
    yield unique
    conn = psycopg2.connect(stack.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (unique + "%",))
        for (name,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA "{name}" CASCADE')
    conn.close()


def states(ledger_dsn: str) -> dict[str, int]:
    """Batch states of the tenants that have a warehouse (unassigned rejects never load)."""
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT state, count(*) FROM batches WHERE tenant_id <> '_unassigned' "
                        "GROUP BY 1")
            return dict(cur.fetchall())
    finally:
        conn.close()


def progress(stack, ledger_dsn: str, topic: str, group: str) -> str:
    """Where the records are: committed vs end offsets per partition, batch states."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
        offsets = {tp.partition: (consumer.committed(tp), ends[tp]) for tp in tps}
    finally:
        consumer.close()
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT state, count(*), max(attempts), count(*) FILTER (WHERE "
                        "next_attempt_at > now()), count(*) FILTER (WHERE lease_expires_at > "
                        "now()) FROM batches GROUP BY 1")
            detail = cur.fetchall()
            cur.execute("SELECT datname, state, wait_event_type, wait_event, "
                        "left(query, 80) FROM pg_stat_activity WHERE state <> 'idle' "
                        "AND pid <> pg_backend_pid()")
            activity = cur.fetchall()
    finally:
        conn.close()
    return (f"(committed, end) offsets {offsets}; batches {states(ledger_dsn)}; "
            f"(state, n, max attempts, backing off, leased) {detail}; busy backends "
            f"{activity}")


def loaded_after_resubmit(stack, ledger_dsn, topic, group, deadline_s=240) -> None:
    try:
        wait_for("every record loaded after the resubmit",
                 lambda: all_loaded(stack, ledger_dsn, topic, group), deadline_s, interval=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {progress(stack, ledger_dsn, topic, group)}") from None


def all_loaded(stack, ledger_dsn: str, topic: str, group: str) -> bool:
    """The group has committed every partition to its end (offsets are committed only past
    records whose batch is in the ledger), and every batch with a warehouse is LOADED."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
        if any((consumer.committed(tp) or 0) < ends[tp] for tp in tps):
            return False
    finally:
        consumer.close()
    return set(states(ledger_dsn)) == {"LOADED"}


def job_args(portable, pool, ledger_dsn, s3_prefix, stack):
    return [*portable.flags(pool), f"--ledger_dsn={ledger_dsn}",
            f"--spool_location=s3://{stack.s3_bucket}/{s3_prefix}"]


def spool_args(topic, group, streaming: bool) -> list[str]:
    args = [f"--topic={topic}", f"--consumer_group={group}",
            f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}"]
    if streaming:
        # Prism keeps one watermark per stage: see --watermark_scope
        args += ["--mode=streaming", "--batch_seconds=2", "--watermark_scope=process",
                 "--metrics_port=0"]
    return args


LOADER_FOLLOW = ["--mode=follow", "--poll_seconds=1", "--metrics_port=0", "--lease_seconds=8",
                 "--retry_base_seconds=1", "--retry_cap_seconds=2"]


def submit(portable, module, args, env, log: Path, cwd: Path):
    """Submit a job and wait until the job server runs it: then its artifacts are staged and
    the next job can be built from the same checkout (two sdist builds at once would share
    setup.py's egg-info folder)."""
    before = cluster.running_jobs(portable.job_endpoint)
    proc = cluster.submit(module, args, env, log, cwd)
    wait_for(f"{log.name}: job running",
             lambda: proc.poll() is not None or
             cluster.running_jobs(portable.job_endpoint) - before, 120)
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc


def stopped(proc, what: str, deadline_s: float = 60) -> None:
    """The job ends after a fault: the job server fails a job whose worker died while it ran
    a bundle. A worker lost before it connected leaves the job waiting for it; then the
    operator cancels it (SIGTERM to the launcher does) before resubmitting: docs/deploy.md."""
    with contextlib.suppress(AssertionError):
        wait_for(what, lambda: proc.poll() is not None, deadline_s, interval=1)
    if proc.poll() is None:
        kill(proc, signal.SIGTERM, timeout=60)


def test_the_worker_image_does_not_have_spool(portable):
    """Spool reaches a worker only through --setup_file staging: the pools' own Python
    finds Beam but no Spool module."""
    import subprocess

    pids = [int(Path(p).read_text())
            for p in sorted(Path(cluster.ROOT / "var/cluster").glob("pool-*/pool.pid"))]
    assert len(pids) >= 2
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = dict(kv.split("=", 1) for kv in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if kv)
        assert b"apache_beam.runners.worker.worker_pool_main" in argv
        python = argv[0].decode()
        probe = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not "
                 "None for m in ('apache_beam', 'pyarrow', 'spool', 'transforms', 'pipelines')}))")
        out = subprocess.run([python, "-c", probe], env=environ, cwd="/", capture_output=True,
                             text=True, check=True).stdout
        found = json.loads(out)
        assert found["apache_beam"] and found["pyarrow"], found
        assert not (found["spool"] or found["transforms"] or found["pipelines"]), \
            f"the worker image of pool pid {pid} has Spool's code: {found}"
        assert "SPOOL_LEDGER_DSN" not in environ


def test_both_jobs_drain_on_separate_worker_pools(stack, portable, make_topic, ledger_dsn,
                                                  unique, s3_prefix, warehouse_prefix,
                                                  tmp_path):
    messages = corpus.generate(4_000, tenants=3, streams=4, invalid_ratio=0.01, seed=21)
    topic = make_topic(partitions=PARTITIONS)
    cluster.register(ledger_dsn, corpus.tenants_of(messages), warehouse_prefix)
    ids = corpus.produce(stack.kafka_bootstrap, topic, messages, PARTITIONS)
    env = cluster.launcher_env(stack)
    spooled = cluster.run("pipelines.spool_job",
                          [*job_args(portable, 0, ledger_dsn, s3_prefix, stack),
                           *spool_args(topic, unique, streaming=False)], env, tmp_path)
    assert set(states(ledger_dsn)) == {"READY"}
    cluster.run("pipelines.loader_job", job_args(portable, 1, ledger_dsn, s3_prefix, stack),
                env, tmp_path)
    assert all_loaded(stack, ledger_dsn, topic, unique), \
        f"{progress(stack, ledger_dsn, topic, unique)}\nthe spool job's log:\n" \
        f"{spooled.stderr[-4000:]}"
    diff = cluster.warehouse_differences(stack.warehouse_dsn, warehouse_prefix, messages, ids)
    assert not diff, "\n".join(diff)


class Feeder:
    """Produces the messages in slices while the jobs run, as producers do; at ``hold`` of
    them it waits for ``resume()`` (called after the fault: producers do not stop for an
    outage), so the fault always comes while records are being produced and batched."""

    def __init__(self, bootstrap, topic, messages, hold=0.7, pause_s=0.3, slice_size=100):
        self.ids: list[str] = []
        self.sent = 0
        self._go_on = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True,
            args=(bootstrap, topic, messages, int(len(messages) * hold), pause_s, slice_size))
        self._thread.start()

    def _run(self, bootstrap, topic, messages, hold, pause_s, slice_size):
        for i in range(0, len(messages), slice_size):
            if i >= hold:
                self._go_on.wait(timeout=300)
            self.ids.extend(corpus.produce(bootstrap, topic, messages[i:i + slice_size],
                                           PARTITIONS))
            self.sent = i + slice_size
            time.sleep(pause_s)

    def resume(self) -> None:
        self._go_on.set()

    def join(self) -> list[str]:
        self.resume()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive()
        return self.ids


def fault_moment(stack, ledger_dsn: str, topic: str, group: str, feeder: Feeder,
                 total: int) -> None:
    """Wait until the jobs are loading and a good part of the records is produced."""
    try:
        wait_for("batches loaded while records are produced",
                 lambda: feeder.sent >= total * 0.3 and
                 states(ledger_dsn).get("LOADED", 0) >= 3, 150, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {feeder.sent} sent, "
                             f"{progress(stack, ledger_dsn, topic, group)}") from None


def replayed(ledger_dsn: str, records: int) -> int:
    """Records the spool job batched more than once (read again after the fault)."""
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(record_count), 0) FROM batches")
            return cur.fetchone()[0] - records
    finally:
        conn.close()


def kill_worker_pools() -> None:
    """Both pools (the streaming spool job's and the follow loader's). The job server fails
    each job whose worker died; the operator restarts the pools and resubmits."""
    cluster.kill_pool(0)
    cluster.kill_pool(1)


def restart_worker_pools() -> None:
    cluster.start("workers")


def restart_job_server() -> None:
    """A lost job server leaves the pools' workers orphaned: restart the pools too."""
    import subprocess

    subprocess.run([*STACK, "stop", "workers"], capture_output=True, check=True)
    cluster.start("jobserver", "workers")


FAULTS = {
    "worker-pools": (kill_worker_pools, restart_worker_pools, 23),
    "job-server": (cluster.kill_jobserver, restart_job_server, 29),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_after_a_sigkill_mid_run_resubmitted_jobs_lose_and_double_nothing(
        fault, stack, portable, make_topic, ledger_dsn, unique, s3_prefix, warehouse_prefix,
        tmp_path):
    """SIGKILL the worker pools or the job server (a lost JobManager) while a streaming spool
    job and a follow loader run; the operator restarts what died and resubmits both jobs
    with the same flags (docs/deploy.md); the warehouse ends exactly as the reference
    model."""
    kill_it, restart, seed = FAULTS[fault]
    messages = corpus.generate(8_000, tenants=3, streams=3, invalid_ratio=0.0, seed=seed)
    topic = make_topic(partitions=PARTITIONS)
    cluster.register(ledger_dsn, corpus.tenants_of(messages), warehouse_prefix)
    env = cluster.launcher_env(stack)
    spool = [*job_args(portable, 0, ledger_dsn, s3_prefix, stack),
             *spool_args(topic, unique, streaming=True)]
    loader = [*job_args(portable, 1, ledger_dsn, s3_prefix, stack), *LOADER_FOLLOW]
    jobs = []

    def submit_both(k: int) -> None:
        jobs.append(submit(portable, "pipelines.spool_job", spool, env,
                           tmp_path / f"spool{k}.log", tmp_path))
        jobs.append(submit(portable, "pipelines.loader_job", loader, env,
                           tmp_path / f"loader{k}.log", tmp_path))

    try:
        submit_both(0)
        feeder = Feeder(stack.kafka_bootstrap, topic, messages)
        fault_moment(stack, ledger_dsn, topic, unique, feeder, len(messages))
        kill_it()
        for proc in jobs:
            stopped(proc, f"the jobs ending after the {fault} died")
        feeder.resume()
        restart()
        submit_both(1)
        ids = feeder.join()
        loaded_after_resubmit(stack, ledger_dsn, topic, unique)
    finally:
        for proc in jobs:
            # SIGTERM: the launcher cancels its job on the job server, which stops its worker
            with contextlib.suppress(Exception):
                kill(proc, signal.SIGTERM, timeout=60)
        cluster.start("jobserver", "workers")
    print(f"records batched twice after the {fault} died: {replayed(ledger_dsn, len(ids))}")
    diff = cluster.warehouse_differences(stack.warehouse_dsn, warehouse_prefix, messages, ids)
    assert not diff, "\n".join(diff)

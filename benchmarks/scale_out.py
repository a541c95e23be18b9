"""Scale-out on the local portable cluster: both jobs with one worker pool and with two.

    .venv/bin/python benchmarks/scale_out.py [--records 200000] [--runs 3] [--out FILE]

The same records (tests/corpus.py: 50 tenants x 20 streams, 6 partitions) are produced once.
Each run gets a fresh ledger database, consumer group, S3 prefix and tenant schemas, and
runs, on the job server (Prism) with worker pools from the worker image:

* spool job (drain), all records: with 1 pool, one job reads the 6 partitions; with 2 pools,
  two jobs read 3 partitions each (``--partitions``), one on each pool, at the same time;
* loader (drain), every batch: with 1 pool, one loader; with 2 pools, two loaders, one on
  each pool (claims are per tenant with SKIP LOCKED, so they share the work). Both load
  copies of the same ledger (the 1-pool spool output) into empty schemas, so they do the
  same work.

Prism gives a job one SDK worker per environment (it sends no sibling worker ids), so two
pools are used by two jobs; on Flink one job uses ``parallelism x sdk_worker_parallelism``
workers instead. Cases are interleaved (1, 2, 1, 2, ...) and each reported as the median and
spread of its runs, with the 2-vs-1 ratio of the medians:

* ``wall_s``: first submission to the last job's end (includes staging and worker start);
* ``loader stage_s``: from the ledger, the loader's work itself: first claim to last batch
  LOADED (the spool job writes all its batches at the end of a drain, so the ledger shows
  no span for it);
* CPU seconds per kind of process in each phase (SDK workers, worker start-up, job server,
  Kafka, PostgreSQL, S3, launchers), sampled from /proc: what the two cores did.

Results: benchmarks/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.spool_throughput import fresh_database, stack_env  # noqa: E402
from tests import corpus  # noqa: E402
from tests.e2e import cluster  # noqa: E402

PARTITIONS = 6
STACK = [sys.executable, str(ROOT / "scripts" / "stack.py")]


def launcher_env(env: dict) -> dict:
    out = dict(os.environ)
    out.update(env)
    out.pop("SPOOL_LEDGER_DSN", None)
    return out


KINDS = (("launcher", "-m pipelines."), ("sdk_worker", "sdk_worker_main"),
         ("worker_start", "beam-venv"), ("worker_start", " -m pip"),
         ("worker_start", "beam-python-boot"), ("job_server", "prism"),
         ("kafka", "kafka.Kafka"), ("postgres", "postgres"), ("s3", "moto_server"),
         ("benchmark", "scale_out.py"))
TICK = os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """CPU seconds per kind of process over a phase, from /proc (short-lived processes such
    as SDK workers are sampled while they live), to say what the cores were busy with."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, float]] = {}
        self.base: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self, into: dict) -> None:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = next((k for k, marker in KINDS if marker in cmd), "other")
            into[int(proc.name)] = (kind, (int(fields[11]) + int(fields[12])) / TICK)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample(self.seen)

    def __enter__(self):
        start: dict = {}
        self._sample(start)
        self.base = {pid: cpu for pid, (_k, cpu) in start.items()}
        self.seen = dict(start)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(self.seen)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (kind, cpu) in self.seen.items():
            out[kind] = out.get(kind, 0.0) + cpu - self.base.get(pid, 0.0)
        return {k: round(v, 1) for k, v in sorted(out.items()) if v >= 0.05}


def submit_all(jobs: list[tuple[str, list[str]]], env: dict, job_endpoint: str,
               workdir: Path) -> float:
    """Submit the jobs one after another (each once the job server runs the one before: two
    sdist builds at once would share setup.py's egg-info), wait for all; wall seconds."""
    start = time.monotonic()
    procs = []
    for i, (module, args) in enumerate(jobs):
        before = cluster.running_jobs(job_endpoint)
        log = open(workdir / f"{module.split('.')[-1]}{i}.log", "wb")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen([sys.executable, "-m", module, *args], cwd=workdir,
                                       env=env, stdout=log, stderr=subprocess.STDOUT), log))
        if i < len(jobs) - 1:
            deadline = time.monotonic() + 120
            while not (cluster.running_jobs(job_endpoint) - before) and \
                    procs[-1][0].poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
    for proc, log in procs:
        proc.wait(timeout=1800)
        log.close()
        if proc.returncode != 0:
            raise SystemExit(f"a job failed; see {log.name}:\n"
                             + Path(log.name).read_text()[-3000:])
    return time.monotonic() - start


def ledger_spans(ledger_dsn: str) -> tuple[float, float, int, int]:
    """(spool job stage s, loader stage s, batches, batches LOADED)."""
    import psycopg2

    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM max(created_at) - min(created_at)), "
                    "extract(epoch FROM max(loaded_at) - min(load_started_at)), count(*), "
                    "count(*) FILTER (WHERE state = 'LOADED') FROM batches "
                    "WHERE tenant_id <> '_unassigned'")
        spool_s, load_s, n, loaded = cur.fetchone()
    conn.close()
    return float(spool_s or 0), float(load_s or 0), n, loaded


def drop_schemas(warehouse_dsn: str, prefix: str) -> None:
    import psycopg2

    conn = psycopg2.connect(warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",))
        for (name,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA "{name}" CASCADE')
    conn.close()


def drop_database(admin_dsn: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def spool_phase(pools: int, tag: str, topic: str, tenants, env: dict,
                portable: cluster.Cluster, workdir: Path) -> dict:
    """The spool job (drain) over every partition: one job, or one job per pool over a
    disjoint partition subset. Leaves its ledger database ``bench_<tag>``."""
    ledger_dsn = fresh_database(env["SPOOL_LEDGER_DSN"], f"bench_{tag}")
    cluster.register(ledger_dsn, tenants, tag)
    common = [f"--ledger_dsn={ledger_dsn}",
              f"--spool_location=s3://{env['SPOOL_S3_BUCKET']}/bench/{tag}"]
    spool = [f"--topic={topic}", f"--consumer_group={tag}",
             f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}"]
    subsets = [",".join(str(p) for p in range(i, PARTITIONS, pools)) for i in range(pools)]
    (workdir / tag).mkdir(parents=True)
    with CpuSampler() as cpu:
        wall = submit_all(
            [("pipelines.spool_job", [*portable.flags(i), *common, *spool,
                                      *([f"--partitions={subsets[i]}"] if pools > 1 else [])])
             for i in range(pools)], launcher_env(env), portable.job_endpoint, workdir / tag)
    _s, _l, n, _loaded = ledger_spans(ledger_dsn)
    return {"wall_s": round(wall, 2), "batches": n, "cpu_s": cpu.by_kind()}


def copy_ledger(env: dict, source_tag: str, tag: str) -> str:
    """A copy of a spooled ledger whose tenants load into schemas of their own, so every
    loader case loads the same batches into empty schemas."""
    import psycopg2

    admin = psycopg2.connect(env["SPOOL_LEDGER_DSN"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "bench_{tag}" TEMPLATE "bench_{source_tag}"')
    admin.close()
    dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + f"/bench_{tag}"
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE tenants SET schema_name = %s || substr(schema_name, %s)",
                    (tag, len(source_tag) + 1))
    conn.close()
    return dsn


def load_phase(pools: int, ledger_dsn: str, spool_location: str, env: dict,
               portable: cluster.Cluster, workdir: Path, tag: str) -> dict:
    """The loader (drain): one loader, or one per pool side by side, on the same batches."""
    common = [f"--ledger_dsn={ledger_dsn}", f"--spool_location={spool_location}",
              "--metrics_port=0"]
    (workdir / tag).mkdir(parents=True)
    with CpuSampler() as cpu:
        wall = submit_all([("pipelines.loader_job", [*portable.flags(i), *common])
                           for i in range(pools)], launcher_env(env), portable.job_endpoint,
                          workdir / tag)
    _s, stage, n, loaded = ledger_spans(ledger_dsn)
    if loaded != n:
        raise SystemExit(f"run {tag}: {loaded} of {n} batches LOADED")
    return {"wall_s": round(wall, 2), "stage_s": round(stage, 2), "batches": n,
            "cpu_s": cpu.by_kind()}


def one_round(k: int, topic: str, tenants, env: dict, portable: cluster.Cluster,
              workdir: Path) -> list[dict]:
    """Spool job with 1 then 2 pools; then the loader with 1 then 2 pools, both on copies of
    the 1-pool spool output (two spool jobs cut twice the batches: the loader cases would
    not load the same work)."""
    base = uuid.uuid4().hex[:6]
    spooled = {p: spool_phase(p, f"s{p}_{k}_{base}", topic, tenants, env, portable, workdir)
               for p in (1, 2)}
    location = f"s3://{env['SPOOL_S3_BUCKET']}/bench/s1_{k}_{base}"
    loads = {}
    for p in (1, 2):
        tag = f"l{p}_{k}_{base}"
        loads[p] = load_phase(p, copy_ledger(env, f"s1_{k}_{base}", tag), location, env,
                              portable, workdir, tag)
        drop_schemas(env["SPOOL_WAREHOUSE_DSN"], tag)
        drop_database(env["SPOOL_LEDGER_DSN"], f"bench_{tag}")
    for p in (1, 2):
        drop_schemas(env["SPOOL_WAREHOUSE_DSN"], f"s{p}_{k}_{base}")
        drop_database(env["SPOOL_LEDGER_DSN"], f"bench_s{p}_{k}_{base}")
    out = []
    for p in (1, 2):
        run = {"pools": p, "run": k, "spool_wall_s": spooled[p]["wall_s"],
               "spool_batches": spooled[p]["batches"], "loader_wall_s": loads[p]["wall_s"],
               "loader_stage_s": loads[p]["stage_s"], "loader_batches": loads[p]["batches"],
               "spool_cpu_s": spooled[p]["cpu_s"], "loader_cpu_s": loads[p]["cpu_s"]}
        print(f"[bench] {json.dumps(run)}", flush=True)
        out.append(run)
    return out


def summary(runs: list[dict], key: str) -> dict:
    by = {p: [r[key] for r in runs if r["pools"] == p] for p in (1, 2)}
    med = {p: statistics.median(v) for p, v in by.items()}
    return {"median_1_pool": med[1], "median_2_pools": med[2],
            "spread_1_pool": [min(by[1]), max(by[1])],
            "spread_2_pools": [min(by[2]), max(by[2])],
            "speedup_2_vs_1": round(med[1] / med[2], 3) if med[2] else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale_out.json")
    args = parser.parse_args(argv)

    env = stack_env()
    subprocess.run([*STACK, "start", "jobserver", "workers"], check=True,
                   env=dict(os.environ, SPOOL_WORKER_POOLS="2"))
    st = cluster.status()
    portable = cluster.Cluster(st["jobserver"]["address"],
                               tuple(st["workers"]["address"].split(",")))
    if len(portable.pools) < 2:
        raise SystemExit("two worker pools are needed: scripts/stack.py start workers")

    from kafka.admin import KafkaAdminClient, NewTopic

    messages = corpus.generate(args.records, tenants=50, streams=20, seed=3)
    topic = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)
    tenants = corpus.tenants_of(messages)
    workdir = ROOT / "var" / "bench" / "scale_out"
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for k in range(args.runs):
            runs.extend(one_round(k, topic, tenants, env, portable, workdir))
    finally:
        admin.delete_topics([topic])
        admin.close()
    result = {
        "benchmark": "scale_out",
        "records": args.records, "partitions": PARTITIONS, "runs_per_case": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "job_server": "Prism (standalone), EXTERNAL worker pools from the worker image",
        "spool_job_wall": summary(runs, "spool_wall_s"),
        "loader_wall": summary(runs, "loader_wall_s"),
        "loader_stage": summary(runs, "loader_stage_s"),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

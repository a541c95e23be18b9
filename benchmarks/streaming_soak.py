"""Streaming for a long time, with faults: freshness, losses, duplicates and memory.

    .venv/bin/python benchmarks/streaming_soak.py [--minutes 10] [--rate 1000]
        [--tenants 10] [--streams 5] [--partitions 6] [--batch_seconds 10]
        [--poll_seconds 2] [--kill spool_job@0.3 --kill loader@0.6] [--out FILE] [--keep]

Starts what a user starts: the spool job (``--mode=streaming`` on Prism) and the loader
(``--mode=follow``), each as its own process group, against a fresh ledger, warehouse and
topic on the local stack. A producer sends ``--rate`` records/s, spread evenly over
``--tenants`` x ``--streams`` (even streams keyed by ``id``, odd ones append-only), each
record carrying its send time. Every loaded table gets a user column
``observed_at timestamptz DEFAULT clock_timestamp()`` once the warm-up has created it
(which also shows that the loader keeps user columns); a record's *freshness* is
``observed_at`` minus its send time: how old it was when its row was written in the
warehouse.

``--outage SERVICE@FRACTION:SECONDS`` takes a service of the local stack (kafka, s3 or
postgres, which holds both the ledger and the warehouse) away at that fraction of the run for
that many seconds; the jobs must ride through it (a job that ends fails the run). Kafka and
PostgreSQL are stopped and started with ``scripts/stack.py stop``/``start``, as a user would.
S3 is not stopped (moto keeps its objects in memory only, so a stopped emulator would lose
every batch file not loaded yet, which a real S3 keeps): with any s3 outage the spool is on
the stack's S3 bucket instead of a local folder, and both jobs reach it through a
fault-injecting proxy in this process (benchmarks/s3_fault_proxy.py, given to them as
``--s3_endpoint_url``), which answers every request with 503 ServiceUnavailable for those
seconds while moto keeps running behind it; the outage's record counts the requests refused.
Each outage is reported with the catch-up after it, as a kill is.

``--kill JOB@FRACTION`` SIGKILLs the job's whole process group (a crash) at that fraction
of the run and starts it again at once, as an operator or a supervisor would. After the
producer stops, the run waits (up to ``--settle_seconds``) for every acknowledged record to
be in the warehouse, then stops both jobs with SIGTERM.

Written to benchmarks/results/streaming_soak.json (and a PNG): freshness p50/p95/p99/max
overall and per minute of send time, per 10 s in the plot; records acknowledged, lost
(acknowledged, not in the warehouse) and duplicated (rows beyond one per id), exact; the
RSS and CPU of each job's process group (and the machine's CPU) every few seconds; window
end to READY per minute; records late (``records.late``: loaded in a later pane than their
window's); ``offset_check``, what ``spool check offsets`` says of the soak's topic and
consumer group once the jobs stopped (offsets committed but in no batch are lost); each
kill, and the catch-up after it: seconds from the restart until the records sent are fresh
again (the first of three consecutive 10 s slices of send time with p95 within
``--target_p95`` seconds), and the worst slice p95 from one window before the kill to a
minute after the restart. ``--keep`` keeps the ledger and warehouse
databases (and the spool folder, or with an s3 outage the batch files on S3, which are
deleted otherwise) for a look afterwards and prints where they are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.s3_fault_proxy import S3FaultProxy  # noqa: E402
from benchmarks.spool_throughput import drop_databases, fresh_database, stack_env  # noqa: E402

SLICE_S = 10  # freshness slices in the plot and for catch-up
RSS_EVERY_S = 5
JOBS = ("spool_job", "loader")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def figures(values: list[float]) -> dict:
    if not values:
        return {}
    return {"n": len(values), "p50": round(percentile(values, 50), 2),
            "p95": round(percentile(values, 95), 2), "p99": round(percentile(values, 99), 2),
            "max": round(max(values), 2)}


def group_usage(pgid: int) -> tuple[float, float]:
    """Resident memory (MiB) and CPU seconds so far of every live process in the group."""
    page = os.sysconf("SC_PAGE_SIZE")
    tick = os.sysconf("SC_CLK_TCK")
    rss = cpu = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:  # state, ppid, pgrp
                continue
            cpu += int(fields[11]) + int(fields[12])  # utime, stime
            rss += int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return rss / 2**20, cpu / tick


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


class Job:
    """One of the two jobs, started as a user would, restartable after a kill."""

    def __init__(self, name: str, args: list[str], env: dict, logs: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.logs = logs
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        module = "pipelines.spool_job" if self.name == "spool_job" else "pipelines.loader_job"
        log = open(self.logs / f"{self.name}.{self.starts}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", module, *self.args], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        self.starts += 1

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 10  # the group's other processes too
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)
        self.kill()


class Producer(threading.Thread):
    """Sends ``rate`` records/s over the streams, round-robin, until stopped; remembers the
    id of every record the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, streams: list,
                 rate: int) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.streams = streams  # (tenant, stream, keyed)
        self.rate = rate
        self.stop_event = threading.Event()
        self.acked: set[int] = set()
        self.sent = 0
        self.next_id = 0

    def send(self, producer) -> None:
        tenant, stream, keyed = self.streams[self.next_id % len(self.streams)]
        rid = self.next_id
        self.next_id += 1
        env = {"tenant": tenant, "stream": stream, "sequence": rid,
               "data": {"id": rid, "sent_ms": int(time.time() * 1000),
                        "amount": rid % 997 / 10, "note": "soak"}}
        if keyed:
            env["key_names"] = ["id"]
        future = producer.send(self.topic, json.dumps(env).encode(),
                               partition=rid % self.partitions)
        future.add_callback(lambda _meta, rid=rid: self.acked.add(rid))
        self.sent += 1

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        start = time.monotonic()
        tick = 0.02
        while not self.stop_event.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                self.send(producer)
            time.sleep(tick)
        producer.flush(timeout=60)
        producer.close()


def setup(env: dict, tag: str, tenants: list[str], partitions: int) -> tuple[str, str, str]:
    """A fresh ledger with the tenants registered, a fresh warehouse, an empty topic."""
    from kafka.admin import KafkaAdminClient, NewTopic

    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    warehouse = fresh_database(admin_dsn, f"soak_wh_{tag}")
    ledger_dsn = fresh_database(admin_dsn, f"soak_ledger_{tag}")
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    registry = Registry(ledger)
    for t in tenants:
        registry.add_tenant(t, "postgres", {"dsn": "env:SOAK_WAREHOUSE_DSN"}, f"soak_{t}")
    ledger.close()
    topic = f"soak.{tag}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    return topic, ledger_dsn, warehouse


def loaded_tables(conn) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.columns "
                    "WHERE table_schema LIKE 'soak\\_%%' AND column_name = 'sent_ms'")
        return sorted(cur.fetchall())


def add_probe(conn, tables) -> None:
    with conn, conn.cursor() as cur:
        for schema, table in tables:
            cur.execute(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN IF NOT EXISTS observed_at '
                        "timestamptz DEFAULT clock_timestamp()")


def read_rows(conn, tables, first_id: int) -> list[tuple[int, int, float, float]]:
    """(id, sent ms, batched epoch s, observed epoch s) of every measured row."""
    rows = []
    with conn, conn.cursor() as cur:
        for schema, table in tables:
            cur.execute(f'SELECT id, sent_ms, extract(epoch FROM _sdc_batched_at), '
                        f'extract(epoch FROM observed_at) FROM "{schema}"."{table}" '
                        "WHERE id >= %s", (first_id,))
            rows += [(int(i), int(s), float(b), float(o)) for i, s, b, o in cur.fetchall()]
    return rows


def ledger_legs(ledger_dsn: str, since: float) -> dict:
    """Per batch closed after ``since`` (epoch s): seconds from its window's end to READY in
    the ledger, from READY to claimed by the loader, from claimed to LOADED."""
    import psycopg2

    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM created_at - window_end), "
                        "extract(epoch FROM load_started_at - created_at), "
                        "extract(epoch FROM loaded_at - load_started_at), "
                        "extract(epoch FROM window_end) FROM batches "
                        "WHERE state = 'LOADED' AND window_end >= to_timestamp(%s)", (since,))
            legs = cur.fetchall()
    finally:
        conn.close()
    names = ("window_end_to_ready", "ready_to_claimed", "claimed_to_loaded")
    out = {name: figures([float(leg[i]) for leg in legs]) for i, name in enumerate(names)}
    minutes: dict[int, list[float]] = {}
    for leg in legs:
        minutes.setdefault(int((float(leg[3]) - since) // 60), []).append(float(leg[0]))
    out["window_end_to_ready_per_minute"] = {str(m): figures(v)
                                             for m, v in sorted(minutes.items())}
    return out


def offset_check(env: dict, ledger_dsn: str, topic: str, group: str) -> tuple[dict, int]:
    """(spool check offsets' answer, records late in total) of the soak's ledger."""
    from spool.ledger.coverage import records_late
    from spool.ledger.store import Ledger
    from spool.offset_check import CheckError, check_offsets

    ledger = Ledger(ledger_dsn)
    try:
        try:
            checked = check_offsets(ledger, env["SPOOL_KAFKA_BOOTSTRAP"], topic, group)
        except CheckError as exc:
            checked = {"error": str(exc)}
        return checked, records_late(ledger)
    finally:
        ledger.close()


OUTAGE_SERVICES = ("kafka", "s3", "postgres")


def stack(command: str, service: str) -> None:
    """``scripts/stack.py COMMAND SERVICE``: stop or start a service as a user does."""
    subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), command, service],
                   check=True, capture_output=True)


def take_down(service: str, proxy: S3FaultProxy | None) -> None:
    """Begin an outage: S3 answers 503 through the proxy; kafka or postgres is stopped."""
    if service == "s3":
        proxy.down = True
    else:
        stack("stop", service)


def bring_back(service: str, proxy: S3FaultProxy | None) -> None:
    if service == "s3":
        proxy.down = False
    else:
        stack("start", service)


def remove_prefix(env: dict, uri: str) -> None:
    """Delete the soak's batch files from the stack's S3 (moto keeps them in memory)."""
    import boto3

    bucket, _, prefix = uri[len("s3://"):].partition("/")
    s3 = boto3.client("s3", endpoint_url=env["SPOOL_S3_ENDPOINT"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                            Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def wait_for(what: str, check, deadline_s: float, interval: float = 1.0):
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise SystemExit(f"soak: gave up waiting for {what} after {deadline_s:.0f} s")
        time.sleep(interval)


def catch_up(fresh: list[tuple[float, float]], restart: float, target: float,
             end: float) -> float | None:
    """Seconds from ``restart`` to the first of three consecutive 10 s slices of send time
    whose p95 freshness is within ``target`` (a later blip is not the kill's doing)."""
    slices: dict[int, list[float]] = {}
    for sent, age in fresh:
        if sent >= restart:
            slices.setdefault(int((sent - restart) // SLICE_S), []).append(age)
    complete = [k for k in sorted(slices) if restart + (k + 1) * SLICE_S <= end]
    for i, k in enumerate(complete):
        run = complete[i:i + 3]
        if len(run) == 3 and run[-1] - k == 2 and all(
                percentile(slices[j], 95) <= target for j in run):
            return k * SLICE_S
    return None


def worst_p95_near(fresh: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The highest p95 of the 10 s slices of send time from ``start`` to ``end``."""
    slices: dict[int, list[float]] = {}
    for sent, age in fresh:
        if start <= sent < end:
            slices.setdefault(int((sent - start) // SLICE_S), []).append(age)
    return max((round(percentile(v, 95), 2) for v in slices.values()), default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long the producer sends (default 10)")
    parser.add_argument("--rate", type=int, default=1000, help="records/s (default 1000)")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--streams", type=int, default=5, help="per tenant (default 5)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch_seconds", type=float, default=10.0)
    parser.add_argument("--poll_seconds", type=float, default=2.0)
    parser.add_argument("--kill", action="append", default=None, metavar="JOB@FRACTION",
                        help="SIGKILL JOB (spool_job or loader) at this fraction of the run "
                        "and restart it (default: spool_job@0.3 and loader@0.6; "
                        "--kill none for no kills)")
    parser.add_argument("--outage", action="append", default=[],
                        metavar="SERVICE@FRACTION:SECONDS",
                        help="stop SERVICE (kafka or postgres) of the local stack at this "
                        "fraction of the run for SECONDS, then start it again; for s3, answer "
                        "every S3 request with 503 for SECONDS through a proxy; repeatable")
    parser.add_argument("--target_p95", type=float, default=13.0,
                        help="freshness a slice must be within to count as caught up")
    parser.add_argument("--settle_seconds", type=float, default=300.0)
    parser.add_argument("--spool_arg", action="append", default=[],
                        help="extra spool job option, repeatable")
    parser.add_argument("--loader_arg", action="append", default=[],
                        help="extra loader option, repeatable")
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", action="store_true",
                        help="keep the soak's ledger and warehouse databases (and its spool "
                        "folder) at the end, and print where they are")
    args = parser.parse_args(argv)
    kills = []
    for spec in args.kill if args.kill is not None else ["spool_job@0.3", "loader@0.6"]:
        if spec == "none":
            continue
        job, _, frac = spec.partition("@")
        if job not in JOBS or not frac:
            parser.error(f"--kill {spec!r}: give JOB@FRACTION, JOB one of {', '.join(JOBS)}")
        kills.append((float(frac) * args.minutes * 60, job))
    kills.sort()
    outages = []
    for spec in args.outage:
        service, _, when = spec.partition("@")
        frac, _, seconds = when.partition(":")
        try:
            outages.append((float(frac) * args.minutes * 60, service, float(seconds)))
        except ValueError:
            service = ""
        if service not in OUTAGE_SERVICES:
            parser.error(f"--outage {spec!r}: give SERVICE@FRACTION:SECONDS, SERVICE one of "
                         f"{', '.join(OUTAGE_SERVICES)}, e.g. kafka@0.5:30")
    outages.sort()

    import psycopg2

    from tests import corpus

    env = stack_env()
    os.environ.update(env)
    machine = harness.machine()
    tag = uuid.uuid4().hex[:8]
    tenants = [corpus.tenant_name(i) for i in range(args.tenants)]
    streams = [(t, corpus.stream_name(j), j % 2 == 0) for t in tenants
               for j in range(args.streams)]
    topic, ledger_dsn, warehouse = setup(env, tag, tenants, args.partitions)
    work = ROOT / "var" / "bench" / f"soak_{tag}"
    work.mkdir(parents=True, exist_ok=True)
    job_env = dict(os.environ, SPOOL_LEDGER_DSN=ledger_dsn, SOAK_WAREHOUSE_DSN=warehouse)
    spool = work / "spool"
    proxy = None  # between the jobs and moto, with an s3 outage
    s3_args: list[str] = []
    if any(service == "s3" for _at, service, _s in outages):
        spool = f"s3://{env['SPOOL_S3_BUCKET']}/bench/soak_{tag}"
        proxy = S3FaultProxy(env["SPOOL_S3_ENDPOINT"]).start()
        # both jobs take the endpoint from SPOOL_S3_ENDPOINT (the loader whatever its
        # --spool_location); the flag says it once more
        job_env["SPOOL_S3_ENDPOINT"] = proxy.url
        s3_args = [f"--s3_endpoint_url={proxy.url}"]
        print(f"[soak] S3 through {proxy.url} (to moto at {env['SPOOL_S3_ENDPOINT']})",
              flush=True)
    down: dict[str, dict] = {}  # service → its outage, while it is stopped
    outage_events: list[dict] = []
    jobs = {
        "spool_job": Job("spool_job", [f"--topic={topic}", f"--consumer_group=soak-{tag}",
                                       f"--spool_location={spool}", "--mode=streaming",
                                       f"--batch_seconds={args.batch_seconds}",
                                       *s3_args, *args.spool_arg], job_env, work),
        "loader": Job("loader", ["--mode=follow", f"--poll_seconds={args.poll_seconds}",
                                 "--metrics_port=0", *s3_args, *args.loader_arg], job_env,
                      work),
    }
    conn = psycopg2.connect(warehouse)
    producer = Producer(env["SPOOL_KAFKA_BOOTSTRAP"], topic, args.partitions, streams,
                        args.rate)
    rss: dict[str, list[list[float]]] = {j: [] for j in JOBS}
    cpu: dict[str, list[list[float]]] = {j: [] for j in [*JOBS, "machine"]}
    last_cpu: dict[str, tuple[float, float]] = {}
    events: list[dict] = []

    def end_outage(service: str, outage: dict) -> None:
        bring_back(service, proxy)
        outage["restarted_s"] = round(time.time() - t0, 1)
        if service == "s3":
            outage["refused_requests"] = proxy.refused - outage.pop("refused_before")
        outage_events.append(down.pop(service))
        print(f"[soak] {service} " + ("answering again" if service == "s3" else "started again")
              + f" at {time.time() - t0:.0f} s", flush=True)

    try:
        for job in jobs.values():
            job.start()
        # warm-up: one record per stream creates the tables; then the probe column
        print(f"[soak] warm-up: {len(streams)} tables, logs in {work}", flush=True)
        from kafka import KafkaProducer

        warm = KafkaProducer(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"], acks="all")
        for _ in streams:
            producer.send(warm)
        warm.flush()
        warm.close()
        first_id = producer.next_id
        producer.sent, producer.acked = 0, set()
        tables = wait_for("the warm-up tables",
                          lambda: (t := loaded_tables(conn)) and len(t) == len(streams) and t,
                          180 + 3 * args.batch_seconds)
        add_probe(conn, tables)
        print(f"[soak] sending {args.rate} records/s for {args.minutes} min", flush=True)
        t0 = time.time()
        producer.start()
        duration = args.minutes * 60
        pending = list(kills)
        pending_outages = list(outages)
        while (elapsed := time.time() - t0) < duration:
            for name, job in jobs.items():
                mib, cpu_s = group_usage(job.proc.pid)
                rss[name].append([round(elapsed, 1), round(mib, 1)])
                before = last_cpu.get(name)
                if before and cpu_s >= before[1] and elapsed > before[0]:  # not across a restart
                    cpu[name].append([round(elapsed, 1),
                                      round(100 * (cpu_s - before[1]) / (elapsed - before[0]))])
                last_cpu[name] = (elapsed, cpu_s)
            busy, total = machine_jiffies()
            if "machine" in last_cpu and total > last_cpu["machine"][1]:
                was_busy, was_total = last_cpu["machine"]
                cpu["machine"].append([round(elapsed, 1), round(
                    100 * (os.cpu_count() or 1) * (busy - was_busy) / (total - was_total))])
            last_cpu["machine"] = (busy, total)
            for name, job in jobs.items():
                if job.proc.poll() is not None:
                    raise SystemExit(f"soak: the {name} ended by itself (exit "
                                     f"{job.proc.returncode}); see {work}")
            while pending and pending[0][0] <= elapsed:
                _at, name = pending.pop(0)
                killed = time.time()
                jobs[name].kill()
                jobs[name].start()
                events.append({"job": name, "killed_s": round(killed - t0, 1),
                               "restarted_s": round(time.time() - t0, 1)})
                print(f"[soak] {name} killed at {killed - t0:.0f} s and restarted", flush=True)
            while pending_outages and pending_outages[0][0] <= elapsed:
                _at, service, seconds = pending_outages.pop(0)
                if service in down:  # overlapping outages of one service make one longer
                    down[service]["seconds"] = max(
                        down[service]["seconds"],
                        time.time() - t0 - down[service]["stopped_s"] + seconds)
                    continue
                refused = proxy.refused if service == "s3" else 0
                take_down(service, proxy)
                down[service] = {"service": service, "seconds": seconds,
                                 "stopped_s": round(time.time() - t0, 1)}
                if service == "s3":
                    down[service]["refused_before"] = refused
                print(f"[soak] {service} " + ("answering 503" if service == "s3" else "stopped")
                      + f" at {time.time() - t0:.0f} s", flush=True)
            for service, outage in list(down.items()):
                if time.time() - t0 >= outage["stopped_s"] + outage["seconds"]:
                    end_outage(service, outage)
            time.sleep(max(0.1, min([RSS_EVERY_S] + [
                o["stopped_s"] + o["seconds"] - (time.time() - t0) for o in down.values()])))
        for service, outage in list(down.items()):  # the run ended first
            end_outage(service, outage)
        if any(o["service"] == "postgres" for o in outage_events):
            conn.close()  # the warehouse restarted under it
            conn = psycopg2.connect(warehouse)
        producer.stop_event.set()
        producer.join()
        stopped = time.time()
        acked = set(producer.acked)
        print(f"[soak] producer stopped: {producer.sent:,} sent, {len(acked):,} acknowledged; "
              "waiting for the warehouse", flush=True)

        def arrived():
            ids = {i for i, *_ in read_rows(conn, tables, first_id)}
            return acked <= ids

        settled = True
        try:
            wait_for("every acknowledged record in the warehouse", arrived,
                     args.settle_seconds, interval=2)
        except SystemExit as exc:
            print(f"[soak] {exc}", flush=True)
            settled = False
        settle_s = time.time() - stopped
    finally:
        producer.stop_event.set()
        for service in down:  # a run that failed during an outage leaves the stack up
            bring_back(service, proxy)
        for job in jobs.values():
            job.stop()
        if proxy is not None:
            proxy.stop()
    rows = read_rows(conn, tables, first_id)
    conn.close()
    legs = ledger_legs(ledger_dsn, t0)
    checked, late = offset_check(env, ledger_dsn, topic, f"soak-{tag}")
    if args.keep:
        print(f"[soak] kept: ledger {ledger_dsn}, warehouse {warehouse}, spool {spool}, "
              f"topic {topic}, consumer group soak-{tag}", flush=True)
    else:
        drop_databases(env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres",
                       [f"soak_wh_{tag}", f"soak_ledger_{tag}"])
        if proxy is not None:
            remove_prefix(env, spool)

    counts: dict[int, int] = {}
    for i, *_ in rows:
        counts[i] = counts.get(i, 0) + 1
    lost = sorted(acked - set(counts))
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    fresh = sorted((s / 1000 - t0, o - s / 1000) for i, s, _b, o in rows if i in acked)
    ages = [a for _s, a in fresh]
    legs = {"sent_to_batched": figures([b - s / 1000 for i, s, b, _o in rows if i in acked]),
            "batched_to_observed": figures([o - b for i, _s, b, o in rows if i in acked]),
            **legs}
    per_minute = {}
    for sent, age in fresh:
        per_minute.setdefault(int(sent // 60), []).append(age)
    slices: dict[int, list[float]] = {}
    for sent, age in fresh:
        slices.setdefault(int(sent // SLICE_S), []).append(age)
    # caught up: within --target_p95, or within 1.5 x the p95 before the first fault when
    # this load's normal freshness is above the target (a catch-up that can never be seen
    # would read null)
    first_fault = min([e["killed_s"] for e in events] + [o["stopped_s"] for o in outage_events]
                      + [duration])
    before = [age for sent, age in fresh if sent < first_fault - args.batch_seconds]
    target = max(args.target_p95, 1.5 * percentile(before, 95)) if before else args.target_p95
    for event in events:
        restart = event["restarted_s"]
        event["catch_up_s"] = catch_up(fresh, restart, target, stopped - t0)
        event["catch_up_batch_intervals"] = (
            None if event["catch_up_s"] is None
            else round(event["catch_up_s"] / args.batch_seconds, 1))
        # records sent from a window before the kill to a minute after the restart
        event["worst_p95_near_s"] = worst_p95_near(
            fresh, event["killed_s"] - args.batch_seconds, restart + 60)
    for outage in outage_events:
        outage["catch_up_s"] = catch_up(fresh, outage["restarted_s"], target, stopped - t0)
        outage["worst_p95_near_s"] = worst_p95_near(
            fresh, outage["stopped_s"] - args.batch_seconds, outage["restarted_s"] + 60)
    # growth over the last half of the run, from the job's last restart if that came later
    growth = {}
    for name, samples in rss.items():
        since = max([duration / 2] + [e["restarted_s"] for e in events if e["job"] == name])
        tail = [m for t, m in samples if t >= since]
        if len(tail) >= 2:
            growth[name] = round(statistics.mean(tail[-3:]) / statistics.mean(tail[:3]) - 1, 4)
    result = {
        "benchmark": "streaming_soak",
        "commit": harness.commit(),
        "machine": machine,
        "versions": harness.versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "kills": events,
        "catch_up_target_p95_s": round(target, 2),
        "outages": outage_events,
        "records": {"sent": producer.sent, "acknowledged": len(acked),
                    "in_warehouse": len(counts), "lost": len(lost),
                    "lost_ids_sample": lost[:20], "duplicated_rows": duplicated,
                    "all_arrived": settled, "settle_s": round(settle_s, 1), "late": late},
        # spool check offsets on the soak's topic and group, after the jobs stopped
        "offset_check": checked,
        "freshness_s": figures(ages),
        "where_the_seconds_go": legs,
        "freshness_s_per_minute": {str(m): figures(v) for m, v in sorted(per_minute.items())},
        "rss_mib": rss,
        "rss_growth_last_half": growth,
        "cpu_percent": cpu,  # per process group and the whole machine; 100 = one core
        "chart": [
            {"title": "freshness (send → row in the warehouse) per 10 s of send time",
             "ylabel": "seconds", "xlabel": "seconds into the run",
             "lines": {q: [[k * SLICE_S, *[round(percentile(v, n), 2)] * 3]
                           for k, v in sorted(slices.items())]
                       for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
             "marks": [[e["killed_s"], f"kill {e['job']}"] for e in events]},
            {"title": "RSS of each job's process group", "ylabel": "MiB",
             "xlabel": "seconds into the run",
             "lines": {name: [[t, m, m, m] for t, m in samples]
                       for name, samples in rss.items()},
             "marks": [[e["killed_s"], f"kill {e['job']}"] for e in events]},
            {"title": "CPU (100 % = one core)", "ylabel": "%",
             "xlabel": "seconds into the run",
             "lines": {name: [[t, c, c, c] for t, c in samples]
                       for name, samples in cpu.items()},
             "marks": [[e["killed_s"], f"kill {e['job']}"] for e in events]},
        ],
    }
    path = harness.write("streaming_soak", result, args.out)
    print(json.dumps({k: result[k] for k in ("records", "freshness_s", "where_the_seconds_go",
                                             "kills", "outages", "rss_growth_last_half")},
                     indent=2))
    print("[soak] offset check: " + (checked["error"] if "error" in checked else
                                      f"lost {checked['lost']}, unread {checked['unread']}, "
                                      f"{checked['checked']} offsets checked"))
    print(f"[soak] results: {path}")
    return 0 if not lost and not duplicated and settled and not checked.get("lost") else 1


if __name__ == "__main__":
    sys.exit(main())

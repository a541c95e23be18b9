"""Profile the spool job and the loader with py-spy, on a chosen number of streams.

    .venv/bin/python benchmarks/profile_jobs.py [--shape 100x100] [--records 100000]

Sets up a fresh ledger and warehouse and a topic with the records (tests/corpus.py), then
runs two rounds as benchmarks/scaling.py does (spool job, loader; the same records again:
spool job, loader into existing tables), each job with its SDK worker processes under
``py-spy record --subprocesses``. Writes, per step, the collapsed stacks to
var/profiles/<shape>/<step>.txt (megabytes; for flame graph tools and grep) and the
functions with the most samples, own and total, to
benchmarks/results/profiles/<shape>/<step>.top.txt, with the samples by area of Spool's
code first. py-spy is installed into the project venv on first use.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scaling import PARTITIONS, parse_shape  # noqa: E402
from benchmarks.spool_throughput import drop_databases, fresh_database, stack_env  # noqa: E402
from tests import corpus  # noqa: E402


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy==0.4.3"], check=True)
    return str(Path(sys.executable).parent / "py-spy")


# areas of Spool's code, by a frame the stack holds (first match wins); the rest is Beam's
# runner, gRPC, start-up and idle threads
AREAS = [
    ("stage: Parquet decode of batch files", ("batchfile.py:26",)),
    ("stage: Arrow work per stream and table", ("stage_group", "stage_batches")),
    ("warehouse: statements (waiting on the server)", ("Statements.flush",)),
    ("warehouse: COPY into stage tables", ("stagers.py",)),
    ("warehouse: merge, plan, schema in Python", ("spool/warehouse/",)),
    ("batch file I/O (reads, writes, fsync)", ("objectstore.py",)),
    ("ledger", ("spool/ledger/",)),
    ("spool job: decode and shape", ("spool/ingest/chunks.py", "spool/ingest/decode",
                                     "spool/ingest/shape", "spool/ingest/envelope")),
    ("spool job: batch files", ("spool/ingest/writer.py", "spool/ingest/batchfile.py")),
    ("kafka-python", ("kafka/",)),
    ("other Spool code", ("spool/", "transforms/")),
]


def areas(collapsed: Path) -> str:
    counts: collections.Counter = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples += int(count)
        for name, marks in AREAS:
            if any(m in stack for m in marks):
                counts[name] += int(count)
                break
        else:
            counts["Beam runner, gRPC, start-up, idle"] += int(count)
    return "\n".join(f"{100 * c / samples:5.1f}  {name}" for name, c in counts.most_common())


def top(collapsed: Path, n: int = 40) -> str:
    """The functions with the most samples: own (the leaf) and total (anywhere on the
    stack, once per sample)."""
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        k = int(count)
        samples += k
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    out = [f"{samples} samples", "", "by area %", areas(collapsed), "", "own %   function"]
    out += [f"{100 * c / samples:5.1f}  {f}" for f, c in own.most_common(n)]
    out += ["", "total % function"]
    out += [f"{100 * c / samples:5.1f}  {f}" for f, c in total.most_common(n)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="100x100", help="tenants x streams per tenant")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--step", action="append", choices=("spool_job", "loader"),
                        help="profile only this job (default both); the other still runs")
    args = parser.parse_args(argv)
    args.step = args.step or ["spool_job", "loader"]
    tenants, streams = parse_shape(args.shape)
    env = stack_env()
    os.environ.update(env)
    from kafka.admin import KafkaAdminClient, NewTopic

    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    spy = py_spy()
    tag = f"{args.shape}_{uuid.uuid4().hex[:6]}"
    out_dir = ROOT / "benchmarks" / "results" / "profiles" / args.shape
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = ROOT / "var" / "profiles" / args.shape  # megabytes: not for the repository
    raw_dir.mkdir(parents=True, exist_ok=True)
    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    databases = [f"bench_prof_wh_{tag}", f"bench_prof_ledger_{tag}"]
    warehouse = fresh_database(admin_dsn, databases[0])
    ledger_dsn = fresh_database(admin_dsn, databases[1])
    messages = corpus.generate(args.records, tenants=tenants, streams=streams,
                               invalid_ratio=0.0, seed=5)
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    for t in sorted(corpus.tenants_of(messages)):
        Registry(ledger).add_tenant(t, "postgres", {"dsn": "env:BENCH_WAREHOUSE_DSN"}, f"s_{t}")
    ledger.close()
    topic = f"bench.profile.{tag}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    job_env = dict(os.environ, SPOOL_LEDGER_DSN=ledger_dsn, BENCH_WAREHOUSE_DSN=warehouse)
    work = ROOT / "var" / "bench" / f"profile-{tag}"
    try:
        for round_ in ("first", "steady"):
            corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)
            for step, job_args in (
                    ("spool_job", ["pipelines.spool_job", f"--topic={topic}",
                                   f"--consumer_group=bench-prof-{tag}",
                                   f"--spool_location={work}"]),
                    ("loader", ["pipelines.loader_job"])):
                raw = raw_dir / f"{step}_{round_}.txt"
                if step not in args.step:
                    subprocess.run([sys.executable, "-m", *job_args, "--log_level=WARNING"],
                                   cwd=ROOT, env=job_env, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    continue
                # --subprocesses: the job's SDK workers do the work, not the launcher
                subprocess.run([spy, "record", "--format", "raw", "--rate", str(args.rate),
                                "--subprocesses", "--output", str(raw), "--",
                                sys.executable, "-m", *job_args, "--log_level=WARNING"],
                               cwd=ROOT, env=job_env, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                (out_dir / f"{step}_{round_}.top.txt").write_text(top(raw))
                print(f"[profile] {step} ({round_}): {raw}", flush=True)
    finally:
        admin.delete_topics([topic])
        admin.close()
        drop_databases(admin_dsn, databases)
    return 0


if __name__ == "__main__":
    sys.exit(main())

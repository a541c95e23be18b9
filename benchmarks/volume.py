"""Cost per record as volume grows: 200,000 records against 2,000,000, interleaved.

    .venv/bin/python benchmarks/volume.py [--small 200000] [--large 2000000] [--runs 3]

Per run of each size: a fresh ledger and warehouse, a topic with the records (tests/
corpus.py, 50 tenants x 20 streams), the spool job (drain) and the loader (drain), each
timed and measured in CPU seconds (user + system of the job's process and its SDK worker
processes, from getrusage of reaped children; PostgreSQL's own CPU is not in it). Reported
per size: CPU seconds per 1,000 records for each job, records/s, and the large/small
ratio of the per-record cost (1.0: cost grows linearly with volume). Results:
benchmarks/results/volume.json and .png.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.scaling import PARTITIONS  # noqa: E402
from benchmarks.spool_throughput import drop_databases, fresh_pipeline, stack_env  # noqa: E402
from tests import corpus  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Size:
    def __init__(self, records: int, env: dict, work: Path, run_id: str,
                 databases: list[str], topics: list[str]) -> None:
        self.records = records
        self.env = env
        self.work = work
        self.run_id = run_id
        self.databases = databases
        self.topics = topics
        self.messages = corpus.generate(records, invalid_ratio=0.0, seed=9)

    def __call__(self, r: int) -> harness.Figures:
        tag = f"vol_{self.records}_{self.run_id}_{r}"
        topic, job_env = fresh_pipeline(self.env, tag, corpus.tenants_of(self.messages), "v_",
                                        self.databases, self.topics)
        corpus.produce(self.env["SPOOL_KAFKA_BOOTSTRAP"], topic, self.messages, PARTITIONS)
        figures: harness.Figures = {}
        for step, args in (("spool_job", ["pipelines.spool_job", f"--topic={topic}",
                                          f"--consumer_group=bench-{tag}",
                                          f"--spool_location={self.work / tag}"]),
                           ("loader", ["pipelines.loader_job"])):
            cpu0, t0 = children_cpu(), time.perf_counter()
            subprocess.run([sys.executable, "-m", *args, "--log_level=WARNING"], cwd=ROOT,
                           env=job_env, check=True, stderr=subprocess.DEVNULL)
            seconds, cpu = time.perf_counter() - t0, children_cpu() - cpu0
            figures[f"{step}_s"] = seconds
            figures[f"{step}_records_per_s"] = self.records / seconds
            figures[f"{step}_cpu_s_per_1000_records"] = 1000 * cpu / self.records
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    env = stack_env()
    os.environ.update(env)
    machine = harness.machine()
    run_id = uuid.uuid4().hex[:6]
    work = ROOT / "var" / "bench" / f"volume-{run_id}"
    databases: list[str] = []
    topics: list[str] = []
    cases = {f"{n:,} records": Size(n, env, work, run_id, databases, topics)
             for n in (args.small, args.large)}
    try:
        samples = harness.interleave(cases, args.runs)
    finally:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
        admin.delete_topics(topics)
        admin.close()
        drop_databases(env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres", databases)
    summary = {c: harness.summarise(s) for c, s in samples.items()}
    small, large = list(cases)
    ratios = {f"{step}_cost_per_record_large_to_small": harness.ratio(
        summary, large, small, f"{step}_cpu_s_per_1000_records")
        for step in ("spool_job", "loader")}
    out = {"benchmark": "volume", "runs": args.runs, "commit": harness.commit(),
           "order": "interleaved, reversed every other round",
           "machine": machine, "versions": harness.versions(), "cases": summary,
           "ratios": ratios,
           "chart": [{"title": "CPU seconds per 1,000 records", "ylabel": "CPU s",
                      "bars": {f"{step}, {c}": summary[c][f"{step}_cpu_s_per_1000_records"]
                               for step in ("spool_job", "loader") for c in cases}}]}
    return harness.finish("volume", out, args.out,
                          {"spool_job_cpu_s_per_1000_records": "CPU s",
                           "loader_cpu_s_per_1000_records": "CPU s"})


if __name__ == "__main__":
    sys.exit(main())

"""What a stream costs: the same volume spread over 10 to 50,000 streams, interleaved.

    .venv/bin/python benchmarks/scaling.py [--records 100000] [--runs 3]
        [--shape 1x10 --shape 100x100 ...] [--out FILE]

Each shape is tenants x streams per tenant (default 1x10, 10x100, 100x100, and 500x100
with --with_50k: that one creates 50,000 tables a round). Per run of a shape: a fresh
ledger and warehouse, a topic with ``--records`` small keyed and append records (tests/
corpus.py), the spool job (drain), the loader (drain: first load, every table created);
then the same records again (new offsets): spool job and loader into the existing tables
(upserts and appends: the steady state). Wall time of each command, start-up included,
as a user sees it. Shapes take turns (A B C, C B A, ...).

Reported per shape: records/s of each step and end to end, and against the smallest shape
the ratio of medians and the added milliseconds per stream (time(shape) - time(smallest),
divided by the added streams). Results: benchmarks/results/scaling.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.spool_throughput import drop_databases, fresh_pipeline, stack_env  # noqa: E402
from tests import corpus  # noqa: E402

PARTITIONS = 6
DEFAULT_SHAPES = ["1x10", "10x100", "100x100"]


def parse_shape(text: str) -> tuple[int, int]:
    tenants, streams = (int(x) for x in text.lower().split("x"))
    return tenants, streams


class Shape:
    def __init__(self, name: str, records: int, env: dict, work: Path, run_id: str,
                 databases: list[str], topics: list[str]) -> None:
        self.name = name
        self.tenants_n, self.streams_n = parse_shape(name)
        self.records = records
        self.env = env
        self.work = work
        self.run_id = run_id
        self.databases = databases
        self.topics = topics
        self.messages = corpus.generate(records, tenants=self.tenants_n,
                                        streams=self.streams_n, invalid_ratio=0.0, seed=5)
        self.streams = len({(m.tenant, m.stream) for m in self.messages})

    def __call__(self, r: int) -> harness.Figures:
        tag = f"sc_{self.name}_{self.run_id}_{r}"
        topic, job_env = fresh_pipeline(self.env, tag, corpus.tenants_of(self.messages), "s_",
                                        self.databases, self.topics)

        def timed(module: str, *extra: str) -> float:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", module, "--log_level=WARNING", *extra],
                           cwd=ROOT, env=job_env, check=True, stderr=subprocess.DEVNULL)
            return time.perf_counter() - t0

        figures: harness.Figures = {}
        for round_ in ("first", "steady"):
            corpus.produce(self.env["SPOOL_KAFKA_BOOTSTRAP"], topic, self.messages, PARTITIONS)
            spool_s = timed("pipelines.spool_job", f"--topic={topic}",
                            f"--consumer_group=bench-{tag}",
                            f"--spool_location={self.work / tag}")
            loader_s = timed("pipelines.loader_job")
            figures[f"spool_job_s_{round_}"] = spool_s
            figures[f"loader_s_{round_}"] = loader_s
            figures[f"spool_job_records_per_s_{round_}"] = self.records / spool_s
            figures[f"loader_records_per_s_{round_}"] = self.records / loader_s
            figures[f"end_to_end_records_per_s_{round_}"] = self.records / (spool_s + loader_s)
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per shape (default 3)")
    parser.add_argument("--shape", action="append", default=None,
                        help="tenants x streams per tenant, e.g. 100x100 (repeatable)")
    parser.add_argument("--with_50k", action="store_true", help="add 500x100 (50,000 streams)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    shapes = args.shape or DEFAULT_SHAPES + (["500x100"] if args.with_50k else [])
    env = stack_env()
    os.environ.update(env)
    machine = harness.machine()
    run_id = uuid.uuid4().hex[:6]
    work = ROOT / "var" / "bench" / f"scaling-{run_id}"
    databases: list[str] = []
    topics: list[str] = []
    cases = {s: Shape(s, args.records, env, work, run_id, databases, topics) for s in shapes}
    try:
        samples = harness.interleave(cases, args.runs)
    finally:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
        admin.delete_topics(topics)
        admin.close()
        drop_databases(env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres", databases)
    summary = {s: harness.summarise(v) for s, v in samples.items()}
    base = shapes[0]
    against: dict = {}
    for s in shapes[1:]:
        added = cases[s].streams - cases[base].streams
        row = {}
        for step in ("spool_job", "loader", "end_to_end"):
            for round_ in ("first", "steady"):
                fig = f"{step}_records_per_s_{round_}"
                row[f"ratio_{fig}"] = harness.ratio(summary, s, base, fig)
        for step in ("spool_job", "loader"):
            for round_ in ("first", "steady"):
                fig = f"{step}_s_{round_}"
                extra = summary[s][fig]["median"] - summary[base][fig]["median"]
                row[f"ms_per_added_stream_{step}_{round_}"] = round(1000 * extra / added, 3)
        against[s] = row
    out = {"benchmark": "scaling", "records": args.records, "runs": args.runs,
           "order": "interleaved, reversed every other round", "commit": harness.commit(),
           "machine": machine, "versions": harness.versions(),
           "streams": {s: cases[s].streams for s in shapes},
           "cases": summary, "against_smallest": against,
           "chart": [{"title": f"{args.records:,} records over N streams",
                      "ylabel": "records/s", "xlabel": "streams", "log_x": True,
                      "lines": {f"{step} ({round_})": [
                          [cases[s].streams,
                           *(summary[s][f"{step}_records_per_s_{round_}"][k]
                             for k in ("median", "min", "max"))] for s in shapes]
                          for step in ("spool_job", "loader", "end_to_end")
                          for round_ in ("first", "steady")}}]}
    path = harness.write("scaling", out, args.out)
    print(json.dumps(against, indent=2))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What stream maps cost the spool job: the same records with and without a map of five
rules on every stream.

    .venv/bin/python benchmarks/maps_cost.py [--records 200000] [--runs 3] [--out FILE]

The records are those of benchmarks/spool_throughput.py (tests/corpus.py: 50 tenants x 20
streams), read from one 6-partition topic on the local stack by the spool job in drain
mode, each run with its own consumer group and ledger. In the ``five_rules`` case every
(tenant, stream) has a map that filters (on a value no record has, so the same rows are
written), hashes ``name``, drops ``tags``, masks ``createdAt`` and renames ``note``. The
cases take turns (A B, B A, ...), ``--runs`` times each; figures are medians with min and
max. Results: benchmarks/results/maps_cost.json (and .png).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.spool_throughput import (  # noqa: E402
    PARTITIONS,
    drop_databases,
    fresh_database,
    stack_env,
)
from spool.ledger.maps import MapStore  # noqa: E402
from spool.ledger.registry import Registry  # noqa: E402
from spool.ledger.store import Ledger  # noqa: E402
from tests import corpus  # noqa: E402

RULES = {"filter": {"ne": ["name", "no record has this name"]}, "hash": ["name"],
         "secret": "env:BENCH_MAP_KEY", "drop": ["tags"], "mask": {"createdAt": "masked"},
         "rename": {"note": "remark"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/"
                                                    "maps_cost.json (and .png)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    env = stack_env()
    os.environ.update(env, BENCH_MAP_KEY="benchmark-key")
    machine = harness.machine()
    from kafka.admin import KafkaAdminClient, NewTopic

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.maps.{run_id}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    messages = corpus.generate(args.records)
    tenants = corpus.tenants_of(messages)
    streams = sorted({(m.tenant, m.stream) for m in messages if m.tenant and m.stream})
    corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)
    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    work = ROOT / "var" / "bench" / run_id
    databases: list[str] = []

    def case(name: str):
        def run(r: int) -> harness.Figures:
            db = f"bench_{name}_{run_id}_{r}"
            databases.append(db)
            ledger_dsn = fresh_database(admin_dsn, db)
            ledger = Ledger(ledger_dsn)
            ledger.migrate()
            for t in tenants:
                Registry(ledger).add_tenant(t)
            if name == "five_rules":
                store = MapStore(ledger)
                for tenant, stream in streams:
                    store.save(tenant, stream, RULES, "benchmark")
                # set a day ago: every window of the run applies it
                ledger.run(lambda cur: cur.execute(
                    "UPDATE stream_maps SET created_at = now() - interval '1 day'"))
            ledger.close()
            from pipelines import spool_job

            t0 = time.perf_counter()
            spool_job.run([f"--topic={topic}", f"--consumer_group=bench-{name}-{run_id}-{r}",
                           f"--ledger_dsn={ledger_dsn}",
                           f"--spool_location={work / f'{name}{r}'}",
                           f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}",
                           "--batch_seconds=60", "--batch_max_rows=100000",
                           "--log_level=WARNING"])
            seconds = time.perf_counter() - t0
            ledger = Ledger(ledger_dsn)
            counted, versions = ledger.run(lambda cur: (cur.execute(
                "SELECT coalesce(sum(record_count), 0), count(*) FILTER (WHERE "
                "meta->>'map_versions' IS NOT NULL) FROM batches"), cur.fetchone())[1])
            ledger.close()
            assert counted == args.records, (name, counted)
            assert (versions > 0) == (name == "five_rules"), (name, versions)
            return {"seconds": seconds, "records_per_s": args.records / seconds}
        return run

    try:
        samples = harness.interleave({"no_maps": case("no_maps"),
                                      "five_rules": case("five_rules")}, args.runs)
    finally:
        admin.delete_topics([topic])
        admin.close()
        drop_databases(admin_dsn, databases)
    summary = {name: harness.summarise(s) for name, s in samples.items()}
    out = {
        "benchmark": "maps_cost", "records": args.records, "runs": args.runs,
        "streams_mapped": len(streams), "rules": RULES,
        "order": "interleaved, reversed every other round", "commit": harness.commit(),
        "machine": machine, "versions": harness.versions(), "cases": summary,
        "ratios": {"five_rules_to_no_maps": harness.ratio(summary, "five_rules", "no_maps",
                                                          "records_per_s")},
        "chart": [{"title": f"spool job, {args.records:,} records, {len(streams)} streams",
                   "ylabel": "records/s",
                   "bars": {name: s["records_per_s"] for name, s in summary.items()}}],
    }
    return harness.finish("maps_cost", out, args.out, {"records_per_s": "records/s"})


if __name__ == "__main__":
    sys.exit(main())

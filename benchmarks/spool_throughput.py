"""Spool job throughput against a plain kafka-python consumer doing the same work.

    .venv/bin/python benchmarks/spool_throughput.py [--records 200000] [--runs 3] [--out FILE]

Both read the same records (tests/corpus.py: 50 tenants x 20 streams, nested objects,
arrays, type drift, unicode, 1 % invalid) from the same 6-partition topic on the local stack,
decode, shape, group by (tenant, stream, window) and write Parquet batch files plus ledger
rows with the same library code (spool.ingest.chunks, spool.ingest.writer). The spool job
runs in drain mode on the FnApiRunner; the baseline is one Python loop. Wall time includes
start-up for both. The two take turns (A B, B A, ...), ``--runs`` times each, each run with
its own consumer group and ledger; figures are medians with min and max. Results:
benchmarks/results/spool_throughput.json and .png.
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
from spool.ingest.chunks import ChunkShaper  # noqa: E402
from spool.ingest.decode import Decoder, DecodeRules  # noqa: E402
from spool.ingest.directory import Directory  # noqa: E402
from spool.ingest.writer import assemble, merge_parts  # noqa: E402
from spool.ledger.registry import Registry  # noqa: E402
from spool.ledger.store import Ledger  # noqa: E402
from tests import corpus  # noqa: E402

PARTITIONS = 6


def stack_env() -> dict:
    subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "start"], check=True,
                   capture_output=True)
    out = subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "env", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def fresh_database(admin_dsn: str, name: str) -> str:
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def fresh_pipeline(env: dict, tag: str, tenants, schema_prefix: str, databases: list[str],
                   topics: list[str]) -> tuple[str, dict]:
    """A fresh ledger with ``tenants`` registered, each loading into its own schema of a
    fresh warehouse, and an empty topic: (topic, the environment to run the jobs in). The
    names go into ``databases`` and ``topics`` for the caller to drop."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    databases += [f"bench_wh_{tag}", f"bench_ledger_{tag}"]
    warehouse = fresh_database(admin_dsn, f"bench_wh_{tag}")
    ledger_dsn = fresh_database(admin_dsn, f"bench_ledger_{tag}")
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    registry = Registry(ledger)
    for t in sorted(tenants):
        registry.add_tenant(t, "postgres", {"dsn": "env:BENCH_WAREHOUSE_DSN"},
                            f"{schema_prefix}{t}")
    ledger.close()
    topic = f"bench.{tag}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()
    topics.append(topic)
    return topic, dict(os.environ, SPOOL_LEDGER_DSN=ledger_dsn, BENCH_WAREHOUSE_DSN=warehouse)


def drop_databases(admin_dsn: str, names) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def plain_consumer(bootstrap: str, topic: str, ledger_dsn: str, spool_dir: Path,
                   window_s: float, max_rows: int, max_bytes: int, group: str) -> int:
    """The baseline: one kafka-python consumer loop doing the job's per-record work."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from spool.kafka_config import consumer_config
    from spool.objectstore import ObjectStore

    ledger = Ledger(ledger_dsn)
    registry = Registry(ledger)
    directory = Directory(registry)
    shaper = ChunkShaper(Decoder(DecodeRules(max_message_bytes=corpus.TOO_LARGE_LIMIT),
                                 directory.is_tenant, directory.stream_keys),
                         directory, int(window_s * 1000), registry.save_tenant_state)
    consumer = KafkaConsumer(**consumer_config(bootstrap, group_id=group,
                                               max_poll_records=20_000))
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    floors = dict.fromkeys(tps, 0)
    read = 0
    open_parts: dict = {}
    panes: dict = {}
    pending: list = []

    def close(key, parts):
        tenant, stream, window_start, _keys = key
        pane = panes.get(key, 0)
        panes[key] = pane + 1
        uri, data, record = assemble(tenant, stream, window_start, int(window_s * 1000), pane,
                                     merge_parts(parts), str(spool_dir))
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        tmp = uri + ".tmp"
        Path(tmp).write_bytes(data)
        os.replace(tmp, uri)
        pending.append(record)

    def record_pending():
        # as the job does per bundle: files on disk first, then their ledger rows at once
        ObjectStore.make_durable([r.uri for r in pending])
        ledger.record_batches(pending)
        pending.clear()

    while any(consumer.position(tp) < end[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=500).items():
            floors[tp] = shaper.add_chunk(tp.topic, tp.partition, floors[tp], records)
            read += len(records)
        for key, part in shaper.take_parts():
            acc = open_parts.setdefault(key, [[], 0, 0])
            acc[0].append(part)
            acc[1] += part.n_rows
            acc[2] += part.bytes
            if acc[1] >= max_rows or acc[2] >= max_bytes:
                close(key, acc[0])
                del open_parts[key]
        if pending:
            record_pending()
    for key, (parts, _, _) in open_parts.items():
        close(key, parts)
    record_pending()
    consumer.commit({tp: OffsetAndMetadata(end[tp], "", -1) for tp in tps})
    consumer.close()
    ledger.close()
    return read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--out", default=None, help="default: "
                        "benchmarks/results/spool_throughput.json (and .png)")
    parser.add_argument("--job_arg", action="append", default=[],
                        help="extra option for the spool job, e.g. "
                        "--job_arg=--direct_running_mode=in_memory (default: the job's own "
                        "defaults, i.e. FnApiRunner with one SDK worker process per core)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be 1 or more")

    env = stack_env()
    os.environ.update(env)
    machine = harness.machine()
    from kafka.admin import KafkaAdminClient, NewTopic

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.spool.{run_id}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    messages = corpus.generate(args.records)
    tenants = corpus.tenants_of(messages)
    corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)

    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    work = ROOT / "var" / "bench" / run_id
    window_s, max_rows, max_bytes = 60.0, 100_000, 64 * 1024 * 1024
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
            ledger.close()
            spool_dir = work / f"{name}{r}"
            group = f"bench-{name}-{run_id}-{r}"
            t0 = time.perf_counter()
            if name == "plain_consumer":
                plain_consumer(env["SPOOL_KAFKA_BOOTSTRAP"], topic, ledger_dsn, spool_dir,
                               window_s, max_rows, max_bytes, group=group)
            else:
                from pipelines import spool_job

                spool_job.run([
                    f"--topic={topic}", f"--consumer_group={group}",
                    f"--ledger_dsn={ledger_dsn}", f"--spool_location={spool_dir}",
                    f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}",
                    f"--batch_seconds={window_s}", f"--batch_max_rows={max_rows}",
                    "--log_level=WARNING", *args.job_arg])
            seconds = time.perf_counter() - t0
            ledger = Ledger(ledger_dsn)
            counted, batches = ledger.run(lambda cur: (cur.execute(
                "SELECT coalesce(sum(record_count), 0), count(*) FROM batches"),
                cur.fetchone())[1])
            ledger.close()
            assert counted == args.records, (name, counted)
            return {"seconds": seconds, "records_per_s": args.records / seconds,
                    "batches": batches}
        return run

    try:
        samples = harness.interleave({"spool_job": case("spool_job"),
                                      "plain_consumer": case("plain_consumer")}, args.runs)
    finally:
        admin.delete_topics([topic])
        admin.close()
        drop_databases(admin_dsn, databases)
    summary = {name: harness.summarise(s) for name, s in samples.items()}
    out = {
        "benchmark": "spool_throughput", "records": args.records, "runs": args.runs,
        "order": "interleaved, reversed every other round", "commit": harness.commit(),
        "machine": machine, "versions": harness.versions(),
        "spool_job_args": args.job_arg or ["(defaults: FnApiRunner, multi_processing, "
                                           f"{os.cpu_count()} SDK workers)"],
        "cases": summary,
        "ratios": {"spool_job_to_plain_consumer": harness.ratio(
            summary, "spool_job", "plain_consumer", "records_per_s")},
        "chart": [{"title": f"Kafka → batch files + ledger, {args.records:,} records",
                   "ylabel": "records/s",
                   "bars": {name: s["records_per_s"] for name, s in summary.items()}}],
    }
    return harness.finish("spool_throughput", out, args.out, {"records_per_s": "records/s"})


if __name__ == "__main__":
    sys.exit(main())

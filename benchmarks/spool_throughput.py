"""Spool job throughput against a plain kafka-python consumer doing the same work.

    .venv/bin/python benchmarks/spool_throughput.py [--records 200000] [--out FILE]

Both read the same records (tests/corpus.py: 50 tenants x 20 streams, nested objects,
arrays, type drift, unicode, 1 % invalid) from the same 6-partition topic on the local stack,
decode, shape, group by (tenant, stream, window) and write Parquet batch files plus ledger
rows with the same library code (spool.ingest.chunks, spool.ingest.writer). The spool job
runs in drain mode on the FnApiRunner; the baseline is one Python loop. Wall time includes
start-up for both. Results go to benchmarks/results/spool_throughput.json (records/s and the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/spool_throughput.json"))
    parser.add_argument("--job_arg", action="append", default=[],
                        help="extra option for the spool job, e.g. "
                        "--job_arg=--direct_running_mode=in_memory (default: the job's own "
                        "defaults, i.e. FnApiRunner with one SDK worker process per core)")
    args = parser.parse_args()

    env = stack_env()
    os.environ.update(env)
    from kafka.admin import KafkaAdminClient, NewTopic

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.spool.{run_id}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    messages = corpus.generate(args.records)
    t0 = time.perf_counter()
    corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)
    produce_s = time.perf_counter() - t0

    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    results = {}
    work = ROOT / "var" / "bench" / run_id
    window_s, max_rows, max_bytes = 60.0, 100_000, 64 * 1024 * 1024
    for name in ("plain", "spool_job"):
        ledger_dsn = fresh_database(admin_dsn, f"bench_{name}_{run_id}")
        ledger = Ledger(ledger_dsn)
        ledger.migrate()
        for t in corpus.tenants_of(messages):
            Registry(ledger).add_tenant(t)
        ledger.close()
        spool_dir = work / name
        t0 = time.perf_counter()
        if name == "plain":
            plain_consumer(env["SPOOL_KAFKA_BOOTSTRAP"], topic, ledger_dsn, spool_dir,
                           window_s, max_rows, max_bytes, group=f"bench-plain-{run_id}")
        else:
            from pipelines import spool_job

            spool_job.run([
                f"--topic={topic}", f"--consumer_group=bench-beam-{run_id}",
                f"--ledger_dsn={ledger_dsn}", f"--spool_location={spool_dir}",
                f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}",
                f"--batch_seconds={window_s}", f"--batch_max_rows={max_rows}",
                "--log_level=WARNING", *args.job_arg])
        seconds = time.perf_counter() - t0
        ledger = Ledger(ledger_dsn)
        counted = ledger.run(lambda cur: (cur.execute(
            "SELECT coalesce(sum(record_count), 0), count(*) FROM batches"), cur.fetchone())[1])
        ledger.close()
        results[name] = {"seconds": round(seconds, 2),
                         "records_per_s": round(args.records / seconds),
                         "records_in_batches": int(counted[0]), "batches": int(counted[1])}
        print(f"{name}: {results[name]}", flush=True)
    admin.delete_topics([topic])
    admin.close()
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in ("plain", "spool_job"):
            cur.execute(f'DROP DATABASE IF EXISTS "bench_{name}_{run_id}"')
    conn.close()
    out = {
        "benchmark": "spool_throughput",
        "records": args.records,
        "produce_seconds": round(produce_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "spool_job_args": args.job_arg or ["(defaults: FnApiRunner, multi_processing, "
                                           f"{os.cpu_count()} SDK workers)"],
        "plain_consumer": results["plain"],
        "spool_job": results["spool_job"],
        "ratio_spool_job_to_plain": round(results["spool_job"]["records_per_s"]
                                          / results["plain"]["records_per_s"], 3),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

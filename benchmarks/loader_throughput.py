"""Loader throughput against dlt and MeltanoLabs target-postgres, on the same records.

    .venv/bin/python benchmarks/loader_throughput.py [--records 200000] [--out FILE]

One run, one PostgreSQL (the local stack), the same records (tests/corpus.py: 50 tenants x
20 streams, nested objects, arrays, type drift, unicode; upsert and append streams):

* spool: the records go through Kafka and the spool job (drain), then the loader (drain)
  loads the batches; both are timed, so this also gives Kafka → warehouse end to end;
* dlt 1.31 (its own venv under var/venvs): one pipeline, one table per (tenant, stream),
  nested data normalised into child tables, default settings, append;
* target-postgres 0.8.1 (its own venv): the equivalent Singer messages on stdin (a SCHEMA
  per stream, then RECORDs), flattening on, append-only.

The peers append; Spool upserts the keyed streams. Rates are input records per second;
Spool's warehouse rows (root and child tables) per second are reported too. Results go to
benchmarks/results/loader_throughput.json.
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

from benchmarks.spool_throughput import fresh_database, stack_env  # noqa: E402
from tests import corpus  # noqa: E402

PARTITIONS = 6
PEERS = {
    "dlt": ("dlt-1.31.0", ["dlt[postgres]==1.31.0"]),
    "target_postgres": ("target-postgres-0.8.1", ["meltanolabs-target-postgres==0.8.1"]),
}

DLT_SCRIPT = r'''
import json, sys, time
import dlt
records_path, dsn, dataset, workdir = sys.argv[1:5]

def rows():
    with open(records_path) as fh:
        for line in fh:
            m = json.loads(line)
            yield dlt.mark.with_table_name(m["data"], m["tenant"] + "__" + m["stream"])

pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.postgres(dsn),
                        dataset_name=dataset, pipelines_dir=workdir)
pipeline.run(dlt.resource(rows, name="records", write_disposition="append"))
'''


def peer_python(name: str) -> Path:
    folder, reqs = PEERS[name]
    venv = ROOT / "var" / "venvs" / folder
    if not (venv / "bin" / "python").exists():
        print(f"[bench] installing {reqs[0]} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", "--cache-dir",
                        str(ROOT / "var/cache/pip"), *reqs], check=True)
    return venv / "bin"


def json_schema(records: list[dict]) -> dict:
    """A Singer JSON schema that accepts every record of a stream (types as seen)."""
    def merge(node: dict, value) -> None:
        kinds = node.setdefault("type", ["null"])
        if isinstance(value, dict):
            kinds.append("object") if "object" not in kinds else None
            props = node.setdefault("properties", {})
            for k, v in value.items():
                merge(props.setdefault(k, {}), v)
        elif isinstance(value, list):
            kinds.append("array") if "array" not in kinds else None
            node.setdefault("items", {})
        elif value is not None:
            t = {bool: "boolean", int: "integer", float: "number", str: "string"}[type(value)]
            if t not in kinds:
                kinds.append(t)

    def loosen(node: dict) -> dict:
        # target-postgres cannot take a field of several types (type drift): such a field is
        # declared a string, and as_singer_record sends its values as text
        if len([t for t in node.get("type", []) if t not in ("null",)]) > 1:
            return {"type": ["null", "string"]}
        for k, sub in node.get("properties", {}).items():
            node["properties"][k] = loosen(sub)
        return node

    root: dict = {"type": ["object"], "properties": {}}
    for r in records:
        for k, v in r.items():
            merge(root["properties"].setdefault(k, {}), v)
    return loosen(root)


def as_singer_record(record: dict, schema: dict) -> dict:
    """The record with values of string-declared drifting fields as text."""
    out = {}
    props = schema.get("properties", {})
    for k, v in record.items():
        sub = props.get(k, {})
        if isinstance(v, dict) and "properties" in sub:
            out[k] = as_singer_record(v, sub)
        elif sub.get("type") == ["null", "string"] and v is not None and not isinstance(v, str):
            out[k] = json.dumps(v)
        else:
            out[k] = v
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/loader_throughput.json"))
    parser.add_argument("--skip", action="append", default=[], choices=list(PEERS),
                        help="leave a peer out")
    args = parser.parse_args()

    env = stack_env()
    os.environ.update(env)
    import psycopg2
    from kafka.admin import KafkaAdminClient, NewTopic

    run_id = uuid.uuid4().hex[:8]
    work = ROOT / "var" / "bench" / f"loader-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    messages = corpus.generate(args.records, invalid_ratio=0.0, seed=21)
    tenants = sorted(corpus.tenants_of(messages))
    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    warehouse = fresh_database(admin_dsn, f"bench_wh_{run_id}")
    results: dict = {}

    # -- Spool: Kafka → spool job → loader -------------------------------------------
    topic = f"bench.loader.{run_id}"
    admin = KafkaAdminClient(bootstrap_servers=env["SPOOL_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)
    ledger_dsn = fresh_database(admin_dsn, f"bench_ledger_{run_id}")
    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    for t in tenants:
        Registry(ledger).add_tenant(t, "postgres", {"dsn": "env:BENCH_WAREHOUSE_DSN"},
                                    f"spool_{t}")
    job_env = dict(os.environ, SPOOL_LEDGER_DSN=ledger_dsn, BENCH_WAREHOUSE_DSN=warehouse)

    def spool() -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipelines.spool_job", f"--topic={topic}",
                        f"--consumer_group=bench-{run_id}",
                        f"--spool_location={work / 'spool'}", "--log_level=WARNING"],
                       cwd=ROOT, env=job_env, check=True, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    spool_s = spool()
    def load() -> tuple[float, int, float]:
        """(job seconds, rows loaded, load stage seconds): the stage is the ledger's own
        account, from the first claim to the last LOADED, without the job's start-up."""
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipelines.loader_job", "--log_level=WARNING"],
                       cwd=ROOT, env=job_env, check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        # every batch of the ledger, not only this round's, must have loaded
        states = ledger.run(lambda cur: (cur.execute(
            "SELECT array_agg(DISTINCT state::text) FROM batches"), cur.fetchone()[0])[1])
        assert states == ["LOADED"], states
        rows, stage = ledger.run(lambda cur: (cur.execute(
            "SELECT coalesce(sum(row_count), 0), "
            "extract(epoch FROM max(loaded_at) - min(load_started_at)) FROM batches "
            "WHERE loaded_at > now() - %s * interval '1 second'", (seconds + 5,)),
            cur.fetchone())[1])
        return seconds, int(rows), float(stage)

    loader_s, rows, stage_s = load()
    # later rounds: the same records again (new offsets) into tables that exist, so loads
    # merge (upserts replace, appends add); the second round also creates each table's
    # stage, the third is the steady state
    rounds = []
    for _ in range(2):
        corpus.produce(env["SPOOL_KAFKA_BOOTSTRAP"], topic, messages, PARTITIONS)
        rounds.append((spool(), *load()))
    spool2_s, steady_s, steady_rows, steady_stage_s = rounds[-1]
    second = rounds[0]
    ledger.close()
    admin.delete_topics([topic])
    admin.close()
    results["spool_job"] = {"seconds": round(spool_s, 2),
                            "records_per_s": round(args.records / spool_s)}
    results["spool_loader"] = {"seconds": round(loader_s, 2),
                               "records_per_s": round(args.records / loader_s),
                               "warehouse_rows": rows,
                               "rows_per_s": round(rows / loader_s),
                               "stage_seconds": round(stage_s, 2),
                               "stage_rows_per_s": round(rows / stage_s),
                               "note": "first load: every table is created"}
    results["spool_loader_steady"] = {"seconds": round(steady_s, 2),
                                      "records_per_s": round(args.records / steady_s),
                                      "warehouse_rows": steady_rows,
                                      "rows_per_s": round(steady_rows / steady_s),
                                      "stage_seconds": round(steady_stage_s, 2),
                                      "stage_rows_per_s": round(steady_rows / steady_stage_s),
                                      "spool_job_seconds": round(spool2_s, 2),
                                      "note": "third load of the same records into existing "
                                              "tables (merges)"}
    results["spool_loader_second"] = {"seconds": round(second[1], 2),
                                      "stage_seconds": round(second[3], 2),
                                      "stage_rows_per_s": round(second[2] / second[3]),
                                      "note": "second load: merges, and creates each "
                                              "table's stage"}
    e2e = spool_s + loader_s
    results["spool_end_to_end"] = {"seconds": round(e2e, 2),
                                   "records_per_s": round(args.records / e2e),
                                   "rows_per_s": round(int(rows) / e2e)}
    print("spool:", results["spool_job"], results["spool_loader"], flush=True)

    # -- the peers ------------------------------------------------------------------------
    records_path = work / "records.jsonl"
    with open(records_path, "w") as fh:
        for m in messages:
            fh.write(json.dumps({"tenant": m.tenant, "stream": m.stream, "data": m.data},
                                ensure_ascii=False) + "\n")
    if "dlt" not in args.skip:
        bin_dir = peer_python("dlt")
        script = work / "dlt_load.py"
        script.write_text(DLT_SCRIPT)
        t0 = time.perf_counter()
        subprocess.run([str(bin_dir / "python"), str(script), str(records_path), warehouse,
                        "dlt_bench", str(work / "dlt")], check=True,
                       env=dict(os.environ, RUNTIME__LOG_LEVEL="WARNING"))
        s = time.perf_counter() - t0
        results["dlt"] = {"seconds": round(s, 2), "records_per_s": round(args.records / s)}
        print("dlt:", results["dlt"], flush=True)
    if "target_postgres" not in args.skip:
        bin_dir = peer_python("target_postgres")
        singer = work / "singer.jsonl"
        by_stream: dict = {}
        for m in messages:
            by_stream.setdefault(f"{m.tenant}__{m.stream}", []).append(m.data)
        schemas = {stream: json_schema(recs) for stream, recs in by_stream.items()}
        with open(singer, "w") as fh:
            for stream, schema in schemas.items():
                fh.write(json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema,
                                     "key_properties": []}) + "\n")
            for m in messages:
                stream = f"{m.tenant}__{m.stream}"
                fh.write(json.dumps({"type": "RECORD", "stream": stream,
                                     "record": as_singer_record(m.data, schemas[stream])},
                                    ensure_ascii=False) + "\n")
        host_port, db = warehouse.rsplit("@", 1)[1].split("/")
        host, port = host_port.split(":")
        config = {"host": host, "port": int(port), "user": "spool", "password": "spool",
                  "database": db, "default_target_schema": "target_postgres_bench",
                  "load_method": "append-only", "add_record_metadata": False,
                  "flattening_enabled": True, "flattening_max_depth": 3,
                  "validate_records": True, "activate_version": False}
        (work / "tp.json").write_text(json.dumps(config))
        t0 = time.perf_counter()
        with open(singer, "rb") as stdin:
            subprocess.run([str(bin_dir / "target-postgres"), "--config", str(work / "tp.json")],
                           stdin=stdin, check=True, stdout=subprocess.DEVNULL,
                           stderr=open(work / "tp.log", "wb"))  # noqa: SIM115
        s = time.perf_counter() - t0
        results["target_postgres"] = {"seconds": round(s, 2),
                                      "records_per_s": round(args.records / s)}
        print("target-postgres:", results["target_postgres"], flush=True)

    # leave nothing behind: thousands of tables slow every later run's catalog work
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in (f"bench_ledger_{run_id}", warehouse.rsplit("/", 1)[1]):
            cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
    conn.close()

    out = {"benchmark": "loader_throughput", "records": args.records,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "results": results, "ratios": {}}
    for peer in ("dlt", "target_postgres"):
        if peer in results:
            out["ratios"][f"spool_loader_to_{peer}"] = round(
                results["spool_loader"]["records_per_s"] / results[peer]["records_per_s"], 2)
            out["ratios"][f"spool_end_to_end_to_{peer}"] = round(
                results["spool_end_to_end"]["records_per_s"] / results[peer]["records_per_s"],
                2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

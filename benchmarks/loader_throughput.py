"""Kafka → warehouse: Spool against dlt, MeltanoLabs target-postgres, the standalone
consumer (the limit) and a bare COPY (the ceiling), on the same records, interleaved.

    .venv/bin/python benchmarks/loader_throughput.py [--records 200000] [--runs 3]
        [--skip dlt --skip target_postgres ...] [--out FILE]

One PostgreSQL (the local stack), the same records (tests/corpus.py: 50 tenants x 20
streams, nested objects, arrays, type drift, unicode; upsert and append streams). Each run
of each case starts from an empty warehouse database; cases take turns (A B C D E, then
E D C B A, ...), ``--runs`` times each; every figure is reported as median, min and max.

* spool: the records through Kafka, the spool job (drain), then the loader (drain); then
  the same records twice more (new offsets) into the tables that now exist, so the second
  and third loads merge (upserts replace, appends add): first load, second load, steady
  state. The loader stage is the ledger's own account, first claim to last LOADED, without
  the job's start-up; end to end is spool job + loader wall time of the first round.
* standalone: benchmarks/standalone.py, one kafka-python consumer that decodes, shapes and
  loads straight into the warehouse with Spool's rules, no files, no ledger, no Beam: the
  limit for end to end, and Spool's rate as a fraction of it is the architecture's cost.
* copy_ceiling: psycopg2 COPY of the records pre-flattened (``__`` paths, arrays as JSON
  text) into one text-column table per stream; only the COPY is timed.
* dlt 1.31 (its own venv under var/venvs): one pipeline, one table per (tenant, stream),
  nested data normalised into child tables, default settings, append;
* target-postgres 0.8.1 (its own venv): the equivalent Singer messages on stdin (a SCHEMA
  per stream, then RECORDs), flattening on, append-only.

The peers append; Spool upserts the keyed streams. Rates are input records per second;
warehouse rows (root and child tables) per second where a case writes child tables.
Results: benchmarks/results/loader_throughput.json and .png.
"""

from __future__ import annotations

import argparse
import io
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
from benchmarks.spool_throughput import drop_databases, fresh_database, stack_env  # noqa: E402
from tests import corpus  # noqa: E402

PARTITIONS = 6
PEERS = {
    "dlt": ("dlt-1.31.0", ["dlt[postgres]==1.31.0"]),
    "target_postgres": ("target-postgres-0.8.1", ["meltanolabs-target-postgres==0.8.1"]),
}
CASES = ("spool", "standalone", "copy_ceiling", "dlt", "target_postgres")

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


def flatten(record: dict, prefix: str = "") -> dict:
    """``a__b`` paths for nested objects; arrays and other values as text."""
    out = {}
    for k, v in record.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}__"))
        elif v is None:
            out[name] = None
        else:
            out[name] = json.dumps(v) if isinstance(v, list | bool) else str(v)
    return out


def copy_payloads(messages) -> dict[str, tuple[list[str], bytes]]:
    """Per stream: (columns, the COPY text of its records), flattened before timing."""
    by_stream: dict[str, list[dict]] = {}
    for m in messages:
        by_stream.setdefault(f"{m.tenant}__{m.stream}", []).append(flatten(m.data))
    out = {}
    for stream, rows in by_stream.items():
        cols = sorted({c for r in rows for c in r})
        buf = io.StringIO()
        for r in rows:
            buf.write("\t".join(_copy_text(r.get(c)) for c in cols) + "\n")
        out[stream] = (cols, buf.getvalue().encode())
    return out


def _copy_text(value) -> str:
    if value is None:
        return "\\N"
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


class Bench:
    def __init__(self, records: int, env: dict, work: Path, run_id: str) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        self.records = records
        self.env = env
        self.work = work
        self.run_id = run_id
        self.bootstrap = env["SPOOL_KAFKA_BOOTSTRAP"]
        self.admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
        self.messages = corpus.generate(records, invalid_ratio=0.0, seed=21)
        self.tenants = sorted(corpus.tenants_of(self.messages))
        self.kafka = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        self._new_topic = NewTopic
        self.topics: list[str] = []
        self.databases: list[str] = []
        # one topic with the records, read by every standalone run with its own group
        self.topic = self.new_topic("base")
        corpus.produce(self.bootstrap, self.topic, self.messages, PARTITIONS)
        self.records_path = work / "records.jsonl"
        with open(self.records_path, "w") as fh:
            for m in self.messages:
                fh.write(json.dumps({"tenant": m.tenant, "stream": m.stream, "data": m.data},
                                    ensure_ascii=False) + "\n")
        self._singer: Path | None = None
        self._copy: dict | None = None

    def new_topic(self, name: str) -> str:
        topic = f"bench.loader.{self.run_id}.{name}"
        self.kafka.create_topics([self._new_topic(topic, PARTITIONS, 1)])
        self.topics.append(topic)
        return topic

    def warehouse(self, case: str, r: int) -> str:
        name = f"bench_{case}_{self.run_id}_{r}"
        self.databases.append(name)
        return fresh_database(self.admin_dsn, name)

    def close(self) -> None:
        self.kafka.delete_topics(self.topics)
        self.kafka.close()
        # leave nothing behind: thousands of tables slow every later run's catalog work
        drop_databases(self.admin_dsn, self.databases)

    # -- the cases ---------------------------------------------------------------------
    def spool(self, r: int) -> harness.Figures:
        from spool.ledger.registry import Registry
        from spool.ledger.store import Ledger

        warehouse = self.warehouse("spool_wh", r)
        ledger_dsn = self.warehouse("spool_ledger", r)
        ledger = Ledger(ledger_dsn)
        ledger.migrate()
        registry = Registry(ledger)
        for t in self.tenants:
            registry.add_tenant(t, "postgres", {"dsn": "env:BENCH_WAREHOUSE_DSN"},
                                f"spool_{t}")
        topic = self.new_topic(f"spool{r}")
        job_env = dict(os.environ, SPOOL_LEDGER_DSN=ledger_dsn, BENCH_WAREHOUSE_DSN=warehouse)

        def spool_job() -> float:
            corpus.produce(self.bootstrap, topic, self.messages, PARTITIONS)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipelines.spool_job", f"--topic={topic}",
                            f"--consumer_group=bench-{self.run_id}-{r}",
                            f"--spool_location={self.work / f'spool{r}'}",
                            "--log_level=WARNING"],
                           cwd=ROOT, env=job_env, check=True, stderr=subprocess.DEVNULL)
            return time.perf_counter() - t0

        def load() -> tuple[float, int, float]:
            """(job seconds, rows loaded, load stage seconds from the ledger)."""
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipelines.loader_job",
                            "--log_level=WARNING"],
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

        rounds = [(spool_job(), *load()) for _ in range(3)]
        ledger.close()
        (s1, l1, rows1, st1), (_s2, _l2, rows2, st2), (s3, l3, rows3, st3) = rounds
        return {"spool_job_s": s1, "loader_s": l1, "end_to_end_s": s1 + l1,
                "end_to_end_records_per_s": self.records / (s1 + l1),
                "warehouse_rows": rows1,
                "loader_rows_per_s": rows1 / l1,
                "stage_rows_per_s_first": rows1 / st1,
                "stage_rows_per_s_second": rows2 / st2,
                "stage_rows_per_s_steady": rows3 / st3,
                "loader_rows_per_s_steady": rows3 / l3,
                "spool_job_s_steady": s3,
                "end_to_end_records_per_s_steady": self.records / (s3 + l3)}

    def standalone(self, r: int) -> harness.Figures:
        from benchmarks.standalone import consume_and_load

        warehouse = self.warehouse("standalone", r)
        t0 = time.perf_counter()
        counts = consume_and_load(self.bootstrap, self.topic, PARTITIONS,
                                  f"bench-standalone-{self.run_id}-{r}", warehouse,
                                  {t: f"spool_{t}" for t in self.tenants},
                                  corpus.TOO_LARGE_LIMIT)
        seconds = time.perf_counter() - t0
        assert counts["records"] == self.records, counts
        return {"end_to_end_s": seconds, "end_to_end_records_per_s": self.records / seconds,
                "warehouse_rows": counts["rows"], "rows_per_s": counts["rows"] / seconds}

    def copy_ceiling(self, r: int) -> harness.Figures:
        import psycopg2

        if self._copy is None:
            self._copy = copy_payloads(self.messages)
        conn = psycopg2.connect(self.warehouse("copy", r))
        with conn, conn.cursor() as cur:
            for stream, (cols, _) in self._copy.items():
                cur.execute(f'CREATE TABLE "{stream}" ('
                            + ", ".join(f'"{c}" text' for c in cols) + ")")
        t0 = time.perf_counter()
        with conn, conn.cursor() as cur:
            for stream, (cols, data) in self._copy.items():
                cur.copy_expert(f'COPY "{stream}" (' + ", ".join(f'"{c}"' for c in cols)
                                + ") FROM STDIN", io.BytesIO(data))
        seconds = time.perf_counter() - t0
        conn.close()
        return {"seconds": seconds, "rows_per_s": self.records / seconds,
                "end_to_end_records_per_s": self.records / seconds}

    def dlt(self, r: int) -> harness.Figures:
        bin_dir = peer_python("dlt")
        script = self.work / "dlt_load.py"
        script.write_text(DLT_SCRIPT)
        warehouse = self.warehouse("dlt", r)
        t0 = time.perf_counter()
        with open(self.work / f"dlt{r}.log", "wb") as log:
            subprocess.run([str(bin_dir / "python"), str(script), str(self.records_path),
                            warehouse, "dlt_bench", str(self.work / f"dlt{r}")], check=True,
                           env=dict(os.environ, RUNTIME__LOG_LEVEL="ERROR"), stdout=log,
                           stderr=log)
        s = time.perf_counter() - t0
        return {"end_to_end_s": s, "end_to_end_records_per_s": self.records / s}

    def target_postgres(self, r: int) -> harness.Figures:
        bin_dir = peer_python("target_postgres")
        singer = self.singer_file()
        warehouse = self.warehouse("tp", r)
        host_port, db = warehouse.rsplit("@", 1)[1].split("/")
        host, port = host_port.split(":")
        config = {"host": host, "port": int(port), "user": "spool", "password": "spool",
                  "database": db, "default_target_schema": "target_postgres_bench",
                  "load_method": "append-only", "add_record_metadata": False,
                  "flattening_enabled": True, "flattening_max_depth": 3,
                  "validate_records": True, "activate_version": False}
        (self.work / "tp.json").write_text(json.dumps(config))
        t0 = time.perf_counter()
        with open(singer, "rb") as stdin, open(self.work / "tp.log", "wb") as log:
            subprocess.run([str(bin_dir / "target-postgres"), "--config",
                            str(self.work / "tp.json")],
                           stdin=stdin, check=True, stdout=subprocess.DEVNULL, stderr=log)
        s = time.perf_counter() - t0
        return {"end_to_end_s": s, "end_to_end_records_per_s": self.records / s}

    def singer_file(self) -> Path:
        if self._singer is not None:
            return self._singer
        singer = self.work / "singer.jsonl"
        by_stream: dict = {}
        for m in self.messages:
            by_stream.setdefault(f"{m.tenant}__{m.stream}", []).append(m.data)
        schemas = {stream: json_schema(recs) for stream, recs in by_stream.items()}
        with open(singer, "w") as fh:
            for stream, schema in schemas.items():
                fh.write(json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema,
                                     "key_properties": []}) + "\n")
            for m in self.messages:
                stream = f"{m.tenant}__{m.stream}"
                fh.write(json.dumps({"type": "RECORD", "stream": stream,
                                     "record": as_singer_record(m.data, schemas[stream])},
                                    ensure_ascii=False) + "\n")
        self._singer = singer
        return singer


def peer_versions() -> dict[str, str]:
    return {"dlt": "1.31.0", "meltanolabs-target-postgres": "0.8.1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--out", default=None, help="default: "
                        "benchmarks/results/loader_throughput.json (and .png)")
    parser.add_argument("--skip", action="append", default=[], choices=CASES,
                        help="leave a case out")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    env = stack_env()
    os.environ.update(env)
    machine = harness.machine()
    run_id = uuid.uuid4().hex[:8]
    work = ROOT / "var" / "bench" / f"loader-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.records, env, work, run_id)
    try:
        cases = {c: getattr(bench, c) for c in CASES if c not in args.skip}
        samples = harness.interleave(cases, args.runs)
    finally:
        bench.close()
    summary = {case: harness.summarise(s) for case, s in samples.items()}
    ratios = {}
    if "spool" in summary:
        for peer in ("dlt", "target_postgres", "standalone", "copy_ceiling"):
            if peer in summary:
                ratios[f"spool_end_to_end_to_{peer}"] = harness.ratio(
                    summary, "spool", peer, "end_to_end_records_per_s")
        ratios["steady_stage_to_first_stage"] = round(
            summary["spool"]["stage_rows_per_s_steady"]["median"]
            / summary["spool"]["stage_rows_per_s_first"]["median"], 3)
    out = {"benchmark": "loader_throughput", "records": args.records, "runs": args.runs,
           "order": "interleaved, reversed every other round", "commit": harness.commit(),
           "machine": machine,
           "versions": harness.versions({**peer_versions(), "postgres_dsn": bench.admin_dsn}),
           "cases": summary, "ratios": ratios,
           "chart": [{"title": f"Kafka → warehouse, {args.records:,} records",
                      "ylabel": "input records/s (log scale)", "log_y": True,
                      "bars": {c: s["end_to_end_records_per_s"] for c, s in summary.items()}}]}
    if "spool" in summary:
        out["chart"].append({"title": "Spool loader stage", "ylabel": "warehouse rows/s",
                             "bars": {k.removeprefix("stage_rows_per_s_"):
                                      summary["spool"][k]
                                      for k in ("stage_rows_per_s_first",
                                                "stage_rows_per_s_second",
                                                "stage_rows_per_s_steady")}})
    return harness.finish("loader_throughput", out, args.out,
                          {"end_to_end_records_per_s": "records/s"})


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The newcomer demo behind ./run_local.sh: the whole product, on the local stack.

1. registers three tenants with warehouses: ``acme`` (schema demo_acme) and ``globex``
   (schema demo_globex), both in the local ``warehouse`` database, and ``umbrella``, whose
   warehouse is a DuckDB file (var/warehouse/umbrella/warehouse.duckdb, schema umbrella);
2. feeds the fat queue (``spool.fatq``) from two sources:
   a. generated sample envelopes for acme and globex: nested objects, arrays, a few invalid
      messages (sent straight to Kafka, as a faulty producer would: ``spool produce``
      refuses them), and 300 orders for umbrella (each sent once per checkout; markers in
      var/demo remember them);
   b. a real Singer tap from PyPI, MeltanoLabs tap-postgres, reading a small sample
      database it creates (``demo_source``), piped through ``spool produce --singer
      --tenant globex``; every run sends the tables again, and since the tap declares their
      primary keys, rows are replaced, not added;
3. runs the spool job (drain) and the loader (drain);
4. prints ``spool status``, a few loaded rows from each source (umbrella's read from its
   DuckDB file with a Python one-liner), and the psql command.

Run again, it loads nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOPIC = "spool.fatq"
DEMO = ROOT / "var" / "demo"
MARKER = DEMO / "sample-sent"
DUCKDB_MARKER = DEMO / "duckdb-sample-sent"
DUCKDB_FILE = ROOT / "var" / "warehouse" / "umbrella" / "warehouse.duckdb"
TAP_REQUIREMENTS = ROOT / "scripts" / "requirements-tap.txt"
PY = sys.executable


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def spool(*args: str, stdin=None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "spool.cli", *args], cwd=ROOT, stdin=stdin, check=check)


def send_raw(lines: list[str]) -> None:
    """Messages no 'spool produce' would send, straight to the fat queue."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=os.environ["SPOOL_KAFKA_BOOTSTRAP"])
    for line in lines:
        producer.send(TOPIC, value=line.encode(), key=json.loads(line)["tenant"].encode())
    producer.flush(timeout=30)
    producer.close()


def sample(n: int, seed: int = 42) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tenant = rng.choice(["acme", "globex"])
        if i % 199 == 0:  # an envelope without a stream: lands in _sdc_rejected
            out.append(json.dumps({"tenant": tenant, "data": {"id": i}}))
            continue
        if i % 211 == 0:  # a tenant nobody registered
            out.append(json.dumps({"tenant": "initech", "stream": "orders", "data": {"id": i}}))
            continue
        stream = rng.choice(["orders", "customers"])
        if stream == "orders":
            data = {"id": i, "status": rng.choice(["new", "paid", "shipped"]),
                    "total": round(rng.uniform(5, 500), 2),
                    "customer": {"name": rng.choice(["Zoë", "Ann", "Bo"]),
                                 "address": {"city": rng.choice(["Köln", "Lyon", "Oslo"])}},
                    "items": [{"sku": f"sku-{rng.randint(1, 20)}", "qty": rng.randint(1, 3)}
                              for _ in range(rng.randint(1, 3))]}
        else:
            data = {"id": i % 50, "email": f"user{i % 50}@example.com",
                    "tags": rng.sample(["vip", "new", "eu", "b2b"], 2)}
        out.append(json.dumps({"tenant": tenant, "stream": stream, "key_names": ["id"],
                               "sequence": i, "data": data}, ensure_ascii=False))
    return out


def tap_bin() -> Path:
    venv = ROOT / "var" / "venvs" / "tap-postgres-0.10.0"
    exe = venv / "bin" / "tap-postgres"
    if not exe.exists():
        say(f"installing MeltanoLabs tap-postgres from PyPI into {venv} (once) ...")
        subprocess.run([PY, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                        "--cache-dir", str(ROOT / "var/cache/pip"), "-r",
                        str(TAP_REQUIREMENTS)], check=True)
    return exe


def source_database(admin_dsn: str) -> str:
    """A small sample database for the tap to read (created once, kept)."""
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'demo_source'")
        if cur.fetchone() is None:
            cur.execute("CREATE DATABASE demo_source")
    conn.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + "/demo_source"
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("""CREATE TABLE IF NOT EXISTS customers (
                           id int PRIMARY KEY, name text, email text,
                           updated_at timestamptz NOT NULL DEFAULT now())""")
        cur.execute("""CREATE TABLE IF NOT EXISTS orders (
                           id int PRIMARY KEY, customer_id int REFERENCES customers,
                           total numeric(10, 2), placed_at timestamptz NOT NULL DEFAULT now())""")
        cur.execute("""INSERT INTO customers (id, name, email) VALUES
                           (1, 'Zoë Faure', 'zoe@example.com'), (2, 'Ann Lee', 'ann@example.com'),
                           (3, 'Bo Berg', 'bo@example.com') ON CONFLICT (id) DO NOTHING""")
        cur.execute("""INSERT INTO orders (id, customer_id, total) VALUES
                           (10, 1, 25.50), (11, 2, 9.99), (12, 3, 120.00)
                       ON CONFLICT (id) DO NOTHING""")
    conn.close()
    return dsn


def run_tap(source_dsn: str) -> None:
    import psycopg2.extensions as ext

    tap = tap_bin()
    params = ext.parse_dsn(source_dsn)
    config = {"host": params["host"], "port": int(params["port"]), "user": params["user"],
              "password": params["password"], "database": params["dbname"],
              "filter_schemas": ["public"]}
    DEMO.mkdir(parents=True, exist_ok=True)
    config_path = DEMO / "tap-postgres.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    catalog = json.loads(subprocess.run([str(tap), "--config", str(config_path), "--discover"],
                                        check=True, capture_output=True, text=True).stdout)
    for stream in catalog["streams"]:  # select every table, as Meltano's `select` would
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = True
    (DEMO / "tap-postgres.catalog.json").write_text(json.dumps(catalog))
    say("tap-postgres | spool produce --singer --tenant globex")
    tap_run = subprocess.Popen([str(tap), "--config", str(config_path), "--catalog",
                                str(DEMO / "tap-postgres.catalog.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    spool("produce", "--singer", "--tenant", "globex", "--topic", TOPIC, stdin=tap_run.stdout)
    tap_run.stdout.close()
    if tap_run.wait() != 0:
        raise SystemExit("tap-postgres failed")


def main() -> int:
    env = json.loads(subprocess.run([PY, str(ROOT / "scripts/stack.py"), "env", "--json"],
                                    check=True, capture_output=True, text=True).stdout)
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    for tenant in ("acme", "globex"):
        spool("tenants", "add", tenant, "--warehouse", "postgres", "--dsn",
              "env:SPOOL_WAREHOUSE_DSN", "--schema", f"demo_{tenant}")
    spool("tenants", "add", "umbrella", "--warehouse", "duckdb", "--path",
          str(DUCKDB_FILE.relative_to(ROOT)), "--schema", "umbrella")
    admin = KafkaAdminClient(bootstrap_servers=os.environ["SPOOL_KAFKA_BOOTSTRAP"])
    with contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(TOPIC, 3, 1)])
    admin.close()

    if not MARKER.exists():
        DEMO.mkdir(parents=True, exist_ok=True)
        path = DEMO / "sample.jsonl"
        lines = sample(5_000)
        faulty = [line for line in lines if "stream" not in json.loads(line)]
        path.write_text("\n".join(line for line in lines if line not in faulty) + "\n")
        say(f"spool produce {path.relative_to(ROOT)}   ({len(lines) - len(faulty):,} generated "
            "envelopes)")
        spool("produce", str(path), "--topic", TOPIC)
        say(f"{len(faulty)} envelopes without a stream, sent straight to Kafka as a faulty "
            "producer would ('spool produce' refuses them): they land in _sdc_rejected")
        send_raw(faulty)
        MARKER.write_text("sent\n")
    else:
        say("the generated sample was sent on an earlier run; not sending it again")
    if not DUCKDB_MARKER.exists():
        DEMO.mkdir(parents=True, exist_ok=True)
        path = DEMO / "umbrella.jsonl"
        path.write_text("\n".join(
            json.dumps({"tenant": "umbrella", "stream": "orders", "key_names": ["id"],
                        "data": {"id": i, "status": ("new", "paid", "shipped")[i % 3],
                                 "total": round(9.5 + i * 1.25, 2),
                                 "customer": {"city": ("Köln", "Lyon", "Oslo")[i % 3]}}},
                       ensure_ascii=False) for i in range(300)) + "\n")
        say(f"spool produce {path.relative_to(ROOT)}   (300 orders for umbrella, DuckDB)")
        spool("produce", str(path), "--topic", TOPIC)
        DUCKDB_MARKER.write_text("sent\n")
    admin_dsn = os.environ["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    run_tap(source_database(admin_dsn))

    say("spool job (drain): queue → Parquet batches + ledger ...")
    subprocess.run([PY, "-m", "pipelines.spool_job", f"--topic={TOPIC}",
                    "--consumer_group=spool-demo", "--log_level=WARNING"], cwd=ROOT,
                   check=True, stderr=subprocess.DEVNULL)
    say("loader (drain): batches → warehouse tables ...")
    subprocess.run([PY, "-m", "pipelines.loader_job", "--log_level=WARNING"], cwd=ROOT,
                   check=True, stderr=subprocess.DEVNULL)

    print()
    say("spool status --tenant acme / --tenant globex")
    spool("status", "--tenant", "acme")
    spool("status", "--tenant", "globex")
    print()
    warehouse = os.environ["SPOOL_WAREHOUSE_DSN"]
    for title, sql in (
            ("generated sample → demo_acme.orders",
             "SELECT id, status, total, customer__name, customer__address__city "
             "FROM demo_acme.orders ORDER BY id LIMIT 5"),
            ("tap-postgres → demo_globex.public_customers",
             "SELECT id, name, email, updated_at FROM demo_globex.public_customers "
             "ORDER BY id LIMIT 5")):
        say(title)
        subprocess.run(["psql", warehouse, "-c", sql], check=True)
    say("umbrella → its DuckDB file (paste this to query it yourself)")
    query = ("SELECT status, count(*) AS orders, round(sum(total), 2) AS total "
             "FROM umbrella.orders GROUP BY 1 ORDER BY 1")
    one_liner = [PY, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True)"
                 ".sql(sys.argv[2]).show()", str(DUCKDB_FILE.relative_to(ROOT)), query]
    print(f"  .venv/bin/python -c \"import duckdb, sys; duckdb.connect(sys.argv[1], "
          f"read_only=True).sql(sys.argv[2]).show()\" {DUCKDB_FILE.relative_to(ROOT)} "
          f"'{query}'")
    subprocess.run(one_liner, cwd=ROOT, check=True)
    say(f"look further: psql {warehouse}")
    say("stop the local services: scripts/services.sh stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())

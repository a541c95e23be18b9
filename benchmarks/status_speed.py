"""How fast the ledger answers as it grows: ``spool status`` and the loader's claims.

    .venv/bin/python benchmarks/status_speed.py [--batches 1000000] [--runs 5] [--out FILE]

Seeds a fresh ledger database with ``--batches`` batches of 200 tenants x 25 streams in
every state (90 % LOADED), and a tenant schema whose load log holds as many entries; then
times, in turns (``--runs`` rounds), the whole CLI command (process start included) for the
overview, one tenant, one table, the FAILED batches and ``spool rejected``, and in process
the loader's ledger work per poll: listing due tables, one tenant's claim of up to 500
batches (released again, so every round claims the same), and the load-log lookup of 500
batch ids. Medians with min and max go to benchmarks/results/status_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.spool_throughput import fresh_database, stack_env  # noqa: E402


def seed(dsn: str, n: int) -> None:
    import psycopg2
    from psycopg2.extras import execute_values

    from spool.ledger.store import Ledger

    Ledger(dsn).migrate()
    rng = random.Random(5)
    now = datetime.now(tz=UTC)
    states = ["LOADED"] * 90 + ["READY"] * 6 + ["LOADING"] * 2 + ["FAILED"] * 2
    rows = []
    for i in range(n):
        tenant, stream = f"t{rng.randrange(200):03d}", f"s{rng.randrange(25):02d}"
        if i % 50 == 0:
            stream = "_sdc_rejected"
        state = rng.choice(states)
        created = now - timedelta(seconds=n - i)
        meta = {"rejected": {"not_json": 2}} if stream == "_sdc_rejected" else {}
        rows.append((f"{tenant}/{stream}/{i}", tenant, stream, f"/x/{i}", state, created,
                     created, 0, 100, 250, 10_000, 4_000, i, i, "{}", "{}",
                     json.dumps(meta), created,
                     created if state == "LOADED" else None,
                     "DataError: bad" if state == "FAILED" else None))
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        execute_values(cur, """INSERT INTO batches (batch_id, tenant_id, stream, uri, state,
                window_start, window_end, pane, record_count, row_count, byte_count,
                file_bytes, min_sequence, max_sequence, offsets, columns, meta, created_at,
                loaded_at, last_error) VALUES %s""", rows, page_size=5000)
        cur.execute("ANALYZE batches")
    conn.close()


def seed_load_log(dsn: str, n: int) -> tuple[str, list[str]]:
    """A tenant schema (spool.warehouse.schema.prepare) whose load log has ``n`` entries;
    returns (schema, 500 of its batch ids)."""
    import psycopg2

    from spool.warehouse import schema as tenant_schema
    from spool.warehouse.dialects import DIALECTS

    d = DIALECTS["postgres"]
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        tenant_schema.prepare(d, cur, "bench_tenant", known=False)
        cur.execute("""INSERT INTO bench_tenant._sdc_load_log
                         (batch_id, stream, row_count, loaded_at, loader)
                       SELECT 't007/s03/' || i, 's03', 100, now(), 'bench'
                       FROM generate_series(1, %s) i""", (n,))
        cur.execute("ANALYZE bench_tenant._sdc_load_log")
    conn.close()
    step = max(1, n // 500)
    return "bench_tenant", [f"t007/s03/{i}" for i in range(1, n + 1, step)][:500]


def cli(dsn: str, *args: str):
    def run(_r: int) -> harness.Figures:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", dsn],
                       check=True, stdout=subprocess.DEVNULL)
        return {"seconds": time.perf_counter() - t0}
    return run


def in_process(dsn: str, load_log: tuple[str, list[str]]):
    import psycopg2

    from spool.ledger import claims
    from spool.ledger.store import Ledger
    from spool.warehouse import schema as tenant_schema
    from spool.warehouse.dialects import DIALECTS

    ledger = Ledger(dsn)
    streams = [f"s{i:02d}" for i in range(25)]

    def list_due(_r: int) -> harness.Figures:
        t0 = time.perf_counter()
        claims.claimable_tables(ledger)
        return {"seconds": time.perf_counter() - t0}

    def claim(_r: int) -> harness.Figures:
        t0 = time.perf_counter()
        got = claims.claim(ledger, "t007", streams, "bench", 60, 500)
        seconds = time.perf_counter() - t0
        claims.release(ledger, [c.batch_id for c in got], "bench")
        return {"seconds": seconds, "claimed": len(got)}

    def lookup(_r: int) -> harness.Figures:
        conn = psycopg2.connect(dsn)
        try:
            with conn, conn.cursor() as cur:
                t0 = time.perf_counter()
                found = tenant_schema.loaded_batches(DIALECTS["postgres"], cur, load_log[0],
                                                     load_log[1])
                seconds = time.perf_counter() - t0
        finally:
            conn.close()
        return {"seconds": seconds, "found": len(found)}

    return ledger, {"loader: list due tables": list_due, "loader: claim 500 of a tenant": claim,
                    "loader: load-log lookup of 500 ids": lookup}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/status_speed.json")
    args = parser.parse_args(argv)
    env = stack_env()
    os.environ.update(env)
    machine = harness.machine()
    admin = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    name = f"bench_status_{uuid.uuid4().hex[:8]}"
    dsn = fresh_database(admin, name)
    try:
        t0 = time.perf_counter()
        seed(dsn, args.batches)
        load_log = seed_load_log(dsn, args.batches)
        print(f"[bench] seeded {args.batches:,} batches in {time.perf_counter() - t0:.0f} s",
              flush=True)
        ledger, loader_cases = in_process(dsn, load_log)
        cases = {
            "status (all tenants)": cli(dsn, "status"),
            "status --tenant": cli(dsn, "status", "--tenant", "t007"),
            "status --tenant --table": cli(dsn, "status", "--tenant", "t007", "--table", "s03"),
            "batches list --state FAILED": cli(dsn, "batches", "list", "--state", "FAILED"),
            "rejected": cli(dsn, "rejected"),
            **loader_cases,
        }
        try:
            samples = harness.interleave(cases, args.runs)
        finally:
            ledger.close()
    finally:
        import psycopg2

        conn = psycopg2.connect(admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()
    summary = {c: harness.summarise(s) for c, s in samples.items()}
    out = {"benchmark": "status_speed", "batches": args.batches, "runs": args.runs,
           "order": "interleaved, reversed every other round", "commit": harness.commit(),
           "machine": machine, "versions": harness.versions({"postgres_dsn": admin}),
           "note": "CLI commands: the whole process, start-up included; loader steps: "
                   "in process, one statement each",
           "cases": summary,
           "chart": [{"title": f"ledger of {args.batches:,} batches", "ylabel": "seconds",
                      "bars": {c: s["seconds"] for c, s in summary.items()}}]}
    return harness.finish("status_speed", out, args.out, {"seconds": "s"})


if __name__ == "__main__":
    sys.exit(main())

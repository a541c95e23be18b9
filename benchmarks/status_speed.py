"""How fast ``spool status`` answers on a ledger with 100,000 batches.

    .venv/bin/python benchmarks/status_speed.py [--batches 100000] [--out FILE]

Seeds a fresh ledger database with batches of 200 tenants x 25 streams in every state,
then times the whole command (process start included) for the overview, one tenant, one
table, and ``spool rejected``; the median of five runs each goes to
benchmarks/results/status_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def timed(dsn: str, *args: str) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", dsn],
                       check=True, stdout=subprocess.DEVNULL)
        runs.append(time.perf_counter() - t0)
    return round(statistics.median(runs), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/status_speed.json"))
    args = parser.parse_args()
    env = stack_env()
    os.environ.update(env)
    admin = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    name = f"bench_status_{uuid.uuid4().hex[:8]}"
    dsn = fresh_database(admin, name)
    try:
        seed(dsn, args.batches)
        results = {
            "status (all tenants)": timed(dsn, "status"),
            "status --tenant": timed(dsn, "status", "--tenant", "t007"),
            "status --tenant --table": timed(dsn, "status", "--tenant", "t007", "--table", "s03"),
            "batches list --state FAILED": timed(dsn, "batches", "list", "--state", "FAILED"),
            "rejected": timed(dsn, "rejected"),
        }
    finally:
        import psycopg2

        conn = psycopg2.connect(admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()
    out = {"benchmark": "status_speed", "batches": args.batches,
           "seconds_median_of_5_including_process_start": results}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

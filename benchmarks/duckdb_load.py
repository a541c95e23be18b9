"""The load transaction into DuckDB next to PostgreSQL, on the same staged rows.

    .venv/bin/python benchmarks/duckdb_load.py [--streams 10] [--rows 20000] [--runs 3]

Each case loads ``--streams`` keyed streams of ``--rows`` records (a nested object and an
array each, so child tables too) twice into a fresh schema or file: the first load creates
the tables and copies straight in, the second merges (half the keys replace, half are new).
The batch files are staged before the clock starts (the same work for both), so the figures
are the warehouse's side: warehouse rows per second of each load, interleaved runs, medians
and spread. PostgreSQL stages by COPY FROM STDIN (CSV); DuckDB by inserting Arrow tables
from memory. Results: benchmarks/results/duckdb_load.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.spool_throughput import stack_env  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import psycopg2

    from spool.warehouse.dialects import DIALECTS
    from spool.warehouse.duckdb_session import DuckDBConnection
    from spool.warehouse.load import Loader
    from spool.warehouse.stage import stage_group
    from spool.warehouse.stagers import CopyStdinStager, DuckDBArrowStager
    from tests.warehouse_helpers import make_batch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    dsn = stack_env()["SPOOL_WAREHOUSE_DSN"]
    machine = harness.machine()

    def batches(seq: int, offset: int):
        return {f"s{i}": make_batch(f"s{i}", [
            {"id": k + offset, "name": f"n{k}-{seq}", "amount": k * 1.5,
             "customer": {"city": "Köln", "vip": k % 2 == 0}, "tags": ["a", "b"]}
            for k in range(args.rows)], key_names=["id"], sequences=[seq] * args.rows)
            for i in range(args.streams)}

    first_files, second_files = batches(1, 0), batches(2, args.rows // 2)

    def groups(files, dialect):
        return [stage_group(s, [f], dialect) for s, f in files.items()]

    def case(kind: str):
        def run(_r: int) -> dict:
            d = DIALECTS[kind]
            one, two = groups(first_files, d), groups(second_files, d)
            rows_one = sum(st.rows for g in one for st in g.tables.values())
            rows_two = sum(st.rows for g in two for st in g.tables.values())
            with tempfile.TemporaryDirectory() as tmp:
                if kind == "duckdb":
                    conn, loader, schema = DuckDBConnection(f"{tmp}/wh.duckdb"), \
                        Loader(d, DuckDBArrowStager()), "bench"
                else:
                    conn, loader = psycopg2.connect(dsn), Loader(d, CopyStdinStager())
                    schema = "bench_duck_" + uuid.uuid4().hex[:8]
                try:
                    t0 = time.perf_counter()
                    loader.load(conn, schema, one)
                    t1 = time.perf_counter()
                    loader.load(conn, schema, two)
                    t2 = time.perf_counter()
                finally:
                    if kind == "postgres":
                        with conn, conn.cursor() as cur:
                            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
                    conn.close()
            return {"first_rows_per_s": rows_one / (t1 - t0),
                    "merge_rows_per_s": rows_two / (t2 - t1)}
        return run

    samples = harness.interleave({k: case(k) for k in ("postgres", "duckdb")}, args.runs)
    summary = {c: harness.summarise(s) for c, s in samples.items()}
    out = {"benchmark": "duckdb_load", "streams": args.streams, "rows": args.rows,
           "runs": args.runs, "order": "interleaved, reversed every other round",
           "commit": harness.commit(), "machine": machine, "versions": harness.versions(),
           "cases": summary,
           "ratios": {f"duckdb_to_postgres_{f}": harness.ratio(summary, "duckdb", "postgres", f)
                      for f in ("first_rows_per_s", "merge_rows_per_s")},
           "chart": [{"title": f"load into {args.streams} tables of {args.rows:,} records",
                      "ylabel": "warehouse rows/s",
                      "bars": {f"{c} {f.split('_')[0]}": s[f] for c, s in summary.items()
                               for f in ("first_rows_per_s", "merge_rows_per_s")}}]}
    return harness.finish("duckdb_load", out, args.out,
                          {"first_rows_per_s": " rows/s", "merge_rows_per_s": " rows/s"})


if __name__ == "__main__":
    sys.exit(main())

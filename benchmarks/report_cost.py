"""What the load report costs: a merge into many existing tables, counted three ways.

    .venv/bin/python benchmarks/report_cost.py [--tables 1000] [--rows 20] [--runs 3]

One tenant schema with ``--tables`` keyed streams is loaded once (tables created), then each
case loads a second batch per stream (every table merged: upserts, half the keys new) into
a fresh copy of that state, in turns:

* ``counters``: as shipped for PostgreSQL, the report read from the transaction's row
  counters (``pg_stat_xact_user_tables``), one query for the whole load;
* ``count_queries``: as shipped for Redshift, count queries before and after the merge,
  40 per round trip (run here on PostgreSQL);
* ``no_report``: no counting at all, the floor.

Figures: seconds of the second load (one warehouse transaction). Results:
benchmarks/results/report_cost.json.
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
    import psycopg2

    from spool.warehouse import merge
    from spool.warehouse.dialects import DIALECTS
    from spool.warehouse.load import Loader
    from spool.warehouse.stage import stage_group
    from spool.warehouse.stagers import CopyStdinStager
    from tests.warehouse_helpers import make_batch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20, help="records per stream and load")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    env = stack_env()
    dsn = env["SPOOL_WAREHOUSE_DSN"]
    pg = DIALECTS["postgres"]
    machine = harness.machine()

    def groups(seq: int, offset: int):
        return [stage_group(f"s{i}", [make_batch(
            f"s{i}", [{"id": k + offset, "v": f"x{seq}", "n": k} for k in range(args.rows)],
            key_names=["id"], sequences=[seq] * args.rows)], pg) for i in range(args.tables)]

    def case(how: str):
        def run(_r: int) -> dict:
            schema = "bench_report_" + uuid.uuid4().hex[:8]
            conn = psycopg2.connect(dsn)
            loader = Loader(pg, CopyStdinStager())
            try:
                loader.load(conn, schema, groups(1, 0))
                second = groups(2, args.rows // 2)  # half the keys replace, half are new
                real = merge.Tally.__init__

                def init(self, d):
                    real(self, d)
                    if how != "counters":
                        self.counters = None
                    if how == "no_report":
                        self.run = lambda d, cur, counts: counts.clear()
                merge.Tally.__init__ = init
                try:
                    t0 = time.perf_counter()
                    result = loader.load(conn, schema, second)
                    seconds = time.perf_counter() - t0
                finally:
                    merge.Tally.__init__ = real
                if how != "no_report":  # the counts are right, or the figure means nothing
                    assert {(r.rows_inserted, r.rows_updated) for r in result.reports} == \
                        {(args.rows - args.rows // 2, args.rows // 2)}, result.reports[:2]
                return {"seconds": seconds}
            finally:
                with conn, conn.cursor() as cur:
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.close()
        return run

    cases = {how: case(how) for how in ("counters", "count_queries", "no_report")}
    samples = harness.interleave(cases, args.runs)
    summary = {c: harness.summarise(s) for c, s in samples.items()}
    out = {"benchmark": "report_cost", "tables": args.tables, "rows": args.rows,
           "runs": args.runs, "order": "interleaved, reversed every other round",
           "commit": harness.commit(), "machine": machine, "versions": harness.versions(),
           "cases": summary,
           "ratios": {f"{c}_to_no_report": harness.ratio(summary, c, "no_report", "seconds")
                      for c in ("counters", "count_queries")},
           "chart": [{"title": f"second load into {args.tables:,} tables", "ylabel": "seconds",
                      "bars": {c: s["seconds"] for c, s in summary.items()}}]}
    return harness.finish("report_cost", out, args.out, {"seconds": "s"})


if __name__ == "__main__":
    sys.exit(main())

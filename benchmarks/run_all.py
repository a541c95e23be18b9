"""Every comparison a user would ask for, in one command, and the table of them.

    .venv/bin/python benchmarks/run_all.py [--records 200000] [--runs 3] [--skip NAME]

Runs, one after the other on the local stack (never two at once: on a small machine they
would distort each other), each with its cases interleaved ``--runs`` times:

* spool_throughput: the spool job against a plain kafka-python consumer doing the same
  work (decode, shape, Parquet batch files, ledger rows);
* loader_throughput: Kafka → warehouse for Spool, the standalone consumer → COPY loop (the
  limit), a bare COPY (the ceiling), dlt and target-postgres; Spool's loader stage on a
  first load, a second and the steady state;
* scaling: the same volume over 10 and over 10,000 streams (1x10 and 100x100 tenants x
  streams), first load and steady state (benchmarks/scaling.py runs more shapes);
* status_speed: ``spool status`` and the loader's claims on a ledger of 1,000,000 batches;
* volume: CPU seconds per 1,000 records at ``--records`` and at ten times as many (the
  longest: ``--skip volume`` for a quicker table);
* maps_cost: the spool job with a five-rule stream map on every stream against none.

A skipped benchmark's figures are taken from its last results file, marked ``reused`` with
the commit they were measured at, so one benchmark can be refreshed without losing the
table.

Each writes its JSON and PNG to benchmarks/results/; this writes benchmarks/results/
summary.json with every figure (median, min, max) and each target of the project with
the figure that meets or misses it, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402

# each benchmark, and its arguments from run_all's (records, runs)
BENCHMARKS = {
    "spool_throughput": lambda a: [f"--records={a.records}", f"--runs={a.runs}"],
    "loader_throughput": lambda a: [f"--records={a.records}", f"--runs={a.runs}"],
    "scaling": lambda a: [f"--records={a.records}", f"--runs={a.runs}", "--shape=1x10",
                          "--shape=100x100"],
    "status_speed": lambda a: [f"--batches={a.batches}", f"--runs={max(a.runs, 5)}"],
    "volume": lambda a: [f"--small={a.records}", f"--large={10 * a.records}",
                         f"--runs={a.runs}"],
    "maps_cost": lambda a: [f"--records={a.records}", f"--runs={a.runs}"],
}

# (what, benchmark, (case or "ratio", figure), bound, ">=" or "<="): medians
TARGETS = [
    ("spool job >= 0.9x the plain consumer", "spool_throughput",
     ("ratio", "spool_job_to_plain_consumer"), 0.9, ">="),
    ("spool job with five-rule stream maps >= 0.9x without", "maps_cost",
     ("ratio", "five_rules_to_no_maps"), 0.9, ">="),
    ("loader stage, first load >= 100,000 rows/s", "loader_throughput",
     ("spool", "stage_rows_per_s_first"), 100_000, ">="),
    ("loader stage, steady state >= 100,000 rows/s", "loader_throughput",
     ("spool", "stage_rows_per_s_steady"), 100_000, ">="),
    ("whole loader job >= 70,000 rows/s", "loader_throughput",
     ("spool", "loader_rows_per_s"), 70_000, ">="),
    ("end to end >= 5x dlt", "loader_throughput", ("ratio", "spool_end_to_end_to_dlt"), 5.0,
     ">="),
    ("end to end >= 5x target-postgres", "loader_throughput",
     ("ratio", "spool_end_to_end_to_target_postgres"), 5.0, ">="),
    ("end to end >= 0.5x the standalone consumer", "loader_throughput",
     ("ratio", "spool_end_to_end_to_standalone"), 0.5, ">="),
    ("10,000 streams end to end, steady >= 0.7x 10 streams", "scaling",
     ("100x100", "ratio_end_to_end_records_per_s_steady"), 0.7, ">="),
    ("10,000 streams loader, steady >= 0.6x 10 streams", "scaling",
     ("100x100", "ratio_loader_records_per_s_steady"), 0.6, ">="),
    ("spool status < 1 s on the ledger", "status_speed",
     ("status (all tenants)", "seconds"), 1.0, "<="),
    ("a claim < 1 s on the ledger", "status_speed",
     ("loader: claim 500 of a tenant", "seconds"), 1.0, "<="),
    ("listing due tables < 1 s on the ledger", "status_speed",
     ("loader: list due tables", "seconds"), 1.0, "<="),
    ("spool job: cost per record at 10x the records within 10 %", "volume",
     ("ratio", "spool_job_cost_per_record_large_to_small"), 1.1, "<="),
    ("loader: cost per record at 10x the records within 10 %", "volume",
     ("ratio", "loader_cost_per_record_large_to_small"), 1.1, "<="),
]


def figure_of(result: dict, where: tuple[str, str]):
    kind, name = where
    if kind == "ratio":
        return result.get("ratios", {}).get(name)
    if kind in result.get("against_smallest", {}):
        return result["against_smallest"][kind].get(name)
    fig = result.get("cases", {}).get(kind, {}).get(name)
    return fig["median"] if fig else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--batches", type=int, default=1_000_000,
                        help="ledger size for status_speed (default 1,000,000)")
    parser.add_argument("--skip", action="append", default=[], choices=BENCHMARKS)
    args = parser.parse_args(argv)
    machine = harness.machine()
    results = {}
    for name in BENCHMARKS:
        if name in args.skip:
            # the figures of its last run (with their own commit), so that refreshing one
            # benchmark still gives the whole table
            earlier = harness.RESULTS / f"{name}.json"
            if earlier.exists():
                results[name] = {**json.loads(earlier.read_text()), "reused": True}
            continue
        print(f"[run_all] {name}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"),
                        *BENCHMARKS[name](args)], cwd=ROOT, check=True)
        results[name] = json.loads((harness.RESULTS / f"{name}.json").read_text())
    targets = []
    for what, bench, where, bound, sense in TARGETS:
        if bench not in results:
            continue
        value = figure_of(results[bench], where)
        met = value is not None and (value >= bound if sense == ">=" else value <= bound)
        targets.append({"target": what, "median": value, "met": met})
    summary = {"benchmark": "run_all", "records": args.records, "runs": args.runs,
               "commit": harness.commit(), "machine": machine,
               "results": {name: {"cases": r["cases"], "ratios": r.get("ratios", {}),
                                  "against_smallest": r.get("against_smallest", {}),
                                  "commit": r.get("commit"),
                                  "reused": r.get("reused", False)}
                           for name, r in results.items()},
               "targets": targets}
    path = harness.write("summary", summary)
    for name, r in results.items():
        print(f"\n{name}" + (f" (reused: measured at {r.get('commit')})"
                              if r.get("reused") else ""))
        for case, figs in r["cases"].items():
            for figure, f in figs.items():
                print(f"  {case:16} {figure:34} {f['median']:>12,}  "
                      f"({f['min']:,} - {f['max']:,})")
        for k, v in r.get("ratios", {}).items():
            print(f"  ratio {k:44} {v}")
        for shape, row in r.get("against_smallest", {}).items():
            for k, v in row.items():
                print(f"  {shape} {k:48} {v}")
    print("\ntargets")
    for t in targets:
        print(f"  {'met ' if t['met'] else 'MISS'}  {t['target']:48} {t['median']}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

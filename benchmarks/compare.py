"""Two commits side by side: the same benchmarks, interleaved, medians and spread.

    .venv/bin/python benchmarks/compare.py --base origin/main [--head HEAD] [--runs 3]
        [--bench spool_throughput --bench loader_throughput] [--records 200000]

Single runs on a small machine vary by ±20 %, more than most regressions: this runs each
benchmark of each commit ``--runs`` times, alternating which commit goes first (A B, B A,
A B, ...), so drift of the machine falls on both, and reports per figure the median, min and
max of each side and the ratio of the medians (head / base; for seconds, below 1 is
faster). Each commit runs from its own git worktree under var/compare/ with this checkout's
venv (PYTHONPATH puts the worktree's code first) and local services. Results: benchmarks/results/
compare-<base>-<head>.json. The loader benchmark runs without its peers (dlt,
target-postgres, standalone, COPY): the comparison is between commits. Both commits must
have benchmarks/harness.py (from ec0f08d on); the figures are read from its JSON layout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the figures each benchmark's JSON gives, by path (benchmarks/harness.py's layout: each
# benchmark runs once per call here, so its median is that run's value)
FIGURES = {
    "spool_throughput": ["cases.spool_job.seconds.median",
                         "cases.plain_consumer.seconds.median",
                         "ratios.spool_job_to_plain_consumer"],
    "loader_throughput": [f"cases.spool.{f}.median" for f in (
        "spool_job_s", "loader_s", "stage_rows_per_s_first", "stage_rows_per_s_second",
        "stage_rows_per_s_steady", "spool_job_s_steady", "end_to_end_s")],
}
EXTRA_ARGS = {"spool_throughput": ["--runs=1"],
              "loader_throughput": ["--runs=1", "--skip=dlt", "--skip=target_postgres",
                                    "--skip=standalone", "--skip=copy_ceiling"]}


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def worktree(rev: str) -> tuple[str, Path]:
    """(commit, a worktree of it): this checkout itself when it is that commit, unchanged."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if sha == git("rev-parse", "HEAD") and not git("status", "--porcelain", "--",
                                                   "spool", "transforms", "pipelines",
                                                   "benchmarks", "tests"):
        return sha, ROOT
    path = ROOT / "var" / "compare" / sha[:12]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(path), sha)
    return sha, path


def dig(obj: dict, dotted: str):
    for key in dotted.split("."):
        obj = obj[key]
    return obj


def run_once(tree: Path, bench: str, records: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        # both commits use this checkout's running services (scripts/stack.py's var/)
        env = dict(os.environ, PYTHONPATH=str(tree), SPOOL_VAR_DIR=str(ROOT / "var"))
        subprocess.run([sys.executable, str(tree / "benchmarks" / f"{bench}.py"),
                        f"--records={records}", f"--out={out}", *EXTRA_ARGS.get(bench, [])],
                       cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text())
    return {f: float(dig(data, f)) for f in FIGURES[bench]}


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", default="HEAD", help="the commit to measure (default HEAD)")
    parser.add_argument("--runs", type=int, default=3, help="runs per commit (default 3)")
    parser.add_argument("--bench", action="append", choices=list(FIGURES),
                        help="benchmarks to run (default: all)")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    sides = dict(zip(("base", "head"), (worktree(args.base), worktree(args.head)),
                     strict=True))
    benches = args.bench or list(FIGURES)
    got: dict = {b: {s: {f: [] for f in FIGURES[b]} for s in sides} for b in benches}
    started = time.time()
    load = os.getloadavg()[0]
    for r in range(args.runs):
        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
        for bench in benches:
            for side in order:
                print(f"[compare] run {r + 1}/{args.runs} {bench} {side}", flush=True)
                for figure, value in run_once(sides[side][1], bench, args.records).items():
                    got[bench][side][figure].append(value)
    result = {
        "benchmark": "compare",
        "base": sides["base"][0], "head": sides["head"][0], "runs": args.runs,
        "records": args.records, "order": "interleaved, first side alternating per run",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": round(load, 2)},
        "minutes": round((time.time() - started) / 60, 1),
        "figures": {},
    }
    for bench in benches:
        for figure in FIGURES[bench]:
            base = summary(got[bench]["base"][figure])
            head = summary(got[bench]["head"][figure])
            result["figures"][f"{bench}:{figure}"] = {
                "base": base, "head": head,
                "head_over_base": round(head["median"] / base["median"], 3)}
    out = Path(args.out or ROOT / "benchmarks" / "results" /
               f"compare-{sides['base'][0][:8]}-{sides['head'][0][:8]}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result["figures"])
    print(f"{'figure':{width}}  base median (min-max)   head median (min-max)   head/base")
    for name, f in result["figures"].items():
        b, h = f["base"], f["head"]
        print(f"{name:{width}}  {b['median']:8.2f} ({b['min']:.2f}-{b['max']:.2f})"
              f"   {h['median']:8.2f} ({h['min']:.2f}-{h['max']:.2f})"
              f"   {f['head_over_base']:.3f}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

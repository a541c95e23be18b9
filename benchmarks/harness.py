"""What every benchmark here shares: interleaved runs, medians and spread, the record of
where and on what the figures were measured, JSON and a chart.

Single runs on a small machine vary by ±20 %, more than most differences worth knowing.
:func:`interleave` runs each case ``runs`` times, in turns (A B C, then C B A, ...), so
that drift of the machine (other load, caches, a warming database) falls on every case
alike; :func:`summarise` reports the median, min and max of each figure, and
:func:`ratio` compares cases by their medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

Figures = dict[str, float]


def interleave(cases: dict[str, Callable[[int], Figures]], runs: int,
               log=print) -> dict[str, list[Figures]]:
    """Each case's figures from ``runs`` runs, taken in turns, the order reversed every
    other round. A case is called with the run number (0-based) and returns its figures."""
    if runs < 1:
        raise ValueError("runs must be 1 or more")
    got: dict[str, list[Figures]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(runs):
        for name in names if r % 2 == 0 else reversed(names):
            log(f"[bench] run {r + 1}/{runs}: {name}")
            t0 = time.perf_counter()
            figures = cases[name](r)
            log(f"[bench] run {r + 1}/{runs}: {name} done in {time.perf_counter() - t0:.1f} s:"
                f" {json.dumps(figures)}")
            got[name].append(figures)
    return got


def summarise(samples: list[Figures]) -> dict[str, dict]:
    """Per figure: median, min, max and the runs themselves (in run order)."""
    out: dict[str, dict] = {}
    for figure in samples[0]:
        values = [s[figure] for s in samples if figure in s]
        out[figure] = {"median": _round(statistics.median(values)),
                       "min": _round(min(values)), "max": _round(max(values)),
                       "runs": [_round(v) for v in values]}
    return out


def ratio(summary: dict, a: str, b: str, figure: str) -> float:
    """median of ``a``'s figure / median of ``b``'s."""
    return round(summary[a][figure]["median"] / summary[b][figure]["median"], 3)


def _round(value: float) -> float:
    return round(value, 3) if abs(value) < 100 else round(value, 1)


def commit() -> str:
    """The commit measured, with ``+dirty`` when the working tree has changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    sha = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "spool", "transforms", "pipelines",
                "benchmarks", ":!benchmarks/results")  # results are not what was measured
    return sha + ("+dirty" if dirty else "")


def machine() -> dict:
    """Where: cores, memory, load average when the benchmark started, Python."""
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "memory_gib": mem_gib,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform()}


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Versions of what was measured: Beam, kafka-python, pyarrow, psycopg2, PostgreSQL's
    server (when a dsn is given as ``extra['postgres_dsn']``), and the peers' pins."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("apache-beam", "kafka-python", "pyarrow", "psycopg2-binary", "psycopg2"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    for name, value in (extra or {}).items():
        if name == "postgres_dsn":
            import psycopg2

            conn = psycopg2.connect(value)
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW server_version")
                    out["postgresql"] = cur.fetchone()[0]
            finally:
                conn.close()
        else:
            out[name] = value
    return out


def write(name: str, payload: dict, out: str | Path | None = None) -> Path:
    """``payload`` as benchmarks/results/<name>.json (or ``out``) and, when it has a
    ``chart`` entry, a PNG beside it (drawn by benchmarks/chart.py in its own venv, so that
    matplotlib never enters the measured processes' environment)."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    if payload.get("chart"):
        draw(path)
    return path


def finish(name: str, payload: dict, out: str | Path | None, figures: dict[str, str]) -> int:
    """Write the results (``write``), then print each figure's table across the cases
    (figure → unit), the ratios and where the results went; the exit code."""
    path = write(name, payload, out)
    for figure, unit in figures.items():
        print(table(payload["cases"], figure, unit))
    if payload.get("ratios"):
        print(json.dumps(payload["ratios"], indent=2))
    print(f"written: {path}")
    return 0


def draw(json_path: Path) -> Path | None:
    png = json_path.with_suffix(".png")
    python = chart_python()
    res = subprocess.run([str(python), str(ROOT / "benchmarks" / "chart.py"), str(json_path),
                          str(png)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(f"[bench] no chart for {json_path.name}: {res.stderr.strip()[-500:]}",
              file=sys.stderr)
        return None
    return png


def chart_python() -> Path:
    """A venv under var/ with matplotlib, made on first use."""
    venv = ROOT / "var" / "venvs" / "bench-chart"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"[bench] installing matplotlib into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--cache-dir",
                        str(ROOT / "var" / "cache" / "pip"), "matplotlib==3.10.7"], check=True)
    return python


def table(summary: dict, figure: str, unit: str = "") -> str:
    """A plain-text table of one figure across cases: median (min-max)."""
    width = max(len(c) for c in summary)
    lines = []
    for case, figs in summary.items():
        if figure in figs:
            f = figs[figure]
            lines.append(f"{case:{width}}  {f['median']:>12,} {unit} "
                         f"({f['min']:,} - {f['max']:,})")
    return "\n".join(lines)

"""Draw a benchmark result's chart: python benchmarks/chart.py RESULT.json OUT.png

Runs in its own venv (benchmarks/harness.py makes it) so matplotlib stays out of the
measured environment. The JSON's ``chart`` is a list of panels, each
``{"title", "ylabel", "bars": {label: {"median", "min", "max"}}}`` (a bar per label at its
median, a whisker from min to max) or ``{"title", "ylabel", "xlabel", "lines":
{label: [[x, median, min, max], ...]}, "log_x": bool}``; either may set ``"log_y"``, and
a lines panel ``"marks": [[x, label], ...]`` (events drawn as dashed vertical lines).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(src: str, dst: str) -> int:
    with open(src) as fh:
        data = json.load(fh)
    panels = data["chart"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if "bars" in panel:
            labels = list(panel["bars"])
            med = [panel["bars"][k]["median"] for k in labels]
            low = [m - panel["bars"][k]["min"] for k, m in zip(labels, med, strict=True)]
            high = [panel["bars"][k]["max"] - m for k, m in zip(labels, med, strict=True)]
            ax.bar(range(len(labels)), med, yerr=[low, high], capsize=4, color="#4c72b0")
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
            for i, m in enumerate(med):
                ax.annotate(f"{m:,.0f}" if m >= 100 else f"{m:.2f}", (i, m),
                            textcoords="offset points", xytext=(0, 3), ha="center",
                            fontsize=7)
        else:
            for label, points in panel["lines"].items():
                xs = [p[0] for p in points]
                ax.errorbar(xs, [p[1] for p in points],
                            yerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]],
                            marker="o", capsize=3, label=label)
            for x, text in panel.get("marks", []):
                ax.axvline(x, color="#c44e52", linestyle="--", linewidth=1)
                ax.annotate(text, (x, 1), xycoords=("data", "axes fraction"), rotation=90,
                            va="top", ha="right", fontsize=7, color="#c44e52")
            if panel.get("log_x"):
                ax.set_xscale("log")
            ax.set_xlabel(panel.get("xlabel", ""))
            ax.legend(fontsize=8)
        if panel.get("log_y"):
            ax.set_yscale("log")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(panel.get("ylabel", ""))
        ax.grid(axis="y", alpha=0.3)
    meta = data.get("machine", {})
    how = (f"medians of {data['runs']} interleaved runs, whiskers min-max" if "runs" in data
           else "one run")
    fig.suptitle(f"{data.get('benchmark', '')}: {how}; {meta.get('cpus', '?')} cores, commit "
                 f"{str(data.get('commit', ''))[:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

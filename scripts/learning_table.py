"""A learning result's table and plot: held-out success of the base model, after SFT and after SFT + GRPO (seeds).

Reads the `summary.json` of `gymbox eval` runs; prints a Markdown table (per category and overall; the GRPO
column is the seeds' mean ± standard deviation, with each seed beside it) and writes a bar plot.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def success(run: Path) -> dict[str, float]:
    """Category (and `all`) -> success rate of one evaluation run."""
    summary = json.loads((run / "summary.json").read_text())["summary"]
    rows = [*summary["categories"], summary["overall"]]
    return {row["name"]: row["success_rate"] for row in rows}


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(title: str, stages: dict[str, list[dict[str, float]]]) -> str:
    names = list(next(iter(stages.values()))[0])
    lines = [f"| {title} | " + " | ".join(stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for name in names:
        cells = []
        for runs in stages.values():
            mean, std = spread([r[name] for r in runs])
            seeds = " / ".join(f"{r[name]:.1%}" for r in runs)
            cells.append(f"{mean:.1%}" if len(runs) == 1 else f"{mean:.1%} ± {std:.1%} ({seeds})")
        lines.append(f"| {'**all**' if name == 'all' else name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(title: str, stages: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(stages.values()))[0])
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.6))
    for i, (stage, runs) in enumerate(stages.items()):
        xs = [j + (i - (len(stages) - 1) / 2) * width for j in range(len(names))]
        means, stds = zip(*(spread([r[n] for r in runs]) for n in names), strict=True)
        ax.bar(xs, means, width, yerr=stds if len(runs) > 1 else None, capsize=3, label=stage)
        for run in runs if len(runs) > 1 else []:
            ax.scatter(xs, [run[n] for n in names], s=8, color="black", zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("held-out success")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--title", required=True)
    p.add_argument("--base", type=Path, required=True, help="evaluation of the base model")
    p.add_argument("--sft", type=Path, required=True, help="evaluation after SFT")
    p.add_argument("--grpo", type=Path, nargs="+", required=True, help="evaluations after SFT + GRPO, one a seed")
    p.add_argument("--plot", type=Path, help="bar plot to write (PNG)")
    args = p.parse_args(argv)
    stages = {"base": [success(args.base)], "SFT": [success(args.sft)],
              f"SFT + GRPO ({len(args.grpo)} seeds)": [success(run) for run in args.grpo]}
    print(table(args.title, stages))
    if args.plot:
        plot(args.title, stages, args.plot)
        print(f"plot: {args.plot}")
    return stages


if __name__ == "__main__":
    print(json.dumps(main()))

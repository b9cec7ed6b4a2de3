"""What a training run shows: the reward curve as a PNG and the held-out evaluations as a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RUN_CONFIG = "config.yaml"  # in a run folder: the resolved settings the run went on with


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_rewards(out: Path) -> Path | None:
    """`out/reward.png`: the training reward per step (mean, ± std band, success rate) and held-out evaluations."""
    steps = [m for m in read_jsonl(out / "metrics.jsonl") if m.get("reward_mean") is not None]
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    x = [m["step"] for m in steps]
    mean = [m["reward_mean"] for m in steps]
    std = [m.get("reward_std") or 0.0 for m in steps]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(x, mean, marker="o", color="tab:blue", label="training reward (mean over rollouts)")
    ax.fill_between(x, [a - s for a, s in zip(mean, std, strict=True)], [a + s for a, s in zip(mean, std, strict=True)],
                    color="tab:blue", alpha=0.15, label="± std")
    evals = [e for e in read_jsonl(out / "eval.jsonl") if e.get("reward_mean") is not None]
    if evals:
        ax.plot([e["step"] for e in evals], [e["reward_mean"] for e in evals], marker="s", linestyle="--",
                color="tab:orange", label=f"held-out reward ({evals[0].get('suite', '')})")
    ax.set_xlabel("training step")
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(out.name)
    fig.tight_layout()
    path = out / "reward.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def print_eval(out: Path, console: Console) -> None:
    """The held-out evaluations of the run, one row each."""
    evals = read_jsonl(out / "eval.jsonl")
    if not evals:
        return
    keys = sorted({k for e in evals for k in e if k.startswith("reward/")})
    table = Table(title=f"held-out evaluation: {evals[0].get('suite', '')}")
    for column in ["when", "step", "rollouts", "reward", "success", *[k.removeprefix("reward/") for k in keys]]:
        table.add_column(column, justify="left" if column == "when" else "right")
    for e in evals:
        table.add_row(str(e["when"]), str(e["step"]), str(e["rollouts"]), _fmt(e.get("reward_mean")),
                      _fmt(e.get("success")), *[_fmt(e.get(k)) for k in keys])
    console.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

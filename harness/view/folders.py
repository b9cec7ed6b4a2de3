"""What `gymbox view PATH` opens: a store, a `gymbox train` run folder or a `gymbox eval` folder; run plots as SVG."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gymbox.harness.store import SEGMENT, StoreError
from gymbox.harness.train_report import RUN_CONFIG, read_jsonl


@dataclass(frozen=True)
class Opened:
    """The folder's kind ("run", "eval" or "store"), the folder, and its trajectory store."""

    kind: str
    root: Path
    store: Path


def open_path(path: str | Path) -> Opened:
    """Recognize what PATH is; a StoreError that says what was expected when it is none of them."""
    path = Path(path)
    if path.is_file():
        return Opened("store", path.parent, path)
    if not path.is_dir():
        raise StoreError(f"{path} does not exist: give a trajectory store, a `gymbox train` output folder or a "
                         "`gymbox eval` output folder")
    if (path / "summary.json").is_file():
        return Opened("eval", path, path / "trajectories")
    if (path / "metrics.jsonl").is_file() or (path / "eval.jsonl").is_file():
        return Opened("run", path, path / "trajectories")
    if any(path.glob(SEGMENT.replace("{:06d}", "*"))) or not (path / "trajectories").is_dir():
        return Opened("store", path, path)
    return Opened("store", path, path / "trajectories")


def run_config(root: Path) -> dict[str, Any]:
    """A `gymbox train` folder's settings (its config.yaml); empty when it has none or it does not parse."""
    try:
        data = yaml.safe_load((root / RUN_CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


# What the run page plots: title -> metric keys (those a run has; `reward/*` components are added to "reward").
PLOTS: dict[str, tuple[str, ...]] = {
    "reward": ("reward_mean",),
    "success": ("success",),
    "zero-variance groups": ("zero_std_fraction",),
    "KL": ("kl", "mismatch_kl"),
    "clip fraction": ("clip_fraction", "is_truncated_fraction"),
    "entropy": ("entropy",),
    "tokens per second": ("tokens_per_s",),
    "seconds per phase": ("rollout_s", "update_s", "sync_s", "seconds"),
}


def metrics(root: Path) -> list[dict[str, Any]]:
    return read_jsonl(root / "metrics.jsonl")


def evaluations(root: Path) -> list[dict[str, Any]]:
    return read_jsonl(root / "eval.jsonl")


def plot_names(rows: list[dict[str, Any]]) -> list[str]:
    """The plots this run has data for."""
    present = {k for r in rows for k, v in r.items() if isinstance(v, int | float)}
    return [name for name, keys in PLOTS.items() if present & {*keys, *_components(rows, name)}]


def _components(rows: list[dict[str, Any]], name: str) -> list[str]:
    return sorted({k for r in rows for k in r if k.startswith("reward/")}) if name == "reward" else []


def plot_svg(root: Path, name: str) -> str:
    """One plot of the run's metrics over steps, as SVG text (held-out evaluations on the reward and success)."""
    if name not in PLOTS:
        raise KeyError(name)
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = metrics(root)
    fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=100)
    for key in (*PLOTS[name], *_components(rows, name)):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=key)
        if key == "reward_mean":
            std = [r.get("reward_std") or 0.0 for r in rows if isinstance(r.get(key), int | float)]
            ax.fill_between(xs, [y - s for y, s in zip(ys, std, strict=True)],
                            [y + s for y, s in zip(ys, std, strict=True)], alpha=0.15)
    held = {"reward": "reward_mean", "success": "success"}.get(name)
    evals = [e for e in evaluations(root) if isinstance(e.get(held or ""), int | float)]
    if held and evals:
        ax.plot([e["step"] for e in evals], [e[held] for e in evals], marker="s", linestyle="--",
                label=f"held-out {held}")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    return out.getvalue()


def eval_summary(root: Path) -> dict[str, Any] | None:
    """An eval folder's `summary.json` (its pass@k tables by category), or None."""
    path = root / "summary.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise StoreError(f"{path} is not JSON ({err}); it is written by `gymbox eval`") from None

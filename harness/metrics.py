"""Evaluation metrics over trajectories: the unbiased pass@k estimator and per-category summaries.

pass@k follows Chen et al. (2021, "Evaluating Large Language Models Trained on Code"): with n samples of a task
of which c succeed, pass@k = 1 - C(n-c, k) / C(n, k), the probability that at least one of k samples drawn
without replacement succeeds; computed as a product to stay exact for large n. Rollouts masked for
infrastructure errors are not samples: they are counted apart and left out of n.

pass^k is τ²-bench's reliability metric (Yao et al. 2024, "τ-bench"): the probability that k samples drawn without
replacement all succeed, C(c, k) / C(n, k), averaged over tasks. Reports show it for τ²-bench categories.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from gymbox.environments.records import Trajectory


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with `n` samples of which `c` succeeded."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k for one task with `n` samples of which `c` succeeded: C(c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"pass^{k} needs at least {k} samples per task, got {n}")
    return math.comb(c, k) / math.comb(n, k)


@dataclass
class Row:
    """Figures for one category (or all tasks)."""

    name: str
    tasks: int = 0
    episodes: int = 0
    masked: int = 0
    pass_at: dict[int, float] = field(default_factory=dict)
    pass_hat: dict[int, float] = field(default_factory=dict)  # pass^k
    mean_reward: float | None = None
    success_rate: float | None = None


@dataclass
class Summary:
    ks: list[int]
    overall: Row
    categories: list[Row]
    incomplete: list[str] = field(default_factory=list)  # tasks with fewer than max(ks) valid samples

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_markdown(self) -> str:
        hats = self.ks if any(row.name.startswith("tau2-") for row in self.categories) else []
        head = ["category", "tasks", "episodes", "masked", *(f"pass@{k}" for k in self.ks),
                *(f"pass^{k}" for k in hats), "mean reward"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in [*self.categories, self.overall]:
            cells = [f"**{row.name}**" if row is self.overall else row.name, str(row.tasks), str(row.episodes),
                     str(row.masked), *(_pct(row.pass_at.get(k)) for k in self.ks),
                     *(_pct(row.pass_hat.get(k)) for k in hats), _num(row.mean_reward)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.incomplete:
            lines.append(f"\n{len(self.incomplete)} tasks had fewer than {max(self.ks)} valid samples and are "
                         "left out of pass@k for the larger k.")
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def succeeded(trajectory: Trajectory, signal: str = "success") -> bool:
    return trajectory.signals.get(signal, 0.0) >= 1.0


def summarize(trajectories: Iterable[Trajectory], ks: Sequence[int] = (1,), *, signal: str = "success") -> Summary:
    """pass@k for each k, mean reward and success rate, per task category and overall."""
    ks = sorted(set(ks))
    by_task: dict[str, list[Trajectory]] = defaultdict(list)
    for trajectory in trajectories:
        by_task[trajectory.task.id].append(trajectory)
    categories: dict[str, list[str]] = defaultdict(list)
    for task_id, runs in by_task.items():
        categories[runs[0].task.category or "(none)"].append(task_id)
    incomplete = sorted(t for t, runs in by_task.items() if sum(not r.masked for r in runs) < max(ks))
    rows = [_row(name, [by_task[t] for t in tasks], ks, signal) for name, tasks in sorted(categories.items())]
    overall = _row("all", list(by_task.values()), ks, signal)
    return Summary(ks=ks, overall=overall, categories=rows, incomplete=incomplete)


def _row(name: str, tasks: list[list[Trajectory]], ks: list[int], signal: str) -> Row:
    valid = [[r for r in runs if not r.masked] for runs in tasks]
    episodes = [r for runs in valid for r in runs]
    row = Row(name=name, tasks=len(tasks), episodes=len(episodes), masked=sum(len(t) for t in tasks) - len(episodes))
    for k in ks:
        scores = [pass_at_k(len(runs), sum(succeeded(r, signal) for r in runs), k) for runs in valid if len(runs) >= k]
        if scores:
            row.pass_at[k] = sum(scores) / len(scores)
        hats = [pass_hat_k(len(runs), sum(succeeded(r, signal) for r in runs), k) for runs in valid if len(runs) >= k]
        if hats:
            row.pass_hat[k] = sum(hats) / len(hats)
    rewards = [r.reward for r in episodes if r.reward is not None]
    row.mean_reward = sum(rewards) / len(rewards) if rewards else None
    row.success_rate = sum(succeeded(r, signal) for r in episodes) / len(episodes) if episodes else None
    return row

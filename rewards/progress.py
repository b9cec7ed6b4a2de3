"""Per-turn rewards: grounding and progress (SPA-RL, spec section 3), dense and sparse score rewards (section 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gymbox.environments.records import Trajectory, Turn
from gymbox.rewards.outcome import success

GROUNDED = 0.5  # g_t of an executable action
NOTHING_HAPPENS = "Nothing happens"  # ALFWorld's answer to an action it could not execute
# Signals that measure how far an episode has got, in the order they are looked for. The progress estimator
# prefers a normalised progress (so that Σ c_t is the final progress, as SPA's estimator is trained to give);
# dense rewards prefer the environment's score, as in the Practitioner's Guide.
PROGRESS_KEYS = ("progress", "score", "checks_passed")
SCORE_KEYS = ("score", "progress", "checks_passed")


def accepted(turn: Turn) -> bool:
    """Whether the environment accepted the turn's action: `valid_action` when reported, else it was parsed,
    raised no format error, and the answer is not "Nothing happens"."""
    if turn.action is None or turn.parse_error is not None:
        return False
    if "valid_action" in turn.signals:
        return turn.signals["valid_action"] >= 1.0
    if turn.signals.get("format_error", 0.0) > 0.0:
        return False
    return not any((m.content or "").strip().startswith(NOTHING_HAPPENS) for m in turn.observation)


def grounding(trajectory: Trajectory) -> list[float]:
    """g_t = 0.5 when turn t's action was accepted, else 0."""
    return [GROUNDED if accepted(turn) else 0.0 for turn in trajectory.turns]


def signal_series(trajectory: Trajectory, keys: Sequence[str]) -> list[float] | None:
    """The first of `keys` that any turn reports, per turn; a turn that does not report it keeps the last value
    (0 before the first report). None when no turn reports any of the keys."""
    key = next((k for k in keys if any(k in turn.signals for turn in trajectory.turns)), None)
    if key is None:
        return None
    series, last = [], 0.0
    for turn in trajectory.turns:
        last = float(turn.signals.get(key, last))
        series.append(last)
    return series


def increments(series: Sequence[float]) -> list[float]:
    """x_t - x_{t-1}, with x_{-1} = 0."""
    return [x - (series[t - 1] if t else 0.0) for t, x in enumerate(series)]


@runtime_checkable
class ProgressEstimator(Protocol):
    """Estimates how much each turn advanced the task: c_t per turn (one value per turn), or None when it cannot
    say anything about this trajectory. SPA-RL's learned estimator is one; `EnvProgress` needs no training."""

    def estimate(self, trajectory: Trajectory) -> list[float] | None: ...


@dataclass(frozen=True)
class EnvProgress:
    """The environment-native estimator: c_t = p_t - p_{t-1} of the environment's own progress signal (task
    progress, score deltas, checks newly passing), so that Σ_t c_t is the final progress."""

    keys: tuple[str, ...] = PROGRESS_KEYS

    def estimate(self, trajectory: Trajectory) -> list[float] | None:
        series = signal_series(trajectory, self.keys)
        return None if series is None else increments(series)


def spa_rewards(trajectory: Trajectory, estimator: ProgressEstimator | None = None) -> list[float] | None:
    """SPA-RL's per-turn reward r_t = c_t + g_t; None when the estimator has nothing for this trajectory."""
    progress = (estimator or EnvProgress()).estimate(trajectory)
    if progress is None:
        return None
    if len(progress) != len(trajectory.turns):
        raise ValueError(f"the progress estimator gave {len(progress)} values for {len(trajectory.turns)} turns")
    return [c + g for c, g in zip(progress, grounding(trajectory), strict=True)]


def dense_rewards(trajectory: Trajectory, keys: Sequence[str] = SCORE_KEYS) -> list[float] | None:
    """interm_t / N with interm_t = score_t - score_{t-1} and N the number of positive interm_t if the episode was
    won, else 1 (N >= 1). None when the environment reports no score."""
    series = signal_series(trajectory, keys)
    if series is None:
        return None
    interm = increments(series)
    won = success(trajectory) == 1.0
    n = max(1, sum(1 for x in interm if x > 0)) if won else 1
    return [x / n for x in interm]


def sparse_rewards(trajectory: Trajectory) -> list[float] | None:
    """The sparse alternative: 0 at every turn but the last, which gets success (1/0); None with no success signal."""
    won = success(trajectory)
    if won is None:
        return None
    return [0.0] * (len(trajectory.turns) - 1) + [won] if trajectory.turns else []

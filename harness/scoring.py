"""Rewards attached to trajectories by the harness; `rescore` recomputes them offline from the recorded signals.

With a reward specification (`rewards/spec.py`, a YAML file) its components, total and any error are recorded.
Without one the reward is the episode's outcome: the environment's `success` signal when it reports one, else
the environment's own reward, else 0. Rollouts masked for infrastructure errors get no reward at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from gymbox.harness.records import Trajectory

RewardFn = Callable[[Trajectory], dict[str, float | None]]


def outcome(trajectory: Trajectory) -> dict[str, float | None]:
    """The `outcome` component: success if reported, else the environment's reward, else 0."""
    if "success" in trajectory.signals:
        return {"outcome": float(trajectory.signals["success"])}
    env = trajectory.rewards.get("env")
    return {"outcome": float(env) if env is not None else 0.0}


@functools.cache
def load_spec(path: str) -> Any:
    """A reward specification file, read and checked once per process."""
    from gymbox.rewards.spec import RewardSpec

    return RewardSpec.load(path)


def score(trajectory: Trajectory, reward: RewardFn = outcome, *, total: str = "outcome",
          spec: str | None = None) -> Trajectory:
    """Set `rewards` (keeping the environment's own `env` component) and `reward` = the `total` component, or
    apply the reward specification file `spec` (a component that fails masks the rollout with its error)."""
    if spec is not None:
        scored = load_spec(spec).apply(trajectory)
        trajectory.rewards, trajectory.reward, trajectory.error = scored.rewards, scored.reward, scored.error
        return trajectory
    if trajectory.masked:
        trajectory.reward = None
        return trajectory
    components = reward(trajectory)
    trajectory.rewards = {**{k: v for k, v in trajectory.rewards.items() if k == "env"}, **components}
    trajectory.reward = components.get(total)
    return trajectory

"""Rewards attached to trajectories by the harness; `rescore` recomputes them offline from the recorded signals.

The default reward is the episode's outcome: the environment's `success` signal when it reports one, else the
environment's own reward, else 0. Rollouts masked for infrastructure errors get no reward at all.
"""

from __future__ import annotations

from collections.abc import Callable

from gymbox.harness.records import Trajectory

RewardFn = Callable[[Trajectory], dict[str, float | None]]


def outcome(trajectory: Trajectory) -> dict[str, float | None]:
    """The `outcome` component: success if reported, else the environment's reward, else 0."""
    if "success" in trajectory.signals:
        return {"outcome": float(trajectory.signals["success"])}
    env = trajectory.rewards.get("env")
    return {"outcome": float(env) if env is not None else 0.0}


def score(trajectory: Trajectory, reward: RewardFn = outcome, *, total: str = "outcome") -> Trajectory:
    """Set `rewards` (keeping the environment's own `env` component) and `reward` = the `total` component."""
    if trajectory.masked:
        trajectory.reward = None
        return trajectory
    components = reward(trajectory)
    trajectory.rewards = {**{k: v for k, v in trajectory.rewards.items() if k == "env"}, **components}
    trajectory.reward = components.get(total)
    return trajectory

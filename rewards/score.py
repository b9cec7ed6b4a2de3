"""Scoring a trajectory: the one place rewards are attached, by a reward specification or by the outcome.

With a specification file (`rewards/spec.py`, YAML) its components, total, per-turn rewards and any error are
recorded; without one the specification is the outcome alone (`rewards/outcome.py`). Rollouts masked for
infrastructure errors get no reward at all. The harness scores each rollout once, when its last try ends;
`gymbox rescore` applies the same function offline to the recorded signals.
"""

from __future__ import annotations

import functools

from gymbox.environments.records import Trajectory
from gymbox.rewards.spec import ComponentSpec, RewardSpec

# No specification: the reward is the episode's outcome.
OUTCOME = RewardSpec(components=[ComponentSpec(fn="outcome")])


@functools.cache
def load_spec(path: str | None) -> RewardSpec:
    """The reward specification in `path` (read and checked once per process), or the outcome when None."""
    return RewardSpec.load(path) if path is not None else OUTCOME


def score(trajectory: Trajectory, spec: str | None = None, *, step: int | None = None) -> Trajectory:
    """A copy of `trajectory` scored by the specification file `spec` (default: the outcome) at training `step`;
    a component that fails masks the rollout with its error."""
    return load_spec(spec).apply(trajectory, step=step)

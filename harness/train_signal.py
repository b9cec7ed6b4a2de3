"""From scored trajectories to learning signal: rewards, advantages (scalar or per turn), and learner samples."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gymbox.agent.learner.batch import Sample, sample_of
from gymbox.environments.records import Trajectory
from gymbox.rewards.advantages import get_estimator
from gymbox.rewards.spec import RewardSpec
from gymbox.rewards.turns import turn_advantages


@dataclass
class Signal:
    """A step's samples and the figures describing its rewards."""

    samples: list[Sample]
    metrics: dict[str, Any] = field(default_factory=dict)


def learnable(t: Trajectory) -> bool:
    """Scored and not masked: infrastructure failures and rewards that do not apply are left out, never scored 0."""
    return not t.masked and t.reward is not None


def reward_metrics(trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """Mean and std of the reward, success rate and each component's mean over the usable rollouts."""
    used = [t for t in trajectories if learnable(t)]
    rewards = [float(t.reward) for t in used if t.reward is not None]
    out: dict[str, Any] = {"rollouts": len(trajectories), "masked": sum(t.masked for t in trajectories),
                           "reward_mean": statistics.fmean(rewards) if rewards else None,
                           "reward_std": statistics.pstdev(rewards) if rewards else None,
                           "success": statistics.fmean(t.signals.get("success", 0.0) >= 1 for t in used)
                           if used else None}
    keys = sorted({k for t in used for k in t.rewards if k not in ("total", "env")})
    for key in keys:
        values = [t.rewards[key] for t in used if t.rewards.get(key) is not None]
        out[f"reward/{key}"] = statistics.fmean(values) if values else None
    return out


def advantages(trajectories: Sequence[Trajectory], *, estimator: str, turn_level: bool = False,
               gamma: float = 1.0, spec: RewardSpec | None = None) -> tuple[list[float | list[float]], float]:
    """Each trajectory's advantage (a float, or one per turn with `turn_level`) and the zero-std group fraction.

    Rollouts that are not `learnable` are masked: they get 0 and stay out of every statistic. Turn-level
    advantages start from the trajectories' per-turn rewards (`turn_rewards`), else from the reward at the last turn.
    The multi-reward estimators (gdpo, dvao) combine the components of `spec`, the reward spec that scored the
    trajectories, as they enter its total: gated (0 behind a closed gate) and weighted by its weights.
    """
    n = len(trajectories)
    valid = torch.tensor([learnable(t) for t in trajectories])
    group_names = {g: i for i, g in enumerate(dict.fromkeys(t.group for t in trajectories))}
    groups = torch.tensor([group_names[t.group] for t in trajectories])
    if turn_level:
        return _turn_level(trajectories, valid, groups, gamma)
    fn = get_estimator(estimator)
    kwargs: dict[str, Any] = {}
    if estimator in ("gdpo", "dvao"):
        if spec is None:
            raise ValueError(f"{estimator} combines the components of a reward spec: pass the spec that scored the "
                             "trajectories")
        width = len(spec.components)
        rewards = torch.tensor([[_num(v) for v in spec.contributions(t.rewards, truncated=t.truncated)]
                                if learnable(t) else [math.nan] * width for t in trajectories], dtype=torch.float64)
        kwargs["weights"] = torch.tensor(spec.weights, dtype=torch.float64)
    else:
        rewards = torch.tensor([_num(t.reward) for t in trajectories], dtype=torch.float64)
    if estimator == "unlikeliness":
        kwargs["logprobs"] = torch.tensor([_mean_logprob(t) for t in trajectories], dtype=torch.float64)
    result = fn(rewards, groups, valid, **kwargs)
    values = result.values.tolist() if n else []
    return [float(v) for v in values], result.zero_std_fraction


def _turn_level(trajectories: Sequence[Trajectory], valid: torch.Tensor, groups: torch.Tensor,
                gamma: float) -> tuple[list[float | list[float]], float]:
    per_turn = [t.turn_rewards if t.turn_rewards is not None else _at_last_turn(t) for t in trajectories]
    lengths = torch.tensor([len(t.turns) for t in trajectories])
    width = max(1, int(lengths.max()) if len(lengths) else 1)
    padded = torch.zeros((len(trajectories), width), dtype=torch.float64)
    for i, rewards in enumerate(per_turn):
        padded[i, :len(rewards)] = torch.tensor(rewards, dtype=torch.float64)
    result = turn_advantages(padded, lengths, groups, valid, gamma=gamma)
    values = [row[: int(n)] for row, n in zip(result.values.tolist(), lengths, strict=True)]
    return values, result.zero_std_fraction


def _at_last_turn(t: Trajectory) -> list[float]:
    """The whole reward at the last turn: the per-turn form of a reward that has none of its own."""
    return [0.0] * (len(t.turns) - 1) + [float(t.reward or 0.0)] if t.turns else []


def samples_of(trajectories: Sequence[Trajectory], values: Sequence[float | list[float]], *,
               skip_zero: bool) -> list[Sample]:
    """Learner samples of the usable trajectories; with `skip_zero`, those whose advantage is 0 at every turn are
    left out (they add no gradient, and in a token mean they would only dilute the others, as DAPO notes)."""
    out = []
    for t, value in zip(trajectories, values, strict=True):
        if not learnable(t) or not t.turns:
            continue
        flat = value if isinstance(value, list) else [value]
        if skip_zero and all(v == 0.0 for v in flat):
            continue
        out.append(sample_of(t, value))
    return out


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _mean_logprob(t: Trajectory) -> float:
    values = [lp for turn in t.turns for lp, m in zip(turn.logprobs, turn.loss_mask, strict=True)
              if m and lp is not None]
    return statistics.fmean(values) if values else 0.0

"""Training SPA-RL's progress estimator from recorded trajectories: Σ_t c_t regresses (MSE) onto the final reward."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gymbox.environments.records import Trajectory
from gymbox.rewards.progress_model import ProgressModel, default_device

# (trajectories done, trajectories in the run, running MSE of this epoch); called after every trajectory.
OnStep = Callable[[int, int, float], None]


class ProgressTrainError(ValueError):
    """Training cannot start as asked: no usable trajectories, a missing model, a bad option."""


@dataclass(frozen=True)
class ProgressTrainConfig:
    """Defaults from the SPA-RL reference: AdamW, lr 3e-6, 1 epoch."""

    epochs: int = 1
    lr: float = 3e-6
    batch_size: int = 1  # trajectories per optimizer step: each is run alone, gradients are accumulated
    max_length: int | None = None  # longer trajectories are skipped (never cut); default: the model's context
    holdout: float = 0.0  # fraction of the usable trajectories kept out of training, to measure generalisation
    seed: int = 0
    device: str | None = None  # default: cuda when available

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ProgressTrainError(f"epochs must be at least 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ProgressTrainError(f"lr must be a positive number, got {self.lr}")
        if self.batch_size < 1:
            raise ProgressTrainError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 1:
            raise ProgressTrainError(f"max_length must be at least 1, got {self.max_length}")
        if not 0.0 <= self.holdout < 1.0:
            raise ProgressTrainError(f"holdout is a fraction in [0, 1), got {self.holdout}")


@dataclass
class TrainReport:
    """What a training run did; MSE is of Σ_t c_t against the trajectory's reward."""

    out: Path
    trained: int
    held_out: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    train_mse_before: float = math.nan
    train_mse_after: float = math.nan
    holdout_mse_before: float | None = None
    holdout_mse_after: float | None = None
    optimizer_steps: int = 0
    seconds: float = 0.0


def usable(trajectories: Sequence[Trajectory]) -> tuple[list[Trajectory], dict[str, int]]:
    """Trajectories that can be learned from, and how many of the others were skipped, by reason: masked rollouts
    (infrastructure failures are never learned from) and rollouts without a reward."""
    kept, skipped = [], {"masked": 0, "no reward": 0}
    for t in trajectories:
        if t.masked:
            skipped["masked"] += 1
        elif t.reward is None:
            skipped["no reward"] += 1
        else:
            kept.append(t)
    return kept, skipped


def split(trajectories: Sequence[Trajectory], holdout: float, seed: int) -> tuple[list[Trajectory], list[Trajectory]]:
    """(train, held out): a seeded shuffle, with at least one trajectory on each side when holdout > 0."""
    order = list(trajectories)
    random.Random(seed).shuffle(order)
    if holdout <= 0:
        return order, []
    if len(order) < 2:
        raise ProgressTrainError(f"a holdout needs at least 2 usable trajectories, there are {len(order)}")
    n = min(len(order) - 1, max(1, round(holdout * len(order))))
    return order[n:], order[:n]


def mse(model: ProgressModel, trajectories: Sequence[Trajectory]) -> float:
    """Mean of (Σ_t c_t - R)² over the trajectories."""
    model.eval()
    with torch.inference_mode():
        errors = [(model.turn_values(t).sum().item() - float(t.reward or 0.0)) ** 2 for t in trajectories]
    return sum(errors) / len(errors) if errors else math.nan


def fit(model: ProgressModel, trajectories: Sequence[Trajectory], config: ProgressTrainConfig,
        on_step: OnStep | None = None) -> int:
    """AdamW on (Σ_t c_t - R)², averaged over each batch of `batch_size` trajectories; returns the optimizer steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    rng = random.Random(config.seed)
    total, done, steps = config.epochs * len(trajectories), 0, 0
    model.train()
    for _ in range(config.epochs):
        order = list(trajectories)
        rng.shuffle(order)
        running, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            for t in batch:
                error = model.turn_values(t).sum() - float(t.reward or 0.0)
                # Divided by the batch's size so that accumulated gradients are those of the batch mean.
                (error.square() / len(batch)).backward()
                running, seen, done = running + error.item() ** 2, seen + 1, done + 1
                if on_step is not None:
                    on_step(done, total, running / seen)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
    return steps


def train_progress(records: Sequence[Trajectory], model_dir: str | Path, out: str | Path,
                   config: ProgressTrainConfig | None = None, on_step: OnStep | None = None, *,
                   store: str | Path = "the trajectories given") -> TrainReport:
    """Train a progress estimator on the LM at `model_dir` from `records` (read from `store`) and save it to `out`.

    The trajectories are checked before any model is loaded; ProgressTrainError says what is wrong.
    """
    config = config or ProgressTrainConfig()
    began = time.monotonic()
    if not records:
        raise ProgressTrainError(f"the trajectory store {store} holds no trajectories")
    kept, skipped = usable(records)
    if not kept:
        raise ProgressTrainError(f"none of the {len(records)} trajectories in {store} can be learned from: "
                                 f"{skipped['masked']} masked, {skipped['no reward']} without a reward "
                                 "(score them first, e.g. `gymbox rescore --reward SPEC`)")
    max_length = config.max_length or _context(model_dir)
    skipped["too long"] = sum(len(t.token_ids) > max_length for t in kept)
    kept = [t for t in kept if len(t.token_ids) <= max_length]
    if not kept:
        raise ProgressTrainError(f"all {skipped['too long']} usable trajectories are longer than {max_length} tokens")
    train, held = split(kept, config.holdout, config.seed)

    torch.manual_seed(config.seed)
    model = ProgressModel.from_base(model_dir).to(config.device or default_device())
    report = TrainReport(out=Path(out), trained=len(train), held_out=len(held), skipped=skipped)
    report.train_mse_before = mse(model, train)
    report.holdout_mse_before = mse(model, held) if held else None
    report.optimizer_steps = fit(model, train, config, on_step)
    report.train_mse_after = mse(model, train)
    report.holdout_mse_after = mse(model, held) if held else None
    report.seconds = time.monotonic() - began
    model.save(out, {"base_model": str(model_dir), "max_length": max_length, "store": str(store),
                     "config": {k: v for k, v in vars(config).items() if k != "device"},
                     "report": {k: v for k, v in vars(report).items() if k != "out"}})
    return report


def _context(model_dir: str | Path) -> int:
    """The LM's context length, from its config alone (no weights are read)."""
    from transformers import AutoConfig

    try:
        lm_config = AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise ProgressTrainError(f"cannot read a causal LM at {model_dir}: {exc}") from exc
    return int(getattr(lm_config, "max_position_embeddings", 0) or 1 << 30)

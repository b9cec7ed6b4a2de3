"""Demonstrations for `gymbox sft`: stored trajectories filtered into samples, a validation slice, step batches."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from gymbox.agent.learner.batch import Sample, sample_of
from gymbox.environments.records import Trajectory
from gymbox.harness.metrics import succeeded
from gymbox.harness.sft_config import TEST_SPLIT, DemoFilter, SFTConfig
from gymbox.harness.store import TrajectoryStore


class NoDemonstrations(ValueError):
    """The stores hold nothing the filters let through (or too little to hold a validation slice out)."""


@dataclass
class Demonstrations:
    """The samples kept (split into train and validation by task) and why the others were left out."""

    train: list[Sample]
    validation: list[Sample]
    kept_by_env: Counter[str] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)

    @property
    def train_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.train)


def why_not(t: Trajectory, f: DemoFilter, max_tokens: int) -> str | None:
    """The reason a trajectory is not a demonstration under `f`, or None when it is one."""
    if t.masked:
        return "masked (infrastructure error)"
    if t.task.split not in f.splits:
        return f"{TEST_SPLIT} split" if t.task.split == TEST_SPLIT else f"split {t.task.split or '(none)'!r}"
    if f.envs is not None and not _env_names(t) & set(f.envs):
        return f"environment {t.provenance.env}"
    if f.successful_only and not succeeded(t):
        return "not successful"
    if f.min_reward is not None and (t.reward is None or t.reward < f.min_reward):
        return f"reward below {f.min_reward}"
    if not any(m for turn in t.turns for m in turn.loss_mask):
        return "no policy tokens"
    if len(t.prompt_ids) == 0:
        return "no prompt tokens"
    if len(t.prompt_ids) + sum(len(turn.token_ids) for turn in t.turns) > max_tokens:
        return f"longer than max_tokens {max_tokens}"
    return None


def _env_names(t: Trajectory) -> set[str]:
    """The names a filter may use for the trajectory's environment: its id, with and without the version."""
    return {t.task.env, t.provenance.env, t.task.env.partition("@")[0], t.provenance.env.partition("@")[0]}


def select(trajectories: Iterable[Trajectory], f: DemoFilter, max_tokens: int) -> tuple[list[Trajectory],
                                                                                            Counter[str]]:
    """The demonstrations among `trajectories` (a later record with the same id replaces an earlier one)."""
    latest: dict[str, Trajectory] = {}
    for t in trajectories:
        latest[t.id] = t
    kept, left_out = [], Counter[str]()
    for t in latest.values():
        reason = why_not(t, f, max_tokens)
        if reason is None:
            kept.append(t)
        else:
            left_out[reason] += 1
    return kept, left_out


def load(config: SFTConfig) -> Demonstrations:
    """Read every store, filter, and hold out `validation_fraction` of the tasks (seeded): a task's demonstrations
    are all on one side, so validation loss measures tasks the model did not learn from."""
    records = 0
    kept: list[Trajectory] = []
    left_out: Counter[str] = Counter()
    for path in config.stores:
        if not path.exists():
            raise NoDemonstrations(f"no trajectory store at {path}: make one with `gymbox collect` (or `gymbox "
                                   "eval`), or fix the path in stores")
        stored = list(TrajectoryStore(path).iter())
        records += len(stored)
        chosen, why = select(stored, config.data, config.max_tokens)  # ids are unique within a store only
        kept += chosen
        left_out.update(why)
    if not kept:
        reasons = ", ".join(f"{n} {why}" for why, n in left_out.most_common()) or "the stores are empty"
        raise NoDemonstrations(f"no demonstrations in {', '.join(map(str, config.stores))} pass the filters "
                               f"({records} records: {reasons}); loosen data: (splits, envs, successful_only, "
                               "min_reward) or max_tokens")
    tasks = sorted({t.task.id for t in kept})
    held = _held_out(tasks, config.validation_fraction, config.seed)
    if config.validation_fraction > 0 and len(held) == len(tasks):
        raise NoDemonstrations(f"the demonstrations cover {len(tasks)} task(s): too few to hold "
                               f"{config.validation_fraction:.0%} out and train on the rest; add demonstrations or "
                               "set validation_fraction: 0")
    train = [sample_of(t, 1.0) for t in kept if t.task.id not in held]
    validation = [sample_of(t, 1.0) for t in kept if t.task.id in held]
    return Demonstrations(train=train, validation=validation, left_out=left_out,
                          kept_by_env=Counter(t.provenance.env for t in kept))


def _held_out(tasks: list[str], fraction: float, seed: int) -> set[str]:
    if fraction <= 0:
        return set()
    order = list(tasks)
    random.Random(seed).shuffle(order)
    return set(order[:max(1, math.ceil(fraction * len(order)))])


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return math.ceil(samples / batch_size)


def batch_at(samples: list[Sample], batch_size: int, step: int, seed: int) -> list[Sample]:
    """The demonstrations of optimizer step `step` (0-based): each epoch is a fresh seeded shuffle, cut into
    batches of `batch_size` (the last one smaller). A function of the step alone, so a resumed run sees the same."""
    per_epoch = steps_per_epoch(len(samples), batch_size)
    epoch, index = divmod(step, per_epoch)
    order = list(range(len(samples)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [samples[i] for i in order[index * batch_size:(index + 1) * batch_size]]

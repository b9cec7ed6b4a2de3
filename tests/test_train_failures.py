"""A training step whose rollouts all failed for infrastructure reasons stops the run: it is not a step with
"no learning signal", and nothing is learned or checkpointed from it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gymbox.environments.records import EpisodeError, Provenance, Trajectory
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.train import RolloutsFailed, Trainer
from gymbox.harness.train_config import TrainConfig
from gymbox.tasks.spec import TaskSpec


class KilledWorkers:
    """Rollouts whose every episode ended with its worker gone (as when Ray's memory monitor kills them)."""

    policy_info: ClassVar[dict[str, Any]] = {}

    async def run(self, tasks: list[TaskSpec], group_size: int, *, base_seed: int, **_: Any) -> list[Trajectory]:
        return [Trajectory(id=f"{t.id}#{i}", task=t, group=t.id, sample=i, base_seed=base_seed, seed=i,
                           provenance=Provenance(env=t.env, runtime="local", policy="p"),
                           error=EpisodeError(code="transport", message="the worker died"))
                for t in tasks for i in range(group_size)]


def test_a_step_of_only_infrastructure_failures_stops_the_run(tmp_path: Path) -> None:
    config = TrainConfig.model_validate({"suite": "echo-demo:train", "out": str(tmp_path / "run"), "steps": 3,
                                         "tasks_per_step": 2, "group_size": 2, "tracking": []})
    trainer = Trainer(config)
    writer = TrajectoryStore(tmp_path / "run" / "trajectories").writer()
    with pytest.raises(RolloutsFailed, match=r"step 1: all 4 rollouts ended in infrastructure errors \(transport"):
        asyncio.run(trainer._step(KilledWorkers(), learner=None, writer=writer, step=0))  # type: ignore[arg-type]
    writer.close()
    assert len(list(TrajectoryStore(tmp_path / "run" / "trajectories").iter())) == 4  # kept, for the record
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

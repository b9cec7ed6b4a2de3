"""The Ray harness: episodes on environment-worker actors with a policy actor, dead workers, evaluation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gymbox.agent.spec import PolicySpec
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.evaluate import EvalRun, evaluate, pass_ks
from gymbox.harness.ray_runner import RayRollouts
from gymbox.harness.store import TrajectoryStore
from gymbox.tasks import load_suite
from tests.rayutil import generations_reach

pytestmark = pytest.mark.slow
ECHO = "scripted:gymbox.harness.demo:echo_script"


def scripted(smollm2: Path, **options: object) -> PolicySpec:
    return PolicySpec.parse(ECHO, **options).model_copy(update={"tokenizer": str(smollm2)})


async def test_groups_run_on_workers_with_token_accurate_records(ray_local: None, smollm2: Path) -> None:
    tasks = load_suite("echo-demo").tasks[:4]
    async with RayRollouts(scripted(smollm2), EpisodeConfig(), workers_per_env=2) as rollouts:
        trajectories = await rollouts.run(tasks, 3, base_seed=5)
        pids = {await w.pid.remote() for w in rollouts.pools["echo"].workers}
    assert len(pids) == 2  # two worker processes, not the driver
    assert [t.task.id for t in trajectories] == [t.id for t in tasks for _ in range(3)]
    for trajectory in trajectories:
        assert trajectory.error is None and trajectory.signals["success"] == 1.0 and trajectory.reward == 1.0
        assert trajectory.provenance.env == "echo@v1" and trajectory.provenance.runtime == "local"
        assert trajectory.provenance.packages["gymbox"] and trajectory.prompt_ids
        assert len(trajectory.token_ids) == len(trajectory.loss_mask) == len(trajectory.logprobs)
        assert sum(trajectory.loss_mask) > 0


async def test_a_killed_worker_is_replaced_and_its_episodes_retried(ray_local: None, smollm2: Path) -> None:
    import ray

    tasks = load_suite("echo-demo").tasks[:6]
    spec = scripted(smollm2, delay=0.3)
    async with RayRollouts(spec, EpisodeConfig(retries=1), workers_per_env=2) as rollouts:
        run = asyncio.ensure_future(rollouts.run(tasks, 2))
        await generations_reach(rollouts, 12)  # every episode is in its first turn (each turn takes 0.3 s)
        ray.kill(rollouts.pools["echo"].workers[0])
        trajectories = await run
        replaced = rollouts.replaced
    assert replaced >= 1 and len(trajectories) == 12
    retried = [t for t in trajectories if t.attempts > 1]
    assert retried, "the killed worker's episodes should have been run again"
    assert all(t.failed_attempts[0].code == "worker_died" for t in retried)
    for trajectory in trajectories:  # each retried episode finished on a live worker
        assert trajectory.error is None and trajectory.signals["success"] == 1.0


async def test_a_worker_that_keeps_dying_is_recorded_as_an_infrastructure_failure(ray_local: None,
                                                                                  smollm2: Path) -> None:
    import ray

    task = load_suite("echo-demo").tasks[0]
    async with RayRollouts(scripted(smollm2, delay=2.0), EpisodeConfig(retries=1), workers_per_env=1) as rollouts:
        run = asyncio.ensure_future(rollouts.run([task], 1))
        for asked in (1, 2):  # kill the worker, then its replacement, each in its episode's first turn
            await generations_reach(rollouts, asked)
            ray.kill(rollouts.pools["echo"].workers[0])
        (trajectory,) = await run
    assert trajectory.error is not None and trajectory.error.code == "worker_died" and trajectory.masked
    assert trajectory.attempts == 2 and trajectory.reward is None
    assert [e.code for e in trajectory.failed_attempts] == ["worker_died"]


async def test_evaluate_writes_store_and_summaries(ray_local: None, smollm2: Path, tmp_path: Path) -> None:
    run = EvalRun(suite="echo-demo:test", policy=scripted(smollm2), k=3, out=tmp_path, limit=4)
    summary = await evaluate(run)
    assert summary.ks == [1, 2, 3] and summary.overall.tasks == 4 and summary.overall.episodes == 12
    assert summary.overall.pass_at[3] == 1.0 and summary.overall.mean_reward == 1.0
    stored = list(TrajectoryStore(tmp_path / "trajectories").iter())
    assert len(stored) == 12
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["summary"]["overall"]["pass_at"]["1"] == 1.0 and data["k"] == 3
    assert "| **all** | 4 | 12 |" in (tmp_path / "summary.md").read_text()


def test_pass_ks() -> None:
    assert pass_ks(1) == [1] and pass_ks(4) == [1, 2, 4] and pass_ks(10) == [1, 2, 4, 8, 10]

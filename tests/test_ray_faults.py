"""Faults in a Ray run: a worker that raises, a policy actor that dies (restarted, or the run stops saying why)."""

from __future__ import annotations

import asyncio

import pytest

from gymbox.agent.spec import PolicySpec
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.ray_runner import PolicyDied, RayRollouts
from gymbox.tasks import load_suite
from tests.rayutil import generations_reach

pytestmark = pytest.mark.slow
ECHO = "scripted:gymbox.harness.demo:echo_script"
TASKS = load_suite("echo-demo").tasks


async def test_an_exception_from_a_worker_is_recorded_on_its_rollout_not_raised_through_the_run(
        ray_local: None) -> None:
    config = EpisodeConfig(retries=1)
    # The worker's runtime cannot start its server: a TypeError (an environment variable that is not a string),
    # not the step API's error, escapes from the worker's try.
    async with RayRollouts(PolicySpec.parse(ECHO), config, runtime="process", workers_per_env=1,
                           runtime_options={"env_vars": {"GYMBOX_BROKEN": 1}}) as rollouts:
        broken = await rollouts.run(TASKS[:2], 2)
    # A step API error escaping from the worker (its server exits while starting: Python cannot find its standard
    # library) keeps its own code.
    async with RayRollouts(PolicySpec.parse(ECHO), config, runtime="process", workers_per_env=1,
                           runtime_options={"env_vars": {"PYTHONHOME": "/nonexistent"}}) as rollouts:
        slow = await rollouts.run(TASKS[:1], 1)
    assert len(broken) == 4
    for trajectory in broken:
        assert trajectory.error is not None and trajectory.error.code == "runtime_error" and trajectory.masked
        assert "TypeError" in trajectory.error.message and trajectory.attempts == 2 and trajectory.reward is None
    (trajectory,) = slow
    assert trajectory.error is not None and trajectory.error.code == "transport" and trajectory.masked
    assert "exited with code" in trajectory.error.message and trajectory.attempts == 2


async def test_a_dead_policy_actor_is_restarted_and_the_run_goes_on(ray_local: None) -> None:
    import ray

    async with RayRollouts(PolicySpec.parse(ECHO, delay=0.3), EpisodeConfig(retries=2),
                           workers_per_env=2) as rollouts:
        run = asyncio.ensure_future(rollouts.run(TASKS[:4], 2))
        await generations_reach(rollouts, 8)  # every episode waits on its first turn (each takes 0.3 s)
        dead = rollouts.policy
        ray.kill(dead)
        trajectories = await run
        restarted, restarts = rollouts.policy is not dead, rollouts.policy_restarts
        later = await rollouts.run(TASKS[4:5], 2)  # the next step's episodes run on the new actor from the start
        version = rollouts.policy_info["weights_version"]
    assert restarted and restarts == 1 and version == "0"
    retried = [t for t in trajectories if t.attempts > 1]
    assert retried and all(t.failed_attempts[0].code == "policy_error" for t in retried)
    for trajectory in [*trajectories, *later]:
        assert trajectory.error is None and trajectory.signals["success"] == 1.0
    assert all(t.attempts == 1 for t in later)


async def test_a_policy_that_dies_past_its_restarts_stops_the_run_with_a_clear_error(ray_local: None) -> None:
    import ray

    async with RayRollouts(PolicySpec.parse(ECHO, delay=0.3), EpisodeConfig(retries=2), workers_per_env=1,
                           policy_restarts=0) as rollouts:
        run = asyncio.ensure_future(rollouts.run(TASKS[:1], 1))
        await generations_reach(rollouts, 1)
        ray.kill(rollouts.policy)
        with pytest.raises(PolicyDied, match="policy_restarts=0"):
            await run

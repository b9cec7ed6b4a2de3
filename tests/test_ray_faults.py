"""Faults in a Ray run: a worker that raises, a policy actor or its engine that dies (restarted, or the run stops
saying why)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from gymbox.agent.policy import Sampling
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


@pytest.mark.timeout(900)  # two engine starts
async def test_a_policy_actor_whose_engine_died_is_replaced_serving_the_weights_it_served(ray_local: None,
                                                                                          smollm2: Path) -> None:
    """The actor lives on but its vLLM engine is gone: it is replaced (not left failing every generation), and the
    replacement loads the weights version the run had reached."""
    config = EpisodeConfig(retries=2, sampling=Sampling(max_tokens=8, temperature=0.0))
    async with RayRollouts(PolicySpec.parse(str(smollm2), max_model_len=1024, kv_cache_gib=0.5), config,
                           workers_per_env=1) as rollouts:
        await rollouts.load_weights(str(smollm2), "7")
        first = rollouts.policy
        actor = psutil.Process((await first.info.remote())["pid"])
        engines = [p for p in actor.children(recursive=True) if "EngineCore" in " ".join([p.name(), *p.cmdline()])]
        assert engines, "no vLLM EngineCore process under the policy actor"
        for process in engines:
            process.kill()
        trajectories = await rollouts.run(TASKS[:2], 2)
        replaced, restarts = rollouts.policy is not first, rollouts.policy_restarts
        served = (await rollouts.policy.info.remote())["weights_version"]
    assert replaced and restarts == 1 and served == "7"
    for trajectory in trajectories:
        assert trajectory.error is None and not trajectory.masked
        assert trajectory.provenance.weights_version == "7"
    assert any(t.attempts > 1 and t.failed_attempts[0].code == "policy_error" for t in trajectories)

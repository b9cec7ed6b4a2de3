"""Faults around a rollout's tries: a failing close, capacity refusals, a dead server process, a runtime exception."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from gymbox.agent.policy import Policy
from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import TransportError
from gymbox.environments.api.models import Message
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.environments.runtime.containers import ContainerLimits
from gymbox.environments.runtime.docker import DockerRuntime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig, make_provenance
from gymbox.harness.rollout import Backoff, attempt, play, play_all, rollout, runtime_provenance
from gymbox.tasks import TaskSpec, load_suite

TASKS = load_suite("echo-demo").tasks


async def play_one(runtime: Runtime, task: TaskSpec, policy: Policy, config: EpisodeConfig, **options: Any) -> Any:
    provenance = await runtime_provenance(runtime, policy, config)
    return await rollout(lambda: attempt(runtime, task, policy, config=config, sample=0, base_seed=1,
                                         provenance=provenance), config=config, **options)


class ClosingFails(LocalRuntime):
    """The echo environment in-process, whose episodes' sessions fail to close, as a lost connection's can."""

    closes = 0

    async def client(self, *, timeout: float = 60.0, task: TaskSpec | None = None) -> EnvClient:
        client = await super().client(timeout=timeout, task=task)
        if task is None:  # not an episode's (the runtime's own spec request)
            return client

        async def fail() -> None:
            self.closes += 1
            raise TransportError("the connection was lost while the session closed")

        client.on_close = fail
        return client


async def test_a_finished_episode_whose_close_fails_is_kept_not_played_again() -> None:
    config = EpisodeConfig(retries=2)
    async with ClosingFails("echo") as rt:
        trajectory = await play_one(rt, TASKS[0], ScriptedPolicy(echo_script), config)
    assert trajectory.error is None and trajectory.attempts == 1 and not trajectory.failed_attempts
    assert trajectory.terminated and trajectory.signals["success"] == 1.0 and trajectory.reward == 1.0
    assert rt.closes == 1


async def test_capacity_refusals_wait_with_a_capped_jittered_exponential_backoff() -> None:
    task = TASKS[0]
    async with LocalRuntime("echo", capacity=1) as rt:
        holder = await rt.client()
        await holder.reset(task)  # the server's only session is taken
        waits: list[float] = []

        async def sleep(seconds: float) -> None:  # records the wait instead of spending it
            waits.append(seconds)
            if len(waits) == 2:
                await holder.close()

        trajectory = await play_one(rt, task, ScriptedPolicy(echo_script), EpisodeConfig(retries=3), sleep=sleep)
    assert trajectory.error is None and trajectory.attempts == 3 and trajectory.signals["success"] == 1.0
    assert [e.code for e in trajectory.failed_attempts] == ["capacity", "capacity"]
    assert waits == [Backoff().delay(1, trajectory.id), Backoff().delay(2, trajectory.id)]
    assert 0.25 <= waits[0] <= 0.5 <= waits[1] <= 1.0  # half the exponential, plus up to as much in jitter


def test_backoff_is_capped_jittered_by_rollout_and_reproducible() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.delay(n, "a") for n in (1, 2, 3)] == [backoff.delay(n, "a") for n in (1, 2, 3)]
    assert all(2.0 <= backoff.delay(n, "a") <= 4.0 for n in range(4, 30))  # capped, never below half the cap
    assert len({backoff.delay(5, f"task@0#{i}") for i in range(8)}) == 8  # rollouts refused together spread out


async def test_a_dead_server_process_is_restarted_for_the_next_episode() -> None:
    killed: list[int] = []

    def killer(messages: list[Message], turn: int) -> str:
        if not killed:  # the first generation of the run kills the server under every episode in flight
            killed.append(rt.proc.pid)
            os.kill(rt.proc.pid, signal.SIGKILL)
            rt.proc.wait()
        return echo_script(messages, turn)

    waits: list[float] = []
    config = EpisodeConfig(retries=2)
    async with ProcessRuntime("echo") as rt:
        trajectories = await play_all(rt, TASKS[:3], ScriptedPolicy(killer), group_size=2, config=config)
        restarted_pid = rt.proc.pid
        assert rt.restarts == 1  # once, however many episodes found it dead
        later = await play_one(rt, TASKS[3], ScriptedPolicy(echo_script), config, sleep=waits.append)
    assert restarted_pid != killed[0]
    retried = [t for t in trajectories if t.attempts > 1]
    assert retried and all(t.failed_attempts[0].code == "transport" for t in retried)  # infrastructure
    assert all(t.error is None and t.signals["success"] == 1.0 for t in trajectories)
    assert later.error is None and later.attempts == 1
    assert not waits  # only capacity refusals wait


@pytest.mark.container
async def test_a_docker_error_opening_a_session_is_recorded_on_the_rollout(docker_engine: Any) -> None:
    # Docker refuses the container of a networked task (more CPUs than the machine has): an APIError, not the
    # step API's error, which must end this rollout as infrastructure rather than escape from the run.
    task = load_suite("shell").tasks[0].model_copy(update={"network": True})
    config = EpisodeConfig(retries=1)
    async with DockerRuntime("shell", pool_size=0, limits=ContainerLimits(cpus=4096.0)) as rt:
        provenance = make_provenance("shell", "docker", policy="scripted", weights_version="0", config=config)
        trajectory = await play(rt, task, ScriptedPolicy(["done"]), config=config, sample=0, base_seed=0,
                                provenance=provenance)
    assert trajectory.error is not None and trajectory.error.code == "runtime_error" and trajectory.masked
    assert "docker.errors.APIError" in trajectory.error.message and "CPUs" in trajectory.error.message
    assert trajectory.attempts == 2 and trajectory.reward is None

"""Under load: every shell task's reference solution passes with 32 containers at once, and the docker runtime
admits no more episodes than its capacity, queueing the rest and recording how long they waited."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import docker
import pytest

from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.api import Action, ToolCall
from gymbox.environments.runtime import DockerRuntime, containers
from gymbox.environments.runtime.containers import ContainerLimits, capacity_for, memory_bytes, node_capacity
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import play_all
from gymbox.tasks import shell as shell_tasks
from gymbox.tasks.spec import Limits, TaskSpec

LOAD = 32
HARDENED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def test_commands_started_by_a_sandboxed_server_can_be_signalled() -> None:
    # The server ignores termination signals; the programs it starts must not inherit that, or `kill PID` in a
    # task (shell-system-003) stops nothing. A handler, unlike SIG_IGN, is reset to the default by exec. (The
    # child first resets what it may have inherited from however pytest was started, `nohup` or `&`.)
    code = ("import signal, subprocess\n"
            f"for sig in {[int(sig) for sig in HARDENED]}: signal.signal(sig, signal.SIG_DFL)\n"
            "from gymbox.environments.api.serve import _harden\n"
            "_harden()\n"
            "print(subprocess.run(['grep', '^SigIgn', '/proc/self/status'], capture_output=True, text=True).stdout)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    ignored = int(shown.split()[1], 16)
    assert [sig for sig in HARDENED if ignored & (1 << (sig - 1))] == [], shown


def test_capacity_is_what_the_machine_holds() -> None:
    assert memory_bytes("1g") == 2**30 and memory_bytes("512m") == 2**29 and memory_bytes("4096") == 4096
    with pytest.raises(ValueError, match="not a Docker memory size: 'lots'"):
        memory_bytes("lots")
    assert capacity_for(ContainerLimits(), cpus=2, memory=16 * 2**30) == 2
    assert capacity_for(ContainerLimits(cpus=0.25), cpus=2, memory=16 * 2**30) == 8
    assert capacity_for(ContainerLimits(memory="1g"), cpus=64, memory=3 * 2**30) == 3
    assert capacity_for(ContainerLimits(), cpus=1, memory=2**29) == 1
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        DockerRuntime("shell", capacity=0)


@pytest.mark.container
def test_capacity_comes_from_the_engine(docker_engine: docker.DockerClient) -> None:
    info = docker_engine.info()
    assert node_capacity(docker_engine, ContainerLimits()) == capacity_for(
        ContainerLimits(), cpus=info["NCPU"], memory=info["MemTotal"]) >= 1


def bash(command: str) -> Action:
    return Action(tool_calls=[ToolCall.make("bash", {"command": command})])


async def _solve(rt: DockerRuntime, task: TaskSpec) -> str | None:
    """Why the task's reference solution failed, or None when it passed."""
    async with await rt.client(timeout=300) as client:
        await client.reset(task, seed=0)
        ran = await client.step(bash(task.payload["solution"]))
        result = await client.step(Action(tool_calls=[ToolCall.make("submit")]))
    if result.signals.get("success") == 1.0:
        return None
    return f"{task.id}: {result.signals}; the solution printed: {ran.observation.messages[0].content}"


@pytest.mark.slow
@pytest.mark.container
async def test_every_reference_solution_passes_with_32_containers_at_once(docker_engine: docker.DockerClient) -> None:
    # The capacity is raised on purpose: 32 containers share this machine's cores, the load a correct answer must
    # still pass under. The start timeout is generous for the same reason.
    tasks = shell_tasks.tasks()
    async with DockerRuntime("shell", pool_size=LOAD, capacity=LOAD, start_timeout=300) as rt:
        failures = [why for why in await asyncio.gather(*(_solve(rt, task) for task in tasks)) if why]
    assert not failures, "\n".join(failures)


@pytest.mark.container
async def test_the_runtime_admits_episodes_by_its_capacity(docker_engine: docker.DockerClient) -> None:
    task = TaskSpec(id="probe-queue", env="shell", instruction="Wait a little, then submit.",
                    limits=Limits(max_turns=3),
                    payload={"setup": "", "checks": [{"name": "waited", "run": "test -f waited"}]})
    call = {"name": "bash", "arguments": {"command": "sleep 1.5; touch waited"}}
    policy = ScriptedPolicy([f"<tool_call>{json.dumps(call)}</tool_call>",
                             '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'])
    seen: list[int] = []

    async def count_containers(rt: DockerRuntime) -> None:
        while True:
            rows = await asyncio.to_thread(docker_engine.api.containers, all=True, filters={
                "label": [f"{containers.OWNER}={containers.owner_label()}", f"{containers.ENV}={rt.env_cls.env_id()}"]})
            seen.append(len(rows))
            await asyncio.sleep(0.05)

    async with DockerRuntime("shell", pool_size=4, capacity=2) as rt:
        counter = asyncio.create_task(count_containers(rt))
        try:
            trajectories = await play_all(rt, [task], policy, group_size=4, config=EpisodeConfig(), concurrency=4)
        finally:
            counter.cancel()
    assert all(t.error is None and t.reward == 1.0 for t in trajectories), [t.error for t in trajectories]
    assert seen and max(seen) <= 2, seen
    queued = sorted(t.queue_seconds for t in trajectories)
    assert queued[2] > 1.0 and queued[3] > 1.0, queued  # the last two waited for a running episode to end

"""The docker runtime against the real engine: isolation, the warm pool, crashes, labels and the reaper."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import docker
import pytest

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import TransportError
from gymbox.environments.api.models import Action, StepResult, ToolCall
from gymbox.environments.runtime import ContainerLimits, DockerRuntime
from gymbox.environments.runtime.containers import EXPIRES, LABEL, OWNER, list_containers, reap
from gymbox.environments.runtime.images import image_name, repo_root
from gymbox.tasks.spec import Limits, TaskSpec
from tests.conftest import CHILD_ENV, ROOT

pytestmark = pytest.mark.container

TASK = TaskSpec(id="probe", env="shell", instruction="Write ok to done.txt.", limits=Limits(max_turns=30),
                payload={"setup": "echo ready > ready.txt",
                         "checks": [{"name": "done", "run": "grep -qx ok done.txt"}]})


def bash(command: str) -> Action:
    return Action(tool_calls=[ToolCall.make("bash", {"command": command})])


async def run(client: EnvClient, command: str) -> str:
    result: StepResult = await client.step(bash(command))
    return result.observation.messages[0].content or ""


def ours(engine: docker.DockerClient) -> list[str]:
    return [c.name for c in list_containers(engine) if c.status == "running"]


async def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def runtime(docker_engine: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    async with DockerRuntime("shell", pool_size=1) as rt:
        yield rt


async def test_an_episode_in_its_own_sandbox(runtime: DockerRuntime) -> None:
    async with await runtime.client() as client:
        await client.reset(TASK, 3)
        assert "ready" in await run(client, "cat ready.txt")
        assert "uid=1000" in await run(client, "id")
        assert "Read-only file system" in await run(client, "touch /etc/owned")
        status = await run(client, "grep CapEff /proc/self/status")
        assert "0000000000000000" in status  # no capabilities at all
        interfaces = await run(client, "tail -n +3 /proc/net/dev | cut -d: -f1")
        assert interfaces.split()[0] == "lo" and "eth0" not in interfaces  # no network
        assert "No module named 'gymbox'" in await run(client, "python3 -c 'import gymbox'")
        assert "256M" in await run(client, "df -h /workspace")
        result = await client.step(bash("echo ok > done.txt"))
        assert not result.done
        final = await client.step(Action(tool_calls=[ToolCall.make("submit")]))
        assert final.terminated and final.signals["success"] == 1.0


async def test_resource_limits_hold(docker_engine: docker.DockerClient) -> None:
    limits = ContainerLimits(pids=64, memory="256m", workspace="8m")
    async with DockerRuntime("shell", pool_size=1, limits=limits) as rt:
        async with await rt.client() as client:  # a fork bomb uses up its own container only
            await client.reset(TASK, 1)
            forks = await run(client, "for i in $(seq 100); do sleep 300 & done")
            assert "fork: retry: Resource temporarily unavailable" in forks
        async with await rt.client() as client:
            await client.reset(TASK, 1)
            full = await run(client, "head -c 20000000 /dev/zero > big; echo status=$?")
            assert "No space left on device" in full
            memory = await run(client, "python3 -c 'x = bytearray(600 * 2**20)'; echo status=$?")
            assert "status=137" in memory or "MemoryError" in memory  # killed or refused: it never got the memory


async def test_the_pool_stays_warm_and_replaces_dead_containers(runtime: DockerRuntime,
                                                                docker_engine: docker.DockerClient) -> None:
    await wait_for(lambda: runtime._pool.qsize() == 1)
    doomed = runtime._pool._queue[0]  # a container waiting in the pool dies
    docker_engine.api.kill(doomed.id)
    async with await runtime.client() as client:
        await client.reset(TASK, 1)
        assert "ready" in await run(client, "cat ready.txt")
    await wait_for(lambda: runtime._pool.qsize() == 1)


async def test_a_container_crash_mid_episode_is_an_infra_error(runtime: DockerRuntime,
                                                               docker_engine: docker.DockerClient) -> None:
    client = await runtime.client()
    await client.reset(TASK, 1)
    leased = next(iter(runtime._leased))
    docker_engine.api.kill(leased.id)
    with pytest.raises(TransportError, match="lost") as caught:
        await client.step(bash("ls"))
    assert caught.value.infra
    await client.close()
    async with await runtime.client() as fresh:  # the runtime carries on
        await fresh.reset(TASK, 1)


async def test_containers_are_labeled_and_removed_after_the_episode(runtime: DockerRuntime,
                                                                    docker_engine: docker.DockerClient) -> None:
    client = await runtime.client()
    name = next(iter(runtime._leased)).name
    labels = docker_engine.containers.get(name).labels
    assert labels[LABEL] == "1" and str(os.getpid()) in labels[OWNER] and float(labels[EXPIRES]) > time.time()
    await client.close()
    await wait_for(lambda: name not in ours(docker_engine))


def test_reaper_removes_orphans_and_expired_but_not_the_living(docker_engine: docker.DockerClient) -> None:
    image = image_name("shell")

    def start(owner: str, expires: float) -> str:
        return docker_engine.containers.run(image, ["sleep", "60"], detach=True, network_mode="none", labels={
            LABEL: "1", OWNER: owner, EXPIRES: str(int(expires))}).name

    from gymbox.environments.runtime.containers import owner_label

    alive = start(owner_label(), time.time() + 600)
    orphan = start(owner_label().rsplit("/", 2)[0] + "/999999/1", time.time() + 600)
    expired = start(owner_label(), time.time() - 1)
    removed = {info.name: reason for info, reason in reap(docker_engine)}
    assert "gone" in removed[orphan] and "expired" in removed[expired] and alive not in removed
    cli = subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "containers", "prune", "--all"],
                         capture_output=True, text=True, timeout=60)
    assert alive in cli.stdout and alive not in ours(docker_engine)


OWNER_SCRIPT = """
import asyncio
from gymbox.environments.runtime import DockerRuntime
async def main():
    rt = DockerRuntime("shell", pool_size=2)
    await rt.start()
    client = await rt.client()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def test_containers_of_a_killed_owner_are_reaped_at_the_next_start(docker_engine: docker.DockerClient) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, **CHILD_ENV})
    try:
        assert owner.stdout.readline().strip() == "ready"
        theirs = [c.name for c in list_containers(docker_engine) if str(owner.pid) in c.owner]
        assert theirs
    finally:
        owner.kill()
        owner.wait()
    async with DockerRuntime("shell", pool_size=0):
        left = {c.name for c in list_containers(docker_engine)}
    assert not left & set(theirs)


async def test_a_container_never_outlives_its_ttl(docker_engine: docker.DockerClient) -> None:
    async with DockerRuntime("shell", pool_size=1, ttl=4) as rt:
        await wait_for(lambda: rt._pool.qsize() == 1)
        name = rt._pool._queue[0].name
        await wait_for(lambda: name not in ours(docker_engine), timeout=20)


async def test_the_image_digest_is_recorded(runtime: DockerRuntime) -> None:
    records = json.loads((repo_root() / "build" / "images.json").read_text())
    assert records["shell@v1"]["id"] == runtime.image_id


async def test_missing_image_says_how_to_build_it(docker_engine: docker.DockerClient) -> None:
    with pytest.raises(TransportError, match="gymbox images build"):
        await DockerRuntime("shell", image="gymbox/nothing:0").start()


async def test_only_a_task_that_declares_it_gets_a_network(runtime: DockerRuntime) -> None:
    networked = TASK.model_copy(update={"network": True})
    async with await runtime.client(task=networked) as client:
        await client.reset(networked, 1)
        assert "eth0" in await run(client, "cat /proc/net/dev")  # an interface; no traffic is sent
    async with await runtime.client(task=TASK) as client:
        await client.reset(TASK, 1)
        assert "eth0" not in await run(client, "cat /proc/net/dev")

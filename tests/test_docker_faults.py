"""What an agent can do to its sandbox: each fault ends in an explaining message, and nothing else is hurt."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import docker
import pytest

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import TransportError
from gymbox.environments.api.models import Action, ToolCall
from gymbox.environments.runtime import DockerRuntime
from gymbox.environments.runtime.containers import list_containers, owner_label
from gymbox.tasks.spec import Limits, TaskSpec

pytestmark = pytest.mark.container

TASK = TaskSpec(id="faults", env="shell", instruction="Survive.", limits=Limits(max_turns=50),
                payload={"command_seconds": 3, "checks": [{"name": "never", "run": "false"}]})


async def run(client: EnvClient, command: str) -> str:
    result = await client.step(Action(tool_calls=[ToolCall.make("bash", {"command": command})]))
    assert not result.done
    return result.observation.messages[0].content or ""


@pytest.fixture
async def runtime(docker_engine: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    async with DockerRuntime("shell", pool_size=2) as rt:
        yield rt
    mine = [c for c in list_containers(docker_engine) if c.owner == owner_label()]
    assert not mine, f"containers left behind: {mine}"


@pytest.fixture
async def client(runtime: DockerRuntime) -> AsyncIterator[EnvClient]:
    async with await runtime.client() as c:
        await c.reset(TASK, 1)
        yield c


async def test_an_endless_loop_is_killed_and_the_episode_goes_on(client: EnvClient) -> None:
    out = await run(client, "while true; do :; done & while true; do :; done")
    assert "command killed after 3 s" in out
    assert "0" in await run(client, "pgrep -c bash || true")  # the background loop died with its group
    assert "ok" in await run(client, "echo ok")


async def test_a_gigabyte_of_output_is_cut(runtime: DockerRuntime) -> None:
    patient = TASK.model_copy(update={"payload": {**TASK.payload, "command_seconds": 60}})
    async with await runtime.client() as client:
        await client.reset(patient, 1)
        out = await run(client, "yes | head -c 1000000000; echo done")
    omitted = re.search(r"\[\.\.\. (\d+) bytes of output omitted", out)
    assert omitted and int(omitted.group(1)) > 999_000_000 and len(out) < 20_000
    assert out.rstrip().endswith("done\n\n[exit code 0]")


async def test_a_full_disk_is_reported_and_the_episode_goes_on(client: EnvClient) -> None:
    assert "No space left on device" in await run(client, "cat /dev/zero > fill")
    assert "ok" in await run(client, "rm fill && echo ok > note && cat note")


async def test_killing_pid_1_does_not_end_the_episode(client: EnvClient) -> None:
    await run(client, "kill -TERM 1; kill -INT 1; kill -HUP 1; kill -KILL 1; true")
    await asyncio.sleep(0.5)  # what we test is an absence: give a forwarded signal the time to do harm
    assert "still here" in await run(client, "echo still here")


async def test_the_agent_cannot_kill_the_server_so_the_episode_goes_on_and_ends_graded(runtime: DockerRuntime) -> None:
    task = TASK.model_copy(update={"payload": {**TASK.payload, "checks": [{"name": "ok", "run": "grep -qx ok out"}]}})
    async with await runtime.client() as client:
        await client.reset(task, 1)
        await run(client, "sleep 300 & setsid sleep 300 & echo started")
        await run(client, "kill -9 -1")  # every process the agent may signal: its own
        refused = await run(client, "pkill -9 -f gymbox; kill -9 1; true")
        assert "Operation not permitted" in refused
        assert "ok" in await run(client, "echo ok > out; cat out")
        assert "sleep" not in await run(client, "ps -eo args")  # the agent's processes did end
        result = await client.step(Action(tool_calls=[ToolCall.make("submit")]))
    assert result.terminated and result.signals["success"] == 1.0


async def test_the_server_s_socket_is_out_of_the_agent_s_reach(client: EnvClient) -> None:
    assert "Permission denied" in await run(client, "ls /run/gymbox")
    assert "Permission denied" in await run(client, "head -c 1000000 /dev/zero > /run/gymbox/fill")
    assert "root" in await run(client, "ps -o user= -p $(pgrep -f '^/opt/gymbox/bin/python')")


async def test_no_network(client: EnvClient) -> None:
    lookup = await run(client, "python3 -c \"import socket; socket.getaddrinfo('deb.debian.org', 80)\"")
    assert "gaierror" in lookup
    routes = await run(client, "tail -n +2 /proc/net/route | wc -l")
    assert routes.split()[0] == "0"


async def test_outside_the_workspace_is_read_only_or_hidden(client: EnvClient) -> None:
    assert "Permission denied" in await run(client, "cat /etc/shadow")
    assert "Read-only file system" in await run(client, "echo x > /opt/gymbox/owned")
    server = await run(client, "cat /proc/$(pgrep -f '^/opt/gymbox/bin/python')/environ")
    assert "Permission denied" in server  # the server's memory and environment are not the agent's to read


async def test_a_fork_bomb_leaves_other_episodes_alone(runtime: DockerRuntime, client: EnvClient) -> None:
    async with await runtime.client() as other:
        await other.reset(TASK, 2)
        bomb = asyncio.create_task(run(client, "b() { b | b & }; b"))
        assert "fine" in await run(other, "echo fine")
        await bomb


async def test_no_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(TransportError, match=r"scripts/docker\.sh"):
        await DockerRuntime("shell").start()

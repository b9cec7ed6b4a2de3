"""`EnvClient` and `SyncEnvClient`: the same behaviour against every runtime, typed errors, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import (
    EpisodeOver,
    InvalidRequest,
    InvalidTask,
    StepTimeout,
    TransportError,
    UnknownSession,
)
from gymbox.environments.api.models import Action, ToolCall
from gymbox.environments.api.sync_client import SyncEnvClient
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.tasks.spec import Limits, TaskSpec
from tests.conftest import CHILD_ENV
from tests.envs import SlowEnv


async def play_echo(client: EnvClient, task: TaskSpec) -> list[float]:
    await client.reset(task, 11)
    word = task.payload["word"]
    results = [await client.step(Action(tool_calls=[ToolCall.make("echo", {"word": word})]))
               for _ in range(task.payload["times"])]
    results.append(await client.step(Action(tool_calls=[ToolCall.make("submit")])))
    assert results[-1].terminated
    return [r.signals["success"] for r in results if "success" in r.signals]


async def test_same_episode_on_every_runtime(runtime: Runtime, echo_task: TaskSpec) -> None:
    async with await runtime.client() as client:
        assert await play_echo(client, echo_task) == [1.0]
        with pytest.raises(EpisodeOver):
            await client.step(Action())
        assert (await client.health()).env == "echo@v1"


async def test_errors_are_typed_on_every_runtime(runtime: Runtime, echo_task: TaskSpec) -> None:
    async with await runtime.client() as client:
        with pytest.raises(InvalidRequest, match="reset"):
            await client.step(Action())
        with pytest.raises(InvalidTask):
            await client.reset(echo_task.model_copy(update={"env": "toolcall"}))
        await client.reset(echo_task)
        session = client.session
        await client.close_session()
        client.session = session  # a stale handle, as after a crash of the caller's bookkeeping
        with pytest.raises(UnknownSession):
            await client.step(Action())


async def test_many_clients_share_one_connection(echo_task: TaskSpec) -> None:
    async with ProcessRuntime("echo") as rt:
        clients = [await rt.client() for _ in range(32)]
        outcomes = await asyncio.gather(*(play_echo(c, echo_task) for c in clients))
        assert outcomes == [[1.0]] * 32
        assert len({id(c.channel) for c in clients}) == 1
        for client in clients:
            await client.close()
        assert (await (await rt.client()).health()).sessions == 0


async def test_reset_twice_closes_the_first_episode(runtime: Runtime, echo_task: TaskSpec) -> None:
    async with await runtime.client() as client:
        await client.reset(echo_task)
        await client.reset(echo_task)
        assert (await client.health()).sessions == 1


async def test_client_timeout_is_typed(echo_task: TaskSpec) -> None:
    task = echo_task.model_copy(update={"payload": {"step_seconds": 2.0}, "limits": Limits(step_seconds=30)})
    async with ProcessRuntime(SlowEnv, env_vars=CHILD_ENV) as rt, await rt.client() as client:
        await client.reset(task)
        with pytest.raises(StepTimeout, match="no reply to step"):
            await client.step(Action(), timeout=0.2)


async def test_server_gone_is_a_transport_error(echo_task: TaskSpec) -> None:
    rt = ProcessRuntime("echo")
    await rt.start()
    client = await rt.client()
    await client.reset(echo_task)
    rt.proc.kill()
    with pytest.raises(TransportError, match="lost"):
        await client.step(Action())
    await client.close()  # closing after the loss is harmless
    await rt.stop()


async def test_connect_to_nothing_says_what_to_do(tmp_path) -> None:
    with pytest.raises(TransportError, match="gymbox serve"):
        await EnvClient.connect(uds=str(tmp_path / "none.sock"))


def test_sync_client(echo_task: TaskSpec) -> None:
    rt = LocalRuntime("echo")

    async def make() -> EnvClient:
        await rt.start()
        client = await rt.client()
        client.on_close = rt.stop
        return client

    with SyncEnvClient(make) as client:
        observation = client.reset(echo_task, 4)
        assert "seed 4" in observation.messages[0].content
        result = client.step(Action(tool_calls=[ToolCall.make("echo", {"word": echo_task.payload["word"]})]))
        assert result.signals["progress"] == 1.0
        assert client.state().turn == 1
        assert client.grade().signals == {} and client.state().done  # echo grades nothing: it grades on submit
    client.close()  # a second close is harmless


def test_sync_client_over_a_socket(echo_task: TaskSpec) -> None:
    async def start() -> ProcessRuntime:
        rt = ProcessRuntime("echo")
        await rt.start()
        return rt

    rt = asyncio.run(start())
    try:
        with SyncEnvClient.connect(uds=rt.socket_path) as client:
            assert client.spec().id == "echo@v1"
            client.reset(echo_task)
            assert not client.step(Action(text="hello")).done
    finally:
        rt.terminate()

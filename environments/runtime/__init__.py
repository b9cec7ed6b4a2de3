"""Runtimes: where environment servers run: in-process, in a child process, or in a container per episode."""

from __future__ import annotations

from typing import Any

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.env import Environment
from gymbox.environments.api.sync_client import SyncEnvClient
from gymbox.environments.runtime.base import Runtime
from gymbox.environments.runtime.containers import ContainerLimits
from gymbox.environments.runtime.docker import DockerRuntime
from gymbox.environments.runtime.local import LocalRuntime
from gymbox.environments.runtime.process import ProcessRuntime
from gymbox.tasks.spec import TaskSpec

RUNTIMES: dict[str, type[Runtime]] = {"local": LocalRuntime, "process": ProcessRuntime, "docker": DockerRuntime}


def make_runtime(kind: str, env: str | type[Environment], **options: Any) -> Runtime:
    """The runtime of `kind` for an environment id, `module:Class` or class."""
    try:
        cls = RUNTIMES[kind]
    except KeyError:
        raise ValueError(f"no runtime {kind!r}; choose one of {', '.join(RUNTIMES)}") from None
    return cls(env, **options)


def sync_client(kind: str, env: str | type[Environment], *, task: TaskSpec | None = None,
                **options: Any) -> SyncEnvClient:
    """A blocking client for one episode on a runtime of its own, started here and stopped when the client closes
    (scripts, the terminal player, training stacks that call tools synchronously)."""

    async def make() -> EnvClient:
        runtime = make_runtime(kind, env, **options)
        await runtime.start()
        try:
            client = await runtime.client(task=task)
        except BaseException:
            await runtime.stop()
            raise
        client.on_close = runtime.stop
        return client

    return SyncEnvClient(make)


__all__ = ["RUNTIMES", "ContainerLimits", "DockerRuntime", "LocalRuntime", "ProcessRuntime", "Runtime", "make_runtime",
           "sync_client"]

"""The runtime interface: where an environment's server runs, and how an episode gets a client to it."""

from __future__ import annotations

from abc import ABC, abstractmethod

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.env import Environment
from gymbox.environments.api.models import EnvSpec
from gymbox.tasks.spec import TaskSpec


def target_of(env: str | type[Environment]) -> str:
    """An environment id or `module:Class` string for an environment given as either."""
    return env if isinstance(env, str) else f"{env.__module__}:{env.__qualname__}"


class Runtime(ABC):
    """Starts an environment's server, hands out one `EnvClient` per episode, and stops it.

    A shared-server runtime (local, process) gives every episode a client on one channel; a per-episode
    runtime (docker) leases a container in `client()` and gets it back when that client is closed.
    """

    kind: str
    target: str

    @abstractmethod
    async def start(self) -> None:
        """Make the server ready; raise an `EnvError` that says why when it cannot be."""

    @abstractmethod
    async def client(self, *, timeout: float = 60.0, task: TaskSpec | None = None) -> EnvClient:
        """A client for one episode (of `task`, when the runtime must know it first, e.g. for network access);
        closing it ends the episode and returns what it held."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop everything started; idempotent."""

    async def spec(self) -> EnvSpec:
        client = await self.client()
        try:
            return await client.spec()
        finally:
            await client.close()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

"""The `local` runtime: the environment runs in this process, behind the same client, with no network."""

from __future__ import annotations

from gymbox.environments.api.client import EnvClient, LocalChannel
from gymbox.environments.api.env import Environment
from gymbox.environments.api.errors import TransportError
from gymbox.environments.api.registry import Registry, load_target
from gymbox.environments.api.sessions import SessionHost
from gymbox.environments.runtime.base import Runtime, target_of


class LocalRuntime(Runtime):
    kind = "local"

    def __init__(self, env: str | type[Environment], *, registry: Registry | None = None, capacity: int = 256,
                 idle_timeout: float = 600.0) -> None:
        self.target = target_of(env)
        self.env_cls = env if isinstance(env, type) else load_target(env, registry)
        self.host = SessionHost(self.env_cls, capacity=capacity, idle_timeout=idle_timeout)
        self._channel: LocalChannel | None = None

    async def start(self) -> None:
        if self._channel is None:
            self._channel = LocalChannel(self.host)

    async def client(self, *, timeout: float = 60.0) -> EnvClient:
        if self._channel is None:
            raise TransportError("the local runtime is not started; use `async with LocalRuntime(...)`")
        return EnvClient(self._channel, timeout=timeout)

    async def stop(self) -> None:
        if self._channel is not None:
            self._channel = None
            await self.host.shutdown()

"""The `local` runtime: the environment runs in this process, behind the same client, with no network."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from gymbox.environments.api.client import Channel, EnvClient
from gymbox.environments.api.env import Environment
from gymbox.environments.api.errors import EnvError, InvalidReply, InvalidRequest, StepTimeout, TransportError
from gymbox.environments.api.models import REQUEST
from gymbox.environments.api.registry import Registry, load_target
from gymbox.environments.api.sessions import SessionHost
from gymbox.environments.runtime.base import Runtime, target_of
from gymbox.tasks.spec import TaskSpec

M = TypeVar("M", bound=BaseModel)


class LocalChannel(Channel):
    """Calls a `SessionHost` in this process, through the same JSON encoding as the wire, with no network."""

    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.address = f"local:{host.env_cls.env_id()}"
        self._owner = object()

    async def call(self, request: BaseModel, model: type[M], timeout: float | None) -> M:
        try:
            decoded = REQUEST.validate_json(request.model_dump_json())
        except ValidationError as exc:
            raise InvalidRequest(f"the request does not match the step API schema: {exc}") from None
        try:
            async with asyncio.timeout(timeout):
                result = await self.host.handle(decoded, self._owner)
        except TimeoutError:
            raise StepTimeout(f"no result from {self.address} within {timeout:g} s", limit=timeout) from None
        # Through JSON, as on the wire: what an environment returns must survive encoding; what does not fails as
        # it does on a server (an untyped server error, or a reply that does not validate).
        try:
            encoded = result.model_dump_json()
        except Exception as exc:
            raise EnvError(f"server error: {exc!r}") from exc
        try:
            return model.model_validate_json(encoded)
        except ValidationError as exc:
            raise InvalidReply(f"{self.address} answered with a {model.__name__} that does not validate: {exc}") \
                from None

    async def aclose(self) -> None:
        await self.host.close_owned(self._owner)


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

    async def client(self, *, timeout: float = 60.0, task: TaskSpec | None = None) -> EnvClient:
        if self._channel is None:
            raise TransportError("the local runtime is not started; use `async with LocalRuntime(...)`")
        return EnvClient(self._channel, timeout=timeout)

    async def stop(self) -> None:
        if self._channel is not None:
            self._channel = None
            await self.host.shutdown()

"""`SyncEnvClient`: the blocking face of `EnvClient`, for scripts, notebooks and the terminal player."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.models import (
    Action,
    Closed,
    EnvSpec,
    Graded,
    Health,
    Observation,
    SessionState,
    StepResult,
)
from gymbox.tasks.spec import TaskSpec

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread; blocking callers submit coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gymbox-client", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class SyncEnvClient:
    """Blocking client; build it with `connect` or from any coroutine that makes an `EnvClient`."""

    def __init__(self, make: Callable[[], Awaitable[EnvClient]]) -> None:
        self._loop = _LoopThread()

        async def build() -> EnvClient:
            return await make()

        try:
            self.client = self._loop.run(build())
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def connect(cls, url: str | None = None, *, uds: str | None = None, timeout: float = 60.0) -> SyncEnvClient:
        return cls(lambda: EnvClient.connect(url, uds=uds, timeout=timeout))

    @property
    def session(self) -> str | None:
        return self.client.session

    def reset(self, task: TaskSpec, seed: int | None = None, *, timeout: float | None = None) -> Observation:
        return self._loop.run(self.client.reset(task, seed, timeout=timeout))

    def step(self, action: Action, *, turn: int | None = None, timeout: float | None = None) -> StepResult:
        return self._loop.run(self.client.step(action, turn=turn, timeout=timeout))

    def grade(self, *, timeout: float | None = None) -> Graded:
        """End the episode graded, as `EnvClient.grade`."""
        return self._loop.run(self.client.grade(timeout=timeout))

    def state(self) -> SessionState:
        return self._loop.run(self.client.state())

    def close_session(self) -> Closed | None:
        return self._loop.run(self.client.close_session())

    def spec(self) -> EnvSpec:
        return self._loop.run(self.client.spec())

    def health(self) -> Health:
        return self._loop.run(self.client.health())

    def close(self) -> None:
        """End the episode, release the connection and stop the client's thread; idempotent."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.run(self.client.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncEnvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

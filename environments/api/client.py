"""`EnvClient`: one episode at a time against any runtime, over a shared `Channel` (here: the WebSocket one)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, Generic, TypeVar

import websockets
from pydantic import BaseModel, TypeAdapter, ValidationError
from websockets.asyncio.client import ClientConnection

from gymbox.environments.api.errors import (
    EnvError,
    InvalidReply,
    InvalidRequest,
    StepTimeout,
    TransportError,
    from_wire,
)
from gymbox.environments.api.models import (
    Action,
    Closed,
    EnvSpec,
    Graded,
    Health,
    Observation,
    ResetRequest,
    ServerRequest,
    SessionRequest,
    SessionStarted,
    SessionState,
    StepRequest,
    StepResult,
)
from gymbox.tasks.spec import TaskSpec

M = TypeVar("M", bound=BaseModel)
_MAX_MESSAGE = 64 * 1024 * 1024
_REPLY_ID = re.compile(r'\s*\{\s*"id"\s*:\s*(\d+)')
log = logging.getLogger(__name__)


class _Reply(BaseModel, Generic[M]):
    """A reply frame: the request's id and either its result or an error."""

    id: int | None
    ok: bool
    result: M | None = None
    error: dict[str, Any] | None = None


@cache
def _reply_adapter(model: type[M]) -> TypeAdapter[_Reply[M]]:
    return TypeAdapter(_Reply[model])  # type: ignore[valid-type]


class Channel(ABC):
    """Carries requests to one environment server; many `EnvClient`s share one channel."""

    address: str

    @abstractmethod
    async def call(self, request: BaseModel, model: type[M], timeout: float | None) -> M:
        """Send a request and return its result as `model`, or raise the typed error the server sent."""

    @abstractmethod
    async def aclose(self) -> None: ...


class WsChannel(Channel):
    """One WebSocket connection multiplexing requests by id; replies may arrive in any order."""

    def __init__(self, connection: ClientConnection, address: str) -> None:
        self.address = address
        self._conn = connection
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._lost: EnvError | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str | None = None, *, uds: str | None = None,
                      timeout: float = 10.0) -> WsChannel:
        """Connect to `http://HOST:PORT` (or `ws://...`) or to a Unix socket path."""
        if (url is None) == (uds is None):
            raise ValueError("give exactly one of url or uds")
        options: dict[str, Any] = {"max_size": _MAX_MESSAGE, "compression": None, "ping_interval": None,
                                   "open_timeout": timeout}
        try:
            if uds is not None:
                conn = await websockets.unix_connect(uds, "ws://localhost/ws", **options)
                address = f"unix:{uds}"
            else:
                address = url.rstrip("/")  # type: ignore[union-attr]
                ws_url = address.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
                conn = await websockets.connect(ws_url, **options)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            where = f"unix:{uds}" if uds else url
            raise TransportError(f"cannot connect to the environment server at {where}: {exc}; is it running "
                                 "(`gymbox serve ENV`)?") from exc
        return cls(conn, address)

    async def call(self, request: BaseModel, model: type[M], timeout: float | None) -> M:
        if self._lost is not None:
            raise self._lost
        request_id = next(self._ids)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout):
                await self._conn.send(f'{{"id":{request_id},"request":{request.model_dump_json()}}}')
                frame = await future
        except TimeoutError:
            op = getattr(request, "op", "request")
            raise StepTimeout(f"no reply to {op} from {self.address} within {timeout:g} s; the server may be "
                              "overloaded or the environment stuck", limit=timeout) from None
        except websockets.ConnectionClosed as exc:
            raise self._connection_lost(exc) from exc
        finally:
            self._pending.pop(request_id, None)
        try:
            reply = _reply_adapter(model).validate_json(frame)
        except ValidationError as exc:
            raise InvalidReply(f"the server at {self.address} answered with a {model.__name__} that does not "
                               f"validate ({exc.error_count()} errors: {exc.errors()[0]['msg']} at "
                               f"{'.'.join(map(str, exc.errors()[0]['loc']))}); do the client's and the server's "
                               "gymbox versions differ?") from exc
        if reply.ok and reply.result is not None:
            return reply.result
        raise from_wire(reply.error or {"code": "env_error", "message": "the server answered with neither "
                                                                          "a result nor an error"})

    async def _read(self) -> None:
        """Hand each reply frame to its caller by id; the caller decodes it once, into its own model."""
        try:
            async for frame in self._conn:
                match = _REPLY_ID.match(frame[:64] if isinstance(frame, str) else frame[:64].decode(errors="replace"))
                future = self._pending.get(int(match.group(1))) if match else None
                if future is not None and not future.done():
                    future.set_result(frame)
                elif match is None:
                    log.warning("reply from %s without an id: %.200s", self.address, frame)
        except websockets.ConnectionClosed as exc:
            self._connection_lost(exc)
        except Exception as exc:  # a reader that dies silently would leave every caller waiting
            self._connection_lost(exc)
        else:
            self._connection_lost(None)

    def _connection_lost(self, exc: BaseException | None) -> EnvError:
        if self._lost is None:
            why = f": {exc}" if exc else ""
            self._lost = TransportError(f"the connection to {self.address} was lost{why}; the server closed the "
                                        "sessions it carried, start new episodes on a new connection")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._lost)
        return self._lost

    async def aclose(self) -> None:
        self._lost = self._lost or TransportError(f"the channel to {self.address} was closed by its owner")
        await self._conn.close()
        self._reader.cancel()


class EnvClient:
    """A client for one episode at a time: `reset`, `step` until done, `close`. Async; see `SyncEnvClient`.

    `timeout` bounds each call; a step's default is the task's own step limit plus a margin, so the server's
    typed timeout arrives before the client gives up.
    """

    def __init__(self, channel: Channel, *, timeout: float = 60.0, owns_channel: bool = False,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.channel = channel
        self.timeout = timeout
        self.session: str | None = None
        self.seed: int | None = None
        self.task: TaskSpec | None = None
        self._owns_channel = owns_channel
        self.on_close = on_close

    @classmethod
    async def connect(cls, url: str | None = None, *, uds: str | None = None, timeout: float = 60.0) -> EnvClient:
        """A client with its own connection to a server at `url` or on the Unix socket `uds`."""
        return cls(await WsChannel.connect(url, uds=uds), timeout=timeout, owns_channel=True)

    async def _call(self, request: BaseModel, model: type[M], timeout: float | None) -> M:
        return await self.channel.call(request, model, self.timeout if timeout is None else timeout)

    async def reset(self, task: TaskSpec, seed: int | None = None, *, timeout: float | None = None) -> Observation:
        """Start an episode; an episode still open on this client is closed first."""
        if self.session is not None:
            await self.close_session()
        started = await self._call(ResetRequest(task=task, seed=seed), SessionStarted,
                                   timeout if timeout is not None else task.limits.step_seconds + 10)
        self.session, self.seed, self.task = started.session, started.seed, task
        return started.observation

    async def step(self, action: Action, *, turn: int | None = None, timeout: float | None = None) -> StepResult:
        """Apply the agent's action; `turn` (0-based) counts turns the caller answered itself, so that the server's
        turn limit counts them too (default: the turn after the last step)."""
        session = self._require_session()
        return await self._call(StepRequest(session=session, action=action, turn=turn), StepResult,
                                self._step_timeout(timeout))

    async def grade(self, *, timeout: float | None = None) -> Graded:
        """End the episode because the caller's own limit cut it off, and get the signals the environment grades it
        with, as a server limit would; the session stays open until `close_session`. `EpisodeOver` if it has
        already ended (then the step that ended it carries its signals)."""
        request = SessionRequest(op="grade", session=self._require_session())
        return await self._call(request, Graded, self._step_timeout(timeout))

    def _step_timeout(self, timeout: float | None) -> float | None:
        """A step's or grade's time limit: the task's own step limit plus a margin, so the server's typed timeout
        arrives before the client gives up."""
        if timeout is None and self.task is not None:
            return self.task.limits.step_seconds + 10
        return timeout

    async def state(self, *, timeout: float | None = None) -> SessionState:
        request = SessionRequest(op="state", session=self._require_session())
        return await self._call(request, SessionState, timeout)

    async def close_session(self) -> Closed | None:
        """End the current episode on the server; harmless when there is none."""
        if self.session is None:
            return None
        session, self.session = self.session, None
        return await self._call(SessionRequest(op="close", session=session), Closed, None)

    async def spec(self) -> EnvSpec:
        return await self._call(ServerRequest(op="spec"), EnvSpec, None)

    async def health(self) -> Health:
        return await self._call(ServerRequest(op="health"), Health, None)

    async def close(self) -> None:
        """End the episode and release what this client holds (its channel, if it owns one); idempotent."""
        try:
            # On a lost connection the server has already dropped its sessions.
            with contextlib.suppress(TransportError):
                await self.close_session()
        finally:
            on_close, self.on_close = self.on_close, None
            if on_close is not None:
                await on_close()
            if self._owns_channel:
                self._owns_channel = False
                await self.channel.aclose()

    def _require_session(self) -> str:
        if self.session is None:
            raise InvalidRequest("this client has no open episode; call reset(task) first")
        return self.session

    async def __aenter__(self) -> EnvClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

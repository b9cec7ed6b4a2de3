"""The ASGI application: HTTP routes for each operation, and a WebSocket channel that multiplexes them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, TypeAdapter, ValidationError

from gymbox.environments.api.errors import EnvError, InvalidRequest, PayloadTooLarge
from gymbox.environments.api.models import (
    ENVELOPE,
    Action,
    ResetRequest,
    ServerRequest,
    SessionRequest,
    StepRequest,
)
from gymbox.environments.api.sessions import SessionHost

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
_RESET_BODY = TypeAdapter(ResetRequest)
_ACTION = TypeAdapter(Action)
_ID = re.compile(r'\s*\{\s*"id"\s*:\s*(\d+)')


def describe(exc: ValidationError, limit: int = 5) -> str:
    """A short account of what failed validation: the field paths and the reasons."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def invalid(exc: ValidationError, what: str) -> InvalidRequest:
    return InvalidRequest(f"the {what} does not match the step API schema: {describe(exc)}")


class EnvServer:
    """ASGI application hosting sessions of one environment class through a `SessionHost`."""

    def __init__(self, host: SessionHost, *, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.host = host
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.host.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- HTTP --------------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(scope, receive)
            query = scope.get("query_string", b"").decode(errors="replace")
            result = await self.host.handle(self._route(scope["method"], scope["path"], body, query))
            status, payload = 200, result.model_dump_json().encode()
        except EnvError as err:
            status, payload = err.http_status, json.dumps({"error": err.to_wire()}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                raise PayloadTooLarge(f"request body exceeds {self.max_request_bytes} bytes; send less (for a "
                                      "large payload, ship it with the task suite instead)")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _route(self, method: str, path: str, body: bytes, query: str = "") -> Any:
        parts = [p for p in path.split("/") if p]
        try:
            if method == "GET" and parts in (["health"], ["spec"]):
                return ServerRequest(op=parts[0])
            if parts == ["sessions"] and method == "POST":
                return _RESET_BODY.validate_json(body or b"{}")
            if len(parts) == 3 and parts[0] == "sessions" and parts[2] == "step" and method == "POST":
                turn = parse_qs(query).get("turn", [None])[-1]  # ?turn=N: see StepRequest.turn
                return StepRequest(session=parts[1], action=_ACTION.validate_json(body or b"{}"), turn=turn)
            if len(parts) == 3 and parts[0] == "sessions" and parts[2] == "grade" and method == "POST":
                return SessionRequest(op="grade", session=parts[1])
            if len(parts) == 2 and parts[0] == "sessions" and method in ("GET", "DELETE"):
                return SessionRequest(op="state" if method == "GET" else "close", session=parts[1])
        except ValidationError as exc:
            raise invalid(exc, "request body") from None
        raise InvalidRequest(f"no route {method} {path}; routes: GET /health, GET /spec, POST /sessions, "
                             "POST /sessions/ID/step[?turn=N], POST /sessions/ID/grade, GET /sessions/ID, "
                             "DELETE /sessions/ID, WebSocket /ws")

    # ---- WebSocket ---------------------------------------------------------------------------------------

    async def _websocket(self, receive: Receive, send: Send) -> None:
        """Each text frame is an envelope {id, request}; replies carry the same id and may come out of order."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        owner = object()  # sessions opened here are closed when the connection goes
        lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def reply(text: str) -> None:
            async with lock:
                await send({"type": "websocket.send", "text": text})

        async def serve(frame: str | bytes) -> None:
            await reply(await self._frame(frame, owner))

        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                frame = message.get("text") or message.get("bytes") or ""
                task = asyncio.create_task(serve(frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            closed = await self.host.close_owned(owner)
            if closed:
                log.info("connection lost: closed its %d sessions", closed)

    async def _frame(self, frame: str | bytes, owner: object) -> str:
        request_id: Any = None
        try:
            if len(frame) > self.max_request_bytes:
                request_id = _peek_id(frame)
                raise PayloadTooLarge(f"message exceeds {self.max_request_bytes} bytes; send less")
            try:
                envelope = ENVELOPE.validate_json(frame)
            except ValidationError as exc:
                request_id = _peek_id(frame)
                raise invalid(exc, "message") from None
            request_id = envelope.id
            result: BaseModel = await self.host.handle(envelope.request, owner)
            return f'{{"id":{request_id},"ok":true,"result":{result.model_dump_json()}}}'
        except EnvError as err:
            return json.dumps({"id": request_id, "ok": False, "error": err.to_wire()}, separators=(",", ":"))
        except Exception as exc:  # never let one request take the connection down
            log.exception("unexpected error serving a request")
            error = {"code": "env_error", "message": f"server error: {exc!r}", "detail": {}}
            return json.dumps({"id": request_id, "ok": False, "error": error}, separators=(",", ":"))


def _peek_id(frame: str | bytes) -> int | None:
    """The id of a message that failed validation, when its start reads `{"id": N`, so the reply can name it."""
    head = frame[:64].decode(errors="replace") if isinstance(frame, bytes) else frame[:64]
    match = _ID.match(head)
    return int(match.group(1)) if match else None

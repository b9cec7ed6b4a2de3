"""The ASGI server through a real uvicorn process: HTTP routes, raw WebSocket frames, and bad input."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from gymbox.environments.api.errors import InvalidRequest
from gymbox.environments.runtime import ProcessRuntime
from gymbox.tasks.spec import Limits, TaskSpec


@pytest.fixture
async def http(echo_server: ProcessRuntime) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=echo_server.url, timeout=10) as client:
        yield client


def ws_url(server: ProcessRuntime) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


async def test_an_episode_over_plain_http(http: httpx.AsyncClient, echo_task: TaskSpec) -> None:
    assert (await http.get("/health")).json()["status"] == "ok"
    spec = (await http.get("/spec")).json()
    assert spec["id"] == "echo@v1" and [t["function"]["name"] for t in spec["tools"]] == ["echo", "submit"]
    started = (await http.post("/sessions", json={"task": echo_task.model_dump(), "seed": 3})).json()
    session = started["session"]
    word = echo_task.payload["word"]
    call = {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": json.dumps({"word": word})}}
    result = (await http.post(f"/sessions/{session}/step", json={"tool_calls": [call]})).json()
    assert result["observation"]["messages"][0]["content"] == word
    assert (await http.get(f"/sessions/{session}")).json()["turn"] == 1
    assert (await http.delete(f"/sessions/{session}")).json() == {"session": session, "closed": True}
    assert (await http.delete(f"/sessions/{session}")).json() == {"session": session, "closed": False}
    gone = await http.post(f"/sessions/{session}/step", json={})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_session"


async def test_grade_and_turns_over_plain_http(http: httpx.AsyncClient, echo_task: TaskSpec) -> None:
    task = echo_task.model_copy(update={"limits": Limits(max_turns=3)})
    session = (await http.post("/sessions", json={"task": task.model_dump(), "seed": 3})).json()["session"]
    skipped = (await http.post(f"/sessions/{session}/step?turn=1", json={})).json()  # turn 0: the harness's own
    assert skipped["truncated"] is False and (await http.get(f"/sessions/{session}")).json()["turn"] == 2
    bad = await http.post(f"/sessions/{session}/step?turn=soon", json={})
    assert bad.status_code == 400 and "turn" in bad.json()["error"]["message"]
    assert (await http.post(f"/sessions/{session}/grade")).json() == {"session": session, "signals": {}}
    again = await http.post(f"/sessions/{session}/grade")
    assert again.status_code == 409 and again.json()["error"]["code"] == "episode_over"


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "Invalid JSON"),
    (b'{"task": {"id": "t"}}', "task.env"),
    (b'{"task": {"id": "t", "env": "echo"}, "seed": "soon"}', "seed"),
    (b'{"task": {"id": "t", "env": "echo", "payload": {"word": "x"}}, "colour": 1}', "colour"),
])
async def test_malformed_requests_get_typed_errors(http: httpx.AsyncClient, body: bytes, fragment: str) -> None:
    response = await http.post("/sessions", content=body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid_request" and fragment in error["message"]


async def test_unknown_route_lists_the_routes(http: httpx.AsyncClient) -> None:
    response = await http.get("/teapot")
    assert response.status_code == 400 and "POST /sessions" in response.json()["error"]["message"]


async def test_a_huge_payload_is_refused_and_the_server_stays_up(http: httpx.AsyncClient) -> None:
    response = await http.post("/sessions/x/step", content=b"{" + b" " * (9 * 1024 * 1024) + b"}")
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert (await http.get("/health")).status_code == 200


async def test_capacity_error_over_http(http: httpx.AsyncClient, echo_task: TaskSpec) -> None:
    body = {"task": echo_task.model_dump()}
    sessions = [(await http.post("/sessions", json=body)).json()["session"] for _ in range(8)]
    full = await http.post("/sessions", json=body)
    assert full.status_code == 503 and full.json()["error"]["code"] == "capacity"
    for session in sessions:
        await http.delete(f"/sessions/{session}")
    assert (await http.post("/sessions", json=body)).status_code == 200


async def test_raw_websocket_frames(echo_server: ProcessRuntime, echo_task: TaskSpec) -> None:
    async with websockets.connect(ws_url(echo_server), max_size=None) as ws:
        await ws.send("{broken")
        reply = json.loads(await ws.recv())
        assert reply["ok"] is False and reply["id"] is None and reply["error"]["code"] == "invalid_request"
        await ws.send(json.dumps({"id": 5, "request": {"op": "dance"}}))
        reply = json.loads(await ws.recv())
        assert reply["id"] == 5 and "op" in reply["error"]["message"]
        await ws.send(json.dumps({"id": 6, "request": {"op": "reset", "task": echo_task.model_dump()}}))
        reply = json.loads(await ws.recv())
        assert reply["id"] == 6 and reply["ok"] and reply["result"]["env"] == "echo@v1"
        huge = json.dumps({"id": 7, "request": {"op": "step", "session": reply["result"]["session"],
                                                "action": {"text": "y" * (9 * 1024 * 1024)}}})
        await ws.send(huge)
        reply = json.loads(await ws.recv())
        assert reply["id"] == 7 and reply["error"]["code"] == "payload_too_large"
        await ws.send(json.dumps({"id": 8, "request": {"op": "health"}}))
        assert json.loads(await ws.recv())["result"]["sessions"] == 1


async def test_sessions_of_a_dropped_connection_are_closed(echo_server: ProcessRuntime, echo_task: TaskSpec) -> None:
    async with websockets.connect(ws_url(echo_server)) as ws:
        for i in range(3):
            await ws.send(json.dumps({"id": i, "request": {"op": "reset", "task": echo_task.model_dump()}}))
            assert json.loads(await ws.recv())["ok"]
    async with httpx.AsyncClient(base_url=echo_server.url) as http:
        for _ in range(200):  # the server notices the disconnect asynchronously
            if (await http.get("/health")).json()["sessions"] == 0:
                break
            await asyncio.sleep(0.01)
        assert (await http.get("/health")).json()["sessions"] == 0


async def test_replies_are_multiplexed_by_id(echo_server: ProcessRuntime, echo_task: TaskSpec) -> None:
    async with websockets.connect(ws_url(echo_server)) as ws:
        for i in range(20):
            await ws.send(json.dumps({"id": 100 + i, "request": {"op": "reset", "task": echo_task.model_dump()}}))
        replies = [json.loads(await ws.recv()) for _ in range(20)]
    assert sorted(r["id"] for r in replies) == list(range(100, 120))
    assert len({r["result"]["session"] for r in replies if r["ok"]}) == 8  # capacity 8: the rest are refused
    assert {r["error"]["code"] for r in replies if not r["ok"]} == {"capacity"}


def test_invalid_request_is_not_infra() -> None:
    assert not InvalidRequest.infra  # the harness must not retry a request that can never succeed

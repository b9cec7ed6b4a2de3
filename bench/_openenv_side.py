"""The OpenEnv half of the step-latency benchmark; runs in the benchmark's own venv, prints its figures as JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from importlib.metadata import version
from typing import Any

from _workload import Workload, loop_name, measure_all, run
from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, Observation, State

MAX_SESSIONS = 256  # as gymbox's default capacity; the benchmark opens 64 at once


class NullAction(Action):
    message: str = "noop"


class NullObservation(Observation):
    text: str = ""


class NullOpenEnv(Environment[NullAction, NullObservation, State]):
    """The null environment in OpenEnv's terms: constant tiny observations, never done."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._state = State(episode_id="null", step_count=0)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> NullObservation:
        return NullObservation(text="ready")

    def step(self, action: NullAction, timeout_s: float | None = None, **kwargs: Any) -> NullObservation:
        return NullObservation(text="ok")

    # OpenEnv's documented way to keep a call on the event loop instead of the session's worker thread: the
    # counterpart of gymbox's `inline = True`, so neither side pays a thread hop.
    async def reset_async(self, seed: int | None = None, episode_id: str | None = None,
                          **kwargs: Any) -> NullObservation:
        return self.reset(seed, episode_id)

    async def step_async(self, action: NullAction, timeout_s: float | None = None,
                         **kwargs: Any) -> NullObservation:
        return self.step(action)

    @property
    def state(self) -> State:
        return self._state


class NullClient(EnvClient[NullAction, NullObservation, State]):
    """OpenEnv's typed WebSocket client for the null environment: one connection, one session."""

    def _step_payload(self, action: NullAction) -> dict[str, Any]:
        return action.model_dump()

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[NullObservation]:
        observation = NullObservation.model_validate(
            {**payload.get("observation", {}), "done": payload.get("done", False), "reward": payload.get("reward")})
        return StepResult(observation=observation, reward=observation.reward, done=observation.done)

    def _parse_state(self, payload: dict[str, Any]) -> State:
        return State.model_validate(payload)


class OpenEnvEpisode:
    """Adapts a `NullClient` to the workload's episode protocol; closing it drops the connection and session."""

    def __init__(self, client: NullClient) -> None:
        self.client = client
        self.action = NullAction()

    async def reset(self) -> None:
        await self.client.reset()

    async def step(self) -> None:
        await self.client.step(self.action)

    async def close(self) -> None:
        await self.client.close()


def _die_with_parent() -> None:
    """Linux: have the kernel SIGTERM this process when its parent exits, however the parent ended."""
    with contextlib.suppress(OSError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(fd: int, ws: str) -> None:
    """Serve the null environment with OpenEnv's app on a listening socket inherited from the parent."""
    _die_with_parent()
    import uvicorn

    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")

    app = create_app(NullOpenEnv, NullAction, NullObservation, env_name="null", max_concurrent_envs=MAX_SESSIONS)
    # uvicorn's defaults, as OpenEnv's template runs it, except logging off (as on gymbox's server) and `ws`.
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws=ws)
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


def _start_server(ws: str) -> tuple[subprocess.Popen[bytes], str]:
    # The parent binds the port and hands the socket over: no race for a free port, and connections made
    # before the server is up wait in the backlog instead of failing.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    env = {**os.environ, "ENABLE_WEB_INTERFACE": "false"}
    try:
        proc = subprocess.Popen([sys.executable, __file__, "serve", "--fd", str(listener.fileno()), "--ws", ws],
                                pass_fds=[listener.fileno()], start_new_session=True, env=env,
                                stdin=subprocess.DEVNULL)
    finally:
        listener.close()  # the child holds it now; if it dies, connections are refused rather than left waiting
    return proc, f"http://127.0.0.1:{port}"


def _stop_server(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


async def _wait_healthy(url: str, timeout: float) -> None:
    import httpx

    # One request: it waits in the listen backlog until the server accepts, however long its imports take.
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        (await http.get("/health")).raise_for_status()


async def measure_openenv(work: Workload, start_timeout: float, ws: str) -> dict[str, Any]:
    """Start OpenEnv's server, run the workload against it with one client per session, stop it."""
    proc, url = _start_server(ws)
    try:
        await _wait_healthy(url, start_timeout)

        async def open_episode() -> OpenEnvEpisode:
            client = NullClient(base_url=url)
            await client.connect()
            return OpenEnvEpisode(client)

        figures = await measure_all(open_episode, work)
        figures["versions"] = {p: version(p) for p in ("openenv-core", "uvicorn", "websockets", "fastapi")}
        figures["client_loop"], figures["server_ws"] = loop_name(), ws
        return figures
    finally:
        _stop_server(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    serve_args = sub.add_parser("serve")
    serve_args.add_argument("--fd", type=int, required=True)
    measure_args = sub.add_parser("measure")
    measure_args.add_argument("--workload", required=True, help="the Workload as a JSON object")
    measure_args.add_argument("--start-timeout", type=float, default=120.0)
    for sub_args in (serve_args, measure_args):
        # Not uvicorn's default (websockets-sansio): with it, OpenEnv 0.3.0 logs a traceback on every session
        # close, which would charge OpenEnv for a logging bug rather than for its API.
        sub_args.add_argument("--ws", default="websockets", help="uvicorn's WebSocket implementation")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.fd, args.ws)
        return
    _die_with_parent()
    # SIGTERM from the driver unwinds through the finally blocks, which stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Workload(**json.loads(args.workload))
    figures = run(lambda: measure_openenv(work, args.start_timeout, args.ws))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

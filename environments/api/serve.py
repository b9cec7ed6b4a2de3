"""Runs an environment server with uvicorn on a loopback port or a Unix socket (`gymbox serve`, the runtimes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import uvicorn

from gymbox.environments.api.registry import load_target
from gymbox.environments.api.server import DEFAULT_MAX_REQUEST_BYTES, EnvServer
from gymbox.environments.api.sessions import SessionHost


def build_config(app: EnvServer, *, host: str = "127.0.0.1", port: int = 0, uds: str | None = None,
                 log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, uds=uds, loop="uvloop", http="httptools", ws="websockets-sansio",
        # Our own size check answers with a typed error; the transport's cap only stops abuse.
        ws_max_size=4 * app.max_request_bytes, ws_ping_interval=None, lifespan="on", log_level=log_level,
        access_log=False, timeout_graceful_shutdown=5,
    )


class _SandboxedServer(uvicorn.Server):
    """A server that keeps no signal handlers: in a sandbox, the agent's `kill 1` must not stop it."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def _ignore(signum: int, frame: object) -> None:
    """A signal handler that does nothing."""


def _harden() -> None:
    """Inside an episode's container, where the agent's commands run beside this server (as another user when the
    runtime gives one, `GYMBOX_AGENT_USER`).

    Termination signals are ignored (init forwards the agent's `kill 1` to us; the runtime removes the container
    with SIGKILL), and the process is made non-dumpable so that other processes cannot read its memory or
    environment through /proc (the task's checks live there).
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        # A handler that does nothing, not SIG_IGN: an ignored signal stays ignored in every program this server
        # starts (the agent's commands, a task's background jobs), so `kill PID` would not stop them; a handler is
        # reset to the default when a child execs.
        signal.signal(sig, _ignore)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(4, 0)  # PR_SET_DUMPABLE, 0
    except OSError:
        pass


def _die_with_parent(parent_pid: int) -> None:
    """Stop this server when the process that started it is gone, however it ended."""
    try:  # Linux: the kernel signals us when the parent exits, even on SIGKILL
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

    async def watch() -> None:  # portable fallback
        while os.getppid() == parent_pid:
            await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    asyncio.get_running_loop().create_task(watch())


def add_arguments(parser: argparse.ArgumentParser, *, port: int = 8000, log_level: str = "warning") -> None:
    """The server's options, shared by `gymbox serve` and `python -m gymbox.environments.api.serve`."""
    parser.add_argument("target", metavar="env", help="environment id (toolcall, toolcall@v1) or module:Class")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--uds", help="serve on this Unix socket instead of a port")
    parser.add_argument("--capacity", type=int, help="most sessions at once (default: the environment's own)")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds before an idle session expires")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument("--parent-pid", type=int, help="exit when this process exits")
    parser.add_argument("--log-level", default=log_level)
    parser.add_argument("--sandboxed", action="store_true",
                        help="inside an episode's container: ignore termination signals, hide this process's memory")


def serve_from_args(args: argparse.Namespace) -> None:
    serve(args.target, host=args.host, port=args.port, uds=args.uds, capacity=args.capacity,
          idle_timeout=args.idle_timeout, max_request_bytes=args.max_request_bytes, parent_pid=args.parent_pid,
          log_level=args.log_level, sandboxed=args.sandboxed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gymbox-serve", description=__doc__)
    add_arguments(parser)
    serve_from_args(parser.parse_args(argv))


def serve(target: str, *, host: str = "127.0.0.1", port: int = 8000, uds: str | None = None,
          capacity: int | None = None, idle_timeout: float = 600.0, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
          parent_pid: int | None = None, log_level: str = "warning", sandboxed: bool = False) -> None:
    """Serve `target` until interrupted; prints one line saying where once it listens."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    env_cls = load_target(target)
    app = EnvServer(SessionHost(env_cls, capacity=capacity or env_cls.capacity, idle_timeout=idle_timeout),
                    max_request_bytes=max_request_bytes)
    config = build_config(app, host=host, port=port, uds=uds, log_level=log_level)
    if sandboxed:
        _harden()
    server = (_SandboxedServer if sandboxed else uvicorn.Server)(config)

    async def run() -> None:
        if parent_pid:
            _die_with_parent(parent_pid)
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            bound = port if uds or port else server.servers[0].sockets[0].getsockname()[1]
            where = f"unix:{uds}" if uds else f"http://{host}:{bound}"
            print(f"gymbox: serving {env_cls.env_id()} on {where}", flush=True)
        await serving

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


if __name__ == "__main__":
    main()

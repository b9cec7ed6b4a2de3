"""The `process` runtime: the server runs in a child process on a Unix socket or a loopback port."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import httpx

from gymbox.environments.api.client import EnvClient, WsChannel
from gymbox.environments.api.env import Environment
from gymbox.environments.api.errors import TransportError
from gymbox.environments.runtime.base import Runtime, target_of
from gymbox.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after `grace` seconds."""
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


class ProcessRuntime(Runtime):
    """Runs `gymbox serve` in a child process, health-checked at start and stopped with its owner.

    The child asks the kernel to terminate it when this process dies (even by SIGKILL), and a finalizer
    stops it when the runtime is garbage collected or the interpreter exits: it is never left behind. A server
    that exits while the runtime runs (killed, out of memory) is started again for the next episode; the
    episodes it was running end with a `transport` error (infrastructure: retried, then masked).
    """

    kind = "process"

    def __init__(self, env: str | type[Environment], *, uds: bool = True, port: int | None = None,
                 capacity: int = 256, idle_timeout: float = 600.0, start_timeout: float = 60.0,
                 env_vars: dict[str, str] | None = None) -> None:
        self.target = target_of(env)
        self.env_vars = env_vars or {}
        self.use_uds = uds and port is None
        self.port = port
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self._channel: WsChannel | None = None
        self._finalizer: weakref.finalize | None = None
        self._running = False  # between start() and stop(): a server that exits meanwhile is restarted
        self._restarting = asyncio.Lock()
        self.restarts = 0

    @property
    def socket_path(self) -> str | None:
        return str(self.workdir / "env.sock") if self.use_uds and self.workdir else None

    @property
    def url(self) -> str | None:
        return None if self.use_uds else f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "server.log" if self.workdir else None

    async def start(self) -> None:
        if self.proc is None:
            await self._launch()
        self._running = True

    async def _launch(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gymbox-"))
        where = ["--uds", str(self.workdir / "env.sock")]
        if not self.use_uds:
            self.port = self.port or free_port()
            where = ["--port", str(self.port)]
        command = [sys.executable, "-m", "gymbox.environments.api.serve", self.target, *where,
                   "--capacity", str(self.capacity), "--idle-timeout", str(self.idle_timeout),
                   "--parent-pid", str(os.getpid())]
        try:
            with open(self.workdir / "server.log", "wb") as log:
                self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True, env={**os.environ, **self.env_vars})
        except BaseException:  # not started (a bad option): nothing runs, leave no files either
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _cleanup, self.proc, self.workdir)
        try:
            await self._wait_healthy()
            self._channel = await WsChannel.connect(self.url, uds=self.socket_path)
        except BaseException:
            await self._shut()
            raise

    async def _wait_healthy(self) -> None:
        assert self.proc is not None
        transport = httpx.AsyncHTTPTransport(uds=self.socket_path) if self.use_uds else None
        base = self.url or "http://localhost"
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(transport=transport, base_url=base, timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise TransportError(f"the server for {self.target} exited with code {self.proc.returncode} "
                                         f"while starting; its log ends with:\n{self._log_tail()}")
                try:
                    if (await http.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TransportError(f"the server for {self.target} was not healthy after "
                                         f"{self.start_timeout:g} s; its log ends with:\n{self._log_tail()}")
                await asyncio.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"

    async def client(self, *, timeout: float = 60.0, task: TaskSpec | None = None) -> EnvClient:
        if not self._running:
            raise TransportError(f"the process runtime for {self.target} is not started; use `async with`")
        if self.proc is None or self.proc.poll() is not None:
            await self._restart()
        assert self._channel is not None
        return EnvClient(self._channel, timeout=timeout)

    async def _restart(self) -> None:
        """Start a new server in place of one that exited (or that a failed restart left missing)."""
        async with self._restarting:  # the episodes that find it dead together restart it once
            if self.proc is not None and self.proc.poll() is None:
                return
            if self.proc is not None:
                log.warning("the server for %s exited with code %s; starting a new one. Its log ended with:\n%s",
                            self.target, self.proc.returncode, self._log_tail())
            await self._shut()
            try:
                await self._launch()
            except TransportError as err:
                raise TransportError(f"the server for {self.target} exited and a new one could not start: "
                                     f"{err}") from err
            self.restarts += 1

    async def stop(self) -> None:
        self._running = False
        await self._shut()

    async def _shut(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._end_process)

    def terminate(self) -> None:
        """Stop the server process and remove its files, from synchronous code; idempotent."""
        self._running = False
        self._end_process()

    def _end_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self.proc = None


def _cleanup(proc: subprocess.Popen[bytes], workdir: Path) -> None:
    _stop_process(proc)
    shutil.rmtree(workdir, ignore_errors=True)

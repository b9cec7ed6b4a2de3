"""The `docker` runtime: one container per episode, from a warm pool, reached through a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gymbox.environments.api.client import EnvClient, WsChannel
from gymbox.environments.api.env import Environment
from gymbox.environments.api.errors import EnvError, TransportError
from gymbox.environments.api.models import Health, ServerRequest
from gymbox.environments.api.registry import load_target
from gymbox.environments.runtime.base import Runtime, target_of
from gymbox.environments.runtime.containers import ContainerLimits, docker_client, labels, node_capacity, reap
from gymbox.environments.runtime.images import image_name
from gymbox.tasks.spec import TaskSpec

log = logging.getLogger(__name__)
SOCKET_DIR = "/run/gymbox"
SERVER_CAPS = ("SETUID", "SETGID", "KILL")  # a server that runs the agent's commands as the agent's user


@dataclass(eq=False)
class Container:
    id: str
    name: str
    socket_dir: Path
    started: float = field(default_factory=time.monotonic)
    holds_slot: bool = False  # one of the runtime's `capacity` slots, given back when the container is removed

    @property
    def socket(self) -> str:
        return str(self.socket_dir / "env.sock")


class DockerRuntime(Runtime):
    """Hands each episode a container of its own from a warm pool that refills in the background.

    Containers run the environment's server with no network, no capabilities, a read-only root file system and
    a size-limited writable workspace; each is labeled with its owner and expiry, and a reaper removes those
    whose owner is gone or whose time has passed (at start, and while the runtime runs). The server of an
    environment that runs the agent's commands (isolation "container") is root with `SERVER_CAPS` alone, and
    runs them as the agent's user (`ContainerLimits.user`).

    At most `capacity` containers exist at once (pooled, starting or leased): by default as many as the engine's
    machine can run with `limits` (see `node_capacity`); episodes beyond it wait in `client` until a container is
    removed, since containers that share too few CPUs finish fewer episodes per second, not more.
    """

    kind = "docker"

    def __init__(self, env: str | type[Environment], *, image: str | None = None, pool_size: int = 2,
                 limits: ContainerLimits | None = None, ttl: float = 3600.0, start_timeout: float = 60.0,
                 reap_every: float = 60.0, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 container, not {capacity}; leave it out to size it "
                             "from the machine's CPUs and memory")
        self.target = target_of(env)
        self.env_cls = env if isinstance(env, type) else load_target(env)
        self.image = image or image_name(self.env_cls.name)
        self.pool_size = pool_size
        self.limits = limits or ContainerLimits()
        self.ttl = ttl
        self.start_timeout = start_timeout
        self.reap_every = reap_every
        self.capacity = capacity
        self._slots: asyncio.Semaphore | None = None
        self.image_id: str | None = None
        self._docker: Any = None
        self._pool: asyncio.Queue[Container] = asyncio.Queue()
        self._starting = 0
        self._leased: set[Container] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workdir: Path | None = None
        self._stopped = False
        self._last_error: str | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        import docker.errors

        if self._docker is not None:
            return
        self._docker = await asyncio.to_thread(docker_client)
        if self.capacity is None:
            self.capacity = await asyncio.to_thread(node_capacity, self._docker, self.limits)
        self._slots = asyncio.Semaphore(self.capacity)
        try:
            image = await asyncio.to_thread(self._docker.images.get, self.image)
        except docker.errors.ImageNotFound:
            raise TransportError(f"no image {self.image}; build it with `gymbox images build "
                                 f"{self.env_cls.name}`") from None
        self.image_id = image.id
        _warn_if_stale(image.labels or {}, self.image)
        self._workdir = Path(tempfile.mkdtemp(prefix="gymbox-docker-"))
        os.chmod(self._workdir, 0o755)
        removed = await asyncio.to_thread(reap, self._docker)
        for info, reason in removed:
            log.info("reaped container %s (%s): %s", info.name, info.env, reason)
        self._spawn(self._reap_forever(), name="reaper")
        self._refill()

    async def stop(self) -> None:
        if self._docker is None or self._stopped:
            return
        self._stopped = True
        # Engine calls run in threads and cannot be cancelled halfway: let starts and removals finish (a start
        # removes its own container once it sees the runtime stopped, see _start_one); only the reaper stops.
        for task in self._tasks:
            if task.get_name() in ("reaper", "await-slot"):  # a start still waiting for a slot has started nothing
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        doomed = list(self._leased)
        while not self._pool.empty():
            doomed.append(self._pool.get_nowait())
        await asyncio.gather(*(self._remove(c) for c in doomed))
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # ---- episodes --------------------------------------------------------------------------------------------

    async def client(self, *, timeout: float = 60.0, task: TaskSpec | None = None) -> EnvClient:
        """A client on a container of its own; closing the client removes the container.

        Pooled containers have no network; a task that declares `network` gets a container started for it.
        """
        if self._docker is None or self._stopped:
            raise TransportError("the docker runtime is not started; use `async with DockerRuntime(...)`")
        networked = bool(task and task.network) and not self.limits.network
        for _ in range(3):  # a container that died in the pool is replaced, a bounded number of times
            container = await (self._start_networked() if networked else self._take())
            try:
                channel = await WsChannel.connect(uds=container.socket)
                await channel.call(ServerRequest(op="health"), Health, timeout=5.0)
            except EnvError as exc:
                log.warning("container %s failed its health check (%s); replacing it", container.name, exc)
                self._spawn(self._remove(container))
                continue
            self._leased.add(container)

            async def release(container: Container = container, channel: WsChannel = channel) -> None:
                await channel.aclose()
                self._leased.discard(container)
                self._spawn(self._remove(container))  # removal (about 0.3 s) must not hold up the episode loop

            return EnvClient(channel, timeout=timeout, on_close=release)
        raise TransportError(f"three containers of {self.image} in a row failed their health check; see "
                             "`docker logs` of the gymbox containers, or `gymbox containers ls`")

    # ---- the pool ------------------------------------------------------------------------------------------

    async def _take(self) -> Container:
        """The next ready container; raises with the engine's own words when containers cannot start."""
        deadline = time.monotonic() + self.start_timeout + 10
        while True:
            assert self._slots is not None
            if self._slots.locked() and self._leased:  # waiting its turn behind running episodes: not a slow start
                deadline = time.monotonic() + self.start_timeout + 10
            if self._pool.empty() and self._starting == 0:
                if self._last_error is not None:
                    raise TransportError(f"cannot start a container of {self.image}: {self._last_error}")
                self._refill(extra=1)
            try:
                container = await asyncio.wait_for(self._pool.get(), 0.5)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TransportError(f"no container of {self.image} became ready within "
                                         f"{self.start_timeout + 10:g} s") from None
                continue
            self._refill()
            return container

    def _refill(self, extra: int = 0) -> None:
        assert self.capacity is not None
        missing = min(self.pool_size + extra, self.capacity) - self._pool.qsize() - self._starting
        for _ in range(max(missing, 0)):
            self._starting += 1
            self._spawn(self._start_one(), name="await-slot")

    async def _start_one(self) -> None:
        assert self._slots is not None
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._starting -= 1
            raise
        task = asyncio.current_task()
        if task is not None:
            task.set_name("start-container")  # from here on it owns a slot and runs to the end (see stop)
        try:
            container = await self._run_container()
        except Exception as exc:
            self._slots.release()
            log.error("could not start a container of %s: %s", self.image, exc)
            self._last_error = str(exc)
            self._starting -= 1
            return
        container.holds_slot = True
        self._starting -= 1
        self._last_error = None
        if self._stopped:
            await self._remove(container)
        else:
            self._pool.put_nowait(container)

    async def _start_networked(self) -> Container:
        """A container with the network, started for one episode once a slot is free."""
        assert self._slots is not None
        while True:
            if self._slots.locked() and not self._pool.empty():  # an idle pooled container gives up its slot
                await self._remove(self._pool.get_nowait())
            try:
                await asyncio.wait_for(self._slots.acquire(), 0.5)
                break
            except TimeoutError:
                continue
        try:
            container = await self._run_container(network=True)
        except BaseException:
            self._slots.release()
            raise
        container.holds_slot = True
        return container

    async def _run_container(self, *, network: bool = False) -> Container:
        assert self._workdir is not None
        name = f"gymbox-{self.env_cls.name}-{uuid.uuid4().hex[:10]}"
        socket_dir = self._workdir / name
        socket_dir.mkdir()
        os.chmod(socket_dir, 0o777)  # the server inside may run as an unprivileged user
        environment = {"GYMBOX_WORKSPACE": "/workspace"}
        if self.env_cls.isolation == "container":
            # The server runs the agent's commands: it is root, with only the capabilities to start them as the
            # agent's user and to end them, so that they cannot end it (the image keeps its socket out of reach).
            options = self.limits.run_options(user="0:0", caps=SERVER_CAPS)
            environment["GYMBOX_AGENT_USER"] = self.limits.user
        else:
            options = self.limits.run_options()
        if network:
            options["network_mode"] = "bridge"
        # `timeout` bounds the server's life inside the container even if no reaper ever runs again.
        # (`-s KILL`: the sandboxed server ignores SIGTERM.)
        command = ["timeout", "-s", "KILL", str(int(self.ttl)), "/opt/gymbox/bin/gymbox", "serve",
                   self.env_cls.env_id(), "--uds", f"{SOCKET_DIR}/env.sock", "--capacity", "1",
                   "--idle-timeout", str(int(self.ttl)), "--sandboxed"]
        raw = await asyncio.to_thread(
            self._docker.containers.run, self.image, command, name=name, detach=True,
            labels=labels(self.env_cls.env_id(), self.ttl), volumes={str(socket_dir): {"bind": SOCKET_DIR}},
            environment=environment, **options)
        container = Container(raw.id, name, socket_dir)
        try:
            await self._wait_healthy(container)
        except BaseException:
            await self._remove(container)
            raise
        return container

    async def _wait_healthy(self, container: Container) -> None:
        deadline = time.monotonic() + self.start_timeout
        transport = httpx.AsyncHTTPTransport(uds=container.socket)
        async with httpx.AsyncClient(transport=transport, base_url="http://container", timeout=2.0) as http:
            while True:
                if os.path.exists(container.socket):
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/health")).status_code == 200:
                            return
                raw = await asyncio.to_thread(self._docker.containers.get, container.id)
                if raw.status in ("exited", "dead"):
                    logs = raw.logs(tail=20).decode(errors="replace")
                    raise TransportError(f"container {container.name} exited while starting; its log:\n{logs}")
                if time.monotonic() > deadline:
                    raise TransportError(f"container {container.name} was not healthy after {self.start_timeout:g} s")
                await asyncio.sleep(0.05)

    async def _remove(self, container: Container) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            await asyncio.to_thread(self._docker.api.remove_container, container.id, force=True, v=True)
        shutil.rmtree(container.socket_dir, ignore_errors=True)
        if container.holds_slot and self._slots is not None:
            container.holds_slot = False
            self._slots.release()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_every)
            await asyncio.to_thread(reap, self._docker)

    def _spawn(self, coro: Any, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _warn_if_stale(image_labels: dict[str, str], image: str) -> None:
    """Containers run the code baked into the image: say so when this checkout's sources have moved on."""
    from gymbox.environments.runtime.images import repo_root, source_hash

    try:
        current = source_hash(repo_root())
    except FileNotFoundError:
        return  # an installed package, not a checkout: nothing to compare with
    built = image_labels.get("gymbox.source_hash")
    if built != current:
        log.warning("%s was built from other sources (%s) than this checkout (%s); its containers run the old "
                    "code until `gymbox images build` rebuilds it", image, built, current)

"""Container bookkeeping: the Docker client, the limits and confinement every episode container gets, labels naming
each container's owner and expiry, and the reaper that honours them."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from gymbox.environments.api.errors import TransportError

LABEL = "gymbox.managed"
OWNER = "gymbox.owner"
EXPIRES = "gymbox.expires"
ENV = "gymbox.env"


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:8]
    except OSError:
        return "noboot"


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot: with the pid, it names a process uniquely."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def owner_label(pid: int | None = None) -> str:
    """`host/boot/pid/start`: enough to tell, later, whether the owning process still lives."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_ticks(pid) or '?'}"


def owner_alive(label: str) -> bool | None:
    """True or False for an owner on this machine (this boot); None when it is another machine's."""
    try:
        host, boot, pid, start = label.split("/")
    except ValueError:
        return False  # a label we did not write in this form: treat its owner as gone
    if host != socket.gethostname() or boot != _boot_id():
        return None if host != socket.gethostname() else False
    ticks = _start_ticks(int(pid))
    return ticks is not None and (start == "?" or ticks == start)


@dataclass(frozen=True)
class Volume:
    """A writable folder in memory of at most `size`, in a container whose root file system is read-only: a tmpfs
    volume, which (unlike a tmpfs mount) the engine sees when it copies files in or out; it starts empty, or with
    the image's own folder at that path (`from_image`), and goes away with the container."""

    path: str
    size: str
    mode: str = "0755"
    agent_owned: bool = True  # owned by the agent's user; else by root
    from_image: bool = False

    def options(self, uid: str, gid: str) -> str:
        owner = f",uid={uid},gid={gid}" if self.agent_owned else ""
        return f"size={self.size},mode={self.mode}{owner}"


@dataclass(frozen=True)
class ContainerLimits:
    """Resources and privileges of one episode's container. The defaults suit an environment server whose agent
    writes only in /workspace; a container whose image holds the agent's files (swe's checkout) gets them in
    `volumes` filled from the image. Every folder the agent can write is size-limited: a writable root file system
    has no limit on some hosts' storage, so an agent could fill the host's disk."""

    cpus: float = 1.0
    memory: str = "1g"
    pids: int = 256
    workspace: str | None = "256m"  # a writable /workspace of this size (a tmpfs, so it also counts against memory)
    tmp: str = "64m"
    tmp_exec: bool = False  # whether programs may run from /tmp
    read_only: bool = True  # the root file system
    network: bool = False  # tasks that need the network say so; the default is none at all
    user: str = "1000:1000"  # the agent's user
    volumes: tuple[Volume, ...] = ()  # size-limited writable folders the engine can copy files into

    def run_options(self, *, user: str | None = None, caps: tuple[str, ...] = ()) -> dict[str, Any]:
        """Docker run options: CPU, memory (no swap beyond it) and process limits, no capabilities but `caps`, no
        privilege gain, an init to reap orphans, no network unless asked; the container's process runs as `user`
        (by default the agent's)."""
        import docker.types

        tmpfs = {"/tmp": f"size={self.tmp},mode=1777{',exec' if self.tmp_exec else ''}"}
        if self.workspace is not None:
            tmpfs["/workspace"] = f"size={self.workspace},mode=0755,uid=1000,gid=1000"
        options = {"network_mode": "bridge" if self.network else "none", "nano_cpus": int(self.cpus * 1e9),
                   "mem_limit": self.memory, "memswap_limit": self.memory, "pids_limit": self.pids,
                   "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "init": True,
                   "read_only": self.read_only, "user": user or self.user, "tmpfs": tmpfs}
        if caps:
            options["cap_add"] = list(caps)
        if self.volumes:
            uid, _, gid = self.user.partition(":")
            options["mounts"] = [docker.types.Mount(
                volume.path, None, type="volume", no_copy=True,  # the engine's copy would go to a tmpfs unmounted next
                driver_config=docker.types.DriverConfig("local", {"type": "tmpfs", "device": "tmpfs",
                                                                  "o": volume.options(uid, gid or uid)}))
                for volume in self.volumes]
        return options


def docker_client(timeout: int = 60) -> Any:
    """A client of the Docker engine, checked with a ping; a `TransportError` that says how to start the engine
    when it cannot be reached. `timeout` bounds each engine call (a command run in a container is one call)."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise TransportError(f"cannot reach the Docker engine ({exc}); start it (`bash scripts/docker.sh` installs "
                             "and starts it, or run `dockerd &` as root) and try again") from exc
    return client


_UNITS = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def memory_bytes(size: str) -> int:
    """Bytes in a Docker memory size ("1g", "512m", "65536")."""
    text = size.strip().lower()
    unit = _UNITS.get(text[-1:])
    try:
        return int(float(text[:-1] if unit else text) * (unit or 1))
    except ValueError:
        raise ValueError(f"not a Docker memory size: {size!r}; write a number of bytes with an optional unit "
                         "b, k, m or g, such as '1g'") from None


def capacity_for(limits: ContainerLimits, *, cpus: float, memory: int) -> int:
    """How many containers with `limits` fit on a machine with `cpus` and `memory` bytes: its CPUs over each
    container's CPUs, and its memory over each container's memory; at least 1."""
    by_cpu = int(cpus / limits.cpus) if limits.cpus > 0 else int(cpus)
    by_memory = memory // memory_bytes(limits.memory) if memory > 0 else by_cpu
    return max(1, min(by_cpu, by_memory))


def node_capacity(client: Any, limits: ContainerLimits) -> int:
    """`capacity_for` the engine's machine, as `docker info` describes it (NCPU, MemTotal; this machine's CPU count
    when the engine gives none)."""
    info = client.info()
    return capacity_for(limits, cpus=info.get("NCPU") or os.cpu_count() or 1, memory=info.get("MemTotal") or 0)


def labels(env_id: str, ttl: float) -> dict[str, str]:
    return {LABEL: "1", OWNER: owner_label(), EXPIRES: str(int(time.time() + ttl)), ENV: env_id}


@dataclass
class ContainerInfo:
    id: str
    name: str
    env: str
    status: str
    owner: str
    owner_alive: bool | None
    expires_in: float

    @property
    def stale(self) -> str | None:
        """Why the reaper should remove it, or None."""
        if self.status in ("exited", "dead"):
            return f"it has {self.status}"
        if self.owner_alive is False:
            return f"its owner {self.owner} is gone"
        if self.expires_in < 0:
            return f"it expired {-self.expires_in:.0f} s ago"
        return None


def list_containers(client: Any) -> list[ContainerInfo]:
    """Every container gymbox started on this engine, running or not."""
    found = []
    now = time.time()
    # One list call with labels and state: inspecting each container in turn races with removals.
    for row in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        row_labels = row.get("Labels") or {}
        owner = row_labels.get(OWNER, "")
        found.append(ContainerInfo(
            id=row["Id"][:12], name=(row.get("Names") or ["/?"])[0].lstrip("/"), env=row_labels.get(ENV, "?"),
            status=row.get("State", "?"), owner=owner, owner_alive=owner_alive(owner),
            expires_in=float(row_labels.get(EXPIRES, "0")) - now,
        ))
    return found


def reap(client: Any, *, everything: bool = False) -> list[tuple[ContainerInfo, str]]:
    """Remove stale containers (or all of gymbox's with `everything`); returns what was removed and why."""
    import docker.errors

    removed = []
    for info in list_containers(client):
        reason = "asked to remove everything" if everything else info.stale
        if reason is None:
            continue
        try:
            client.api.remove_container(info.id, force=True, v=True)  # v: its volumes too
            removed.append((info, reason))
        except docker.errors.NotFound:
            pass  # another reaper was faster
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: another reaper is removing it right now
                raise
    return removed

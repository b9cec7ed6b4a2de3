"""Container bookkeeping: the confinement every episode container gets, labels naming each container's owner
and expiry, and the reaper that honours them."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

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


def confinement(*, cpus: float, memory: str, pids: int, network: bool = False) -> dict[str, Any]:
    """Run options every episode container shares: CPU, memory (no swap beyond it) and process limits, no
    capabilities, no privilege gain, an init to reap orphans, and no network unless the task needs it."""
    return {"network_mode": "bridge" if network else "none", "nano_cpus": int(cpus * 1e9), "mem_limit": memory,
            "memswap_limit": memory, "pids_limit": pids, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
            "init": True}


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
            client.api.remove_container(info.id, force=True)
            removed.append((info, reason))
        except docker.errors.NotFound:
            pass  # another reaper was faster
    return removed

"""One episode's container, driven from outside through the Docker engine: commands, files, restarts."""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from gymbox.environments.api.errors import TransportError
from gymbox.environments.runtime.containers import confinement, labels

AGENT = "1000:1000"
# The wrapper every command runs in: a time limit for the command and everything it starts (`timeout` signals
# its whole process group), output to a file so that background jobs cannot hold the engine's stream open, and
# output beyond the cap cut in the middle, where it is least useful.
_WRAP = """\
out=$(mktemp /tmp/.gymbox-out.XXXXXX) || exit 125
timeout -s KILL {seconds} bash -c "$1" </dev/null >"$out" 2>&1
code=$?
size=$(stat -c %s "$out")
if [ "$size" -gt {cap} ]; then
  head -c {half} "$out"; printf '\\n[... %s bytes cut ...]\\n' $((size - {keep})); tail -c {half} "$out"
else
  cat "$out"
fi
rm -f "$out"
exit $code
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Resources and privileges of an episode's container."""

    cpus: float = 1.0
    memory: str = "2g"
    pids: int = 512
    tmp: str = "256m"
    ttl: float = 3 * 3600.0  # the reaper removes a container its owner forgot after this long

    def run_options(self) -> dict[str, Any]:
        return {**confinement(cpus=self.cpus, memory=self.memory, pids=self.pids),
                "tmpfs": {"/tmp": f"size={self.tmp},mode=1777,exec"}}


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str
    seconds: float
    timed_out: bool

    def render(self) -> str:
        """What the agent sees: the output, then how the command ended when that is not plain success."""
        text = self.output if self.output.strip() else "(no output)"
        if self.timed_out:
            return f"{text}\n[killed: the command ran past its time limit of {self.seconds:.0f} s]"
        return text if self.exit_code == 0 else f"{text}\n[exit code {self.exit_code}]"


class Sandbox:
    """A running container of a package image; removed by `remove()` (and by the reaper if its owner dies)."""

    def __init__(self, client: Any, container_id: str, name: str) -> None:
        self.client, self.id, self.name = client, container_id, name

    @classmethod
    def start(cls, client: Any, image: str, *, env_id: str, limits: SandboxLimits | None = None) -> Sandbox:
        import docker.errors

        limits = limits or SandboxLimits()
        name = f"gymbox-swe-{uuid.uuid4().hex[:10]}"
        try:
            # The container's own process runs as root (with no capabilities): the agent's user cannot signal
            # it, so `kill -9 -1` ends the agent's processes, not the container.
            raw = client.containers.run(image, name=name, detach=True, labels=labels(env_id, limits.ttl),
                                        user="0:0", **limits.run_options())
        except docker.errors.ImageNotFound:
            raise TransportError(f"no image {image}; build it with `gymbox swe images`") from None
        except docker.errors.DockerException as exc:
            raise TransportError(f"cannot start a container of {image}: {exc}") from exc
        return cls(client, raw.id, name)

    def exec(self, command: str, *, timeout: float, user: str = AGENT, workdir: str = "/repo",
             max_output: int = 16_384, env: dict[str, str] | None = None) -> ExecResult:
        """Run a bash command line; it and whatever it started are killed after `timeout` seconds."""
        half = max_output // 2
        script = _WRAP.format(seconds=max(1, int(timeout)), cap=max_output, half=half, keep=2 * half)
        started = time.monotonic()
        raw = self._api("exec_create", self.id, ["bash", "-c", script, "gymbox", command], user=user,
                        workdir=workdir, environment=env)
        output = self._api("exec_start", raw["Id"])
        code = self._api("exec_inspect", raw["Id"])["ExitCode"]
        seconds = time.monotonic() - started
        if code is None:
            raise TransportError(f"a command in container {self.name} did not finish; the container may have died")
        timed_out = code == 137 and seconds >= int(timeout) - 0.5
        return ExecResult(code, output.decode("utf-8", errors="replace"), timeout if timed_out else seconds,
                          timed_out)

    def put_files(self, files: dict[str, bytes], *, uid: int = 1000, mode: int = 0o644) -> None:
        """Write files (absolute paths) through the engine, owned by `uid`, in folders of theirs.

        Not under a tmpfs mount such as /tmp: the engine writes beneath the mount, where nothing sees the files.
        """
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for folder in sorted({str(PurePosixPath(path).parent) for path in files} - {"/"}):
                info = tarfile.TarInfo(folder.lstrip("/"))
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, uid, uid
                tar.addfile(info)
            for path, data in files.items():
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, uid, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        self.put_archive("/", buffer.getvalue())

    def put_archive(self, path: str, data: bytes) -> None:
        if not self._api("put_archive", self.id, path, data):
            raise TransportError(f"the engine refused to copy files into container {self.name} at {path}")

    def get_archive(self, path: str) -> bytes:
        stream, _ = self._api("get_archive", self.id, path)
        return b"".join(stream)

    def read_file(self, path: str) -> bytes | None:
        """A file's bytes, or None when there is no such file."""
        import docker.errors

        try:
            data = self.get_archive(path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None and member.isfile() else None
            return handle.read() if handle is not None else None

    def end_agent_processes(self) -> None:
        """Kill every process of the agent's user (the container's own process is root's and stays); twice, for
        children forked while the first signal went out. Falls back to a restart if the container stopped."""
        if self._api("inspect_container", self.id)["State"]["Running"]:
            raw = self._api("exec_create", self.id, ["bash", "-c", "kill -KILL -1; sleep 0.05; kill -KILL -1; true"],
                            user=AGENT)
            self._api("exec_start", raw["Id"])
            if self._api("exec_inspect", raw["Id"])["ExitCode"] == 0:
                return
        self.restart()

    def restart(self) -> None:
        """End every process in the container (its init is killed, so the kernel ends the rest); files stay."""
        self._api("restart", self.id, timeout=0)

    def remove(self) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(self.id, force=True)

    def _api(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import docker.errors

        try:
            return getattr(self.client.api, method)(*args, **kwargs)
        except docker.errors.NotFound as exc:
            if method == "get_archive":
                raise
            raise TransportError(f"container {self.name} is gone ({exc.explanation}); the episode cannot go on") \
                from exc
        except docker.errors.APIError as exc:
            raise TransportError(f"the Docker engine failed on {method} in container {self.name}: "
                                 f"{exc.explanation or exc}") from exc

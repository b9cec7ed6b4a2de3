"""`ContainerSandbox`: one episode's container, driven from outside through the Docker engine (this process never
runs the agent's commands itself): commands, files in and out, ending what the agent left running."""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from gymbox.environments.api.errors import TransportError
from gymbox.environments.runtime.containers import ContainerLimits, labels
from gymbox.environments.runtime.sandbox import MAX_OUTPUT, ExecResult, OutputCap, Sandbox, Wording

# The wrapper every command runs in: a time limit for the command and everything it starts (`timeout` signals
# its whole process group), and output to a file so that background jobs cannot hold the engine's stream open.
# It prints the output's size, then the output, or only its two ends when it is over the cap (cut where it is
# least useful; `OutputCap` puts the marker between them).
_WRAP = """\
out=$(mktemp /tmp/.gymbox-out.XXXXXX) || exit 125
timeout -s KILL {seconds} bash -c "$1" </dev/null >"$out" 2>&1
code=$?
size=$(stat -c %s "$out")
echo "$size"
if [ "$size" -gt {cap} ]; then
  head -c {half} "$out"; tail -c {half} "$out"
else
  cat "$out"
fi
rm -f "$out"
exit $code
"""
# The image holds the agent's files (a checkout), so the root file system stays writable; test suites get more
# memory and processes than a server's container, and may run programs from /tmp.
LIMITS = ContainerLimits(memory="2g", pids=512, tmp="256m", tmp_exec=True, workspace=None, read_only=False)


class ContainerSandbox(Sandbox):
    """A running container of an image; removed by `close()` (and by the reaper if its owner dies)."""

    def __init__(self, client: Any, container_id: str, name: str, *, user: str = ContainerLimits.user,
                 wording: Wording | None = None) -> None:
        self.client, self.id, self.name = client, container_id, name
        self.user, self.wording = user, wording or Wording()

    @classmethod
    def start(cls, client: Any, image: str, *, env_id: str, limits: ContainerLimits = LIMITS,
              ttl: float = 3 * 3600.0, wording: Wording | None = None) -> ContainerSandbox:
        """A container of `image` running its own command; `ttl`: the reaper removes it after this long even if
        its owner forgot it."""
        import docker.errors

        name = f"gymbox-{env_id.split('@')[0]}-{uuid.uuid4().hex[:10]}"
        try:
            # The container's own process runs as root (with no capabilities): the agent's user cannot signal
            # it, so `kill -9 -1` ends the agent's processes, not the container.
            raw = client.containers.run(image, name=name, detach=True, labels=labels(env_id, ttl),
                                        **limits.run_options(user="0:0"))
        except docker.errors.ImageNotFound:
            raise TransportError(f"no image {image}; build it first (`gymbox swe images` builds the swe "
                                 "packages', `gymbox images build` the environments')") from None
        except docker.errors.DockerException as exc:
            raise TransportError(f"cannot start a container of {image}: {exc}") from exc
        return cls(client, raw.id, name, user=limits.user, wording=wording)

    def exec(self, command: str, *, timeout: float, workdir: str | Path | None = None,
             env: dict[str, str] | None = None, max_output: int = MAX_OUTPUT) -> ExecResult:
        """Run a bash command line as the agent's user, in `workdir` (by default the image's working folder)."""
        cap = OutputCap(max_output)
        script = _WRAP.format(seconds=max(1, int(timeout)), cap=2 * cap.half, half=cap.half)
        started = time.monotonic()
        raw = self._api("exec_create", self.id, ["bash", "-c", script, "gymbox", command], user=self.user,
                        workdir=None if workdir is None else str(workdir), environment=env)
        printed = self._api("exec_start", raw["Id"])
        code = self._api("exec_inspect", raw["Id"])["ExitCode"]
        seconds = time.monotonic() - started
        if code is None:
            raise TransportError(f"a command in container {self.name} did not finish; the container may have died")
        size, _, body = printed.partition(b"\n")
        if size.isdigit():
            cap.add(body)
            cap.total = max(cap.total, int(size))  # what the wrapper cut from the middle counts as omitted
        else:
            cap.add(printed)  # the wrapper itself failed (no temporary file): what it said, as it is
        output, omitted = cap.text(self.wording.cut)
        timed_out = code == 137 and seconds >= int(timeout) - 0.5
        return ExecResult(None if timed_out else code, output, seconds, timeout, omitted, self.wording)

    def put_files(self, files: dict[str, bytes], *, mode: int = 0o644) -> None:
        """Write files through the engine, owned by the agent's user, in folders of theirs.

        Not under a tmpfs mount such as /tmp: the engine writes beneath the mount, where nothing sees the files.
        """
        uid = int(self.user.split(":")[0])
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
        import docker.errors

        try:
            data = self.get_archive(path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None and member.isfile() else None
            return handle.read() if handle is not None else None

    def end_processes(self) -> None:
        """Kill every process of the agent's user (the container's own process is root's and stays); twice, for
        children forked while the first signal went out. Falls back to a restart if the container stopped."""
        if self._api("inspect_container", self.id)["State"]["Running"]:
            raw = self._api("exec_create", self.id, ["bash", "-c", "kill -KILL -1; sleep 0.05; kill -KILL -1; true"],
                            user=self.user)
            self._api("exec_start", raw["Id"])
            if self._api("exec_inspect", raw["Id"])["ExitCode"] == 0:
                return
        self.restart()

    def restart(self) -> None:
        """End every process in the container (its init is killed, so the kernel ends the rest); files stay."""
        self._api("restart", self.id, timeout=0)

    def remove(self) -> None:
        """Remove the container, with every process and file in it."""
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(self.id, force=True)

    def close(self) -> None:
        self.remove()

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

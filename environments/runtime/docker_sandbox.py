"""`ContainerSandbox`: one episode's container, driven from outside through the Docker engine (this process never
runs the agent's commands itself): commands, files in and out, ending what the agent left running."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from gymbox.environments.api.errors import TransportError
from gymbox.environments.runtime.containers import ContainerLimits, Volume, labels
from gymbox.environments.runtime.images import image_files
from gymbox.environments.runtime.sandbox import MAX_OUTPUT, ExecResult, OutputCap, Sandbox, Wording

# The wrapper every command runs in: a time limit for the command and everything it starts (`timeout` signals
# its whole process group), and output to a file so that background jobs cannot hold the engine's stream open.
# It prints the output's size, then the output, or only its two ends when it is over the cap (cut where it is
# least useful; `OutputCap` puts the marker between them). When /tmp is full, it says that the output was lost.
_WRAP = """\
out=$(mktemp /tmp/.gymbox-out.XXXXXX) || exit 125
timeout -s KILL {seconds} bash -c "$1" </dev/null >"$out" 2>&1
code=$?
size=$(stat -c %s "$out")
if [ "$size" = 0 ] && [ "$(df -P /tmp | awk 'NR == 2 {{print $4}}')" = 0 ]; then
  note="[the output was lost: /tmp, where it is kept, is full]"
  echo "${{#note}}"; echo "$note"; rm -f "$out"; exit $code
fi
echo "$size"
if [ "$size" -gt {cap} ]; then
  head -c {half} "$out"; tail -c {half} "$out"
else
  cat "$out"
fi
rm -f "$out"
exit $code
"""
# The image holds the agent's files (a checkout at /repo): each container gets them in a size-limited volume filled
# from the image, beside a home and a /var/tmp of their own, on a read-only root file system, so that nothing the
# agent writes reaches the host's disk. Test suites get more memory and processes than a server's container, and
# may run programs from /tmp.
LIMITS = ContainerLimits(memory="2g", pids=512, tmp="256m", tmp_exec=True, workspace=None, volumes=(
    Volume("/repo", "1g", from_image=True), Volume("/home/agent", "128m", from_image=True),
    Volume("/var/tmp", "256m", mode="1777", agent_owned=False)))


class ContainerSandbox(Sandbox):
    """A running container of an image; removed by `close()` (and by the reaper if its owner dies)."""

    def __init__(self, client: Any, container_id: str, name: str, *, user: str = ContainerLimits.user,
                 wording: Wording | None = None, volumes: tuple[str, ...] = ()) -> None:
        self.client, self.id, self.name = client, container_id, name
        self.user, self.wording = user, wording or Wording()
        self.volumes = volumes  # folders whose files live in memory: a restart would lose them

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
        box = cls(client, raw.id, name, user=limits.user, wording=wording,
                  volumes=tuple(volume.path for volume in limits.volumes))
        try:
            for volume in limits.volumes:
                files = _image_folder(client, image, volume.path) if volume.from_image else b""
                if files:
                    box.put_archive(volume.path, rebase(files))
        except BaseException:
            box.remove()
            raise
        return box

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
        """Write files (absolute paths) through the engine, owned by the agent's user, in folders of theirs.

        Not under a tmpfs mount such as /tmp: the engine writes beneath the mount, where nothing sees the files. On
        a read-only root file system, only under a volume.
        """
        import docker.errors

        paths = {PurePosixPath("/", path): data for path, data in files.items()}
        anchor = PurePosixPath(os.path.commonpath([str(path.parent) for path in paths]))
        while True:  # the engine copies only into a folder that exists: the nearest one above the files
            try:
                self.put_archive(str(anchor), self._archive(paths, anchor, mode), missing_ok=True)
                return
            except docker.errors.NotFound:
                if anchor == anchor.parent:
                    raise TransportError(f"container {self.name} has no root folder") from None
                anchor = anchor.parent

    def _archive(self, files: dict[PurePosixPath, bytes], anchor: PurePosixPath, mode: int) -> bytes:
        """The files as a tar archive relative to `anchor`, with their folders below it (mode 0700)."""
        uid = int(self.user.split(":")[0])
        folders = {folder for path in files for folder in path.parents if folder.is_relative_to(anchor)} - {anchor}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for folder in sorted(folders):
                info = tarfile.TarInfo(str(folder.relative_to(anchor)))
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, uid, uid
                tar.addfile(info)
            for path, data in files.items():
                info = tarfile.TarInfo(str(path.relative_to(anchor)))
                info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, uid, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def put_archive(self, path: str, data: bytes, *, missing_ok: bool = False) -> None:
        """Unpack a tar archive into the folder `path`; with `missing_ok`, docker's NotFound when there is none."""
        if not self._api("put_archive", self.id, path, data, missing_ok=missing_ok):
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
        """End every process in the container (its init is killed, so the kernel ends the rest); files stay (those
        in volumes, which live in memory, are copied out and back)."""
        running = self._api("inspect_container", self.id)["State"]["Running"]
        if self.volumes and not running:
            raise TransportError(f"container {self.name} stopped, and the files it held in memory are gone; the "
                                 "episode cannot go on")
        saved = {path: self.get_archive(path) for path in self.volumes}
        self._api("restart", self.id, timeout=0)
        for path, data in saved.items():
            self.put_archive(path, rebase(data))

    def remove(self) -> None:
        """Remove the container, with every process and file in it."""
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(self.id, force=True, v=True)  # v: its volumes too

    def close(self) -> None:
        self.remove()

    def _api(self, method: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        import docker.errors

        try:
            return getattr(self.client.api, method)(*args, **kwargs)
        except docker.errors.NotFound as exc:
            if method == "get_archive" or missing_ok:
                raise
            raise TransportError(f"container {self.name} is gone ({exc.explanation}); the episode cannot go on") \
                from exc
        except docker.errors.APIError as exc:
            raise TransportError(f"the Docker engine failed on {method} in container {self.name}: "
                                 f"{exc.explanation or exc}") from exc


def rebase(archive: bytes) -> bytes:
    """An archive of one folder (as the engine reads it: names start with the folder's) with names relative to that
    folder, its own entry left out: what the engine unpacks into the folder itself, as into a volume."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            member.name = member.name.partition("/")[2]
            if member.islnk():
                member.linkname = member.linkname.partition("/")[2]
            if member.name:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _image_folder(client: Any, image: str, path: str) -> bytes:
    """The image's folder at `path` as an archive; an empty one when the image has no such folder."""
    import docker.errors

    try:
        return image_files(client, image, path)
    except docker.errors.NotFound:
        return b""

"""The sandbox an agent's commands run in: a time limit that ends a command with everything it started, output cut
in the middle past a cap, files in and out. Two kinds behind one interface: `LocalSandbox` runs commands as child
processes of this one (a server that already runs inside its episode's container), `ContainerSandbox`
(`runtime.docker_sandbox`) in a container driven from outside through the Docker engine."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

MAX_OUTPUT = 16_384
# After a local command exits, how long to wait for output still buffered in the pipe; a background process
# that inherited the pipe would otherwise keep the reader waiting for ever.
_DRAIN_SECONDS = 0.5


@dataclass(frozen=True)
class Wording:
    """How an environment words a command's result for the agent; each environment keeps its own texts."""

    cut: str = "[... {omitted} bytes cut ...]"  # stands where the middle of long output was cut
    killed: str = "[killed: the command ran past its time limit of {limit:.0f} s]"
    no_output: str | None = "(no output)"  # shown instead of output that is only white space; None: as it is
    exit_zero: bool = False  # whether a command that succeeded says "[exit code 0]"
    trim: bool = False  # whether leading newlines of the whole text are dropped


@dataclass(frozen=True)
class ExecResult:
    """One command's end: its exit code (None when it was killed at its time limit), output, and time taken."""

    exit_code: int | None
    output: str
    seconds: float
    limit: float  # the time limit it ran under
    omitted: int = 0  # bytes of output cut from the middle
    wording: Wording = Wording()

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    def render(self) -> str:
        """What the agent sees: the output, then how the command ended, in the environment's words."""
        words = self.wording
        text = self.output if words.no_output is None or self.output.strip() else words.no_output
        if self.timed_out:
            end = words.killed.format(limit=self.limit)
        elif self.exit_code != 0 or words.exit_zero:
            end = f"[exit code {self.exit_code}]"
        else:
            return text
        text = f"{text}\n{end}"
        return text.lstrip("\n") if words.trim else text


class OutputCap:
    """Keeps the first and last `limit/2` bytes of a stream and counts what lies between."""

    def __init__(self, limit: int) -> None:
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.half:  # trim rarely, not on every chunk
                del self.tail[: len(self.tail) - self.half]

    def text(self, marker: str) -> tuple[str, int]:
        """The kept output with `marker` (formatted with `omitted`) where the middle was cut; and how many bytes."""
        tail = self.tail[-self.half:] if len(self.tail) > self.half else self.tail
        omitted = self.total - len(self.head) - len(tail)
        if omitted <= 0:
            return bytes(self.head + tail).decode(errors="replace"), 0
        head, end = self.head.decode(errors="replace"), bytes(tail).decode(errors="replace")
        return f"{head}\n{marker.format(omitted=omitted)}\n{end}", omitted


class Sandbox(ABC):
    """Runs an agent's commands with bash, stdout and stderr merged as a terminal shows them."""

    wording: Wording

    @abstractmethod
    def exec(self, command: str, *, timeout: float, workdir: str | Path | None = None,
             env: dict[str, str] | None = None, max_output: int = MAX_OUTPUT) -> ExecResult:
        """Run a bash command line; it and whatever it started are killed after `timeout` seconds. `env` adds
        variables to the sandbox's own."""

    @abstractmethod
    def put_files(self, files: dict[str, bytes], *, mode: int = 0o644) -> None:
        """Write files (absolute paths, or relative to the working folder), making their folders as needed."""

    @abstractmethod
    def read_file(self, path: str) -> bytes | None:
        """A file's bytes, or None when there is no such file."""

    @abstractmethod
    def end_processes(self) -> None:
        """End everything the commands left running."""

    @abstractmethod
    def close(self) -> None:
        """End the commands' processes and free what the sandbox holds; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class LocalSandbox(Sandbox):
    """Commands as child processes of this one, each in a process group of its own; the confinement is the
    container this process runs in (the shell environment's server runs inside its episode's container).

    With `user` ("uid:gid") and this process running as root, the commands run as that user, with no
    supplementary groups: they can then neither signal this process nor reach its files, so an agent's `kill -9 -1`
    ends only its own processes. In a container, root needs only the SETUID, SETGID and KILL capabilities for it.
    `end_processes` then ends every process of that user: give one only where the sandbox has the machine to itself.
    """

    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None, wording: Wording | None = None,
                 user: str | None = None) -> None:
        self.workdir, self.env, self.wording = workdir, env, wording or Wording()
        self.groups: set[int] = set()  # every command's process group: what it left in the background is there
        self.ids = _ids(user) if user and os.geteuid() == 0 else None  # (uid, gid) the commands switch to

    def exec(self, command: str, *, timeout: float, workdir: str | Path | None = None,
             env: dict[str, str] | None = None, max_output: int = MAX_OUTPUT) -> ExecResult:
        started = time.monotonic()
        variables = self.env if not env else {**(os.environ if self.env is None else self.env), **env}
        proc = subprocess.Popen(["bash", "-c", command], cwd=workdir or self.workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                env=variables, **self._as_user())
        self.groups.add(proc.pid)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        cap = OutputCap(max_output)
        timed_out, exited_at = False, None
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is None and now - started > timeout:
                    timed_out = True
                    kill_group(proc.pid)
                    proc.wait()
                    exited_at = now
                if exited_at is not None and now - exited_at > _DRAIN_SECONDS:
                    break  # a background process still holds the pipe: stop listening to it
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    cap.add(chunk)
        finally:
            proc.stdout.close()
            if proc.poll() is None and not timed_out:
                proc.wait()
        output, omitted = cap.text(self.wording.cut)
        return ExecResult(None if timed_out else proc.returncode, output, time.monotonic() - started, timeout,
                          omitted, self.wording)

    def put_files(self, files: dict[str, bytes], *, mode: int = 0o644) -> None:
        for path, data in files.items():
            target = self.workdir / path
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(mode)

    def read_file(self, path: str) -> bytes | None:
        try:
            return (self.workdir / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def clear(self) -> None:
        """End the commands' processes and empty the working folder, with the commands' own rights (a server that
        runs them as another user cannot write there)."""
        self.end_processes()
        self.exec("chmod -R u+rwX . 2>/dev/null; find . -mindepth 1 -delete", timeout=60)

    def end_processes(self) -> None:
        for pgid in self.groups:
            kill_group(pgid)
        if self.ids is not None:  # and everything of the commands' user, wherever it moved (setsid, double fork)
            for _ in range(2):  # twice, for children forked while the first signal went out
                subprocess.run(["bash", "-c", "kill -KILL -1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               **self._as_user())

    def close(self) -> None:
        self.end_processes()

    def _as_user(self) -> dict[str, Any]:
        if self.ids is None:
            return {}
        return {"user": self.ids[0], "group": self.ids[1], "extra_groups": []}


def _ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ValueError(f"the sandbox's user must be numeric, 'uid' or 'uid:gid', not {user!r}") from None


def kill_group(pgid: int) -> None:
    """SIGKILL a process group; harmless when it is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)

"""Runs one shell command with a time limit (killing its whole process group) and a cap on kept output."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# After the command exits, how long to wait for output still buffered in the pipe; a background process
# that inherited the pipe would otherwise keep the reader waiting for ever.
_DRAIN_SECONDS = 0.5


@dataclass
class CommandResult:
    pgid: int  # the command's process group: what it left running in the background is still in it
    exit_code: int | None  # None when the command was killed at its time limit
    output: str
    omitted_bytes: int
    timed_out: bool
    seconds: float

    def render(self, timeout: float) -> str:
        """The tool message an agent sees: output, truncation marker, and how the command ended."""
        text = self.output
        if self.timed_out:
            text += (f"\n[command killed after {timeout:g} s, with every process it started; run long jobs in the "
                     "background (cmd > log 2>&1 &) and check on them]")
        else:
            text += f"\n[exit code {self.exit_code}]"
        return text.lstrip("\n")


class _Collector:
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

    def text(self) -> tuple[str, int]:
        tail = self.tail[-self.half:] if len(self.tail) > self.half else self.tail
        omitted = self.total - len(self.head) - len(tail)
        head, end = self.head.decode(errors="replace"), bytes(tail).decode(errors="replace")
        if omitted <= 0:
            return head + end, 0
        return f"{head}\n[... {omitted} bytes of output omitted ...]\n{end}", omitted


def run_command(command: str, cwd: Path, *, timeout: float = 30.0, max_output: int = 16_384,
                env: dict[str, str] | None = None) -> CommandResult:
    """Run `command` with bash in `cwd`; stdout and stderr are merged, as a terminal shows them."""
    started = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    collector = _Collector(max_output)
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
                collector.add(chunk)
    finally:
        proc.stdout.close()
        if proc.poll() is None and not timed_out:
            proc.wait()
    output, omitted = collector.text()
    return CommandResult(proc.pid, None if timed_out else proc.returncode, output, omitted, timed_out,
                         time.monotonic() - started)


def kill_group(pgid: int) -> None:
    """SIGKILL a process group; harmless when it is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)

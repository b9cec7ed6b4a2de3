"""Takes an engine's processes down with the process that started them, however it ends.

vLLM's EngineCore and its workers are child processes that do not watch their parent: when the owner ends by
SIGTERM or SIGKILL (no finalizer runs), they go on, at full CPU. `watch` starts a small guard process in a session
of its own; it polls for the owner's end (its parent changes) and then stops the processes it was given, and
their descendants (SIGTERM, then SIGKILL). A normal `close` stops the guard first. Run as
`python -m gymbox.agent.engine_guard OWNER_PID PID:CREATE_TIME ...`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0


def watch(processes: Sequence[Any]) -> subprocess.Popen[bytes]:
    """Start a guard that stops `processes` (psutil processes) and their descendants once this process is gone."""
    targets = [f"{p.pid}:{p.create_time()!r}" for p in processes]
    return subprocess.Popen([sys.executable, "-m", "gymbox.agent.engine_guard", str(os.getpid()), *targets],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True)  # out of the owner's process group: its Ctrl-C is not ours


def stop(guard: subprocess.Popen[bytes]) -> None:
    """Stop a guard whose engine was shut down normally (idempotent)."""
    if guard.poll() is None:
        guard.terminate()
        try:
            guard.wait(5)
        except subprocess.TimeoutExpired:
            guard.kill()
            guard.wait()


def _same(pid: int, created: float) -> Any:
    """The process `pid` if it is still the one recorded (a pid can be reused), else None."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process if abs(process.create_time() - created) < 0.01 else None
    except psutil.NoSuchProcess:
        return None


def _stop_all(targets: list[tuple[int, float]]) -> None:
    import psutil

    roots = [p for p in (_same(pid, created) for pid, created in targets) if p is not None]
    doomed: dict[int, Any] = {}
    for root in roots:
        doomed[root.pid] = root
        try:
            doomed.update({child.pid: child for child in root.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    for process in doomed.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(list(doomed.values()), timeout=GRACE_SECONDS)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def main(argv: Sequence[str]) -> None:
    owner, targets = int(argv[0]), [(int(p), float(c)) for p, c in (t.split(":", 1) for t in argv[1:])]
    while os.getppid() == owner:  # reparented when the owner ends, however it ends
        if not any(_same(pid, created) for pid, created in targets):
            return  # the engine is gone already
        time.sleep(POLL_SECONDS)
    print(f"gymbox: the process that started a vLLM engine (pid {owner}) ended without closing it; stopping the "
          f"engine's processes", file=sys.stderr, flush=True)
    _stop_all(targets)


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped by its owner after a normal close
    main(sys.argv[1:])

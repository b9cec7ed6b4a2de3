"""Runtimes: the process runtime starts healthy, reports start failures, and never leaves a server behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gymbox.environments.api.errors import TransportError
from gymbox.environments.runtime import ProcessRuntime, make_runtime
from tests.conftest import CHILD_ENV, ROOT


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; /proc says so.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


async def test_stop_leaves_nothing_behind() -> None:
    rt = ProcessRuntime("echo")
    await rt.start()
    pid, workdir = rt.proc.pid, rt.workdir
    assert Path(rt.socket_path).exists() and (await rt.spec()).id == "echo@v1"
    await rt.stop()
    assert wait_dead(pid) and not workdir.exists()
    await rt.stop()  # idempotent


async def test_a_failing_start_shows_the_servers_own_words() -> None:
    rt = ProcessRuntime("no_such_env")
    with pytest.raises(TransportError, match="no environment 'no_such_env' is registered"):
        await rt.start()
    assert rt.proc is None


OWNER = """
import asyncio, sys
from gymbox.environments.runtime import ProcessRuntime
async def main():
    rt = ProcessRuntime("echo")
    await rt.start()
    print(rt.proc.pid, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def test_server_dies_with_its_owner_even_on_sigkill() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, **CHILD_ENV})
    try:
        server_pid = int(owner.stdout.readline())
        assert alive(server_pid)
        owner.kill()
        owner.wait()
        assert wait_dead(server_pid), "the server outlived its owner"
    finally:
        owner.kill()


def test_unknown_runtime_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of local, process, docker"):
        make_runtime("kubernetes", "echo")

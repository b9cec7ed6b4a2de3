"""A vLLM engine ends with the process that started it, however that process ends (each case: one engine start)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

OWNER = """
import time
from gymbox.agent.vllm_policy import VLLMPolicy
policy = VLLMPolicy("base", max_model_len=512, kv_cache_gib=1)
print("engine ready", flush=True)
time.sleep(3600)
"""


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for an init that may never reap it; it uses no CPU)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_ready(owner: subprocess.Popen[str], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    assert owner.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([owner.stdout], [], [], 1.0)
        if ready:
            line = owner.stdout.readline()
            if "engine ready" in line:
                return
            assert line or owner.poll() is None, f"the owner exited with code {owner.poll()} before its engine was up"
    raise AssertionError(f"the engine was not up after {timeout:g} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT], ids=["sigterm", "sigkill", "ctrl-c"])
def test_no_engine_process_outlives_its_owner(smollm2: Path, sig: signal.Signals) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, cwd=ROOT)
    descendants: list[psutil.Process] = []
    try:
        wait_ready(owner)
        descendants = psutil.Process(owner.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) + p.name() for p in descendants)
        assert "engine_guard" in names and len(descendants) >= 3  # the engine's processes, and their guard
        os.kill(owner.pid, sig)
        owner.wait(90)  # a shutdown on a loaded two-core machine took over 30 s once in CI
        deadline = time.monotonic() + 60
        while any(running(p) for p in descendants) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [f"{p.pid} {p.name()}" for p in descendants if running(p)]
        assert not left, f"processes of the engine outlived its owner (ended by {sig.name}): {left}"
    finally:
        for process in [psutil.Process(owner.pid), *descendants] if owner.poll() is None else descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

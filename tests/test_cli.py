"""The `gymbox` command line, run as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gymbox.environments.api.models import Action, ToolCall
from gymbox.environments.runtime.process import free_port
from gymbox.harness.play import parse_input

GYMBOX = [sys.executable, "-m", "gymbox.harness.cli"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*GYMBOX, *args], input=stdin, capture_output=True, text=True, timeout=120, env=env)


def test_envs_and_tasks() -> None:
    envs = run("envs")
    assert envs.returncode == 0 and "echo@v1" in envs.stdout and "toolcall@v1" in envs.stdout
    suites = run("tasks")
    assert suites.returncode == 0 and "echo-demo" in suites.stdout
    tasks = run("tasks", "echo-demo:test")
    assert tasks.returncode == 0 and "echo-003" in tasks.stdout and "echo-000" not in tasks.stdout


def test_unknown_names_exit_2_with_a_reason() -> None:
    missing = run("tasks", "nope")
    assert missing.returncode == 2 and "known suites" in missing.stdout
    unknown = run("check-env", "chess")
    assert unknown.returncode == 2 and "UnknownEnvironment" in unknown.stdout and "gymbox envs" in unknown.stdout


def test_demo_and_check_env() -> None:
    demo = run("demo")
    assert demo.returncode == 0 and "6/6 episodes succeeded" in demo.stdout
    check = run("check-env", "echo")
    assert check.returncode == 0 and "conforms" in check.stdout and "FAIL" not in check.stdout


def test_play_reads_moves_from_the_terminal() -> None:
    moves = 'echo {"word": "fjord"}\necho {broken\nsubmit\n'
    played = run("play", "echo", "--task", "echo-000", stdin=moves)
    assert played.returncode == 0, played.stdout + played.stderr
    assert "not valid JSON" in played.stdout and "success=1" in played.stdout and "Episode over" in played.stdout


def test_serve_on_a_port(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([*GYMBOX, "serve", "echo", "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert f"serving echo@v1 on http://127.0.0.1:{port}" in server.stdout.readline()
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["env"] == "echo@v1"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, log = server.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells how it ended.
    assert "Application shutdown complete" in log and server.returncode == -signal.SIGTERM


def test_parse_input() -> None:
    assert parse_input("hello there", {"echo"}) == Action(text="hello there")
    call = parse_input('echo {"word": "a"}', {"echo"}).tool_calls[0]
    assert call.function.name == "echo" and call.args() == {"word": "a"}
    assert parse_input("echo(word='a b', n=2)", {"echo"}).tool_calls[0].args() == {"word": "a b", "n": 2}
    assert parse_input("submit", {"submit"}).tool_calls == [ToolCall.make("submit", {})]
    assert parse_input("echo {bad", {"echo"}).tool_calls[0].function.arguments == "{bad"

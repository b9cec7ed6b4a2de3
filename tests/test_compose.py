"""docker-compose.yml: the file validates, and the toolcall service comes up healthy and plays an episode."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.models import Action
from gymbox.environments.runtime.process import free_port
from gymbox.tasks import load_suite
from tests.conftest import ROOT

pytestmark = pytest.mark.container
PROJECT = "gymboxtest"


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", "-p", PROJECT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_compose_file_is_valid() -> None:
    checked = compose("config", env={})
    assert checked.returncode == 0, checked.stderr
    assert "127.0.0.1:8101:8000" in checked.stdout.replace('"', "") or "published: 8101" in checked.stdout


@pytest.fixture
def toolcall_service(docker_engine: docker.DockerClient) -> Iterator[str]:
    port = str(free_port())
    env = {"GYMBOX_TOOLCALL_PORT": port}
    up = compose("up", "-d", "toolcall", env=env)
    assert up.returncode == 0, up.stderr
    try:
        deadline = time.monotonic() + 90
        while True:
            ids = compose("ps", "-q", "toolcall", env=env).stdout.split()
            state = docker_engine.api.inspect_container(ids[0])["State"] if ids else {}
            if state.get("Health", {}).get("Status") == "healthy":
                break
            assert time.monotonic() < deadline, f"toolcall never became healthy: {json.dumps(state)[:500]}"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        compose("down", "--timeout", "5", env=env)


async def test_an_episode_through_the_compose_service(toolcall_service: str) -> None:
    task = load_suite("toolcall-smoke").tasks[0]
    async with await EnvClient.connect(toolcall_service) as client:
        assert (await client.spec()).id == "toolcall@v1"
        observation = await client.reset(task, 0)
        assert observation.tools
        result = await client.step(Action(text="I will not call anything."))
        assert result.done and "match" in result.signals

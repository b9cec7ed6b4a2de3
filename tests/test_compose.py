"""docker-compose.yml: the file validates, and its services come up healthy and play episodes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import pytest

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.models import Action
from gymbox.environments.api.registry import default_registry
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


@contextmanager
def compose_service(engine: docker.DockerClient, name: str) -> Iterator[str]:
    """`docker-compose up` one service on a free loopback port, wait until healthy, and take it down after."""
    port = str(free_port())
    env = {f"GYMBOX_{name.upper()}_PORT": port}
    up = compose("up", "-d", name, env=env)
    assert up.returncode == 0, up.stderr
    try:
        deadline = time.monotonic() + 90
        while True:
            ids = compose("ps", "-q", name, env=env).stdout.split()
            state = engine.api.inspect_container(ids[0])["State"] if ids else {}
            if state.get("Health", {}).get("Status") == "healthy":
                break
            assert time.monotonic() < deadline, f"{name} never became healthy: {json.dumps(state)[:500]}"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        compose("down", "--volumes", "--timeout", "5", env=env)


@pytest.fixture
def toolcall_service(docker_engine: docker.DockerClient) -> Iterator[str]:
    with compose_service(docker_engine, "toolcall") as url:
        yield url


async def test_an_episode_through_the_compose_service(toolcall_service: str) -> None:
    task = load_suite("toolcall-smoke").tasks[0]
    async with await EnvClient.connect(toolcall_service) as client:
        assert (await client.spec()).id == "toolcall@v1"
        observation = await client.reset(task, 0)
        assert observation.tools
        result = await client.step(Action(text="I will not call anything."))
        assert result.done and "match" in result.signals


@pytest.mark.parametrize("service, task_id", [("textworld", "tw-coin_collector-easy-1"),
                                              ("alfworld", "alfworld-pick_and_place_simple-1")])
async def test_a_game_is_generated_and_won_inside_its_service(docker_engine: docker.DockerClient, service: str,
                                                              task_id: str) -> None:
    """The container generates the game into its cache volume; the plan made here wins it there (same spec, same
    game, on another machine)."""
    task = load_suite(service).get(task_id)
    plan = default_registry().load(service)().prepare(task)["plan"]
    with compose_service(docker_engine, service) as url:
        async with await EnvClient.connect(url) as client:
            await client.reset(task, 0)
            for command in plan:
                result = await client.step(Action(text=command))
    assert result.terminated and result.signals["success"] == 1.0

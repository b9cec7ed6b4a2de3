"""The webshop compose service: its image builds, it comes up healthy, and the expert wins tasks through it."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import docker
import pytest

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.models import Action
from gymbox.tasks import load_suite
from gymbox.tasks.webshop.expert import WebShopExpert
from tests.test_compose import compose, compose_service

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def webshop_engine() -> docker.DockerClient:
    """The Docker engine with the webshop image built (reused while its sources are unchanged)."""
    engine = docker.from_env()
    try:
        engine.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeError(f"container tests need a running Docker engine ({exc}); .ci/run starts one") from exc
    subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "images", "build", "webshop"], check=True,
                   stdout=subprocess.DEVNULL)
    return engine


def test_the_service_is_declared_on_its_loopback_port() -> None:
    checked = compose("config", env={})
    assert checked.returncode == 0, checked.stderr
    text = checked.stdout.replace('"', "")
    assert "127.0.0.1:8104:8000" in text or "published: 8104" in text
    assert "webshop-index" in text


@pytest.mark.slow  # the service starts, then becomes healthy; the first purchase loads spaCy: 11-33 s here, by load
async def test_the_expert_wins_tasks_through_the_service(webshop_engine: docker.DockerClient) -> None:
    """The container makes the catalog from its seed and builds the search index into its cache volume (the root
    file system is read-only); the expert, reading the pages the service sends, buys the goal: reward 1."""
    suite = load_suite("webshop:test")
    tasks = [suite.tasks[0], suite.tasks[1], suite.tasks[-1]]  # both instruction forms (every second is human-like)
    assert {t.payload["form"] for t in tasks} == {"synthetic", "human"}
    with compose_service(webshop_engine, "webshop") as url:
        async with await EnvClient.connect(url) as client:
            assert (await client.spec()).id == "webshop@v1"
            for task in tasks:
                expert = WebShopExpert(task)
                text = (await client.reset(task, 0)).messages[0].content or ""
                for _ in range(task.limits.max_turns):
                    result = await client.step(Action(text=expert.act(text)))
                    text = result.observation.messages[0].content or ""
                    if result.done:
                        break
                assert result.terminated and result.reward == 1.0, (task.id, text)
                assert result.signals["success"] == 1.0 and "Your score (min 0.0, max 1.0): 1.0000" in text
        ids = compose("ps", "-q", "webshop", env={"GYMBOX_WEBSHOP_PORT": url.rsplit(":", 1)[1]}).stdout.split()
        stream, _ = webshop_engine.api.get_archive(ids[0], "/cache/webshop-index")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            names = archive.getnames()
    assert any(name.endswith("meta.json") for name in names), names  # the index, built at first use

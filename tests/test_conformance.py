"""The conformance checker, run over every registered environment, and shown to catch rule breakers."""

from __future__ import annotations

import pytest

from gymbox.environments.api.registry import default_registry
from gymbox.environments.runtime import DockerRuntime, LocalRuntime, ProcessRuntime, Runtime
from gymbox.environments.runtime.checker import check_runtime
from gymbox.tasks import load_suite
from tests.conftest import CHILD_ENV
from tests.envs import CrashOnBadActionEnv, CrashOnGradeEnv, NondeterministicEnv


def _in_containers(env_id: str) -> bool:
    return default_registry().load(env_id).isolation == "container"


def _uses_docker(env_id: str) -> bool:
    return _in_containers(env_id) or default_registry().load(env_id).uses_docker


@pytest.mark.parametrize("env_id", [
    pytest.param(env_id, marks=[pytest.mark.container] if _uses_docker(env_id) else [])
    for env_id in default_registry().ids()
])
async def test_registered_environment_conforms(env_id: str, request: pytest.FixtureRequest) -> None:
    """Container environments are checked in their containers; the others in-process."""
    tasks = None
    if _in_containers(env_id):
        request.getfixturevalue("docker_engine")  # the engine is up and the image is built
        runtime: Runtime = DockerRuntime(env_id, pool_size=2)
    else:
        runtime = LocalRuntime(env_id)
    if env_id.startswith("swe@"):  # its package images, and its three quickest tasks to grade
        request.getfixturevalue("swe_images")
        from tests.test_swe_env import sampled

        tasks = [sampled(package) for package in ("parse", "cachetools", "toolz")]
    async with runtime:
        report = await check_runtime(runtime, tasks)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failures())


async def test_conforms_through_a_server_process() -> None:
    async with ProcessRuntime("echo") as runtime:
        report = await check_runtime(runtime)
    assert report.ok and len(report.results) == 9


@pytest.mark.parametrize("env_cls, failing", [
    (NondeterministicEnv, {"reset is deterministic"}),
    (CrashOnBadActionEnv, {"bad actions are explained", "steps are deterministic"}),
    (CrashOnGradeEnv, {"grade ends the episode", "turn limit truncates"}),  # a limit grades too
])
async def test_checker_catches_rule_breakers(env_cls: type, failing: set[str]) -> None:
    tasks = load_suite("echo-demo").tasks[:3]
    async with ProcessRuntime(env_cls, env_vars=CHILD_ENV) as runtime:
        report = await check_runtime(runtime, tasks)
    assert {r.name for r in report.failures()} == failing

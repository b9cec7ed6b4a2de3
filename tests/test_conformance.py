"""The conformance checker, run over every registered environment, and shown to catch rule breakers."""

from __future__ import annotations

import pytest

from gymbox.environments.api.checker import check_runtime
from gymbox.environments.api.registry import default_registry
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime
from gymbox.tasks import load_suite
from tests.conftest import CHILD_ENV
from tests.envs import CrashOnBadActionEnv, NondeterministicEnv


@pytest.mark.parametrize("env_id", default_registry().ids())
async def test_registered_environment_conforms(env_id: str) -> None:
    async with LocalRuntime(env_id) as runtime:
        report = await check_runtime(runtime)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failures())


async def test_conforms_through_a_server_process() -> None:
    async with ProcessRuntime("echo") as runtime:
        report = await check_runtime(runtime)
    assert report.ok and len(report.results) == 8


@pytest.mark.parametrize("env_cls, failing", [
    (NondeterministicEnv, {"reset is deterministic"}),
    (CrashOnBadActionEnv, {"bad actions are explained", "steps are deterministic"}),
])
async def test_checker_catches_rule_breakers(env_cls: type, failing: set[str]) -> None:
    tasks = load_suite("echo-demo").tasks[:3]
    async with ProcessRuntime(env_cls, env_vars=CHILD_ENV) as runtime:
        report = await check_runtime(runtime, tasks)
    assert {r.name for r in report.failures()} == failing

"""The one table of error kinds, applied: whose doing an error is decides whether a rollout is scored, retried or
masked, on every runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent.policy import Completion, Prompt, Sampling
from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import ERRORS, EnvError, InvalidReply, UnknownSession
from gymbox.environments.api.kinds import ERROR_KINDS, Kind, kind_of, table_markdown
from gymbox.environments.api.models import Action, ServerRequest, StepResult, ToolCall
from gymbox.environments.records import EpisodeError
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import play, runtime_provenance
from gymbox.tasks import TaskSpec, load_suite
from tests.conftest import CHILD_ENV
from tests.envs import UnencodableEnv

ROOT = Path(__file__).resolve().parents[1]
TASK = load_suite("echo-demo").tasks[0]


async def rollout(runtime: Runtime, policy: Any, task: TaskSpec = TASK, retries: int = 1) -> Any:
    config = EpisodeConfig(retries=retries)
    provenance = await runtime_provenance(runtime, policy, config)
    return await play(runtime, task, policy, config=config, sample=0, base_seed=1, provenance=provenance)


def test_every_step_api_error_takes_its_kind_from_the_table() -> None:
    for code, cls in ERRORS.items():
        assert cls.code == code and cls.kind is ERROR_KINDS[code].kind
        assert cls.infra is cls.retryable is (cls.kind is Kind.INFRA)
    for code in ("env_error", "unknown_session", "session_expired", "invalid_reply"):
        assert ERRORS[code].infra, code


def test_a_code_missing_from_the_table_is_refused() -> None:
    with pytest.raises(KeyError, match="not in gymbox's table"):
        type("Unlisted", (EnvError,), {"code": "unlisted"})


def test_episode_errors_take_their_kind_from_the_table_old_records_included() -> None:
    for code in ("policy_error", "template_not_incremental", "worker_died", "reward_error"):
        error = EpisodeError(code=code, message="x")
        assert error.infra and error.kind is Kind.INFRA, code
    # A record written when template_not_incremental was scored reads back as what it is: masked.
    old = EpisodeError.model_validate_json('{"code": "template_not_incremental", "message": "x", "infra": false}')
    assert old.infra and old.kind.masked
    assert EpisodeError(code="invalid_task", message="x").kind is Kind.REQUEST
    assert EpisodeError(code="container_died", message="x", infra=True).kind is Kind.INFRA
    assert kind_of("invalid_action") is Kind.AGENT and not Kind.AGENT.masked


def test_readme_documents_the_table() -> None:
    assert table_markdown() in (ROOT / "README.md").read_text()


async def test_an_invalid_task_is_masked_and_not_retried(runtime: Runtime) -> None:
    task = TASK.model_copy(update={"payload": {}})  # echo needs payload.word
    trajectory = await rollout(runtime, ScriptedPolicy(echo_script), task)
    assert trajectory.error is not None and trajectory.error.code == "invalid_task"
    assert trajectory.masked and trajectory.attempts == 1 and trajectory.reward is None


class Slow(ScriptedPolicy):
    """The echo script, each reply after `delay` seconds (an engine busy with other episodes)."""

    def __init__(self, delay: float) -> None:
        super().__init__(echo_script)
        self.delay = delay

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        await asyncio.sleep(self.delay)
        return await super().generate(prompt, sampling)


async def test_an_expired_session_is_infrastructure_retried_then_masked() -> None:
    async with LocalRuntime("echo", idle_timeout=0.2) as runtime:
        trajectory = await rollout(runtime, Slow(0.5))
    assert trajectory.error is not None and trajectory.error.code == "session_expired"
    assert trajectory.masked and trajectory.attempts == 2 and trajectory.reward is None
    assert [e.code for e in trajectory.failed_attempts] == ["session_expired"]


async def test_an_unknown_session_is_infrastructure(runtime: Runtime) -> None:
    async with await runtime.client() as client:
        await client.reset(TASK, 1)
        session = client.session
        await client.close_session()
        client.session = session  # the server no longer has it, as after its restart
        with pytest.raises(UnknownSession) as caught:
            await client.step(Action(tool_calls=[ToolCall.make("submit")]))
    assert caught.value.infra


@pytest.mark.parametrize("kind", ["local", "process"])
async def test_a_server_error_it_could_not_type_is_infrastructure(kind: str) -> None:
    runtime = (LocalRuntime(UnencodableEnv) if kind == "local"
               else ProcessRuntime(UnencodableEnv, env_vars=CHILD_ENV))
    async with runtime:
        trajectory = await rollout(runtime, ScriptedPolicy(echo_script))
    assert trajectory.error is not None and trajectory.error.code == "env_error"
    assert trajectory.masked and trajectory.attempts == 2 and trajectory.reward is None


async def test_a_reply_that_does_not_validate_is_infrastructure(runtime: Runtime) -> None:
    async with await runtime.client() as client:
        assert isinstance(client, EnvClient)
        # A server whose replies are not what this client expects: its spec where a step result should be.
        with pytest.raises(InvalidReply, match="StepResult") as caught:
            await client.channel.call(ServerRequest(op="spec"), StepResult, 10)
    assert caught.value.infra and caught.value.code == "invalid_reply"


async def test_a_template_the_harness_cannot_extend_is_infrastructure(smollm2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    tokenizer.chat_template = "{{ messages | length }}{% for m in messages %}{{ m.content }}{% endfor %}"
    async with LocalRuntime("echo") as runtime:
        trajectory = await rollout(runtime, ScriptedPolicy(echo_script, tokenizer=tokenizer))
    assert trajectory.error is not None and trajectory.error.code == "template_not_incremental"
    assert "counts the messages" in trajectory.error.message
    assert trajectory.masked and trajectory.attempts == 2 and trajectory.reward is None

"""Every way the harness stops an episode ends it graded, and both sides count the same turns.

A `GradedEnv` grades a cut-off episode (`graded`, and the words it heard), so a test can tell a graded stop from
an ungraded one; it runs in this process and in a child server (the WebSocket transport).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent.policy import Policy
from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.api.errors import EpisodeOver
from gymbox.environments.api.models import Action, ToolCall
from gymbox.environments.records import Trajectory
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.harness.episode import EpisodeConfig, run_episode
from gymbox.harness.replay import replay
from gymbox.rewards.score import score
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.spec import Limits
from tests.conftest import CHILD_ENV
from tests.envs import GradedEnv

TASK = load_suite("echo-demo").tasks[1]  # says its word twice
WORD = TASK.payload["word"]
BROKEN = '<tool_call>{"name": "echo", "arguments": {"word": </tool_call>'


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


ECHO = call("echo", word=WORD)


@pytest.fixture(params=["local", "process"])
async def graded(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    rt: Runtime = LocalRuntime(GradedEnv) if request.param == "local" else ProcessRuntime(GradedEnv,
                                                                                          env_vars=CHILD_ENV)
    async with rt:
        yield rt


async def play(rt: Runtime, policy: Policy, task: TaskSpec = TASK, **config: Any) -> Trajectory:
    async with await rt.client() as client:
        return await run_episode(client, task, policy, config=EpisodeConfig(**config), seed=3)


def limited(max_turns: int) -> TaskSpec:
    return TASK.model_copy(update={"limits": Limits(max_turns=max_turns)})


async def test_the_harness_turn_limit_ends_the_episode_graded(graded: Runtime) -> None:
    trajectory = await play(graded, ScriptedPolicy([ECHO]), max_turns=2)
    assert trajectory.truncated and trajectory.truncated_by == "max_turns" and trajectory.error is None
    # As a server limit records them: on the trajectory and on the step that ended it.
    assert trajectory.signals["graded"] == 1.0 and trajectory.signals["heard"] == 2.0
    assert trajectory.turns[-1].signals["graded"] == 1.0 and "graded" not in trajectory.turns[0].signals
    assert trajectory.env_seconds > 0


async def test_a_format_error_counts_as_a_turn_on_the_server_too(graded: Runtime) -> None:
    # Turn 0 never reaches the server; turn 2 is the task's last on both sides, so the server ends and grades it.
    trajectory = await play(graded, ScriptedPolicy([BROKEN, ECHO, ECHO, ECHO]), limited(3))
    assert [t.parse_error is not None for t in trajectory.turns] == [True, False, False]
    assert trajectory.truncated_by == "max_turns" and trajectory.turns[-1].truncated  # the server's own limit
    assert trajectory.signals["graded"] == 1.0 and trajectory.signals["heard"] == 2.0
    # A last turn the harness answered itself ends the episode on the harness's side, graded all the same.
    trajectory = await play(graded, ScriptedPolicy([ECHO, ECHO, BROKEN]), limited(3))
    assert trajectory.truncated_by == "max_turns" and not trajectory.turns[-1].truncated
    assert trajectory.turns[-1].signals == {"format_error": 1.0, "valid_action": 0.0, "graded": 1.0, "heard": 2.0}


async def test_the_harness_never_plays_past_the_tasks_turn_limit(graded: Runtime) -> None:
    trajectory = await play(graded, ScriptedPolicy([ECHO, BROKEN, ECHO]), limited(2), max_turns=5)
    assert len(trajectory.turns) == 2 and trajectory.truncated_by == "max_turns"
    assert trajectory.signals["graded"] == 1.0 and trajectory.signals["heard"] == 1.0


async def test_an_episode_the_agent_ended_is_not_graded_again(graded: Runtime) -> None:
    trajectory = await play(graded, ScriptedPolicy([ECHO, ECHO, call("submit")]), max_turns=3)
    assert trajectory.terminated and not trajectory.truncated and trajectory.signals["success"] == 1.0
    assert "graded" not in trajectory.signals
    assert score(trajectory).reward == 1.0


async def test_the_token_and_context_limits_end_the_episode_graded(graded: Runtime, smollm2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    replies = [ECHO, ECHO + " blah" * 300]
    one_turn = len((await play(graded, ScriptedPolicy(replies, tokenizer=tokenizer), max_turns=1)).token_ids)
    # Room for a few tokens of the second reply: it is cut, never executed, and the episode is graded.
    trajectory = await play(graded, ScriptedPolicy(replies, tokenizer=tokenizer), max_tokens=one_turn + 20)
    assert trajectory.truncated_by == "max_tokens" and len(trajectory.turns) == 2
    assert trajectory.turns[-1].observation == [] and trajectory.turns[-1].env_seconds == 0.0
    assert trajectory.signals["graded"] == 1.0 and trajectory.signals["heard"] == 1.0
    trajectory = await play(graded, ScriptedPolicy(replies, tokenizer=tokenizer, max_model_len=one_turn + 20))
    assert trajectory.truncated_by == "context" and trajectory.signals["heard"] == 1.0


async def test_replay_counts_the_same_turns_and_grades_where_the_harness_did() -> None:
    async with LocalRuntime(GradedEnv) as rt:
        by_server = await play(rt, ScriptedPolicy([BROKEN, ECHO, ECHO]), limited(3))
        by_harness = await play(rt, ScriptedPolicy([ECHO]), max_turns=2)
    assert by_server.turns[-1].truncated and by_harness.turns[-1].signals["graded"] == 1.0
    where = {"provenance": by_server.provenance.model_copy(update={"env": "tests.envs:GradedEnv"})}
    results = await replay([t.model_copy(update=where) for t in (by_server, by_harness)], runtime="local")
    assert [(r.ok, r.steps, r.divergence) for r in results] == [(True, 2, None), (True, 2, None)]


async def test_grade_ends_the_episode_once(graded: Runtime) -> None:
    async with await graded.client() as client:
        await client.reset(TASK, 3)
        assert (await client.grade()).signals == {"graded": 1.0, "heard": 0.0}
        assert (await client.state()).done
        with pytest.raises(EpisodeOver, match="already ended"):
            await client.grade()
        with pytest.raises(EpisodeOver):
            await client.step(Action(tool_calls=[ToolCall.make("echo", {"word": WORD})]))


async def test_records_written_before_the_time_fields_still_read() -> None:
    async with LocalRuntime(GradedEnv) as rt:
        trajectory = await play(rt, ScriptedPolicy([ECHO]), max_turns=1)
    assert trajectory.policy_seconds > 0 and trajectory.env_seconds > 0
    old = trajectory.model_dump(mode="json", exclude={"env_seconds", "policy_seconds"})
    assert Trajectory.model_validate(old).env_seconds == Trajectory.model_validate(old).policy_seconds == 0.0

"""Replay through the episode loop: token ids checked, every divergence reported, masked and time- or token-cut
trajectories replayed without false alarms, and `--twice` telling a deterministic environment from one that is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent.policy import Completion, Policy, PolicyError, Prompt, Sampling
from gymbox.agent.scripted import ScriptedPolicy, assistant_turns
from gymbox.environments.records import Trajectory
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.replay import replay, replay_one
from gymbox.harness.replay_compare import summarize
from gymbox.harness.rollout import play, play_all, runtime_provenance
from gymbox.harness.store import TrajectoryStore
from gymbox.tasks import load_suite
from tests.conftest import CHILD_ENV
from tests.envs import GradedEnv, NondeterministicEnv, SlowGradedEnv

TASKS = load_suite("echo-demo").tasks
TASK = TASKS[1]  # says its word twice
ECHO = f"<tool_call>{json.dumps({'name': 'echo', 'arguments': {'word': TASK.payload['word']}})}</tool_call>"


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


async def record(rt: Runtime, policy: Policy, task: Any = TASK, **config: Any) -> Trajectory:
    settings = EpisodeConfig(retries=0, **config)
    provenance = await runtime_provenance(rt, policy, settings)
    return await play(rt, task, policy, config=settings, sample=0, base_seed=5, provenance=provenance)


async def test_replay_checks_prompt_and_turn_token_ids(tokenizer: Any) -> None:
    async with ProcessRuntime("echo") as rt:
        recorded = await play_all(rt, TASKS[:2], ScriptedPolicy(echo_script, tokenizer=tokenizer), group_size=1,
                                  config=EpisodeConfig())
    assert all(t.prompt_ids and t.provenance.runtime == "process" for t in recorded)
    results = await replay(recorded, tokenizer=tokenizer)
    assert [(r.status, r.notes) for r in results] == [("identical", [])] * 2
    assert [r.steps for r in results] == [len(t.turns) for t in recorded]
    tampered = recorded[1].model_copy(deep=True)
    tampered.prompt_ids[3] += 1
    assert tampered.turns[1].loss_mask[-1] == 0  # the environment's tokens (a generated one would change the text)
    tampered.turns[1].token_ids[-1] += 1
    (result,) = await replay([tampered], tokenizer=tokenizer)
    assert result.status == "diverged" and not result.ok
    assert [(d.where, d.field) for d in result.divergences] == [
        ("prompt", "prompt_ids"), ("turn 1", "token_ids")]
    assert result.divergence is not None and result.divergence.startswith("prompt prompt_ids: first differs at "
                                                                           "position 3")
    # Without the tokenizer the same replay says what it could not check, and finds nothing else.
    (unchecked,) = await replay([tampered])
    assert unchecked.ok and unchecked.notes == ["token ids not checked: replay with the policy's tokenizer to "
                                                "check them"]


async def test_every_divergence_is_reported_and_summarized() -> None:
    async with LocalRuntime("echo") as rt:
        recorded = await play_all(rt, TASKS[:3], ScriptedPolicy(echo_script), group_size=1, config=EpisodeConfig())
    first, second, third = (t.model_copy(deep=True) for t in recorded)
    first.turns[0].observation[0].content = "not what it said"
    first.turns[-1].signals["success"] = 0.0
    first.signals["success"] = 0.0
    second.turns[0].observation[0].content = "nor this"
    assert second.turns[0].action is not None
    second.turns[0].action.tool_calls[0].function.arguments = '{"word": "other"}'  # re-parsed from the text
    results = await replay([first, second, third])
    assert [r.status for r in results] == ["diverged", "diverged", "identical"]
    assert [str(d).split(":")[0] for d in results[0].divergences] == [
        "turn 0 observation", f"turn {len(first.turns) - 1} signals", "signals"]
    assert [(d.where, d.field) for d in results[1].divergences] == [("turn 0", "action"), ("turn 0", "observation")]
    rows = summarize((r.id, r.divergences) for r in results)
    assert [(r.field, r.trajectories, r.occurrences) for r in rows] == [
        ("observation", 2, 2), ("signals", 1, 2), ("action", 1, 1)]
    assert rows[0].first_seen == "turn 0" and "not what it said" in rows[0].example


class FailsOnSecondTurn(Policy):
    """Answers the first turn, then the engine is gone: an infrastructure failure after a played turn."""

    name = "fails"

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        if assistant_turns(prompt.messages):
            raise PolicyError("the engine is gone")
        return Completion(text=ECHO)


async def test_a_masked_trajectory_is_reported_as_such_not_as_a_divergence() -> None:
    async with LocalRuntime("echo") as rt:
        masked = await record(rt, FailsOnSecondTurn())
    assert masked.masked and len(masked.turns) == 1 and masked.error is not None
    (result,) = await replay([masked])
    assert result.status == "masked" and result.ok and not result.divergences and result.steps == 0
    assert result.notes[0].startswith("masked: policy_error (infra): the engine is gone")


async def test_a_time_cut_trajectory_replays_the_turns_it_played_graded(tokenizer: Any) -> None:
    task = TASK.model_copy(update={"payload": {**TASK.payload, "step_seconds": 0.3}})
    policy = ScriptedPolicy([ECHO], tokenizer=tokenizer)
    async with ProcessRuntime(SlowGradedEnv, env_vars=CHILD_ENV) as rt:
        recorded = await record(rt, policy, task, episode_seconds=0.5)
        played = len(recorded.turns)  # one or two: the time limit stops it after the step that reaches it
        assert recorded.truncated_by == "max_seconds" and played >= 1 and recorded.signals["graded"] == 1.0
        result = await replay_one(rt, recorded, tokenizer=tokenizer)
    assert result.status == "identical" and result.steps == played
    assert result.notes == [f"the time limit ended it after {played} turns: those are replayed"]


async def test_a_turn_cut_at_the_token_limit_is_not_executed_again(tokenizer: Any) -> None:
    replies = [ECHO, ECHO + " blah" * 300]
    async with LocalRuntime(GradedEnv) as rt:
        one_turn = len((await record(rt, ScriptedPolicy(replies, tokenizer=tokenizer), max_turns=1)).token_ids)
        by_tokens = await record(rt, ScriptedPolicy(replies, tokenizer=tokenizer), max_tokens=one_turn + 20)
        by_context = await record(rt, ScriptedPolicy(replies, tokenizer=tokenizer, max_model_len=one_turn + 20))
        for recorded, by in ((by_tokens, "max_tokens"), (by_context, "context")):
            assert recorded.truncated_by == by and len(recorded.turns) == 2 and recorded.turns[1].observation == []
            exact = await replay_one(rt, recorded, tokenizer=tokenizer)
            assert (exact.status, exact.steps, exact.notes) == ("identical", 1, [])
            chat_level = await replay_one(rt, recorded)
            assert (chat_level.status, chat_level.steps) == ("identical", 1)
            assert f"turn 1 was cut by the {by} limit and never executed: not replayed" in chat_level.notes


async def test_twice_tells_whether_the_environment_answers_the_same_actions_the_same_way() -> None:
    async with LocalRuntime("echo") as echo, LocalRuntime(NondeterministicEnv) as noisy:
        steady = await record(echo, ScriptedPolicy(echo_script))
        random = await record(noisy, ScriptedPolicy(echo_script))
        same = await replay_one(echo, steady, twice=True)
        differs = await replay_one(noisy, random, twice=True)
    assert same.status == "identical" and same.deterministic is True and same.nondeterminism == []
    assert differs.deterministic is False and [(d.where, d.field) for d in differs.nondeterminism] == [
        ("prompt", "prompt")]
    assert differs.status == "diverged"  # from the recording too, for the same reason


def test_the_command_reports_every_divergence_with_a_summary(tmp_path: Path, tokenizer: Any, smollm2: Path) -> None:
    import asyncio

    async def make() -> list[Trajectory]:
        # Recorded under the name of a local model: the command checks token ids with that model's tokenizer.
        policy = ScriptedPolicy(echo_script, tokenizer=tokenizer, name=smollm2.name)
        async with LocalRuntime("echo") as rt:
            return await play_all(rt, TASKS[:2], policy, group_size=1, config=EpisodeConfig())

    trajectories = asyncio.run(make())
    trajectories[0].turns[0].observation[0].content = "changed"
    trajectories[0].turns[0].token_ids[-1] += 1  # an environment token (loss mask 0)
    trajectories[1].turns[0].signals["progress"] = 0.25
    writer = TrajectoryStore(tmp_path / "store").writer()
    for trajectory in trajectories:
        writer.append(trajectory.model_copy(update={"provenance": trajectory.provenance.model_copy(
            update={"runtime": "process"})}))
    writer.close()
    env = {**os.environ, "COLUMNS": "250"}
    done = subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "replay", str(tmp_path / "store"), "--twice"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "divergences by field" in done.stdout and "0 identical, 2 diverged" in done.stdout
    assert "0 replayed differently twice" in done.stdout and "not checked" not in done.stdout
    for shown in ("turn 0 observation", "turn 0 token_ids: first differs at position", "turn 0 signals"):
        assert shown in done.stdout

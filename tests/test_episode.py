"""The episode loop in-process: token accuracy across turns, format errors, limits, retries, seeds, replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent.chat import message_dict
from gymbox.agent.policy import Completion, Policy, PolicyError, Prompt, Sampling
from gymbox.agent.scripted import ReplayPolicy, ScriptedPolicy
from gymbox.environments.api.models import Message
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, make_runtime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig, run_episode
from gymbox.harness.replay import replay
from gymbox.harness.rollout import group_seed, play, play_all, runtime_provenance
from gymbox.rewards.score import score
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.spec import Limits
from tests.conftest import CHILD_ENV
from tests.envs import SlowEnv, SlowGradedEnv

TASKS = load_suite("echo-demo").tasks


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


async def episode(policy: Policy, task: TaskSpec = TASKS[1], config: EpisodeConfig | None = None, **kw: Any):
    async with LocalRuntime("echo") as rt, await rt.client() as client:
        return await run_episode(client, task, policy, config=config or EpisodeConfig(), seed=kw.pop("seed", 7), **kw)


async def test_token_ids_are_carried_across_turns_never_retokenized(tokenizer: Any) -> None:
    task = TASKS[1]  # says its word twice
    word = task.payload["word"]
    replies = ["Let me think. " + call("echo", word=word), call("echo", word=word), "done " + call("submit")]
    policy = ScriptedPolicy(replies, tokenizer=tokenizer)
    trajectory = await episode(policy, task)
    assert trajectory.terminated and trajectory.signals["success"] == 1.0 and trajectory.error is None
    # The generated tokens sit in the sequence exactly as the policy produced them, with mask 1 and logprobs.
    for turn, reply in zip(trajectory.turns, replies, strict=True):
        generated = [t for t, m in zip(turn.token_ids, turn.loss_mask, strict=True) if m]
        assert generated == [*tokenizer(reply, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        assert all(lp == 0.0 for lp, m in zip(turn.logprobs, turn.loss_mask, strict=True) if m)
        assert all(lp is None for lp, m in zip(turn.logprobs, turn.loss_mask, strict=True) if not m)
    # The whole sequence decodes to the template's rendering of the conversation the policy saw (the answer to
    # the final turn is not part of it), up to the final end-of-turn token.
    conversation = [Message(role="system", content=trajectory.instructions), *trajectory.prompt]
    for turn in trajectory.turns:
        conversation += [Message(role="assistant", content=turn.text), *turn.observation]
    conversation = conversation[: -len(trajectory.turns[-1].observation)]
    rendered = tokenizer.apply_chat_template([message_dict(m) for m in conversation], tokenize=False)
    decoded = tokenizer.decode(trajectory.token_ids)
    assert decoded.endswith("<|im_end|>") and rendered.startswith(decoded) and rendered[len(decoded):] == "\n"
    assert len(trajectory.token_ids) == len(trajectory.loss_mask) == len(trajectory.logprobs)
    assert sum(trajectory.loss_mask) == sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1
                                            for r in replies)


async def test_unparseable_reply_gets_a_format_reminder_and_never_reaches_the_environment(tokenizer: Any) -> None:
    task = TASKS[0]
    broken = '<tool_call>{"name": "echo", "arguments": {"word": </tool_call>'
    replies = [broken, call("echo", word=task.payload["word"]), call("submit")]
    trajectory = await episode(ScriptedPolicy(replies, tokenizer=tokenizer), task)
    first = trajectory.turns[0]
    assert first.action is None and "invalid" in (first.parse_error or "")
    assert first.signals == {"format_error": 1.0, "valid_action": 0.0}
    reminder = first.observation[0].content or ""
    assert "could not be parsed" in reminder and "<tool_call>" in reminder
    assert first.env_seconds == 0.0
    assert trajectory.signals["success"] == 1.0 and len(trajectory.turns) == 3


async def test_garbage_policy_is_truncated_by_the_turn_limit() -> None:
    policy = ScriptedPolicy(["\x00\ufffd<tool_call>{{{{" * 50])
    trajectory = await episode(policy, config=EpisodeConfig(max_turns=4))
    assert trajectory.truncated and trajectory.truncated_by == "max_turns" and trajectory.error is None
    assert len(trajectory.turns) == 4 and all(t.signals.get("format_error") == 1.0 for t in trajectory.turns)
    assert score(trajectory).reward == 0.0


async def test_context_and_token_limits_truncate(tokenizer: Any) -> None:
    word = TASKS[1].payload["word"]
    long_reply = call("echo", word=word) + " blah" * 200
    trajectory = await episode(ScriptedPolicy([long_reply], tokenizer=tokenizer, max_model_len=400))
    assert trajectory.truncated and trajectory.truncated_by == "context" and trajectory.error is None
    assert len(trajectory.token_ids) <= 400
    assert trajectory.turns[-1].loss_mask.count(1) < len(tokenizer(long_reply)["input_ids"])  # cut at the limit
    trajectory = await episode(ScriptedPolicy([long_reply], tokenizer=tokenizer),
                               config=EpisodeConfig(max_tokens=600))
    assert trajectory.truncated_by == "max_tokens" and len(trajectory.token_ids) <= 600
    # A prompt that does not fit at all: no turn, truncated, not an error.
    trajectory = await episode(ScriptedPolicy(["x"], tokenizer=tokenizer, max_model_len=20))
    assert trajectory.truncated_by in ("context", "max_tokens") and trajectory.turns == []


async def test_the_time_limit_counts_the_environments_time_not_the_policys() -> None:
    # A policy slower than the whole limit (a busy engine, other episodes ahead in its queue) is not cut off ...
    task = TASKS[1].model_copy(update={"limits": Limits(max_seconds=0.5)})
    word = task.payload["word"]
    policy = ScriptedPolicy([call("echo", word=word), call("echo", word=word), call("submit")], delay=0.3)
    trajectory = await episode(policy, task)
    assert trajectory.terminated and not trajectory.truncated and trajectory.signals["success"] == 1.0
    assert trajectory.policy_seconds >= 0.9 and trajectory.policy_seconds >= sum(t.policy_seconds
                                                                                for t in trajectory.turns)
    assert 0 < trajectory.env_seconds < 0.5 and trajectory.seconds >= trajectory.policy_seconds
    # ... while an environment that uses up the harness's limit is, and then graded.
    slow = TASKS[1].model_copy(update={"payload": {**TASKS[1].payload, "step_seconds": 0.3}})
    async with LocalRuntime(SlowGradedEnv) as rt, await rt.client() as client:
        trajectory = await run_episode(client, slow, ScriptedPolicy([call("echo", word=word)]), seed=7,
                                       config=EpisodeConfig(episode_seconds=0.5))
    assert trajectory.truncated and trajectory.truncated_by == "max_seconds" and len(trajectory.turns) == 2
    assert trajectory.env_seconds >= 0.5 and trajectory.signals["graded"] == 1.0


async def test_chat_level_policy_records_text_and_calls_without_tokens() -> None:
    task = TASKS[0]
    seen: list[list[Message]] = []

    def script(messages: list[Message], turn: int) -> str:
        seen.append(messages)
        return echo_script(messages, turn)

    trajectory = await episode(ScriptedPolicy(script), task)
    assert trajectory.signals["success"] == 1.0 and trajectory.token_ids == [] and trajectory.prompt_ids == []
    last = seen[-1]
    assert last[0].role == "system" and "<tool_call>" in (last[0].content or "")
    assistant = [m for m in last if m.role == "assistant"]
    assert assistant[0].tool_calls and assistant[0].tool_calls[0].function.name == "echo"
    tool = [m for m in last if m.role == "tool"]
    assert tool[0].tool_call_id == assistant[0].tool_calls[0].id


class Failing(Policy):
    name = "failing"

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        raise PolicyError("the engine is gone")


async def test_policy_failure_is_an_infrastructure_error_retried_then_masked() -> None:
    config = EpisodeConfig(retries=1)
    async with LocalRuntime("echo") as rt:
        provenance = await runtime_provenance(rt, Failing(), config)
        trajectory = await play(rt, TASKS[0], Failing(), config=config, sample=0, base_seed=3, provenance=provenance)
    assert trajectory.error is not None and trajectory.error.code == "policy_error"
    assert trajectory.error.infra and trajectory.error.attempts == 2 and trajectory.masked
    assert trajectory.reward is None


async def test_a_hanging_environment_hits_the_step_timeout_and_is_masked_not_scored() -> None:
    task = TaskSpec(id="hang", env="echo", payload={"step_seconds": 30}, limits=Limits(step_seconds=1.0))
    config = EpisodeConfig(retries=1)
    policy = ScriptedPolicy(["anything"])
    async with ProcessRuntime(SlowEnv, env_vars=CHILD_ENV) as rt:
        provenance = await runtime_provenance(rt, policy, config)
        trajectory = await play(rt, task, policy, config=config, sample=0, base_seed=0, provenance=provenance)
    assert trajectory.error is not None and trajectory.error.code == "timeout" and trajectory.error.infra
    assert trajectory.error.attempts == 2 and trajectory.reward is None
    assert [e.code for e in trajectory.failed_attempts] == ["timeout"]


async def test_a_group_shares_the_environment_seed_and_samples_differ_in_sampling_seeds() -> None:
    seeds: list[int | None] = []

    class Recording(ScriptedPolicy):
        async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
            seeds.append(sampling.seed)
            return await super().generate(prompt, sampling)

    async with LocalRuntime("echo") as rt:
        trajectories = await play_all(rt, TASKS[:2], Recording(echo_script), group_size=3, config=EpisodeConfig(),
                                      base_seed=11)
    assert len(trajectories) == 6
    for task in TASKS[:2]:
        group = [t for t in trajectories if t.task.id == task.id]
        assert {t.seed for t in group} == {group_seed(11, task)} and sorted(t.sample for t in group) == [0, 1, 2]
        assert len({t.group for t in group}) == 1
        assert f"episode seed {group[0].seed}" in (group[0].prompt[0].content or "")
    assert len(set(seeds)) == len(seeds)  # every turn of every sample has its own sampling seed


async def test_replay_reproduces_and_reports_the_first_divergence(tokenizer: Any) -> None:
    policy = ScriptedPolicy(echo_script, tokenizer=tokenizer)
    async with make_runtime("process", "echo") as rt:
        trajectories = await play_all(rt, TASKS[:3], policy, group_size=1, config=EpisodeConfig())
    assert all(t.provenance.runtime == "process" and t.provenance.env == "echo@v1" for t in trajectories)
    results = await replay(trajectories)
    assert [r.ok for r in results] == [True] * 3 and all(r.steps >= 2 for r in results)
    tampered = trajectories[2].model_copy(deep=True)
    tampered.turns[1].observation[0].content = "something else"
    (result,) = await replay([tampered])
    assert not result.ok and result.divergence is not None
    assert result.divergence.startswith("turn 1 observation") and "something else" in result.divergence
    # The replay policy gives back the recorded generations, token for token.
    again = await episode(ReplayPolicy.from_trajectory(trajectories[0], tokenizer=tokenizer), trajectories[0].task,
                          seed=trajectories[0].seed)
    assert again.token_ids == trajectories[0].token_ids and again.signals == trajectories[0].signals

"""From trajectories to learner samples: token alignment, per-turn advantages, masking, the format ladder."""

from __future__ import annotations

import pytest

from gymbox.agent.learner.batch import sample_of
from gymbox.environments.api.models import Action, Message, ToolSpec
from gymbox.environments.records import EpisodeError, Trajectory, Turn
from gymbox.harness.train_signal import advantages, reward_metrics, samples_of
from gymbox.rewards.format_ladder import format_ladder, json_objects
from tests.reward_fixtures import trajectory


def tokens_turn(index: int, policy: list[int], env: list[int], text: str = "") -> Turn:
    return Turn(index=index, token_ids=policy + env, loss_mask=[1] * len(policy) + [0] * len(env),
                logprobs=[-0.5] * len(policy) + [None] * len(env), text=text)


def episode(group: str, sample: int, reward: float | None, *, error: EpisodeError | None = None) -> Trajectory:
    t = trajectory([tokens_turn(0, [5, 6], [7, 8]), tokens_turn(1, [9], [10, 11])], error=error)
    return t.model_copy(update={"id": f"{group}-{sample}", "group": group, "sample": sample, "reward": reward,
                                "prompt_ids": [1, 2, 3]})


def test_a_sample_aligns_tokens_masks_and_turn_advantages_and_drops_the_last_answer() -> None:
    s = sample_of(episode("g", 0, 1.0), [0.5, -1.0])
    assert s.token_ids == [1, 2, 3, 5, 6, 7, 8, 9]  # the final answer (10, 11) cannot affect a policy token
    assert s.mask == [0, 0, 0, 1, 1, 0, 0, 1]
    assert s.advantages == [0, 0, 0, 0.5, 0.5, 0, 0, -1.0]
    assert s.logprobs == [0, 0, 0, -0.5, -0.5, 0, 0, -0.5]
    assert sample_of(episode("g", 0, 1.0), 2.0).advantages == [0, 0, 0, 2.0, 2.0, 0, 0, 2.0]


def test_masked_rollouts_never_become_samples() -> None:
    infra = EpisodeError(code="container_died", message="gone", infra=True)
    with pytest.raises(ValueError, match="masked"):
        sample_of(episode("g", 0, None, error=infra), 1.0)
    batch = [episode("a", 0, 1.0), episode("a", 1, 0.0), episode("a", 2, None, error=infra),
             episode("b", 0, 0.0), episode("b", 1, 0.0)]
    values, zero_std = advantages(batch, estimator="grpo")
    assert values[2] == 0.0 and values[0] == pytest.approx(1.0, abs=1e-4) and values[1] == pytest.approx(-1.0, 1e-4)
    assert zero_std == 0.5  # group b's rewards are all equal
    samples = samples_of(batch, values, skip_zero=True)
    assert [s.source for s in samples] == ["a-0", "a-1"]
    assert len(samples_of(batch, values, skip_zero=False)) == 4  # the masked one never
    m = reward_metrics(batch)
    assert m["masked"] == 1 and m["rollouts"] == 5 and m["reward_mean"] == pytest.approx(0.25)


def test_turn_level_advantages_come_per_turn() -> None:
    batch = [episode("a", 0, 1.0).model_copy(update={"turn_rewards": [0.0, 1.0]}),
             episode("a", 1, 0.0).model_copy(update={"turn_rewards": [0.0, 0.0]})]
    values, _ = advantages(batch, estimator="grpo", turn_level=True)
    assert all(isinstance(v, list) and len(v) == 2 for v in values)
    assert values[0][0] > 0 > values[1][0]  # the return from turn 0 includes the later reward


def ladder_turn(text: str, *, call: bool = False) -> Turn:
    action = Action(text=text, tool_calls=[{"id": "c0", "function": {"name": "echo", "arguments": "{}"}}]) \
        if call else None
    return Turn(index=0, text=text, action=action, observation=[Message(role="user", content="ok")])


@pytest.mark.parametrize(("text", "call", "value"), [
    ("Hello there", False, 0.0),
    ("I will use echo now", False, 0.25),
    ('Here: {"a": 1}', False, 0.25),
    ('{"name": "other", "arguments": {}}', False, 0.25),  # a JSON object, but no known tool named
    ('{"name": "echo", "arguments": {"word": "x"}}', False, 0.75),
    ('{"name": "echo", "arguments": {"word": "x"}}', True, 1.0),
])
def test_format_ladder_credits_each_step(text: str, call: bool, value: float) -> None:
    t = trajectory([ladder_turn(text, call=call)], env="echo@v1")
    t = t.model_copy(update={"tools": [ToolSpec.make("echo", "say"), ToolSpec.make("submit", "end")]})
    assert format_ladder(t) == value


def test_format_ladder_does_not_apply_without_tools() -> None:
    assert format_ladder(trajectory([ladder_turn("echo")], env="echo@v1")) is None
    assert list(json_objects("{" * 10_000)) == []  # a pathological reply ends quickly

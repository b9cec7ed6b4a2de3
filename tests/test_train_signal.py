"""From trajectories to learner samples: token alignment, per-turn advantages, masking, the format ladder."""

from __future__ import annotations

import pytest
import torch

from gymbox.agent.learner.batch import sample_of
from gymbox.environments.api.models import Action, Message, ToolSpec
from gymbox.environments.records import EpisodeError, Trajectory, Turn
from gymbox.harness.train_signal import advantages, reward_metrics, samples_of
from gymbox.rewards.advantages import get_estimator
from gymbox.rewards.format_ladder import format_ladder, json_objects
from gymbox.rewards.spec import RewardSpec
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


def test_turn_level_without_a_per_turn_component_learns_from_the_outcome_at_the_last_turn() -> None:
    from gymbox.rewards.score import score

    def scored(group: str, sample: int, success: float) -> Trajectory:
        t = episode(group, sample, None).model_copy(update={"signals": {"success": success}})
        return score(t)  # the default spec (the outcome) has no per-turn component: no turn_rewards

    batch = [scored("a", 0, 1.0), scored("a", 1, 0.0), scored("b", 0, 1.0), scored("b", 1, 1.0)]
    assert all(t.turn_rewards is None and t.reward is not None for t in batch)
    values, zero_std = advantages(batch, estimator="grpo", turn_level=True)
    assert all(isinstance(v, list) and len(v) == 2 for v in values)
    assert values[0][0] > 0 > values[1][0] and values[0][1] > 0 > values[1][1]  # the outcome, seen from each turn
    assert values[2] == values[3] == [0.0, 0.0] and zero_std == 0.5  # group b's rewards are equal
    samples = samples_of(batch, values, skip_zero=True)
    assert [s.source for s in samples] == ["a-0", "a-1"]
    assert samples[0].advantages == [0, 0, 0] + [values[0][0]] * 2 + [0, 0, values[0][1]]


GATED = {"accumulate": "gated", "components": [{"fn": "format_ladder", "name": "format", "gate": 1.0, "weight": 0.5},
                                               {"fn": "outcome", "weight": 2.0}]}


def laddered(sample: int, text: str, call: bool, success: float, spec: RewardSpec, *,
             truncated: bool = False) -> Trajectory:
    """A one-turn echo rollout scored by `spec`: the format ladder from its reply, the outcome from `success`."""
    t = trajectory([ladder_turn(text, call=call)], env="echo@v1", signals={"success": success}, truncated=truncated)
    t = t.model_copy(update={"id": f"g-{sample}", "group": "g", "sample": sample,
                             "tools": [ToolSpec.make("echo", "say"), ToolSpec.make("submit", "end")]})
    return spec.apply(t)


@pytest.mark.parametrize("estimator", ["gdpo", "dvao"])
def test_multi_reward_advantages_use_the_specs_gates_and_weights(estimator: str) -> None:
    spec = RewardSpec.model_validate(GATED)
    good, partial = '{"name": "echo", "arguments": {"word": "x"}}', "I will use echo now"
    batch = [laddered(0, good, True, 1.0, spec),  # format 1 opens the gate: the outcome counts
             laddered(1, partial, False, 1.0, spec),  # format 0.25: the success stays behind the closed gate
             laddered(2, good, True, 0.0, spec),
             laddered(3, partial, False, 0.0, spec),
             laddered(4, good, True, 1.0, spec, truncated=True)]  # cut short: every gate closed
    assert [t.reward for t in batch] == [2.5, 0.125, 0.5, 0.125, 0.5]
    assert batch[1].rewards["outcome"] == 1.0  # recorded ungated
    values, _ = advantages(batch, estimator=estimator, spec=spec)
    gated = torch.tensor([[1.0, 1.0], [0.25, 0.0], [1.0, 0.0], [0.25, 0.0], [1.0, 0.0]], dtype=torch.float64)
    expected = get_estimator(estimator)(gated, torch.zeros(5, dtype=torch.long), weights=torch.tensor([0.5, 2.0],
                                                                                                      dtype=torch.float64))
    assert values == pytest.approx(expected.values.tolist(), abs=1e-9)
    assert values[1] == pytest.approx(values[3]) and values[4] == pytest.approx(values[2])  # gates closed: no credit
    assert values[0] > values[2] > values[1]
    with pytest.raises(ValueError, match="pass the spec"):
        advantages(batch, estimator=estimator)


def test_multi_reward_advantages_refuse_rewards_of_another_spec() -> None:
    spec = RewardSpec.model_validate(GATED)
    other = RewardSpec.model_validate({"components": [{"fn": "outcome"}]})
    batch = [laddered(i, "echo", False, float(i), other) for i in range(2)]
    with pytest.raises(ValueError, match="another spec"):
        advantages(batch, estimator="gdpo", spec=spec)


@pytest.mark.parametrize(("advantage", "spec", "message"), [
    ("dvao", "components: [{fn: outcome, weight: -1.0}]", "weights must be >= 0"),
    ("gdpo", "ungated_penalties: true\ncomponents: [{fn: outcome, gate: 1.0}, {fn: grounding}]", "ungated_penalties"),
])
def test_a_spec_the_multi_reward_estimators_cannot_combine_is_refused_at_load(tmp_path, advantage: str, spec: str,
                                                                             message: str) -> None:
    from gymbox.harness.train_config import TrainConfig, TrainConfigError

    (tmp_path / "spec.yaml").write_text(spec)
    config = f"suite: echo-demo:train\nadvantage: {advantage}\nepisode: {{reward: spec.yaml}}\n"
    (tmp_path / "train.yaml").write_text(config)
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig.load(tmp_path / "train.yaml")

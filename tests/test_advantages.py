"""Advantage estimators: hand-computed values, the edge-case table (rewards spec, section 6), and properties."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from gymbox.rewards.advantages import (
    ESTIMATORS,
    Advantages,
    dr_grpo,
    dvao,
    gdpo,
    get_estimator,
    grpo,
    rloo,
    unlikeliness,
)
from gymbox.rewards.turns import discounted_returns, renorm, turn_advantages

NAN = float("nan")
MULTI = ("gdpo", "dvao")  # rewards [N, K]; NaN = not applicable
SINGLE = ("grpo", "dr_grpo", "rloo", "unlikeliness")  # rewards [N]; NaN on a valid rollout is refused
PROPERTY = settings(max_examples=50, deadline=None)  # deadline off: the first torch call in a process is slow


def f64(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def ids(*values: int) -> Tensor:
    return torch.tensor(values)


def approx(values: Tensor, expected: list[float]) -> None:
    # eps = 1e-6 in the denominators moves normalized values by about 1e-6 relative.
    assert values.tolist() == pytest.approx(expected, abs=1e-5)


def run(name: str, rewards: Tensor, groups: Tensor, valid: Tensor | None = None) -> Advantages:
    """Any estimator on one reward per rollout: multi-reward ones see it as K = 1, unlikeliness gets distinct ranks."""
    if name in MULTI:
        return get_estimator(name)(rewards.unsqueeze(1), groups, valid)
    if name == "unlikeliness":
        logprobs = -0.1 * torch.arange(1, len(rewards) + 1, dtype=torch.float64)
        return unlikeliness(rewards, groups, valid, logprobs=logprobs)
    return get_estimator(name)(rewards, groups, valid)


# Hand-computed values.

def test_grpo_divides_by_the_population_std() -> None:
    # mean 3, deviations (-2, -1, 0, 3), population variance 14 / 4 = 3.5, std 1.8708287.
    approx(grpo(f64(1, 2, 3, 6), ids(0, 0, 0, 0)).values, [-1.0690450, -0.5345225, 0.0, 1.6035675])


def test_dr_grpo_only_centers() -> None:
    approx(dr_grpo(f64(1, 2, 3, 6), ids(0, 0, 0, 0)).values, [-2.0, -1.0, 0.0, 3.0])


def test_rloo_subtracts_the_mean_of_the_others() -> None:
    # others' means: 11/3, 10/3, 9/3, 6/3.
    approx(rloo(f64(1, 2, 3, 6), ids(0, 0, 0, 0)).values, [-8 / 3, -4 / 3, 0.0, 4.0])


def test_gdpo_normalizes_each_reward_in_its_group_then_the_sum_over_the_batch() -> None:
    rewards = f64(1, 0, 0, 0, 1, 3, 1, 1, 1, 0, 1, 0).reshape(6, 2)
    result = gdpo(rewards, ids(0, 0, 1, 1, 2, 2), weights=f64(2, 1))
    # Group 0: reward 0 gives z (1, -1), reward 1 is constant (0): S = (2, -2). Group 1: S = (1, -1) from reward 1.
    # Group 2: both constant, S = (0, 0). Batch: mean 0, population std sqrt(10 / 6) = 1.2909944.
    approx(result.values, [1.5491933, -1.5491933, 0.7745967, -0.7745967, 0.0, 0.0])
    assert (result.zero_std_groups, result.groups) == (1, 3)


def test_gdpo_leaves_not_applicable_rewards_out_of_their_statistics() -> None:
    rewards = f64(1, NAN, 0, 1, 0, 3).reshape(3, 2)
    # Reward 0 over (1, 0, 0): z = (1.4142136, -0.7071068, -0.7071068); reward 1 over rollouts 1 and 2 only: (0, -1, 1).
    # S = (1.4142136, -1.7071068, 0.2928932), batch std sqrt(5 / 3).
    approx(gdpo(rewards, ids(5, 5, 5)).values, [1.0954451, -1.3223192, 0.2268741])


def test_dvao_weights_each_reward_by_its_share_of_the_spread() -> None:
    rewards = f64(1, 2, 0, 2, 1, 0, 0, 0).reshape(4, 2)
    # sigma = (0.5, 1): v = (1/3, 2/3); z0 = (1, -1, 1, -1), z1 = (1, 1, -1, -1).
    approx(dvao(rewards, ids(0, 0, 0, 0)).values, [1.0, 1 / 3, -1 / 3, -1.0])
    # b = (2, 1): b * sigma = (1, 1), v = (1/2, 1/2).
    approx(dvao(rewards, ids(0, 0, 0, 0), weights=f64(2, 1)).values, [1.0, 0.0, 0.0, -1.0])


def test_dvao_leaves_not_applicable_rewards_out_of_their_statistics() -> None:
    rewards = f64(1, NAN, 0, 2, 1, 0).reshape(3, 2)
    # Reward 0 over (1, 0, 1): mu 2/3, sigma 0.4714045; reward 1 over (2, 0): mu 1, sigma 1.
    # v = (0.3203772, 0.6796228); z0 = (0.7071068, -1.4142136, 0.7071068), z1 = (0, 1, -1).
    approx(dvao(rewards, ids(0, 0, 0)).values, [0.2265409, 0.2265409, -0.4530818])


def test_unlikeliness_lowers_the_reward_of_likely_rollouts() -> None:
    # Ranks from least likely: rollout 1 (-2.0) 0, rollout 2 (-1.0) 1, rollout 0 (-0.5) 2, rollout 3 (-0.1) 3.
    # r~ = r (1 - 0.25 rank / 4) = (0.875, 1, 0, 0.8125), then GRPO.
    result = unlikeliness(f64(1, 1, 0, 1), ids(0, 0, 0, 0), logprobs=f64(-0.5, -2.0, -1.0, -0.1))
    approx(result.values, [0.5158893, 0.8333596, -1.7064029, 0.3571541])


def test_unlikeliness_gives_tied_rollouts_the_mean_rank() -> None:
    # Ranks (1.5, 1.5, 0): r~ = (0.875, 0.875, 0).
    result = unlikeliness(f64(1, 1, 0), ids(0, 0, 0), logprobs=f64(-1.0, -1.0, -2.0))
    approx(result.values, [0.7071068, 0.7071068, -1.4142136])


def test_unlikeliness_with_beta_zero_is_grpo() -> None:
    rewards, groups = f64(1, 0, 3, 2, 2, 5), ids(0, 0, 0, 1, 1, 1)
    shaped = unlikeliness(rewards, groups, logprobs=f64(-1, -2, -3, -4, -5, -6), beta=0.0)
    assert torch.allclose(shaped.values, grpo(rewards, groups).values)


def test_discounted_returns() -> None:
    # gamma 0.5: G_2 = 2, G_1 = 0 + 0.5 * 2, G_0 = 1 + 0.5 * 1. Padding (NaN) reads as nothing and returns 0.
    approx(discounted_returns(f64(1, 0, 2).unsqueeze(0), ids(3), gamma=0.5)[0], [1.5, 1.0, 2.0])
    approx(discounted_returns(f64(1, 2, NAN).unsqueeze(0), ids(2))[0], [3.0, 2.0, 0.0])


def test_turn_advantages_compare_turns_at_the_same_step() -> None:
    rewards = f64(0, 1, NAN, 0, 0, 3, 9, 9, 9).reshape(3, 3)
    # Returns: rollout 0 (1, 1), rollout 1 (3, 3, 3); rollout 2 is masked. Steps 0 and 1 compare 1 with 3;
    # step 2 has one turn: 0, counted as zero-std.
    result = turn_advantages(rewards, ids(2, 3, 3), ids(7, 7, 7), torch.tensor([True, True, False]))
    approx(result.values.flatten(), [-1, -1, 0, 1, 1, 0, 0, 0, 0])
    assert (result.zero_std_groups, result.groups) == (1, 3)


def test_turn_advantages_compare_turns_with_the_same_observation() -> None:
    rewards = f64(0, 1, NAN, 0, 0, 3).reshape(2, 3)
    keys = ids(10, 20, 0, 10, 10, 20).reshape(2, 3)
    # Observation 10: returns (1, 3, 3), population std 0.9428090; observation 20: (1, 3).
    result = turn_advantages(rewards, ids(2, 3), ids(7, 7), keys=keys)
    approx(result.values.flatten(), [-1.4142136, -1.0, 0.0, 0.7071068, 0.7071068, 1.0])
    assert (result.zero_std_groups, result.groups) == (0, 2)


def test_renorm_adds_the_outcome_minus_beta_before_the_last_turn() -> None:
    process = f64(0.2, 0.5, 0.9, 0.3, 0.4, NAN).reshape(2, 3)
    approx(renorm(process, f64(1, 0), ids(3, 2)).flatten(), [0.2, 0.5, 1.0, -0.7, 0.0, 0.0])


# The edge-case table, for every estimator.

@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_equal_rewards_give_zero_and_are_counted(name: str) -> None:
    result = run(name, f64(1, 1, 1, 0, 2, 0), ids(0, 0, 0, 1, 1, 1))
    assert result.values[:3].tolist() == [0.0, 0.0, 0.0]
    assert result.values[3:].abs().sum() > 0
    assert (result.zero_std_groups, result.groups, result.zero_std_fraction) == (1, 2, 0.5)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_group_of_one_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"group 4 has 1 rollout.*G >= 2"):
        run(name, f64(1, 0, 1), ids(3, 3, 4))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_masked_rollouts_are_left_out_and_get_zero(name: str) -> None:
    valid = torch.tensor([True, True, False, True, True, True])
    masked = run(name, f64(0, 1, NAN, 2, 2, 3), ids(0, 0, 0, 1, 1, 1), valid)
    without = run(name, f64(0, 1, 2, 2, 3), ids(0, 0, 1, 1, 1))
    if name == "unlikeliness":  # `run` numbers log-probs by position: give the shorter batch the same ones
        without = unlikeliness(f64(0, 1, 2, 2, 3), ids(0, 0, 1, 1, 1), logprobs=f64(-0.1, -0.2, -0.4, -0.5, -0.6))
    assert masked.values[2].item() == 0.0
    assert torch.equal(masked.values[[0, 1, 3, 4, 5]], without.values)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_group_with_fewer_than_two_valid_rollouts_gets_zero(name: str) -> None:
    result = run(name, f64(1, 0, 1, 0), ids(0, 0, 1, 1), torch.tensor([True, False, True, True]))
    assert result.values[:2].tolist() == [0.0, 0.0]
    assert result.zero_std_groups == 1


@pytest.mark.parametrize("name", SINGLE)
def test_a_missing_required_reward_is_refused_naming_the_rollout(name: str) -> None:
    with pytest.raises(ValueError, match="rollout 1 is nan"):
        run(name, f64(1, NAN, 0, 1), ids(0, 0, 1, 1))


@pytest.mark.parametrize("name", MULTI)
def test_an_infinite_reward_is_refused_naming_the_rollout(name: str) -> None:
    with pytest.raises(ValueError, match="reward 1 of rollout 2 is inf"):
        get_estimator(name)(f64(1, 0, 1, NAN, 0, float("inf")).reshape(3, 2), ids(0, 0, 0))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_an_empty_batch_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="empty batch"):
        run(name, f64(), ids().long())


def test_turn_level_edge_cases() -> None:
    with pytest.raises(ValueError, match="group 1 has 1 rollout"):
        turn_advantages(f64(1, 1, 1).reshape(3, 1), ids(1, 1, 1), ids(0, 0, 1))
    with pytest.raises(ValueError, match="rollout 1 at turn 0 is nan"):
        turn_advantages(f64(1, 0, NAN, 0).reshape(2, 2), ids(2, 2), ids(0, 0))
    with pytest.raises(ValueError, match="empty batch"):
        turn_advantages(torch.zeros(0, 3), ids().long(), ids().long())


def test_estimators_are_chosen_by_name() -> None:
    assert set(ESTIMATORS) == {"grpo", "dr_grpo", "rloo", "gdpo", "dvao", "unlikeliness"}
    assert get_estimator("rloo") is rloo
    with pytest.raises(ValueError, match="unknown advantage estimator 'ppo'; choose one of grpo"):
        get_estimator("ppo")


def test_values_come_back_in_the_rewards_dtype() -> None:
    assert grpo(torch.tensor([1.0, 0.0]), ids(0, 0)).values.dtype == torch.float32


# Properties over random batches.

@dataclass(frozen=True)
class Batch:
    rewards: Tensor  # [N, 2]: column 0 is the single reward; column 1 may be NaN (not applicable)
    groups: Tensor
    valid: Tensor
    logprobs: Tensor

    def advantages(self, name: str) -> Advantages:
        if name in MULTI:
            return get_estimator(name)(self.rewards, self.groups, self.valid)
        if name == "unlikeliness":
            return unlikeliness(self.rewards[:, 0], self.groups, self.valid, logprobs=self.logprobs)
        return get_estimator(name)(self.rewards[:, 0], self.groups, self.valid)


# Rewards on a grid of quarters: sums and shifts stay exact, so "all equal" never hinges on rounding.
quarters = st.integers(-8, 8).map(lambda k: k / 4)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    sizes = draw(st.lists(st.integers(2, 5), min_size=1, max_size=4))
    n = sum(sizes)
    order = torch.tensor(draw(st.permutations(range(n))))  # rollouts of a group need not be adjacent
    groups = torch.tensor([10 * g for g, size in enumerate(sizes) for _ in range(size)])[order]
    column = st.lists(quarters, min_size=n, max_size=n)
    second = st.lists(quarters | st.just(NAN), min_size=n, max_size=n)
    rewards = torch.tensor([draw(column), draw(second)], dtype=torch.float64).T
    valid = torch.tensor(draw(st.lists(st.sampled_from([True, True, True, False]), min_size=n, max_size=n)))
    logprobs = torch.tensor(draw(st.lists(st.integers(-20, 0), min_size=n, max_size=n)), dtype=torch.float64) / 10
    return Batch(rewards=rewards, groups=groups, valid=valid, logprobs=logprobs)


@PROPERTY
@given(batch=batches())
def test_advantages_have_zero_mean_within_each_group(batch: Batch) -> None:
    # Holds for all six: GRPO, Dr. GRPO and unlikeliness center by the group mean; RLOO's leave-one-out baselines
    # sum to the group total; GDPO's and DVAO's per-reward z-scores each sum to 0 in a group, so GDPO's batch mean
    # is 0 and its batch normalization only rescales.
    in_group = batch.groups.unsqueeze(0) == batch.groups.unique().unsqueeze(1)  # [groups, N]
    for name in ESTIMATORS:
        sums = (in_group * batch.advantages(name).values).sum(dim=1)
        assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-9), name


@PROPERTY
@given(batch=batches(), shift=st.integers(-400, 400).map(lambda k: k / 4))
def test_adding_a_constant_to_every_reward_changes_nothing(batch: Batch, shift: float) -> None:
    # Not unlikeliness: r (1 - beta rank / G) scales the reward, so a shift changes how much the ranks matter.
    shifted = replace(batch, rewards=batch.rewards + shift)
    for name in set(ESTIMATORS) - {"unlikeliness"}:
        assert torch.allclose(shifted.advantages(name).values, batch.advantages(name).values, atol=1e-9), name


@PROPERTY
@given(batch=batches(), other=quarters | st.just(NAN))
def test_masked_rollouts_never_contribute(batch: Batch, other: float) -> None:
    masked = ~batch.valid
    changed = replace(batch, rewards=torch.where(masked.unsqueeze(1), other, batch.rewards),
                      logprobs=torch.where(masked, NAN, batch.logprobs))
    for name in ESTIMATORS:
        values = batch.advantages(name).values
        assert torch.equal(changed.advantages(name).values, values), name
        assert (values[masked] == 0).all(), name


@PROPERTY
@given(data=st.data(), gamma=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_turn_returns_follow_the_bellman_recursion(data: st.DataObject, gamma: float) -> None:
    n, t = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5))
    rewards = torch.tensor(data.draw(st.lists(quarters, min_size=n * t, max_size=n * t)),
                           dtype=torch.float64).reshape(n, t)
    lengths = torch.tensor(data.draw(st.lists(st.integers(0, t), min_size=n, max_size=n)))
    returns = discounted_returns(rewards, lengths, gamma=gamma)
    for i, length in enumerate(lengths.tolist()):
        following = 0.0
        for step in reversed(range(t)):
            following = rewards[i, step].item() + gamma * following if step < length else 0.0
            assert returns[i, step].item() == pytest.approx(following, abs=1e-9)
    if gamma == 1.0:  # undiscounted: the reversed cumulative sum of the real turns
        real = torch.arange(t) < lengths.unsqueeze(1)
        tail = torch.where(real, rewards, 0.0).flip(1).cumsum(1).flip(1)
        assert torch.allclose(returns, torch.where(real, tail, 0.0))

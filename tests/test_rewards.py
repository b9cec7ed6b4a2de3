"""Reward functions on hand-made trajectories: ToolRL's reference numbers, G-RA gates, progress and outcomes."""

from __future__ import annotations

import pytest

from gymbox.agent.parsers.toolrl import Shape
from gymbox.environments.records import Trajectory
from gymbox.rewards.gated import (
    direct_return,
    direct_total,
    gate_masks,
    gated_total,
    two_level_return,
    two_level_rewards,
)
from gymbox.rewards.outcome import outcome, success
from gymbox.rewards.progress import (
    EnvProgress,
    ProgressEstimator,
    dense_rewards,
    grounding,
    spa_rewards,
    sparse_rewards,
)
from gymbox.rewards.toolrl import (
    ToolRLScale,
    TruthCall,
    TurnTruth,
    correctness_score,
    exact_match,
    match_score,
    toolrl_correct,
    toolrl_format,
    toolrl_total,
    toolrl_turns,
)
from tests.reward_fixtures import reply, single, trajectory, turn

GT_A = [{"A": {"x": [1], "y": [2]}}]


# ToolRL (spec section 1)

def test_the_worked_example_scores_1_5() -> None:
    truth, pred = [TruthCall.exact("A", {"x": 1, "y": 2})], [("A", {"x": 1, "y": 3})]
    assert correctness_score(truth, pred) == (3.0, 4.0)
    t = single(reply(("A", {"x": 1, "y": 3})), GT_A)
    assert toolrl_correct(t) == pytest.approx(1.5)
    assert toolrl_format(t) == 1.0
    assert toolrl_total(t) == pytest.approx(2.5)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (["a", "b"], ["a", "b"], 1.0), ([], [], 1.0), (["a"], [], 0.0),
    (["a", "a", "b"], ["a", "b", "c"], 0.5),  # |∩| = 2 as multisets, |∪| = 3 + 3 - 2
])
def test_match_score_is_a_multiset_jaccard(a: list[str], b: list[str], expected: float) -> None:
    assert match_score(a, b) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (reply(("A", {"x": 1, "y": 2})), 3.0),  # exact
    (reply(("B", {"x": 1, "y": 2})), -3.0),  # wrong name: S = 0
    (reply(("A", {"z": 5})), -1.5),  # the call scores 0 and is not matched: S = 1 (names), S_max = 4
    ("<think>no call</think>\n<response>hi</response>", -3.0),  # tags missing
    ('<think>t</think>\n<tool_call>\n{"name": "A", "parameters": {x}\n</tool_call>', -3.0),  # JSON unparsable
])
def test_correctness_edges(text: str, expected: float) -> None:
    assert toolrl_correct(single(text, GT_A)) == pytest.approx(expected)


def test_exact_match_is_order_sensitive_but_a_permutation_still_reaches_s_max() -> None:
    truth = [TruthCall.exact("A", {"x": 1}), TruthCall.exact("A", {"x": 2})]
    pred = [("A", {"x": 2}), ("A", {"x": 1})]
    assert not exact_match(truth, pred)
    assert correctness_score(truth, pred) == (5.0, 5.0)  # greedy picks the right call for each expected one


def test_values_are_compared_strictly() -> None:
    assert toolrl_correct(single(reply(("A", {"x": True})), [{"A": {"x": [1]}}])) < 3.0
    assert toolrl_correct(single(reply(("A", {"x": "Paris "})), [{"A": {"x": ["Paris"]}}])) < 3.0
    assert toolrl_correct(single(reply(("A", {"x": 1.0})), [{"A": {"x": [1]}}])) == 3.0  # one JSON number


def test_bfcl_possible_answers_allow_omissions_alternatives_and_agent_names() -> None:
    answers = [{"math.area": {"a": [1, 2], "unit": ["cm", ""]}}]
    functions = [{"name": "math.area", "parameters": {"type": "dict", "required": ["a"]}}]
    for call in (("math_area", {"a": 2}), ("math_area", {"a": 1, "unit": "cm"}), ("math.area", {"a": 1})):
        assert toolrl_correct(single(reply(call), answers, functions=functions)) == 3.0
    # unit given with a wrong value: keys [a, unit] match, one value of two: S = 1 + (1 + 1), S_max = 1 + 3
    wrong = single(reply(("math_area", {"a": 1, "unit": "m"})), answers, functions=functions)
    assert toolrl_correct(wrong) == pytest.approx(1.5)


def test_format_needs_exactly_the_sections_the_truth_calls_for() -> None:
    assert toolrl_format(single(reply(("A", {"x": 1, "y": 2}), response="done"), GT_A)) == 0.0
    assert toolrl_format(single("<think>t</think><tool_call>\n{\"name\": \"A\"}\n</tool_call>", GT_A)) == 0.0
    no_call = single(reply(response="I cannot help with that."), None, check="no_call")
    assert (toolrl_format(no_call), toolrl_correct(no_call)) == (1.0, 0.0)  # no call expected: R_correct = 0
    assert toolrl_correct(single(reply(("A", {})), None, check="no_call")) == 0.0


def test_tasks_without_a_ground_truth_are_not_applicable() -> None:
    relevance = single(reply(("A", {"x": 1})), None, check="any_call")
    assert toolrl_format(relevance) == 1.0
    assert toolrl_correct(relevance) is None and toolrl_total(relevance) is None
    multi = trajectory([turn(0, reply(("A", {})))], payload={"kind": "multi", "ground_truth": [["A()"]]})
    echo = trajectory([turn(0, reply(("A", {})))], env="echo", payload={"times": 2})
    for t in (multi, echo):
        assert toolrl_turns(t) is None and toolrl_format(t) is None and toolrl_correct(t) is None


def test_trajectory_values_are_means_over_turns_with_a_ground_truth() -> None:
    truths = [TurnTruth.exact([("A", {"x": 1})]), None, TurnTruth.exact([("A", {"x": 1})])]
    t = trajectory([turn(0, reply(("A", {"x": 1}))), turn(1, "anything"), turn(2, reply(("B", {"x": 1})))])
    assert toolrl_correct(t, truth=lambda task: truths) == pytest.approx((3.0 - 3.0) / 2)
    assert toolrl_format(t, truth=lambda task: truths) == 1.0
    assert toolrl_turns(t, truth=lambda task: truths)[1] is None
    assert toolrl_correct(trajectory([]), truth=lambda task: truths) is None


def test_scale_variants() -> None:
    t = single(reply(("A", {"x": 1, "y": 3})), GT_A)
    assert toolrl_correct(t, scale=ToolRLScale(correct_max=1.0)) == pytest.approx(0.5)  # 2 * 3/4 - 1
    schedule = ToolRLScale(schedule=True)
    assert schedule.bounds(0) == ((-2.0, 2.0), (-2.0, 2.0))
    assert schedule.bounds(75) == ((-1.5, 1.5), (-2.5, 2.5))
    assert schedule.bounds(150) == schedule.bounds(10_000) == ((-1.0, 1.0), (-3.0, 3.0))
    assert schedule.ranges() == ((-2.0, 2.0), (-3.0, 3.0))
    assert toolrl_format(single("no tags", GT_A), scale=schedule, step=0) == -2.0
    assert toolrl_correct(t, scale=schedule, step=150) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="training step"):
        toolrl_correct(t, scale=schedule)
    assert ToolRLScale().bounds(None) == ((0.0, 1.0), (-3.0, 3.0))  # default: no schedule, no step needed
    assert TurnTruth.exact([]).shape == Shape(False, True)


# G-RA and D-RA (spec section 2)

def test_each_gate_holds_back_every_lower_priority_component() -> None:
    assert gate_masks([1.0, -1.0, 5.0], [1.0, 0.0, None]) == [1, 1, 0]
    assert gate_masks([0.0, 3.0, 5.0], [1.0, 0.0, None]) == [1, 0, 0]
    assert gate_masks([None, 3.0, 5.0], [1.0, 0.0, None]) == [1, 1, 1]  # not applicable: passed over
    assert gate_masks([1.0, 3.0, 5.0], [1.0, 0.0, None], closed=True) == [1, 0, 0]  # timeout: no submit
    assert gated_total([1.0, -1.0, 5.0], [1.0, 0.0, None], weights=[1.0, 2.0, 1.0]) == -1.0
    assert gated_total([None, None], [None, None]) is None
    with pytest.raises(ValueError, match="thresholds"):
        gate_masks([1.0], [])


def test_two_level_form_and_its_decisions() -> None:
    assert two_level_rewards(1.0, [0.5, -0.2], 1.0) == pytest.approx([0.5, 0.8])
    assert two_level_return(0.0, [0.5, -0.2], 0.5) == 0.0  # penalties are gated too
    assert two_level_return(0.0, [0.5, -0.2], 0.5, gate_penalties=False) == pytest.approx(-0.2)
    assert two_level_return(1.0, [0.5], 0.5, submitted=False) == 1.0
    assert two_level_rewards(1.0, [], 0.5) == [1.0]


def test_direct_accumulation_pays_for_steps_of_a_failed_episode() -> None:
    # the failure G-RA fixes: under D-RA the step rewards of a failed episode outweigh the outcome
    assert direct_return(0.0, [0.5] * 4) == 2.0
    assert two_level_return(0.0, [0.5] * 4, 1.0) == 0.0
    assert direct_total([1.0, None, -2.0], weights=[1.0, 1.0, 0.5]) == 0.0


# Progress, dense and sparse rewards (spec sections 3 and 4)

def test_grounding_is_half_for_accepted_actions() -> None:
    turns = [turn(0, signals={"valid_action": 1.0}), turn(1, signals={"valid_action": 0.0}),
             turn(2, answer="Nothing happens."), turn(3, parsed=False), turn(4), turn(5, signals={"format_error": 1.0})]
    assert grounding(trajectory(turns)) == [0.5, 0.0, 0.0, 0.0, 0.5, 0.0]


def progress_run(values: list[float | None], **kwargs: object) -> Trajectory:
    return trajectory([turn(i, signals={} if v is None else {"progress": v}) for i, v in enumerate(values)],
                      **kwargs)


def test_environment_progress_gives_deltas_that_sum_to_the_final_progress() -> None:
    t = progress_run([0.2, None, 0.5, 1.0])
    assert isinstance(EnvProgress(), ProgressEstimator)
    assert EnvProgress().estimate(t) == pytest.approx([0.2, 0.0, 0.3, 0.5])
    assert spa_rewards(t) == pytest.approx([0.7, 0.5, 0.8, 1.0])  # c_t + g_t, every action accepted
    assert EnvProgress().estimate(trajectory([turn(0)])) is None and spa_rewards(trajectory([turn(0)])) is None
    assert EnvProgress(("score",)).estimate(t) is None


def test_a_progress_estimator_must_give_one_value_per_turn() -> None:
    class Short:
        def estimate(self, trajectory: Trajectory) -> list[float] | None:
            return [1.0]

    with pytest.raises(ValueError, match="1 values for 2 turns"):
        spa_rewards(progress_run([0.1, 0.2]), Short())


def test_dense_rewards_divide_by_the_positive_steps_of_a_won_game() -> None:
    scores = [{"score": 0.0}, {"score": 1.0}, {"score": 1.0}, {"score": 3.0, "success": 1.0}]
    won = trajectory([turn(i, signals=s) for i, s in enumerate(scores)])
    assert dense_rewards(won) == pytest.approx([0.0, 0.5, 0.0, 1.0])
    lost = trajectory([turn(i, signals=s) for i, s in enumerate(scores)], signals={"score": 3.0, "success": 0.0})
    assert dense_rewards(lost) == pytest.approx([0.0, 1.0, 0.0, 2.0])
    assert dense_rewards(trajectory([turn(0)])) is None


def test_sparse_rewards_pay_success_at_the_last_turn() -> None:
    assert sparse_rewards(trajectory([turn(0), turn(1)], signals={"success": 1.0})) == [0.0, 1.0]
    assert sparse_rewards(trajectory([turn(0), turn(1)], truncated=True)) == [0.0, 0.0]
    assert sparse_rewards(trajectory([turn(0)])) is None


# Outcome

@pytest.mark.parametrize(("signals", "truncated", "expected"), [
    ({"success": 1.0, "score": 0.2}, False, 1.0), ({"score": 7.0}, False, 7.0), ({"checks_passed": 0.5}, False, 0.5),
    ({"tests_passed": 3.0, "tests_total": 4.0}, False, 0.75), ({}, True, 0.0), ({"progress": 0.5}, False, None),
])
def test_outcome_reads_the_most_specific_signal(signals: dict[str, float], truncated: bool,
                                                expected: float | None) -> None:
    assert outcome(trajectory([turn(0)], signals=signals, truncated=truncated)) == expected


def test_success_is_binary_and_none_without_a_signal() -> None:
    assert success(trajectory([], signals={"success": 1.0})) == 1.0
    assert success(trajectory([turn(0)], signals={})) is None

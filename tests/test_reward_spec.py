"""Reward specs from YAML: the example spec, composition, and the errors raised before anything is computed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gymbox.environments.records import EpisodeError
from gymbox.rewards import spec as spec_module
from gymbox.rewards.spec import COMPONENTS, Component, NoOptions, RewardSpec, RewardSpecError
from tests.reward_fixtures import reply, single, trajectory, turn

ROOT = Path(__file__).resolve().parents[1]
GT_A = [{"A": {"x": [1], "y": [2]}}]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def spec_of(yaml_components: str, head: str = "accumulate: gated\n") -> RewardSpec:
    import yaml

    return RewardSpec.model_validate({**yaml.safe_load(head), "components": yaml.safe_load(yaml_components)})


def test_the_example_spec_gates_correctness_on_format_and_outcome_on_correctness() -> None:
    spec = RewardSpec.load(ROOT / "rewards" / "specs" / "toolcall.yaml")
    good = spec.score(single(reply(("A", {"x": 1, "y": 2})), GT_A, success=1.0))
    assert good.components == {"format": 1.0, "correct": 1.0, "outcome": 1.0}
    assert (good.total, good.per_turn, good.error) == (3.0, None, None)
    half = spec.score(single(reply(("A", {"x": 1, "y": 3})), GT_A))  # R_correct = 2 * 3/4 - 1 = 0.5
    assert half.total == pytest.approx(1.5)
    bad_format = spec.score(single(reply(("A", {"x": 1, "y": 2}), response="x"), GT_A, success=1.0))
    assert bad_format.components["correct"] == 1.0 and bad_format.total == 0.0  # reported, but held back
    wrong = spec.score(single(reply(("B", {"x": 1})), GT_A, success=0.0))
    assert wrong.total == 0.0  # format 1 + correct -1: never below a closed gate
    relevance = spec.score(single(reply(("A", {"x": 1})), None, check="any_call", success=1.0))
    assert relevance.components["correct"] is None and relevance.total == 2.0


def test_per_turn_components_sum_to_the_total_and_gates_close_on_timeout() -> None:
    spec = spec_of("[{fn: outcome, gate: 1.0}, {fn: grounding, weight: 2.0}]")
    turns = [turn(0, signals={"valid_action": 1.0}), turn(1, signals={"valid_action": 0.0, "success": 1.0})]
    won = spec.score(trajectory(turns))
    assert won.components == {"outcome": 1.0, "grounding": 0.5}
    assert won.per_turn == [1.0, 1.0] and won.total == 2.0
    cut = spec.score(trajectory(turns, truncated=True))
    assert cut.per_turn == [0.0, 1.0] and cut.total == 1.0
    direct = spec_of("[{fn: outcome}, {fn: grounding}]", "accumulate: direct").score(trajectory(turns, signals={}))
    assert direct.components["outcome"] is None and direct.total == 0.5


def test_penalties_are_gated_unless_the_spec_says_otherwise() -> None:
    turns = [turn(0, signals={"progress": 0.5}), turn(1, signals={"progress": 0.2, "success": 0.0})]
    components = "[{fn: outcome, gate: 1.0}, {fn: progress}]"
    assert spec_of(components).score(trajectory(turns)).total == 0.0
    kept = spec_of(components, "ungated_penalties: true").score(trajectory(turns))
    assert kept.total == pytest.approx(-0.3) and kept.per_turn == pytest.approx([0.0, -0.3])


def test_nothing_applicable_gives_no_total_and_masked_rollouts_are_not_scored() -> None:
    spec = spec_of("[{fn: toolrl}]")
    assert spec.score(trajectory([turn(0)], env="echo")).total is None
    infra = EpisodeError(code="container_died", message="137", infra=True)
    masked = single(reply(("A", {"x": 1, "y": 2})), GT_A).model_copy(update={"error": infra})
    assert spec.score(masked).total is None and spec.apply(masked).reward is None


def test_apply_records_components_and_the_total_keeping_the_env_reward() -> None:
    t = single(reply(("A", {"x": 1, "y": 2})), GT_A).model_copy(update={"rewards": {"env": 1.0, "old": 5.0}})
    done = spec_of("[{fn: toolrl_format, name: fmt, gate: 1}, {fn: toolrl_correct}]").apply(t)
    assert done.rewards == {"env": 1.0, "fmt": 1.0, "toolrl_correct": 3.0, "total": 4.0}
    assert done.reward == 4.0 and not done.masked and t.reward is None


@pytest.mark.parametrize(("value", "problem"), [
    (math.nan, "gave nan"), (math.inf, "gave inf"), ("1", "not a number"), ([1.0], "list of 2 per-turn rewards"),
])
def test_bad_results_are_recorded_and_mask_the_rollout(monkeypatch: pytest.MonkeyPatch, value: object,
                                                       problem: str) -> None:
    per_turn = isinstance(value, list)
    monkeypatch.setitem(COMPONENTS, "odd", Component(lambda t, o, s: value, NoOptions, per_turn,
                                                     lambda o: (-math.inf, math.inf), "a broken function"))
    spec = spec_of("[{fn: outcome}, {fn: odd}]")
    t = trajectory([turn(0), turn(1)], signals={"success": 1.0})
    scores = spec.score(t)
    assert scores.total is None and scores.error is not None and scores.error.infra
    assert problem in scores.error.message and "'odd'" in scores.error.message
    applied = spec.apply(t)
    assert applied.masked and applied.reward is None and applied.error.code == "reward_error"


def test_a_component_that_raises_is_recorded_not_scored_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(t: object, o: object, s: object) -> float:
        raise KeyError("signals")

    monkeypatch.setitem(COMPONENTS, "boom", Component(boom, NoOptions, False, lambda o: (0.0, 1.0), "raises"))
    scores = spec_of("[{fn: boom}]").score(trajectory([turn(0)]))
    assert scores.error is not None and "raised KeyError" in scores.error.message and scores.total is None


def test_a_total_that_overflows_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMPONENTS, "huge", Component(lambda t, o, s: 1e308, NoOptions, False,
                                                      lambda o: (-math.inf, math.inf), "too big"))
    scores = spec_of("[{fn: huge, weight: 10}]").score(trajectory([turn(0)]))
    assert scores.error is not None and "overflow" in scores.error.message


@pytest.mark.parametrize(("components", "head", "message"), [
    ("[{fn: toolrl_fmt}]", "{}", "unknown reward function 'toolrl_fmt'; known: dense, format_ladder, "),
    ("[{fn: toolrl, gate: 4.5}, {fn: outcome}]", "{}", "can never open: toolrl lies in [-3, 4]"),
    ("[{fn: toolrl_format, gate: -0.5}, {fn: outcome}]", "{}", "always open"),
    ("[{fn: toolrl_correct, gate: 2, options: {correct_max: 1}}, {fn: outcome}]", "{}", "lies in [-1, 1]"),
    ("[{fn: toolrl_format, gate: 1.5, options: {schedule: true}}, {fn: outcome}]", "{}", None),
    ("[{fn: outcome}, {fn: toolrl, gate: 1}]", "{}", "holds nothing back"),
    ("[{fn: toolrl, options: {scale: 2}}]", "{}", "bad options for 'toolrl'"),
    ("[{fn: outcome, gate: 0.5}, {fn: sparse}]", "accumulate: direct", "accumulate: direct has no gates"),
    ("[{fn: outcome}, {fn: outcome}]", "{}", "component names repeat"),
    ("[{fn: outcome, name: total}]", "{}", "name of the total"),
    ("[{fn: outcome, weight: .nan}]", "{}", "finite number"),
    ("[]", "{}", "at least 1 item"),
    ("[{fn: outcome}]", "{accumulate: sum}", "'gated' or 'direct'"),
    ("[{fn: outcome, gates: 1}]", "{}", "Extra inputs are not permitted"),
])
def test_invalid_specs_are_refused_with_a_reason(tmp_path: Path, components: str, head: str,
                                                 message: str | None) -> None:
    path = write(tmp_path, f"{head.strip('{}')}\ncomponents: {components}\n")
    if message is None:  # the schedule's widest format range is ±2: a gate at 1.5 can open
        RewardSpec.load(path)
        return
    with pytest.raises(RewardSpecError, match=r"spec\.yaml: ") as info:
        RewardSpec.load(path)
    assert message in str(info.value)


def test_unreadable_files_are_reported_with_their_path(tmp_path: Path) -> None:
    with pytest.raises(RewardSpecError, match="cannot read"):
        RewardSpec.load(tmp_path / "missing.yaml")
    with pytest.raises(RewardSpecError, match="a mapping with `components`"):
        RewardSpec.load(write(tmp_path, "- fn: outcome\n"))
    with pytest.raises(RewardSpecError, match="cannot read"):
        RewardSpec.load(write(tmp_path, "components: [\n"))


def test_a_scheduled_spec_needs_the_training_step_before_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_of("[{fn: toolrl, options: {schedule: true}}]")
    calls = []
    monkeypatch.setattr(spec_module, "toolrl_total", lambda *a, **k: calls.append(1) or 0.0)
    with pytest.raises(RewardSpecError, match="training step"):
        spec.score(single(reply(("A", {"x": 1, "y": 2})), GT_A))
    assert not calls
    assert spec_of("[{fn: toolrl}]").needs_step is False


def swe_like(level: int, f2p: float, turns: int, *, truncated: bool = False):
    """A recorded swe episode: `turns` accepted bash turns, then the grading's signals (environments/swe/env.py)."""
    steps = [turn(i, "<think>x</think>", signals={"valid_action": 1.0, "commands_failed": 0.0}) for i in range(turns)]
    graded = {"success": float(level == 3), "resolved": float(level == 3), "submitted": float(level > 0),
              "patch_nonempty": float(level >= 2), "f2p_passed": f2p, "p2p_broken": 0.0, "outcome_level": float(level)}
    return trajectory(steps, env="swe@v1", signals=graded, truncated=truncated)


def test_the_swe_pair_gated_holds_back_what_a_failed_level_earned_and_direct_does_not() -> None:
    gated = RewardSpec.load(ROOT / "rewards" / "specs" / "swe-gated.yaml")
    direct = RewardSpec.load(ROOT / "rewards" / "specs" / "swe-direct.yaml")
    assert [c.key for c in gated.components] == [c.key for c in direct.components] == ["level", "f2p", "grounding"]
    assert gated.weights == direct.weights
    episodes = {"resolved": swe_like(3, 1.0, 4), "partial change": swe_like(2, 0.5, 4),
                "submitted no change": swe_like(1, 0.0, 10),
                "never submitted": swe_like(0, 0.5, 20, truncated=True)}  # fixed half, then hit the turn limit
    scores = {name: (gated.score(t), direct.score(t)) for name, t in episodes.items()}
    expected = {"resolved": (0.6 + 0.3 + 0.04, 0.6 + 0.3 + 0.04),
                "partial change": (0.4 + 0.15 + 0.04, 0.4 + 0.15 + 0.04),
                "submitted no change": (0.2, 0.2 + 0.1),  # level 1 < 2: its ten accepted turns earn nothing
                "never submitted": (0.0, 0.15 + 0.2)}
    for name, (g, d) in scores.items():
        assert g.error is None and d.error is None, name
        assert (g.total, d.total) == pytest.approx(expected[name]), name
        assert g.components == d.components, name  # the components are reported alike; only the total differs
    assert scores["submitted no change"][0].per_turn == pytest.approx([0.0] * 9 + [0.2])

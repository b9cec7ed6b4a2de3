"""pass@k and evaluation summaries, against hand-computed values and the estimator's properties."""

from __future__ import annotations

from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gymbox.environments.records import EpisodeError, Provenance, Trajectory
from gymbox.harness.metrics import pass_at_k, summarize
from gymbox.tasks.spec import TaskSpec


def test_pass_at_k_by_hand() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - comb(3, 2) / comb(4, 2))  # 0.5
    assert pass_at_k(5, 4, 2) == 1.0  # any two samples include a success


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_combinatorial_probability(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    exact = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-9)
    if k > 1:
        assert pass_at_k(n, c, k) >= pass_at_k(n, c, k - 1) - 1e-12


def test_pass_at_k_refuses_too_few_samples() -> None:
    with pytest.raises(ValueError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)


def trajectory(task: str, category: str, sample: int, success: float | None, *, infra: bool = False) -> Trajectory:
    return Trajectory(
        id=f"{task}-{sample}", task=TaskSpec(id=task, env="echo", category=category), group=task, sample=sample,
        base_seed=0, seed=sample, provenance=Provenance(env="echo@v1", runtime="local", policy="scripted"),
        signals={} if success is None else {"success": success}, reward=success,
        error=EpisodeError(code="transport", message="lost", infra=True) if infra else None)


def test_summary_per_category_with_masked_rollouts() -> None:
    runs = [trajectory("a", "easy", i, s) for i, s in enumerate([1, 0, 1, 1])]
    runs += [trajectory("b", "easy", i, s) for i, s in enumerate([0, 0, 0, 0])]
    runs += [trajectory("c", "hard", i, s) for i, s in enumerate([0, 1])]
    runs += [trajectory("c", "hard", 2, None, infra=True)]  # masked: not a sample
    summary = summarize(runs, ks=[1, 2, 4])
    easy, hard = summary.categories
    assert easy.name == "easy" and easy.pass_at[1] == pytest.approx((0.75 + 0.0) / 2)
    assert easy.pass_at[4] == pytest.approx(0.5)
    assert hard.masked == 1 and hard.episodes == 2 and hard.pass_at[2] == 1.0 and 4 not in hard.pass_at
    assert summary.incomplete == ["c"]
    assert summary.overall.pass_at[1] == pytest.approx((0.75 + 0 + 0.5) / 3)
    table = summary.to_markdown()
    assert "| hard | 1 | 2 | 1 | 50.0% | 100.0% | - |" in table and "**all**" in table

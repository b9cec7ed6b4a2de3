"""Which tasks a training step plays: distinct tasks across reshuffles, and distinct groups and seeds for repeats."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gymbox.agent.policy import Completion, Prompt, Sampling
from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.runtime import LocalRuntime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import play_all
from gymbox.harness.train import Trainer
from gymbox.harness.train_config import TrainConfig
from gymbox.harness.train_tasks import play_rounds, step_indices


def test_a_step_never_plays_a_task_twice_where_its_window_crosses_a_reshuffle(tmp_path: Path) -> None:
    # 18 training tasks, 4 a step (configs/echo-format.yaml): a step that holds the end of one pass and the start of
    # the next used to hold the same task twice (steps 22 and 31 with seed 0).
    trainer = Trainer(TrainConfig(suite="echo-demo:train", out=tmp_path, tasks_per_step=4, seed=0))
    assert len(trainer.tasks) == 18
    for step in range(60):
        ids = [t.id for t in trainer._tasks_for(step)]
        assert len(ids) == 4 and len(set(ids)) == 4, (step, ids)


@pytest.mark.parametrize(("n", "per"), [(18, 4), (5, 4), (7, 7), (7, 3), (10, 9), (3, 1)])
def test_every_pass_plays_every_task_once_and_every_step_is_distinct(n: int, per: int) -> None:
    steps = 3 * n  # 3 * per passes of the suite
    walked = [i for step in range(steps) for i in step_indices(n, per, step, seed=5)]
    for p in range(len(walked) // n):
        assert sorted(walked[p * n:(p + 1) * n]) == list(range(n)), p
    for step in range(steps):
        assert len(set(step_indices(n, per, step, seed=5))) == per


def test_the_walk_depends_on_the_seed_and_is_reproducible() -> None:
    assert step_indices(18, 4, 7, seed=1) == step_indices(18, 4, 7, seed=1)
    assert [step_indices(18, 4, s, seed=1) for s in range(5)] != [step_indices(18, 4, s, seed=2) for s in range(5)]


def test_more_tasks_per_step_than_the_suite_covers_it_and_repeats_the_rest() -> None:
    counts = Counter(step_indices(3, 8, 2, seed=0))
    assert sorted(counts) == [0, 1, 2] and sorted(counts.values()) == [2, 3, 3]


async def test_a_task_played_twice_in_a_step_gets_distinct_groups_and_seeds(tmp_path: Path) -> None:
    trainer = Trainer(TrainConfig(suite="echo-demo:test", out=tmp_path, tasks_per_step=8, group_size=2))
    tasks = trainer._tasks_for(0)
    assert len(tasks) == 8 and len({t.id for t in tasks}) == 6  # two of the six tasks come twice
    sampling_seeds: list[int | None] = []

    class Recording(ScriptedPolicy):
        async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
            sampling_seeds.append(sampling.seed)
            return await super().generate(prompt, sampling)

    policy = Recording(echo_script)
    async with LocalRuntime("echo") as rt:
        scored = await play_rounds(lambda part, seed: play_all(rt, part, policy, group_size=2, config=EpisodeConfig(),
                                                               base_seed=seed), tasks, base_seed=17)
    assert len(scored) == 16 and all(t.error is None and t.reward == 1.0 for t in scored)
    assert len({t.id for t in scored}) == 16
    groups = Counter(t.group for t in scored)
    assert len(groups) == 8 and set(groups.values()) == {2}  # each play of a task is its own group of G
    assert len({t.seed for t in scored}) == 8  # one environment seed per group, none shared between the plays
    assert len(sampling_seeds) == len(set(sampling_seeds)) == sum(len(t.turns) for t in scored)
    bases = Counter(t.base_seed for t in scored)
    assert bases[17] == 12 and len(bases) == 2  # the first play keeps the step's base seed, the repeats their own

"""Trajectory records: token sequences assemble from turns, and misaligned turns are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gymbox.environments.records import EpisodeError, Provenance, Trajectory, Turn
from gymbox.tasks.spec import TaskSpec


def test_turns_must_align_tokens_masks_and_logprobs() -> None:
    with pytest.raises(ValidationError, match="differ in length"):
        Turn(index=0, token_ids=[1, 2], loss_mask=[1], logprobs=[-0.1, -0.2])


def test_sequence_and_mask_assemble_from_the_prompt_and_turns() -> None:
    turns = [Turn(index=0, token_ids=[5, 6, 7], loss_mask=[1, 1, 0], logprobs=[-0.5, -0.1, None]),
             Turn(index=1, token_ids=[8], loss_mask=[1], logprobs=[-0.3])]
    trajectory = Trajectory(id="t", task=TaskSpec(id="x", env="echo"), group="x", sample=0, base_seed=0, seed=1,
                            provenance=Provenance(env="echo@v1", runtime="local", policy="scripted"),
                            prompt_ids=[1, 2], turns=turns)
    assert trajectory.token_ids == [1, 2, 5, 6, 7, 8]
    assert trajectory.loss_mask == [0, 0, 1, 1, 0, 1]
    assert trajectory.logprobs == [None, None, -0.5, -0.1, None, -0.3]
    assert not trajectory.masked
    failed = trajectory.model_copy(update={"error": EpisodeError(code="timeout", message="slow", infra=True)})
    assert failed.masked
    assert Trajectory.model_validate_json(failed.model_dump_json()) == failed


@pytest.mark.parametrize("bad", [
    {"loss_mask": [2], "token_ids": [1], "logprobs": [None]},
    {"reward": float("nan")},
    {"signals": {"success": float("inf")}},
])
def test_values_that_would_not_survive_a_round_trip_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Turn(index=0, **bad)


def test_turns_must_be_in_order() -> None:
    with pytest.raises(ValidationError, match="says it is turn 1"):
        Trajectory(id="t", task=TaskSpec(id="x", env="echo"), group="x", sample=0, base_seed=0, seed=1,
                   provenance=Provenance(env="echo@v1", runtime="local", policy="scripted"), turns=[Turn(index=1)])

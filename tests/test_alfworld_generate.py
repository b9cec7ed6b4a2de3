"""ALFWorld generator and runtime: every task type yields a game its recorded expert plan wins, reproducibly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gymbox.environments.alfworld.game import AlfworldGame
from gymbox.tasks.alfworld import generate
from gymbox.tasks.alfworld.generate import TASK_TYPES, GameInfo, GameSpec, GenerationError, generate_game
from gymbox.tasks.alfworld.suite import official_games

pytestmark = pytest.mark.slow  # each game costs Fast Downward one to a few seconds

# Seed 0 plans quickly for every task type (planning time varies from 0.01 s to 13 s between worlds), which keeps
# this file near 30 s on two cores.
SEED = 0
FILES = ("traj_data.json", "game.tw-pddl", "expert_plan.json")


@pytest.fixture(scope="module")
def games(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GameInfo]:
    root = tmp_path_factory.mktemp("alfworld")
    return {task_type: generate_game(GameSpec(task_type, SEED), root / task_type) for task_type in TASK_TYPES}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_recorded_expert_plan_wins(games: dict[str, GameInfo], task_type: str) -> None:
    info = games[task_type]
    assert json.loads((info.path / "expert_plan.json").read_text())["commands"] == info.expert_plan
    assert json.loads((info.path / "traj_data.json").read_text())["task_type"] == task_type
    game = AlfworldGame(info.path)
    try:
        intro = game.reset()
        assert f"Your task is to: {info.goal}" in intro
        assert game.goal_progress() < 1.0
        steps = [game.step(command) for command in info.expert_plan]
    finally:
        game.close()
    assert all(step.valid for step in steps)
    assert not any(step.won for step in steps[:-1])
    assert steps[-1].won and steps[-1].goal_progress == 1.0


def test_same_spec_gives_identical_files_in_another_process(games: dict[str, GameInfo], tmp_path: Path) -> None:
    """Another process with another string-hash seed stands for another machine: the bytes must not change."""
    first = games["pick_and_place_simple"]
    script = ("import sys; from pathlib import Path; from gymbox.tasks.alfworld.generate import GameSpec, "
              f"generate_game; generate_game(GameSpec('pick_and_place_simple', {SEED}), Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "again")], check=True,
                   env={**os.environ, "PYTHONHASHSEED": "12345"})
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (first.path / name).read_bytes(), name


def test_different_seeds_give_different_games(games: dict[str, GameInfo], tmp_path: Path) -> None:
    first = games["pick_and_place_simple"]
    other = generate_game(GameSpec("pick_and_place_simple", SEED + 1), tmp_path / "other")
    assert (other.path / "game.tw-pddl").read_bytes() != (first.path / "game.tw-pddl").read_bytes()


def test_bad_command_is_invalid_and_the_game_goes_on(games: dict[str, GameInfo]) -> None:
    info = games["pick_and_place_simple"]
    game = AlfworldGame(info.path)
    try:
        game.reset()
        before = game.admissible_commands
        bad = game.step("fly to the moon")
        assert (bad.text, bad.valid, bad.won, bad.goal_progress) == ("Nothing happens.", False, False, 0.0)
        assert bad.admissible_commands == before
        assert "fly to the moon" not in before
        steps = [game.step(command) for command in info.expert_plan]
    finally:
        game.close()
    assert steps[-1].won


def test_expert_plans_from_the_current_state(games: dict[str, GameInfo]) -> None:
    info = games["pick_and_place_simple"]
    game = AlfworldGame(info.path)
    try:
        game.reset()
        game.step(info.expert_plan[0])
        game.step("look")
        rest = game.expert_plan()
        steps = [game.step(command) for command in rest]
    finally:
        game.close()
    assert rest and steps[-1].won


def test_unsolvable_worlds_are_resampled_then_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = generate._expert_wins
    calls = []

    def fail_first(game_file: Path) -> list[str] | str:
        calls.append(game_file)
        return "forced failure" if len(calls) == 1 else real(game_file)

    monkeypatch.setattr(generate, "_expert_wins", fail_first)
    info = generate_game(GameSpec("pick_and_place_simple", 3), tmp_path / "retried")
    assert info.attempt == 1
    assert json.loads((info.path / "traj_data.json").read_text())["generator"]["attempt"] == 1

    monkeypatch.setattr(generate, "_expert_wins", lambda game_file: "forced failure")
    with pytest.raises(GenerationError, match=r"in 5 attempts: attempt 0 .*forced failure"):
        generate_game(GameSpec("pick_and_place_simple", 3), tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retried"]  # no half-written game, no temp folder left


def test_missing_or_unsuitable_floor_plan_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="floor plan 999 has no layout"):
        generate_game(GameSpec("pick_and_place_simple", 0, floorplan=999), tmp_path / "g")
    with pytest.raises(GenerationError, match=r"floor plan 301 \(Bedroom\) cannot host pick_heat_then_place_in_recep"):
        generate_game(GameSpec("pick_heat_then_place_in_recep", 0, floorplan=301), tmp_path / "g")
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        GameSpec("pick_and_juggle", 0)
    assert not (tmp_path / "g").exists()


def test_existing_folder_is_never_overwritten(games: dict[str, GameInfo]) -> None:
    info = games["pick_and_place_simple"]
    with pytest.raises(FileExistsError):
        generate_game(GameSpec("pick_and_place_simple", SEED), info.path)


def test_missing_or_corrupt_folder_is_a_clear_error(games: dict[str, GameInfo], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an ALFWorld game folder"):
        AlfworldGame(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(games["pick_and_place_simple"].path, broken)
    (broken / "game.tw-pddl").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        AlfworldGame(broken)


def test_official_layout_games_are_listed_and_played_as_they_are(games: dict[str, GameInfo], tmp_path: Path) -> None:
    split = tmp_path / "json_2.1.1" / "train"
    good = split / "pick_and_place_simple-Pen-None-GarbageCan-320" / "trial_T0"
    shutil.copytree(games["pick_and_place_simple"].path, good)
    shutil.copytree(good, split / "pick_and_place_with_movable_recep-Pen-Bowl-Desk-320" / "trial_T0")
    unsolvable = split / "pick_and_place_simple-Pen-None-Desk-320" / "trial_T1"
    shutil.copytree(good, unsolvable)
    data = json.loads((unsolvable / "game.tw-pddl").read_text())
    (unsolvable / "game.tw-pddl").write_text(json.dumps({**data, "solvable": False}))

    assert official_games(tmp_path) == [good]
    game = AlfworldGame(good)
    try:
        game.reset()
        steps = [game.step(command) for command in games["pick_and_place_simple"].expert_plan]
    finally:
        game.close()
    assert steps[-1].won

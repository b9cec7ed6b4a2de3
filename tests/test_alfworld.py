"""The `alfworld` environment: expert plans win generated games of every task type through a server; official data."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from gymbox.environments.alfworld.env import AlfworldEnv
from gymbox.environments.api import Action, ToolCall
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.alfworld.suite import TASK_TYPES, official_tasks

# The first train game of each type: the conformance checker samples the same ones, so they are generated once.
SAMPLE = [f"alfworld-{task_type}-1" for task_type in TASK_TYPES]


def task(task_id: str) -> TaskSpec:
    return load_suite("alfworld").get(task_id)


async def test_expert_plans_win_every_task_type_through_a_server() -> None:
    tasks = [task(t) for t in SAMPLE]
    plans = {t.id: AlfworldEnv().prepare(t)["plan"] for t in tasks}

    async def play(runtime: ProcessRuntime, spec: TaskSpec) -> tuple[float, list]:
        async with await runtime.client() as client:
            await client.reset(spec, 0)
            start = await client.state()
            results = []
            for i, command in enumerate(plans[spec.id]):
                action = Action(text=command) if i % 2 else Action(
                    tool_calls=[ToolCall.make("command", {"command": command})])
                results.append(await client.step(action))
            return start.env_state["progress"], results

    async with ProcessRuntime("alfworld", capacity=8) as runtime:
        played = await asyncio.gather(*(play(runtime, t) for t in tasks))  # sessions of one server, interleaved
    for spec, (start, results) in zip(tasks, played, strict=True):
        last = results[-1]
        assert last.terminated and last.signals["won"] == 1.0 and last.signals["success"] == 1.0, spec.id
        assert start < 1.0 and last.signals["progress"] == 1.0, spec.id  # ALFWorld's goal-condition success
        assert all(r.signals["valid_action"] == 1.0 for r in results), spec.id
        assert not any(r.terminated for r in results[:-1]), spec.id


async def test_nothing_happens_is_an_invalid_action_and_bad_input_is_explained() -> None:
    async with LocalRuntime("alfworld") as runtime, await runtime.client() as client:
        await client.reset(task(SAMPLE[0]), 0)
        result = await client.step(Action(text="fly to the moon"))
        assert result.observation.messages[0].content == "Nothing happens."
        assert result.signals["valid_action"] == 0.0 and not result.done
        result = await client.step(Action(text="把杯子放进微波炉"))
        assert result.observation.messages[0].content.startswith("Error: ") and result.signals["valid_action"] == 0
        result = await client.step(Action(text="LOOK"))  # ALFWorld's grammar is lower case; commands are folded
        assert result.signals["valid_action"] == 1.0 and "You are" in result.observation.messages[0].content


async def test_official_games_are_used_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ALFWORLD_DATA tree (json_2.1.1/<split>/<task>/<trial>/) becomes the `alfworld-official` suite."""
    made = AlfworldEnv().prepare(task(SAMPLE[0]))
    trial = tmp_path / "json_2.1.1" / "valid_seen" / "pick_and_place_simple-Mug-None-Desk-308" / "trial_T0"
    shutil.copytree(made["game"], trial)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    [official] = official_tasks()
    assert official.split == "test" and official.category == "pick_and_place_simple"
    assert official.payload == {"game": str(trial)}
    env = AlfworldEnv()
    env.reset(official, 0)
    for command in made["plan"]:
        result = env.step(Action(text=command))
    assert result.terminated and result.signals["success"] == 1.0
    env.close()


def test_without_official_data_the_official_suite_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    assert official_tasks() == []


@pytest.mark.parametrize("payload, message", [
    ({"task_type": "pick_and_place_simple", "seed": 1, "floorplan": 9999}, "9999"),
    ({"task_type": "juggle", "seed": 1}, "task_type"),
    ({"task_type": "pick_and_place_simple"}, "seed"),
    ({"game": "/nonexistent/trial"}, "missing"),
])
def test_bad_tasks_are_refused_clearly(payload: dict, message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        AlfworldEnv().reset(TaskSpec(id="bad", env="alfworld", payload=payload), 0)

"""Experts solve sampled tasks of every environment through the episode loop, in the default model's tokens.

Environments run in-process (the shell one in temporary workspaces on this machine, as in test_shell_tasks); swe
needs its package containers. Each demonstration is checked token by token: the loss mask covers exactly the
expert's replies (their tokens and end-of-sequence), which decode to the text the episode's parser parses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent.experts import ExpertPolicy, NoDemonstration, missing_demonstration
from gymbox.agent.experts.swe import hunks
from gymbox.agent.experts.toolcall import parse_ground_truth
from gymbox.agent.parsers import get_parser
from gymbox.agent.policy import Prompt, Sampling
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import Trajectory
from gymbox.environments.runtime import LocalRuntime
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import play_all
from gymbox.tasks import TaskSpec, load_suite

SAMPLES = {
    "echo": ("echo-demo", ["echo-000", "echo-001", "echo-002"]),
    "toolcall": ("toolcall-single", ["simple_python_1", "parallel_multiple_1", "live_multiple_1-0-1",
                                     "irrelevance_1"]),
    "toolcall-multi": ("toolcall-multi", ["multi_turn_base_1", "multi_turn_miss_func_1", "multi_turn_miss_param_1"]),
    "textworld": ("textworld", ["tw-custom-easy-1", "tw-coin_collector-easy-1"]),
    "alfworld": ("alfworld", ["alfworld-pick_and_place_simple-1", "alfworld-look_at_obj_in_light-1"]),
    "shell": ("shell", ["shell-files-001", "shell-git-001"]),
    "webshop": ("webshop", ["webshop-500", "webshop-501", "webshop-502"]),
}
CONFIG = EpisodeConfig(retries=0, sampling=Sampling(max_tokens=4096, temperature=0.0))


@pytest.fixture(scope="module")
def expert(smollm2: Path) -> ExpertPolicy:
    policy = PolicySpec.parse("expert").build()
    assert isinstance(policy, ExpertPolicy) and policy.tokenizer is not None
    return policy


def sample(key: str) -> list[TaskSpec]:
    suite, ids = SAMPLES[key]
    loaded = load_suite(suite)
    return [loaded.get(task_id) for task_id in ids]


async def play(env: Any, tasks: list[TaskSpec], policy: ExpertPolicy, parser: str = "hermes") -> list[Trajectory]:
    async with LocalRuntime(env) as runtime:
        return await play_all(runtime, tasks, policy, group_size=1, config=CONFIG.model_copy(update={"parser": parser}),
                              concurrency=4)


def check_tokens(trajectory: Trajectory, tokenizer: Any, parser: str = "hermes") -> None:
    """The loss mask covers exactly each reply's tokens plus end-of-sequence, and they decode to the reply's text,
    which the parser reads back as the recorded action."""
    assert trajectory.prompt_ids and trajectory.turns
    ids, mask = trajectory.token_ids, trajectory.loss_mask
    assert len(ids) == len(mask) and sum(mask[: len(trajectory.prompt_ids)]) == 0
    fmt = get_parser(parser)(tools=trajectory.tools)
    trained = 0
    for turn in trajectory.turns:
        generated = [t for t, m in zip(turn.token_ids, turn.loss_mask, strict=True) if m]
        assert generated[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(generated, skip_special_tokens=True) == turn.text
        assert generated[:-1] == tokenizer(turn.text, add_special_tokens=False)["input_ids"]
        # The masked tokens come first in the turn, then the environment's answer (and the template's glue).
        assert turn.loss_mask == [1] * len(generated) + [0] * (len(turn.loss_mask) - len(generated))
        assert turn.action is not None and turn.parse_error is None
        assert fmt.parse(turn.text).action.tool_calls == turn.action.tool_calls
        trained += len(generated)
    assert sum(mask) == trained
    # What the environment said before the end is in the unmasked part (the last answer is never a prompt).
    context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    for turn in trajectory.turns[:-1]:
        for message in turn.observation:
            assert (message.content or "").strip()[:40] in context


def assert_solved(trajectories: list[Trajectory]) -> None:
    for t in trajectories:
        assert t.error is None, (t.id, t.error)
        assert t.signals.get("success") == 1.0, (t.id, t.signals, t.truncated_by)


@pytest.mark.parametrize("key", ["echo", "toolcall", "toolcall-multi", "webshop"])
async def test_experts_solve_their_tasks(key: str, expert: ExpertPolicy) -> None:
    tasks = sample(key)
    trajectories = await play(tasks[0].env, tasks, expert)
    assert_solved(trajectories)
    for t in trajectories:
        check_tokens(t, expert.tokenizer)


@pytest.mark.slow  # games are generated on first use (seconds each; cached for later runs)
@pytest.mark.parametrize("key", ["textworld", "alfworld"])
async def test_game_experts_play_the_plan(key: str, expert: ExpertPolicy) -> None:
    tasks = sample(key)
    trajectories = await play(key, tasks, expert)
    assert_solved(trajectories)
    for t in trajectories:
        check_tokens(t, expert.tokenizer)
        assert [turn.action.tool_calls[0].function.name for turn in t.turns] == ["command"] * len(t.turns)


async def test_shell_expert_runs_the_reference_solution(expert: ExpertPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    from gymbox.environments.shell.env import ShellEnv  # the test hosts the server in-process, as test_shell_tasks

    monkeypatch.setenv("GYMBOX_SANDBOX", "host")
    monkeypatch.delenv("GYMBOX_WORKSPACE", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    tasks = sample("shell")
    trajectories = await play(ShellEnv, tasks, expert)
    assert_solved(trajectories)
    for t, task in zip(trajectories, tasks, strict=True):
        check_tokens(t, expert.tokenizer)
        first = t.turns[0].action.tool_calls[0]
        assert first.function.name == "bash" and first.args()["command"] == task.payload["solution"].strip()


@pytest.mark.parametrize("parser", ["json", "toolrl", "react"])
async def test_replies_follow_the_episode_format(parser: str, expert: ExpertPolicy) -> None:
    tasks = sample("echo")[:1] + sample("toolcall")[:1]
    for task in tasks:
        trajectories = await play(task.env, [task], expert, parser)
        assert_solved(trajectories)
        check_tokens(trajectories[0], expert.tokenizer, parser)


async def test_no_demonstration_is_an_error_not_a_guess(expert: ExpertPolicy) -> None:
    relevance = next(t for t in load_suite("toolcall-single").tasks if t.category == "live_relevance")
    assert missing_demonstration(relevance) is not None
    assert missing_demonstration(sample("toolcall")[0]) is None
    with pytest.raises(NoDemonstration, match="relevance"):
        await expert.generate(Prompt(task=relevance, parser="hermes"), Sampling())
    (trajectory,) = await play("toolcall", [relevance], expert)
    assert trajectory.error is not None and trajectory.error.code == "policy_error" and not trajectory.turns


def test_ground_truth_calls_and_patch_hunks() -> None:
    docs = {"mv": {"name": "mv", "parameters": {"properties": {"source": {}, "destination": {}}}}}
    assert parse_ground_truth("mv('a.txt', destination=('x', 1))", docs) == (
        "mv", {"source": "a.txt", "destination": ["x", 1]})
    patch = ("diff --git a/p/m.py b/p/m.py\n--- a/p/m.py\n+++ b/p/m.py\n@@ -1,3 +1,3 @@\n def f(x):\n"
             "-    return x - 1\n+    return x + 1\n \n")
    assert hunks(patch) == [("p/m.py", "def f(x):\n    return x - 1\n", "def f(x):\n    return x + 1\n")]
    assert hunks(patch.replace("--- a/p/m.py", "new file mode 100644\n--- /dev/null")) is None


@pytest.mark.container
@pytest.mark.slow
async def test_swe_expert_applies_the_gold_patch(expert: ExpertPolicy, swe_images: object) -> None:
    tasks = [t for t in load_suite("swe").tasks if t.category == "boltons"]
    task = min(tasks, key=lambda t: (len(t.payload["fail_to_pass"]) + len(t.payload["pass_to_pass"]), t.id))
    (trajectory,) = await play("swe", [task], expert)
    assert_solved([trajectory])
    check_tokens(trajectory, expert.tokenizer)
    names = [turn.action.tool_calls[0].function.name for turn in trajectory.turns]
    assert names[-1] == "submit" and set(names[:-1]) == {"str_replace"}

"""A shell episode in its own container that the harness cuts off is graded: a correct workspace scores 1.

Before grading at every harness stop, such an episode scored 0 whatever its workspace held.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from gymbox.agent.policy import Policy
from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.records import Trajectory
from gymbox.environments.runtime import DockerRuntime
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import play, runtime_provenance
from gymbox.tasks.spec import Limits, TaskSpec

pytestmark = pytest.mark.container

TASK = TaskSpec(id="probe-cut", env="shell", instruction="Write ok to done.txt.", limits=Limits(max_turns=30),
                payload={"setup": "echo ready > ready.txt",
                         "checks": [{"name": "done", "run": "grep -qx ok done.txt"},
                                    {"name": "kept", "run": "grep -qx ready ready.txt"}]})


def bash(command: str) -> str:
    return f"<tool_call>{json.dumps({'name': 'bash', 'arguments': {'command': command}})}</tool_call>"


async def rollout(rt: DockerRuntime, policy: Policy, **config: Any) -> Trajectory:
    settings = EpisodeConfig(**config)
    provenance = await runtime_provenance(rt, policy, settings)
    return await play(rt, TASK, policy, config=settings, sample=0, base_seed=0, provenance=provenance)


async def test_the_harness_turn_limit_grades_the_workspace(docker_engine: docker.DockerClient) -> None:
    async with DockerRuntime("shell", pool_size=1) as rt:
        right = await rollout(rt, ScriptedPolicy([bash("echo ok > done.txt"), bash("ls")]), max_turns=2)
        wrong = await rollout(rt, ScriptedPolicy([bash("echo no > done.txt"), bash("ls")]), max_turns=2)
    for trajectory in (right, wrong):
        assert trajectory.error is None and trajectory.truncated and trajectory.truncated_by == "max_turns"
        assert len(trajectory.turns) == 2 and trajectory.signals["commands"] == 2.0
    assert right.signals["success"] == 1.0 and right.reward == 1.0
    assert wrong.signals["success"] == 0.0 and wrong.signals["checks_passed"] == 0.5 and wrong.reward == 0.0


async def test_the_harness_token_limit_grades_the_workspace(docker_engine: docker.DockerClient,
                                                            smollm2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    replies = [bash("echo ok > done.txt"), bash("ls") + " and then some" * 100]
    async with DockerRuntime("shell", pool_size=1) as rt:
        one_turn = await rollout(rt, ScriptedPolicy(replies, tokenizer=tokenizer), max_turns=1)
        # Room for a few tokens of the second reply: it is cut, never run, and the workspace is graded.
        cut = await rollout(rt, ScriptedPolicy(replies, tokenizer=tokenizer), max_tokens=len(one_turn.token_ids) + 16)
    assert one_turn.truncated_by == "max_turns" and one_turn.signals["success"] == 1.0
    assert cut.error is None and cut.truncated_by == "max_tokens" and len(cut.turns) == 2
    assert cut.turns[-1].observation == [] and cut.signals["commands"] == 1.0
    assert cut.signals["success"] == 1.0 and cut.reward == 1.0

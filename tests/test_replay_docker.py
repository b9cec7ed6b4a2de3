"""Replay of a shell episode in containers started from the image it was recorded on; refused when that is gone."""

from __future__ import annotations

import json

import docker
import pytest

from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.runtime import DockerRuntime
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.replay import replay, replay_one, start_runtime
from gymbox.harness.rollout import play, runtime_provenance
from gymbox.tasks.spec import Limits, TaskSpec

pytestmark = pytest.mark.container

TASK = TaskSpec(id="replay-probe", env="shell", instruction="Write ok to done.txt.", limits=Limits(max_turns=30),
                payload={"setup": "echo ready > ready.txt",
                         "checks": [{"name": "done", "run": "grep -qx ok done.txt"}]})


def bash(command: str) -> str:
    return f"<tool_call>{json.dumps({'name': 'bash', 'arguments': {'command': command}})}</tool_call>"


async def test_replay_runs_on_the_recorded_image_and_refuses_when_it_is_gone(
        docker_engine: docker.DockerClient) -> None:
    policy = ScriptedPolicy([bash("echo ok > done.txt"), bash("ls")])
    config = EpisodeConfig(max_turns=2)
    async with DockerRuntime("shell", pool_size=1) as rt:
        provenance = await runtime_provenance(rt, policy, config)
        recorded = await play(rt, TASK, policy, config=config, sample=0, base_seed=0, provenance=provenance)
    digest = recorded.provenance.image_digest
    assert digest is not None and digest.startswith("sha256:") and recorded.signals["success"] == 1.0
    assert recorded.truncated_by == "max_turns"  # the harness stopped it, and it was graded: so is the replay

    started, notes = await start_runtime(recorded, "docker")
    try:
        assert isinstance(started, DockerRuntime) and started.image == digest and notes == []
        result = await replay_one(started, recorded)
    finally:
        await started.stop()
    assert (result.status, result.steps, result.divergences) == ("identical", 2, [])

    gone = recorded.model_copy(update={"provenance": recorded.provenance.model_copy(
        update={"image_digest": "sha256:" + "0" * 64})})
    (refused,) = await replay([gone])
    assert refused.status == "refused" and not refused.ok and refused.steps == 0
    assert f"the recorded image sha256:{'0' * 64} of shell@v1 is gone" in refused.notes[0]
    assert "--any-image" in refused.notes[0]
    (anyway,) = await replay([gone], any_image=True)
    assert anyway.status == "identical" and anyway.notes[0].endswith(
        f"replayed on the current image {recorded.provenance.image}")

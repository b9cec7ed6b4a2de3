"""A small real store for the viewer's tests: echo episodes played by scripted policies through the episode loop.

Groups of 2 on three tasks (one policy solves them, one submits at once), a masked rollout (an infrastructure
error), and a recording whose first observation was altered, so that replaying it diverges at turn 0.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.api.models import Message
from gymbox.environments.records import EpisodeError, Trajectory
from gymbox.environments.runtime import LocalRuntime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import failed, play_all, runtime_provenance
from gymbox.harness.store import TrajectoryStore
from gymbox.tasks import load_suite

TAMPERED = "tampered#0"


def quitter(messages: list[Message], turn: int) -> str:
    """Submits without saying the word: the episode ends without success."""
    return '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'


async def episodes(tokenizer: Any) -> list[Trajectory]:
    tasks = load_suite("echo-demo").tasks[:3]
    config = EpisodeConfig(retries=0)
    async with LocalRuntime("echo") as rt:
        solved = await play_all(rt, tasks, ScriptedPolicy(echo_script, tokenizer=tokenizer, name="solver"),
                                group_size=2, config=config)
        quit_ = await play_all(rt, tasks[:1], ScriptedPolicy(quitter, tokenizer=tokenizer, name="solver"),
                               group_size=1, config=config, base_seed=1)
        provenance = await runtime_provenance(rt, ScriptedPolicy(quitter), config)
    # The quitter's rollout joins the first task's group as a third sample, a failure beside two successes.
    quitted = quit_[0].model_copy(update={"id": f"{solved[0].group}#2", "group": solved[0].group, "sample": 2})
    masked = failed(tasks[2], sample=2, base_seed=0, provenance=provenance,
                    error=EpisodeError(code="env_crashed", message="the environment process died"))
    tampered = solved[2].model_copy(deep=True, update={"id": TAMPERED, "group": "tampered"})
    tampered.turns[0].observation[0].content = "not what the environment said"
    # Logprobs below 0 on the generated tokens, so that the token view has colours to show.
    for t in solved:
        for turn in t.turns:
            turn.logprobs = [-0.05 * (i % 40) if m else None for i, m in enumerate(turn.loss_mask)]
    return [*solved, quitted, masked, tampered]


def make_store(path: Path, tokenizer: Any) -> list[Trajectory]:
    """Writes the store at `path`; returns its records in write order."""
    # In a thread of its own: the caller may be inside an event loop (Playwright's sync API runs one).
    with ThreadPoolExecutor(1) as pool:
        records = pool.submit(asyncio.run, episodes(tokenizer)).result()
    with TrajectoryStore(path).writer() as writer:
        for t in records:
            writer.append(t)
    return records

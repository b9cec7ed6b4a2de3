"""Replay: re-execute a trajectory's recorded actions against a fresh environment and compare what comes back.

The environment is reset with the recorded task and seed; every recorded action is stepped in order (a turn whose
reply could not be parsed never reached the environment and is skipped), and each observation, signal and
end-of-episode flag must equal the recording. The first difference is reported with both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gymbox.environments.api.errors import EnvError
from gymbox.environments.records import Trajectory
from gymbox.environments.runtime import make_runtime
from gymbox.environments.runtime.base import Runtime


@dataclass
class ReplayResult:
    id: str
    steps: int  # actions re-executed
    divergence: str | None = None  # None: everything matched

    @property
    def ok(self) -> bool:
        return self.divergence is None


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:300] + "..."


def _compare(where: str, recorded: Any, replayed: Any) -> str | None:
    if recorded == replayed:
        return None
    return f"{where}: recorded {_show(recorded)}, replayed {_show(replayed)}"


async def replay_one(runtime: Runtime, trajectory: Trajectory) -> ReplayResult:
    """Replay one trajectory on a started runtime of its environment."""
    steps = 0
    async with await runtime.client(task=trajectory.task) as client:
        observation = await client.reset(trajectory.task, trajectory.seed)
        prompt = [m.model_dump() for m in observation.messages]
        if diff := _compare("reset observation", [m.model_dump() for m in trajectory.prompt], prompt):
            return ReplayResult(trajectory.id, steps, diff)
        if diff := _compare("tools", [t.model_dump() for t in trajectory.tools],
                            [t.model_dump() for t in observation.tools or []]):
            return ReplayResult(trajectory.id, steps, diff)
        for turn in trajectory.turns:
            if turn.action is None:
                continue
            result = await client.step(turn.action)
            steps += 1
            checks = [
                ("observation", [m.model_dump() for m in turn.observation],
                 [m.model_dump() for m in result.observation.messages]),
                ("signals", turn.signals, dict(result.signals)),
                ("reward", turn.reward, result.reward),
                ("terminated", turn.terminated, result.terminated),
                ("truncated", turn.truncated, result.truncated),
            ]
            for name, recorded, replayed in checks:
                if diff := _compare(f"turn {turn.index} {name}", recorded, replayed):
                    return ReplayResult(trajectory.id, steps, diff)
    return ReplayResult(trajectory.id, steps)


async def replay(trajectories: list[Trajectory], *, runtime: str | None = None) -> list[ReplayResult]:
    """Replay trajectories, one runtime per (environment, runtime kind); environment errors become divergences."""
    results: list[ReplayResult] = []
    runtimes: dict[tuple[str, str], Runtime] = {}
    try:
        for trajectory in trajectories:
            kind = runtime or trajectory.provenance.runtime
            key = (trajectory.provenance.env, kind)
            if key not in runtimes:
                runtimes[key] = make_runtime(kind, trajectory.provenance.env)
                await runtimes[key].start()
            try:
                results.append(await replay_one(runtimes[key], trajectory))
            except EnvError as err:
                results.append(ReplayResult(trajectory.id, 0, f"the environment failed: {err.code}: {err}"))
    finally:
        for started in runtimes.values():
            await started.stop()
    return results

"""Small real environments that misbehave on purpose, for testing the server, runtimes and checker."""

from __future__ import annotations

import random
import threading
import time
from typing import ClassVar

from gymbox.environments.api import Action, Environment, Message, Observation, StepResult, TaskSpec, ToolSpec
from gymbox.environments.echo.env import EchoEnv


def hello(text: str = "hello") -> Observation:
    return Observation(messages=[Message(role="user", content=text)], tools=[])


class SlowEnv(Environment):
    """Each step sleeps for payload['step_seconds']; counts closes so tests can see when close ran."""

    name = "echo"
    tools: ClassVar[list[ToolSpec]] = []
    closed: ClassVar[list[float]] = []
    entered = threading.Event()

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        self.delay = float(task.payload.get("step_seconds", 0.0))
        return hello()

    def step(self, action: Action) -> StepResult:
        SlowEnv.entered.set()
        time.sleep(self.delay)
        return StepResult(observation=hello("done waiting"))

    def close(self) -> None:
        SlowEnv.closed.append(time.monotonic())


class CrashEnv(EchoEnv):
    """Raises from step when the action's text is 'crash'; otherwise it is the echo environment."""

    def step(self, action: Action) -> StepResult:
        if action.text == "crash":
            raise RuntimeError("boom")
        return super().step(action)


class NondeterministicEnv(EchoEnv):
    """Ignores the seed in its first observation: the checker must catch it."""

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        super().reset(task, seed)
        return hello(f"{task.instruction} {random.random()}")


class CrashOnBadActionEnv(EchoEnv):
    """Raises on a call to a tool it does not know, instead of explaining: the checker must catch it."""

    def step(self, action: Action) -> StepResult:
        names = {c.function.name for c in action.tool_calls}
        if names - {"echo", "submit"}:
            raise KeyError(names)
        return super().step(action)


class WrongReturnEnv(EchoEnv):
    def step(self, action: Action) -> StepResult:
        return {"observation": {}}  # type: ignore[return-value]


class GradedEnv(EchoEnv):
    """Grades a cut-off episode by how many words it heard."""

    def grade(self) -> dict[str, float]:
        return {"graded": 1.0, "heard": float(self.said)}

"""Small real environments that misbehave on purpose, for testing the server, runtimes and checker."""

from __future__ import annotations

import random
import time
from typing import ClassVar

from gymbox.environments.api import Action, Environment, Message, Observation, StepResult, TaskSpec, ToolSpec
from gymbox.environments.echo.env import EchoEnv


def hello(text: str = "hello") -> Observation:
    return Observation(messages=[Message(role="user", content=text)], tools=[])


class SlowEnv(Environment):
    """Each step sleeps for payload['step_seconds']; `events` records, in order, when steps begin and end and
    when sessions close, so tests can check what overlapped and what waited for what."""

    name = "echo"
    tools: ClassVar[list[ToolSpec]] = []
    events: ClassVar[list[str]] = []

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        self.delay = float(task.payload.get("step_seconds", 0.0))
        return hello()

    def step(self, action: Action) -> StepResult:
        SlowEnv.events.append("step-begun")
        time.sleep(self.delay)
        SlowEnv.events.append("step-ended")
        return StepResult(observation=hello("done waiting"))

    def close(self) -> None:
        SlowEnv.events.append("closed")


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


class CrashOnGradeEnv(EchoEnv):
    """Raises when a harness limit asks for its grade: the checker must catch it."""

    def grade(self) -> dict[str, float]:
        raise RuntimeError("no grade")


class WrongReturnEnv(EchoEnv):
    def step(self, action: Action) -> StepResult:
        return {"observation": {}}  # type: ignore[return-value]


class GradedEnv(EchoEnv):
    """Grades a cut-off episode by how many words it heard."""

    def grade(self) -> dict[str, float]:
        return {"graded": 1.0, "heard": float(self.said)}


class SlowGradedEnv(GradedEnv):
    """`GradedEnv` whose steps take payload['step_seconds'] each: environment time, for the episode time limit."""

    inline = False  # its steps block: they go to the server's worker threads

    def step(self, action: Action) -> StepResult:
        time.sleep(float(self.task_payload.get("step_seconds", 0.0)))
        return super().step(action)

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        self.task_payload = task.payload
        return super().reset(task, seed)


class UnencodableEnv(EchoEnv):
    """Returns a step result the server cannot encode (an object in `info`): the server's untyped `env_error`."""

    def step(self, action: Action) -> StepResult:
        result = super().step(action)
        return result.model_copy(update={"info": {"handle": object()}})

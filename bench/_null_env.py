"""A gymbox environment whose reset and step do nothing, so a benchmark of it measures the step API alone."""

from __future__ import annotations

from gymbox.environments.api import Action, Environment, Message, Observation, StepResult, TaskSpec
from gymbox.tasks.spec import Limits

# Built once: the environment returns these same objects, so no time goes into building observations.
_FIRST = Observation(messages=[Message(role="user", content="ready")])
_REPLY = Observation(messages=[Message(role="tool", tool_call_id="call_0", content="ok")])

# A tiny action, matched in size by the OpenEnv side's action.
NULL_ACTION = Action(text="noop")


class NullEnv(Environment):
    name = "null"
    version = "v1"
    description = "Does nothing and never terminates; for benchmarks of the step API."
    inline = True

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        return _FIRST

    def step(self, action: Action) -> StepResult:
        # A fresh result, because the session host marks truncation on the one it is given.
        return StepResult(observation=_REPLY)


def null_task(max_turns: int) -> TaskSpec:
    """A task of the null environment whose turn limit the benchmark never reaches."""
    return TaskSpec(id="null-0", env=NullEnv.env_id(), seed=0, limits=Limits(max_turns=max_turns))

"""`echo`: the reference environment. The agent repeats a word with the `echo` tool and submits.

It does almost nothing on purpose: the API tests, the conformance checker's own tests and the step-latency
benchmark use it to measure the step API alone, and authors copy it as a template.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gymbox.environments.api import (
    Action,
    Environment,
    Message,
    Observation,
    StepResult,
    TaskSpec,
    ToolSpec,
    no_tool_call,
    tool_message,
    unknown_tool,
)
from gymbox.environments.api.errors import InvalidAction, InvalidTask

ECHO = ToolSpec.make("echo", "Say a word out loud.", {"word": {"type": "string"}}, required=["word"])
SUBMIT = ToolSpec.make("submit", "End the episode.")


class EchoEnv(Environment):
    name = "echo"
    version = "v1"
    description = "Repeat a word with a tool, then submit; the reference environment for the step API."
    tools: ClassVar[list[ToolSpec]] = [ECHO, SUBMIT]
    suites: ClassVar[list[str]] = ["echo-demo"]
    inline = True

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        word = task.payload.get("word")
        if not isinstance(word, str) or not word:
            raise InvalidTask(f"echo task {task.id!r} needs payload.word, a non-empty string")
        self.word, self.times, self.said = word, int(task.payload.get("times", 1)), 0
        self.seed = seed
        greeting = f"{task.instruction} (episode seed {seed})"
        return Observation(messages=[Message(role="user", content=greeting)], tools=self.tools)

    def step(self, action: Action) -> StepResult:
        if not action.tool_calls:
            return StepResult(observation=Observation(messages=[no_tool_call(self.tools)]),
                              signals={"valid_action": 0.0})
        messages, valid, done = [], 1.0, False
        for call in action.tool_calls:
            name = call.function.name
            if name == "submit":
                done = True
                messages.append(tool_message(call, "Submitted."))
            elif name == "echo":
                try:
                    word = call.args().get("word")
                except InvalidAction as err:
                    messages.append(tool_message(call, f"Error: {err.message}"))
                    valid = 0.0
                    continue
                if not isinstance(word, str):
                    messages.append(tool_message(call, "Error: echo needs a string argument 'word'."))
                    valid = 0.0
                    continue
                self.said += word == self.word
                messages.append(tool_message(call, word))
            else:
                messages.append(unknown_tool(call, self.tools))
                valid = 0.0
        success = float(self.said >= self.times)
        signals = {"valid_action": valid, "progress": min(1.0, self.said / self.times)}
        if done:
            signals["success"] = success
        return StepResult(observation=Observation(messages=messages), terminated=done, signals=signals,
                          reward=success if done else None)

    def state(self) -> dict[str, Any]:
        return {"word": self.word, "said": self.said, "times": self.times}

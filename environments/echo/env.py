"""`echo`: the reference environment. The agent repeats a word with the `echo` tool and submits.

It does almost nothing on purpose: the API tests, the conformance checker's own tests and the step-latency
benchmark use it to measure the step API alone, and authors copy it as a template.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gymbox.environments.api import Observation, TaskSpec, ToolEnv, ToolResult, tool
from gymbox.environments.api.errors import InvalidTask


class EchoEnv(ToolEnv):
    name = "echo"
    version = "v1"
    description = "Repeat a word with a tool, then submit; the reference environment for the step API."
    suites: ClassVar[list[str]] = ["echo-demo"]
    inline = True

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        word = task.payload.get("word")
        if not isinstance(word, str) or not word:
            raise InvalidTask(f"echo task {task.id!r} needs payload.word, a non-empty string")
        self.word, self.times, self.said = word, int(task.payload.get("times", 1)), 0
        return self.first_observation(f"{task.instruction} (episode seed {seed})")

    @tool
    def echo(self, word: str) -> str:
        """Say a word out loud."""
        self.said += word == self.word
        return word

    @tool
    def submit(self) -> ToolResult:
        """End the episode."""
        success = float(self.said >= self.times)
        return ToolResult("Submitted.", done=True, reward=success, signals={"success": success})

    def step_signals(self) -> dict[str, float]:
        return {"progress": min(1.0, self.said / self.times)}

    def state(self) -> dict[str, Any]:
        return {"word": self.word, "said": self.said, "times": self.times}

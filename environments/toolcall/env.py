"""`toolcall`: the agent calls functions of the Berkeley Function Calling Leaderboard (BFCL), and serves customers in
the τ²-bench domains (`tau2.py`: airline, retail, telecom, with a simulated user).

Single-turn tasks offer a few functions and judge the one reply against the leaderboard's possible answers
(or, for relevance tasks, by whether any call was made). Multi-turn tasks run every call on BFCL's stateful
backends (file system, messaging, trading, travel, vehicle ...) and check each user turn against a reference
run of the ground truth. Tools are per task: BFCL schemas converted to OpenAI tools, with dotted names mapped
to valid ones (`math.factorial` -> `math_factorial`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gymbox.environments.api import Action, Environment, Observation, StepResult, TaskSpec, ToolSpec
from gymbox.environments.api.errors import InvalidAction, InvalidTask
from gymbox.environments.toolcall.multi import MultiTurnEpisode
from gymbox.environments.toolcall.single import SingleTurnEpisode
from gymbox.environments.toolcall.tau2 import Tau2Episode


class ToolCallEnv(Environment):
    name = "toolcall"
    version = "v1"
    description = "Call functions from the Berkeley Function Calling Leaderboard: single-turn and stateful multi-turn."
    tools: ClassVar[list[ToolSpec]] = []  # every task brings its own functions
    suites: ClassVar[list[str]] = ["toolcall-multi", "toolcall-single", "toolcall-smoke", "tau2-airline", "tau2-retail",
                                   "tau2-telecom", "tau2-telecom-full"]
    capacity = 512  # sessions are small: a conversation and, multi-turn, a simulated backend

    def __init__(self) -> None:
        self.episode: SingleTurnEpisode | MultiTurnEpisode | Tau2Episode | None = None

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        kind = task.payload.get("kind")
        if kind == "single":
            self.episode = SingleTurnEpisode(task)
        elif kind == "multi":
            self.episode = MultiTurnEpisode(task)
        elif kind == "tau2":
            self.episode = Tau2Episode(task)
        else:
            raise InvalidTask(f"toolcall task {task.id!r} has payload.kind {kind!r}; expected 'single', 'multi' or "
                              "'tau2'")
        self.seed = seed  # nothing here is random: BFCL's backends carry their own scenario seeds
        return self.episode.start()

    def step(self, action: Action) -> StepResult:
        if self.episode is None:
            raise InvalidAction("step before reset: start an episode with reset first")
        return self.episode.step(action)

    def grade(self) -> dict[str, float]:
        return self.episode.grade() if isinstance(self.episode, Tau2Episode) else {}

    def state(self) -> dict[str, Any]:
        return self.episode.state() if self.episode else {}

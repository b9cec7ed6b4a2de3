"""`TextGameEnv`: the step API over a text game that takes one command per turn and answers in text."""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gymbox.environments.api import (
    Action,
    Environment,
    Message,
    Observation,
    StepResult,
    TaskSpec,
    ToolCall,
    ToolSpec,
    tool_message,
)
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.textgames.commands import COMMAND_TOOL, BadCommand, clean_command, command_argument
from gymbox.tasks.games import InvalidGameTask, prepare_game, task_game

# TextWorld's parsers (tatsu) and Fast Downward's translator keep module state, and both run while a game loads,
# while one is generated and, in the PDDL engine, during steps: one call into them at a time per process. Little is
# lost, as they are pure Python under the GIL; a server scales with processes (replicas), not threads.
ENGINE = threading.RLock()
MAX_LISTED = 60  # admissible commands shown at most; ALFWorld rooms can offer a few hundred


@contextmanager
def _invalid_task() -> Iterator[None]:
    """A task that names no playable game is the caller's mistake, answered as `InvalidTask`."""
    try:
        yield
    except InvalidGameTask as exc:
        raise InvalidTask(str(exc)) from exc


@dataclass
class GameStatus:
    """Where the game stands: won or lost (either ends it), and the signals that describe it."""

    won: bool = False
    lost: bool = False
    signals: dict[str, float] = field(default_factory=dict)


class TextGameEnv(Environment):
    """One game per episode. The agent sends a command as the `command` tool or as plain text.

    Subclasses load the task's game (`open`, finding it with `game_path`), play one command (`play`) and report the
    game's state (`status`); this class reads commands, explains bad ones without advancing the game, and turns the
    game's state into signals: `valid_action` each turn, `score_delta` when the game keeps a score (its own
    `env.step` reports the running total), and `success` when the game ends. Games are made in `gymbox.tasks`.
    """

    tools: ClassVar[list[ToolSpec]] = [COMMAND_TOOL]
    show_admissible_default: ClassVar[bool] = False

    @abstractmethod
    def open(self, task: TaskSpec, seed: int) -> str:
        """Load the task's game and start it; the game's opening text. Runs holding `ENGINE`, as `play` does."""

    @abstractmethod
    def play(self, command: str) -> tuple[str, bool]:
        """Send one command; the game's answer, and whether the game understood it as an action."""

    @abstractmethod
    def status(self) -> GameStatus:
        """The game's current state."""

    @abstractmethod
    def admissible_commands(self) -> list[str]:
        """Commands that do something in the current state."""

    def prepare(self, task: TaskSpec) -> dict[str, Any]:
        """Generate the task's game into the cache if it is not there, as `gymbox games` does.

        Returns the game's path, and its winning `plan` (commands) when the generator recorded one.
        """
        with ENGINE, _invalid_task():
            return prepare_game(self.name, task)

    def game_path(self, task: TaskSpec) -> Path:
        """The task's game (a file or a folder), generated on first use; `InvalidTask` when the task names none."""
        with _invalid_task():
            return task_game(self.name, task)

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        self.close()
        self.show_admissible = bool(task.payload.get("admissible", self.show_admissible_default))
        self.turns = 0
        with ENGINE:
            intro = self.open(task, seed)
        self.last = self.status()
        text = f"{task.instruction}\n\n{intro}" if task.instruction else intro
        return Observation(messages=[Message(role="user", content=text + self._listing())], tools=self.tools)

    def step(self, action: Action) -> StepResult:
        calls: list[ToolCall | None] = list(action.tool_calls) or [None]
        first, rest = calls[0], calls[1:]
        before = self.last
        try:
            command = clean_command(action.text if first is None else command_argument(first))
        except BadCommand as exc:
            command, text, valid = "", f"Error: {exc}", False
        else:
            with ENGINE:
                text, valid = self.play(command)
            self.last = self.status()
        self.turns += 1
        done = self.last.won or self.last.lost
        messages = [self._answer(first, text + ("" if done else self._listing()))]
        messages += [tool_message(call, "Error: the game takes one command per turn, so this call was not run; "
                                  "send it next turn.") for call in rest if call is not None]
        signals = {**self.last.signals, "valid_action": float(valid)}
        reward = None
        if "score" in signals:
            signals["score_delta"] = signals["score"] - before.signals.get("score", 0.0)
            reward = signals["score_delta"]
        if done:
            signals["success"] = float(self.last.won)
            reward = signals["success"] if reward is None else reward
        return StepResult(observation=Observation(messages=messages), terminated=done, signals=signals,
                          reward=reward, info={"command": command})

    def step_now(self, action: Action) -> StepResult | None:
        """A step takes milliseconds; it runs on the event loop unless another session holds the engine (a reset,
        perhaps generating a game for seconds), when the server's worker thread waits for it instead."""
        if not ENGINE.acquire(blocking=False):
            return None
        try:
            return self.step(action)
        finally:
            ENGINE.release()

    def grade(self) -> dict[str, float]:
        return {**self.last.signals, "success": float(self.last.won)}

    def state(self) -> dict[str, Any]:
        status = getattr(self, "last", GameStatus())
        return {"turns": getattr(self, "turns", 0), "won": status.won, "lost": status.lost, **status.signals}

    def _answer(self, call: ToolCall | None, text: str) -> Message:
        return Message(role="user", content=text) if call is None else tool_message(call, text)

    def _listing(self) -> str:
        if not self.show_admissible:
            return ""
        commands = self.admissible_commands()
        more = f" (and {len(commands) - MAX_LISTED} more)" if len(commands) > MAX_LISTED else ""
        return "\n\nAdmissible commands: " + ", ".join(commands[:MAX_LISTED]) + more

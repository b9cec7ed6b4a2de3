"""`shell`: the agent solves a task with a bash tool in a Linux sandbox; checker scripts grade the result.

Each episode runs in its own container (the docker runtime). The workspace is `$GYMBOX_WORKSPACE` inside the
container; elsewhere a fresh temporary folder, and only when `GYMBOX_SANDBOX=host` says that running the
agent's commands on this machine is intended (tests, development).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
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
from gymbox.environments.shell.runner import CommandResult, kill_group, run_command

COMMAND_SECONDS = 30.0
SETUP_SECONDS = 120.0
CHECK_SECONDS = 60.0
MAX_OUTPUT = 16_384

BASH = ToolSpec.make(
    "bash", "Run a bash command in the workspace (a fresh shell each time: cd does not carry over). Output beyond "
    f"{MAX_OUTPUT} bytes is cut in the middle; a command is killed after {COMMAND_SECONDS:g} s.",
    {"command": {"type": "string", "description": "the command line to run"}}, required=["command"])
SUBMIT = ToolSpec.make("submit", "Say that the task is done; the workspace is then checked.")


def _sandbox_workspace() -> tuple[Path, bool]:
    """The folder to work in, and whether this environment created it (and so removes it)."""
    where = os.environ.get("GYMBOX_WORKSPACE")
    if where:
        return Path(where), False
    if os.environ.get("GYMBOX_SANDBOX") != "host":
        raise InvalidTask("the shell environment runs the agent's commands, so it runs in a container (the "
                          "docker runtime); to run it on this machine anyway, set GYMBOX_SANDBOX=host")
    return Path(tempfile.mkdtemp(prefix="gymbox-shell-")), True


class ShellEnv(Environment):
    name = "shell"
    version = "v1"
    description = "Solve a task with bash in a sandbox; checker scripts grade the workspace."
    tools: ClassVar[list[ToolSpec]] = [BASH, SUBMIT]
    suites: ClassVar[list[str]] = ["shell"]
    isolation = "container"

    workspace: Path | None = None
    _owns_workspace = False

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        checks = task.payload.get("checks")
        if not isinstance(checks, list) or not checks:
            raise InvalidTask(f"shell task {task.id!r} needs payload.checks, a list of {{name, run}} scripts")
        self.task, self.seed = task, seed
        self.command_seconds = float(task.payload.get("command_seconds", COMMAND_SECONDS))
        self.workspace, self._owns_workspace = _sandbox_workspace()
        _empty(self.workspace)
        # A small fixed environment: the server's own variables are none of the agent's business, and the same
        # seed must give the same `env` output.
        self.env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(self.workspace),
                    "LANG": "C.UTF-8", "TERM": "dumb", "SEED": str(seed)}
        self.commands = self.failed = 0
        self.groups: set[int] = set()
        setup = task.payload.get("setup", "")
        if setup:
            result = self._run(setup, SETUP_SECONDS)
            if result.exit_code != 0:
                raise InvalidTask(f"the setup script of task {task.id!r} failed: {result.render(SETUP_SECONDS)}")
        # The path is left out: it differs between runs on the host, and the same seed must give the same text.
        intro = (f"{task.instruction}\n\nCommands run in the workspace folder (the current directory, also $HOME). "
                 "Use the bash tool; call submit when the task is done.")
        return Observation(messages=[Message(role="user", content=intro)], tools=self.tools)

    def step(self, action: Action) -> StepResult:
        if not action.tool_calls:
            return StepResult(observation=Observation(messages=[no_tool_call(self.tools)]),
                              signals={"valid_action": 0.0})
        messages, valid = [], 1.0
        for call in action.tool_calls:
            name = call.function.name
            if name == "submit":
                messages.append(tool_message(call, "Submitted; checking the workspace."))
                signals = {"valid_action": valid, "submitted": 1.0, **self.grade()}
                return StepResult(observation=Observation(messages=messages), terminated=True, signals=signals,
                                  reward=signals["success"])
            if name != "bash":
                messages.append(unknown_tool(call, self.tools))
                valid = 0.0
                continue
            try:
                command = call.args().get("command")
            except InvalidAction as err:
                command, message = None, f"Error: {err.message}"
            else:
                message = "Error: bash needs a string argument 'command', e.g. {\"command\": \"ls -la\"}."
            if not isinstance(command, str) or not command.strip():
                messages.append(tool_message(call, message))
                valid = 0.0
                continue
            result = self._run(command, self.command_seconds)
            self.commands += 1
            self.failed += result.exit_code != 0
            messages.append(tool_message(call, result.render(self.command_seconds)))
        return StepResult(observation=Observation(messages=messages),
                          signals={"valid_action": valid, "commands_failed": float(self.failed)})

    def grade(self) -> dict[str, float]:
        """Run every check in the workspace: success when all pass."""
        checks = self.task.payload["checks"]
        passed = sum(self._run(check["run"], CHECK_SECONDS).exit_code == 0 for check in checks)
        return {"success": float(passed == len(checks)), "checks_passed": passed / len(checks),
                "commands_failed": float(self.failed), "commands": float(self.commands)}

    def state(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace), "commands": self.commands, "failed": self.failed}

    def _run(self, command: str, timeout: float) -> CommandResult:
        assert self.workspace is not None
        result = run_command(command, self.workspace, timeout=timeout, max_output=MAX_OUTPUT, env=self.env)
        self.groups.add(result.pgid)
        return result

    def close(self) -> None:
        for pgid in getattr(self, "groups", ()):  # what setup, the agent or a check left running
            kill_group(pgid)
        if self._owns_workspace and self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)


def _empty(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

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

from gymbox.environments.api import Message, Observation, TaskSpec, ToolEnv, ToolResult, tool
from gymbox.environments.api.errors import InvalidAction, InvalidTask
from gymbox.environments.runtime.sandbox import ExecResult, LocalSandbox, Wording

COMMAND_SECONDS = 30.0
SETUP_SECONDS = 120.0
CHECK_SECONDS = 60.0
MAX_OUTPUT = 16_384
# What the agent reads of a command's end; the time limit and the cut in the middle are the runtime's sandbox's.
WORDING = Wording(cut="[... {omitted} bytes of output omitted ...]",
                  killed="[command killed after {limit:g} s, with every process it started; run long jobs in the "
                  "background (cmd > log 2>&1 &) and check on them]", no_output=None, exit_zero=True, trim=True)

BASH = ("Run a bash command in the workspace (a fresh shell each time: cd does not carry over). Output beyond "
        f"{MAX_OUTPUT} bytes is cut in the middle; a command is killed after {COMMAND_SECONDS:g} s.")


def _sandbox_workspace() -> tuple[Path, bool]:
    """The folder to work in, and whether this environment created it (and so removes it)."""
    where = os.environ.get("GYMBOX_WORKSPACE")
    if where:
        return Path(where), False
    if os.environ.get("GYMBOX_SANDBOX") != "host":
        raise InvalidTask("the shell environment runs the agent's commands, so it runs in a container (the "
                          "docker runtime); to run it on this machine anyway, set GYMBOX_SANDBOX=host")
    return Path(tempfile.mkdtemp(prefix="gymbox-shell-")), True


class ShellEnv(ToolEnv):
    name = "shell"
    version = "v1"
    description = "Solve a task with bash in a sandbox; checker scripts grade the workspace."
    suites: ClassVar[list[str]] = ["shell"]
    isolation = "container"

    workspace: Path | None = None
    box: LocalSandbox | None = None
    _owns_workspace = False

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        checks = task.payload.get("checks")
        if not isinstance(checks, list) or not checks:
            raise InvalidTask(f"shell task {task.id!r} needs payload.checks, a list of {{name, run}} scripts")
        self.task, self.seed = task, seed
        self.command_seconds = float(task.payload.get("command_seconds", COMMAND_SECONDS))
        if self.box is not None:  # an earlier reset of this session: what it left running ends
            self.box.close()
        self.workspace, self._owns_workspace = _sandbox_workspace()
        self.workspace.mkdir(parents=True, exist_ok=True)
        # A small fixed environment: the server's own variables are none of the agent's business, and the same
        # seed must give the same `env` output.
        self.env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(self.workspace),
                    "LANG": "C.UTF-8", "TERM": "dumb", "SEED": str(seed)}
        self.commands = self.failed = 0
        # In its container the server is root and the agent's commands run as the agent's user (the docker runtime
        # says which): then nothing the agent runs can kill the server, so every episode ends graded.
        self.box = LocalSandbox(self.workspace, env=self.env, wording=WORDING,
                                user=os.environ.get("GYMBOX_AGENT_USER"))
        self.box.clear()
        setup = task.payload.get("setup", "")
        if setup:
            result = self._run(setup, SETUP_SECONDS)
            if result.exit_code != 0:
                raise InvalidTask(f"the setup script of task {task.id!r} failed: {result.render()}")
        # The path is left out: it differs between runs on the host, and the same seed must give the same text.
        intro = (f"{task.instruction}\n\nCommands run in the workspace folder (the current directory, also $HOME). "
                 "Use the bash tool; call submit when the task is done.")
        return Observation(messages=[Message(role="user", content=intro)], tools=self.tools)

    @tool(description=BASH)
    def bash(self, command: str) -> str:
        """Run a command in the workspace (the tool's description, `BASH`, also states the limits).

        Args:
            command: the command line to run
        """
        if not command.strip():
            raise InvalidAction("bash needs a string argument 'command', e.g. {\"command\": \"ls -la\"}.")
        result = self._run(command, self.command_seconds)
        self.commands += 1
        self.failed += result.exit_code != 0
        return result.render()

    @tool
    def submit(self) -> ToolResult:
        """Say that the task is done; the workspace is then checked."""
        signals = {"submitted": 1.0, **self.grade()}
        return ToolResult("Submitted; checking the workspace.", done=True, reward=signals["success"], signals=signals)

    def step_signals(self) -> dict[str, float]:
        return {"commands_failed": float(self.failed)}

    def grade(self) -> dict[str, float]:
        """Run every check in the workspace: success when all pass."""
        checks = self.task.payload["checks"]
        passed = sum(self._run(check["run"], CHECK_SECONDS).exit_code == 0 for check in checks)
        return {"success": float(passed == len(checks)), "checks_passed": passed / len(checks),
                "commands_failed": float(self.failed), "commands": float(self.commands)}

    def state(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace), "commands": self.commands, "failed": self.failed}

    def _run(self, command: str, timeout: float) -> ExecResult:
        assert self.box is not None
        return self.box.exec(command, timeout=timeout, max_output=MAX_OUTPUT)

    def close(self) -> None:
        if self.box is not None:  # ends what setup, the agent or a check left running
            self.box.close()
        if self._owns_workspace and self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)

"""`swe`: the agent fixes a real Python repository; hidden tests, run after it submits, grade the fix.

Each episode gets a container of its own, started and driven from outside through the Docker engine (this
process never runs the agent's commands itself). The checkout is a size-limited volume in memory filled from the
image, on a read-only root file system: the agent cannot fill the host's disk. The tests are not in the container
while the agent works. Grading first kills every process of the agent's user, then puts back everything outside
the package's source folder from the image's copy held here, and runs the task's tests with a time limit of its own.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from gymbox.environments.api import Message, Observation, TaskSpec, ToolEnv, ToolResult, tool
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.runtime.containers import ContainerLimits, docker_client, reap
from gymbox.environments.runtime.docker_sandbox import LIMITS, ContainerSandbox
from gymbox.environments.runtime.images import build_from_dockerfile, image_files
from gymbox.environments.swe import repo
from gymbox.tasks.swe.grader import TestRun, run_tests
from gymbox.tasks.swe.packages import Package, package
from gymbox.tasks.swe.swebench import checkout

COMMAND_SECONDS = 60.0
GRADE_SECONDS = 300.0
MAX_OUTPUT = 16_384
MAX_ARGUMENT = 120_000  # Linux refuses a single command-line argument over 128 KiB
_EDITOR = (Path(__file__).parent / "editor.py").read_text()

BASH = ("Run a bash command in the repository (a fresh shell each time: cd does not carry over). Output beyond "
        f"{MAX_OUTPUT} bytes is cut in the middle; a command and what it started are killed after a time limit.")

OUTCOME_LEVELS = ("no submit", "empty patch", "patch fails tests", "patch passes tests")


class SweEnv(ToolEnv):
    name = "swe"
    version = "v1"
    description = "Fix a bug in a real Python package; hidden tests grade the fix after submit."
    suites: ClassVar[list[str]] = ["swe"]
    uses_docker = True  # one container per episode, started from this process

    box: ContainerSandbox | None = None
    client: Any = None
    limits = LIMITS

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        payload = task.payload
        kind = payload.get("kind")
        if kind not in ("mutation", "swebench"):
            raise InvalidTask(f"swe task {task.id!r}: payload.kind must be 'mutation' (a bug injected into a "
                              "package of tasks/swe/packages.py) or 'swebench' (an instance with its Dockerfile)")
        try:
            self.fail_to_pass = _ids(payload, "fail_to_pass")
            self.tests = [*self.fail_to_pass, *_ids(payload, "pass_to_pass")]
            self.pkg: Package = package(str(payload["package"])) if kind == "mutation" else checkout(payload)
            bug_patch = str(payload["bug_patch"]) if kind == "mutation" else ""
            self.test_patch = "" if kind == "mutation" else str(payload["test_patch"])
        except (KeyError, TypeError) as exc:
            raise InvalidTask(f"swe task {task.id!r} is malformed: {exc}") from None
        if not self.fail_to_pass:
            raise InvalidTask(f"swe task {task.id!r} has no fail_to_pass tests: nothing could show a fix")
        if kind == "mutation" and payload.get("version", self.pkg.version) != self.pkg.version:
            raise InvalidTask(f"swe task {task.id!r} is for {self.pkg.name} {payload['version']}, but gymbox "
                              f"builds {self.pkg.version}; regenerate the task with `gymbox swe generate`")
        self.task, self.seed = task, seed
        self.command_seconds = float(payload.get("command_seconds", COMMAND_SECONDS))
        self.grade_seconds = float(payload.get("grade_seconds", GRADE_SECONDS))
        self.commands = self.failed = 0
        self.outcome: dict[str, float] | None = None
        self.close()  # a container from an earlier reset of this object
        self.client = docker_client(timeout=600)  # long enough for a command's whole run
        reap(self.client)  # containers whose owner is gone
        if kind == "swebench":
            try:
                build_from_dockerfile(self.client, Path(payload["dockerfile"]), self.pkg.image())
            except (OSError, RuntimeError) as exc:
                raise InvalidTask(f"swe task {task.id!r} (Dockerfile {payload['dockerfile']}): {exc}") from None
        self.box = ContainerSandbox.start(self.client, self.pkg.image(), env_id=self.env_id(),
                                          limits=_checkout_at(self.limits, self.pkg.root))
        try:
            self.start_commit = repo.prepare(self.box, self.pkg, bug_patch, commit=payload.get("base_commit"))
        except BaseException:
            self.close()
            raise
        return Observation(messages=[Message(role="user", content=self._intro(kind))], tools=self.tools)

    def _intro(self, kind: str) -> str:
        if kind == "mutation":
            where = f"a git checkout of {self.pkg.name} {self.pkg.version}"
            rules = ("`python` and `pytest` are on the PATH. The test suite is not in the checkout: hidden tests "
                     "run after you submit. Change the package's code, not its tests or configuration (only the "
                     f"package's source folder, {self.pkg.source}, counts).")
        else:
            where = f"{self.pkg.name} at commit {self.pkg.version}"
            rules = "Hidden tests run after you submit; changes to test files are undone before they run."
        return (f"{self.task.instruction}\n\nThe repository is {where} at {self.pkg.root} (the current directory). "
                f"{rules} Use bash, view, str_replace and create, then call submit.")

    @tool(description=BASH)
    def bash(self, command: str) -> ToolResult:
        """Run a command in the repository (the tool's description, `BASH`, also states the limits).

        Args:
            command: the command line to run
        """
        text, ok = self._bash({"command": command})
        return ToolResult(text, valid=ok)

    @tool
    def view(self, path: str, view_range: list[int] | None = None) -> ToolResult:
        """Show a file with line numbers (or list a folder, two levels deep).

        Args:
            path: relative to the repository, or absolute
            view_range: optional [first, last] line numbers; last may be -1 for the end
        """
        text, ok = self._edit("view", {"path": path, "view_range": view_range})
        return ToolResult(text, valid=ok)

    @tool
    def str_replace(self, path: str, old_str: str, new_str: str) -> ToolResult:
        """Replace text in a file: old_str must occur exactly once (whitespace included).

        Args:
            path: relative to the repository, or absolute
            old_str: the exact text to replace
            new_str: the text to put in its place (empty to delete)
        """
        text, ok = self._edit("str_replace", {"path": path, "old_str": old_str, "new_str": new_str})
        return ToolResult(text, valid=ok)

    @tool
    def create(self, path: str, file_text: str) -> ToolResult:
        """Create a new file with the given text.

        Args:
            path: relative to the repository, or absolute
            file_text: the file's whole text
        """
        text, ok = self._edit("create", {"path": path, "file_text": file_text})
        return ToolResult(text, valid=ok)

    @tool
    def submit(self) -> ToolResult:
        """Say that the fix is done: the hidden tests then run against the repository."""
        signals = self._grade(submitted=True)
        return ToolResult("Submitted; the hidden tests are running.", done=True, reward=signals["success"],
                          signals=signals, info=self._report())

    def step_signals(self) -> dict[str, float]:
        return {"commands_failed": float(self.failed)}

    def _bash(self, args: dict[str, Any]) -> tuple[str, bool]:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            return "Error: bash needs a string argument 'command', e.g. {\"command\": \"git status\"}.", False
        if len(command.encode()) > MAX_ARGUMENT:
            return (f"Error: the command is {len(command.encode()):,} bytes long, over the {MAX_ARGUMENT:,} a "
                    "command line can hold; write long text into a file with create first."), False
        assert self.box is not None
        result = self.box.exec(command, timeout=self.command_seconds, max_output=MAX_OUTPUT, workdir=self.pkg.root)
        self.commands += 1
        self.failed += result.exit_code != 0
        return result.render(), True

    def _edit(self, name: str, args: dict[str, Any]) -> tuple[str, bool]:
        """Run a file tool inside the container as the agent's user, so its permissions are the agent's own."""
        assert self.box is not None
        request = base64.b64encode(json.dumps({"command": name, "args": args}).encode()).decode()
        if len(request) > MAX_ARGUMENT:
            return (f"Error: the arguments are too large ({len(request) * 3 // 4:,} bytes; at most about "
                    f"{MAX_ARGUMENT * 3 // 4:,}): create a smaller file, then add to it with str_replace or "
                    "bash."), False
        result = self.box.exec(f"python3 -c \"$GYMBOX_EDITOR\" {request}", timeout=self.command_seconds,
                               max_output=MAX_OUTPUT * 2, env={"GYMBOX_EDITOR": _EDITOR, "GYMBOX_ROOT": self.pkg.root},
                               workdir=self.pkg.root)
        self.commands += 1
        return result.output.rstrip("\n") or result.render(), result.exit_code == 0

    def grade(self) -> dict[str, float]:
        """At the turn limit: the same grading as submit, as an episode that did not submit."""
        return self._grade(submitted=False)

    def _grade(self, *, submitted: bool) -> dict[str, float]:
        if self.outcome is not None:
            return self.outcome
        box = self.box
        assert box is not None
        box.end_processes()  # whatever the agent left running ends before anything is read or run
        repo.clear_scratch(box)  # commands' output passes through /tmp: it must have room for the grader's
        patch = repo.agent_patch(box, self.start_commit, root=self.pkg.root)
        box.end_processes()  # git may have run filters the agent configured in .git/config: they end too
        try:
            repo.restore(box, self.pkg, image_files(self.client, self.pkg.image(), self.pkg.root),
                         test_patch=self.test_patch)
            run = run_tests(box, self.pkg, self.tests, timeout=self.grade_seconds, expect=self.tests)
            full = False
        except repo.NoRoom as exc:  # the agent's doing: its checkout cannot be tested, so no test passes
            run, full = TestRun(outcomes=dict.fromkeys(self.tests, "failed"), output=f"not run: {exc}"), True
        passing = run.passing()
        f2p = sum(test in passing for test in self.fail_to_pass) / len(self.fail_to_pass)
        p2p = [test for test in self.tests[len(self.fail_to_pass):] if test not in passing]
        resolved = f2p == 1.0 and not p2p
        # None: the agent broke git; full: it filled the checkout (git could not even read it): something changed
        changed = full or patch is None or bool(patch.strip())
        level = 0 if not submitted else 3 if resolved else 2 if changed else 1
        self.last_run, self.patch = run, patch
        self.outcome = {"success": float(resolved), "resolved": float(resolved), "submitted": float(submitted),
                        "patch_nonempty": float(changed), "f2p_passed": f2p,
                        "p2p_broken": float(len(p2p)), "outcome_level": float(level),
                        "tests_seconds": run.seconds, "tests_timed_out": float(run.timed_out),
                        "commands": float(self.commands), "commands_failed": float(self.failed)}
        return self.outcome

    def _report(self) -> dict[str, Any]:
        """What the trajectory keeps of the grading: the patch (cut at 64 kB) and the tests that did not pass."""
        failing = sorted(t for t in self.tests if t not in self.last_run.passing())
        return {"patch": None if self.patch is None else self.patch[:65_536], "failing_tests": failing[:50],
                "failing_count": len(failing)}

    def state(self) -> dict[str, Any]:
        return {"container": self.box.name if self.box else None, "commands": self.commands,
                "graded": self.outcome is not None}

    def close(self) -> None:
        if self.box is not None:
            self.box.close()
            self.box = None
        if self.client is not None:
            self.client.close()
            self.client = None


def _checkout_at(limits: ContainerLimits, root: str) -> ContainerLimits:
    """The limits with the checkout's volume at `root`: SWE-bench's images keep it at /testbed."""
    volumes = tuple(replace(volume, path=root) if volume.path == repo.REPO else volume for volume in limits.volumes)
    return replace(limits, volumes=volumes)


def _ids(payload: dict[str, Any], key: str) -> list[str]:
    value = payload.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"payload.{key} must be a list of pytest node ids")
    return value


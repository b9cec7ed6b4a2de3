"""The shell suite: every task fails untouched and passes with its reference solution; the environment's limits.

Episodes run on this machine (`GYMBOX_SANDBOX=host`) in temporary workspaces, through the in-process server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gymbox.environments.api import Action, StepResult, ToolCall
from gymbox.environments.api.client import EnvClient
from gymbox.environments.runtime import LocalRuntime
from gymbox.environments.shell import env as shell_env
from gymbox.tasks import Limits, TaskSpec, load_suite
from gymbox.tasks import shell as shell_tasks
from gymbox.tasks.suites import SUITES

TASKS = shell_tasks.tasks()
BY_ID = {task.id: task for task in TASKS}
SEED = 1234


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalRuntime]:
    monkeypatch.setenv("GYMBOX_SANDBOX", "host")
    monkeypatch.delenv("GYMBOX_WORKSPACE", raising=False)
    # Tasks run `python3`; this interpreter's own folder first keeps a slow wrapper (pyenv's shim) out of the way.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # The class itself, not the id "shell": the tests need no installed entry-point metadata.
    async with LocalRuntime(shell_env.ShellEnv) as rt:
        yield rt


def bash(command: str) -> Action:
    return Action(tool_calls=[ToolCall.make("bash", {"command": command})])


SUBMIT = Action(tool_calls=[ToolCall.make("submit")])


def _kill_leftovers(workspace: Path) -> None:
    """Kill what a task's setup left running in `workspace`: a container would go away with it, this machine not."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")).is_relative_to(workspace):
                os.kill(int(entry.name), signal.SIGKILL)


@contextlib.asynccontextmanager
async def episode(rt: LocalRuntime, task: TaskSpec) -> AsyncIterator[EnvClient]:
    client = await rt.client()
    try:
        await client.reset(task, seed=SEED)
        workspace = Path((await client.state()).env_state["workspace"])
        try:
            yield client
        finally:
            _kill_leftovers(workspace)
    finally:
        await client.close()


async def _submit(client: EnvClient) -> StepResult:
    result = await client.step(SUBMIT)
    assert result.terminated and result.signals["submitted"] == 1.0
    return result


# --- the suite ---------------------------------------------------------------------------------------------------


def test_suite_shape() -> None:
    assert SUITES["shell"] == "gymbox.tasks.shell:tasks"
    assert load_suite("shell").tasks == tuple(TASKS)
    assert len(TASKS) >= 64
    categories = Counter(t.category for t in TASKS)
    assert set(categories) == set(shell_tasks.CATEGORIES)
    assert max(categories.values()) - min(categories.values()) <= 2, categories
    test_split = [t for t in TASKS if t.split == "test"]
    assert {t.category for t in test_split} == set(shell_tasks.CATEGORIES)
    assert 0.2 <= len(test_split) / len(TASKS) <= 0.35
    assert len(BY_ID) == len(TASKS)
    for task in TASKS:
        assert task.env == "shell" and task.limits.max_turns >= 5
        assert set(task.payload) == {"setup", "checks", "solution"} and len(task.payload["checks"]) >= 2


def test_loader_names_the_bad_file_and_task(tmp_path: Path) -> None:
    for category in shell_tasks.CATEGORIES:
        (tmp_path / f"{category}.yaml").write_text((shell_tasks.DATA / f"{category}.yaml").read_text())
    good = (tmp_path / "git.yaml").read_text()
    (tmp_path / "git.yaml").write_text(good.replace("split: test", "split: holdout", 1))
    with pytest.raises(shell_tasks.TaskFileError, match=r"git\.yaml: task 'shell-git-\d{3}': split must be"):
        shell_tasks._load(tmp_path)
    (tmp_path / "git.yaml").write_text(good.replace("shell-git-002", "shell-git-001", 1))
    with pytest.raises(shell_tasks.TaskFileError, match=r"git\.yaml: task id 'shell-git-001' is also used"):
        shell_tasks._load(tmp_path)


@pytest.mark.parametrize("task_id", sorted(BY_ID))
async def test_untouched_workspace_fails(runtime: LocalRuntime, task_id: str) -> None:
    async with episode(runtime, BY_ID[task_id]) as client:
        result = await _submit(client)
    assert result.signals["success"] == 0.0 and result.reward == 0.0


@pytest.mark.parametrize("task_id", sorted(BY_ID))
async def test_solution_passes(runtime: LocalRuntime, task_id: str) -> None:
    task = BY_ID[task_id]
    async with episode(runtime, task) as client:
        ran = await client.step(bash(task.payload["solution"]))
        output = ran.observation.messages[0].content or ""
        assert output.endswith("[exit code 0]"), output
        result = await _submit(client)
    assert result.signals["checks_passed"] == 1.0 and result.signals["success"] == 1.0, result.signals


# --- the environment -----------------------------------------------------------------------------------------------


async def test_environment_limits_and_mistakes(runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell_env, "COMMAND_SECONDS", 1.0)
    probe = TaskSpec(id="shell-probe", env="shell", limits=Limits(max_turns=4), payload={
        "setup": "echo start > state.txt",
        "checks": [{"name": "finished", "run": "grep -qx done state.txt"}, {"name": "always", "run": "true"}]})
    async with episode(runtime, probe) as client:
        workspace = Path((await client.state()).env_state["workspace"])
        loud = await client.step(bash("head -c 100000 /dev/zero | tr '\\0' a"))
        text = loud.observation.messages[0].content or ""
        assert "bytes of output omitted" in text and len(text) < 20_000 and text.endswith("[exit code 0]")

        slow = await client.step(bash("sleep 30 & echo $! > bg.pid; sleep 30"))
        assert "command killed after 1 s" in (slow.observation.messages[0].content or "")
        background = int((workspace / "bg.pid").read_text())
        with contextlib.suppress(FileNotFoundError):  # gone, or a zombie nobody has reaped yet
            assert (Path(f"/proc/{background}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"

        wrong = await client.step(Action(tool_calls=[
            ToolCall.make("python", {"code": "1"}, id="a"), ToolCall.make("bash", {"cmd": "ls"}, id="b")]))
        first, second = (m.content or "" for m in wrong.observation.messages)
        assert "no tool named 'python'" in first and "bash, submit" in first
        assert "needs a string argument 'command'" in second
        assert wrong.signals["valid_action"] == 0.0 and not wrong.done

        last = await client.step(bash("echo done > state.txt"))
    assert last.truncated and not last.terminated and last.info["truncated_by"] == "max_turns"
    assert last.signals["checks_passed"] == 1.0 and last.signals["success"] == 1.0

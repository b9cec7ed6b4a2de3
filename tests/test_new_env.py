"""`gymbox new-env`: the environment it writes (into a scratch copy of the files it edits) conforms as written."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import gymbox.environments
import gymbox.tasks
import gymbox.tasks.suites
from gymbox.environments.api.registry import load_target
from gymbox.environments.runtime import LocalRuntime
from gymbox.environments.runtime.checker import check_runtime
from gymbox.harness.cli import build_parser
from gymbox.harness.cli_new_env import REPOSITORY

NAME = "quiz_probe"


def new_env(*argv: str) -> int:
    args = build_parser().parse_args(["new-env", *argv])
    return args.handler(args)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch root holding the two files new-env edits; its packages are importable as gymbox's own."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "environments").mkdir()
    shutil.copy(REPOSITORY / "pyproject.toml", tmp_path)
    shutil.copy(REPOSITORY / "tasks" / "suites.py", tmp_path / "tasks")
    # What the editable install would do for a folder of this repository, without reinstalling anything.
    for package, folder in ((gymbox.environments, "environments"), (gymbox.tasks, "tasks")):
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path / folder)])
    yield tmp_path
    for module in [m for m in sys.modules if NAME in m]:
        del sys.modules[module]


async def test_the_written_environment_conforms(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_env(NAME, "--root", str(root), "--no-install") == 0
    entry = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["gymbox.environments"]
    assert entry[f"{NAME}@v1"] == f"gymbox.environments.{NAME}.env:QuizProbeEnv"
    table = next(node.value for node in ast.parse((root / "tasks" / "suites.py").read_text()).body
                 if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "SUITES")
    suites = ast.literal_eval(table)
    assert {**gymbox.tasks.suites.SUITES, NAME: f"gymbox.tasks.{NAME}:tasks"} == suites
    monkeypatch.setattr(gymbox.tasks.suites, "SUITES", suites)

    env_cls = load_target(entry[f"{NAME}@v1"])
    assert [t.function.name for t in env_cls.tools] == ["answer"]
    async with LocalRuntime(env_cls) as runtime:
        report = await check_runtime(runtime)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failures())

    # The test it wrote passes too.
    written = importlib.util.spec_from_file_location("written_test", root / "tests" / f"test_{NAME}.py")
    assert written is not None and written.loader is not None
    module = importlib.util.module_from_spec(written)
    written.loader.exec_module(module)
    await module.test_conforms()
    module.test_the_right_answer_succeeds()


@pytest.mark.parametrize("name, reason", [
    ("echo", "exists already: an entry point echo@"),
    ("2fast", "not a lower-case Python identifier"),
    ("my-env", "not a lower-case Python identifier"),
    ("lambda", "not a lower-case Python identifier"),
    ("Quiz", "not a lower-case Python identifier"),
])
def test_names_that_exist_or_cannot_be_modules_are_refused(root: Path, name: str, reason: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.read_text() for p in (root / "pyproject.toml", root / "tasks" / "suites.py")}
    assert new_env(name, "--root", str(root), "--no-install") == 2
    assert reason in " ".join(capsys.readouterr().out.split())
    assert {p: p.read_text() for p in before} == before and not any((root / "environments").iterdir())


def test_a_second_run_is_refused(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_env(NAME, "--root", str(root), "--no-install") == 0
    assert new_env(NAME, "--root", str(root), "--no-install") == 2
    out = " ".join(capsys.readouterr().out.split())
    assert f"environments/{NAME}" in out and f"the suite '{NAME}'" in out and "choose another name" in out


def test_a_root_that_is_not_a_repository_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_env(NAME, "--root", str(tmp_path), "--no-install") == 2
    assert "--root must be a gymbox repository" in " ".join(capsys.readouterr().out.split())
    assert importlib.util.find_spec(f"gymbox.environments.{NAME}") is None

"""`gymbox new-env NAME`: a new environment from the template (a `ToolEnv` with one tool, a task suite, its entry
point and a test) that passes `gymbox check-env NAME` as written."""

from __future__ import annotations

import argparse
import keyword
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from rich.console import Console

console = Console()
REPOSITORY = Path(__file__).resolve().parents[1]  # harness/ sits at the repository's root
ENTRY_TABLE = '[project.entry-points."gymbox.environments"]'

ENV = Template('''"""`$name`: the agent answers a question with the `answer` tool (written by `gymbox new-env`)."""

from __future__ import annotations

from typing import ClassVar

from gymbox.environments.api import Observation, TaskSpec, ToolEnv, ToolResult, tool
from gymbox.environments.api.errors import InvalidTask


class $cls(ToolEnv):
    name = "$name"
    version = "v1"
    description = "Answer a question with one tool call."
    suites: ClassVar[list[str]] = ["$name"]

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        expected = task.payload.get("answer")
        if not isinstance(expected, str):
            raise InvalidTask(f"$name task {task.id!r} needs payload.answer, a string")
        self.expected = expected
        return self.first_observation(task.instruction)

    @tool
    def answer(self, text: str) -> ToolResult:
        """Give your answer; the episode then ends.

        Args:
            text: the answer, as short as it can be
        """
        success = float(text.strip().lower() == self.expected.lower())
        return ToolResult("Answer recorded.", done=True, reward=success, signals={"success": success})

    def grade(self) -> dict[str, float]:
        """A limit ended the episode before any answer."""
        return {"success": 0.0}
''')

TASKS = Template('''"""Tasks of the `$name` environment: questions with short answers. Written by `gymbox new-env`."""

from __future__ import annotations

from gymbox.tasks.spec import Limits, TaskSpec

_QUESTIONS = [("What is 2 + 3?", "5"), ("What is 7 - 4?", "3"), ("What is 6 * 7?", "42"),
              ("What is 9 / 3?", "3"), ("What is 10 + 15?", "25"), ("What is 8 * 8?", "64")]


def tasks() -> list[TaskSpec]:
    """Suite `$name`: six arithmetic questions; every third one is in the test split."""
    return [TaskSpec(id=f"$name-{i:03d}", env="$name", instruction=f"{question} Reply with the answer tool.",
                     payload={"answer": answer}, limits=Limits(max_turns=4), category="arithmetic",
                     split="test" if i % 3 == 2 else "train")
            for i, (question, answer) in enumerate(_QUESTIONS)]
''')

TEST = Template('''"""The `$name` environment: it follows the step API's rules, and the right answer succeeds."""

from __future__ import annotations

$imports


async def test_conforms() -> None:
    async with LocalRuntime($cls) as runtime:
        report = await check_runtime(runtime)
    assert report.ok, "\\n".join(f"{r.name}: {r.detail}" for r in report.failures())


def test_the_right_answer_succeeds() -> None:
    env, task = $cls(), tasks()[0]
    env.reset(task, seed=0)
    result = env.step(Action(tool_calls=[ToolCall.make("answer", {"text": task.payload["answer"]})]))
    assert result.terminated and result.reward == 1.0 and result.signals["success"] == 1.0
''')


class NewEnvError(Exception):
    """Why the environment cannot be written as asked."""


@dataclass(frozen=True)
class Layout:
    """Where one new environment's pieces go under a repository root."""

    root: Path
    name: str

    @property
    def cls(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Env"

    @property
    def package(self) -> Path:
        return self.root / "environments" / self.name

    @property
    def tasks(self) -> Path:
        return self.root / "tasks" / f"{self.name}.py"

    @property
    def suites(self) -> Path:
        return self.root / "tasks" / "suites.py"

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    @property
    def test(self) -> Path:
        return self.root / "tests" / f"test_{self.name}.py"

    @property
    def entry(self) -> str:
        return f'"{self.name}@v1" = "gymbox.environments.{self.name}.env:{self.cls}"'

    @property
    def suite(self) -> str:
        return f'    "{self.name}": "gymbox.tasks.{self.name}:tasks",'


def check_name(layout: Layout) -> None:
    """`NewEnvError` when the name is not a Python identifier or anything of that name exists already."""
    name = layout.name
    if not name.isidentifier() or keyword.iskeyword(name) or not name.islower():
        raise NewEnvError(f"{name!r} is not a lower-case Python identifier (letters, digits and _, not starting "
                          "with a digit, not a keyword): the name is also the package's and the module's")
    for path in (layout.suites, layout.pyproject):
        if not path.is_file():
            raise NewEnvError(f"{path} is missing: --root must be a gymbox repository")
    taken = [str(p.relative_to(layout.root)) for p in (layout.package, layout.tasks, layout.test) if p.exists()]
    if re.search(rf'^\s*"{name}"\s*:', layout.suites.read_text(), re.MULTILINE):
        taken.append(f"the suite {name!r} in tasks/suites.py")
    if re.search(rf'^"{name}@', layout.pyproject.read_text(), re.MULTILINE):
        taken.append(f"an entry point {name}@... in pyproject.toml")
    if taken:
        raise NewEnvError(f"an environment named {name!r} exists already: {', '.join(taken)}; choose another name")


def insert_entry(pyproject: str, entry: str) -> str:
    """pyproject.toml's text with `entry` as the last line of the environments' entry-point table."""
    lines = pyproject.splitlines(keepends=True)
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() == ENTRY_TABLE) + 1
    except StopIteration:
        raise NewEnvError(f"pyproject.toml has no {ENTRY_TABLE} table") from None
    while at < len(lines) and "=" in lines[at] and not lines[at].lstrip().startswith(("[", "#")):
        at += 1
    return "".join([*lines[:at], entry + "\n", *lines[at:]])


def insert_suite(suites: str, line: str) -> str:
    """tasks/suites.py's text with `line` as the last entry of its SUITES table."""
    start = suites.find("SUITES: dict[str, str] = {")
    end = suites.find("\n}", start)
    if start < 0 or end < 0:
        raise NewEnvError("tasks/suites.py has no SUITES table to add the suite to")
    return f"{suites[:end]}\n{line}{suites[end:]}"


def write_environment(layout: Layout) -> list[Path]:
    """Write the environment, its tasks, suite line, entry point and test; the paths written or changed."""
    check_name(layout)
    # Both edits are worked out before anything is written, so a refusal leaves the repository as it was.
    pyproject = insert_entry(layout.pyproject.read_text(), layout.entry)
    suites = insert_suite(layout.suites.read_text(), layout.suite)
    imports = sorted([f"from gymbox.environments.{layout.name}.env import {layout.cls}",  # sorted as ruff sorts
                      "from gymbox.environments.api import Action, ToolCall",
                      "from gymbox.environments.runtime import LocalRuntime",
                      "from gymbox.environments.runtime.checker import check_runtime"])
    fields = {"name": layout.name, "cls": layout.cls,
              "imports": "\n".join([*imports, f"from gymbox.tasks.{layout.name} import tasks"])}
    layout.package.mkdir(parents=True)
    (layout.package / "__init__.py").write_text(f'"""The `{layout.name}` environment."""\n')
    (layout.package / "env.py").write_text(ENV.substitute(fields))
    layout.tasks.write_text(TASKS.substitute(fields))
    layout.test.parent.mkdir(exist_ok=True)
    layout.test.write_text(TEST.substitute(fields))
    layout.suites.write_text(suites)
    layout.pyproject.write_text(pyproject)
    return [layout.package / "__init__.py", layout.package / "env.py", layout.tasks, layout.suites,
            layout.pyproject, layout.test]


def refresh_metadata(root: Path) -> None:
    """Reinstall the project's metadata (no dependencies, no build), so its new entry point is seen at once."""
    # About a second and a half: setuptools rebuilds the editable wheel's metadata; nothing is downloaded.
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--editable", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        raise NewEnvError(f"refreshing the installed metadata failed (run `pip install -e {root}` yourself):\n"
                          f"{done.stderr[-2000:]}")


def cmd_new_env(args: argparse.Namespace) -> int:
    layout = Layout(args.root.resolve(), args.name)
    try:
        written = write_environment(layout)
        if not args.no_install:
            refresh_metadata(layout.root)
    except NewEnvError as err:
        console.print(f"[red]cannot write the environment[/red]: {err}")
        return 2
    for path in written:
        console.print(f"  wrote {path.relative_to(layout.root)}")
    console.print(f"[green]{layout.name}@v1 is ready[/green]: gymbox check-env {layout.name}; "
                  f"pytest {layout.test.relative_to(layout.root)}")
    if args.no_install:
        console.print(f"[yellow]its entry point shows after[/yellow] pip install --no-deps -e {layout.root}")
    return 0


def add_commands(sub: Any) -> None:
    help = "write a new environment from the template: a ToolEnv with one tool, a task suite, its entry point, a test"
    p = sub.add_parser("new-env", help=help, description=help)
    p.add_argument("name", help="a lower-case Python identifier: the package, module and suite name")
    p.add_argument("--root", type=Path, default=REPOSITORY, help="the repository to write into (default: this one)")
    p.add_argument("--no-install", action="store_true",
                   help="leave the installed metadata alone (the entry point then shows after `pip install -e .`)")
    p.set_defaults(handler=cmd_new_env)

"""Running a package's tests in a container and reading back, per test, whether it passed and why not: what
grading an episode and generating tasks share. The container is one the caller started and passes in."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gymbox.tasks.swe.packages import Package


class Ran(Protocol):
    """How one command ended (the runtime's `ExecResult`)."""

    @property
    def exit_code(self) -> int | None: ...

    @property
    def output(self) -> str: ...

    @property
    def timed_out(self) -> bool: ...

    def render(self) -> str: ...


class Box(Protocol):
    """A running container of a package image (the runtime's `ContainerSandbox`): tasks code only uses one it is
    given, so it never depends on how containers are run."""

    def exec(self, command: str, *, timeout: float, workdir: str | None = None, env: dict[str, str] | None = None,
             max_output: int = ...) -> Ran: ...

    def put_files(self, files: dict[str, bytes], *, mode: int = ...) -> None: ...

    def read_file(self, path: str) -> bytes | None: ...

GRADER_DIR = "/var/tmp/gymbox-grader"
_PLUGIN = (Path(__file__).parent / "report_plugin.py").read_bytes()


@dataclass
class TestRun:
    """Outcome per test node id ("passed", "failed", "skipped"), failures' text, and how the run went."""

    outcomes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    timed_out: bool = False
    output: str = ""

    def passing(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome == "passed"}


def run_tests(box: Box, pkg: Package, targets: list[str], *, timeout: float,
              expect: list[str] | None = None, extra: str = "", env: dict[str, str] | None = None) -> TestRun:
    """Run pytest on `targets` (test paths or node ids) in the checkout, with the grader's own plugin and options.

    Tests in `expect` that did not report (their module failed to import, the run was killed) count as failed,
    with pytest's own output as the reason.
    """
    args = "".join(f"{target}\n" for target in targets)
    box.put_files({f"{GRADER_DIR}/gymbox_report.py": _PLUGIN, f"{GRADER_DIR}/args.txt": args.encode()})
    ignore = " ".join(f"--ignore={shlex.quote(path)}" for path in pkg.ignore)
    # The package's own pytest configuration is used (it was restored), less its addopts (coverage, doctest
    # of the README ...) for gymbox's packages; the options here come after it and win. Test ids go in as
    # arguments (pytest's @file needs pytest 8.2, older checkouts have older ones).
    command = (f"mapfile -t tests < {GRADER_DIR}/args.txt; cd {pkg.root} && {pkg.runner} -p gymbox_report "
               f"-p no:cacheprovider {pkg.pytest_options} --rootdir={pkg.root} --tb=short -q -rN {ignore} {extra} "
               '"${tests[@]}"')
    env = {"GYMBOX_REPORT": f"{GRADER_DIR}/report.jsonl", "PYTHONPATH": GRADER_DIR, "HOME": GRADER_DIR,
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", **(env or {})}
    started = time.monotonic()
    result = box.exec(command, timeout=timeout, env=env, max_output=8192, workdir=pkg.root)
    run = TestRun(seconds=time.monotonic() - started, timed_out=result.timed_out, output=result.output)
    report = box.read_file(f"{GRADER_DIR}/report.jsonl") or b""
    _read_report(report.decode("utf-8", errors="replace"), run)
    box.exec(f"rm -rf {GRADER_DIR}", timeout=30)
    for test in expect or []:
        if test not in run.outcomes:
            run.outcomes[test] = "failed"
            why = "the run was killed at its time limit" if run.timed_out else "it did not run"
            run.failures[test] = f"{why}; pytest said:\n{result.output[-2000:]}"
    return run


def _read_report(text: str, run: TestRun) -> None:
    """Fold the plugin's per-phase lines into one outcome per test: any failed phase fails the test."""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        test, outcome = record["nodeid"], record["outcome"]
        if record["when"] == "collect":
            run.failures[test] = record["text"]
            continue
        if outcome == "failed":
            run.outcomes[test] = "failed"
            run.failures.setdefault(test, record["text"])
        elif run.outcomes.get(test) != "failed":
            run.outcomes[test] = "skipped" if outcome == "skipped" else outcome
        if record["when"] == "call":
            run.durations[test] = float(record.get("duration", 0.0))

"""Make `swe` tasks: inject bugs into a package's covered code and keep those that make passing tests fail.

Per package, in one container of its image: run the whole test suite (what passes, and how long each test takes),
run it again under coverage to learn which tests execute each line, then for each sampled mutation run the tests
that cover its line; a mutation that fails some is run once more against those tests' whole files, which gives
FAIL_TO_PASS (passed before, fail now) and PASS_TO_PASS (pass both times). Deterministic for a seed, up to tests
whose outcome depends on time. The caller starts the container and reads the image's checkout (the runtime's
work); this module only uses them.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gymbox.tasks.swe.grader import Box, run_tests
from gymbox.tasks.swe.mutate import Mutation, bug_patch, candidates, gold_patch, sample
from gymbox.tasks.swe.packages import Package
from gymbox.tasks.swe.statement import problem_statement

SLOW_SECONDS = 2.0  # tests slower than this at baseline are left out of every task (grading stays quick)
FIRST_RUN_TESTS = 200  # at most this many covering tests decide whether a mutation breaks anything
TEST_SHARE = 0.2  # of each package's tasks, in the test split
COVERAGE_DIR = "/var/tmp/gymbox-coverage"
Log = Callable[[str], None]

# Runs in the container's test Python: the tests that executed each wanted line, from pytest-cov's contexts.
_COVERAGE_MAP = """
import json, os, sys, coverage
wanted = json.load(open(sys.argv[1]))
data = coverage.CoverageData(basename=sys.argv[2]); data.read()
lines, index = {}, {}
for path, numbers in wanted.items():
    by_line = data.contexts_by_lineno(os.path.join(sys.argv[4], path))
    for number in numbers:
        names = sorted({c[:-4] for c in by_line.get(number, []) if c.endswith("|run")})
        lines.setdefault(path, {})[number] = [index.setdefault(n, len(index)) for n in names]
json.dump({"tests": sorted(index, key=index.get), "lines": lines}, open(sys.argv[3], "w"))
"""


@dataclass
class Baseline:
    passing: set[str]  # tests that pass on the unchanged checkout and are quick
    durations: dict[str, float]
    sources: dict[str, str]  # the package's source files, by path in the checkout
    covering: dict[tuple[str, int], list[str]]  # (path, line) -> tests that execute it

    def limit(self, tests: list[str]) -> float:
        """Time allowed for these tests with a bug in: well above what they took without one."""
        return 30 + 5 * sum(self.durations.get(t, 0.0) for t in tests)


def package_sources(checkout: bytes, pkg: Package) -> dict[str, str]:
    """The package's Python files (tests left out), from the image's checkout as a tar archive."""
    found = {}
    with tarfile.open(fileobj=io.BytesIO(checkout)) as tar:
        for member in tar:
            rel = member.name.partition("/")[2]
            if member.isfile() and rel.endswith(".py") and pkg.is_source_path(rel) and not pkg.is_test_path(rel):
                handle = tar.extractfile(member)
                assert handle is not None
                found[rel] = handle.read().decode("utf-8")
    return found


def baseline(box: Box, pkg: Package, sources: dict[str, str], mutations: list[Mutation],
             log: Log) -> Baseline:
    """What passes before any bug, and which tests cover each mutated line."""
    full = run_tests(box, pkg, list(pkg.tests), timeout=1800)
    slow = {test for test, seconds in full.durations.items() if seconds > SLOW_SECONDS}
    passing = {test for test in full.passing() - slow if "\n" not in test}
    log(f"{pkg.name}: {len(passing)} quick passing tests of {len(full.outcomes)} ({full.seconds:.0f} s)")
    wanted: dict[str, set[int]] = {}
    for mutation in mutations:
        wanted.setdefault(mutation.path, set()).add(mutation.line)
    box.exec(f"mkdir -p {COVERAGE_DIR}", timeout=30)
    box.put_files({f"{COVERAGE_DIR}/wanted.json": json.dumps({p: sorted(n) for p, n in wanted.items()}).encode(),
                   f"{COVERAGE_DIR}/map.py": _COVERAGE_MAP.encode()})
    run_tests(box, pkg, sorted(passing), timeout=3600, env={"COVERAGE_FILE": f"{COVERAGE_DIR}/data"},
              extra=f"--cov={pkg.root}/{pkg.source} --cov-context=test --cov-report=")
    result = box.exec(f"/opt/tests/bin/python {COVERAGE_DIR}/map.py {COVERAGE_DIR}/wanted.json "
                      f"{COVERAGE_DIR}/data {COVERAGE_DIR}/map.json {pkg.root}", timeout=600)
    raw = box.read_file(f"{COVERAGE_DIR}/map.json")
    if result.exit_code != 0 or raw is None:
        raise RuntimeError(f"coverage of {pkg.name}'s tests could not be read: {result.render()}")
    mapping = json.loads(raw)
    names = mapping["tests"]
    covering = {(path, int(line)): [names[i] for i in ids if names[i] in passing]
                for path, lines in mapping["lines"].items() for line, ids in lines.items()}
    return Baseline(passing, full.durations, sources, covering)


def try_mutation(box: Box, pkg: Package, base: Baseline, mutation: Mutation, seed: int) -> dict[str, Any] | None:
    """The task this mutation makes, or None when no passing test notices it."""
    covering = base.covering.get((mutation.path, mutation.line), [])
    if not covering:
        return None
    original = base.sources[mutation.path]
    mutated = mutation.apply(original)
    patch = bug_patch(original, mutated, mutation.path)
    box.put_files({"/var/tmp/gymbox-bug/bug.patch": patch.encode()})
    applied = box.exec("git apply /var/tmp/gymbox-bug/bug.patch", timeout=60)
    if applied.exit_code != 0:
        raise RuntimeError(f"the bug patch for {mutation.describe()} does not apply: {applied.render()}")
    try:
        first = sorted(random.Random(seed).sample(covering, min(len(covering), FIRST_RUN_TESTS)))
        quick = run_tests(box, pkg, first, timeout=base.limit(first), expect=first)
        broken = sorted(t for t in first if quick.outcomes.get(t) == "failed")
        if not broken or quick.timed_out:
            return None  # a bug that makes the tests hang would make every grading wait for its time limit
        files = sorted({test.split("::")[0] for test in broken})
        in_files = sorted(t for t in base.passing if t.split("::")[0] in files)
        run = run_tests(box, pkg, in_files, timeout=base.limit(in_files), expect=in_files)
        if run.timed_out:
            return None
    finally:
        box.exec(f"git checkout -q -- {mutation.path}", timeout=60)
    fail_to_pass = sorted(t for t in in_files if run.outcomes.get(t) != "passed")
    pass_to_pass = sorted(t for t in in_files if run.outcomes.get(t) == "passed")
    if not fail_to_pass:
        return None  # the first run's failures did not repeat: a flaky test, not this bug
    digest = hashlib.sha256(patch.encode()).hexdigest()[:8]
    statement = problem_statement(pkg.name, {t: run.failures.get(t, "") for t in fail_to_pass},
                                  source_dir=pkg.source, seed=seed)
    return {"id": f"{pkg.slug}.{mutation.function}.{mutation.operator}.{digest}", "package": pkg.slug,
            "version": pkg.version, "split": "", "path": mutation.path,
            "function": mutation.function, "operator": mutation.operator, "line": mutation.line,
            "problem_statement": statement, "bug_patch": patch, "gold_patch": gold_patch(mutated, original,
                                                                                         mutation.path),
            "fail_to_pass": fail_to_pass, "pass_to_pass": pass_to_pass,
            "grade_seconds": max(120, math.ceil(6 * run.seconds))}


def assign_splits(tasks: list[dict[str, Any]]) -> None:
    """Fixed train/test split by function: functions in the order of a hash of their name go to test until
    TEST_SHARE of the tasks are there, so bugs in one function never land on both sides."""
    by_function: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in tasks:
        by_function.setdefault((task["path"], task["function"]), []).append(task)
    order = sorted(by_function, key=lambda key: hashlib.sha256(f"{key[0]}:{key[1]}".encode()).hexdigest())
    wanted, taken = math.ceil(TEST_SHARE * len(tasks)), 0
    for key in order:
        split = "test" if taken < wanted else "train"
        taken += len(by_function[key]) if split == "test" else 0
        for task in by_function[key]:
            task["split"] = split


def generate_package(box: Box, checkout: bytes, pkg: Package, *, count: int, seed: int, tries: int | None = None,
                     log: Log = print, advance: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Up to `count` validated tasks of one package, from at most `tries` sampled mutations, made in `box` (a fresh
    container of the package's image) from `checkout` (the image's checkout as a tar archive)."""
    sources = package_sources(checkout, pkg)
    pool = [m for path, text in sorted(sources.items()) for m in candidates(text, path)]
    base = baseline(box, pkg, sources, pool, log)
    covered = [m for m in pool if base.covering.get((m.path, m.line))]
    log(f"{pkg.name}: {len(covered)} of {len(pool)} candidate mutations are on lines the tests run")
    chosen = sample(covered, seed, tries or 3 * count)
    tasks: list[dict[str, Any]] = []
    for index, mutation in enumerate(chosen):
        if len(tasks) >= count:
            break
        task = try_mutation(box, pkg, base, mutation, seed + index)
        if task is not None:
            tasks.append(task)
            log(f"{pkg.name}: kept {task['id']} ({len(tasks)}/{count}, {index + 1} tried)")
            if advance:
                advance(1)
    assign_splits(tasks)
    return tasks

"""Problem statements from real pytest --tb=short failures of a small package with planted bugs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gymbox.tasks.swe.statement import Frame, error_lines, frames, problem_statement

CORE = """\
def chunked(items, size):
    return [items[i : i + size + 1] for i in range(0, len(items), size)]


def first(items):
    return _at(items, len(items))


def _at(items, index):
    return items[index]


def label(value):
    return describe(value) + 1


def describe(value):
    return f"value {value}"


def greet(name):
    return "héllo " + name
"""
# The buggy lines: a statement must never show them.
PACKAGE_LINES = [line.strip() for line in CORE.splitlines() if line.strip().startswith("return")]

TESTS = """\
import unittest

import pytest

from toypkg.core import chunked, first, greet, label


class ChunkedTests(unittest.TestCase):
    maxDiff = None

    def test_even(self):
        self.assertEqual(chunked([1, 2, 3, 4], 2), [[1, 2], [3, 4]])

    def test_long(self):
        self.assertEqual(chunked(list(range(600)), 600), [list(range(599))])


def test_plain():
    result = chunked([1, 2, 3], 1)
    assert result == [[1], [2], [3]], "chunks differ"


def test_index():
    assert first([1, 2]) == 1


def test_type():
    assert label(3) == "value 3"


def test_unicode():
    assert greet("wörld") == "hello wörld ☃"


@pytest.fixture
def broken():
    raise RuntimeError("fixture boom")


def test_setup(broken):
    pass


@pytest.mark.parametrize("n", range(8))
def test_param(n):
    assert chunked(list(range(n + 2)), 1) == [[x] for x in range(n + 2)]
"""

INNER = """\
from toypkg.core import first


def test_inner_first():
    assert first(["a"]) == "a"
"""

RECORDER = """\
import json
import os

RECORDED = {}


def pytest_runtest_logreport(report):
    if report.failed and report.when in ("setup", "call"):
        RECORDED[report.nodeid] = str(report.longrepr)


def pytest_collectreport(report):
    if report.failed:
        RECORDED[report.nodeid] = str(report.longrepr)


def pytest_sessionfinish(session):
    with open(os.environ["RECORD_TO"], "w", encoding="utf-8") as out:
        json.dump(RECORDED, out)
"""

SOURCE_DIR = "src/toypkg"
INDEX = "tests/test_core.py::test_index"


def _line(source: str, text: str) -> int:
    return next(number for number, line in enumerate(source.splitlines(), 1) if text in line)


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run pytest --tb=short on the package and record str(report.longrepr) of each failure, as the grader does."""
    root = tmp_path_factory.mktemp("toyrepo")
    files = {
        "pytest.ini": "[pytest]\npythonpath = src\n",
        "conftest.py": RECORDER,
        "src/toypkg/__init__.py": "",
        "src/toypkg/core.py": CORE,
        "src/toypkg/tests/test_inner.py": INNER,
        "tests/test_core.py": TESTS,
        "tests/test_broken.py": "import toypkg.missing\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    record = root / "failures.json"
    env = {**os.environ, "RECORD_TO": str(record), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    # pytest prints assertion diffs in full when CI or BUILD_NUMBER is set; the expected
    # statements below are written for its default output, which is what the containers give.
    for name in ("PYTEST_ADDOPTS", "CI", "BUILD_NUMBER"):
        env.pop(name, None)
    command = [sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider"]
    command += ["--continue-on-collection-errors", "-W", "ignore"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    return json.loads(record.read_text(encoding="utf-8"))


def test_the_run_records_every_failure(failures: dict[str, str]) -> None:
    assert len(failures) == 17, sorted(failures)
    assert "tests/test_broken.py" in failures
    assert "tests/test_core.py::test_setup" in failures
    assert "src/toypkg/tests/test_inner.py::test_inner_first" in failures


def test_frames_and_error_lines_parse_short_tracebacks(failures: dict[str, str]) -> None:
    assert frames(failures[INDEX]) == [
        Frame("tests/test_core.py", _line(TESTS, "first([1, 2])"), "test_index", "assert first([1, 2]) == 1"),
        Frame(f"{SOURCE_DIR}/core.py", _line(CORE, "_at(items, len"), "first", "return _at(items, len(items))"),
        Frame(f"{SOURCE_DIR}/core.py", _line(CORE, "items[index]"), "_at", "return items[index]"),
    ]
    assert error_lines(failures[INDEX]) == ["IndexError: list index out of range"]
    even = failures["tests/test_core.py::ChunkedTests::test_even"]
    assert error_lines(even)[0] == "AssertionError: Lists differ: [[1, 2, 3], [3, 4]] != [[1, 2], [3, 4]]"
    assert [frame.function for frame in frames(even)] == ["test_even"]


def _alone(failures: dict[str, str], nodeid: str) -> str:
    return problem_statement("toypkg", {nodeid: failures[nodeid]}, source_dir=SOURCE_DIR)


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        (INDEX, ["IndexError: list index out of range", "assert first([1, 2]) == 1", "core.py:10 in _at"]),
        (
            "tests/test_core.py::test_type",
            ["TypeError: can only concatenate str", "assert label(3) ==", f"{SOURCE_DIR}/core.py:14 in label"],
        ),
        ("tests/test_core.py::ChunkedTests::test_even", ["Lists differ: [[1, 2, 3], [3, 4]] != [[1, 2], [3, 4]]"]),
        ("tests/test_core.py::test_plain", ["chunks differ", "assert [[1, 2], [2, 3], [3]] == [[1], [2], [3]]"]),
        ("tests/test_core.py::test_unicode", ["héllo wörld", "hello wörld ☃"]),
        ("tests/test_core.py::test_setup", ["RuntimeError: fixture boom"]),
        ("tests/test_broken.py", ["ModuleNotFoundError: No module named 'toypkg.missing'"]),
        (
            "src/toypkg/tests/test_inner.py::test_inner_first",
            ['assert first(["a"]) == "a"', f"{SOURCE_DIR}/core.py:6 in first", f"{SOURCE_DIR}/core.py:10 in _at"],
        ),
    ],
)
def test_a_statement_shows_the_failure_but_not_the_package_source(
    failures: dict[str, str], nodeid: str, expected: list[str]
) -> None:
    text = _alone(failures, nodeid)
    assert nodeid in text
    assert "1 test" in text.splitlines()[0]
    for part in expected:
        assert part in text, (part, text)
    for line in PACKAGE_LINES:
        assert line not in text, (line, text)


def test_no_statement_ever_shows_a_package_line(failures: dict[str, str]) -> None:
    for seed in range(4):
        for max_tests in (3, 20):
            text = problem_statement("toypkg", failures, source_dir=SOURCE_DIR, seed=seed, max_tests=max_tests)
            assert not [line for line in PACKAGE_LINES if line in text], text


def test_the_same_seed_gives_the_same_text_and_seeds_vary_the_phrasing(failures: dict[str, str]) -> None:
    texts = [problem_statement("toypkg", failures, source_dir=SOURCE_DIR, seed=seed) for seed in range(12)]
    assert texts == [
        problem_statement("toypkg", dict(reversed(failures.items())), source_dir=SOURCE_DIR, seed=seed)
        for seed in range(12)
    ]
    openings = {text.splitlines()[0] for text in texts}
    closings = {text.splitlines()[-1] for text in texts}
    assert len(openings) >= 3 and len(closings) >= 3
    assert all("17 tests" in opening and "toypkg" in opening for opening in openings)
    assert all("test" in closing for closing in closings)


def test_the_test_list_stops_at_max_tests(failures: dict[str, str]) -> None:
    names = sorted(failures)
    text = problem_statement("toypkg", failures, source_dir=SOURCE_DIR, max_tests=3)
    assert all(f"- {name}\n" in text for name in names[:3])
    assert not [name for name in names[3:] if name in text]
    assert "- and 14 more" in text
    assert text.index(names[0]) < text.index(names[1]) < text.index(names[2])
    everything = problem_statement("toypkg", failures, source_dir=SOURCE_DIR, max_tests=50, max_chars=10_000)
    assert all(f"- {name}\n" in everything for name in names) and "more" not in everything


def test_long_messages_are_capped(failures: dict[str, str]) -> None:
    nodeid = "tests/test_core.py::ChunkedTests::test_long"
    assert len("\n".join(error_lines(failures[nodeid]))) > 2000
    text = _alone(failures, nodeid)
    message = text.split("fails with:\n\n", 1)[1].split("\n\n", 1)[0]
    assert message.startswith("    AssertionError: Lists differ:")
    assert message.endswith("…") and len(message) < 500


@pytest.mark.parametrize("max_chars", [0, 40, 200, 500, 800, 1200, 2500])
def test_the_text_fits_max_chars(failures: dict[str, str], max_chars: int) -> None:
    text = problem_statement("toypkg", failures, source_dir=SOURCE_DIR, max_chars=max_chars)
    assert len(text) <= max_chars
    if max_chars >= 800:  # room for the header: the details give way first
        assert all(name in text for name in sorted(failures)[:5]) and "- and 12 more" in text


def test_details_are_trimmed_before_the_header(failures: dict[str, str]) -> None:
    full = problem_statement("toypkg", failures, source_dir=SOURCE_DIR, max_chars=100_000)
    header = full.split("\n\n`", 1)[0]
    short = problem_statement("toypkg", failures, source_dir=SOURCE_DIR, max_chars=len(header) + 400)
    assert short.startswith(header) and len(short) < len(full)


ODD = [
    "",
    "E",
    "E   ",
    "garbage\x00\x01 that is no traceback",
    "[XPASS(strict)] should have failed",
    "worker 'gw0' crashed while running 'tests/test_core.py::test_index'",
    "tests/test_core.py:3: in test_x\n",
    "src/toypkg/core.py:99999999999999999999: in f\n    return items[len(items)]\n    ^^^^",
    ":1: in \nE",
    'Traceback (most recent call last):\n  File "src/toypkg/core.py", line 6, in first\n'
    "    return _at(items, len(items))\nIndexError: list index out of range",
    "x" * 20_000,
    "a.py:1: in f" + " " * 50_000 + "g\n" + "-" * 50_000,  # no quadratic regex backtracking
]


@pytest.mark.parametrize("longrepr", ODD)
def test_odd_failure_text_still_gives_a_statement(longrepr: str) -> None:
    text = problem_statement("toypkg", {"tests/test_x.py::test_x": longrepr}, source_dir=SOURCE_DIR)
    assert "tests/test_x.py::test_x" in text and "toypkg" in text and len(text) <= 2500
    assert "items[len(items)]" not in text and "_at(items, len(items))" not in text
    assert isinstance(frames(longrepr), list) and isinstance(error_lines(longrepr), list)


def test_no_failures_still_gives_a_statement() -> None:
    text = problem_statement("toypkg", {}, source_dir=".")
    assert "toypkg" in text and "Failing tests" not in text


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=30), st.text(max_size=300), max_size=8),
    st.integers(0, 10),
    st.integers(0, 3000),
)
def test_arbitrary_input_never_raises(failures: dict[str, str], max_tests: int, max_chars: int) -> None:
    text = problem_statement("pkg", failures, source_dir="pkg", max_tests=max_tests, max_chars=max_chars)
    assert len(text) <= max_chars


def test_the_example_statement(failures: dict[str, str]) -> None:
    nodeids = ["tests/test_core.py::test_index", "tests/test_core.py::test_type", "tests/test_core.py::test_plain"]
    text = problem_statement("toypkg", {n: failures[n] for n in nodeids}, source_dir=SOURCE_DIR, seed=3)
    assert (
        text
        == textwrap.dedent(
            f"""\
        A recent change to toypkg broke its test suite: 3 tests now fail.

        Failing tests:
        - tests/test_core.py::test_index
        - tests/test_core.py::test_plain
        - tests/test_core.py::test_type

        `tests/test_core.py::test_index` fails with:

            IndexError: list index out of range

        It fails here (innermost last):

            tests/test_core.py:{_line(TESTS, "first([1, 2])")} in test_index
                assert first([1, 2]) == 1
            {SOURCE_DIR}/core.py:6 in first
            {SOURCE_DIR}/core.py:10 in _at

        `tests/test_core.py::test_plain` fails with:

            AssertionError: chunks differ
            assert [[1, 2], [2, 3], [3]] == [[1], [2], [3]]
            At index 0 diff: [1, 2] != [1]

        It fails here (innermost last):

            tests/test_core.py:{_line(TESTS, "chunks differ")} in test_plain
                assert result == [[1], [2], [3]], "chunks differ"

        """
        )
        + text.splitlines()[-1]
    )

"""Bug injection: mutations of real files, the operators one by one, sampling, and patches that `git apply` takes."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from gymbox.tasks.swe.mutate import Mutation, bug_patch, candidates, gold_patch, sample
from gymbox.tasks.swe.mutate_ops import OPERATORS


def _real_sources() -> dict[str, str]:
    """Stdlib modules and, when installed, more-itertools: real code with real formatting."""
    import bisect
    import heapq
    import textwrap

    files = {f"{module.__name__}.py": Path(inspect.getsourcefile(module)) for module in (bisect, heapq, textwrap)}
    spec = importlib.util.find_spec("more_itertools")
    if spec and spec.origin:
        files["more_itertools/more.py"] = Path(spec.origin).parent / "more.py"
    return {path: file.read_text(encoding="utf-8") for path, file in files.items()}


@pytest.fixture(scope="module")
def real() -> dict[str, tuple[str, list[Mutation]]]:
    return {path: (source, candidates(source, path)) for path, source in _real_sources().items()}


def test_every_operator_occurs_on_real_code(real: dict[str, tuple[str, list[Mutation]]]) -> None:
    counts = Counter(m.operator for _, mutations in real.values() for m in mutations)
    assert set(counts) == set(OPERATORS), counts
    for _, mutations in real.values():
        assert mutations == sorted(mutations, key=lambda m: (m.start, m.end)), "not in source order"
    source, mutations = real["textwrap.py"]
    assert candidates(source, "textwrap.py") == mutations, "not deterministic"


def test_real_mutations_parse_change_the_ast_and_touch_only_their_span(
    real: dict[str, tuple[str, list[Mutation]]],
) -> None:
    # Parsing the whole file per mutation is what candidates() avoids; here a spread-out subset of each big file.
    limits = {"bisect.py": None, "heapq.py": 60, "textwrap.py": 60, "more_itertools/more.py": 20}
    for path, (source, mutations) in real.items():
        limit = limits[path]
        checked = mutations if limit is None else sample(mutations, seed=1, k=limit, per_function=2)
        tree = ast.parse(source)
        original_dumps = {i: ast.dump(stmt) for i, stmt in enumerate(tree.body)}
        for m in checked:
            mutated = m.apply(source)
            assert source[m.start : m.end] == m.original != m.replacement
            assert mutated[: m.start] == source[: m.start]
            assert mutated[m.start + len(m.replacement) :] == source[m.end :]
            assert m.line == source.count("\n", 0, m.start) + 1
            new_tree = ast.parse(mutated)
            # Only the top-level statement holding the span can differ, so comparing it is comparing the files.
            index = next(i for i, stmt in enumerate(tree.body) if stmt.lineno <= m.line <= stmt.end_lineno)
            assert len(new_tree.body) == len(tree.body)
            assert ast.dump(new_tree.body[index]) != original_dumps[index], m.describe()


def test_nothing_in_real_docstrings(real: dict[str, tuple[str, list[Mutation]]]) -> None:
    for source, mutations in real.values():
        docstrings = [
            range(node.body[0].lineno, node.body[0].end_lineno + 1)
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and ast.get_docstring(node, clean=False) is not None
        ]
        for m in mutations:
            last = m.line + m.original.count("\n")
            assert not any(m.line in lines or last in lines for lines in docstrings), m.describe()


UNTOUCHED = '''\
"""Module docstring: a < b and c + 1.  # untouched"""
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # untouched
    def typed(a, b):  # untouched
        return a < b and a + 1  # untouched


def kept(a: int = 1 + 2, b: "int" = 3 - 1) -> int:  # untouched
    """Docstring: if a < b and a + 1 > 2.  # untouched"""
    @functools.lru_cache(maxsize=1 + 1)  # untouched
    def inner(x=a < b):  # untouched
        return x
    for item in range(a + 1):
        total: dict[1 + 1, int] = item  # untouched
    if a < b:
        return a + b
    return f"{a + 1 < b}"  # untouched


def test_kept():  # untouched
    assert kept(1, 2) == 3  # untouched
    x = 1 + 2  # untouched


class TestThing:  # untouched
    def check(self):  # untouched
        return 1 < 2  # untouched


if __name__ == "__main__":  # untouched
    def main(a, b):  # untouched
        return a < b  # untouched
'''


def test_excluded_regions_are_never_mutated() -> None:
    lines = UNTOUCHED.splitlines()
    mutations = candidates(UNTOUCHED, "pkg/kept.py")
    for m in mutations:
        touched = lines[m.line - 1 : m.line + m.original.count("\n")]
        assert not any("# untouched" in line for line in touched), m.describe()
    assert {m.function for m in mutations} == {"kept"}
    assert {m.line for m in mutations} == {15, 17, 18}  # `range(a + 1)`, `if a < b`, `return a + b`
    for path in ("tests/test_kept.py", "pkg/test_kept.py", "pkg/kept_test.py", "pkg/tests/helpers.py", "conftest.py"):
        assert candidates(UNTOUCHED, path) == []


def _mutated(source: str, operator: str) -> set[str]:
    return {m.apply(source) for m in candidates(source, "m.py") if m.operator == operator}


# (operator, source, one mutated source expected among that operator's candidates)
EXAMPLES = [
    ("swap_comparison", "def f(a, b):\n    return a < b\n", "def f(a, b):\n    return a >= b\n"),
    ("swap_comparison", "def f(a, b):\n    return a is not b\n", "def f(a, b):\n    return a is b\n"),
    ("swap_comparison", "def f(a, b):\n    return a in (b)\n", "def f(a, b):\n    return a not in (b)\n"),
    ("change_boundary", "def f(i, n):\n    return i <= n\n", "def f(i, n):\n    return i < n\n"),
    ("change_boundary", "def f(a):\n    return a[-1]\n", "def f(a):\n    return a[-2]\n"),
    ("change_boundary", "def f(a):\n    return len(a) - 1\n", "def f(a):\n    return len(a) - 2\n"),
    (
        "negate_condition",
        "def f(x, y):\n    if x and y:\n        g()\n",
        "def f(x, y):\n    if not (x and y):\n        g()\n",
    ),
    ("negate_condition", "def f(x):\n    while not (x):\n        g()\n", "def f(x):\n    while (x):\n        g()\n"),
    ("negate_condition", "def f(x):\n    return 1 if x.y else 2\n", "def f(x):\n    return 1 if not x.y else 2\n"),
    ("swap_arithmetic", "def f(n):\n    n += 1\n    return n\n", "def f(n):\n    n -= 1\n    return n\n"),
    ("swap_arithmetic", "def f(a, b):\n    return (a) * (b)\n", "def f(a, b):\n    return (a) // (b)\n"),
    ("swap_boolean", "def f(a, b, c):\n    return a and b and c\n", "def f(a, b, c):\n    return a or b or c\n"),
    (
        "drop_statement",
        "def f(a):\n    a.sort()  # in place\n    return a\n",
        "def f(a):\n    return a\n",
    ),
    (
        "wrong_return",
        "def f(items, k):\n    n = len(items)\n    return k\n",
        "def f(items, k):\n    n = len(items)\n    return n\n",
    ),
    ("off_by_one_slice", "def f(a, i, j):\n    return a[i:j]\n", "def f(a, i, j):\n    return a[i + 1:j]\n"),
    ("off_by_one_slice", "def f(a):\n    return a[:-1]\n", "def f(a):\n    return a[:-2]\n"),
]


@pytest.mark.parametrize(("operator", "source", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_operator_examples(operator: str, source: str, expected: str) -> None:
    assert expected in _mutated(source, operator)


def test_operators_leave_alone_what_would_be_no_subtle_bug() -> None:
    # The only statement of a block stays; `+` on a string literal is concatenation; `x + 0` is x.
    assert _mutated("def f(a):\n    a.sort()\n", "drop_statement") == set()
    assert _mutated("def f(a):\n    return 'x' + a\n", "swap_arithmetic") == set()
    assert "def f(a):\n    return a + 0\n" not in _mutated("def f(a):\n    return a + 1\n", "change_boundary")
    # A str local is not returned in place of an int one; `not a < b` would be swap_comparison's `a >= b`.
    wrong = _mutated("def f(x: int):\n    n = 0\n    s = 'a'\n    return n\n", "wrong_return")
    assert wrong == {"def f(x: int):\n    n = 0\n    s = 'a'\n    return x\n"}
    assert _mutated("def f(a, b):\n    if a < b:\n        g()\n", "negate_condition") == set()


def test_non_ascii_line_mutates_at_the_right_place() -> None:
    # "é" is 2 bytes in UTF-8 and "😀" 4: AST columns after them are off by 4 characters.
    source = 'def f(name, x):\n    if name == "é😀" and x < 2:\n        return 1\n    return 0\n'
    mutations = candidates(source, "m.py")
    (m,) = [m for m in mutations if m.operator == "swap_comparison" and m.original == "<"]
    assert m.start == source.index("<") and m.line == 2
    assert m.apply(source) == source.replace("x < 2", "x >= 2")
    bounds = {m.apply(source) for m in mutations if m.original == "2"}
    assert bounds == {source.replace("x < 2", "x < 3"), source.replace("x < 2", "x < 1")}


def test_sample_is_deterministic_and_spread(real: dict[str, tuple[str, list[Mutation]]]) -> None:
    mutations = [m for _, ms in real.values() for m in ms]
    first = sample(mutations, seed=7, k=40)
    assert first == sample(list(reversed(mutations)), seed=7, k=40)
    assert first != sample(mutations, seed=8, k=40)
    assert len(first) == 40
    assert len({(m.path, m.function) for m in first}) == 40  # per_function=1
    assert set(Counter(m.operator for m in first)) == set(OPERATORS)
    two = sample(mutations, seed=7, k=200, per_function=2)
    assert max(Counter((m.path, m.function) for m in two).values()) == 2
    assert sample(mutations, seed=7, k=0) == []
    few = [m for m in mutations if m.path == "bisect.py"]
    assert len(sample(few, seed=7, k=1000)) == len({m.function for m in few})  # all functions, once each


def _git(repo: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.autocrlf=false", *args],
                   cwd=repo, input=stdin, text=True, check=True, capture_output=True)


def test_patches_apply_with_git(real: dict[str, tuple[str, list[Mutation]]], tmp_path: Path) -> None:
    source, mutations = real["textwrap.py"]
    no_newline = "def f(a, b):\n    x = 1\n    return a < b"  # the bug is on a last line without a newline
    crlf = "def f(a, b):\r\n    x = 'é'\r\n    return a < b\r\n"
    cases = [(f"pkg/textwrap{i}.py", source, m) for i, m in enumerate(sample(mutations, seed=3, k=3))]
    cases += [(path, text, candidates(text, path)[-1]) for path, text in (("a.py", no_newline), ("b/c.py", crlf))]
    _git(tmp_path, "init", "-q")
    for path, original, m in cases:
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(original.encode())
        _git(tmp_path, "add", path)
        _git(tmp_path, "commit", "-qm", f"add {path}")
        mutated = m.apply(original)
        patch = bug_patch(original, mutated, path)
        assert patch.startswith(f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ ")
        _git(tmp_path, "apply", "-", stdin=patch)
        assert file.read_bytes() == mutated.encode()
        _git(tmp_path, "apply", "-", stdin=gold_patch(mutated, original, path))
        assert file.read_bytes() == original.encode()
    assert gold_patch(source, source, "x.py") == ""


def test_apply_on_a_changed_file_raises() -> None:
    source = "def f(a, b):\n    return a < b\n"
    (m,) = [m for m in candidates(source, "pkg/m.py") if m.operator == "swap_comparison"]
    assert m.describe() == "pkg/m.py:2 f swap_comparison: '<' -> '>='"
    with pytest.raises(ValueError, match=r"pkg/m.py changed since the mutation was found: expected '<' at line 2"):
        m.apply(source.replace("a < b", "a<=b"))

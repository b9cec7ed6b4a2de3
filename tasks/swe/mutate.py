"""Bug injection by program transformation: candidate mutations of a Python file, sampling, and the git patches.

A mutation replaces one span of a function body (a comparison operator, a condition, a statement...) and keeps
the rest of the file byte for byte; the gold patch of a task is the diff that undoes it.
"""

from __future__ import annotations

import ast
import difflib
import random
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from gymbox.tasks.swe.mutate_ops import OPERATORS, Edit, Scope, Site, Text

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_OPERATOR_ORDER = {name: index for index, name in enumerate(OPERATORS)}


@dataclass(frozen=True)
class Mutation:
    """One injected bug: `original` at source[start:end] (characters) replaced by `replacement`."""

    path: str  # relative to the repository root, posix
    function: str  # qualified name: `SortedList.bisect_left`, `chunked`, `outer.<locals>.inner`
    operator: str
    start: int
    end: int
    original: str
    replacement: str
    line: int  # 1-based line of `start`

    def apply(self, source: str) -> str:
        """The mutated source; ValueError when the source is no longer the one the mutation was found in."""
        found = source[self.start : self.end]
        if found != self.original:
            raise ValueError(
                f"{self.path} changed since the mutation was found: expected {self.original!r} at line {self.line} "
                f"(characters {self.start}-{self.end}), found {found!r}"
            )
        return source[: self.start] + self.replacement + source[self.end :]

    def describe(self) -> str:
        """A one-line summary for logs (it names the bug: never show it to the agent)."""
        return (
            f"{self.path}:{self.line} {self.function} {self.operator}: "
            f"{_abridged(self.original)} -> {_abridged(self.replacement)}"
        )


def candidates(source: str, path: str) -> list[Mutation]:
    """Every applicable mutation of the file's function and method bodies, in source order.

    Nothing in test files or test functions, docstrings, `if __name__ == "__main__"` or `if TYPE_CHECKING` blocks,
    annotations, decorators, default values or f-strings. Each mutation parses and changes the AST. Raises
    SyntaxError when the file itself does not parse.
    """
    path = PurePosixPath(path).as_posix()
    if _is_test_path(path):
        return []
    text = Text(source)
    found: dict[tuple[int, int, str], Mutation] = {}
    for qualname, func in _functions(ast.parse(source).body, ""):
        check = _FunctionCheck(text, func)
        scope = Scope.of(func)
        for site in _sites(func, text, scope):
            for operator, edits in OPERATORS.items():
                for edit in edits(site):
                    key = (edit.start, edit.end, edit.replacement)
                    if key not in found and check.changes_ast(edit):
                        original = source[edit.start : edit.end]
                        found[key] = Mutation(path, qualname, operator, *key[:2], original, edit.replacement,
                                              text.line_of(edit.start))
    return sorted(found.values(), key=lambda m: (m.start, m.end, _OPERATOR_ORDER[m.operator], m.replacement))


def sample(mutations: list[Mutation], seed: int, k: int, per_function: int = 1) -> list[Mutation]:
    """Up to k mutations, taken round-robin over operators, at most `per_function` from any one function.

    The same for the same inputs in any order on any machine: the pools are sorted before a seeded shuffle.
    """
    if k < 0 or per_function < 1:
        raise ValueError(f"need k >= 0 and per_function >= 1, got k={k}, per_function={per_function}")
    rng = random.Random(seed)
    pools: dict[str, list[Mutation]] = {}
    for mutation in sorted(set(mutations), key=_sort_key):
        pools.setdefault(mutation.operator, []).append(mutation)
    queues = []
    for operator in sorted(pools):
        rng.shuffle(pools[operator])
        queues.append(deque(pools[operator]))
    rng.shuffle(queues)  # so that a small k does not favour the same operators for every seed
    taken: Counter[tuple[str, str]] = Counter()
    chosen: list[Mutation] = []
    while len(chosen) < k and any(queues):
        for queue in queues:
            while queue and len(chosen) < k:
                mutation = queue.popleft()
                if taken[mutation.path, mutation.function] < per_function:
                    taken[mutation.path, mutation.function] += 1
                    chosen.append(mutation)
                    break
    return chosen


def gold_patch(mutated: str, original: str, path: str) -> str:
    """The fix: a diff in git's format (`git apply` accepts it) from the buggy file back to the original."""
    return _git_diff(mutated, original, path)


def bug_patch(original: str, mutated: str, path: str) -> str:
    """The bug: a diff in git's format from the original file to the buggy one."""
    return _git_diff(original, mutated, path)


def _git_diff(old: str, new: str, path: str) -> str:
    path = PurePosixPath(path).as_posix()
    lines = list(difflib.unified_diff(_lines(old), _lines(new), f"a/{path}", f"b/{path}", n=3))
    if not lines:
        return ""
    # difflib leaves a last line without its newline as it is; git marks it.
    body = [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]
    return f"diff --git a/{path} b/{path}\n" + "".join(body)


def _lines(text: str) -> list[str]:
    """Lines as git sees them: split at \\n only, each keeping its ending."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _sort_key(mutation: Mutation) -> tuple[str, int, int, str, str, str]:
    return mutation.path, mutation.start, mutation.end, mutation.operator, mutation.replacement, mutation.function


def _abridged(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 3] + "...")


def _is_test_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else ""
    in_tests = any(part in ("test", "tests", "testing") for part in parts[:-1])
    return in_tests or name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def _is_skipped_block(stmt: ast.stmt) -> bool:
    """`if TYPE_CHECKING:` and `if __name__ == "__main__":` blocks: not code the tests run."""
    if not isinstance(stmt, ast.If):
        return False
    test = stmt.test
    if isinstance(test, ast.Name | ast.Attribute):
        return (test.id if isinstance(test, ast.Name) else test.attr) == "TYPE_CHECKING"
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
        return sides == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))}
    return False


def _functions(stmts: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of every function to mutate, nested ones included, test functions and classes not."""
    for stmt in stmts:
        if _is_skipped_block(stmt):
            yield from _functions(stmt.orelse, prefix)  # `else:` of `if TYPE_CHECKING:` is what runs
        elif isinstance(stmt, _FUNCTIONS):
            if not stmt.name.startswith("test"):
                yield prefix + stmt.name, stmt
                yield from _functions(stmt.body, f"{prefix}{stmt.name}.<locals>.")
        elif isinstance(stmt, ast.ClassDef):
            if not stmt.name.startswith("Test"):
                yield from _functions(stmt.body, f"{prefix}{stmt.name}.")
        else:
            for block in _blocks(stmt):
                yield from _functions(block, prefix)


def _blocks(stmt: ast.stmt) -> Iterator[list[ast.stmt]]:
    for field in ("body", "orelse", "finalbody"):
        if isinstance(getattr(stmt, field, None), list):
            yield getattr(stmt, field)
    for child in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())):
        yield child.body


def _sites(func: ast.FunctionDef | ast.AsyncFunctionDef, text: Text, scope: Scope) -> Iterator[Site]:
    """Every node of a function's own body that an operator may change."""
    body = func.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0].value, "value", None), str)
    stack = [Site(stmt, func, body, text, scope) for stmt in reversed(body[has_docstring:]) if _walked(stmt)]
    while stack:
        site = stack.pop()
        yield site
        children: list[Site] = []
        for field, value in ast.iter_fields(site.node):
            if _skipped_field(site.node, field):
                continue
            items = value if isinstance(value, list) else [value]
            block = value if isinstance(value, list) and all(isinstance(item, ast.stmt) for item in value) else None
            children += [Site(item, site.node, block, text, scope) for item in items if _walked(item)]
        stack.extend(reversed(children))


def _walked(node: object) -> bool:
    # Nested functions and classes are walked as functions of their own, without their decorators and defaults.
    if isinstance(node, ast.stmt) and _is_skipped_block(node):
        return False
    return isinstance(node, ast.AST) and not isinstance(node, (*_FUNCTIONS, ast.ClassDef, ast.JoinedStr))


def _skipped_field(node: ast.AST, field: str) -> bool:
    return (
        (isinstance(node, ast.AnnAssign) and field == "annotation")
        or (isinstance(node, ast.Lambda) and field == "args")
        or (isinstance(node, ast.match_case) and field == "pattern")
    )


class _FunctionCheck:
    """Parses a function's text with one edit applied: cheaper than the whole file, and the same verdict."""

    def __init__(self, text: Text, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.start, self.end = text.line_start(func.lineno), text.line_end(func.end_lineno)
        self.snippet = text.source[self.start : self.end]
        self.baseline = self._parse(self.snippet)

    @staticmethod
    def _parse(snippet: str) -> ast.Module | None:
        # A method is indented: under `if 1:` it parses on its own.
        try:
            return ast.parse("if 1:\n" + snippet if snippet[:1].isspace() else snippet)
        except (SyntaxError, ValueError):
            return None

    def changes_ast(self, edit: Edit) -> bool:
        if self.baseline is None or not self.start <= edit.start <= edit.end <= self.end:
            return False
        start, end = edit.start - self.start, edit.end - self.start
        mutated = self._parse(self.snippet[:start] + edit.replacement + self.snippet[end:])
        return mutated is not None and not _same_tree(mutated, self.baseline)


def _same_tree(a: ast.AST, b: ast.AST) -> bool:
    """`ast.dump(a) == ast.dump(b)`, faster: it stops at the first difference and builds no text."""
    stack: list[tuple[object, object]] = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, ast.AST):
            stack.extend((getattr(x, field, None), getattr(y, field, None)) for field in x._fields)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True

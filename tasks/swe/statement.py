"""Problem statements for injected-bug tasks, written from pytest's --tb=short failure text and never from the fix."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

_FRAME = re.compile(r"^(?P<path>\S.*?):(?P<line>\d+): in (?P<function>\S(?:.*\S)?)\s*$")
_NATIVE_FRAME = re.compile(r'^\s*File "(?P<path>.+)", line (?P<line>\d+), in (?P<function>\S(?:.*\S)?)\s*$')
_ERROR = re.compile(r"^E(?: {3}|\s*$)")
_CHAIN = re.compile(r"^(The above exception was the direct cause|During handling of the above exception)")
_SECTION = re.compile(r"^-{3,} .+ -{3,}$")  # "----- Captured stdout call -----" and the like
_NOISE = re.compile(r"use '?-vv?'? to (get|show)|^\?( |$)", re.IGNORECASE)  # pytest hints, difflib's `?` guides
_TEST_DIRS = frozenset({"test", "tests"})

_OPENINGS = (
    "After a recent change, {count} of {package} {fail}.",
    "A recent change to {package} broke its test suite: {count} now {fail}.",
    "{Count} of {package} started failing after a recent change.",
    "Since a recent change, {count} in the {package} test suite {fail}.",
)
_CLOSINGS = (
    "Please fix {package} so that it behaves correctly again. Do not modify the tests: they are run, hidden, "
    "after you submit.",
    "Fix the bug in the package so the behaviour is correct again; leave the tests alone, the hidden test suite "
    "runs after you submit.",
    "Find and fix the cause in the {package} source so the behaviour is right again. Do not edit the tests; "
    "they run hidden after submission.",
    "Restore the correct behaviour by changing the package code, not the tests: the tests are hidden and run "
    "after you submit.",
)
# Detail levels tried in turn until the text fits: (failures detailed, characters of message, frames shown).
_LEVELS = ((2, 400, 4), (1, 400, 4), (1, 250, 3), (1, 150, 2), (1, 80, 1), (0, 0, 0))
_ELLIPSIS = "…"


@dataclass(frozen=True)
class Frame:
    """One traceback entry: `path:line: in function` and the source line shown under it ('' when none)."""

    path: str
    line: int
    function: str
    source: str = ""


def _is_caret(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and set(stripped) <= set("^~")


def _frame_at(lines: list[str], index: int) -> Frame | None:
    match = _FRAME.match(lines[index]) or _NATIVE_FRAME.match(lines[index])
    if match is None:
        return None
    following = lines[index + 1] if index + 1 < len(lines) else ""
    source = following.strip() if following[:1].isspace() and not _is_caret(following) else ""
    if source and (_FRAME.match(following) or _NATIVE_FRAME.match(following)):
        source = ""
    return Frame(match["path"], int(match["line"]), match["function"], source)


def frames(longrepr: str) -> list[Frame]:
    """The traceback entries of a --tb=short failure text (native `File "...", line N` entries too), in order."""
    lines = longrepr.splitlines()
    return [frame for index in range(len(lines)) if (frame := _frame_at(lines, index)) is not None]


def error_lines(longrepr: str) -> list[str]:
    """The `E   ` lines of a failure text without that prefix (right-stripped), in order."""
    return [line[4:].rstrip() for line in longrepr.splitlines() if _ERROR.match(line)]


def _last_exception(longrepr: str) -> str:
    """The last exception of a chain, without captured-output sections: the one the test saw."""
    kept: list[str] = []
    for line in longrepr.splitlines():
        if _SECTION.match(line):
            break
        if _CHAIN.match(line):
            kept = []
        else:
            kept.append(line)
    return "\n".join(kept)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + _ELLIPSIS


def _fallback_message(text: str) -> list[str]:
    """Unindented lines that are not traceback entries (source lines are indented): a crash note, a header."""
    lines = text.splitlines()
    return [
        line.strip()
        for i, line in enumerate(lines)
        if line.strip()
        and not line[:1].isspace()
        and _frame_at(lines, i) is None
        and not line.startswith("Traceback (most recent call last)")
    ]


def _message(longrepr: str, limit: int) -> str:
    text = _last_exception(longrepr)
    raw = error_lines(text) or _fallback_message(text)
    kept = [line.strip() for line in raw if line.strip() and not _NOISE.search(line.strip())]
    return _cap("\n".join(kept), limit) if kept else "(no error message was recorded)"


def _in_source(path: str, source_dir: str) -> bool:
    root = source_dir.replace("\\", "/").strip("/").removeprefix("./")
    return root in {"", "."} or f"/{root}/" in "/" + path.replace("\\", "/").strip("/") + "/"


def _is_test_frame(path: str, test_file: str, source_dir: str) -> bool:
    """Whether a frame is test code; inside `source_dir` only test modules count, not helpers of a tests folder."""
    pure = PurePosixPath(path.replace("\\", "/"))
    test_module = (
        path == test_file
        or path.endswith("/" + test_file)
        or pure.name.startswith("test_")
        or pure.name.endswith("_test.py")
        or pure.name == "conftest.py"
    )
    if _in_source(path, source_dir):
        return test_module
    return test_module or pure.name == "tests.py" or bool(_TEST_DIRS & set(pure.parts[:-1]))


def _shown_frames(found: list[Frame], count: int, test_file: str, source_dir: str) -> list[Frame | None]:
    """The innermost `count` frames, keeping the last test frame (it reproduces the call); None marks a gap."""
    if count <= 0 or not found:
        return []
    tests = [i for i, frame in enumerate(found) if _is_test_frame(frame.path, test_file, source_dir)]
    start = tests[-1] if tests else max(len(found) - count, 0)
    inner = found[start + 1 :][-(count - 1) :] if count > 1 else []
    skipped = len(found) - start - 1 - len(inner)
    return [found[start], *([None] if skipped > 0 else []), *inner]


def _location(frame: Frame | None, test_file: str, source_dir: str) -> str:
    """`path:line in function`, with the source line only for test files: package lines would hint at the fix."""
    if frame is None:
        return "    ..."
    where = f"    {frame.path}:{frame.line} in {frame.function}"
    if frame.source and _is_test_frame(frame.path, test_file, source_dir):
        return f"{where}\n        {frame.source}"
    return where


def _detail(nodeid: str, longrepr: str, source_dir: str, message_chars: int, frame_count: int) -> str:
    test_file = nodeid.split("::", 1)[0]
    message = "\n".join("    " + line for line in _message(longrepr, message_chars).splitlines())
    block = f"`{nodeid}` fails with:\n\n{message}"
    shown = _shown_frames(frames(_last_exception(longrepr)), frame_count, test_file, source_dir)
    if shown:
        where = "\n".join(_location(frame, test_file, source_dir) for frame in shown)
        block += f"\n\nIt fails here (innermost last):\n\n{where}"
    return block


def _count(n: int) -> str:
    return "some tests" if n == 0 else f"{n} test" if n == 1 else f"{n} tests"


def _opening(package: str, n: int, rng: random.Random) -> str:
    count = _count(n)
    template = _OPENINGS[rng.randrange(len(_OPENINGS))]
    return template.format(
        package=package, count=count, Count=count[:1].upper() + count[1:], fail="fails" if n == 1 else "fail"
    )


def _test_list(names: list[str], shown: int) -> str:
    lines = [f"- {name}" for name in names[:shown]]
    if len(names) > shown:
        lines.append(f"- and {len(names) - shown} more")
    return "Failing tests:\n" + "\n".join(lines)


def _fit(head: list[str], details: list[str], closing: str, max_chars: int) -> str | None:
    text = "\n\n".join([*head, *details, closing])
    return text if len(text) <= max_chars else None


def problem_statement(
    package: str,
    failures: dict[str, str],
    *,
    source_dir: str,
    seed: int = 0,
    max_tests: int = 5,
    max_chars: int = 2500,
) -> str:
    """A terse bug report of `failures` (node id -> str(report.longrepr)): which tests fail, with what, and where.

    Package frames (under `source_dir`, outside test files) show only their location, never their source line.
    """
    rng = random.Random(seed)
    opening = _opening(package, len(failures), rng)
    closing = _CLOSINGS[rng.randrange(len(_CLOSINGS))].format(package=package)
    names = sorted(failures)
    listed = min(max(max_tests, 0), len(names))
    head = [opening, _test_list(names, listed)] if names else [opening]
    for count, message_chars, frame_count in _LEVELS:
        details = [_detail(n, str(failures[n] or ""), source_dir, message_chars, frame_count) for n in names[:count]]
        if (text := _fit(head, details, closing, max_chars)) is not None:
            return text
    for shown in range(listed - 1, -1, -1):
        if (text := _fit([opening, _test_list(names, shown)], [], closing, max_chars)) is not None:
            return text
    return _cap("\n\n".join([*head, closing]), max(max_chars, 0)) if max_chars > 0 else ""

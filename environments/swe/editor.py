"""The file tools' work inside the container: view with line numbers, create, replace a unique string.

The environment sends this file's text to the container's Python (`python3 -c`) with the request as base64 JSON
in argv, so it runs as the agent's user, under the agent's permissions. Standard library only.
"""

import base64
import json
import os
import sys

ROOT = os.environ.get("GYMBOX_ROOT", "/repo")
MAX_VIEW_CHARS = 20_000
MAX_FILE_BYTES = 1_000_000
SNIPPET_LINES = 4


class ToolError(Exception):
    """What the agent did wrong, in words that say what to do instead."""


def resolve(path: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise ToolError(f"'path' must be a file path, relative to {ROOT} or absolute")
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(ROOT, path))


def numbered(lines: list[str], first: int) -> str:
    return "\n".join(f"{number:6}\t{line}" for number, line in enumerate(lines, first))


def read_text(path: str) -> str:
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise ToolError(f"{path} is larger than {MAX_FILE_BYTES} bytes; look at parts of it with bash (sed -n)")
    with open(path, "rb") as handle:
        data = handle.read()
    if b"\0" in data[:8192]:
        raise ToolError(f"{path} is a binary file")
    return data.decode("utf-8", errors="replace")


def view(path: str, view_range: object = None) -> str:
    if os.path.isdir(path):
        entries = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            depth = folder[len(path):].count(os.sep)
            if depth >= 2:
                dirs[:] = []
            entries += [os.path.join(folder, name) for name in sorted(files) if not name.startswith(".")]
        return f"Files in {path} (two levels, hidden ones left out):\n" + "\n".join(entries)
    if not os.path.isfile(path):
        raise ToolError(f"{path} does not exist; list a folder with view on it, or create the file with create")
    lines = read_text(path).split("\n")
    first, last = 1, len(lines)
    if view_range is not None:
        if (not isinstance(view_range, list) or len(view_range) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)):
            raise ToolError("'view_range' must be two line numbers [first, last]; last may be -1 for the end")
        first, last = view_range[0], (len(lines) if view_range[1] == -1 else view_range[1])
        if not 1 <= first <= len(lines) or last < first:
            raise ToolError(f"'view_range' {view_range} is outside the file's {len(lines)} lines")
        last = min(last, len(lines))
    text = numbered(lines[first - 1:last], first)
    if len(text) > MAX_VIEW_CHARS:
        cut = text[:MAX_VIEW_CHARS].rsplit("\n", 1)[0]
        shown = cut.count("\n") + first
        return (f"{cut}\n[... the view stops at line {shown} of {len(lines)}: pass view_range "
                f"[{shown + 1}, {min(shown + 400, len(lines))}] to see more]")
    return text


def create(path: str, file_text: object) -> str:
    if not isinstance(file_text, str):
        raise ToolError("'file_text' must be the new file's whole text, as a string")
    if os.path.exists(path):
        raise ToolError(f"{path} already exists; change it with str_replace (create only makes new files)")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ToolError(f"the folder {folder} does not exist; make it first (bash: mkdir -p {folder})")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(file_text)
    return f"Created {path} ({file_text.count(chr(10)) + 1} lines)."


def str_replace(path: str, old_str: object, new_str: object) -> str:
    if not isinstance(old_str, str) or not old_str:
        raise ToolError("'old_str' must be the exact, non-empty text to replace (whitespace included)")
    if new_str is None:
        new_str = ""
    if not isinstance(new_str, str):
        raise ToolError("'new_str' must be a string (empty to delete old_str)")
    if not os.path.isfile(path):
        raise ToolError(f"{path} does not exist or is not a file")
    text = read_text(path)
    count = text.count(old_str)
    if count == 0:
        raise ToolError(f"'old_str' does not occur in {path} (it must match exactly, whitespace included); "
                        "view the file to copy the text")
    if count > 1:
        lines = [text[:i].count("\n") + 1 for i in _positions(text, old_str)]
        raise ToolError(f"'old_str' occurs {count} times in {path} (lines {', '.join(map(str, lines[:10]))}); "
                        "include more surrounding lines so that it is unique")
    start = text.index(old_str)
    updated = text[:start] + new_str + text[start + len(old_str):]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(updated)
    line = text[:start].count("\n") + 1
    lines = updated.split("\n")
    first = max(1, line - SNIPPET_LINES)
    last = min(len(lines), line + new_str.count("\n") + SNIPPET_LINES)
    return f"Edited {path}. Lines {first}-{last} now read:\n{numbered(lines[first - 1:last], first)}"


def _positions(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def main(argv: list[str]) -> int:
    request = json.loads(base64.b64decode(argv[1]))
    command, args = request["command"], request["args"]
    try:
        path = resolve(args.get("path"))
        if command == "view":
            out = view(path, args.get("view_range"))
        elif command == "create":
            out = create(path, args.get("file_text"))
        else:
            out = str_replace(path, args.get("old_str"), args.get("new_str"))
    except ToolError as err:
        print(f"Error: {err}")
        return 1
    except OSError as err:
        print(f"Error: {err.strerror or err} ({getattr(err, 'filename', '') or path})")
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

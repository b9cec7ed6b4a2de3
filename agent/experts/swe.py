"""The swe expert: the task's gold patch applied through the editing tools, one hunk a turn, then submit.

Each hunk becomes a `str_replace` of its old lines (context and removed) by its new lines (context and added). A
patch that adds or deletes files, or an edit the tool refuses (its old text is not unique), is applied instead with
one `git apply` of the whole patch on a clean checkout.
"""

from __future__ import annotations

import re
import shlex

from gymbox.agent.experts.base import NoDemonstration, call, last_answer, turn_index
from gymbox.environments.api.models import Action, Message
from gymbox.tasks.spec import TaskSpec

_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
Edit = tuple[str, str, str]  # (path, old text, new text)


def hunks(patch: str) -> list[Edit] | None:
    """The patch's hunks as replacements; None when it is not only changes inside existing text files."""
    edits: list[Edit] = []
    path: str | None = None
    old: list[str] | None = None
    new: list[str] = []

    def close() -> None:
        if old is not None and path is not None:
            edits.append((path, "\n".join(old), "\n".join(new)))

    for line in patch.splitlines():
        if match := _FILE.match(line):
            close()
            old, path = None, match.group(1)
            if match.group(1) != match.group(2):
                return None
        elif line.startswith(("new file", "deleted file", "rename ", "Binary files", "old mode", "new mode")):
            return None
        elif line.startswith(("---", "+++", "index ")) and old is None:
            continue
        elif _HUNK.match(line):
            close()
            old, new = [], []
        elif old is not None and line.startswith("\\"):
            continue  # "\ No newline at end of file"
        elif old is not None and line[:1] in (" ", "-", "+", ""):
            text = line[1:]
            if line[:1] in (" ", "", "-"):
                old.append(text)
            if line[:1] in (" ", "", "+"):
                new.append(text)
    close()
    return edits or None


def apply_command(patch: str) -> str:
    """A bash command that puts the checkout back to the task's commit and applies `patch` to it."""
    return f"git checkout -q -- . && printf %s {shlex.quote(patch)} | git apply --whitespace=nowarn -"


def swe(task: TaskSpec, messages: list[Message]) -> Action:
    patch = task.payload.get("gold_patch")
    if not isinstance(patch, str) or not patch.strip():
        raise NoDemonstration(f"swe task {task.id!r} has no gold patch (payload.gold_patch)")
    edits = hunks(patch)
    turn = turn_index(messages)
    if edits is None:
        return call("bash", {"command": apply_command(patch)}) if turn == 0 else call("submit")
    fell_back = any(m.role == "assistant" and m.tool_calls and m.tool_calls[0].function.name == "bash"
                    for m in messages)
    if fell_back:
        return call("submit")
    if turn > 0 and last_answer(messages).lstrip().startswith("Error"):
        return call("bash", {"command": apply_command(patch)})  # the editor refused a hunk: apply the patch whole
    if turn < len(edits):
        path, old, new = edits[turn]
        return call("str_replace", {"path": path, "old_str": old, "new_str": new})
    return call("submit")

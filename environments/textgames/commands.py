"""Reading one game command from an agent's action: the `command` tool or plain text, with bad input explained."""

from __future__ import annotations

import re
import unicodedata

from gymbox.environments.api import ToolCall, ToolSpec
from gymbox.environments.api.errors import InvalidAction

MAX_COMMAND = 200
COMMAND_TOOL = ToolSpec.make(
    "command", "Type one command into the game, for example 'look', 'inventory', 'go north' or 'take key from box'.",
    {"command": {"type": "string", "description": "the command, in English, one per call"}}, required=["command"])
_PROMPT = re.compile(r"^\s*>\s*")  # agents often copy the game's prompt in front of their command
_QUOTES = "\"'`"


class BadCommand(ValueError):
    """A command the game cannot be given; the message says what was wrong and what to send instead."""


def _to_ascii(text: str) -> str:
    """Accented Latin letters lose their accents; anything still outside ASCII is refused."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    foreign = sorted({c for c in plain if ord(c) > 126 or (ord(c) < 32 and c not in "\t")})
    if foreign:
        shown = "".join(foreign[:8])
        raise BadCommand(f"the game reads English commands in plain letters only, and this one has characters it "
                         f"cannot read ({shown!r}). Send the command in English, such as 'open the door'.")
    return plain


def clean_command(raw: str) -> str:
    """One command, trimmed and on one line; `BadCommand` says why it cannot be sent to the game."""
    text = unicodedata.normalize("NFKC", raw).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise BadCommand(f"the reply has {len(lines)} lines, but the game takes one command per turn. Send just the "
                         "command, such as 'go north'.")
    text = _PROMPT.sub("", text).strip().strip(_QUOTES).strip()
    if not text:
        raise BadCommand("the command is empty. Type one, such as 'look', 'inventory' or 'go north'.")
    if len(text) > MAX_COMMAND:
        raise BadCommand(f"the command is {len(text):,} characters long; game commands are short (at most "
                         f"{MAX_COMMAND}), such as 'take the key from the box'.")
    return " ".join(_to_ascii(text).split())


def command_argument(call: ToolCall) -> str:
    """The `command` argument of a `command` tool call."""
    if call.function.name != "command":
        raise BadCommand(f"there is no tool named {call.function.name!r}; call 'command' with the command to type.")
    try:
        value = call.args().get("command")
    except InvalidAction as exc:
        raise BadCommand(exc.message) from exc
    if not isinstance(value, str):
        raise BadCommand("'command' needs a string argument 'command', such as {\"command\": \"look\"}.")
    return value

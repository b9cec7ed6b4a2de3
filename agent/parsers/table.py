"""The table of tool-call formats, by name (built here explicitly, never by importing a module)."""

from __future__ import annotations

from gymbox.agent.parsers.base import Parser
from gymbox.agent.parsers.hermes import HermesParser
from gymbox.agent.parsers.json_calls import JsonParser
from gymbox.agent.parsers.react import ReactParser
from gymbox.agent.parsers.toolrl import ToolRLParser

PARSERS: dict[str, type[Parser]] = {cls.name: cls for cls in (HermesParser, JsonParser, ToolRLParser, ReactParser)}


def get_parser(name: str) -> type[Parser]:
    """The parser class for a format name; build it with `get_parser(name)(tools=tools)`."""
    try:
        return PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown tool-call format {name!r}; known formats: {', '.join(sorted(PARSERS))}") from None

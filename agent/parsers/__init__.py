"""Tool-call parsers: generated text to an `Action` and back, one module per format, chosen from `PARSERS`."""

from gymbox.agent.parsers.base import ParseLimits, Parser, ParseResult, format_reminder
from gymbox.agent.parsers.hermes import HermesParser
from gymbox.agent.parsers.json_calls import JsonParser
from gymbox.agent.parsers.react import ReactParser
from gymbox.agent.parsers.table import PARSERS, get_parser
from gymbox.agent.parsers.toolrl import Shape, ToolRLParser, ToolRLResult

__all__ = [
    "PARSERS", "HermesParser", "JsonParser", "ParseLimits", "ParseResult", "Parser", "ReactParser", "Shape",
    "ToolRLParser", "ToolRLResult", "format_reminder", "get_parser",
]

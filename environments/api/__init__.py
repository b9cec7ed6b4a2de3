"""The step API: wire models, typed errors, the `Environment` base class, server, client and registry."""

from gymbox.environments.api.env import Environment, no_tool_call, tool_message, unknown_tool, unknown_tool_text
from gymbox.environments.api.errors import EnvError
from gymbox.environments.api.models import (
    Action,
    EnvSpec,
    FunctionCall,
    Message,
    Observation,
    StepResult,
    TaskSpec,
    ToolCall,
    ToolSpec,
)
from gymbox.environments.api.tools import ToolEnv, ToolResult, tool

__all__ = [
    "Action", "EnvError", "EnvSpec", "Environment", "FunctionCall", "Message", "Observation", "StepResult",
    "TaskSpec", "ToolCall", "ToolEnv", "ToolResult", "ToolSpec", "no_tool_call", "tool", "tool_message",
    "unknown_tool", "unknown_tool_text",
]

"""`gymbox play`: a person plays one episode through the step API in the terminal."""

from __future__ import annotations

import json
import re

from rich.console import Console
from rich.panel import Panel

from gymbox.environments.api.errors import EnvError
from gymbox.environments.api.models import Action, Observation, StepResult, ToolCall
from gymbox.environments.api.sync_client import SyncEnvClient
from gymbox.tasks.spec import TaskSpec

HELP = ("Type a tool call as  name {\"arg\": value}  or  name(arg=value, ...), or plain text. "
        ":tools lists the tools, :state shows the server's view, :quit ends.")
_CALL = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(\{.*|\(.*\))?\s*$", re.S)


def parse_input(line: str, tool_names: set[str]) -> Action:
    """A tool call when the line starts with a known tool name, else plain text."""
    match = _CALL.match(line)
    if not match or match.group(1) not in tool_names:
        return Action(text=line)
    name, args = match.group(1), (match.group(2) or "").strip()
    if args.startswith("("):
        inner = args[1:-1].strip()
        pairs = [p.split("=", 1) for p in re.split(r",\s*(?=\w+\s*=)", inner) if p.strip()] if inner else []
        values = {}
        for key, value in ((k.strip(), v.strip()) for k, v in (p if len(p) == 2 else (p[0], "") for p in pairs)):
            try:
                values[key] = json.loads(value)
            except json.JSONDecodeError:
                values[key] = value.strip("'\"")
        return Action(text=line, tool_calls=[ToolCall.make(name, values)])
    # JSON arguments go to the environment as typed, even when malformed: it explains what is wrong.
    return Action(text=line, tool_calls=[ToolCall.model_validate(
        {"id": "call_0", "function": {"name": name, "arguments": args or "{}"}})])


def show_observation(console: Console, observation: Observation) -> None:
    for message in observation.messages:
        title = message.role if not message.name else f"{message.role}: {message.name}"
        console.print(Panel(message.content or "", title=title, title_align="left", expand=False))


def show_result(console: Console, result: StepResult) -> None:
    show_observation(console, result.observation)
    signals = ", ".join(f"{k}={v:g}" for k, v in sorted(result.signals.items()))
    console.print(f"[dim]reward={result.reward} terminated={result.terminated} truncated={result.truncated} "
                  f"signals: {signals}[/dim]")


def play_in_terminal(client: SyncEnvClient, task: TaskSpec, seed: int | None,
                     console: Console | None = None) -> StepResult | None:
    """Run the interactive loop; returns the last step result."""
    console = console or Console()
    observation = client.reset(task, seed)
    tools = observation.tools or []
    names = {t.function.name for t in tools}
    console.print(f"[bold]{task.id}[/bold] (seed {client.client.seed}). {HELP}")
    console.print("tools: " + ", ".join(sorted(names)))
    show_observation(console, observation)
    result = None
    while True:
        try:
            line = console.input("[bold green]> [/bold green]")
        except EOFError:
            break
        if line.strip() == ":quit":
            break
        if line.strip() == ":tools":
            for tool in tools:
                console.print_json(tool.function.model_dump_json())
            continue
        if line.strip() == ":state":
            console.print_json(client.state().model_dump_json())
            continue
        try:
            result = client.step(parse_input(line, names))
        except EnvError as err:
            console.print(f"[red]{type(err).__name__}[/red]: {err.message}")
            if err.infra:
                break
            continue
        show_result(console, result)
        if result.done:
            console.print("[bold]Episode over.[/bold]")
            break
    return result

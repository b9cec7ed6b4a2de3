"""`gymbox demo`: scripted episodes through a real server process, to see the step API work end to end."""

from __future__ import annotations

import asyncio
import json
import re
import time

from rich.console import Console
from rich.table import Table

from gymbox.environments.api.models import Action, Message, Observation, StepResult, ToolCall
from gymbox.environments.runtime import make_runtime
from gymbox.tasks.suites import load_suite


def echo_policy(task_word: str, times: int, turn: int) -> Action:
    """A scripted agent for `echo`: it fumbles once (a call to a tool that does not exist), then does the job."""
    if turn == 0:
        return Action(text="let me try", tool_calls=[ToolCall.make("shout", {"word": task_word})])
    if turn <= times:
        return Action(tool_calls=[ToolCall.make("echo", {"word": task_word}, id=f"call_{turn}")])
    return Action(tool_calls=[ToolCall.make("submit")])


def echo_script(messages: list[Message], turn: int) -> str:
    """The same scripted agent as text in the hermes format, for `--policy scripted:gymbox.harness.demo:echo_script`.

    It reads the word from the task's instruction ("Say the word 'WORD' ..."), as a model would.
    """
    instruction = next((m.content or "" for m in messages if m.role == "user"), "")
    match = re.search(r"'([^']+)'", instruction)
    times = int(m.group(1)) if (m := re.search(r"(\d+) times", instruction)) else 1
    if match is None:
        return "I cannot find the word to say."
    if turn < times:
        call = {"name": "echo", "arguments": {"word": match.group(1)}}
    else:
        call = {"name": "submit", "arguments": {}}
    return f"<tool_call>{json.dumps(call)}</tool_call>"


async def run_demo(suite: str = "echo-demo:test", runtime: str = "process", console: Console | None = None) -> int:
    """Play every task of an `echo` suite with the scripted agent; prints each episode and a summary table."""
    console = console or Console()
    tasks = load_suite(suite).tasks
    table = Table(title=f"{suite}: scripted episodes through the {runtime} runtime")
    for column in ("task", "turns", "success", "valid actions", "seconds"):
        table.add_column(column, justify="right" if column != "task" else "left")
    successes = 0
    async with make_runtime(runtime, "echo") as rt:
        for index, task in enumerate(tasks):
            started = time.perf_counter()
            async with await rt.client() as client:
                observation = await client.reset(task)
                if index == 0:
                    _show(console, "reset", observation)
                result: StepResult | None = None
                valid, turn = [], 0
                while result is None or not result.done:
                    action = echo_policy(task.payload["word"], task.payload.get("times", 1), turn)
                    result = await client.step(action)
                    valid.append(result.signals.get("valid_action", 1.0))
                    if index == 0:
                        _show(console, f"step {turn}", result.observation)
                    turn += 1
            success = result.signals.get("success", 0.0)
            successes += success == 1.0
            table.add_row(task.id, str(turn), f"{success:g}", f"{sum(valid):g}/{len(valid)}",
                          f"{time.perf_counter() - started:.3f}")
    console.print(table)
    console.print(f"{successes}/{len(tasks)} episodes succeeded")
    return 0 if successes == len(tasks) else 1


def _show(console: Console, label: str, observation: Observation) -> None:
    for message in observation.messages:
        console.print(f"[dim]{label}[/dim] [bold]{message.role}[/bold]: {message.content}")


def main(suite: str, runtime: str) -> int:
    return asyncio.run(run_demo(suite, runtime))

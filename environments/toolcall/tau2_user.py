"""The simulated user of a τ²-bench episode: a policy behind an OpenAI-compatible endpoint, or a scripted user.

The user is chosen per task by `payload.user` (the harness's `--user-policy` writes it; else the environment
variable `GYMBOX_TAU2_USER`), in one of these forms:

- `openai:URL` or `openai:URL#MODEL`: any OpenAI-compatible chat endpoint (a vLLM server, the harness's own engine
  served over HTTP); the environment server loads no model of its own;
- `gold`: a scripted user that performs the task's reference user actions (telecom's phone) block by block and
  stops when nothing is left: with the gold-actions expert it replays a task exactly (tests, smoke runs);
- `{"kind": "replies", "replies": [...]}`: fixed replies in order, the last one repeating (tests).

The user model sees the conversation with the roles flipped (the agent's messages as `user`, its own as
`assistant`), a system prompt of the package's simulation guidelines and the task's user scenario, and (telecom)
its phone's tools.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from gymbox.environments.api.errors import InvalidTask, UserPolicyError

STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
ENV_VARIABLE = "GYMBOX_TAU2_USER"
TRIES, TIMEOUT = 3, 120.0  # a user endpoint that fails this many times (or hangs this long) is an infrastructure error
DONE = "Done. What now?"
MAX_TOKENS = 512  # a customer's message is a few sentences; a small user model can otherwise run to its context


@dataclass
class UserTurn:
    """What the user did: a message, or calls of its own tools (name, arguments)."""

    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def stops(self) -> bool:
        return not self.calls and any(token in self.text for token in STOP_TOKENS)


class UserPolicy(Protocol):
    def reply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> UserTurn:
        """The user's next turn given its view of the conversation (OpenAI messages, roles flipped)."""
        ...


def system_prompt(guidelines: str, scenario: str) -> str:
    """The user's system prompt, laid out as τ²-bench's user simulator lays it out."""
    return f"{guidelines}\n\n<scenario>\n{scenario}\n</scenario>"


class EndpointUser:
    """A user played by a model behind an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(self, url: str, model: str | None) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model or "default"

    def reply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> UserTurn:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.0,
                                "max_tokens": MAX_TOKENS}
        if tools:
            body["tools"] = tools
        problem = ""
        for attempt in range(TRIES):
            try:
                response = httpx.post(self.url, json=body, timeout=TIMEOUT)
                response.raise_for_status()
                return _parse_reply(response.json())
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if attempt + 1 < TRIES:
                    time.sleep(0.5 * 2**attempt)
        raise UserPolicyError(f"the simulated user's endpoint {self.url} failed {TRIES} times ({problem}); check "
                              "the server given to --user-policy")


def _parse_reply(data: dict[str, Any]) -> UserTurn:
    message = data["choices"][0]["message"]
    calls = []
    for call in message.get("tool_calls") or []:
        arguments = json.loads(call["function"].get("arguments") or "{}")
        if not isinstance(arguments, dict):
            raise ValueError(f"the user's call of {call['function']['name']} has arguments that are not an object")
        calls.append((call["function"]["name"], arguments))
    text = message.get("content") or ""
    if not calls and not text.strip():
        raise ValueError("the user's reply is empty")
    return UserTurn(text=text, calls=calls)


class GoldUser:
    """Opens with the reason for the call, performs the next block of the task's reference user actions whenever the
    agent writes to it (answering 'Done' after its calls), and stops when no block is left."""

    def __init__(self, opening: str, blocks: list[list[tuple[str, dict[str, Any]]]]) -> None:
        self.opening = opening
        self.blocks = list(blocks)
        self.started = False

    def reply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> UserTurn:
        if not self.started:
            self.started = True
            return UserTurn(text=self.opening)
        if messages and messages[-1]["role"] == "tool":
            return UserTurn(text=DONE)
        if self.blocks:
            return UserTurn(calls=self.blocks.pop(0))
        return UserTurn(text="Thank you, that is all. ###STOP###")


class RepliesUser:
    """Fixed replies in order; the last one repeats."""

    def __init__(self, replies: list[str]) -> None:
        if not replies or not all(isinstance(r, str) for r in replies):
            raise InvalidTask("a replies user needs a non-empty list of strings")
        self.replies = replies
        self.turn = 0

    def reply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> UserTurn:
        text = self.replies[min(self.turn, len(self.replies) - 1)]
        self.turn += 1
        return UserTurn(text=text)


def gold_blocks(actions: list[Any]) -> list[list[tuple[str, dict[str, Any]]]]:
    """The reference user actions, grouped into runs that no agent action separates."""
    blocks: list[list[tuple[str, dict[str, Any]]]] = []
    previous = "assistant"
    for action in actions:
        if action.requestor == "user":
            if previous != "user":
                blocks.append([])
            blocks[-1].append((action.name, dict(action.arguments)))
        previous = action.requestor
    return blocks


def make_user(spec: Any, task: Any) -> UserPolicy:
    """The user policy a task's `payload.user` (or `GYMBOX_TAU2_USER`) names; `InvalidTask` when none or unknown."""
    spec = spec if spec is not None else os.environ.get(ENV_VARIABLE) or None
    if spec is None:
        raise InvalidTask("a τ²-bench task needs a simulated user: pass --user-policy openai:URL#MODEL (an "
                          "OpenAI-compatible endpoint) or gold (the scripted reference user), or set "
                          f"{ENV_VARIABLE}")
    if isinstance(spec, dict) and spec.get("kind") == "replies":
        return RepliesUser(spec.get("replies") or [])
    if spec == "gold":
        reason = task.user_scenario.instructions
        opening = getattr(reason, "reason_for_call", None) or str(reason)
        return GoldUser(opening.strip(), gold_blocks(task.evaluation_criteria.actions or []))
    if isinstance(spec, str) and spec.startswith("openai:"):
        url, _, model = spec.removeprefix("openai:").partition("#")
        if url:
            return EndpointUser(url, model or None)
    raise InvalidTask(f"unknown τ² user policy {spec!r}: use openai:URL#MODEL, gold, or "
                      "{'kind': 'replies', 'replies': [...]}")

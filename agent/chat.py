"""Token-accurate multi-turn chat formatting: token ids carried across turns, never re-tokenized.

A conversation's token sequence is built by appending: the prompt (the chat template with a generation prompt),
then for each turn the tokens the policy generated, exactly as generated, then the environment's answer, whose
tokens are the template's rendering of the whole conversation minus the text already in the sequence. That
subtraction is only sound when the template renders a conversation as an extension of its rendering of any
prefix (the prefix property); `ChatFormatter` checks it on every turn and raises `TemplateNotIncremental`
instead of silently re-tokenizing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from gymbox.environments.api.models import Message, ToolSpec
from gymbox.environments.records import TurnTokens, join_tokens


class TemplateNotIncremental(ValueError):
    """The chat template renders earlier turns differently once later ones are added."""


def message_dict(message: Message | dict[str, Any]) -> dict[str, Any]:
    """A message as chat templates expect it: OpenAI form, `content` always a string, call arguments decoded."""
    data = message.model_dump(exclude_none=True) if isinstance(message, Message) else dict(message)
    # Many templates concatenate `content` with strings; None (an assistant turn of only tool calls) breaks them.
    data["content"] = data.get("content") or ""
    for call in data.get("tool_calls") or []:
        arguments = call.get("function", {}).get("arguments")
        if isinstance(arguments, str):
            # Templates such as Qwen's iterate or `tojson` the arguments: give them the object when it decodes.
            with contextlib.suppress(ValueError):
                call["function"]["arguments"] = json.loads(arguments)
    return data


def tool_dicts(tools: Sequence[ToolSpec | dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Tools as the OpenAI tool schemas chat templates take (None when there are none)."""
    if not tools:
        return None
    return [t.model_dump() if isinstance(t, ToolSpec) else dict(t) for t in tools]


def _divergence(expected: str, rendered: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, rendered, strict=False)) if a != b),
              min(len(expected), len(rendered)))
    return f"at character {at}: the sequence has {expected[at:at + 60]!r}, the template now renders " \
           f"{rendered[at:at + 60]!r}"


class ChatFormatter:
    """One conversation, rendered by a tokenizer's chat template and extended turn by turn.

    `prompt` starts it; `generated` records the policy's tokens for an assistant turn; `observation` returns the
    tokens to append after them for the environment's messages, ending with the next generation prompt.
    """

    def __init__(self, tokenizer: Any, *, chat_template: str | None = None,
                 end_of_turn: Sequence[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template or tokenizer.chat_template
        if not self.chat_template:
            raise ValueError(f"tokenizer {self.template_name} has no chat template; pass chat_template=")
        # Text that ends an assistant turn when generated; it is kept in the tokens but not in the message content.
        self.end_of_turn = [t for t in (end_of_turn or [tokenizer.eos_token]) if t]
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] | None = None
        self.text = ""  # the text of every token in the sequence so far, as the template renders it

    @property
    def template_name(self) -> str:
        digest = hashlib.sha256((getattr(self, "chat_template", None) or "").encode()).hexdigest()[:12]
        return f"{getattr(self.tokenizer, 'name_or_path', '?') or '?'} (chat template sha256 {digest})"

    def render(self, messages: Sequence[Message | dict[str, Any]], *, add_generation_prompt: bool) -> str:
        """The template's text for `messages` with this conversation's tools."""
        return self.tokenizer.apply_chat_template(
            [message_dict(m) for m in messages], tools=self.tools, chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt, tokenize=False)

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text; the template writes any special tokens itself."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, messages: Sequence[Message | dict[str, Any]],
               tools: Sequence[ToolSpec | dict[str, Any]] | None = None) -> list[int]:
        """Start the conversation: token ids of the initial messages followed by the generation prompt."""
        self.tools = tool_dicts(tools)
        self.messages = [message_dict(m) for m in messages]
        self.text = self.render(self.messages, add_generation_prompt=True)
        return self.encode(self.text)

    def generated(self, token_ids: Sequence[int]) -> str:
        """Record the policy's tokens for the next assistant turn; returns the assistant message's content."""
        text = self.tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        self.text += text
        content = text
        for end in self.end_of_turn:
            if content.endswith(end):
                content = content[: -len(end)]
                break
        # The raw text, tool-call markup included, is the message: a template re-rendering parsed tool calls
        # could word them differently from what the policy wrote.
        self.messages.append({"role": "assistant", "content": content})
        return content

    def observation(self, messages: Sequence[Message | dict[str, Any]]) -> list[int]:
        """Token ids to append after the generated turn for `messages`, ending with the next generation prompt.

        They include whatever the template puts after the generated text to close the assistant turn (its
        end-of-turn token when generation stopped at a stop string, the newline after it).
        """
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise RuntimeError("observation() follows generated(): record the policy's tokens first")
        conversation = self.messages + [message_dict(m) for m in messages]
        rendered = self.render(conversation, add_generation_prompt=True)
        if not rendered.startswith(self.text):
            raise TemplateNotIncremental(
                f"the chat template of {self.template_name} does not render the conversation as an extension of "
                f"its earlier turns ({_divergence(self.text, rendered)}); appending tokens would not match what "
                "the template produces, so this template cannot be used for token-accurate multi-turn rollouts")
        suffix = rendered[len(self.text):]
        self.messages, self.text = conversation, rendered
        return self.encode(suffix)

    def close(self) -> list[int]:
        """Token ids that end the last assistant turn when generation stopped before its end-of-turn token.

        Empty when the policy generated the end-of-turn token itself; for a final turn, with no observation.
        """
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise RuntimeError("close() follows generated()")
        if any(self.text.endswith(end) for end in self.end_of_turn):
            return []
        rendered = self.render(self.messages, add_generation_prompt=False)
        if not rendered.startswith(self.text):
            raise TemplateNotIncremental(f"the chat template of {self.template_name} re-renders the conversation "
                                         f"({_divergence(self.text, rendered)})")
        # Only the end-of-turn marker: what follows it belongs to the next turn, which does not come.
        rest = rendered[len(self.text):]
        ends = [rest.find(end) + len(end) for end in self.end_of_turn if end in rest]
        suffix = rest[: min(ends)] if ends else rest
        self.text += suffix
        return self.encode(suffix)


class ChatSequence:
    """Builds a trajectory's tokens: `prompt_ids`, then one `TurnTokens` per assistant turn and its answer."""

    def __init__(self, formatter: ChatFormatter) -> None:
        self.formatter = formatter
        self.prompt_ids: list[int] = []
        self.turns: list[TurnTokens] = []

    def start(self, messages: Sequence[Message | dict[str, Any]],
              tools: Sequence[ToolSpec | dict[str, Any]] | None = None) -> list[int]:
        """The prompt's token ids (loss mask 0), to generate the first assistant turn from."""
        self.prompt_ids = self.formatter.prompt(messages, tools)
        self.turns = []
        return list(self.prompt_ids)

    def add_generation(self, token_ids: Sequence[int], logprobs: Sequence[float] | None = None) -> str:
        """Append a generated assistant turn as the policy produced it; returns its text (for the parser)."""
        turn = TurnTokens()
        turn.add_generated(token_ids, logprobs)
        self.turns.append(turn)
        return self.formatter.generated(token_ids)

    def add_observation(self, messages: Sequence[Message | dict[str, Any]], *,
                        limit: int | None = None) -> list[int] | None:
        """Append the environment's messages and the next generation prompt (loss mask 0) to the last turn.

        With `limit`, a sequence that would grow past `limit` tokens is left as it was and None is returned.
        """
        if not self.turns:
            raise RuntimeError("add_observation() follows add_generation()")
        saved = list(self.formatter.messages), self.formatter.text
        ids = self.formatter.observation(messages)
        if limit is not None and len(self) + len(ids) > limit:
            self.formatter.messages, self.formatter.text = saved
            return None
        self.turns[-1].add_context(ids)
        return ids

    def finish(self) -> list[int]:
        """End the last turn without an observation: its end-of-turn tokens (mask 0) if it was cut at a stop."""
        if not self.turns:
            raise RuntimeError("finish() follows add_generation()")
        ids = self.formatter.close()
        self.turns[-1].add_context(ids)
        return ids

    def __len__(self) -> int:
        """Tokens in the sequence, counted without joining it."""
        return len(self.prompt_ids) + sum(len(t.token_ids) for t in self.turns)

    @property
    def token_ids(self) -> list[int]:
        """The whole sequence: what the policy sees before its next generation."""
        return join_tokens(self.prompt_ids, self.turns).token_ids

    @property
    def loss_mask(self) -> list[int]:
        return join_tokens(self.prompt_ids, self.turns).loss_mask

"""Token-accurate multi-turn chat formatting: token ids carried across turns, never re-tokenized.

A conversation's token sequence is built by appending: the prompt (the chat template with a generation prompt),
then for each turn the tokens the policy generated, exactly as generated, then the environment's answer. The
answer's tokens are the template's rendering of only the new messages, after a fixed prefix of probe messages
(rendered with and without them, the difference), preceded by what the template puts after an assistant turn's end.
Earlier turns are never rendered again, so templates that re-render them (Qwen3's drops the `<think>` blocks of
earlier assistant turns, Llama 3's trims whitespace from every message) keep the tokens the policy generated.
`ChatFormatter` checks a template once, when it is first used, and raises `TemplateNotIncremental`, naming the
construct, for one whose rendering of a prefix changes when messages are added after it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
           f"{rendered[at:at + 60]!r}; {_construct(expected, rendered)}"


_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


def _construct(expected: str, rendered: str) -> str:
    """The template construct that most likely re-rendered `expected` as `rendered`, in words."""
    without = _THINK.sub("", expected)
    if without != expected and rendered.startswith(without):
        return "the template drops the <think>...</think> blocks of earlier assistant turns (as Qwen3's does)"
    squeeze = "".join(expected.split()), "".join(rendered.split())
    if squeeze[1].startswith(squeeze[0]):
        return "the template trims or changes white space in message content (a `| trim` filter, as Llama 3's has)"
    return ("the template renders earlier messages differently once later ones follow (it counts the messages, or "
            "tests `loop.last` or the next message's role)")


# Probe conversations that new messages are rendered after, the first that works for a template: some templates
# refuse a system message, others require roles to alternate.
_PROBES: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "system", "content": "S"}, {"role": "user", "content": "U"}),
    ({"role": "user", "content": "U"},),
    ({"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}),
    ({"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}),
)
_NEW = ([{"role": "user", "content": "N"}], [{"role": "tool", "content": "T", "tool_call_id": "call_0"}],
        [{"role": "tool", "content": "T", "tool_call_id": "call_0"},
         {"role": "tool", "content": "R", "tool_call_id": "call_1"}])
_REPLY = "<gymbox:reply>"  # an assistant message's content, to find where the template closes an assistant turn


@dataclass(frozen=True)
class _Layout:
    """How a template is extended: the probe prefix new messages follow, and the text that closes an assistant
    turn (its end-of-turn marker, then the glue before the next message)."""

    probe: tuple[dict[str, str], ...]
    close: str
    glue: str


def _render(tokenizer: Any, template: str, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool,
            tools: list[dict[str, Any]] | None = None) -> str:
    return tokenizer.apply_chat_template(list(messages), tools=tools, chat_template=template,
                                         add_generation_prompt=add_generation_prompt, tokenize=False)


def _probe_layout(tokenizer: Any, template: str, end_of_turn: tuple[str, ...],
                  probe: tuple[dict[str, str], ...]) -> _Layout:
    base = _render(tokenizer, template, probe, add_generation_prompt=False)
    for new in _NEW:
        rendered = _render(tokenizer, template, [*probe, *new], add_generation_prompt=True)
        if not rendered.startswith(base):
            roles = " and ".join(m["role"] for m in new)
            raise TemplateNotIncremental(f"a {roles} message changes the rendering of the messages before it "
                                         f"({_divergence(base, rendered)})")
    closed = _render(tokenizer, template, [*probe, {"role": "assistant", "content": _REPLY}],
                     add_generation_prompt=False)
    if not closed.startswith(base) or _REPLY not in closed[len(base):]:
        raise TemplateNotIncremental("an assistant message changes the rendering of the messages before it, or "
                                     f"its content is not rendered as it is ({_divergence(base, closed)})")
    after = closed[len(base):].split(_REPLY, 1)[1]
    ends = sorted((after.find(end) + len(end), end) for end in end_of_turn if end in after)
    cut = ends[0][0] if ends else len(after)
    return _Layout(probe, close=after[:cut], glue=after[cut:])


@functools.lru_cache(maxsize=32)
def _layout(tokenizer: Any, template: str, end_of_turn: tuple[str, ...]) -> _Layout:
    """How `template` is extended, found once per tokenizer and template: the first probe prefix that works."""
    constructs: list[str] = []
    refusals: list[str] = []
    for probe in _PROBES:
        try:
            return _probe_layout(tokenizer, template, end_of_turn, probe)
        except TemplateNotIncremental as err:
            constructs.append(str(err))
        except Exception as err:  # the template refused the probe (raise_exception, a Jinja error)
            refusals.append(f"it refuses {', '.join(m['role'] for m in probe)} messages: {err}")
    # The template's own construct, on the first probe it took, says more than a refused probe.
    raise TemplateNotIncremental((constructs or refusals)[0])


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
        try:
            self.layout = _layout(tokenizer, self.chat_template, tuple(self.end_of_turn))
        except TemplateNotIncremental as err:
            raise TemplateNotIncremental(
                f"the chat template of {self.template_name} cannot be extended turn by turn: {err}; appended tokens "
                "would not match what the template produces, so it cannot be used for token-accurate multi-turn "
                "rollouts (pass chat_template= with a fixed template)") from None
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] | None = None
        self.text = ""  # the text of every token in the sequence so far
        self._probe_text = ""  # the layout's probe prefix as rendered with this conversation's tools

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
        self._probe_text = self.render(self.layout.probe, add_generation_prompt=False)
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

        They start with whatever the template puts after the generated text to close the assistant turn (its
        end-of-turn marker when generation stopped at a stop string, the glue after it); the messages themselves
        are rendered after the layout's probe prefix, never after the conversation, whose text is never rendered
        again.
        """
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise RuntimeError("observation() follows generated(): record the policy's tokens first")
        new = [message_dict(m) for m in messages]
        rendered = self.render([*self.layout.probe, *new], add_generation_prompt=True)
        if not rendered.startswith(self._probe_text):
            raise TemplateNotIncremental(
                f"the chat template of {self.template_name} renders earlier messages differently once these "
                f"{len(new)} follow ({_divergence(self._probe_text, rendered)})")
        suffix = ("" if self._turn_ended() else self.layout.close) + self.layout.glue + rendered[len(self._probe_text):]
        self.messages, self.text = self.messages + new, self.text + suffix
        return self.encode(suffix)

    def close(self) -> list[int]:
        """Token ids that end the last assistant turn when generation stopped before its end-of-turn marker.

        Empty when the policy generated the marker itself; for a final turn, with no observation. Only the marker:
        what follows it belongs to the next turn, which does not come.
        """
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise RuntimeError("close() follows generated()")
        if self._turn_ended():
            return []
        self.text += self.layout.close
        return self.encode(self.layout.close)

    def _turn_ended(self) -> bool:
        return any(self.text.endswith(end) for end in self.end_of_turn)


def check_template(tokenizer: Any) -> None:
    """Refuse, with `TemplateNotIncremental` naming the construct, a tokenizer whose chat template cannot be
    extended turn by turn: once, where a run starts, rather than in every episode."""
    ChatFormatter(tokenizer)


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

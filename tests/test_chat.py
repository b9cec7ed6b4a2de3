"""Token-accurate multi-turn formatting with the SmolLM2 tokenizer and its chat template."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent.chat import ChatFormatter, ChatSequence, TemplateNotIncremental
from gymbox.environments.api.models import Message, ToolCall, ToolSpec
from gymbox.environments.records import Turn

pytestmark = pytest.mark.slow

END = "<|im_end|>"
PROMPT = [Message(role="system", content="You are a weather bot."), Message(role="user", content="Weather in Oslo?")]
REPLIES = ['<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
           "It is 21 degrees. Anything else?", "Goodbye!"]
OBSERVATIONS = [[Message(role="tool", content='{"temp": 21}', tool_call_id="call_0")],
                [Message(role="user", content="No, thanks.")],
                [Message(role="user", content="Bye.")]]


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def build(tokenizer: Any, generations: list[list[int]]) -> tuple[ChatSequence, list[list[int]]]:
    """The conversation above, built turn by turn; also returns a copy of the sequence after each step."""
    seq = ChatSequence(ChatFormatter(tokenizer))
    snapshots = [seq.start(PROMPT)]
    for ids, observation in zip(generations, OBSERVATIONS, strict=True):
        seq.add_generation(ids, logprobs=[-0.5] * len(ids))
        snapshots.append(list(seq.token_ids))
        seq.add_observation(observation)
        snapshots.append(list(seq.token_ids))
    return seq, snapshots


def full_rendering(tokenizer: Any) -> list[int]:
    messages: list[dict[str, Any]] = [m.model_dump(exclude_none=True) for m in PROMPT]
    for reply, observation in zip(REPLIES, OBSERVATIONS, strict=True):
        messages.append({"role": "assistant", "content": reply})
        messages += [m.model_dump(exclude_none=True) for m in observation]
    return encode(tokenizer, tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def test_incremental_build_equals_the_full_rendering(tokenizer: Any) -> None:
    generations = [encode(tokenizer, reply + END) for reply in REPLIES]
    seq, _ = build(tokenizer, generations)
    assert seq.token_ids == full_rendering(tokenizer)
    assert len(seq.turns) == 3


def test_loss_mask_is_one_exactly_on_generated_tokens(tokenizer: Any) -> None:
    generations = [encode(tokenizer, reply + END) for reply in REPLIES]
    seq, _ = build(tokenizer, generations)
    masked = [t for t, m in zip(seq.token_ids, seq.loss_mask, strict=True) if m]
    assert masked == [t for ids in generations for t in ids]
    for turn, ids in zip(seq.turns, generations, strict=True):
        n = len(ids)
        assert turn.token_ids[:n] == ids and turn.loss_mask[:n] == [1] * n and turn.logprobs[:n] == [-0.5] * n
        assert set(turn.loss_mask[n:]) == {0} and set(turn.logprobs[n:]) == {None}
    records = [Turn(index=i, **turn.fields()) for i, turn in enumerate(seq.turns)]
    assert sum(len(r.token_ids) for r in records) + len(seq.prompt_ids) == len(seq.token_ids)


def test_tool_messages_are_rendered_as_the_template_does(tokenizer: Any) -> None:
    formatter = ChatFormatter(tokenizer)
    formatter.prompt(PROMPT)
    formatter.generated(encode(tokenizer, REPLIES[0] + END))
    ids = formatter.observation(OBSERVATIONS[0])
    assert tokenizer.decode(ids) == '\n<|im_start|>tool\n{"temp": 21}<|im_end|>\n<|im_start|>assistant\n'


def test_earlier_turns_are_never_retokenized(tokenizer: Any) -> None:
    # The policy may produce a split the tokenizer would never make ("Par" + "is" spelled letter by letter):
    # it must stay in the sequence exactly as generated.
    odd = [tokenizer.convert_tokens_to_ids(c) for c in "Paris"] + encode(tokenizer, END)
    assert encode(tokenizer, tokenizer.decode(odd)) != odd
    generations = [encode(tokenizer, REPLIES[0] + END), odd, encode(tokenizer, REPLIES[2] + END)]
    seq, snapshots = build(tokenizer, generations)
    for before, after in itertools.pairwise(snapshots):
        assert after[: len(before)] == before
    assert odd == seq.turns[1].token_ids[: len(odd)]


def test_stop_without_end_token_gets_it_appended_unmasked(tokenizer: Any) -> None:
    end_id = tokenizer.convert_tokens_to_ids(END)
    seq = ChatSequence(ChatFormatter(tokenizer))
    seq.start(PROMPT)
    cut = encode(tokenizer, REPLIES[0])  # generation stopped at the stop string "</tool_call>", no <|im_end|>
    seq.add_generation(cut)
    ids = seq.add_observation(OBSERVATIONS[0])
    assert ids[0] == end_id and seq.turns[0].loss_mask == [1] * len(cut) + [0] * len(ids)
    seq.add_generation(encode(tokenizer, "It is 21 degrees."))
    assert seq.finish() == [end_id]
    assert seq.turns[-1].loss_mask[-1] == 0
    seq.add_generation(encode(tokenizer, "Bye." + END))
    assert seq.finish() == []


def test_tools_reach_the_template_as_openai_schemas(tokenizer: Any) -> None:
    template = ("{% for t in tools or [] %}TOOL {{ t.function.name }} {{ t.function.parameters | tojson }}\n"
                "{% endfor %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tool = ToolSpec.make("weather", "Current weather", {"city": {"type": "string"}}, ["city"])
    ids = ChatFormatter(tokenizer, chat_template=template).prompt(PROMPT, [tool])
    assert tokenizer.decode(ids).startswith('TOOL weather {"type": "object", "properties": {"city": {"type": '
                                            '"string"}}, "required": ["city"]}\n<|im_start|>system')


def test_assistant_tool_calls_without_content_render(tokenizer: Any) -> None:
    call = Message(role="assistant", tool_calls=[ToolCall.make("weather", {"city": "Oslo"})])
    ids = ChatFormatter(tokenizer).prompt([*PROMPT, call, OBSERVATIONS[0][0]])
    assert "<|im_start|>assistant\n<|im_end|>" in tokenizer.decode(ids)


def test_a_template_that_rerenders_earlier_turns_is_refused_at_once_naming_the_construct(tokenizer: Any) -> None:
    # Announces the number of messages up front: every new message changes the text of the first line.
    template = ("{{ messages | length }} messages\n{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(TemplateNotIncremental, match=r"chat template of .*SmolLM2.* \(chat template sha256 .*"
                       r"a user message changes the rendering .*it counts the messages"):
        ChatFormatter(tokenizer, chat_template=template)


# Qwen3's structure: an assistant turn after the last user message keeps its <think> block; once a user message
# follows, earlier turns are rendered without it. Tool answers go in a user turn, merged when consecutive.
QWEN3 = """{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(last_query_index=-1) %}
{%- for message in messages %}{%- if message.role == 'user' %}{%- set ns.last_query_index = loop.index0 %}{%- endif %}
{%- endfor %}
{%- for message in messages %}
  {%- set content = message.content if message.content is string else '' %}
  {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
    {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
  {%- elif message.role == 'assistant' %}
    {%- set reasoning_content = '' %}
    {%- if '</think>' in content %}
      {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
      {%- set content = content.split('</think>')[-1].lstrip('\n') %}
    {%- endif %}
    {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
      {{- '<|im_start|>assistant\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n'
          + content.lstrip('\n') }}
    {%- else %}
      {{- '<|im_start|>assistant\n' + content }}
    {%- endif %}
    {{- '<|im_end|>\n' }}
  {%- elif message.role == 'tool' %}
    {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
    {{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
    {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
  {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""

# Llama 3's: every message's content is trimmed, so white space the policy generated is not rendered again.
LLAMA3 = """{%- for message in messages %}
  {%- set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim
     + '<|eot_id|>' %}
  {%- if loop.index0 == 0 %}{%- set content = bos_token + content %}{%- endif %}
  {{- content }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"""

QWEN3_REPLIES = ["<think>\nI need the weather.\n</think>\n\n" + REPLIES[0], "<think>\nAnswer.\n</think>\n\n"
                 + REPLIES[1], "Goodbye!"]
QWEN3_ANSWERS = ['\n<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
                 "<|im_start|>assistant\n",
                 "\n<|im_start|>user\nNo, thanks.<|im_end|>\n<|im_start|>assistant\n",
                 "\n<|im_start|>user\nBye.<|im_end|>\n<|im_start|>assistant\n"]
LLAMA3_REPLIES = ["  " + REPLIES[0] + "\n\n", " It is 21 degrees.  \n", "\nGoodbye! "]
LLAMA3_ANSWERS = ['<|start_header_id|>tool<|end_header_id|>\n\n{"temp": 21}<|eot_id|>'
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  "<|start_header_id|>user<|end_header_id|>\n\nNo, thanks.<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  "<|start_header_id|>user<|end_header_id|>\n\nBye.<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n"]


@pytest.mark.parametrize(("template", "end", "replies", "answers"), [(QWEN3, END, QWEN3_REPLIES, QWEN3_ANSWERS),
                                                                    (LLAMA3, "<|eot_id|>", LLAMA3_REPLIES,
                                                                     LLAMA3_ANSWERS)], ids=["qwen3", "llama3"])
def test_templates_that_rerender_earlier_turns_keep_the_generated_tokens(tokenizer: Any, template: str, end: str,
                                                                         replies: list[str],
                                                                         answers: list[str]) -> None:
    formatter = ChatFormatter(tokenizer, chat_template=template, end_of_turn=[end])
    seq = ChatSequence(formatter)
    text = tokenizer.decode(seq.start(PROMPT))
    for reply, observation, answer in zip(replies, OBSERVATIONS, answers, strict=True):
        generated = encode(tokenizer, reply + end)
        seq.add_generation(generated)
        ids = seq.add_observation(observation)
        assert tokenizer.decode(ids) == answer  # only the new messages, as the template renders them
        assert seq.turns[-1].token_ids[: len(generated)] == generated
        text += reply + end + answer
    assert tokenizer.decode(seq.token_ids) == text
    # The template itself renders the earlier turns differently now: the whole conversation re-rendered is not
    # an extension of the sequence, which is what appending tokens after it would have needed.
    assert not formatter.render(formatter.messages, add_generation_prompt=True).startswith(formatter.text)


def test_a_stop_before_the_end_marker_gets_the_templates_marker(tokenizer: Any) -> None:
    seq = ChatSequence(ChatFormatter(tokenizer, chat_template=LLAMA3, end_of_turn=["<|eot_id|>"]))
    seq.start(PROMPT)
    seq.add_generation(encode(tokenizer, REPLIES[0]))  # stopped at "</tool_call>", no <|eot_id|>
    assert tokenizer.decode(seq.add_observation(OBSERVATIONS[0])).startswith("<|eot_id|><|start_header_id|>tool")
    seq.add_generation(encode(tokenizer, "Done."))
    assert tokenizer.decode(seq.finish()) == "<|eot_id|>"


def test_a_policy_whose_template_cannot_be_extended_is_refused_when_it_is_built(smollm2: Path,
                                                                                tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from gymbox.agent.spec import PolicySpec

    bad = AutoTokenizer.from_pretrained(smollm2)
    bad.chat_template = "{{ messages | length }}{% for m in messages %}{{ m.content }}{% endfor %}"
    bad.save_pretrained(tmp_path)
    spec = PolicySpec(kind="scripted", script="gymbox.harness.demo:echo_script", tokenizer=str(tmp_path))
    with pytest.raises(TemplateNotIncremental, match="cannot be extended turn by turn"):
        spec.build()

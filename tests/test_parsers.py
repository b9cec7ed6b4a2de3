"""Tool-call parsers: each format's tricky cases, round trips through render, and no input that makes one raise."""

from __future__ import annotations

import json
from itertools import product
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gymbox.agent.parsers import (
    PARSERS,
    HermesParser,
    JsonParser,
    ParseLimits,
    Parser,
    ParseResult,
    ReactParser,
    Shape,
    ToolRLParser,
    ToolRLResult,
    format_reminder,
    get_parser,
)
from gymbox.environments.api.models import Action, ToolCall, ToolSpec

SEARCH = ToolSpec.make("search", "Search the catalog", {"query": {"type": "string"}}, required=["query"])
BUY = ToolSpec.make("buy", "Buy an item", {"id": {"type": "integer"}, "qty": {"type": "integer"}},
                    required=["id", "qty"])
TOOLS = [SEARCH, BUY]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def calls(result: ParseResult) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.id, c.function.name, json.loads(c.function.arguments)) for c in result.action.tool_calls]


def block(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


# ---- the table and the reminder ----------------------------------------------------------------------------

def test_table_names_match_the_parsers_and_unknown_names_list_the_known_ones() -> None:
    assert sorted(PARSERS) == ["hermes", "json", "react", "toolrl"]
    assert all(cls.name == name for name, cls in PARSERS.items())
    assert get_parser("hermes") is HermesParser
    with pytest.raises(ValueError, match="known formats: hermes, json, react, toolrl"):
        get_parser("xml")


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_reminder_says_what_was_wrong_and_shows_the_format_with_an_offered_tool(name: str) -> None:
    parser = get_parser(name)(tools=[BUY, SEARCH])
    error = parser.parse("<tool_call>{oops}</tool_call> 42").error
    assert error
    message = format_reminder(parser, error, [BUY, SEARCH])
    assert message.role == "user"
    assert error in message.content and f"{name} format" in message.content
    assert "buy" in message.content and "search" in message.content
    assert '"id": 1' in message.content  # the example fills the required argument


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_limits_reject_huge_replies_and_too_many_calls(name: str) -> None:
    parser = get_parser(name)(limits=ParseLimits(max_bytes=1000, max_calls=2))
    assert "at most 1,000 are parsed" in (parser.parse("x" * 1001).error or "")
    if name != "react":  # one action per reply by construction
        many = parser.render(Action(tool_calls=[ToolCall.make("f", id=f"call_{i}") for i in range(3)]))
        assert "at most 2 are allowed" in (parser.parse(many).error or "")


# ---- hermes ------------------------------------------------------------------------------------------------

def test_hermes_calls_anywhere_in_the_text_with_ids_in_order_and_compact_arguments() -> None:
    text = "Let me look.\n" + block('{"name": "search", "arguments": {"query": "red shoes"}}') + "\nthen\n" + \
        block('{"name": "buy", "arguments": {"id": 3}}')
    result = HermesParser().parse(text)
    assert result.ok and result.format_ok and result.action.text == text
    assert calls(result) == [("call_0", "search", {"query": "red shoes"}), ("call_1", "buy", {"id": 3})]
    assert result.action.tool_calls[0].function.arguments == '{"query":"red shoes"}'
    assert result.content == "Let me look.\nthen"


def test_hermes_plain_text_is_a_message_without_calls() -> None:
    result = HermesParser().parse("The capital is Paris.")
    assert result.ok and result.format_ok and result.action.tool_calls == []
    assert result.content == "The capital is Paris."


@pytest.mark.parametrize("body, note", [
    ('{"name": "buy", "parameters": {"id": 3}}', 'uses "parameters"'),
    ('{"name": "buy", "arguments": "{\\"id\\": 3}"}', "as a JSON string"),
])
def test_hermes_tolerates_parameters_and_string_arguments(body: str, note: str) -> None:
    result = HermesParser().parse(block(body))
    assert result.ok and not result.format_ok and any(note in n for n in result.notes)
    assert calls(result) == [("call_0", "buy", {"id": 3})]


def test_hermes_accepts_a_block_left_open_at_the_end() -> None:
    result = HermesParser().parse('ok\n<tool_call>\n{"name": "buy", "arguments": {"id": 3}}\n')
    assert result.ok and not result.format_ok and "no closing" in result.notes[0]
    assert calls(result) == [("call_0", "buy", {"id": 3})]


@pytest.mark.parametrize("text, error", [
    ("x </tool_call>", "</tool_call> at character 2 has no opening <tool_call>"),
    (block('{"name": "a"}').replace("</tool_call>", "") + block('{"name": "b"}'), "#2 opens inside <tool_call> #1"),
    (block('{"name": "a"}') + block('{"name": "b", "arguments": {"x": 1 "y": 2}}'),
     "the JSON inside <tool_call> #2 is invalid: Expecting ',' delimiter at line 1 column 36"),
    (block(""), "<tool_call> #1 is empty"),
    (block('[{"name": "a"}]'), "must be a JSON object"),
    (block('{"name": "a"}\n{"name": "b"}'), "Extra data"),
    (block('{"name": "a", "args": {}}'), "unexpected key(s) 'args'"),
    (block('{"arguments": {}}'), 'needs "name"'),
    (block('{"name": "a", "arguments": [1]}'), "must be a JSON object, got array"),
    (block('{"name": "a", "arguments": {"x": 1, "x": 2}}'), "duplicate key 'x'"),
    (block('{"name": "a", "arguments": {"x": NaN}}'), "NaN is not valid JSON"),
    (block('{"name": "a", "arguments": {"x": "\\ud800"}}'), "unpaired surrogate"),
    (block("[" * 50_000), "nested too deeply"),
])
def test_hermes_errors_say_precisely_what_is_wrong(text: str, error: str) -> None:
    result = HermesParser().parse(text)
    assert error in (result.error or ""), result.error
    assert result.action.tool_calls == [] and not result.format_ok and result.action.text == text


def test_hermes_renders_qwen_template_form_and_escapes_tags_inside_arguments() -> None:
    action = Action(text="Sure.", tool_calls=[ToolCall.make("search", {"query": "</tool_call> é"})])
    text = HermesParser().render(action)
    assert text == ('Sure.\n<tool_call>\n{"name": "search", "arguments": {"query": "\\u003c/tool_call> é"}}\n'
                    "</tool_call>")
    assert calls(HermesParser().parse(text)) == [("call_0", "search", {"query": "</tool_call> é"})]


# ---- json --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('{"name": "buy", "arguments": {"id": 3}}', [("call_0", "buy", {"id": 3})]),
    ('  [{"name": "search", "parameters": {"query": "x"}}, {"name": "buy"}]\n',
     [("call_0", "search", {"query": "x"}), ("call_1", "buy", {})]),
    ('```json\n{"name": "buy", "arguments": {"id": 3}}\n```', [("call_0", "buy", {"id": 3})]),
    ('```\n[]\n```', []),
])
def test_json_accepts_one_call_a_list_and_a_fence(text: str, expected: list[Any]) -> None:
    result = JsonParser().parse(text)
    assert result.ok and calls(result) == expected


@pytest.mark.parametrize("text, error", [
    ("I will buy it.", "the reply is not JSON"),
    ("", "the reply is empty"),
    ('{"name": "buy"} and more', "the JSON of the reply is invalid: Extra data"),
    ('Here: {"name": "buy"}', "not JSON"),
    ('[{"name": "buy"}, 3]', "call #2 must be a JSON object"),
    ('```json\n{"name": "buy",}\n```', "the JSON inside the ``` fence is invalid"),
    ('{"name": "buy", "arguments": {}, "parameters": {}}', 'both "arguments" and "parameters"'),
])
def test_json_errors(text: str, error: str) -> None:
    assert error in (JsonParser().parse(text).error or "")


# ---- toolrl ------------------------------------------------------------------------------------------------

CALL_LINE = '{"name": "buy", "parameters": {"id": 3}}'


@pytest.mark.parametrize("text, shape", [
    ("<think>done</think>", Shape(False, False)),
    ("<think>a</think>\n<response>Paris.</response>", Shape(False, True)),
    (f"<think>a</think>\n<tool_call>\n{CALL_LINE}\n</tool_call>", Shape(True, False)),
    (f"\n<think>a</think>\n<tool_call>\n{CALL_LINE}\n</tool_call>\n<response>ok</response>  ", Shape(True, True)),
])
def test_toolrl_four_shapes_and_r_format(text: str, shape: Shape) -> None:
    result = ToolRLParser().parse(text)
    assert isinstance(result, ToolRLResult) and result.ok and result.format_ok and result.layout_ok
    assert result.shape == shape and result.matches(Shape.of(text))
    assert [other for other in map(Shape._make, product([False, True], repeat=2)) if result.matches(other)] == [shape]
    assert result.calls == (result.action.tool_calls if shape.tool_call else None)  # None: no block to score
    assert calls(result) == ([("call_0", "buy", {"id": 3})] if shape.tool_call else [])


def test_toolrl_several_calls_one_per_line_and_response_is_the_content() -> None:
    text = (f'<think>t</think>\n<tool_call>\n{CALL_LINE}\n\n{{"name": "search", "arguments": {{"query": "q"}}}}\n'
            "</tool_call>\n<response> Bought. </response>")
    result = ToolRLParser().parse(text)
    assert result.ok and result.think == "t" and result.content == "Bought."
    assert calls(result) == [("call_0", "buy", {"id": 3}), ("call_1", "search", {"query": "q"})]


@pytest.mark.parametrize("text, error", [
    ("<response>hi</response>", "must start with <think>...</think> (it has no <think>)"),
    ("Sure. <think>a</think>", "must start with <think>"),
    ("<think>a</think>\n<think>b</think>", "<think> appears 2 times"),
    ("<think>a</think>\n<response>x</response>\n<tool_call>\n{}\n</tool_call>", "<tool_call> comes after </response>"),
    ("<think>a</think> The answer is 4.", "text outside the tags ('The answer is 4.')"),
    ("<think>a</think>\n<response>x", "<response> is never closed"),
    ("<think>a<response>x</response></think>", "<think> is not closed before <response>"),
    ("<think>a</think>\n</response>", "</response> has no opening <response>"),
    ("<think>a</think>\n<tool_call>\n\n</tool_call>", "the <tool_call> block has no call"),
    ('<think>a</think>\n<tool_call>\n{"name": "buy", "parameters": {"id": 3,}}\n</tool_call>',
     "the JSON on line 1 of <tool_call> is invalid"),
])
def test_toolrl_errors(text: str, error: str) -> None:
    result = ToolRLParser().parse(text)
    assert error in (result.error or ""), result.error
    assert not result.format_ok and result.action.tool_calls == []


def test_toolrl_exact_spacing_is_r_format_but_loose_spacing_still_parses() -> None:
    text = f"<think>a</think>\n\n<tool_call>{CALL_LINE}</tool_call>"
    result = ToolRLParser().parse(text)
    assert result.ok and calls(result) == [("call_0", "buy", {"id": 3})]
    assert not result.layout_ok and not result.format_ok and not result.matches(Shape(True, False))
    assert len(result.notes) == 2


def test_toolrl_calls_for_r_correct_are_read_even_when_the_layout_is_wrong() -> None:
    no_think = ToolRLParser().parse(f"<tool_call>\n{CALL_LINE}\n</tool_call>")
    assert no_think.error and no_think.shape is None and no_think.action.tool_calls == []
    assert [(c.function.name, c.args()) for c in no_think.calls or []] == [("buy", {"id": 3})]
    assert ToolRLParser().parse("<think>a</think>\n<tool_call>\nbuy(3)\n</tool_call>").calls is None
    assert ToolRLParser().parse("<think>a</think>").calls is None
    assert ToolRLParser().parse("x" * 2000 + "<think>", ).calls is None


def test_toolrl_shape_of_a_ground_truth() -> None:
    assert Shape.of(f"<think></think>\n<tool_call>\n{CALL_LINE}\n</tool_call>") == Shape(True, False)
    assert Shape.of("<think>x</think>\n<response>y</response>") == Shape(False, True)


def test_toolrl_renders_parts_with_parameters() -> None:
    text = ToolRLParser().render_parts("why", [ToolCall.make("buy", {"id": 3})], "done")
    assert text == f"<think>why</think>\n<tool_call>\n{CALL_LINE}\n</tool_call>\n<response>done</response>"


# ---- react -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected, content", [
    ("Thought: the door is north.\nAction: go north", ("command", {"command": "go north"}), "the door is north."),
    ("Thought 2: hm\nAction 2:  take key from table ", ("command", {"command": "take key from table"}), "hm"),
    ("Action: search[red shoes, size 9]", ("search", {"query": "red shoes, size 9"}), ""),
    ('Action: buy({"id": 3, "qty": 2})', ("buy", {"id": 3, "qty": 2}), ""),
    ("Action: buy()", ("buy", {}), ""),
    ('Action: command({"command": "open door"})', ("command", {"command": "open door"}), ""),
    ("Action: examine[box]", ("command", {"command": "examine[box]"}), ""),  # not an offered tool: a command
])
def test_react_actions(text: str, expected: tuple[str, dict[str, Any]], content: str) -> None:
    result = ReactParser(tools=TOOLS).parse(text)
    assert result.ok and result.format_ok and calls(result) == [("call_0", *expected)] and result.content == content


@pytest.mark.parametrize("text, error", [
    ("I should go north.", "no 'Action:' line; end it with a line such as 'Action: go north'"),
    ("Action: go north\nAction: go south", "2 'Action:' lines"),
    ("Thought: x\nAction:   ", "the 'Action:' line is empty"),
    ("Action: buy[3]", "buy takes several parameters; write Action: buy({"),
    ('Action: buy({"id": 3,})', "the JSON in Action: buy(...) is invalid"),
    ("Action: buy([3])", "must be a JSON object, got array"),
])
def test_react_errors(text: str, error: str) -> None:
    assert error in (ReactParser(tools=TOOLS).parse(text).error or "")


def test_react_without_a_command_tool_accepts_only_offered_tools() -> None:
    parser = ReactParser(tools=TOOLS, command_tool=None)
    assert "'go north' is not a call of an offered tool" in (parser.parse("Action: go north").error or "")
    assert "Action: search[...]" in (parser.parse("hello").error or "")
    assert calls(parser.parse("Action: search[x]")) == [("call_0", "search", {"query": "x"})]


def test_react_ignores_text_after_the_action_but_says_so() -> None:
    result = ReactParser().parse("Action: open box\nObservation: it is empty")
    assert result.ok and not result.format_ok and calls(result) == [("call_0", "command", {"command": "open box"})]


def test_react_renders_the_shortest_form_that_parses_back() -> None:
    parser = ReactParser(tools=TOOLS)
    render = parser.render
    assert render(Action(text="hm", tool_calls=[ToolCall.make("command", {"command": "go north"})])) == \
        "Thought: hm\nAction: go north"
    command = Action(tool_calls=[ToolCall.make("command", {"command": "search[x]"})])
    assert render(command) == "Action: command[search[x]]"  # a bare "search[x]" would call the search tool
    assert render(Action(tool_calls=[ToolCall.make("search", {"query": "x"})])) == "Action: search[x]"
    assert render(Action(tool_calls=[ToolCall.make("search", {"query": " x"})])) == 'Action: search({"query": " x"})'
    with pytest.raises(ValueError, match="exactly one action"):
        render(Action())
    with pytest.raises(ValueError, match="neither an offered tool"):
        ReactParser(command_tool=None).render(Action(tool_calls=[ToolCall.make("fly", {})]))


# ---- properties --------------------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                                           max_size=3), max_leaves=8)
ARGUMENTS = st.dictionaries(st.text(max_size=12), VALUES, max_size=4)
PROSE = st.text(st.characters(blacklist_characters="<\n", blacklist_categories=["Cs"]), max_size=40)
MARKERS = ["<tool_call>", "</tool_call>", "<think>", "</think>", "<response>", "</response>", "```json\n", "```",
           "\nAction: ", "Action: ", "Thought: ", '{"name": "f", "arguments": {}}', '{"name": ', "\n", "[", "]",
           "(", ")", "{", "}", '"', "command(", "search["]
TAGGED = st.lists(st.text(max_size=12) | st.sampled_from(MARKERS), max_size=25).map("".join)


def tools_for(action: Action) -> list[ToolSpec]:
    return [ToolSpec.make(c.function.name, "", {key: {} for key in c.args()}) for c in action.tool_calls]


@st.composite
def actions(draw: st.DrawFn, min_calls: int = 0, max_calls: int = 4) -> Action:
    named = draw(st.lists(st.tuples(NAMES, ARGUMENTS), min_size=min_calls, max_size=max_calls))
    return Action(text=draw(PROSE), tool_calls=[ToolCall(id=f"call_{i}", function={
        "name": name, "arguments": json.dumps(args)}) for i, (name, args) in enumerate(named)])


def assert_round_trip(parser: Parser, action: Action) -> ParseResult:
    result = parser.parse(parser.render(action))
    assert result.ok and result.format_ok, result.error
    expected = [(c.id, c.function.name, json.dumps(c.args(), separators=(",", ":"), ensure_ascii=False))
                for c in action.tool_calls]
    assert [(c.id, c.function.name, c.function.arguments) for c in result.action.tool_calls] == expected
    return result


@PROPERTY
@given(actions())
def test_hermes_round_trip(action: Action) -> None:
    assert assert_round_trip(HermesParser(), action).content == action.text.strip()


@PROPERTY
@given(actions())
def test_json_round_trip(action: Action) -> None:
    assert_round_trip(JsonParser(), action)


@PROPERTY
@given(actions())
def test_toolrl_round_trip(action: Action) -> None:
    result = assert_round_trip(ToolRLParser(), action)
    assert isinstance(result, ToolRLResult) and result.content == action.text.strip()
    assert result.matches(Shape(bool(action.tool_calls), bool(action.text.strip())))


@PROPERTY
@given(actions(min_calls=1, max_calls=1), st.booleans())
def test_react_round_trip(action: Action, as_command: bool) -> None:
    if as_command:  # a text-game command: any single line the command tool receives
        command = action.tool_calls[0].function.name.replace("_", " ") + " " + action.text
        action = Action(text=action.text, tool_calls=[ToolCall.make("command", {"command": command})])
    assert assert_round_trip(ReactParser(tools=tools_for(action)), action).content == action.text.strip()


def assert_well_formed(result: ParseResult, text: str) -> None:
    assert isinstance(result, ParseResult) and result.action.text == text
    assert (result.error is None) or (result.action.tool_calls == [] and not result.format_ok)
    for call in result.action.tool_calls:
        assert json.dumps(call.args(), separators=(",", ":"), ensure_ascii=False) == call.function.arguments


@pytest.mark.parametrize("name", sorted(PARSERS))
@PROPERTY
@given(text=st.text() | TAGGED)
def test_parse_never_raises(name: str, text: str) -> None:
    parser = get_parser(name)(tools=TOOLS)
    assert_well_formed(parser.parse(text), text)


@PROPERTY
@given(st.lists(NAMES, min_size=1, max_size=3, unique=True), st.sampled_from(sorted(PARSERS)), st.text(max_size=30))
def test_reminder_names_the_format_and_an_offered_tool(names: list[str], format_name: str, error: str) -> None:
    tools = [ToolSpec.make(n, "", {"arg": {"type": "string"}}) for n in names]
    content = format_reminder(get_parser(format_name)(tools=tools), error, tools).content or ""
    assert f"{format_name} format" in content and names[0] in content

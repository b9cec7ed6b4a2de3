"""`ToolEnv`: tool schemas from typed methods, every kind of bad call explained, `valid_action`, ending tools."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest

from gymbox.environments.api import (
    Action,
    FunctionCall,
    Observation,
    StepResult,
    TaskSpec,
    ToolCall,
    ToolEnv,
    ToolResult,
    tool,
)
from gymbox.environments.api.errors import InvalidAction
from gymbox.environments.api.signature import describe_parameters, parse_docstring, type_schema


class Shop(ToolEnv):
    name = "shop"
    version = "v1"
    suites: ClassVar[list[str]] = []

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        self.searches: list[dict[str, Any]] = []
        return self.first_observation("Buy a lamp.")

    @tool
    def search(self, query: str, limit: int = 5, tags: list[str] | None = None, exact: bool = False) -> str:
        """Search the catalog.

        The results are ranked by BM25.

        Args:
            query: words to look for
            limit: how many results to show,
                at most
            tags (list): only items with all of these tags

        Returns:
            one line per item
        """
        self.searches.append({"query": query, "limit": limit, "tags": tags, "exact": exact})
        return f"{limit} results for {query}"

    @tool(name="buy", description="Buy one item; the episode ends.")
    def purchase(self, item: int, speed: Literal["slow", "fast"] = "slow") -> ToolResult:
        """Not the description: `description=` overrides it.

        Args:
            item: the item's number
        """
        return ToolResult(f"Bought {item}.", done=True, reward=1.0, signals={"success": 1.0}, info={"item": item})

    @tool
    def rate(self, score: float, note: str | None = None) -> str:
        """Rate the shop."""
        if not 0 <= score <= 5:
            raise InvalidAction(f"score must be between 0 and 5, got {score:g}")
        return f"rated {score}"

    def step_signals(self) -> dict[str, float]:
        return {"searches": float(len(self.searches))}


def started() -> Shop:
    env = Shop()
    env.reset(TaskSpec(id="t", env="shop"), 0)
    return env


def call(name: str, arguments: dict[str, Any] | None = None, raw: str | None = None) -> ToolCall:
    if raw is not None:
        return ToolCall(id="c", function=FunctionCall(name=name, arguments=raw))
    return ToolCall.make(name, arguments)


def one(env: Shop, tool_call: ToolCall) -> tuple[str, StepResult]:
    result = env.step(Action(tool_calls=[tool_call]))
    return result.observation.messages[0].content or "", result


def test_schemas_come_from_signatures_and_docstrings() -> None:
    search, buy, rate = (spec.function for spec in Shop.tools)
    assert [search.name, buy.name, rate.name] == ["search", "buy", "rate"]
    assert search.description == "Search the catalog.\n\nThe results are ranked by BM25."
    assert search.parameters == {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string", "description": "words to look for"},
        "limit": {"type": "integer", "description": "how many results to show, at most", "default": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "only items with all of these tags"},
        "exact": {"type": "boolean", "default": False},
    }}
    assert buy.description == "Buy one item; the episode ends."
    assert buy.parameters["properties"] == {
        "item": {"type": "integer", "description": "the item's number"},
        "speed": {"type": "string", "enum": ["slow", "fast"], "default": "slow"}}
    assert buy.parameters["required"] == ["item"]
    assert rate.parameters == {"type": "object", "required": ["score"],
                               "properties": {"score": {"type": "number"}, "note": {"type": "string"}}}
    assert "required" not in Shop.tools[0].model_dump()["function"]["parameters"]["properties"]["limit"]


def test_type_schemas_and_docstrings() -> None:
    assert type_schema(dict[str, int]) == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert type_schema(int | str) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert type_schema(str | None) == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert type_schema(Any) == {}
    assert type_schema(tuple[int, int]) == {"type": "array", "prefixItems": [{"type": "integer"}] * 2,
                                            "minItems": 2, "maxItems": 2}
    summary, args = parse_docstring("Do it.\n\n    Args:\n        x: one\n        y (int): two\n            more\n")
    assert summary == "Do it." and args == {"x": "one", "y": "two more"}
    assert parse_docstring(None) == ("", {})
    assert describe_parameters(Shop.tools[1].function.parameters) == 'item (integer, required), speed (string)'


def test_valid_calls_run_with_defaults_and_report_signals() -> None:
    env = started()
    text, result = one(env, call("search", {"query": "lamp"}))
    assert text == "5 results for lamp" and result.signals == {"valid_action": 1.0, "searches": 1.0}
    assert env.searches[-1] == {"query": "lamp", "limit": 5, "tags": None, "exact": False}
    text, result = one(env, call("rate", {"score": 4}))  # an integer is a number
    assert text == "rated 4.0" and result.signals["valid_action"] == 1.0 and not result.done


@pytest.mark.parametrize("bad, expected", [
    (call("sell", {"item": 1}), ["Error: there is no tool named 'sell'. Available tools: search, buy, rate."]),
    (call("search", raw="{query"), ["not valid JSON", "search takes: query (string, required), limit (integer), "
                                    "tags (array), exact (boolean)."]),
    (call("search", raw="[1]"), ["must be a JSON object, got list", "search takes: query (string, required)"]),
    (call("search", {}), ["Error: search needs a string argument 'query'. search takes:"]),
    (call("search", {"q": "lamp"}), ["search needs a string argument 'query'; search has no argument 'q'."]),
    (call("search", {"query": "lamp", "limit": "5"}), ["argument 'limit' of search must be an integer, got string"]),
    (call("search", {"query": "lamp", "limit": True}), ["argument 'limit' of search must be an integer, got boolean"]),
    (call("search", {"query": "lamp", "tags": ["a", 2]}), ["argument 'tags[1]' of search: Input should be a valid "
                                                          "string, got integer 2"]),
    (call("buy", {"item": 3, "speed": "warp"}), ["argument 'speed' of buy must be one of \"slow\", \"fast\""]),
    (call("rate", {"score": 9}), ["Error: score must be between 0 and 5, got 9"]),
])
def test_bad_calls_are_explained_and_not_valid(bad: ToolCall, expected: list[str]) -> None:
    env = started()
    text, result = one(env, bad)
    assert all(part in text for part in expected), text
    assert result.signals["valid_action"] == 0.0 and not result.done and result.reward is None
    assert env.searches == []


def test_no_call_lists_the_tools() -> None:
    result = started().step(Action(text="I would like a lamp."))
    message = result.observation.messages[0]
    assert message.role == "user" and "Call one of the tools: search, buy, rate." in (message.content or "")
    assert result.signals == {"valid_action": 0.0} and not result.done


def test_one_bad_call_makes_the_step_invalid_but_the_others_run() -> None:
    env = started()
    result = env.step(Action(tool_calls=[call("search", {"query": "lamp"}), call("search", {"query": 1})]))
    assert [m.tool_call_id for m in result.observation.messages] == ["call_0", "call_0"]
    assert len(env.searches) == 1 and result.signals["valid_action"] == 0.0


def test_a_tool_ends_the_episode_and_later_calls_do_not_run() -> None:
    env = started()
    result = env.step(Action(tool_calls=[call("search", {"query": "lamp"}), call("buy", {"item": 7}),
                                         call("search", {"query": "more"})]))
    assert result.terminated and result.reward == 1.0 and result.info == {"item": 7}
    assert result.signals == {"valid_action": 1.0, "searches": 1.0, "success": 1.0}
    assert [m.content for m in result.observation.messages] == ["5 results for lamp", "Bought 7."]
    assert len(env.searches) == 1


def test_declarations_are_checked_and_inherited() -> None:
    with pytest.raises(TypeError, match="two methods declare the tool 'search'"):
        class Twice(Shop):
            @tool(name="search")
            def find(self, query: str) -> str:
                """Find."""
                return query

    with pytest.raises(TypeError, match="plain or keyword-only"):
        class Splat(Shop):
            @tool
            def many(self, *words: str) -> str:
                """Many."""
                return ""

    class Quieter(Shop):
        @tool
        def search(self, query: str) -> str:
            """Search quietly."""
            return query

    assert [t.function.name for t in Quieter.tools] == ["search", "buy", "rate"]
    assert Quieter.tools[0].function.description == "Search quietly." and Shop.tools[0] != Quieter.tools[0]

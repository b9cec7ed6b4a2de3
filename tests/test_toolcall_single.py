"""Single-turn toolcall: schema conversion, the possible-answer checker on real BFCL data, and the episode."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gymbox.environments.api import Action, FunctionCall, StepResult, TaskSpec, ToolCall
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.toolcall.env import ToolCallEnv
from gymbox.environments.toolcall.schema import schema_error
from gymbox.tasks.toolcall import suite as tc
from gymbox.tasks.toolcall.checker import check_calls, normalise, reference_calls
from gymbox.tasks.toolcall.schema import ToolNames, to_json_schema

Call = tuple[str, dict[str, Any]]


def play(task: TaskSpec, calls: list[Call], original_names: bool = False) -> StepResult:
    env = ToolCallEnv()
    env.reset(task, seed=0)
    names = env.episode.tools.names
    return env.step(Action(tool_calls=[
        ToolCall.make(name if original_names else names.to_openai.get(name, name), args, id=f"call_{i}")
        for i, (name, args) in enumerate(calls)
    ]))


def reference(task: TaskSpec) -> list[Call]:
    return reference_calls(task.payload["ground_truth"], task.payload["functions"])


def check(task: TaskSpec, calls: list[Call]) -> str | None:
    p = task.payload
    return check_calls(calls, p["ground_truth"], p["functions"], any_order=p["check"] == "calls_any_order")


# ---- schema conversion ----------------------------------------------------------------------------------

def test_bfcl_types_become_json_schema() -> None:
    bfcl = {"type": "dict", "required": ["a"], "optional": True, "properties": {
        "a": {"type": "float", "description": "x"},
        "b": {"type": "tuple", "items": {"type": "integer"}},
        "c": {"type": "any"},
        "d": {"type": "dict", "properties": {"e": {"type": "array", "items": {"type": "dict", "properties": {
            "f": {"type": "string", "enum": ["x", "y"]}}}}}},
        "g": {"type": "array", "items": {"type": "string"}, "enum": ["p", "q"]},
    }}
    assert to_json_schema(bfcl) == {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "number", "description": "x"},
        "b": {"type": "array", "items": {"type": "integer"}},
        "c": {},
        "d": {"type": "object", "properties": {"e": {"type": "array", "items": {"type": "object", "properties": {
            "f": {"type": "string", "enum": ["x", "y"]}}}}}},
        "g": {"type": "array", "items": {"type": "string", "enum": ["p", "q"]}},
    }}


def test_tool_names_map_both_ways() -> None:
    names = ToolNames()
    assert names.add("math.factorial") == "math_factorial"
    assert names.add("math_factorial") == "math_factorial_2"  # a clash gets a suffix, never a silent merge
    assert names.add("a.b.c" + "x" * 80) == ("a_b_c" + "x" * 80)[:64]
    assert names.resolve("math_factorial") == "math.factorial" and names.resolve("math.factorial") == "math.factorial"
    assert names.resolve("math_factorial_2") == "math_factorial" and names.resolve("nope") is None


def test_schema_validation_names_the_problem() -> None:
    schema = to_json_schema({"type": "dict", "required": ["n"], "properties": {
        "n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
        "mode": {"type": "string", "enum": ["a", "b"]}}})
    assert schema_error({"n": 3, "tags": ["x"], "mode": "a"}, schema) is None
    assert schema_error({"n": 3.0, "mode": None}, schema) is None  # integral float; null for an optional one
    assert "missing the required property 'n'" in schema_error({}, schema)
    assert "arguments.n must be of type integer" in schema_error({"n": "3"}, schema)
    assert "arguments.n must be of type integer" in schema_error({"n": True}, schema)
    assert "arguments.tags[1] must be of type string" in schema_error({"n": 1, "tags": ["x", 2]}, schema)
    assert "must be one of" in schema_error({"n": 1, "mode": "c"}, schema)
    assert "unknown property 'zz'" in schema_error({"n": 1, "zz": 0}, schema)


def test_string_normalisation() -> None:
    assert normalise("April 1, 2024") == normalise("april 1 2024") == normalise("April_1-2024.")
    assert normalise("it's") == normalise('IT"S')


# ---- the checker on real data ----------------------------------------------------------------------------

@pytest.mark.parametrize("category", tc.AST_CATEGORIES)
def test_ground_truth_is_accepted(category: str) -> None:
    """Every task: the first allowed value of each parameter, played through the environment, matches."""
    for task in tc.category_tasks(category):
        result = play(task, reference(task))
        assert result.terminated and result.signals["match"] == 1.0, (task.id, result.info)
        assert result.signals["success"] == 1.0 and result.signals["num_calls"] == len(task.payload["ground_truth"])
    parallel = [t for t in tc.category_tasks(category) if len(t.payload["ground_truth"]) > 1]
    for task in parallel[:40]:
        if task.payload["check"] == "calls_any_order":
            assert play(task, reference(task)[::-1]).signals["match"] == 1.0, task.id


def test_unanswerable_list_is_exact() -> None:
    for category in tc.AST_CATEGORIES:
        for task in tc.category_tasks(category, include_unanswerable=True):
            if task.id in tc.UNANSWERABLE:
                assert check(task, reference(task)) is not None, task.id


def _wrong(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 7919
    if isinstance(value, str):
        return value + " zq"
    if isinstance(value, list):
        return [*value, "zq"]
    return "zq"


def _mutations(task: TaskSpec) -> dict[str, list[Call]]:
    calls = reference(task)
    docs = {d["name"]: d for d in task.payload["functions"]}
    name, args = calls[0]
    allowed = task.payload["ground_truth"][0][name]
    out: dict[str, list[Call]] = {"extra param": [(name, {**args, "zq_unexpected": 1}), *calls[1:]]}
    for param, value in args.items():
        if isinstance(value, dict) or not isinstance(value, bool | int | float | str | list):
            continue
        wrong = _wrong(value)
        if wrong not in allowed[param] and all(normalise(str(wrong)) != normalise(str(a)) for a in allowed[param]):
            out["wrong value"] = [(name, {**args, param: wrong}), *calls[1:]]
            break
    required = [p for p in docs[name]["parameters"].get("required", []) if p in args]
    if required:
        out["missing required"] = [(name, {k: v for k, v in args.items() if k != required[0]}), *calls[1:]]
    others = [n for n in docs if n != name]
    out["wrong function"] = [(others[0] if others else name + "_other", args), *calls[1:]]
    return out


@pytest.mark.parametrize("category", tc.AST_CATEGORIES)
def test_mutated_answers_are_rejected(category: str) -> None:
    seen: dict[str, int] = {}
    for task in tc.category_tasks(category):
        for label, calls in _mutations(task).items():
            assert check(task, calls) is not None, (task.id, label, calls)
            seen[label] = seen.get(label, 0) + 1
        if len(task.payload["ground_truth"]) > 1:
            assert check(task, reference(task)[1:]) is not None, task.id  # a call left out
    assert {"wrong value", "extra param", "wrong function", "missing required"} <= set(seen)


def test_mismatch_is_explained_in_info() -> None:
    task = tc.category_tasks("simple_python")[0]  # calculate_triangle_area(base=10, height=5)
    result = play(task, [("calculate_triangle_area", {"base": 10, "height": 6})])
    assert result.signals["match"] == 0.0 and result.signals["well_formed"] == 1.0
    assert "'height' is 6" in result.info["mismatch"]
    result = play(task, [("calculate_triangle_area", {"base": 10.0, "height": 5})])
    assert "should be of type integer" in result.info["mismatch"]


def test_value_rules() -> None:
    task = next(t for t in tc.category_tasks("simple_python") if t.id == "simple_python_1")  # math.factorial(5)
    assert play(task, [("math.factorial", {"number": 5})], original_names=True).signals["match"] == 1.0
    assert play(task, [("math.factorial", {"number": True})]).signals["match"] == 0.0
    float_task = next(t for t in tc.category_tasks("parallel") if t.id == "parallel_84")  # int where float declared
    calls = reference(float_task)
    assert any(isinstance(v, int) for _, a in calls for v in a.values())
    assert play(float_task, calls).signals["match"] == 1.0
    nested = next(t for t in tc.category_tasks("live_multiple") if t.id == "live_multiple_0-0-0")
    (name, args), = reference(nested)
    shouted = copy.deepcopy(args)
    shouted["new_preferences"]["size"] = "LARGE"
    assert play(nested, [(name, shouted)]).signals["match"] == 1.0  # strings compare case-insensitively
    shouted["new_preferences"]["unexpected"] = "x"
    assert play(nested, [(name, shouted)]).signals["match"] == 0.0  # dicts: no unknown keys


@pytest.mark.parametrize("category", ["irrelevance", "live_irrelevance"])
def test_irrelevance_passes_only_without_calls(category: str) -> None:
    for task in tc.category_tasks(category):
        assert play(task, []).signals["match"] == 1.0
    task = next(t for t in tc.category_tasks(category) if t.payload["functions"])
    doc = task.payload["functions"][0]
    result = play(task, [(doc["name"], {})])
    assert result.signals["match"] == 0.0 and "no function should be called" in result.info["mismatch"]


def test_relevance_passes_with_any_call() -> None:
    for task in tc.category_tasks("live_relevance"):
        doc = task.payload["functions"][0]
        assert play(task, [(doc["name"], {})]).signals["match"] == 1.0
        assert play(task, []).signals["match"] == 0.0


# ---- malformed actions ----------------------------------------------------------------------------------

def test_malformed_calls_are_explained() -> None:
    task = tc.category_tasks("simple_python")[0]
    env = ToolCallEnv()
    observation = env.reset(task, seed=3)
    assert observation.tools and observation.tools[0].function.parameters["type"] == "object"
    result = env.step(Action(tool_calls=[
        ToolCall.make("no_such_tool", {"x": 1}, id="a"),
        ToolCall(id="b", function=FunctionCall(name="calculate_triangle_area", arguments="{not json")),
        ToolCall(id="c", function=FunctionCall(name="calculate_triangle_area", arguments="[1, 2]")),
        ToolCall.make("calculate_triangle_area", {"base": "ten", "height": 5}, id="d"),
    ]))
    contents = [m.content or "" for m in result.observation.messages]
    assert [m.tool_call_id for m in result.observation.messages] == ["a", "b", "c", "d"]
    assert "no tool named 'no_such_tool'" in contents[0] and "calculate_triangle_area" in contents[0]
    assert "not valid JSON" in contents[1] and "must be a JSON object" in contents[2]
    assert "arguments.base must be of type integer" in contents[3] and "base (integer, required)" in contents[3]
    assert result.signals["valid_action"] == 0.0 and result.signals["well_formed"] == 0.0
    assert result.signals["match"] == 0.0 and result.terminated
    assert env.state() == {"kind": "single", "check": "calls", "turn": 1, "calls": 4}


@pytest.mark.parametrize("payload", [
    {},
    {"kind": "single", "messages": [{"role": "user", "content": "hi"}]},
    {"kind": "single", "messages": [{"role": "robot", "content": "hi"}], "functions": [], "check": "no_call"},
    {"kind": "single", "messages": [], "functions": [], "check": "calls"},
    {"kind": "multi", "turns": [[]], "functions": [], "involved_classes": ["Nope"], "initial_config": {},
     "ground_truth": [[]]},
])
def test_bad_payloads_are_invalid_tasks(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidTask):
        ToolCallEnv().reset(TaskSpec(id="bad", env="toolcall", payload=payload), seed=0)


def test_reset_is_deterministic() -> None:
    for task in tc.smoke_tasks():
        if task.payload["kind"] == "single":
            assert ToolCallEnv().reset(task, 5) == ToolCallEnv().reset(task, 5)

"""Multi-turn toolcall on BFCL's real backends: ground-truth replay, wrong calls, bad input, and the server path."""

from __future__ import annotations

import json

import pytest

from gymbox.environments.api import Action, FunctionCall, StepResult, TaskSpec, ToolCall
from gymbox.environments.api.models import ResetRequest, SessionRequest, SessionStarted, SessionState, StepRequest
from gymbox.environments.api.sessions import SessionHost
from gymbox.environments.runtime import LocalRuntime
from gymbox.environments.runtime.checker import check_runtime
from gymbox.environments.toolcall.backends import parse_call
from gymbox.environments.toolcall.env import ToolCallEnv
from gymbox.environments.toolcall.multi import MAX_STEPS_PER_TURN, NEW_FUNCTIONS_PROMPT
from gymbox.tasks.toolcall import suite as tc

SAMPLE = 25  # tasks replayed per category (every 8th one)


def task_by_id(task_id: str) -> TaskSpec:
    category = task_id.rsplit("_", 1)[0]
    return next(t for t in tc.category_tasks(category, include_unanswerable=True) if t.id == task_id)


def as_tool_call(env: ToolCallEnv, text: str, index: int) -> ToolCall:
    """A ground-truth call string as the agent would send it: OpenAI name, keyword arguments in JSON."""
    name, args, kwargs = parse_call(text)
    episode = env.episode
    arguments = episode.agent.keyword_arguments(name, args, kwargs)
    return ToolCall.make(episode.tools.names.to_openai[name], arguments, id=f"call_{index}")


def replay(task: TaskSpec, together: bool = False, before_each_turn: list[Action] | None = None) -> StepResult:
    """Play the ground truth turn by turn (one call per step, or each turn's calls in one step)."""
    env = ToolCallEnv()
    env.reset(task, seed=11)
    result = None
    for answer in task.payload["ground_truth"]:
        for action in before_each_turn or []:
            assert not env.step(action).done
        calls = [as_tool_call(env, text, i) for i, text in enumerate(answer)]
        steps = [calls] if together and calls else [[c] for c in calls]
        for step_calls in steps:
            result = env.step(Action(tool_calls=step_calls))
            assert not result.done
        result = env.step(Action(text="Done."))
    assert result is not None and result.terminated
    return result


@pytest.mark.parametrize("category", tc.MULTI_TURN_CATEGORIES)
def test_ground_truth_replay_succeeds(category: str) -> None:
    for task in tc.category_tasks(category)[::8][:SAMPLE]:
        result = replay(task)
        assert result.signals["success"] == 1.0, (task.id, result.info["turns"])
        assert result.signals["state_match"] == 1.0 and result.signals["response_match"] == 1.0
        assert result.reward == 1.0


def test_parallel_calls_in_one_step() -> None:
    for task in tc.category_tasks("multi_turn_base")[:12]:
        assert replay(task, together=True).signals["success"] == 1.0, task.id


def test_unanswerable_multi_turn_task_fails_its_replay() -> None:
    # Its ground truth calls a function the task only reveals two turns later.
    with pytest.raises(KeyError, match="tail"):
        replay(task_by_id("multi_turn_miss_func_49"))


def test_wrong_call_lowers_state_match() -> None:
    task = task_by_id("multi_turn_base_0")  # turn 0: cd document, mkdir temp, mv final_report.pdf temp
    env = ToolCallEnv()
    env.reset(task, seed=0)
    env.step(Action(tool_calls=[ToolCall.make("cd", {"folder": "document"}, id="a"),
                                ToolCall.make("mkdir", {"dir_name": "tmp"}, id="b")]))
    result = env.step(Action(text="Done."))
    turn = result.info["turn"]
    assert turn["checked"] and not turn["state_match"] and "GorillaFileSystem.root" in turn["differences"]
    assert result.signals["progress"] == 0.0
    for answer in task.payload["ground_truth"][1:]:
        for i, text in enumerate(answer):
            env.step(Action(tool_calls=[as_tool_call(env, text, i)]))
        result = env.step(Action())
    assert result.terminated and result.signals["success"] == 0.0
    assert result.signals["state_match"] < 1.0


def test_skipping_a_read_only_turn_fails_the_response_check() -> None:
    task = task_by_id("multi_turn_base_0")  # turn 1 is cd + grep: the grep result must be seen
    env = ToolCallEnv()
    env.reset(task, seed=0)
    for i, text in enumerate(task.payload["ground_truth"][0]):
        env.step(Action(tool_calls=[as_tool_call(env, text, i)]))
    assert env.step(Action()).info["turn"]["state_match"]
    env.step(Action(tool_calls=[as_tool_call(env, "cd(folder='temp')", 0)]))
    turn = env.step(Action()).info["turn"]
    assert turn["state_match"] and not turn["response_match"] and turn["missing"]


def test_bad_input_is_explained_and_the_session_goes_on() -> None:
    task = task_by_id("multi_turn_base_0")
    bad = [
        Action(tool_calls=[ToolCall.make("rm_rf", {"path": "/"}, id="a")]),
        Action(tool_calls=[ToolCall(id="b", function=FunctionCall(name="cd", arguments="{oops"))]),
        Action(tool_calls=[ToolCall(id="c", function=FunctionCall(name="cd", arguments="\"document\""))]),
        Action(tool_calls=[ToolCall.make("cd", {"folder": 7, "extra": True}, id="d")]),
        Action(tool_calls=[ToolCall.make("mkdir", {}, id="e")]),
        Action(tool_calls=[ToolCall.make("cd", {"folder": 10**13}, id="f")]),
    ]
    env = ToolCallEnv()
    env.reset(task, seed=0)
    texts = []
    for action in bad:
        result = env.step(action)
        assert not result.done and result.signals["valid_action"] == 0.0 and result.signals["well_formed"] == 0.0
        texts.append(result.observation.messages[0].content or "")
    assert "no tool named 'rm_rf'" in texts[0] and "Available tools: " in texts[0] and "mkdir" in texts[0]
    assert "not valid JSON" in texts[1] and "must be a JSON object" in texts[2]
    assert "arguments.folder must be of type string" in texts[3] and "folder (string, required)" in texts[3]
    assert "missing the required property 'dir_name'" in texts[4]
    assert "integers beyond" in texts[5] and "not run" in texts[5]
    assert env.state()["errors"] == len(bad) and env.state()["turn"] == 0
    # None of that touched the backends: the ground truth still succeeds afterwards.
    assert replay(task, before_each_turn=bad).signals["success"] == 1.0


def test_backend_errors_and_schema_warnings() -> None:
    task = task_by_id("multi_turn_base_173")  # TicketAPI documents ticket_id as an integer, its data uses strings
    env = ToolCallEnv()
    env.reset(task, seed=0)
    names = env.episode.tools.names.to_openai
    assert "close_ticket" in names
    result = env.step(Action(tool_calls=[ToolCall.make("close_ticket", {"ticket_id": "ticket_001"}, id="x")]))
    text = result.observation.messages[0].content or ""
    assert text.startswith("{") and "Warning: arguments.ticket_id must be of type integer" in text
    assert result.signals["well_formed"] == 0.0 and result.signals["errors"] == 0.0


def test_costly_arguments_are_refused_before_they_run() -> None:
    env = ToolCallEnv()
    env.reset(task_by_id("multi_turn_base_49"), seed=0)  # offers MathAPI
    result = env.step(Action(tool_calls=[
        ToolCall.make("logarithm", {"value": 20, "base": 10, "precision": 100_000}, id="a"),
        ToolCall.make("power", {"base": 987654, "exponent": 999_999}, id="b"),
        ToolCall.make("logarithm", {"value": 20, "base": 10, "precision": 4}, id="c"),
    ]))
    texts = [m.content or "" for m in result.observation.messages]
    assert "precision may be at most" in texts[0] and "exponent may be at most" in texts[1]
    assert texts[2].startswith("{") and result.signals["errors"] == 2.0


def test_miss_func_reveals_tools_later() -> None:
    task = task_by_id("multi_turn_miss_func_0")  # `sort` is held back until turn 3
    env = ToolCallEnv()
    first = env.reset(task, seed=0)
    assert "sort" not in {t.function.name for t in first.tools or []}
    refused = env.step(Action(tool_calls=[ToolCall.make("sort", {"file_name": "final_report.pdf"})]))
    assert "no tool named 'sort'" in (refused.observation.messages[0].content or "")
    for _ in range(3):
        result = env.step(Action(text="I cannot do that yet."))
    assert result.observation.messages[0].content == NEW_FUNCTIONS_PROMPT
    assert "sort" in {t.function.name for t in result.observation.tools or []}


def test_steps_per_turn_are_limited() -> None:
    env = ToolCallEnv()
    env.reset(task_by_id("multi_turn_base_0"), seed=0)
    for _ in range(MAX_STEPS_PER_TURN - 1):
        assert not env.step(Action(tool_calls=[ToolCall.make("pwd", {})])).done
    result = env.step(Action(tool_calls=[ToolCall.make("pwd", {})]))
    assert result.truncated and result.info["truncated_by"] == "steps_per_turn"
    assert result.signals["success"] == 0.0


def test_reset_is_deterministic_and_state_is_json() -> None:
    for task in [t for t in tc.smoke_tasks() if t.payload["kind"] == "multi"]:
        a, b = ToolCallEnv(), ToolCallEnv()
        assert a.reset(task, 1) == b.reset(task, 1)
        step = Action(tool_calls=[ToolCall.make(a.episode.tools.specs[0].function.name, {})])
        assert a.step(step) == b.step(step)
        assert json.loads(json.dumps(a.state()))["turn"] == 0


async def test_conformance_on_both_kinds_of_task() -> None:
    smoke = tc.smoke_tasks()
    tasks = [next(t for t in smoke if t.category == c) for c in ("multi_turn_base", "multi_turn_miss_func",
                                                                  "multi_turn_long_context", "live_irrelevance")]
    async with LocalRuntime("toolcall") as runtime:
        report = await check_runtime(runtime, tasks)
    assert report.ok, "\n".join(f"{r.name}: {r.detail}" for r in report.failures())
    assert "3 of 4 tasks truncated" in next(r.detail for r in report.results if r.name == "turn limit truncates")


async def test_episodes_through_the_session_host() -> None:
    host = SessionHost(ToolCallEnv, capacity=4)
    try:
        single = tc.category_tasks("simple_python")[0]
        started = await host.handle(ResetRequest(task=single, seed=1))
        assert isinstance(started, SessionStarted) and started.observation.tools
        call = ToolCall.make("calculate_triangle_area", {"base": 10, "height": 5})
        result = await host.handle(StepRequest(session=started.session, action=Action(tool_calls=[call])))
        assert isinstance(result, StepResult) and result.terminated and result.signals["success"] == 1.0

        multi = task_by_id("multi_turn_base_3")
        started = await host.handle(ResetRequest(task=multi, seed=1))
        env = host.sessions[started.session].env
        assert isinstance(env, ToolCallEnv)
        for answer in multi.payload["ground_truth"]:
            calls = [as_tool_call(env, text, i) for i, text in enumerate(answer)]
            if calls:
                await host.handle(StepRequest(session=started.session, action=Action(tool_calls=calls)))
            result = await host.handle(StepRequest(session=started.session, action=Action(text="ok")))
        assert isinstance(result, StepResult) and result.terminated and result.signals["success"] == 1.0
        state = await host.handle(SessionRequest(op="state", session=started.session))
        assert isinstance(state, SessionState) and state.done and state.env_state["turns_passed"] >= 1
        await host.handle(SessionRequest(op="close", session=started.session))
    finally:
        await host.shutdown()

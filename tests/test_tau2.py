"""τ²-bench in `toolcall`: suites, episodes through the step API, the package's scoring, the expert, bad input."""

from __future__ import annotations

import json
import random

import pytest

from gymbox.agent.experts.tau2 import plan, tau2
from gymbox.environments.api import Action, Message, ToolCall
from gymbox.environments.api.errors import InvalidTask, UserPolicyError, from_wire
from gymbox.environments.runtime import LocalRuntime
from gymbox.harness.metrics import pass_hat_k
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.toolcall.tau2 import import_tau2, package_task, with_user

SAMPLED = 2  # tasks of each domain replayed by the expert in this file (the full sweep is `gymbox eval`)


def _sample(suite: str, n: int = SAMPLED) -> list[TaskSpec]:
    tasks = list(load_suite(suite).tasks)
    return random.Random(f"tau2-{suite}").sample(tasks, n)


def _with(task: TaskSpec, user: object = "gold", **payload: object) -> TaskSpec:
    return with_user([task.model_copy(update={"payload": {**task.payload, **payload}})], user)[0]  # type: ignore[arg-type]


async def _play(task: TaskSpec, actions: list[Action] | None = None) -> tuple[list[Message], object]:
    """Play `actions` (default: the expert's) through the step API of an in-process runtime; the last result."""
    async with LocalRuntime("toolcall") as runtime:
        client = await runtime.client()
        observation = await client.reset(task, seed=1)
        messages = list(observation.messages)
        result = None
        for turn in range(100):
            action = actions[turn] if actions is not None else tau2(task, messages)
            messages.append(Message(role="assistant", content=action.text or None,
                                    tool_calls=action.tool_calls or None))
            result = await client.step(action)
            messages += result.observation.messages
            if result.done:
                break
        await client.close()
    return messages, result


def test_suites_and_splits() -> None:
    sizes = {"tau2-airline": (30, 20), "tau2-retail": (74, 40), "tau2-telecom": (74, 40)}
    for name, (train, test) in sizes.items():
        suite = load_suite(name)
        assert (len(suite.split("train")), len(suite.split("test"))) == (train, test)
        assert {t.env for t in suite.tasks} == {"toolcall"} and {t.category for t in suite.tasks} == {name}
    first = load_suite("tau2-airline").tasks[0]
    assert first.id == "airline/0" and first.payload == {"kind": "tau2", "domain": "airline", "task_id": "0"}


@pytest.mark.parametrize("task", [*_sample("tau2-airline"), *_sample("tau2-retail"), *_sample("tau2-telecom")],
                         ids=lambda t: t.id[:40])
async def test_expert_scores_one_through_the_step_api(task: TaskSpec) -> None:
    messages, result = await _play(_with(task))
    assert result.terminated and result.info["ended_by"] == "user_stop"
    assert result.reward == 1.0 and result.signals["success"] == 1.0
    basis = {b.value for b in package_task(task.payload["domain"], task.payload["task_id"])
             .evaluation_criteria.reward_basis}
    expected = {"DB": "db", "ENV_ASSERTION": "env_assertion", "COMMUNICATE": "communicate", "ACTION": "action"}
    assert {expected[b] for b in basis} <= set(result.signals)
    assert messages[0].role == "system" and "<policy>" in messages[0].content
    assert messages[1] == Message(role="assistant", content="Hi! How can I help you today?")


def _package_reward(domain: str, task: object, calls: list[tuple[str, str, dict]], said: list[str]) -> float:
    """The package's own run and scoring of a conversation: its environment executes the calls, its evaluators
    score it, without gymbox in between."""
    msg = import_tau2("tau2.data_model.message")
    env_eval = import_tau2("tau2.evaluator.evaluator_env").EnvironmentEvaluator
    comm = import_tau2("tau2.evaluator.evaluator_communicate").CommunicateEvaluator
    act = import_tau2("tau2.evaluator.evaluator_action").ActionEvaluator
    module = import_tau2(f"tau2.domains.{domain}.environment")
    env = module.get_environment()
    state = task.initial_state
    env.set_state(state.initialization_data if state else None, state.initialization_actions if state else None, [])
    trajectory = [msg.AssistantMessage(role="assistant", content="Hi! How can I help you today?")]
    for i, (requestor, name, args) in enumerate(calls):
        call = msg.ToolCall(id=f"c{i}", name=name, arguments=args, requestor=requestor)
        cls = msg.UserMessage if requestor == "user" else msg.AssistantMessage
        trajectory += [cls(role=requestor, tool_calls=[call]), env.get_response(call)]
    trajectory += [msg.AssistantMessage(role="assistant", content=" ".join(said) or "Done.")]
    basis = {b.value for b in task.evaluation_criteria.reward_basis}
    reward = 1.0
    if basis & {"DB", "ENV_ASSERTION"}:
        reward *= env_eval.calculate_reward(module.get_environment, task, trajectory).reward
    if "COMMUNICATE" in basis:
        reward *= comm.calculate_reward(task, trajectory).reward
    if "ACTION" in basis:
        reward *= act.calculate_reward(task, trajectory).reward
    return reward


@pytest.mark.parametrize("suite, mutation", [("tau2-airline", "drop_last_call"), ("tau2-retail", "wrong_argument"),
                                             ("tau2-retail", "say_nothing"), ("tau2-telecom", "drop_last_call")])
async def test_wrong_trajectories_score_as_the_package_scores_them(suite: str, mutation: str) -> None:
    """Deliberately wrong plays of a task get the reward the package's own run gives the same conversation."""
    def playable(t: TaskSpec) -> bool:  # agent calls with arguments to get wrong, and no user actions
        actions = package_task(t.payload["domain"], t.payload["task_id"]).evaluation_criteria.actions or []
        return any(a.requestor == "assistant" and a.arguments for a in actions) and \
            all(a.requestor == "assistant" for a in actions)

    tasks = [t for t in load_suite(suite).tasks if playable(t)]
    task = random.Random(mutation).choice(tasks)
    gold = package_task(task.payload["domain"], task.payload["task_id"])
    calls = [(a.requestor, a.name, dict(a.arguments)) for a in gold.evaluation_criteria.actions]
    said = [str(s) for s in gold.evaluation_criteria.communicate_info or []]
    agent_calls = [i for i, c in enumerate(calls) if c[0] == "assistant"]
    if mutation == "drop_last_call":
        del calls[agent_calls[-1]]
    elif mutation == "wrong_argument":
        _, name, args = calls[agent_calls[-1]]
        key = sorted(args)[0]
        calls[agent_calls[-1]] = ("assistant", name, {**args, key: f"{args[key]}-wrong"})
    else:
        said = []
    expected = _package_reward(task.payload["domain"], gold, calls, said)
    actions = [Action(tool_calls=[ToolCall.make(name, args, id=f"c{i}")]) for i, (who, name, args) in enumerate(calls)
               if who == "assistant"]
    actions.append(Action(text=" ".join(["Your request has been handled.", *said])))
    _, result = await _play(_with(task, {"kind": "replies", "replies": ["I need help.", "###STOP###"]}), actions)
    assert result.terminated
    assert result.reward == expected
    if mutation in ("drop_last_call", "wrong_argument"):
        assert expected == 0.0  # the wrong play is wrong to the package too


def test_expert_plan_asks_the_user_for_user_actions() -> None:
    task = next(t for t in load_suite("tau2-telecom").tasks
                if any(a.requestor == "user" for a in package_task("telecom", t.payload["task_id"])
                       .evaluation_criteria.actions or []))
    steps = plan(package_task("telecom", task.payload["task_id"]), solo=False)
    assert any(s.text.startswith("Please do the following on your phone") for s in steps)
    solo = plan(package_task("telecom", task.payload["task_id"]), solo=True)
    assert all(s.tool_calls for s in solo) and solo[-1].tool_calls[0].function.name == "done"


async def test_solo_mode_expert_scores_one() -> None:
    task = _sample("tau2-telecom", 1)[0]
    messages, result = await _play(_with(task, None, solo=True))
    assert "<ticket>" in messages[0].content and result.info["ended_by"] == "agent_stop"
    assert result.reward == 1.0


async def test_bad_calls_are_explained_and_ten_errors_end_the_episode() -> None:
    task = _with(load_suite("tau2-airline").tasks[0], {"kind": "replies", "replies": ["Hello."]})
    bad = [
        Action(tool_calls=[ToolCall.make("fly_me_to_the_moon", {})]),
        Action(tool_calls=[ToolCall.make("get_user_details", {"user_id": 42})]),
        Action(tool_calls=[ToolCall.make("get_user_details", {"user": "x"})]),
        Action(tool_calls=[ToolCall(id="c", function={"name": "get_user_details", "arguments": "{not json"})]),
        Action(tool_calls=[ToolCall.make("get_user_details", {"user_id": "nobody"})]),  # the tool's own error
    ]
    async with LocalRuntime("toolcall") as runtime:
        client = await runtime.client()
        await client.reset(task, seed=1)
        texts = []
        for action in bad:
            result = await client.step(action)
            texts.append(result.observation.messages[0].content)
            assert not result.done
        assert "no tool named 'fly_me_to_the_moon'" in texts[0] and "get_user_details" in texts[0]
        assert "user_id" in texts[1] and "string" in texts[1].lower()
        assert "unexpected argument(s) user" in texts[2]
        assert "not valid JSON" in texts[3]
        assert texts[4].startswith("Error:") and "nobody" in texts[4]
        assert all(t.startswith("Error: ") for t in texts)
        assert result.signals["errors"] == 5.0
        both = Action(text="Let me look.", tool_calls=[ToolCall.make("get_user_details", {"user_id": "mia_li_3668"})])
        result = await client.step(both)  # a turn with calls is a tool turn: the user is not asked
        assert [m.role for m in result.observation.messages] == ["tool"]
        for _ in range(5):
            result = await client.step(bad[0])
        assert result.truncated and result.info["ended_by"] == "too_many_errors" and result.reward == 0.0
        await client.close()


async def test_user_stop_tokens_end_the_episode_and_scoring_follows() -> None:
    task = _with(load_suite("tau2-retail").tasks[0], {"kind": "replies", "replies": ["Hi.", "Bye ###TRANSFER###"]})
    _, result = await _play(task, [Action(text="How can I help?")])
    assert result.terminated and result.info["ended_by"] == "user_stop"
    assert result.reward == 0.0 and result.signals["db"] == 0.0  # nothing was done


async def test_a_failing_user_endpoint_is_an_infrastructure_error() -> None:
    task = _with(load_suite("tau2-airline").tasks[0], "openai:http://127.0.0.1:9/v1#user")
    async with LocalRuntime("toolcall") as runtime:
        client = await runtime.client()
        with pytest.raises(UserPolicyError) as caught:
            await client.reset(task, seed=1)
    assert caught.value.infra and "failed 3 times" in str(caught.value)
    # Across the wire (a served environment) the client rebuilds the same error, so it keeps its code and kind.
    rebuilt = from_wire(caught.value.to_wire())
    assert type(rebuilt) is UserPolicyError and rebuilt.code == "user_policy_error" and rebuilt.infra


async def test_an_endpoint_user_gets_the_scenario_and_flipped_roles() -> None:
    """A real OpenAI-compatible server on loopback plays the user; it is sent the guidelines and the scenario."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            reply = "###STOP###" if len(seen) > 1 else "I want to cancel my order."
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        task = _with(load_suite("tau2-retail").tasks[0], f"openai:http://127.0.0.1:{server.server_port}/v1#sim")
        messages, result = await _play(task, [Action(text="Sure, which order?")])
    finally:
        server.shutdown()
    assert messages[2] == Message(role="user", content="I want to cancel my order.")
    first = seen[0]
    assert first["model"] == "sim" and "<scenario>" in first["messages"][0]["content"]
    assert [m["role"] for m in seen[1]["messages"][1:]] == ["user", "assistant", "user"]  # roles flipped
    assert result.info["ended_by"] == "user_stop"


def test_no_user_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gymbox.environments.toolcall.env import ToolCallEnv

    monkeypatch.delenv("GYMBOX_TAU2_USER", raising=False)
    with pytest.raises(InvalidTask, match="--user-policy"):
        ToolCallEnv().reset(load_suite("tau2-airline").tasks[0], 0)
    with pytest.raises(InvalidTask, match="no task"):
        ToolCallEnv().reset(_with(load_suite("tau2-airline").tasks[0], task_id="nope"), 0)


def test_pass_hat_k() -> None:
    assert pass_hat_k(4, 2, 1) == 0.5 and pass_hat_k(4, 2, 2) == pytest.approx(1 / 6) and pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(3, 0, 2) == 0.0

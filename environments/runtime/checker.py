"""The conformance checker (`gymbox check-env`): the step API's rules, checked against a running environment."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import EnvError, EpisodeOver, InvalidAction, InvalidTask, UnknownSession
from gymbox.environments.api.models import (
    Action,
    Closed,
    FunctionCall,
    Observation,
    SessionRequest,
    StepRequest,
    StepResult,
    ToolCall,
)
from gymbox.environments.runtime.base import Runtime
from gymbox.tasks.spec import Limits, TaskSpec
from gymbox.tasks.suites import load_suite

HUGE_TEXT = "x" * 1_000_000


class CheckFailed(AssertionError):
    pass


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    seconds: float


@dataclass
class CheckReport:
    env: str
    tasks: list[str]
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


def sample_tasks(suite_names: Sequence[str], limit: int = 6) -> list[TaskSpec]:
    """Up to `limit` tasks, taking a new category from each suite in turn, so every kind of task is probed."""
    queues = []
    for name in suite_names:
        by_category: dict[str, list[TaskSpec]] = {}
        for task in load_suite(name).tasks:
            by_category.setdefault(task.category, []).append(task)
        # One task per category first, then the rest of each category.
        firsts = [tasks[0] for tasks in by_category.values()]
        queues.append(firsts + [t for tasks in by_category.values() for t in tasks[1:]])
    chosen: list[TaskSpec] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                task = queue.pop(0)
                if task not in chosen:
                    chosen.append(task)
    return chosen


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _probe_actions(observation: Observation) -> dict[str, Action]:
    """Actions that a careless agent sends; each must get an observation or a typed `InvalidAction`."""
    tools = observation.tools or []
    first = tools[0].function.name if tools else "anything"
    return {
        "empty action": Action(),
        "plain text": Action(text="I am not sure what to do."),
        "unknown tool": Action(tool_calls=[ToolCall.make("__gymbox_no_such_tool__", {"x": 1})]),
        "arguments not JSON": Action(tool_calls=[ToolCall(id="c1", function=FunctionCall(name=first,
                                                                                        arguments="{not json"))]),
        "arguments not an object": Action(tool_calls=[ToolCall(id="c1", function=FunctionCall(name=first,
                                                                                             arguments="[1, 2]"))]),
        "wrong argument types": Action(tool_calls=[ToolCall.make(first, {"__unexpected__": [[1], {"a": None}]})]),
        "huge text": Action(text=HUGE_TEXT),
    }


class Checker:
    """Runs every check against one runtime over a few tasks; each check opens its own sessions."""

    def __init__(self, runtime: Runtime, tasks: Sequence[TaskSpec], *, seed: int = 1234) -> None:
        if not tasks:
            raise ValueError("the conformance checker needs at least one task of the environment")
        self.runtime = runtime
        self.tasks = list(tasks)
        self.seed = seed

    async def run(self) -> CheckReport:
        spec = await self.runtime.spec()
        report = CheckReport(env=spec.id, tasks=[t.id for t in self.tasks])
        checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("spec", self.check_spec),
            ("reset is deterministic", self.check_reset_determinism),
            ("steps are deterministic", self.check_step_determinism),
            ("bad actions are explained", self.check_bad_actions),
            ("turn limit truncates", self.check_truncation),
            ("grade ends the episode", self.check_grade),
            ("close is idempotent", self.check_close),
            ("unknown session is typed", self.check_unknown_session),
            ("foreign task is refused", self.check_foreign_task),
        ]
        for name, check in checks:
            started = time.perf_counter()
            try:
                detail, passed = await check(), True
            except CheckFailed as exc:
                detail, passed = str(exc), False
            except EnvError as exc:
                detail, passed = f"{type(exc).__name__} ({exc.code}): {exc.message}", False
            report.results.append(CheckResult(name, passed, detail, time.perf_counter() - started))
        return report

    async def _client(self) -> EnvClient:
        return await self.runtime.client()

    async def check_spec(self) -> str:
        spec = await self.runtime.spec()
        _expect("@" in spec.id and spec.id == f"{spec.name}@{spec.version}", f"spec id {spec.id!r} is not NAME@VERSION")
        names = [t.function.name for t in spec.tools]
        _expect(len(names) == len(set(names)), f"tool names repeat: {names}")
        _expect(bool(spec.suites), "the environment declares no task suite")
        for suite in spec.suites:
            tasks = load_suite(suite).tasks
            _expect(bool(tasks), f"suite {suite!r} is empty")
            _expect(all(t.env.split("@")[0] == spec.name for t in tasks), f"suite {suite!r} has foreign tasks")
            _expect({t.split for t in tasks} >= {"train", "test"}, f"suite {suite!r} lacks a train/test split")
        return f"{spec.id}: {len(names)} fixed tools, suites {', '.join(spec.suites)}"

    async def check_reset_determinism(self) -> str:
        for task in self.tasks:
            async with await self._client() as a, await self._client() as b:
                first = await a.reset(task, self.seed)
                second = await b.reset(task, self.seed)
                _expect(a.session != b.session, "two resets returned the same session id")
                _expect(first == second, f"task {task.id}: two resets with seed {self.seed} differ")
                _expect(bool(first.messages), f"task {task.id}: the first observation has no message")
                _expect(first.tools is not None, f"task {task.id}: reset's observation does not list the tools")
        return f"{len(self.tasks)} tasks, same seed gives the same first observation"

    async def check_step_determinism(self) -> str:
        async def play(task: TaskSpec) -> list[StepResult]:
            async with await self._client() as client:
                observation = await client.reset(task, self.seed)
                results = []
                for action in list(_probe_actions(observation).values())[:3]:
                    result = await client.step(action)
                    results.append(result.model_copy(update={"info": {}}))
                    if result.done:
                        break
                return results

        for task in self.tasks:
            _expect(await play(task) == await play(task), f"task {task.id}: the same actions gave different results")
        return f"{len(self.tasks)} tasks replayed twice with identical results"

    async def check_bad_actions(self) -> str:
        answered = 0
        for task in self.tasks[:3]:
            async with await self._client() as probe:
                observation = await probe.reset(task, self.seed)
            for label, action in _probe_actions(observation).items():
                async with await self._client() as client:
                    await client.reset(task, self.seed)
                    try:
                        result = await client.step(action)
                        _expect(bool(result.observation.messages),
                                f"task {task.id}, {label}: the observation says nothing about what was wrong")
                    except InvalidAction:
                        pass  # a typed refusal is allowed; the session must survive it
                    state = await client.state()
                    _expect(state.session == client.session, f"task {task.id}, {label}: the session did not survive")
                    answered += 1
        return f"{answered} bad actions answered; every session survived"

    async def check_truncation(self) -> str:
        truncated = 0
        for task in self.tasks:
            short = task.model_copy(update={"limits": Limits(max_turns=2, max_seconds=task.limits.max_seconds,
                                                             step_seconds=task.limits.step_seconds)})
            async with await self._client() as client:
                await client.reset(short, self.seed)
                result = await client.step(Action())
                if result.done:
                    continue  # the environment ended the episode at once (single-turn tasks)
                result = await client.step(Action())
                _expect(result.truncated or result.terminated, f"task {task.id}: turn 2 of 2 was neither truncated "
                        "nor terminated")
                truncated += result.truncated
                try:
                    await client.step(Action())
                    raise CheckFailed(f"task {task.id}: a step after the episode ended was accepted")
                except EpisodeOver:
                    pass
        return f"{truncated} of {len(self.tasks)} tasks truncated at the turn limit; later steps refused"

    async def check_grade(self) -> str:
        """A harness limit ends an episode with `grade`: signals once, the session still open, no step after."""
        graded = 0
        for task in self.tasks[:3]:
            async with await self._client() as client:
                await client.reset(task, self.seed)
                answer = await client.grade()
                _expect(answer.session == client.session, f"task {task.id}: grade answered for another session")
                state = await client.state()
                _expect(state.session == client.session, f"task {task.id}: grade closed the session")
                for request in (client.step(Action()), client.grade()):
                    try:
                        await request
                        raise CheckFailed(f"task {task.id}: the episode went on after it was graded")
                    except EpisodeOver:
                        pass
                graded += 1
        return f"{graded} episodes graded at turn 0; later steps and grades refused with EpisodeOver"

    async def check_close(self) -> str:
        async with await self._client() as client:
            await client.reset(self.tasks[0], self.seed)
            session = client.session
            first = await client.close_session()
            _expect(first is not None and first.closed, "closing an open session did not report closed=True")
            again = await client.channel.call(SessionRequest(op="close", session=session), Closed, timeout=10)
            _expect(again.closed is False, f"closing twice answered {again}, expected closed=false")
            try:
                await client.channel.call(StepRequest(session=session, action=Action()), StepResult, timeout=10)
                raise CheckFailed("a step on a closed session was accepted")
            except UnknownSession:
                pass
        return "second close is harmless; a closed session refuses steps with UnknownSession"

    async def check_unknown_session(self) -> str:
        async with await self._client() as client:
            try:
                await client.channel.call(StepRequest(session=uuid.uuid4().hex, action=Action()), StepResult,
                                          timeout=10)
                raise CheckFailed("a step on a made-up session id was accepted")
            except UnknownSession as exc:
                return f"UnknownSession: {exc.message}"

    async def check_foreign_task(self) -> str:
        foreign = self.tasks[0].model_copy(update={"env": "__not_this_env__"})
        async with await self._client() as client:
            try:
                await client.reset(foreign, self.seed)
                raise CheckFailed("a task for another environment was accepted")
            except InvalidTask as exc:
                return f"InvalidTask: {exc.message}"


async def check_runtime(runtime: Runtime, tasks: Sequence[TaskSpec] | None = None, *, max_tasks: int = 6,
                        seed: int = 1234) -> CheckReport:
    """Check the environment behind a started runtime, on `tasks` or a sample of its declared suites."""
    if tasks is None:
        tasks = sample_tasks((await runtime.spec()).suites, max_tasks)
    return await Checker(runtime, tasks, seed=seed).run()

"""The session host: limits, expiry, capacity, crashes and timeouts, with no network in between."""

from __future__ import annotations

import asyncio
import time

import pytest

from gymbox.environments.api.errors import (
    CapacityError,
    EnvCrashed,
    EpisodeOver,
    InvalidRequest,
    InvalidTask,
    SessionExpired,
    StepTimeout,
    UnknownSession,
)
from gymbox.environments.api.models import Action, Graded, SessionRequest, StepRequest, StepResult, ToolCall
from gymbox.environments.api.sessions import SessionHost
from gymbox.environments.echo.env import EchoEnv
from gymbox.tasks.spec import Limits, TaskSpec
from tests.envs import CrashEnv, GradedEnv, SlowEnv, SlowGradedEnv, WrongReturnEnv


def step(host: SessionHost, session: str, action: Action | None = None) -> asyncio.Future[StepResult]:
    return host.step(session, StepRequest(session=session, action=action or Action()))  # type: ignore[return-value]


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_turn_limit_truncates_then_refuses(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv)
    task = echo_task.model_copy(update={"limits": Limits(max_turns=2)})
    started = await host.reset(task, 5)
    first = await step(host, started.session)
    assert not first.truncated
    second = await step(host, started.session)
    assert second.truncated and not second.terminated and second.info["truncated_by"] == "max_turns"
    with pytest.raises(EpisodeOver, match="start a new one"):
        await step(host, started.session)


async def test_a_cut_off_episode_is_graded_once(echo_task: TaskSpec) -> None:
    host = SessionHost(GradedEnv)
    task = echo_task.model_copy(update={"limits": Limits(max_turns=2)})
    started = await host.reset(task, 5)
    word = Action(tool_calls=[ToolCall.make("echo", {"word": task.payload["word"]})])
    assert "graded" not in (await step(host, started.session, word)).signals
    last = await step(host, started.session, word)
    assert last.truncated and last.signals["graded"] == 1.0 and last.signals["heard"] == 2.0


async def test_episode_time_limit_counts_the_environments_time(echo_task: TaskSpec) -> None:
    host = SessionHost(SlowGradedEnv)
    task = echo_task.model_copy(update={"limits": Limits(max_seconds=0.25)})
    quick = await host.reset(task.model_copy(update={"payload": {**task.payload, "step_seconds": 0.0}}), 5)
    await asyncio.sleep(0.3)  # the client thinking (or queueing for its policy) is not the environment's time
    assert not (await step(host, quick.session)).done
    slow = await host.reset(task.model_copy(update={"payload": {**task.payload, "step_seconds": 0.15}}), 5)
    assert not (await step(host, slow.session)).done
    result = await step(host, slow.session)
    assert result.truncated and result.info["truncated_by"] == "max_seconds" and result.signals["graded"] == 1.0


async def test_grade_ends_an_episode_the_client_cut_off_once(echo_task: TaskSpec) -> None:
    host = SessionHost(GradedEnv)
    started = await host.reset(echo_task, 5)
    word = Action(tool_calls=[ToolCall.make("echo", {"word": echo_task.payload["word"]})])
    await step(host, started.session, word)
    graded = await host.handle(SessionRequest(op="grade", session=started.session))
    assert graded == Graded(session=started.session, signals={"graded": 1.0, "heard": 1.0})
    assert (await host.state(started.session)).done
    for again in (host.grade(started.session), step(host, started.session)):
        with pytest.raises(EpisodeOver, match="ended"):
            await again
    # An episode that ended by itself was graded then: grading it again is refused the same way.
    submitted = await host.reset(echo_task, 5)
    assert (await step(host, submitted.session, Action(tool_calls=[ToolCall.make("submit")]))).terminated
    with pytest.raises(EpisodeOver, match="already ended"):
        await host.grade(submitted.session)


async def test_turns_the_client_answered_itself_count_against_the_limit(echo_task: TaskSpec) -> None:
    host = SessionHost(GradedEnv)
    task = echo_task.model_copy(update={"limits": Limits(max_turns=3)})
    started = await host.reset(task, 5)
    first = await host.step(started.session, StepRequest(session=started.session, action=Action(), turn=1))
    assert not first.done and (await host.state(started.session)).turn == 2
    with pytest.raises(InvalidRequest, match="turns only go forward"):
        await host.step(started.session, StepRequest(session=started.session, action=Action(), turn=1))
    last = await host.step(started.session, StepRequest(session=started.session, action=Action(), turn=2))
    assert last.truncated and last.info["truncated_by"] == "max_turns" and last.signals["graded"] == 1.0


async def test_terminated_is_not_truncated(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv)
    task = echo_task.model_copy(update={"limits": Limits(max_turns=1)})
    started = await host.reset(task, 5)
    result = await step(host, started.session, Action(tool_calls=[ToolCall.make("submit")]))
    assert result.terminated and not result.truncated


async def test_capacity_gives_a_clear_error_and_frees_on_close(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv, capacity=2)
    a = await host.reset(echo_task, 1)
    await host.reset(echo_task, 2)
    with pytest.raises(CapacityError, match="capacity"):
        await host.reset(echo_task, 3)
    assert (await host.close(a.session)).closed
    await host.reset(echo_task, 3)


async def test_idle_sessions_expire_with_their_own_error(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv, idle_timeout=0.1)
    echo_task = echo_task.model_copy(update={"limits": Limits(max_turns=1000)})
    idle = await host.reset(echo_task, 1)
    busy = await host.reset(echo_task, 2)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # keep one session busy while the other goes idle
        await step(host, busy.session)
        await asyncio.sleep(0.02)
    with pytest.raises(SessionExpired, match="expired"):
        await step(host, idle.session)
    await step(host, busy.session)


async def test_close_twice_and_unknown_ids_are_harmless(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv)
    started = await host.reset(echo_task, 1)
    assert (await host.close(started.session)).closed
    assert not (await host.close(started.session)).closed
    assert not (await host.close("never-existed")).closed
    with pytest.raises(UnknownSession, match="closed"):
        await step(host, started.session)
    with pytest.raises(UnknownSession, match="created by reset"):
        await step(host, "never-existed")


async def test_foreign_task_is_refused(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv)
    for env in ("toolcall", "echo@v9"):
        with pytest.raises(InvalidTask, match="send it to a server"):
            await host.reset(echo_task.model_copy(update={"env": env}), 1)
    assert await host.reset(echo_task.model_copy(update={"env": "echo@v1"}), 1)
    with pytest.raises(InvalidTask, match=r"payload\.word"):
        await host.reset(echo_task.model_copy(update={"payload": {}}), 1)
    assert len(host.sessions) == 1


async def test_a_crash_closes_that_session_only(echo_task: TaskSpec) -> None:
    host = SessionHost(CrashEnv)
    victim = await host.reset(echo_task, 1)
    bystander = await host.reset(echo_task, 2)
    with pytest.raises(EnvCrashed, match="RuntimeError in step: boom"):
        await step(host, victim.session, Action(text="crash"))
    with pytest.raises(UnknownSession, match="crashed"):
        await step(host, victim.session)
    assert (await step(host, bystander.session)).observation.messages


async def test_an_environment_returning_the_wrong_type_is_a_crash(echo_task: TaskSpec) -> None:
    host = SessionHost(WrongReturnEnv)
    started = await host.reset(echo_task, 1)
    with pytest.raises(EnvCrashed, match="not a StepResult"):
        await step(host, started.session)


async def test_a_slow_step_times_out_and_close_waits_for_it(echo_task: TaskSpec) -> None:
    host = SessionHost(SlowEnv)
    SlowEnv.events.clear()
    task = echo_task.model_copy(update={"payload": {"step_seconds": 0.5}, "limits": Limits(step_seconds=0.1)})
    started = await host.reset(task, 1)
    with pytest.raises(StepTimeout, match="step_seconds"):
        await step(host, started.session)
    # The caller got its answer while the step still ran, and the session is gone but not closed under it.
    assert SlowEnv.events == ["step-begun"]
    assert started.session not in host.sessions
    await wait_until(lambda: "closed" in SlowEnv.events)
    assert SlowEnv.events == ["step-begun", "step-ended", "closed"]  # closed only after the step returned


async def test_steps_of_different_sessions_run_concurrently(echo_task: TaskSpec) -> None:
    host = SessionHost(SlowEnv)
    SlowEnv.events.clear()
    task = echo_task.model_copy(update={"payload": {"step_seconds": 0.3}})
    sessions = [(await host.reset(task, i)).session for i in range(4)]
    await asyncio.gather(*(step(host, s) for s in sessions))
    # Four steps overlap: every one began before the first one ended.
    assert SlowEnv.events == ["step-begun"] * 4 + ["step-ended"] * 4


async def test_state_reports_turns_and_env_state(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv)
    started = await host.reset(echo_task, 9)
    await step(host, started.session, Action(tool_calls=[ToolCall.make("echo", {"word": echo_task.payload["word"]})]))
    state = await host.state(started.session)
    assert state.turn == 1 and state.seed == 9 and state.env_state["said"] == 1 and not state.done


async def test_reset_without_seed_derives_it_from_the_task(echo_task: TaskSpec) -> None:
    host = SessionHost(EchoEnv)
    a, b = await host.reset(echo_task, None), await host.reset(echo_task, None)
    assert a.seed == b.seed and a.observation == b.observation
    seeded = echo_task.model_copy(update={"seed": 42})
    assert (await host.reset(seeded, None)).seed == 42


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SessionHost(EchoEnv, capacity=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        SessionHost(EchoEnv, idle_timeout=0)

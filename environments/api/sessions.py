"""The session host: many concurrent episodes of one environment class, with limits, expiry and capacity."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from gymbox.environments.api.env import Environment
from gymbox.environments.api.errors import (
    CapacityError,
    EnvCrashed,
    EnvError,
    EpisodeOver,
    InvalidRequest,
    InvalidTask,
    SessionExpired,
    StepTimeout,
    UnknownSession,
)
from gymbox.environments.api.models import (
    Closed,
    EnvSpec,
    Graded,
    Health,
    Observation,
    Request,
    ResetRequest,
    ServerRequest,
    SessionRequest,
    SessionStarted,
    SessionState,
    StepRequest,
    StepResult,
)
from gymbox.tasks.spec import TaskSpec, derive_seed

log = logging.getLogger(__name__)
T = TypeVar("T")
_FORGET_AFTER = 10_000  # closed or expired ids remembered, so a late request gets the precise error


@dataclass(eq=False)
class Session:
    id: str
    env: Environment
    task: TaskSpec
    seed: int
    owner: object | None
    turn: int = 0
    done: bool = False
    env_seconds: float = 0.0  # spent in reset and step: what `max_seconds` limits (not the client's think time)
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SessionHost:
    """Hosts sessions of `env_cls`; every transport (ASGI, in-process) calls `handle`."""

    def __init__(self, env_cls: type[Environment], *, capacity: int = 256, idle_timeout: float = 600.0,
                 threads: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self.env_cls = env_cls
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self.sessions: dict[str, Session] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # id -> "closed" | "expired" | reason
        self._executor = ThreadPoolExecutor(max_workers=threads or min(64, capacity), thread_name_prefix="env")
        self._reaper: asyncio.Task[None] | None = None
        # Session ids: a random prefix per server and a counter (a fresh uuid4 per session costs a system call).
        self._id_prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    # ---- dispatch --------------------------------------------------------------------------------------

    async def handle(self, request: Request, owner: object | None = None) -> BaseModel:
        """Serve one validated request; errors are raised as `EnvError` subclasses."""
        if isinstance(request, StepRequest):
            return await self.step(request.session, request)
        if isinstance(request, ResetRequest):
            return await self.reset(request.task, request.seed, owner)
        if isinstance(request, SessionRequest):
            operation = {"close": self.close, "state": self.state, "grade": self.grade}[request.op]
            return await operation(request.session)
        assert isinstance(request, ServerRequest)
        return self.health() if request.op == "health" else self.spec()

    def health(self) -> Health:
        return Health(env=self.env_cls.env_id(), sessions=len(self.sessions), capacity=self.capacity)

    def spec(self) -> EnvSpec:
        cls = self.env_cls
        return EnvSpec(id=cls.env_id(), name=cls.name, version=cls.version, description=cls.description,
                       tools=list(cls.tools), suites=list(cls.suites), isolation=cls.isolation, capacity=self.capacity,
                       idle_timeout=self.idle_timeout)

    # ---- episode operations ----------------------------------------------------------------------------

    async def reset(self, task: TaskSpec, seed: int | None, owner: object | None = None) -> SessionStarted:
        name = task.env.split("@")[0]
        if name != self.env_cls.name or (("@" in task.env) and task.env != self.env_cls.env_id()):
            raise InvalidTask(f"task {task.id!r} is for environment {task.env!r}, but this server runs "
                              f"{self.env_cls.env_id()!r}; send it to a server of that environment")
        if len(self.sessions) >= self.capacity:
            raise CapacityError(f"the server already holds {len(self.sessions)} sessions, its capacity; close "
                                "finished sessions, wait for idle ones to expire, or raise --capacity",
                                capacity=self.capacity)
        self._ensure_reaper()
        if seed is None:
            seed = task.seed if task.seed is not None else derive_seed(task.id)
        session = Session(id=f"{self._id_prefix}{next(self._counter):x}", env=self.env_cls(), task=task, seed=seed,
                          owner=owner)
        self.sessions[session.id] = session  # counted against capacity while it starts
        try:
            began = time.monotonic()
            observation = await self._run(session, session.env.reset, task, seed, what="reset")
            session.env_seconds += time.monotonic() - began
            if not isinstance(observation, Observation):
                raise EnvCrashed(f"{self.env_cls.__name__}.reset returned {type(observation).__name__}, "
                                 "not an Observation")
        except BaseException:
            await self._discard(session, "failed to start")
            raise
        return SessionStarted(session=session.id, observation=observation, seed=seed, env=self.env_cls.env_id())

    async def step(self, session_id: str, request: StepRequest) -> StepResult:
        session = self._get(session_id)
        async with session.lock:
            if session.done:
                raise EpisodeOver(f"the episode of session {session_id} has ended after {session.turn} turns; "
                                  "start a new one with reset", turn=session.turn)
            if session.id not in self.sessions:  # closed while this request waited for the lock
                raise UnknownSession(f"session {session_id} was closed while the step waited")
            if request.turn is not None:
                if request.turn < session.turn:
                    raise InvalidRequest(f"step of session {session_id} says it is turn {request.turn}, but turn "
                                         f"{session.turn - 1} has been played; turns only go forward")
                session.turn = request.turn  # turns the client answered itself count against the limit
            began = time.monotonic()
            result = await self._run(session, session.env.step, request.action, what="step",
                                     now=session.env.step_now)
            session.env_seconds += time.monotonic() - began
            if not isinstance(result, StepResult):
                await self._discard(session, "crashed")
                raise EnvCrashed(f"{self.env_cls.__name__}.step returned {type(result).__name__}, not a StepResult")
            session.turn += 1
            session.last_used = time.monotonic()
            limits = session.task.limits
            if not result.done:
                if session.turn >= limits.max_turns:
                    result.truncated, result.info["truncated_by"] = True, "max_turns"
                elif session.env_seconds >= limits.max_seconds:
                    result.truncated, result.info["truncated_by"] = True, "max_seconds"
                if result.truncated:
                    result.signals.update(await self._grade(session))
            session.done = result.done
            return result

    async def grade(self, session_id: str) -> Graded:
        """End an episode that the client's own limit cut off (turns, tokens, time), graded as the server's limits
        grade theirs. Once: an episode that has ended (terminated, or truncated and graded then) is `EpisodeOver`."""
        session = self._get(session_id)
        async with session.lock:
            if session.done:
                raise EpisodeOver(f"the episode of session {session_id} has already ended after {session.turn} "
                                  "turns; the step that ended it carries its signals", turn=session.turn)
            if session.id not in self.sessions:
                raise UnknownSession(f"session {session_id} was closed while the grade request waited")
            session.done = True
            return Graded(session=session.id, signals=await self._grade(session))

    async def state(self, session_id: str) -> SessionState:
        session = self._get(session_id)
        now = time.monotonic()
        env_state = await self._run(session, session.env.state, what="state")
        return SessionState(session=session.id, task_id=session.task.id, seed=session.seed, turn=session.turn,
                            done=session.done, age_seconds=now - session.created,
                            idle_seconds=now - session.last_used, env_state=env_state)

    async def close(self, session_id: str) -> Closed:
        session = self.sessions.get(session_id)
        if session is None:
            return Closed(session=session_id, closed=False)
        await self._discard(session, "closed")
        return Closed(session=session_id, closed=True)

    async def close_owned(self, owner: object) -> int:
        """Close every session opened by `owner` (a connection that went away)."""
        owned = [s for s in self.sessions.values() if s.owner is owner]
        for session in owned:
            await self._discard(session, "closed: its connection was lost")
        return len(owned)

    async def shutdown(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            await self._discard(session, "closed: the server shut down")
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- internals ---------------------------------------------------------------------------------------

    async def _grade(self, session: Session) -> dict[str, float]:
        signals = await self._run(session, session.env.grade, what="grade")
        if not isinstance(signals, dict):
            await self._discard(session, "crashed")
            raise EnvCrashed(f"{self.env_cls.__name__}.grade returned {type(signals).__name__}, not a dict of "
                             "signals")
        return signals

    def _get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is not None:
            session.last_used = time.monotonic()
            return session
        reason = self._ended.get(session_id)
        if reason == "expired":
            raise SessionExpired(f"session {session_id} expired after {self.idle_timeout:g} s without requests; "
                                 "start a new episode with reset (or raise the server's idle timeout)")
        if reason is not None:
            raise UnknownSession(f"session {session_id} is {reason}; start a new episode with reset")
        raise UnknownSession(f"no session {session_id!r} on this server; sessions are created by reset")

    async def _run(self, session: Session, fn: Callable[..., T], *args: Any, what: str,
                   now: Callable[..., T | None] | None = None) -> T:
        """Call environment code: inline or on a worker thread, under the step time limit; crashes are typed.

        `now`, when given, is tried first on the event loop (`Environment.step_now`); None from it means "not at
        once", and `fn` goes to the worker thread as usual.
        """
        limit = session.task.limits.step_seconds
        try:
            if self.env_cls.inline:
                return fn(*args)
            if now is not None and (done := now(*args)) is not None:
                return done
            work = self._executor.submit(fn, *args)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(work), limit)
            except TimeoutError:
                # A thread cannot be stopped: forget the session now and close it once the call returns.
                if self._forget(session, f"closed: its {what} ran past the step limit of {limit:g} s"):
                    work.add_done_callback(lambda _: self._close_env(session))
                raise StepTimeout(f"{what} of session {session.id} took longer than {limit:g} s (the task's "
                                  "step_seconds limit); the session was closed", limit=limit) from None
        except EnvError:
            raise
        except Exception as exc:
            log.warning("environment %s raised in %s:\n%s", self.env_cls.env_id(), what, traceback.format_exc())
            await self._discard(session, f"closed: the environment crashed in {what}")
            raise EnvCrashed(f"the environment raised {type(exc).__name__} in {what}: {exc}; the session was "
                             "closed because its state is unknown", exception=type(exc).__name__) from exc

    def _forget(self, session: Session, reason: str) -> bool:
        """Take the session out of the table, remembering why; False when it was already gone."""
        if self.sessions.pop(session.id, None) is None:
            return False
        self._ended[session.id] = reason
        while len(self._ended) > _FORGET_AFTER:
            self._ended.popitem(last=False)
        return True

    def _close_env(self, session: Session) -> None:
        try:
            session.env.close()
        except Exception:  # a failing close must not hide the reason the session ended
            log.warning("close of session %s raised:\n%s", session.id, traceback.format_exc())

    async def _discard(self, session: Session, reason: str) -> None:
        if not self._forget(session, reason):
            return
        if self.env_cls.inline:
            self._close_env(session)
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_env, session)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        period = min(max(self.idle_timeout / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(period)
            await self.expire_idle()

    async def expire_idle(self) -> int:
        """Close sessions idle longer than the idle timeout; returns how many."""
        deadline = time.monotonic() - self.idle_timeout
        idle = [s for s in self.sessions.values() if s.last_used < deadline and not s.lock.locked()]
        for session in idle:
            await self._discard(session, "expired")
        return len(idle)

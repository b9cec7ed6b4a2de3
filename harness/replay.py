"""Replay: play a recorded trajectory again through the episode loop, with its recorded generations, and compare.

The episode loop (`harness/episode.py`) runs with a `ReplayPolicy` that gives back each recorded turn token for
token, on a fresh environment reset with the recorded task and seed (in a container from the recorded image, for
the docker runtime). Everything that comes back is compared with the recording: prompt and its token ids, each
turn's text, parsed action, observation, signals, end flags, token ids and loss mask, and how the episode ended,
graded where the harness stopped it, as the episode loop always does. Every divergence is reported.

What cannot be replayed is said, not called a divergence: a masked trajectory (an infrastructure failure ended
it; there is nothing to reproduce), the turns a time limit left unplayed, a turn cut at a token limit when no
tokenizer is given. With `twice`, each trajectory is replayed twice to tell whether the environment answers the
same actions the same way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from gymbox.agent.scripted import TOKEN_LIMITS, ReplayPolicy, cut_by_tokens
from gymbox.environments.api.errors import EnvError
from gymbox.environments.records import Trajectory
from gymbox.environments.runtime import make_runtime
from gymbox.environments.runtime.base import Runtime
from gymbox.harness.episode import EpisodeConfig, run_episode
from gymbox.harness.replay_compare import Divergence, compare, environment_differences

log = logging.getLogger(__name__)

IDENTICAL, DIVERGED, MASKED, FAILED, REFUSED = "identical", "diverged", "masked", "failed", "refused"


@dataclass
class ReplayResult:
    """What replaying one trajectory showed. `status`: identical, diverged, masked (not replayable: an
    infrastructure failure ended it), failed (the replay itself met an infrastructure error) or refused."""

    id: str
    status: str
    steps: int = 0  # actions the environment executed again
    divergences: list[Divergence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not replayed or not checked, and why
    deterministic: bool | None = None  # with `twice`: whether two replays got the same answers
    nondeterminism: list[Divergence] = field(default_factory=list)  # what differed between the two replays

    @property
    def ok(self) -> bool:
        """Nothing wrong found: identical, or nothing to replay."""
        return self.status in (IDENTICAL, MASKED)

    @property
    def divergence(self) -> str | None:
        """The first divergence, as text."""
        return str(self.divergences[0]) if self.divergences else None


class ReplayRefused(Exception):
    """A replay that would not prove anything (the recorded image is gone); the message says what to do."""


@dataclass(frozen=True)
class Plan:
    """How a trajectory is replayed: the episode settings and policy, and what the replay is expected to match."""

    config: EpisodeConfig
    policy: ReplayPolicy
    expected: Trajectory  # the recording as the replay should end: its played turns, how it stopped
    tokens: bool  # token ids are checked
    notes: tuple[str, ...] = ()


def plan(trajectory: Trajectory, tokenizer: Any = None) -> Plan:
    """The replay of `trajectory`: its recorded turns and no more, under the limits that can be reproduced.

    The turn limit and, with the policy's tokenizer, the token limits are reproduced exactly. The time limit is
    not (time is not replayed): the turns played before it are replayed and the replay stops after them, by its
    turn limit, graded as the recording was. Without a tokenizer, a turn cut at a token limit is not replayed.
    """
    notes = []
    tokens = tokenizer is not None and bool(trajectory.prompt_ids)
    if trajectory.prompt_ids and not tokens:
        notes.append("token ids not checked: replay with the policy's tokenizer to check them")
    expected = trajectory.model_copy(deep=True)
    by = trajectory.truncated_by if trajectory.truncated else None
    played = len(trajectory.turns)
    size = len(trajectory.token_ids)
    max_tokens = size if tokens and by == "max_tokens" else None
    max_model_len = size if tokens and by == "context" else None
    if by == "max_seconds" or (by in TOKEN_LIMITS and not tokens):
        if cut_by_tokens(trajectory):
            played -= 1
            notes.append(f"turn {played} was cut by the {by} limit and never executed: not replayed")
            cut = expected.turns.pop()
            if expected.turns:  # the grade after the cut lands on the replay's last turn instead
                expected.turns[-1].signals.update(cut.signals)
        if by == "max_seconds":
            notes.append(f"the time limit ended it after {played} turns: those are replayed")
        expected.truncated_by = "max_turns" if played else "max_seconds"
    # No turn played: a time limit ended it right after reset, which the smallest time limit reproduces.
    seconds = 1e-9 if played == 0 else 1e9
    config = EpisodeConfig(parser=str(trajectory.provenance.sampling.get("parser", "hermes")),
                           instructions=trajectory.instructions is not None, max_turns=max(played, 1),
                           max_tokens=max_tokens, episode_seconds=seconds, retries=0)
    policy = ReplayPolicy.from_trajectory(trajectory, tokenizer=tokenizer if tokens else None,
                                          max_model_len=max_model_len)
    return Plan(config, policy, expected, tokens, tuple(notes))


async def _play(runtime: Runtime, trajectory: Trajectory, how: Plan) -> Trajectory:
    task = trajectory.task
    async with await runtime.client(task=task, timeout=task.limits.step_seconds + 30) as client:
        return await run_episode(client, task, how.policy, config=how.config, seed=trajectory.seed,
                                 sample=trajectory.sample, base_seed=trajectory.base_seed,
                                 provenance=trajectory.provenance)


async def _play_safely(runtime: Runtime, trajectory: Trajectory, how: Plan) -> Trajectory | str:
    """The replayed trajectory, or why the replay failed (an infrastructure error, never a divergence)."""
    try:
        replayed = await _play(runtime, trajectory, how)
    except EnvError as err:
        return f"the replay could not start an episode: {err.code}: {err}"
    if replayed.error is not None and replayed.error.kind.masked:
        return f"the replay failed: {replayed.error.code}: {replayed.error.message}"
    return replayed


def _masked(trajectory: Trajectory) -> ReplayResult:
    error = trajectory.error
    assert error is not None
    return ReplayResult(trajectory.id, MASKED, notes=[
        f"masked: {error.code} ({error.kind.value}): {error.message}; it did not end by the agent's doing or "
        "the environment's, so there is nothing to reproduce"])


def _executed(replayed: Trajectory) -> int:
    """Turns whose action the environment executed: parsed, and not cut at a token limit."""
    cut = replayed.turns[-1] if cut_by_tokens(replayed) else None
    return sum(t.action is not None and t is not cut for t in replayed.turns)


async def replay_one(runtime: Runtime, trajectory: Trajectory, *, tokenizer: Any = None,
                     twice: bool = False) -> ReplayResult:
    """Replay one trajectory on a started runtime of its environment (twice, to check determinism)."""
    if trajectory.masked:
        return _masked(trajectory)
    how = plan(trajectory, tokenizer)
    replayed = await _play_safely(runtime, trajectory, how)
    if isinstance(replayed, str):
        return ReplayResult(trajectory.id, FAILED, notes=[*how.notes, replayed])
    found = compare(how.expected, replayed, tokens=how.tokens)
    result = ReplayResult(trajectory.id, DIVERGED if found else IDENTICAL, _executed(replayed), found,
                          list(how.notes))
    if twice:
        again = await _play_safely(runtime, trajectory, how)
        if isinstance(again, str):
            result.notes.append(f"second replay: {again}")
        else:
            result.nondeterminism = environment_differences(replayed, again)
            result.deterministic = not result.nondeterminism
    return result


async def start_runtime(trajectory: Trajectory, kind: str, *, any_image: bool = False) -> tuple[Runtime, list[str]]:
    """A started runtime of `kind` for the trajectory's environment, with notes on what it runs.

    The docker runtime starts containers from the recorded image digest; when that image is gone, replaying on
    another image would not prove the recording reproducible: refused, unless `any_image` (then a warning).
    """
    env = trajectory.provenance.env
    if kind != "docker":
        runtime = make_runtime(kind, env)
        await runtime.start()
        return runtime, []
    digest, notes = trajectory.provenance.image_digest, []
    image = digest if digest and await _image_exists(digest) else None
    if image is None:
        named = trajectory.provenance.image
        why = (f"the recorded image {digest} of {env} is gone (rebuilt or removed)" if digest else
               f"the recording names no image digest for {env}")
        if digest and not any_image:
            raise ReplayRefused(f"{why}; a replay on another image would not show that the recording reproduces. "
                                "Restore that image, or pass --any-image to replay on the current one anyway")
        notes.append(f"{why}: replayed on the current image {named or 'of the environment'}")
        log.warning("%s", notes[-1])
        image = named
    runtime = make_runtime("docker", env, **({"image": image} if image else {}))
    await runtime.start()
    return runtime, notes


async def _image_exists(reference: str) -> bool:
    import docker.errors

    from gymbox.environments.runtime.containers import docker_client

    engine = await asyncio.to_thread(docker_client)
    try:
        await asyncio.to_thread(engine.images.get, reference)
    except docker.errors.ImageNotFound:
        return False
    return True


async def replay(trajectories: list[Trajectory], *, runtime: str | None = None, tokenizer: Any = None,
                 twice: bool = False, any_image: bool = False) -> list[ReplayResult]:
    """Replay trajectories, one runtime per (environment, runtime kind, image); see `replay_one`."""
    results: list[ReplayResult] = []
    started: dict[tuple[str, str, str | None], tuple[Runtime, list[str]] | str] = {}
    try:
        for trajectory in trajectories:
            if trajectory.masked:
                results.append(_masked(trajectory))
                continue
            kind = runtime or trajectory.provenance.runtime
            key = (trajectory.provenance.env, kind, trajectory.provenance.image_digest if kind == "docker" else None)
            if key not in started:
                try:
                    started[key] = await start_runtime(trajectory, kind, any_image=any_image)
                except ReplayRefused as err:
                    started[key] = f"refused: {err}"
                except EnvError as err:
                    started[key] = f"the runtime could not start: {err.code}: {err}"
            entry = started[key]
            if isinstance(entry, str):
                results.append(ReplayResult(trajectory.id, REFUSED if entry.startswith("refused") else FAILED,
                                            notes=[entry]))
                continue
            result = await replay_one(entry[0], trajectory, tokenizer=tokenizer, twice=twice)
            result.notes[:0] = entry[1]
            results.append(result)
    finally:
        for entry in started.values():
            if isinstance(entry, tuple):
                await entry[0].stop()
    return results

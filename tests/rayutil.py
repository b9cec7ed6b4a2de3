"""Helpers for tests of the Ray harness (the `ray_local` fixture is in conftest.py)."""

from __future__ import annotations

import asyncio

from gymbox.harness.ray_runner import RayRollouts


async def generations_reach(rollouts: RayRollouts, count: int, timeout: float = 120.0) -> None:
    """Wait until the policy actor has been asked for `count` generations: episodes are running."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await rollouts.policy.requested.remote() < count:
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {count} generations in {timeout} s"
        await asyncio.sleep(0.05)

"""Which tasks a training step plays: the suite walked in seeded passes, never one task twice in a group's seeds."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence

from gymbox.environments.records import Trajectory
from gymbox.tasks.spec import TaskSpec, derive_seed


def step_indices(n: int, per: int, step: int, seed: int) -> list[int]:
    """The suite indices (of `n` tasks) that step `step` plays, `per` of them.

    The suite is walked in a seeded order, reshuffled on each pass, so every task is played once per pass. A step
    whose window crosses into the next pass would take a task from the end of one pass and meet it again at the
    start of the next; so the tasks that end a pass inside a step go to the end of the next pass's order. With
    `per` <= `n` a step's tasks are then distinct; with more, a step covers the suite and repeats some tasks.
    """
    if n < 1 or per < 1 or step < 0:
        raise ValueError(f"need at least one task, one task per step and a step >= 0; got {n}, {per}, {step}")
    first, last = step * per, (step + 1) * per
    orders = _pass_orders(n, per, seed, (last - 1) // n)
    return [orders[i // n][i % n] for i in range(first, last)]


def _pass_orders(n: int, per: int, seed: int, upto: int) -> list[list[int]]:
    """The orders of passes 0..upto; a pass's order depends on the tail of the one before it (see above)."""
    orders: list[list[int]] = []
    for p in range(upto + 1):
        order = list(range(n))
        random.Random(seed * 7919 + p).shuffle(order)
        tail = (p * n) % per  # how many of the previous pass's tasks share the step that starts this pass
        if p and tail and per <= n:
            before = set(orders[-1][n - tail:])
            order = [i for i in order if i not in before] + [i for i in order if i in before]
        orders.append(order)
    return orders


def rounds(tasks: Sequence[TaskSpec]) -> list[list[TaskSpec]]:
    """`tasks` split so that no task id repeats within a round: round r holds each task's (r+1)-th occurrence."""
    out: list[list[TaskSpec]] = []
    seen: dict[str, int] = {}
    for task in tasks:
        r = seen.get(task.id, 0)
        seen[task.id] = r + 1
        if r == len(out):
            out.append([])
        out[r].append(task)
    return out


def round_seed(base_seed: int, r: int) -> int:
    """The base seed of round `r`: round 0 keeps the step's own, later rounds get their own, so a task played twice
    in one step gets distinct group ids, environment seeds and sampling seeds."""
    return base_seed if r == 0 else derive_seed(base_seed, "round", r) % 2**31


async def play_rounds(run: Callable[[list[TaskSpec], int], Awaitable[list[Trajectory]]],
                      tasks: Sequence[TaskSpec], base_seed: int) -> list[Trajectory]:
    """`run(tasks, base_seed)` once per round of `tasks`, one after another; the trajectories in round order."""
    out: list[Trajectory] = []
    for r, part in enumerate(rounds(tasks)):
        out += await run(part, round_seed(base_seed, r))
    return out

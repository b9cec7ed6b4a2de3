"""Tasks of the `echo` environment: repeat a word, then submit (the reference environment for API tests)."""

from __future__ import annotations

import random

from gymbox.tasks.spec import Limits, TaskSpec

_WORDS = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "iris", "jade", "kelp", "lumen"]


def demo_tasks() -> list[TaskSpec]:
    """24 tasks; every fourth one is in the test split."""
    rng = random.Random(7)
    tasks = []
    for i in range(24):
        word, times = rng.choice(_WORDS), 1 + i % 3
        said = "once" if times == 1 else f"{times} times"
        tasks.append(TaskSpec(
            id=f"echo-{i:03d}", env="echo", payload={"word": word, "times": times}, limits=Limits(max_turns=8),
            instruction=f"Say the word '{word}' {said} with the echo tool (one call each), then submit.",
            category=f"repeat-{1 + i % 3}", split="test" if i % 4 == 3 else "train",
        ))
    return tasks

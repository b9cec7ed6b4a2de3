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
        word = rng.choice(_WORDS)
        tasks.append(TaskSpec(
            id=f"echo-{i:03d}", env="echo", instruction=f"Say the word '{word}' with the echo tool, then submit.",
            payload={"word": word, "times": 1 + i % 3}, limits=Limits(max_turns=8),
            category=f"repeat-{1 + i % 3}", split="test" if i % 4 == 3 else "train",
        ))
    return tasks

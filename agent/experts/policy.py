"""`ExpertPolicy`: plays each task's expert through the episode loop, writing its actions in the episode's format.

The expert decides the next `Action` from the task and the conversation; the episode's parser renders it as text;
with a tokenizer (the trained model's) the text is encoded as the model would have generated it, ending with the
end-of-sequence token, every token with logprob 0.0. The episode loop then records it like any generation: the
demonstration has the model's chat template, the parser's format and the same loss masks as the model's own turns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gymbox.agent.experts.base import NoDemonstration
from gymbox.agent.experts.table import expert_for
from gymbox.agent.parsers import get_parser
from gymbox.agent.policy import Completion, Policy, PolicyError, Prompt, Sampling
from gymbox.agent.scripted import encode_reply


class ExpertPolicy(Policy):
    """The expert of every environment, as one policy (a token policy when given a tokenizer)."""

    def __init__(self, *, tokenizer: Any = None, max_model_len: int | None = None, name: str = "expert") -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.name = name

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        started = time.perf_counter()
        task = prompt.task
        if task is None:
            raise PolicyError("an expert needs the episode's task in the prompt (Prompt.task); the episode loop "
                              "fills it: play experts through harness.episode")
        expert = expert_for(task.env)
        # A text game's plan may be read from (or made into) the game cache: not on the event loop.
        action = await asyncio.to_thread(expert, task, list(prompt.messages))
        parser = get_parser(prompt.parser or "hermes")(tools=prompt.tools)
        try:
            text = parser.render(action)
        except ValueError as err:
            raise NoDemonstration(f"{task.id}: the {parser.name} format cannot write the expert's action "
                                  f"({err}); use another --parser") from err
        return encode_reply(text, prompt, sampling, tokenizer=self.tokenizer, max_model_len=self.max_model_len,
                            started=started)

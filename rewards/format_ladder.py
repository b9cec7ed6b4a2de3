"""A graded tool-call format reward: partial credit on the way to a call the parser accepts.

ToolRL's format reward is all or nothing, which gives a small model that never writes a tool call no signal at all
(every rollout scores 0 and every group's advantage is 0). This ladder credits each step towards a call, a quarter
each, averaged over the episode's turns:

1. the reply names one of the episode's tools;
2. it holds a JSON object;
3. one of its JSON objects is a call: a "name" that is one of the tools, with an "arguments" object;
4. the episode's parser accepted a tool call from the reply (the environment received it).

Steps are scored independently, so a reply can earn step 4 (a call in another format, e.g. hermes tags) with any
of the others; a perfect call in the requested format earns all four.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from typing import Any

from gymbox.environments.records import Trajectory, Turn

STEP = 0.25
MAX_OBJECTS = 8  # JSON objects looked at per reply: enough for a few calls, bounded on a pathological reply


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects embedded in `text`, in order (at most MAX_OBJECTS)."""
    decoder, start, found = json.JSONDecoder(), 0, 0
    while found < MAX_OBJECTS and (start := text.find("{", start)) != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start += 1
            continue
        if isinstance(value, dict):
            found += 1
            yield value
        start = end


def turn_score(turn: Turn, tools: set[str]) -> float:
    """The ladder's score of one reply, in [0, 1]."""
    text = turn.text
    objects = list(json_objects(text))
    named = any(name in text for name in tools)
    is_call = any(o.get("name") in tools and isinstance(o.get("arguments"), dict) for o in objects)
    accepted = turn.action is not None and bool(turn.action.tool_calls) and turn.parse_error is None
    return STEP * (named + bool(objects) + is_call + accepted)


def format_ladder(trajectory: Trajectory) -> float | None:
    """Mean ladder score over the episode's turns; None for a task without tools (there is no call to make)."""
    tools = {t.function.name for t in trajectory.tools}
    if not tools or not trajectory.turns:
        return None
    return statistics.fmean(turn_score(turn, tools) for turn in trajectory.turns)

"""Tasks of the `toolcall` environment, read from the Berkeley Function Calling Leaderboard data in `bfcl-eval`.

Each BFCL entry becomes one `TaskSpec` whose id is the BFCL id and whose category is the BFCL category. The
split is fixed by the id alone: `blake2b(id) % 5 == 0` puts a task in `test`, any other in `train`, so adding
data or categories never moves an existing task between splits.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from typing import Any

from gymbox.tasks.spec import Limits, TaskSpec

# Checked by an exact match of the calls against the leaderboard's possible answers.
AST_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
)
# Pass with no call (irrelevance) or with at least one call (relevance); there is no answer file.
RELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")
SINGLE_TURN_CATEGORIES = AST_CATEGORIES + RELEVANCE_CATEGORIES
MULTI_TURN_CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")

# The function documents of each stateful backend class (`bfcl_eval/data/multi_turn_func_doc/`).
FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}

# Entries whose possible answers no call can match under the leaderboard's own rules; left out of every suite.
UNANSWERABLE = {
    "live_simple_106-63-0": "the required parameter 'auto_loan_payment_start' has no allowed value",
    "live_simple_112-68-0": "the required parameter 'acc_routing_start' has no allowed value",
    "live_multiple_507-149-4": "the required parameter 'origin_airport' may only be omitted",
    "live_multiple_862-181-3": "the answer needs 'journey_start_time', which the function does not declare",
    "live_multiple_964-207-0": "the answer names 'question' but the function requires 'statement'",
    "multi_turn_miss_func_49": "'tail' is held back until turn 3 but the ground truth calls it in turn 1",
}

# The leaderboard stops a multi-turn entry after 20 steps within one user turn; one more step ends the turn.
STEPS_PER_TURN = 21
SMOKE_TRAIN, SMOKE_TEST = 3, 2  # tasks of each split taken from every category for the smoke suite
_DATA = "data"


def split_of(task_id: str) -> str:
    """The fixed split of a task id: `test` for one id in five (by blake2b of the id), else `train`."""
    digest = hashlib.blake2b(task_id.encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") % 5 == 0 else "train"


@cache
def _read_lines(*parts: str) -> tuple[dict[str, Any], ...]:
    """Parse one JSON-lines file shipped in `bfcl_eval/data/` (cached: the files never change in a process)."""
    try:
        path = resources.files("bfcl_eval").joinpath(_DATA, *parts)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("toolcall tasks read BFCL's data from the bfcl-eval package; install it without "
                                  "its dependencies: pip install --no-deps bfcl-eval==2026.3.23") from exc
    return tuple(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _entries(category: str) -> tuple[dict[str, Any], ...]:
    return _read_lines(f"BFCL_v4_{category}.json")


def _answers(category: str) -> dict[str, Any]:
    return {row["id"]: row["ground_truth"] for row in _read_lines("possible_answer", f"BFCL_v4_{category}.json")}


def func_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    """The BFCL function documents of one multi-turn backend class."""
    return _read_lines("multi_turn_func_doc", FUNC_DOC_FILES[class_name])


def _first_user_message(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")


def _check_of(category: str) -> str:
    """How the environment judges a single-turn reply (see `environments/toolcall/single.py`)."""
    if category == "live_relevance":
        return "any_call"
    if category.endswith("irrelevance"):
        return "no_call"
    return "calls_any_order" if "parallel" in category else "calls"


def _single_task(entry: dict[str, Any], category: str, answer: list[dict[str, Any]] | None) -> TaskSpec:
    messages = entry["question"][0]
    payload = {"kind": "single", "check": _check_of(category), "messages": messages, "functions": entry["function"],
               "ground_truth": answer}
    return TaskSpec(id=entry["id"], env="toolcall", instruction=_first_user_message(messages), payload=payload,
                    limits=Limits(max_turns=1), category=category, split=split_of(entry["id"]))


@cache
def category_tasks(category: str, include_unanswerable: bool = False) -> tuple[TaskSpec, ...]:
    """Every task of one BFCL category, in the data file's order; the `UNANSWERABLE` ones only when asked."""
    if category in MULTI_TURN_CATEGORIES:
        return tuple(_multi_turn_tasks(category, include_unanswerable))
    if category not in SINGLE_TURN_CATEGORIES:
        known = ", ".join(SINGLE_TURN_CATEGORIES + MULTI_TURN_CATEGORIES)
        raise KeyError(f"no toolcall category {category!r}; known: {known}")
    answers = _answers(category) if category in AST_CATEGORIES else {}
    tasks = []
    for entry in _entries(category):
        if entry["id"] in UNANSWERABLE and not include_unanswerable:
            continue
        answer = answers.get(entry["id"])
        if category in AST_CATEGORIES and answer is None:
            raise ValueError(f"BFCL entry {entry['id']!r} has no possible answer")
        tasks.append(_single_task(entry, category, answer))
    return tuple(tasks)


def _multi_turn_tasks(category: str, include_unanswerable: bool) -> list[TaskSpec]:
    answers = _answers(category)
    tasks = []
    for entry in _entries(category):
        if entry["id"] in UNANSWERABLE and not include_unanswerable:
            continue
        functions = [doc for name in entry["involved_classes"] for doc in func_docs(name)]
        # miss_func: a function is held back until the turn named in `missed_function`, as the leaderboard does.
        missed: dict[str, list[dict[str, Any]]] = {}
        for turn, names in entry.get("missed_function", {}).items():
            missed[turn] = [doc for doc in functions if doc["name"] in names]
            functions = [doc for doc in functions if doc["name"] not in names]
        turns = entry["question"]
        payload = {
            "kind": "multi",
            "turns": turns,
            "functions": functions,
            "missed_functions": missed,
            "initial_config": entry["initial_config"],
            "involved_classes": entry["involved_classes"],
            "long_context": category == "multi_turn_long_context",
            "ground_truth": answers[entry["id"]],
        }
        tasks.append(TaskSpec(
            id=entry["id"], env="toolcall", instruction=_first_user_message(turns[0]), payload=payload,
            limits=Limits(max_turns=STEPS_PER_TURN * len(turns), max_seconds=1800.0), category=category,
            split=split_of(entry["id"]),
        ))
    return tasks


def _tasks(categories: tuple[str, ...]) -> list[TaskSpec]:
    return [task for category in categories for task in category_tasks(category)]


def single_turn_tasks() -> list[TaskSpec]:
    """Suite `toolcall-single`: the single-turn categories (AST-checked calls, irrelevance and relevance)."""
    return _tasks(SINGLE_TURN_CATEGORIES)


def multi_turn_tasks() -> list[TaskSpec]:
    """Suite `toolcall-multi`: multi-turn conversations with stateful backends, checked by state after each turn."""
    return _tasks(MULTI_TURN_CATEGORIES)


def smoke_tasks() -> list[TaskSpec]:
    """Suite `toolcall-smoke`: the first 3 train and 2 test tasks of every category, for fast tests and demos."""
    tasks = []
    for category in SINGLE_TURN_CATEGORIES + MULTI_TURN_CATEGORIES:
        everything = category_tasks(category)
        tasks += [t for t in everything if t.split == "train"][:SMOKE_TRAIN]
        tasks += [t for t in everything if t.split == "test"][:SMOKE_TEST]
    return tasks

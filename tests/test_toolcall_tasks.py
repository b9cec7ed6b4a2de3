"""Task loaders of the toolcall environment: every BFCL category it claims, fixed splits, the suites."""

from __future__ import annotations

import hashlib

import pytest

from gymbox.tasks import load_suite
from gymbox.tasks.suites import SUITES
from gymbox.tasks.toolcall import suite as tc


@pytest.mark.parametrize("category", tc.SINGLE_TURN_CATEGORIES + tc.MULTI_TURN_CATEGORIES)
def test_every_category_loads(category: str) -> None:
    tasks = tc.category_tasks(category)
    assert len(tasks) >= 15
    assert len({t.id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.env == "toolcall" and task.category == category and task.split in ("train", "test")
        assert task.id.rsplit("_", 1)[0] == category
        assert task.instruction, task.id
        if category in tc.MULTI_TURN_CATEGORIES:
            p = task.payload
            assert p["kind"] == "multi" and len(p["turns"]) == len(p["ground_truth"])
            assert p["functions"] and set(p["involved_classes"]) <= set(tc.FUNC_DOC_FILES)
            assert task.limits.max_turns == tc.STEPS_PER_TURN * len(p["turns"])
        else:
            p = task.payload
            assert p["kind"] == "single" and p["messages"]
            assert p["functions"] or category == "live_irrelevance"  # a few offer no function at all
            assert (p["ground_truth"] is not None) == (category in tc.AST_CATEGORIES)


def test_miss_func_holds_functions_back() -> None:
    task = tc.category_tasks("multi_turn_miss_func")[0]
    missed = task.payload["missed_functions"]
    assert missed == {"3": [d for d in tc.func_docs("GorillaFileSystem") if d["name"] == "sort"]}
    assert "sort" not in {d["name"] for d in task.payload["functions"]}
    assert task.payload["turns"][3] == []


def test_split_is_a_pure_function_of_the_id() -> None:
    for task_id in ("simple_python_0", "irrelevance_2", "multi_turn_base_0", "some_future_id_17"):
        digest = hashlib.blake2b(task_id.encode(), digest_size=8).digest()
        assert tc.split_of(task_id) == ("test" if int.from_bytes(digest, "big") % 5 == 0 else "train")
    # Pinned: these must never move, whatever data is added.
    assert [tc.split_of(f"irrelevance_{i}") for i in range(6)] == ["train", "train", "test", "train", "train", "test"]
    assert tc.split_of("multi_turn_base_0") == "test" and tc.split_of("live_multiple_0-0-0") == "train"


def test_suites_are_registered_with_both_splits() -> None:
    sizes = {}
    for name in ("toolcall-single", "toolcall-multi", "toolcall-smoke"):
        assert name in SUITES
        suite = load_suite(name)
        train, test = len(suite.split("train")), len(suite.split("test"))
        assert train and test and train + test == len(suite)
        assert 0.15 < test / len(suite) < 0.45
        sizes[name] = len(suite)
    assert sizes["toolcall-single"] > 3400 and sizes["toolcall-multi"] > 790
    smoke = load_suite("toolcall-smoke")
    assert {t.category for t in smoke.tasks} == set(tc.SINGLE_TURN_CATEGORIES + tc.MULTI_TURN_CATEGORIES)
    assert {t.id for t in smoke.tasks} <= {t.id for t in load_suite("toolcall-single").tasks + load_suite(
        "toolcall-multi").tasks}


def test_unanswerable_entries_are_left_out() -> None:
    single = {t.id for t in load_suite("toolcall-single").tasks} | {t.id for t in load_suite("toolcall-multi").tasks}
    assert not single & set(tc.UNANSWERABLE)
    everything = {t.id for c in tc.SINGLE_TURN_CATEGORIES + tc.MULTI_TURN_CATEGORIES
                  for t in tc.category_tasks(c, include_unanswerable=True)}
    assert set(tc.UNANSWERABLE) <= everything


def test_loading_is_cached() -> None:
    first = tc.single_turn_tasks()
    tc.multi_turn_tasks()
    again = tc.single_turn_tasks()
    # The data files are parsed once a process: a second load hands back the very same task objects.
    assert len(again) > 3400 and all(a is b for a, b in zip(first, again, strict=True))


def test_unknown_category_is_refused() -> None:
    with pytest.raises(KeyError, match="no toolcall category"):
        tc.category_tasks("web_search")

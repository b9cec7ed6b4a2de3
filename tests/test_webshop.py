"""The `webshop` environment: catalog, search, the spec's reward values, pages and actions, bad input, the expert."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
from pathlib import Path

import pytest

from gymbox.environments.api import Action, ToolCall
from gymbox.environments.api.errors import EpisodeOver, InvalidTask
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime
from gymbox.environments.webshop.env import WebShopEnv
from gymbox.environments.webshop.reward import normalize_color, purchase_reward
from gymbox.environments.webshop.search import BadQuery, engine_for
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.spec import Limits
from gymbox.tasks.webshop.catalog import Goal, Product, generated_catalog, make_product
from gymbox.tasks.webshop.expert import FirstResultBaseline, WebShopExpert
from gymbox.tasks.webshop.goals import price_bound


@pytest.fixture(scope="module")
def tasks() -> list[TaskSpec]:
    return list(load_suite("webshop").tasks)


def play(task: TaskSpec, policy_cls: type) -> tuple[float, list]:
    """One episode in-process, the policy reading the last observation."""
    env, policy = WebShopEnv(), policy_cls(task)
    text = env.reset(task, 0).messages[0].content
    results = []
    for _ in range(task.limits.max_turns):
        results.append(env.step(Action(text=policy.act(text))))
        text = results[-1].observation.messages[0].content
        if results[-1].terminated:
            return results[-1].reward or 0.0, results
    return 0.0, results


def test_catalog_is_deterministic_with_goals_splits_and_near_neighbours() -> None:
    catalog = generated_catalog(0, 5000)
    assert len(catalog.products) == 5000 and len({p.asin for p in catalog.products}) == 5000
    assert {p.category for p in catalog.products} == {"fashion", "makeup", "electronics", "furniture", "food"}
    assert generated_catalog.__wrapped__(0, 5000) == catalog  # made again from the seed, not read from a cache
    assert make_product(0, 7, set()) == catalog.products[7] or catalog.products[7].asin  # same product at any size
    assert generated_catalog(1, 300).products[0] != generated_catalog(2, 300).products[0]
    splits = [s for _, s in catalog.goals]
    assert splits.count("test") == 500 and splits.count("train") == 1000
    for goal, _ in catalog.goals:
        product = catalog.get(goal.asin)
        assert set(goal.attributes) <= set(product.attributes) and goal.options.items() <= {
            (n, v) for n, vs in product.options.items() for v in vs}
        assert goal.price_upper is None or product.price < goal.price_upper
        assert goal.instruction.startswith("i am looking for") and goal.paraphrase not in ("", goal.instruction)
        neighbours = [p for p in catalog.products if p.query == product.query and p.asin != product.asin and (
            p.attributes != product.attributes or p.options != product.options or p.price != product.price)]
        assert len(neighbours) >= 20, goal.asin
    with pytest.raises(ValueError, match="at least 300 products"):
        generated_catalog(0, 10)


def test_price_bound_follows_the_spec() -> None:
    rng = random.Random(0)
    for price in (3.0, 19.99, 455.0, 975.0):
        bounds = {price_bound(price, rng) for _ in range(200)}
        allowed = [p for p in range(10, 1000, 10) if p > price][:4]
        if len(allowed) < 2:
            assert bounds == {None}
        else:
            assert bounds == set(map(float, allowed[1:]))  # the larger of two of the first four: never the first


def test_search_is_bm25_over_the_catalog_and_never_parses_operators() -> None:
    catalog = generated_catalog(0, 5000)
    engine = engine_for(catalog)
    goal, _ = catalog.goals[0]
    title = catalog.get(goal.asin).title
    assert engine.search(title)[0] == goal.asin and len(engine.search(title)) == 50
    assert engine.search(title) == engine_for(catalog).search(title.upper())  # lower-cased
    for query in ('"AND" OR NOT * title:x (', "shirt AND", "a\\b", "text:shirt^9~2"):
        assert len(engine.search(query)) == 50  # operators are words, never syntax errors
    with pytest.raises(BadQuery, match="no words"):
        engine.search("*:*")
    assert engine.search("été café 漢字") == []


def _product(**changes: object) -> Product:
    base = Product(asin="A1", title="Green Tea Tree Oil Facial Cleanser", description="a gentle cleanser",
                   bullets=("oil free formula",), category="beauty", query="cleanser",
                   breadcrumb=("beauty", "skin care", "face"), price=40.0, options={},
                   attributes=("tea tree", "oil free", "facial"))
    return dataclasses.replace(base, **changes)


def test_reward_reference_values_from_the_spec() -> None:
    goal_product = _product()
    goal = Goal(asin="A1", instruction="", attributes=("tea tree", "oil free", "facial"),
                options={"size": "3 pack", "color": "green"}, price_upper=50.0)
    exact = purchase_reward(goal, goal_product, goal_product, {"size": "3 pack", "color": "green"}, 40.0)
    assert exact.reward == 1.0 and exact.signals()["success"] == 1.0
    # 2 of 3 attributes, 1 of 2 options and the price: 4/6.
    bought = _product(asin="A2", attributes=("tea tree", "oil free"), title="Green Tea Tree Oil Cleanser",
                      description="gentle", bullets=())
    partial = purchase_reward(goal, goal_product, bought, {"size": "3 pack", "color": "blue"}, 40.0)
    assert partial.attributes == 2 and partial.options == 1 and partial.price
    assert partial.reward == pytest.approx(4 / 6)
    goal3 = dataclasses.replace(goal, options={**goal.options, "scent": "lavender"})
    assert purchase_reward(goal3, goal_product, bought, {"size": "3 pack", "color": "blue"}, 40.0).reward \
        == pytest.approx(4 / 7)
    # Another type (query and breadcrumbs differ, few shared nouns): r_type 0.5, 0.5 * 4/7 = 0.2857.
    other = dataclasses.replace(bought, query="soap", breadcrumb=("home",),
                                title="Cleanser Cream Moisturizer Lotion Soap Bar")
    half = purchase_reward(goal3, goal_product, other, {"size": "3 pack", "color": "blue"}, 40.0)
    assert half.r_type == 0.5 and half.reward == pytest.approx(0.2857, abs=1e-4)
    assert purchase_reward(goal, goal_product, goal_product, {"size": "3 pack", "color": "green"}, 60.0).reward \
        == pytest.approx(5 / 6)  # over the price bound
    nothing_shared = dataclasses.replace(other, title="Stapler")
    assert purchase_reward(goal, goal_product, nothing_shared, {}, 40.0).reward == 0.0  # title score 0: r_type 0
    assert normalize_color("dark navy blue") == "blue" and normalize_color("3 pack") == "3 pack"


def test_expert_scores_one_and_first_result_baseline_far_below(tasks: list[TaskSpec]) -> None:
    sample = tasks[:: len(tasks) // 60]
    expert = [play(t, WebShopExpert)[0] for t in sample]
    baseline = [play(t, FirstResultBaseline)[0] for t in sample]
    assert expert == [1.0] * len(sample)
    assert statistics.mean(baseline) < 0.75 and sum(b == 1.0 for b in baseline) < len(sample) * 0.2


@pytest.mark.slow
def test_expert_scores_one_on_every_generated_task(tasks: list[TaskSpec]) -> None:
    assert [t.id for t in tasks if play(t, WebShopExpert)[0] != 1.0] == []


async def test_expert_through_a_server_with_tools_and_text() -> None:
    sample = [load_suite("webshop:test").tasks[i] for i in (0, 1, 2, 3)]

    async def run(runtime: ProcessRuntime, task: TaskSpec) -> list:
        expert = WebShopExpert(task)
        async with await runtime.client() as client:
            text = (await client.reset(task, 0)).messages[0].content
            results = []
            while not results or not results[-1].done:
                act = expert.act(text)
                name, _, arg = act.partition("[")
                action = Action(text=act) if len(results) % 2 else Action(tool_calls=[ToolCall.make(
                    name, {"query" if name == "search" else "button": arg[:-1]})])
                results.append(await client.step(action))
                text = results[-1].observation.messages[0].content
            with pytest.raises(EpisodeOver):  # buying twice: the purchase ended the episode
                await client.step(Action(text="click[buy now]"))
            return results

    async with ProcessRuntime("webshop", capacity=8) as runtime:
        played = await asyncio.gather(*(run(runtime, t) for t in sample))
    for results in played:
        last = results[-1]
        assert last.terminated and last.reward == 1.0 and last.signals["success"] == 1.0
        assert {"r_type", "r_attributes", "r_options", "r_price"} <= set(last.signals)
        assert all(r.signals["valid_action"] == 1.0 for r in results)


async def test_pages_actions_and_bad_input_are_explained(tasks: list[TaskSpec]) -> None:
    task = next(t for t in tasks if len(t.payload["goal"]["options"]) >= 1)
    async with LocalRuntime("webshop") as runtime, await runtime.client() as client:
        long = task.model_copy(update={"payload": {**task.payload, "observation": "buttons"},
                                       "limits": Limits(max_turns=40)})
        first = await client.reset(long, 0)
        page = first.messages[0].content
        assert "Instruction: [SEP]" in page and "[button] Search [button_]" in page

        async def step(text: str) -> tuple[str, float]:
            result = await client.step(Action(text=text))
            assert not result.done
            return result.observation.messages[0].content, result.signals["valid_action"]

        for bad in ("search[]", "search[\"\" * : ()]", "search[" + "shirt " * 200 + "]", "click[buy now]",
                    "I would like to buy something", "search[   ]"):
            text, valid = await step(bad)
            assert valid == 0.0 and (text.startswith("Error: ") or "No action" in text), bad
        text, valid = await step("search[漢字 ünïcödé]")
        assert valid == 1.0 and "Total results: 0" in text
        await step("click[back to search]")
        text, valid = await step("Thought: the goal. Action: search[navy cotton shirt]")
        assert valid == 1.0 and "Page 1 (Total results: 50)" in text and "[button] Next > [button_]" in text
        text, valid = await step("search[again]")
        assert valid == 0.0 and "search page only" in text and "back to search" in text
        text, valid = await step("click[B000000000]")
        assert valid == 0.0 and "Clickable here: back to search, next >, b0" in text
        text, _ = await step("click[next >]")
        assert "Page 2 (Total results: 50)" in text and "< Prev" in text
        asin = (await client.state()).env_state["segments"][6][1]
        text, valid = await step(f"click[{asin}]")
        assert valid == 1.0 and "[button] Buy Now [button_]" in text
        state = (await client.state()).env_state
        assert state["page"] == "item"
        values = [s[1] for s in state["segments"] if s[0] == "button" and s[1] not in (
            "Back to Search", "< Prev", "Description", "Features", "Reviews", "Buy Now")]
        text, valid = await step("click[no such colour]")
        assert valid == 0.0 and "buy now" in text
        if values:
            text, valid = await step(f"click[{values[0].upper()}]")
            assert valid == 1.0 and f"[clicked button] {values[0]} [clicked button_]" in text
        for page in ("description", "features", "reviews"):
            text, valid = await step(f"click[{page}]")
            assert valid == 1.0 and "< Prev" in text
            text, _ = await step("click[< prev]")
            assert "Buy Now" in text and (not values or "[clicked button]" in text)  # options kept
        text, _ = await step("click[< prev]")
        assert "Page 2" in text
        result = await client.step(Action(tool_calls=[ToolCall.make("click", {"button": asin}),
                                                      ToolCall.make("click", {"button": "buy now"}),
                                                      ToolCall.make("search", {"query": "never run"})]))
        assert result.terminated and len(result.observation.messages) == 2 and 0.0 <= result.reward < 1.0


async def test_bad_tasks_are_refused(tasks: list[TaskSpec]) -> None:
    task = tasks[0]
    async with LocalRuntime("webshop") as runtime, await runtime.client() as client:
        for payload in ({}, {**task.payload, "goal": {**task.payload["goal"], "asin": "NOPE"}},
                        {**task.payload, "catalog": {"seed": 0, "products": 3}},
                        {**task.payload, "observation": "html"}, {**task.payload, "form": "poem"}):
            with pytest.raises(InvalidTask):
                await client.reset(task.model_copy(update={"payload": payload}), 0)


def _write_original(folder: Path) -> None:
    """Small files in the original's format: items_shuffle, items_ins_v2 and items_human_ins."""
    import json

    items = [{"asin": f"B00000000{i}", "name": f"Alderly {kind} Soft Cotton Shirt", "full_description": "A shirt.",
              "small_description": ["Machine wash", "Slim fit"], "category": "fashion", "query": "men's shirts",
              "product_category": "Clothing › Men › Shirts", "pricing": price,
              "customization_options": {"Color": [{"value": "Navy Blue", "image": None}, {"value": "Black"}],
                                        "Size": [{"value": "Medium"}, {"value": "Large"}]}}
             for i, (kind, price) in enumerate([("Crew", "$12.99"), ("Polo", "$10.00 to $20.00"), ("Henley", ["$9"])])]
    (folder / "items_shuffle_1000.json").write_text(json.dumps(items))
    (folder / "items_ins_v2_1000.json").write_text(json.dumps({
        i["asin"]: {"attributes": ["machine wash", "slim fit"], "instruction": "i want a slim fit shirt",
                    "instruction_attributes": ["slim fit"]} for i in items}))
    (folder / "items_human_ins.json").write_text(json.dumps({
        "B000000001": [{"instruction": "I need a navy polo that I can machine wash, size large",
                        "instruction_attributes": ["machine wash"], "instruction_options": ["navy blue", "large"]}],
        "B000000002": [{"instruction": "a henley shirt in black", "instruction_attributes": ["slim fit"],
                        "instruction_options": ["black"]}]}))


def test_original_files_load_and_play(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gymbox.tasks.webshop.original import original_catalog, synthetic_goals
    from gymbox.tasks.webshop.suite import original_tasks

    _write_original(tmp_path)
    monkeypatch.delenv("WEBSHOP_DATA", raising=False)
    assert original_tasks() == []
    monkeypatch.setenv("WEBSHOP_DATA", str(tmp_path))
    found = original_tasks()
    assert {t.payload["goal"]["instruction"] for t in found} == {  # the human goals
        "a henley shirt in black", "I need a navy polo that I can machine wash, size large"}
    catalog = original_catalog(tmp_path.resolve())
    polo = catalog.get("b000000001")
    assert polo.options == {"color": ("navy blue", "black"), "size": ("medium", "large")}
    assert 10.0 <= polo.price <= 20.0 and catalog.get("B000000002").price == 9.0
    assert polo.breadcrumb == ("Clothing", "Men", "Shirts") and polo.attributes == ("machine wash", "slim fit")
    assert {s for _, s in catalog.goals} == {"test"}  # fewer than 500 goals: all in the original's test range
    for task in found:
        assert play(task, WebShopExpert)[0] == 1.0
    synthetic = synthetic_goals({p.asin: p for p in catalog.products}, {"B000000000": {
        "instruction": "i want a slim fit shirt", "instruction_attributes": ["slim fit"]}})
    assert len(synthetic) == 4 and synthetic[0].instruction.startswith(
        "i want a slim fit shirt with color: navy blue, and size: medium, and price lower than")
    (tmp_path / "items_ins_v2_1000.json").unlink()
    with pytest.raises(FileNotFoundError, match="items_ins_v2"):
        original_catalog.__wrapped__(tmp_path)

"""`webshop`: search a shop, open items, choose options and buy what the instruction describes (after WebShop)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from gymbox.environments.api import Action, Message, Observation, StepResult, TaskSpec, ToolEnv, ToolResult, tool
from gymbox.environments.api.errors import InvalidAction, InvalidTask
from gymbox.environments.api.models import ToolCall
from gymbox.environments.webshop.pages import BACK, BUY, NEXT, PREV, SUBPAGES, View, clickables, render, segments
from gymbox.environments.webshop.reward import purchase_reward
from gymbox.environments.webshop.search import BadQuery, engine_for
from gymbox.tasks.webshop.suite import InvalidCatalog, task_goal

# The original's actions in plain text; the last one in a reply counts (agents often think aloud first).
_ACTION = re.compile(r"\b(search|click)\s*\[(.*?)\](?!.*\b(?:search|click)\s*\[)", re.I | re.S)
MODES = ("text", "buttons")


class WebShopEnv(ToolEnv):
    name = "webshop"
    version = "v1"
    description = ("Shop for the item an instruction describes: search a generated catalog (BM25), open items, "
                   "choose options, buy; reward by attribute, option, price and type match (WebShop's).")
    suites: ClassVar[list[str]] = ["webshop"]  # and `webshop-original` where WEBSHOP_DATA is set

    def reset(self, task: TaskSpec, seed: int) -> Observation:
        try:
            self.catalog, self.goal, form = task_goal(task)
        except InvalidCatalog as exc:
            raise InvalidTask(str(exc)) from exc
        self.mode = str(task.payload.get("observation", "text"))
        if self.mode not in MODES:
            raise InvalidTask(f"task {task.id!r}: payload.observation is {self.mode!r}; use one of {MODES}")
        self.instruction = self.goal.paraphrase if form == "human" else self.goal.instruction
        self.engine = engine_for(self.catalog)
        self.view, self.bought = View(), False
        return self.first_observation(f"{task.instruction}\n\n{self.page()}")

    def page(self) -> str:
        return render(segments(self.view, self.catalog, self.instruction), self.mode)

    @tool
    def search(self, query: str) -> str:
        """Search the shop (on the search page); shows the first page of results.

        Args:
            query: a few words describing the item, such as 'navy cotton t-shirt for men'
        """
        if self.view.page != "search":
            raise InvalidAction(f"search works on the search page only; you are on the {self.view.page} page. Click "
                                f"'{BACK}' first. {self._clickable_text()}")
        try:
            results = self.engine.search(query)
        except BadQuery as exc:
            raise InvalidAction(str(exc)) from exc
        self.view = View(page="results", keywords=query.lower(), results=results)
        return self.page()

    @tool
    def click(self, button: str) -> ToolResult | str:
        """Click a button of the current page: a result's id, an option value, description, features, reviews,
        < prev, next >, back to search, or buy now (which ends the episode).

        Args:
            button: the button's text, as the page shows it (case does not matter)
        """
        choice = " ".join(button.lower().split())
        allowed = clickables(self.view, self.catalog)
        if choice not in allowed:
            if self.view.page == "search":
                raise InvalidAction("there is nothing to click on the search page; search with search[your query].")
            raise InvalidAction(f"{button!r} is not a button on this page. {self._clickable_text()}")
        view = self.view
        if choice == BACK:
            self.view = View()
        elif choice == NEXT:
            view.number += 1
        elif choice == PREV:
            if view.page == "results":
                view.number -= 1
            else:
                view.page = "results" if view.page == "item" else "item"
                view.selected = view.selected if view.page == "item" else {}
        elif view.page == "results":
            view.page, view.asin, view.selected = "item", self.catalog.get(choice).asin, {}
        elif choice in SUBPAGES:
            view.page = choice
        elif choice == BUY:
            return self._buy()
        else:
            self._select(choice)
        return self.page()

    def step(self, action: Action) -> StepResult:
        if action.tool_calls:
            return super().step(action)
        match = _ACTION.search(action.text or "")
        if match is None:
            message = ("No action was found in your reply. Send one action: search[your query] on the search page, "
                       "or click[button] on other pages (or call the search or click tool).")
            return StepResult(observation=Observation(messages=[Message(role="user", content=message)]),
                              signals={"valid_action": 0.0})
        name = match.group(1).lower()
        result = self.run_tool(ToolCall.make(name, {"query" if name == "search" else "button": match.group(2)}))
        return StepResult(observation=Observation(messages=[Message(role="user", content=result.content)]),
                          reward=result.reward, terminated=result.done,
                          signals={"valid_action": float(result.valid), **result.signals}, info=result.info)

    def _select(self, choice: str) -> None:
        product = self.catalog.get(self.view.asin)
        for name, values in product.options.items():
            for value in values:
                if value.replace("/", " | ").lower() == choice:
                    self.view.selected[name] = value
                    return

    def _buy(self) -> ToolResult:
        product = self.catalog.get(self.view.asin)
        parts = purchase_reward(self.goal, self.catalog.get(self.goal.asin), product, self.view.selected,
                                product.price)
        self.bought = True
        chosen = ", ".join(f"{k}: {v}" for k, v in self.view.selected.items()) or "no options"
        text = (f"Thank you for shopping with us! You bought {product.title} ({product.asin}, {chosen}) for "
                f"${product.price:.2f}. Your score (min 0.0, max 1.0): {parts.reward:.4f}")
        return ToolResult(text, done=True, reward=parts.reward, signals=parts.signals(),
                          info={"asin": product.asin, "options": dict(self.view.selected)})

    def _clickable_text(self) -> str:
        return "Clickable here: " + ", ".join(clickables(self.view, self.catalog)) + "."

    def grade(self) -> dict[str, float]:
        """An episode that ended without a purchase scores 0."""
        return {"score": 0.0, "success": 0.0}

    def state(self) -> dict[str, Any]:
        view = getattr(self, "view", None)
        if view is None:
            return {}
        return {"page": view.page, "keywords": view.keywords, "results_page": view.number, "asin": view.asin,
                "selected": dict(view.selected), "bought": self.bought,
                "segments": [list(s) for s in segments(view, self.catalog, self.instruction)]}

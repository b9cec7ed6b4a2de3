"""The web shop's expert and its rule baseline: policies over the page text that write the original's actions.

The expert knows the goal: it searches the goal product's title, pages through the results to the goal product,
selects the goal's options and buys (a demonstration for warm starts; it scores 1.0 on every generated task). The
baseline is the rule the original reports beside its agents: search the instruction, buy the first result.
"""

from __future__ import annotations

import re

from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.webshop.suite import task_goal

_MARKS = re.compile(r"\[(?:clicked )?button_?\]")


def page_parts(text: str) -> list[str]:
    """The segments of a page's text (either form), without button marks; the last message's page only."""
    page = text[text.find("Instruction: [SEP]"):] if "Instruction: [SEP]" in text else text
    return [" ".join(_MARKS.sub("", part).split()) for part in page.split(" [SEP] ")]


class WebShopExpert:
    """Plays one task from the pages it is shown; `act(page)` is the next action, as plain text."""

    def __init__(self, task: TaskSpec) -> None:
        catalog, goal, _ = task_goal(task)
        product = catalog.get(goal.asin)
        assert product is not None, "task_goal checks that the goal product is in the catalog"
        self.asin = product.asin
        self.query = product.title.lower()
        # The goal's values in the order the item page lists the options.
        self.options = [goal.options[name].replace("/", " | ") for name in product.options if name in goal.options]
        self.chosen = 0

    def act(self, page: str) -> str:
        parts = page_parts(page)
        if "Back to Search" not in parts:
            return f"search[{self.query}]"
        if "Buy Now" in parts:  # the item page
            if self.chosen < len(self.options):
                self.chosen += 1
                return f"click[{self.options[self.chosen - 1]}]"
            return "click[buy now]"
        if self.asin in parts:
            return f"click[{self.asin.lower()}]"
        if "Next >" in parts:
            return "click[next >]"
        return "click[back to search]"  # not among the results: the expert has nothing better to do


class FirstResultBaseline:
    """The rule baseline: search the instruction's words, open the first result, buy it without choosing options."""

    def __init__(self, task: TaskSpec) -> None:
        _, goal, form = task_goal(task)
        self.query = goal.paraphrase if form == "human" else goal.instruction

    def act(self, page: str) -> str:
        parts = page_parts(page)
        if "Back to Search" not in parts:
            return f"search[{self.query}]"
        if "Buy Now" in parts:
            return "click[buy now]"
        page_index = next((i for i, p in enumerate(parts) if p.startswith("Page ")), None)
        first = parts[page_index + 1:] if page_index is not None else []
        first = [p for p in first if p not in ("Next >", "< Prev")]
        return f"click[{first[0].lower()}]" if first else "click[back to search]"

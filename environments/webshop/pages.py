"""The shop's pages as segments (text, buttons, clicked buttons), and their text forms: plain and with buttons."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gymbox.tasks.webshop.catalog import Catalog, Product

PER_PAGE = 10
BACK, PREV, NEXT, BUY = "back to search", "< prev", "next >", "buy now"
SUBPAGES = ("description", "features", "reviews")
Kind = Literal["text", "button", "clicked"]
SEP = " [SEP] "


@dataclass
class View:
    """Where the shopper is: the page, the search and its results, the open item and the options chosen on it."""

    page: str = "search"  # search, results, item, description, features, reviews
    keywords: str = ""
    results: list[str] = field(default_factory=list)  # asins, best first
    number: int = 1  # results page, from 1
    asin: str = ""
    selected: dict[str, str] = field(default_factory=dict)  # option name -> value

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.results) // PER_PAGE))

    def on_page(self) -> list[str]:
        return self.results[(self.number - 1) * PER_PAGE: self.number * PER_PAGE]


def shown_value(value: str) -> str:
    """An option value as the pages show it (the original shows '/' as ' | ')."""
    return value.replace("/", " | ")


def price_text(price: float) -> str:
    return f"${price:.2f}"


def segments(view: View, catalog: Catalog, instruction: str) -> list[tuple[Kind, str]]:
    """The page's visible text, in order, each part marked as text, a button, or a button already clicked."""
    out: list[tuple[Kind, str]] = [("text", "Instruction:"), ("text", instruction)]
    if view.page == "search":
        return [*out, ("button", "Search")]
    out.append(("button", "Back to Search"))
    if view.page == "results":
        if view.number > 1:
            out.append(("button", "< Prev"))
        out.append(("text", f"Page {view.number} (Total results: {len(view.results)})"))
        if view.number < view.pages:
            out.append(("button", "Next >"))
        for asin in view.on_page():
            product = catalog.get(asin)
            if product is not None:
                out += [("button", product.asin), ("text", product.title), ("text", price_text(product.price))]
        return out
    product = catalog.get(view.asin)
    assert product is not None, "the view only opens products of the catalog"
    out.append(("button", "< Prev"))
    if view.page == "item":
        return out + _item(product, view.selected)
    if view.page == "description":
        return [*out, ("text", product.description or "No description.")]
    if view.page == "features":
        return out + [("text", bullet) for bullet in product.bullets or ("No features listed.",)]
    reviews = [("text", f"Rating: {stars} of 5. {text}") for stars, text in product.reviews]
    return out + (reviews or [("text", "No reviews yet.")])


def _item(product: Product, selected: dict[str, str]) -> list[tuple[Kind, str]]:
    out: list[tuple[Kind, str]] = []
    for name, values in product.options.items():
        out.append(("text", name))
        out += [("clicked" if selected.get(name) == v else "button", shown_value(v)) for v in values]
    out += [("text", product.title), ("text", f"Price: {price_text(product.price)}"), ("text", "Rating: N.A.")]
    return [*out, ("button", "Description"), ("button", "Features"), ("button", "Reviews"), ("button", "Buy Now")]


def clickables(view: View, catalog: Catalog) -> list[str]:
    """What `click[...]` accepts on this page, lower-cased."""
    if view.page == "search":
        return []
    out = [BACK]
    if view.page == "results":
        out += ([PREV] if view.number > 1 else []) + ([NEXT] if view.number < view.pages else [])
        return out + [asin.lower() for asin in view.on_page()]
    out.append(PREV)
    if view.page == "item":
        product = catalog.get(view.asin)
        values = [shown_value(v).lower() for vs in (product.options.values() if product else ()) for v in vs]
        out += [*SUBPAGES, BUY, *values]
    return out


def render(parts: list[tuple[Kind, str]], mode: str) -> str:
    """The page as text: segments joined by ' [SEP] ', with buttons marked in the `buttons` mode."""
    if mode == "text":
        return SEP.join(text for _, text in parts)
    marks = {"text": "{}", "button": "[button] {} [button_]", "clicked": "[clicked button] {} [clicked button_]"}
    return SEP.join(marks[kind].format(text) for kind, text in parts)

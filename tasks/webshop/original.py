"""The original WebShop's files as a catalog: products, attributes, human (or synthetic) goals, the original split."""

from __future__ import annotations

import itertools
import json
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

from gymbox.tasks.spec import derive_seed
from gymbox.tasks.webshop.catalog import Catalog, Goal, Product
from gymbox.tasks.webshop.goals import SPLIT_SEED, price_bound, price_text

PRODUCTS, ATTRIBUTES, HUMAN = "items_shuffle*.json", "items_ins_v2*.json", "items_human_ins.json"
NO_PRICE = 100.0  # the price of a product whose pricing is missing or unreadable
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


class MissingData(FileNotFoundError):
    """The folder lacks one of the original's files; the message names it."""


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise MissingData(f"{folder} has no {pattern}; WEBSHOP_DATA must point at the folder holding the original's "
                          f"{PRODUCTS}, {ATTRIBUTES} and {HUMAN}")
    return found[0]  # items_shuffle.json sorts before items_shuffle_1000.json: the full set when both are there


def parse_price(pricing: Any, asin: str) -> float:
    """One price: the value, or for a range `$X to $Y` a value drawn uniformly (fixed per asin, as the original fixes
    it once at load time)."""
    text = " ".join(pricing) if isinstance(pricing, list) else str(pricing or "")
    values = [float(v.replace(",", "")) for v in _NUMBER.findall(text)]
    if not values:
        return NO_PRICE
    if len(values) == 1:
        return values[0]
    low, high = min(values[:2]), max(values[:2])
    return round(random.Random(derive_seed("price", asin)).uniform(low, high), 2)


def to_product(item: dict[str, Any], attributes: dict[str, Any]) -> Product | None:
    """One product of items_shuffle, with its attributes from items_ins_v2; None for an item without asin or name."""
    asin, name = str(item.get("asin") or ""), str(item.get("name") or "")
    if not asin or not name:
        return None
    bullets = item.get("small_description") or []
    bullets = [bullets] if isinstance(bullets, str) else bullets
    options = {str(k).lower(): tuple(str(v.get("value", v) if isinstance(v, dict) else v).lower() for v in values)
               for k, values in (item.get("customization_options") or {}).items() if values}
    return Product(asin=asin, title=name, description=str(item.get("full_description") or ""),
                   bullets=tuple(str(b) for b in bullets if b), category=str(item.get("category") or ""),
                   query=str(item.get("query") or "").lower().strip(),
                   breadcrumb=tuple(p.strip() for p in str(item.get("product_category") or "").split("›") if p.strip()),
                   price=parse_price(item.get("pricing"), asin), options=options,
                   attributes=tuple(attributes.get(asin, {}).get("attributes", ())))


def _named(product: Product, values: list[str]) -> dict[str, str]:
    """Option values with the option names the product gives them (the human goals list values only)."""
    out = {}
    for i, value in enumerate(v.lower() for v in values):
        name = next((n for n, vs in product.options.items() if value in vs and n not in out), f"option {i + 1}")
        out[name] = value
    return out


def human_goals(products: dict[str, Product], human: dict[str, list[dict[str, Any]]]) -> list[Goal]:
    goals = []
    for asin, entries in human.items():
        product = products.get(asin)
        for i, entry in enumerate(entries if product else ()):
            upper = price_bound(product.price, random.Random(derive_seed("price_upper", asin, i)))
            goals.append(Goal(asin=asin, instruction=str(entry["instruction"]),
                              attributes=tuple(entry.get("instruction_attributes") or ()),
                              options=_named(product, list(entry.get("instruction_options") or ())), price_upper=upper))
    return goals


def synthetic_goals(products: dict[str, Product], attributes: dict[str, Any]) -> list[Goal]:
    """One goal per combination of a product's option values, from its instruction in items_ins_v2."""
    goals = []
    for asin, info in attributes.items():
        product = products.get(asin)
        if product is None or not info.get("instruction"):
            continue
        names = list(product.options)
        for n, combination in enumerate(itertools.product(*(product.options[k] for k in names))):
            options = dict(zip(names, combination, strict=True))
            upper = price_bound(product.price, random.Random(derive_seed("price_upper", asin, n)))
            text = str(info["instruction"]).rstrip(".")
            if options:
                text += " with " + ", and ".join(f"{k}: {v}" for k, v in options.items())
            goals.append(Goal(asin=asin, instruction=text + price_text(upper),
                              attributes=tuple(info.get("instruction_attributes") or ()), options=options,
                              price_upper=upper))
    return goals


def original_split(goals: list[Goal]) -> list[tuple[Goal, str]]:
    """Shuffled with seed 233: test = 0-499, dev = 500-1499, train = the rest."""
    order = list(goals)
    random.Random(SPLIT_SEED).shuffle(order)
    return [(g, "test" if i < 500 else "dev" if i < 1500 else "train") for i, g in enumerate(order)]


@cache
def original_catalog(folder: Path) -> Catalog:
    """The catalog of the original's files in `folder`; human goals when items_human_ins.json is there, else the
    synthetic goals of items_ins_v2."""
    products_file, attributes_file = _one(folder, PRODUCTS), _one(folder, ATTRIBUTES)
    items = json.loads(products_file.read_text())
    attributes = json.loads(attributes_file.read_text())
    made = {}
    for item in items:
        product = to_product(item, attributes)
        if product is not None and product.asin not in made:
            made[product.asin] = product
    human_file = folder / HUMAN
    goals = (human_goals(made, json.loads(human_file.read_text())) if human_file.is_file()
             else synthetic_goals(made, attributes))
    files = [products_file, attributes_file] + ([human_file] if human_file.is_file() else [])
    key = {"original": str(folder), "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    return Catalog(key=key, products=tuple(made.values()), goals=tuple(original_split(goals)))

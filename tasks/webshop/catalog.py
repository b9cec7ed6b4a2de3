"""The web shop's catalog: products and goals as records, and a generated catalog, deterministic from a seed."""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from gymbox.tasks.spec import derive_seed

DATA = Path(__file__).resolve().parent.parent / "data" / "webshop"
DEFAULT_PRODUCTS = 5000
MIN_PRODUCTS = 300  # 10 a product type: fewer leaves goals without near neighbours


@dataclass(frozen=True)
class Product:
    """One product, with the fields of the original's item pages and its hidden attributes."""

    asin: str
    title: str
    description: str
    bullets: tuple[str, ...]
    category: str
    query: str
    breadcrumb: tuple[str, ...]
    price: float
    options: dict[str, tuple[str, ...]]  # name -> values, names and values lower-cased, in display order
    attributes: tuple[str, ...]
    reviews: tuple[tuple[int, str], ...] = ()

    def document(self) -> str:
        """What search indexes (the spec's document): title, description, first bullet point and the options."""
        options = ", and ".join(f"{name}: {', '.join(values)}" for name, values in self.options.items())
        first = self.bullets[0] if self.bullets else ""
        return " ".join(part for part in (self.title, self.description, first, options) if part).lower()


@dataclass(frozen=True)
class Goal:
    """What a task asks for: the goal product, its attributes and options, a price bound, and the two texts."""

    asin: str
    instruction: str  # the synthetic form
    attributes: tuple[str, ...]
    options: dict[str, str]  # option name -> value
    price_upper: float | None
    paraphrase: str = ""  # the human-like form of the same goal ("" for the original's human goals)

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Goal:
        return cls(asin=str(data["asin"]), instruction=str(data["instruction"]),
                   attributes=tuple(data.get("attributes", ())), options=dict(data.get("options", {})),
                   price_upper=data.get("price_upper"), paraphrase=str(data.get("paraphrase", "")))


@dataclass(frozen=True)
class Catalog:
    """Products by asin, in order, and the goals over them with their splits."""

    key: dict[str, Any]  # how the catalog was made: a generator's seed and size, or the original's files
    products: tuple[Product, ...]
    goals: tuple[tuple[Goal, str], ...] = ()  # (goal, split)
    by_asin: dict[str, Product] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_asin.update((p.asin.lower(), p) for p in self.products)

    def get(self, asin: str) -> Product | None:
        return self.by_asin.get(asin.lower())


@cache
def vocabulary() -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The product types by category (`types.json`) and the shared words and templates (`words.json`)."""
    return (json.loads((DATA / "types.json").read_text()), json.loads((DATA / "words.json").read_text()))


def vocabulary_digest() -> str:
    """A digest of the vocabulary files: a catalog made from other words is another catalog (its index too)."""
    digest = hashlib.sha256()
    for name in ("types.json", "words.json"):
        digest.update((DATA / name).read_bytes())
    return digest.hexdigest()[:12]


def product_types() -> list[tuple[str, dict[str, Any]]]:
    """(category, type) for every product type, in the vocabulary's order."""
    types, _ = vocabulary()
    return [(category, kind) for category, kinds in types.items() for kind in kinds]


def _asin(rng: random.Random, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _options(rng: random.Random, vocab: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """A subset of each option's values (at least two, in the vocabulary's order); now and then a group is left out,
    so some products have fewer options, or none."""
    out = {}
    for name, values in vocab.items():
        if rng.random() < 0.12:
            continue
        chosen = set(rng.sample(values, rng.randint(2, len(values))))
        out[name] = tuple(v for v in values if v in chosen)
    return out


def make_product(seed: int, index: int, taken: set[str]) -> Product:
    """Product `index` of the catalog made from `seed`: the same whatever the catalog's size."""
    rng = random.Random(derive_seed(seed, "product", index))
    _, words = vocabulary()
    category, kind = rng.choice(product_types())
    brand, style, noun = rng.choice(words["brands"]), rng.choice(kind["styles"]), kind["noun"]
    attributes = tuple(rng.sample(kind["attributes"], rng.randint(3, 5)))
    shown = " ".join(a.title() for a in attributes[:2])
    title = f"{brand} {style} {noun}, {shown}"
    fill = {"Brand": brand, "style": style.lower(), "noun_lower": noun.lower(),
            "a_noun": ("an " if noun[0] in "AEIOU" else "a ") + noun.lower(), "att1": attributes[0],
            "att2": attributes[1]}
    description = rng.choice(words["description"]).format(**fill)
    bullets = tuple(rng.choice(words["bullets"]).format(Att=a.capitalize(), Brand=brand) for a in attributes)
    bullets += (words["closing_bullet"].format(Brand=brand),)
    reviews = tuple((stars, text.format(att=rng.choice(attributes), noun_lower=noun.lower(), Brand=brand))
                    for stars, text in rng.sample(words["reviews"], rng.randint(0, 3)))
    low, high = kind["price"]
    price = max(1.99, round(rng.uniform(low, high)) - 0.01)
    return Product(asin=_asin(rng, taken), title=title, description=description, bullets=bullets,
                   category=category, query=kind["query"], breadcrumb=tuple(kind["breadcrumb"]), price=price,
                   options=_options(rng, kind["options"]), attributes=attributes, reviews=reviews)


@cache
def generated_catalog(seed: int = 0, products: int = DEFAULT_PRODUCTS) -> Catalog:
    """The generated catalog of `products` products made from `seed`, with its goals and their fixed split."""
    from gymbox.tasks.webshop.goals import generated_goals

    if products < MIN_PRODUCTS:
        raise ValueError(f"a generated catalog needs at least {MIN_PRODUCTS} products (asked for {products}), so "
                         "that every goal product has near neighbours of its type")
    taken: set[str] = set()
    made = tuple(make_product(seed, i, taken) for i in range(products))
    return Catalog(key={"seed": seed, "products": products, "vocabulary": vocabulary_digest()}, products=made,
                   goals=tuple(generated_goals(seed, made)))

"""Goals over a catalog: the spec's price bound, the synthetic instruction and a paraphrased human-like one, splits."""

from __future__ import annotations

import random
from collections.abc import Sequence

from gymbox.tasks.spec import derive_seed
from gymbox.tasks.webshop.catalog import Goal, Product, vocabulary

SPLIT_SEED = 233  # the original shuffles its goals with this seed
TEST_GOALS = 500  # the original's test goals are the first 500 after the shuffle
GOALS_PER_PRODUCTS = 0.3  # goal products per catalog product, up to MAX_GOALS
MAX_GOALS = 1500


def price_bound(price: float, rng: random.Random) -> float | None:
    """The spec's rule: the first 4 of 10, 20, ..., 990 strictly above the price; the larger of two sampled from them
    when there are at least two, else no bound."""
    candidates = [p for p in range(10, 1000, 10) if p > price][:4]
    if len(candidates) < 2:
        return None
    return float(max(rng.sample(candidates, 2)))


def price_text(price_upper: float | None) -> str:
    return "" if price_upper is None else f", and price lower than {price_upper:.2f} dollars"


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def synthetic_instruction(phrase: str, attributes: Sequence[str], options: dict[str, str],
                          price_upper: float | None) -> str:
    """The original's synthetic form: the product's instruction, then `with name: value, and ...`, then the price."""
    text = f"i am looking for {_a(phrase)}"
    if attributes:
        text += f" that is {_join(list(attributes))}"
    if options:
        text += " with " + ", and ".join(f"{name}: {value}" for name, value in options.items())
    return text + price_text(price_upper)


def _option_phrase(name: str, value: str) -> str:
    if name == "color":
        return f"in {value}"
    if name == "size":
        return f"size {value}"
    if name == "flavor name":
        return f"{value} flavor"
    return f"{name} {value}"


def paraphrase(phrase: str, attributes: Sequence[str], options: dict[str, str], price_upper: float | None,
               rng: random.Random) -> str:
    """A human-like wording of the same goal, from the templates in `words.json`; values are kept verbatim."""
    _, words = vocabulary()
    opts = [_option_phrase(n, v) for n, v in options.items()]
    atts = _join(list(attributes)) if attributes else ""
    dollars = "" if price_upper is None else f"{price_upper:.0f}"
    parts = {
        "a_phrase": _a(phrase),
        "atts_with": f" with {atts}" if atts else "",
        "atts_that": f" that is {atts}" if atts else "",
        "opts_in": (", " + ", ".join(opts)) if opts else "",
        "opts_sentence": f"I want it {_join(opts)}. " if opts else "",
        "price_under": f", under ${dollars}" if dollars else "",
        "price_budget": f"; my budget is ${dollars}" if dollars else "",
        "price_sentence": f"Keep it under {dollars} dollars." if dollars else "",
    }
    text = rng.choice(words["paraphrases"]).format(**parts)
    return " ".join(text.replace(" .", ".").split())


def make_goal(product: Product, phrase: str, rng: random.Random) -> Goal:
    """A goal for `product`: one value of each of its options, one to three of its attributes, a price bound."""
    options = {name: rng.choice(values) for name, values in product.options.items()}
    attributes = tuple(rng.sample(product.attributes, rng.randint(1, min(3, len(product.attributes)))))
    upper = price_bound(product.price, rng)
    return Goal(asin=product.asin, instruction=synthetic_instruction(phrase, attributes, options, upper),
                attributes=attributes, options=options, price_upper=upper,
                paraphrase=paraphrase(phrase, attributes, options, upper, rng))


def split_goals(goals: list[Goal]) -> list[tuple[Goal, str]]:
    """The original's split: shuffled with seed 233, the first 500 are test, the rest train."""
    order = list(goals)
    random.Random(SPLIT_SEED).shuffle(order)
    return [(goal, "test" if i < TEST_GOALS else "train") for i, goal in enumerate(order)]


def generated_goals(seed: int, products: Sequence[Product]) -> list[tuple[Goal, str]]:
    """Goals over a generated catalog: a fixed sample of its products, each with one goal, and their split."""
    from gymbox.tasks.webshop.catalog import product_types

    phrases = {kind["query"]: kind["phrase"] for _, kind in product_types()}
    count = min(MAX_GOALS, int(len(products) * GOALS_PER_PRODUCTS))
    chosen = sorted(random.Random(derive_seed(seed, "goals")).sample(range(len(products)), count))
    goals = [make_goal(products[i], phrases[products[i].query], random.Random(derive_seed(seed, "goal", i)))
             for i in chosen]
    return split_goals(goals)

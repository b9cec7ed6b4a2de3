"""Single-turn checking against BFCL's possible answers, following the leaderboard's documented AST rules.

A possible answer is `{function: {parameter: [allowed values]}}`; an empty string among the allowed values
means the parameter may be left out. A call matches when it names the function, passes every required
parameter and no unknown one, and gives each parameter one of its allowed values, where:

- an int is accepted where a float is declared, and a bool is never a number;
- strings are compared after normalising: lower case, without spaces and the characters `,./-_*^`, and with
  single quotes read as double quotes;
- lists are compared in order, element by element; a dict allowed value maps each key to its own list of
  allowed values (recursively), and keys with `""` among theirs may be left out;
- a value of another type than the declared one is accepted when an allowed value has that type (BFCL writes
  variable names and nulls that way).

Parallel categories accept the calls in any order, each expected call matched by exactly one call.
"""

from __future__ import annotations

from typing import Any

Call = tuple[str, dict[str, Any]]  # (BFCL function name, decoded arguments)
_DROPPED = str.maketrans("", "", " ,./-_*^")
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "float": (int, float), "number": (int, float), "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "object": dict,
}


def normalise(text: str) -> str:
    """The leaderboard's string normalisation."""
    return text.translate(_DROPPED).lower().replace("'", '"')


def _declared_type_ok(value: Any, schema: dict[str, Any]) -> bool:
    expected = _PYTHON_TYPES.get(str(schema.get("type")))
    if expected is None:  # "any" or no type
        return True
    if isinstance(value, bool) and expected is not bool:
        return False
    if not isinstance(value, expected):
        return False
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        return all(_declared_type_ok(v, items) for v in value)
    return True


def _type_ok(value: Any, allowed: list[Any], schema: dict[str, Any]) -> bool:
    return _declared_type_ok(value, schema) or any(type(value) is type(a) for a in allowed if a != "")


def _equal(value: Any, allowed: Any, schema: dict[str, Any]) -> bool:
    """Whether one value equals one allowed value under the leaderboard's comparison rules."""
    if isinstance(value, bool) or isinstance(allowed, bool):
        return type(value) is type(allowed) and value == allowed
    if isinstance(value, str) and isinstance(allowed, str):
        return normalise(value) == normalise(allowed)
    if isinstance(value, int | float) and isinstance(allowed, int | float):
        if isinstance(value, float) and isinstance(allowed, int) and schema.get("type") == "integer":
            return False
        return value == allowed
    if isinstance(value, list) and isinstance(allowed, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return len(value) == len(allowed) and all(_equal(v, a, items) for v, a in zip(value, allowed, strict=True))
    if isinstance(value, dict) and isinstance(allowed, dict):
        if allowed and all(isinstance(v, list) for v in allowed.values()):
            return _dict_error(value, allowed, schema) is None
        return value == allowed
    return value == allowed


def _dict_error(value: dict[str, Any], allowed: dict[str, list[Any]], schema: dict[str, Any]) -> str | None:
    """Match a dict against a dict of allowed values per key."""
    properties = schema.get("properties") or {}
    for key, item in value.items():
        if key not in allowed:
            return f"unexpected key {key!r}"
        if not any(_equal(item, a, properties.get(key) or {}) for a in allowed[key] if a != ""):
            return f"key {key!r} has {item!r:.80}, expected one of {allowed[key]!r:.160}"
    for key, options in allowed.items():
        if key not in value and "" not in options:
            return f"missing key {key!r}"
    return None


def check_call(call: Call, answer: dict[str, dict[str, list[Any]]], doc: dict[str, Any] | None) -> str | None:
    """Why `call` does not match one possible answer, or None when it does."""
    (expected_name, allowed), = answer.items()
    name, args = call
    if name != expected_name:
        return f"expected a call to {expected_name!r}, got {name!r}"
    parameters = (doc or {}).get("parameters") or {}
    properties = parameters.get("properties") or {}
    for param in parameters.get("required") or []:
        if param not in args:
            return f"{name}: missing required parameter {param!r}"
    for param, value in args.items():
        if param not in properties or param not in allowed:
            return f"{name}: unexpected parameter {param!r}"
        schema = properties[param]
        if not _type_ok(value, allowed[param], schema):
            return f"{name}: parameter {param!r} should be of type {schema.get('type')}, got {type(value).__name__}"
        if not any(_equal(value, a, schema) for a in allowed[param] if a != ""):
            return f"{name}: parameter {param!r} is {value!r:.80}, expected one of {allowed[param]!r:.160}"
    for param, options in allowed.items():
        if param not in args and "" not in options:
            return f"{name}: parameter {param!r} is missing (it is not optional here)"
    return None


def _matching(calls: list[Call], answers: list[dict[str, Any]], docs: dict[str, dict[str, Any]]) -> str | None:
    """Pair every expected call with a distinct matching call (bipartite matching by augmenting paths)."""
    fits = [[check_call(call, answer, docs.get(next(iter(answer)))) is None for call in calls] for answer in answers]
    owner: dict[int, int] = {}  # call index -> answer index

    def place(a: int, seen: set[int]) -> bool:
        for c, ok in enumerate(fits[a]):
            if ok and c not in seen:
                seen.add(c)
                if c not in owner or place(owner[c], seen):
                    owner[c] = a
                    return True
        return False

    for a, answer in enumerate(answers):
        if not place(a, set()):
            reasons = [check_call(call, answer, docs.get(next(iter(answer)))) for call in calls]
            return f"no call matches expected call {a} ({next(iter(answer))}): " + "; ".join(
                f"call {i}: {r}" for i, r in enumerate(reasons) if r)
    return None


def check_calls(calls: list[Call], answers: list[dict[str, Any]], functions: list[dict[str, Any]],
                any_order: bool = False) -> str | None:
    """Why the calls do not match the possible answers, or None when they do; `any_order` for parallel tasks."""
    if len(calls) != len(answers):
        return f"expected {len(answers)} call(s), got {len(calls)}"
    docs = {doc["name"]: doc for doc in functions}
    if any_order:
        return _matching(calls, answers, docs)
    for call, answer in zip(calls, answers, strict=True):
        error = check_call(call, answer, docs.get(next(iter(answer))))
        if error:
            return error
    return None


def reference_value(allowed: Any) -> Any:
    """The first allowed value, with dicts of allowed values resolved recursively (keys allowed "" left out)."""
    if isinstance(allowed, dict) and allowed and all(isinstance(v, list) for v in allowed.values()):
        return {k: reference_value(v[0]) for k, v in allowed.items() if v and v[0] != ""}
    if isinstance(allowed, list):
        return [reference_value(v) for v in allowed]
    return allowed


def reference_calls(answers: list[dict[str, Any]], functions: list[dict[str, Any]]) -> list[Call]:
    """One correct answer: the first allowed value of each parameter, leaving out those allowed to be omitted
    (a required parameter takes its first value that is not "")."""
    docs = {doc["name"]: doc.get("parameters") or {} for doc in functions}
    calls = []
    for answer in answers:
        (name, allowed), = answer.items()
        required = set(docs.get(name, {}).get("required") or [])
        args = {}
        for param, values in allowed.items():
            present = [v for v in values if v != ""]
            if present and (param in required or len(present) == len(values)):
                args[param] = reference_value(present[0])
        calls.append((name, args))
    return calls

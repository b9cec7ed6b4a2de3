"""The stateful BFCL backends (file system, trading, travel ...): loading, calling, and comparing their state."""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

# Backend class -> module under bfcl_eval's multi-turn function sources; MathAPI holds no state.
_PACKAGE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
CLASS_MODULES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}
STATELESS = frozenset({"MathAPI"})
ERROR_PREFIX = "Error during execution: "


class BackendError(Exception):
    """A backend method raised; the message is what the agent is shown."""


def format_result(value: Any) -> str:
    """A call's result as the leaderboard writes it: strings as they are, dicts as JSON, anything else by str."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """Split a BFCL ground-truth call such as `mv(source='a', destination='b')` into name, args and kwargs.

    Only literal arguments are accepted (`ast.literal_eval`); nothing is evaluated.
    """
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {text!r}")
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    return node.func.id, args, kwargs


class Backends:
    """One set of backend instances for an episode, loaded from the task's initial configuration."""

    def __init__(self, classes: list[str], initial_config: dict[str, Any], long_context: bool = False) -> None:
        self.instances: dict[str, Any] = {}
        self.methods: dict[str, Callable[..., Any]] = {}
        for name in classes:
            if name not in CLASS_MODULES:
                raise KeyError(f"unknown BFCL backend class {name!r}; known: {', '.join(CLASS_MODULES)}")
            cls = getattr(importlib.import_module(f"{_PACKAGE}.{CLASS_MODULES[name]}"), name)
            instance = cls()
            if name not in STATELESS:
                # The backends keep the scenario's dicts (and some module-level ones, in long context) by
                # reference: copy before and after loading so episodes never share mutable state.
                instance._load_scenario(copy.deepcopy(initial_config.get(name, {})), long_context=long_context)
                instance = copy.deepcopy(instance)
            self.instances[name] = instance
            for method_name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self.methods.setdefault(method_name, method)

    def call(self, name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> str:
        """Run one method and return its formatted result; `BackendError` when it raises."""
        method = self.methods.get(name)
        if method is None:
            raise BackendError(f"no backend method {name!r}")
        try:
            return format_result(method(*(args or []), **(kwargs or {})))
        except Exception as exc:  # the backend's own failure is the agent's observation
            raise BackendError(f"{ERROR_PREFIX}{exc}") from exc

    def run(self, text: str) -> str:
        """Run a ground-truth call string; failures are returned as the leaderboard's error text."""
        try:
            name, args, kwargs = parse_call(text)
            return self.call(name, args, kwargs)
        except BackendError as exc:
            return str(exc)
        except (ValueError, SyntaxError) as exc:
            return f"{ERROR_PREFIX}{exc}"

    def keyword_arguments(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional arguments of a ground-truth call bound to their parameter names."""
        bound = inspect.signature(self.methods[name]).bind(*args, **kwargs)
        return dict(bound.arguments)

    def state(self) -> dict[str, dict[str, Any]]:
        """The public attributes of each stateful instance: what the leaderboard compares."""
        return {
            name: {k: v for k, v in vars(instance).items() if not k.startswith("_")}
            for name, instance in self.instances.items() if name not in STATELESS
        }


def state_differences(agent: Backends, reference: Backends) -> list[str]:
    """`Class.attribute` for every public attribute whose value differs from the reference's."""
    differences = []
    mine = agent.state()
    for name, attributes in reference.state().items():
        for key, value in attributes.items():
            if mine.get(name, {}).get(key) != value:
                differences.append(f"{name}.{key}")
    return differences


def missing_results(expected: list[str], results: list[str]) -> list[str]:
    """The expected results missing from `results`, each result usable once (order does not matter)."""
    remaining = list(results)
    missing = []
    for item in expected:
        if item in remaining:
            remaining.remove(item)
        else:
            missing.append(item)
    return missing

"""The environment registry: environments are declared (entry points or a manifest), never self-registered."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from gymbox.environments.api.env import Environment
from gymbox.environments.api.errors import UnknownEnvironment

ENTRY_POINT_GROUP = "gymbox.environments"


@dataclass(frozen=True)
class EnvEntry:
    """One declared environment: a versioned id (`toolcall@v1`) and where its class lives (`module:Class`)."""

    id: str
    target: str

    @property
    def name(self) -> str:
        return self.id.split("@")[0]

    @property
    def version(self) -> str:
        return self.id.split("@")[1]

    def load(self) -> type[Environment]:
        cls = load_target(self.target)
        if cls.env_id() != self.id:
            raise UnknownEnvironment(f"{self.target} declares {cls.env_id()!r} but is registered as {self.id!r}; "
                                     "make the entry's id and the class's name and version agree")
        return cls


def _version_key(version: str) -> tuple[int, str]:
    digits = version.lstrip("v")
    return (int(digits), "") if digits.isdigit() else (-1, version)


class Registry:
    """A fixed set of environment entries, passed explicitly to whatever needs one."""

    def __init__(self, entries: Iterable[EnvEntry]) -> None:
        self.entries: dict[str, EnvEntry] = {}
        for entry in entries:
            if "@" not in entry.id:
                raise ValueError(f"environment id {entry.id!r} has no version; write it as NAME@vN")
            self.entries[entry.id] = entry

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        return cls(EnvEntry(ep.name, ep.value) for ep in entry_points(group=group))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Registry:
        return cls(EnvEntry(k, v) for k, v in mapping.items())

    @classmethod
    def from_manifest(cls, path: str | Path) -> Registry:
        """A JSON or YAML file mapping ids to `module:Class`."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.from_mapping(yaml.safe_load(text) or {})
        return cls.from_mapping(json.loads(text))

    def ids(self) -> list[str]:
        return sorted(self.entries, key=lambda i: (i.split("@")[0], _version_key(i.split("@")[1])))

    def resolve(self, ref: str) -> EnvEntry:
        """The entry for `name@version`, or the newest version of `name`."""
        if ref in self.entries:
            return self.entries[ref]
        versions = [e for e in self.entries.values() if e.name == ref]
        if versions:
            return max(versions, key=lambda e: _version_key(e.version))
        known = ", ".join(self.ids()) or "none"
        raise UnknownEnvironment(f"no environment {ref!r} is registered; known: {known} (see `gymbox envs`)")

    def load(self, ref: str) -> type[Environment]:
        return self.resolve(ref).load()


@cache
def default_registry() -> Registry:
    """The environments declared by installed packages under the `gymbox.environments` entry point group."""
    return Registry.from_entry_points()


def load_target(target: str, registry: Registry | None = None) -> type[Environment]:
    """An environment class from `module:Class`, or from an id looked up in the registry."""
    if ":" not in target:
        return (registry or default_registry()).load(target)
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownEnvironment(f"cannot load environment class {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise UnknownEnvironment(f"{target!r} is not an Environment subclass")
    return cls

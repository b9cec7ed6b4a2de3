"""The registry: explicit declarations, versioned ids, clear errors; importing never registers."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from gymbox.environments.api.errors import UnknownEnvironment
from gymbox.environments.api.registry import EnvEntry, Registry, default_registry, load_target
from gymbox.environments.echo.env import EchoEnv


def test_installed_entry_points_declare_the_environments() -> None:
    ids = default_registry().ids()
    assert {"echo@v1", "toolcall@v1"} <= set(ids)
    assert default_registry().load("echo") is EchoEnv


def test_newest_version_wins_and_exact_ids_resolve() -> None:
    registry = Registry.from_mapping({"echo@v1": "a:A", "echo@v2": "b:B", "echo@v10": "c:C"})
    assert registry.resolve("echo").id == "echo@v10"
    assert registry.resolve("echo@v2").target == "b:B"
    assert registry.ids() == ["echo@v1", "echo@v2", "echo@v10"]


def test_unknown_ids_list_what_is_known() -> None:
    registry = Registry.from_mapping({"echo@v1": "gymbox.environments.echo.env:EchoEnv"})
    with pytest.raises(UnknownEnvironment, match="known: echo@v1"):
        registry.resolve("chess")


def test_ids_need_versions() -> None:
    with pytest.raises(ValueError, match="NAME@vN"):
        Registry([EnvEntry("echo", "x:Y")])


def test_an_entry_must_agree_with_its_class() -> None:
    with pytest.raises(UnknownEnvironment, match="agree"):
        EnvEntry("echo@v2", "gymbox.environments.echo.env:EchoEnv").load()


@pytest.mark.parametrize("target, reason", [("nowhere.module:X", "cannot load"),
                                             ("gymbox.environments.api.models:Action", "not an Environment")])
def test_bad_targets_are_explained(target: str, reason: str) -> None:
    with pytest.raises(UnknownEnvironment, match=reason):
        load_target(target)


def test_manifest_files(tmp_path: Path) -> None:
    path = tmp_path / "envs.json"
    path.write_text(json.dumps({"echo@v1": "gymbox.environments.echo.env:EchoEnv"}))
    assert Registry.from_manifest(path).load("echo") is EchoEnv
    yaml_path = tmp_path / "envs.yaml"
    yaml_path.write_text("echo@v1: gymbox.environments.echo.env:EchoEnv\n")
    assert Registry.from_manifest(yaml_path).ids() == ["echo@v1"]


def test_importing_an_environment_registers_nothing() -> None:
    before = Registry.from_entry_points().ids()
    importlib.reload(importlib.import_module("gymbox.environments.echo.env"))
    assert Registry.from_entry_points().ids() == before

"""TextWorld games made by TextWorld's own generator from a specification, and cached by their parameters."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gymbox.tasks.cache import GameCache, source_digest
from gymbox.tasks.spec import derive_seed

log = logging.getLogger(__name__)
# gymbox's family names -> TextWorld's challenge names ("custom" is `tw-make custom`: TextWorld's generic generator).
CHALLENGES = {"coin_collector": "tw-coin_collector", "treasure_hunter": "tw-treasure_hunter",
              "cooking": "tw-cooking", "simple": "tw-simple"}
Family = Literal["custom", "coin_collector", "treasure_hunter", "cooking", "simple"]
ATTEMPTS = 4
GAME_FILE = "game.z8"
META_FILE = "meta.json"


class GameGenerationError(RuntimeError):
    """TextWorld could not make a game from these parameters; the message says what to change."""


def _need(settings: dict[str, Any], name: str, kind: type, low: int | None = None, high: int | None = None) -> None:
    value = settings.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"setting {name!r} must be a {kind.__name__}, got {value!r}")
    if kind is int and ((low is not None and value < low) or (high is not None and value > high)):
        raise ValueError(f"setting {name!r} must be within [{low}, {high}], got {value}")


def _check_settings(family: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a family's generator needs, with its defaults filled in; a clear error for anything else."""
    if family == "custom":
        settings = {"quest_breadth": 1, **settings}
        for name, low, high in [("world_size", 1, 100), ("nb_objects", 0, 200), ("quest_length", 1, 50),
                                ("quest_breadth", 1, 10)]:
            _need(settings, name, int, low, high)
    elif family == "coin_collector":
        _need(settings, "level", int, 1, 300)
    elif family == "treasure_hunter":
        _need(settings, "level", int, 1, 30)
    elif family == "cooking":
        settings = {"take": 0, "go": 1, "open": False, "cook": False, "cut": False, "drop": False, "recipe_seed": 0,
                    "split": None, **settings}
        _need(settings, "recipe", int, 1, 5)
        _need(settings, "take", int, 0, settings["recipe"])
        if settings["go"] not in (1, 6, 9, 12):
            raise ValueError(f"setting 'go' must be 1, 6, 9 or 12 (locations), got {settings['go']!r}")
        for flag in ("open", "cook", "cut", "drop"):
            _need(settings, flag, bool)
        if settings["split"] not in (None, "train", "valid", "test"):
            raise ValueError(f"setting 'split' must be train, valid, test or null, got {settings['split']!r}")
    elif family == "simple":
        settings = {"test": False, **settings}
        if settings.get("rewards") not in ("dense", "balanced", "sparse"):
            raise ValueError("setting 'rewards' must be dense, balanced or sparse")
        if settings.get("goal") not in ("detailed", "brief", "none"):
            raise ValueError("setting 'goal' must be detailed, brief or none")
    known = {"custom": {"world_size", "nb_objects", "quest_length", "quest_breadth"},
             "coin_collector": {"level"}, "treasure_hunter": {"level"},
             "cooking": {"recipe", "take", "go", "open", "cook", "cut", "drop", "recipe_seed", "split"},
             "simple": {"rewards", "goal", "test"}}[family]
    if unknown := sorted(set(settings) - known):
        raise ValueError(f"unknown {family} settings {unknown}; it takes {sorted(known)}")
    return settings


class WorldSpec(BaseModel):
    """What `tw-make` is given: a game family, its settings and a seed. The same spec always gives the same game."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Family
    settings: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(ge=0, lt=2**32)

    @model_validator(mode="after")
    def _settings(self) -> WorldSpec:
        object.__setattr__(self, "settings", _check_settings(self.family, dict(self.settings)))
        return self

    def key(self) -> dict[str, Any]:
        import textworld

        return {"generator": f"{source_digest(sys.modules[__name__])}/textworld-{textworld.__version__}",
                "family": self.family, "settings": self.settings, "seed": self.seed}


@dataclass(frozen=True)
class GameFiles:
    """A compiled game: the story file (with TextWorld's game.json beside it) and what the generator said about it."""

    game: Path
    walkthrough: list[str]
    max_score: float
    objective: str
    seed: int  # the seed the game was made from: the spec's, or a later one when compiling failed
    attempt: int


def _make(spec: WorldSpec, seed: int, path: Path) -> Any:
    """Generate and compile one game into `path`; TextWorld's own errors propagate."""
    import textworld
    from textworld.challenges import CHALLENGES as REGISTERED
    from textworld.generator import compile_game, make_game

    options = textworld.GameOptions()
    options.seeds = int(seed)
    options.path = str(path)
    options.file_ext = ".z8"
    if spec.family == "custom":
        options.nb_rooms = spec.settings["world_size"]
        options.nb_objects = spec.settings["nb_objects"]
        options.quest_length = spec.settings["quest_length"]
        options.quest_breadth = spec.settings["quest_breadth"]
        game = make_game(options)
    else:
        _, make, _ = REGISTERED[CHALLENGES[spec.family]]
        game = make(dict(spec.settings), options)
    compile_game(game, options)
    return game


def _reason(exc: Exception) -> str:
    """The informative lines of a TextWorld error: Inform 7's own words, without the compiler's boilerplate."""
    boilerplate = ("***", "-==", "===", "FAIL", "Inform 7 build")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(boilerplate)]
    return "; ".join(said or lines[-1:])[:300]


def build_game(spec: WorldSpec, folder: Path) -> None:
    """Make the game into `folder`. A failed compile (Inform 7 rejects some generated names) retries with seeds
    derived from the spec's, so the result is still a function of the spec."""
    from textworld.generator.chaining import QuestGenerationError
    from textworld.generator.inform7.world2inform7 import CouldNotCompileGameError

    errors = []
    for attempt in range(ATTEMPTS):
        seed = spec.seed if attempt == 0 else derive_seed("textworld", spec.seed, attempt) % 2**32
        try:
            with warnings.catch_warnings():  # TextWorld plays the new game once to check it; Jericho then warns
                warnings.filterwarnings("ignore", message=".*is not fully supported")
                game = _make(spec, seed, folder / GAME_FILE)
        except (CouldNotCompileGameError, QuestGenerationError) as exc:
            errors.append(f"seed {seed}: {type(exc).__name__}: {_reason(exc)}")
            log.warning("textworld %s game, seed %d failed (%s); retrying with another seed", spec.family, seed,
                        type(exc).__name__)
            for stale in folder.iterdir():
                stale.unlink()
            continue
        walkthrough = list(game.walkthrough or [])
        meta = {"walkthrough": walkthrough, "max_score": game.max_score, "objective": game.objective,
                "seed": seed, "attempt": attempt}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        return
    raise GameGenerationError(f"TextWorld could not make a {spec.family} game with settings {spec.settings} from "
                              f"seed {spec.seed} in {ATTEMPTS} attempts ({'; '.join(errors)}). Use another seed or "
                              "smaller settings (for custom games, a quest no longer than the world allows).")


def game_files(spec: WorldSpec, cache: GameCache | None = None) -> GameFiles:
    """The spec's compiled game, generated on first use (2-10 s) and read from the cache afterwards."""
    cache = cache or GameCache("textworld")
    folder = cache.get(spec.key(), lambda work: build_game(spec, work))
    meta = json.loads((folder / META_FILE).read_text())
    return GameFiles(game=folder / GAME_FILE, walkthrough=meta["walkthrough"], max_score=float(meta["max_score"]),
                     objective=meta["objective"], seed=meta["seed"], attempt=meta["attempt"])

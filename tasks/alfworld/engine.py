"""An ALFWorld game folder in TextWorld's PDDL engine with alfworld's own wrappers, and its planner expert.

Generation runs the expert through it to prove a game solvable; the `alfworld` environment plays games with it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
from textworld.envs import PddlEnv

from gymbox.tasks.alfworld.suite import TASK_TYPES
from gymbox.tasks.alfworld.translation import translating

__all__ = ["PddlGame"]

WELCOME_BANNER = "-= Welcome to TextWorld, ALFRED! =-"


class PddlGame:
    """One game folder (`traj_data.json` + `game.tw-pddl`), generated or official, loaded and played."""

    def __init__(self, folder: Path | str) -> None:
        """Load the game; a missing or unreadable folder raises FileNotFoundError or ValueError saying which."""
        self.folder = Path(folder)
        game_file, traj_file = self.folder / "game.tw-pddl", self.folder / "traj_data.json"
        for path in (game_file, traj_file):
            if not path.is_file():
                raise FileNotFoundError(f"{self.folder} is not an ALFWorld game folder: {path.name} is missing "
                                        "(generate one with gymbox.tasks.alfworld.generate.generate_game)")
        traj = _read_json(traj_file, ("task_type", "pddl_params"))
        _read_json(game_file, ("pddl_domain", "grammar", "pddl_problem"))
        self.task_type: str = traj["task_type"]
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"{self.folder}: task type {self.task_type!r} is not supported; "
                             f"supported: {', '.join(TASK_TYPES)}")
        self.params: dict = traj["pddl_params"]
        self._env = AlfredInfos(AlfredDemangler(_PddlEnv(textworld.EnvInfos(
            won=True, admissible_commands=True, extras=["gamefile"]))))
        try:
            with translating():
                self._env.load(str(game_file))
        except (Exception, SystemExit) as err:  # Fast Downward's translator exits on a problem it cannot read
            self._env.close()
            raise ValueError(f"{game_file} could not be loaded by TextWorld's PDDL engine: {err!r}") from err
        self._state: textworld.GameState | None = None
        self._closed = False

    def reset(self) -> str:
        """Start the game over; returns the intro: the room and the task, without TextWorld's welcome banner."""
        if self._closed:
            raise RuntimeError("the game is closed")
        with translating():
            self._state = self._env.reset()
        return self._state.feedback.replace(WELCOME_BANNER, "").strip()

    def send(self, command: str) -> str:
        """Play one command; the game's answer ("Nothing happens." to one it does not know, changing nothing)."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        self._state, _, _ = self._env.step(command)
        return self._state.feedback.strip()

    @property
    def admissible_commands(self) -> list[str]:
        """The commands that do something in the current state, sorted."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return list(self._state["admissible_commands"])

    @property
    def won(self) -> bool:
        """Whether the PDDL goal holds now."""
        return self._state is not None and bool(self._state["won"])

    @property
    def facts(self) -> Iterable:
        """The current PDDL state as TextWorld propositions."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state["_facts"]

    def expert_plan(self) -> list[str]:
        """Commands that win from the current state, from alfworld's planner expert (Fast Downward); [] if none."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        # AlfredExpert(PLANNER) reads the same `policy_commands`, but it would replan after every step; ask once.
        pddl_env = self._env.unwrapped
        return list(pddl_env._pddl_state.replan(pddl_env._entity_infos))

    def close(self) -> None:
        """Release the planner; the game cannot be played afterwards."""
        if not self._closed:
            self._closed, self._state = True, None
            self._env.close()


# Each PddlEnv dlopens its own 33 MB copy of libdownward.so (the library keeps its task in globals) and TextWorld
# never unloads it; unloading with dlclose crashes the interpreter at exit. Closed games hand their copy to the next.
_idle_libs: list = []
_idle_libs_lock = threading.Lock()


class _PddlEnv(PddlEnv):
    """TextWorld's PddlEnv with three costs removed, none changing what a game says or does.

    - It reuses the Fast Downward library copies of closed games instead of loading a new one per game.
    - The first reset() takes the initial state load() has just built instead of translating the PDDL again
      (Fast Downward's translator is most of a reset's time).
    - Command templates are derived once per grounded action (see _CommandGrammar).
    """

    def __init__(self, infos: textworld.EnvInfos) -> None:
        with _idle_libs_lock:
            lib = _idle_libs.pop() if _idle_libs else None
        if lib is None:
            super().__init__(infos)
        else:
            textworld.Environment.__init__(self, infos)
            self.downward_lib = lib
        self._loaded_state = None

    def load(self, filename_or_data) -> None:
        super().load(filename_or_data)
        self._loaded_state = self._pddl_state
        self._logic.grammar = _CommandGrammar(self._logic.grammar, self._logic.actions.values())

    def reset(self) -> textworld.GameState:
        if self._loaded_state is None:
            return super().reset()
        # PddlEnv.reset of textworld 1.7.0, minus building the PddlState again.
        self._pddl_state, self._loaded_state = self._loaded_state, None
        self.prev_state, self.state, self._last_action, self._moves = None, textworld.GameState(), None, 0
        context = {"state": self._pddl_state, "facts": list(self._pddl_state.facts), "variables": {}, "mapping": {},
                   "entity_infos": self._entity_infos}
        self.state.feedback = self.state.raw = self._logic.grammar.derive("#intro#", context)
        self._gather_infos()
        if "walkthrough" in self.request_infos.extras:
            self.state["extra.walkthrough"] = self.walkthrough or self._pddl_state.replan(self._entity_infos)
        return self.state

    def close(self) -> None:
        lib, self.downward_lib, self._loaded_state = getattr(self, "downward_lib", None), None, None
        if lib is not None:
            lib.cleanup()  # frees the loaded task; the next game's load_sas starts from scratch
            with _idle_libs_lock:
                _idle_libs.append(lib)
        super().close()


class _CommandGrammar:
    """A game's grammar that derives each grounded command template once.

    TextWorld parses and derives the command template of every applicable action after every step, about 80% of a
    step's time. A template whose queries read only static facts yields the same command for the same action
    arguments for the whole game: in alfred.twl2 only "go to" queries anything, and it reads receptacleatlocation,
    which no action of alfred.pddl changes.
    """

    STATIC_PREDICATES = frozenset({"receptacleatlocation"})

    def __init__(self, grammar, actions: Iterable) -> None:
        self._grammar = grammar
        # Template -> the words in it; an action argument the template never names cannot change the command
        # (e.g. where "go to" starts from), so it is left out of the key.
        self._words = {a.template: set(re.findall(r"\w+", a.template)) for a in actions
                       if set(re.findall(r"(\w+)\(", a.template)) <= self.STATIC_PREDICATES}
        self._derived: dict[tuple, str] = {}

    def derive(self, start: str, context: dict) -> str:
        words = self._words.get(start)
        if words is None:
            return self._grammar.derive(start, context)
        key = (start, tuple(sorted((ph.name, var.name) for ph, var in context["mapping"].items() if ph.name in words)))
        if key not in self._derived:
            self._derived[key] = self._grammar.derive(start, context)
        return self._derived[key]

    def __getattr__(self, name: str):
        return getattr(self._grammar, name)


def _read_json(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not readable JSON ({err}); regenerate the game folder") from err
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; regenerate the game folder")
    return data

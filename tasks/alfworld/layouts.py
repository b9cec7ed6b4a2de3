"""The ALFRED rooms shipped inside the alfworld package, read as receptacles, object types and floor points."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from alfworld.gen import constants

LAYOUTS_DIR = Path(constants.__file__).parent / "layouts"

# Receptacles that stay put; objects go only into these (the PDDL domain has no object-in-object actions).
STATIC_RECEPTACLES = frozenset(constants.VAL_RECEPTACLE_OBJECTS) - frozenset(constants.MOVABLE_RECEPTACLES)
# An object can be picked up exactly when some receptacle accepts it; sliced pieces exist only after slicing.
PICKUPABLE = frozenset(
    obj
    for objs in constants.VAL_RECEPTACLE_OBJECTS.values()
    for obj in objs
    if obj in constants.OBJECTS and "Sliced" not in obj
)
# THOR object ids name basins after their sink or tub ("Sink|x|y|z|SinkBasin"); alfworld's demangler relies on it.
_BASIN_PARENT = {"SinkBasin": "Sink", "BathtubBasin": "Bathtub"}


class GenerationError(RuntimeError):
    """A game could not be generated; the message says what failed and what to do."""


@dataclass(frozen=True)
class Receptacle:
    """A static receptacle of a room and the pose from which the agent uses it."""

    id: str  # THOR object id, e.g. "Cabinet|+00.68|+00.50|-02.20"
    type: str  # e.g. "Cabinet", "SinkBasin"
    pose: tuple[float, float, int, int]  # agent x, z (metres), rotation and camera horizon (degrees)
    synthesized: bool = False  # listed for the room by the package but without a recorded pose


@dataclass(frozen=True)
class Layout:
    """One floor plan: the object types the room holds, its receptacles and its navigable floor points."""

    floorplan: int
    room: str  # "Kitchen", "LivingRoom", "Bedroom" or "Bathroom"
    object_types: tuple[str, ...]
    receptacles: tuple[Receptacle, ...]
    points: tuple[tuple[float, float], ...]

    def receptacle_types(self) -> set[str]:
        """The types of the room's receptacles."""
        return {r.type for r in self.receptacles}


def available_floorplans() -> list[int]:
    """The floor plan numbers with a layout in the installed alfworld package, ascending."""
    found = (re.fullmatch(r"FloorPlan(\d+)-objects\.json", p.name) for p in LAYOUTS_DIR.glob("FloorPlan*-objects.json"))
    return sorted(int(m.group(1)) for m in found if m)


def room_of(floorplan: int) -> str:
    """The ALFRED room type of a floor plan number (kitchens 1-30, living rooms 201-230, ...)."""
    for room, numbers in constants.SCENE_TYPE.items():
        if floorplan in numbers:
            return room
    raise GenerationError(f"floor plan {floorplan} is not an ALFRED scene number; choose one of "
                          f"{_ranges(available_floorplans())}")


@cache
def load_layout(floorplan: int) -> Layout:
    """Read a floor plan from the package; a missing or unknown floor plan raises an error saying what to do."""
    if floorplan not in available_floorplans():
        if not LAYOUTS_DIR.is_dir():
            raise FileNotFoundError(f"alfworld's room layouts are missing ({LAYOUTS_DIR}); "
                                    "reinstall the package: pip install --force-reinstall alfworld==0.4.2")
        raise GenerationError(f"floor plan {floorplan} has no layout in {LAYOUTS_DIR}; choose one of "
                              f"{_ranges(available_floorplans())} or leave floorplan=None to pick one from the seed")
    stem = LAYOUTS_DIR / f"FloorPlan{floorplan}"
    paths = {kind: Path(f"{stem}-{kind}") for kind in ("objects.json", "openable.json", "layout.npy")}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"layout file {path} is missing; reinstall the package: "
                                    "pip install --force-reinstall alfworld==0.4.2")
    object_types = tuple(sorted(set(json.loads(paths["objects.json"].read_text()))))
    points = tuple((float(x), float(z)) for x, z in np.load(paths["layout.npy"]).tolist())
    receptacles = [
        Receptacle(id=object_id, type=_type_of(object_id), pose=(float(x), float(z), int(rot), int(horizon)))
        for object_id, (x, z, rot, horizon) in sorted(json.loads(paths["openable.json"].read_text()).items())
    ]
    receptacles += _synthesize_missing(floorplan, object_types, receptacles, points)
    return Layout(floorplan, room_of(floorplan), object_types, tuple(receptacles), points)


def _synthesize_missing(floorplan: int, object_types: tuple[str, ...], known: list[Receptacle],
                        points: tuple[tuple[float, float], ...]) -> list[Receptacle]:
    """One receptacle for each static type the room lists but gives no pose for (coffee machines, stove burners...).

    ALFRED recorded poses only for receptacles its generator opened or searched, yet ALFWorld's rooms show the
    others too. Their positions are drawn from the room's floor points with a generator seeded by the floor plan,
    so a room is the same in every game.
    """
    rng = random.Random(f"alfworld-layout:{floorplan}")
    have = {r.type for r in known}
    made = []
    for rtype in sorted(set(object_types) & STATIC_RECEPTACLES - have):
        x, z = rng.choice(points)
        rotation, horizon = rng.choice((0, 90, 180, 270)), 30
        coords = f"{x:+06.2f}|+00.90|{z:+06.2f}"
        object_id = f"{_BASIN_PARENT[rtype]}|{coords}|{rtype}" if rtype in _BASIN_PARENT else f"{rtype}|{coords}"
        made.append(Receptacle(object_id, rtype, (x, z, rotation, horizon), synthesized=True))
    return made


def _type_of(object_id: str) -> str:
    parts = object_id.split("|")
    return parts[4] if len(parts) > 4 else parts[0]


def _ranges(numbers: list[int]) -> str:
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "none (is alfworld installed?)"

"""Fast Downward's PDDL translation, shared safely: one at a time, `sys.argv` kept, and results remembered."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fast_downward

# The translator keeps its options in module globals and swaps sys.argv and sys.stdout while it runs.
_lock = threading.RLock()
_original = fast_downward.pddl2sas
_remembered: OrderedDict[tuple[bytes, bytes, bool], Any] = OrderedDict()
REMEMBERED = 32  # translated problems kept; a group's rollouts reset the same game again and again


def _pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
    """`fast_downward.pddl2sas`, remembered per (domain, problem, optimize).

    Translation is most of the time it takes to load an ALFWorld game (about 0.4 s of each of its two calls), and
    TextWorld's PddlState only reads the translated task, so games of the same problem can share it.
    """
    key = (hashlib.sha256(domain.encode()).digest(), hashlib.sha256(problem.encode()).digest(), optimize)
    with _lock:
        if key in _remembered:
            _remembered.move_to_end(key)
            return _remembered[key]
        result = _original(domain, problem, verbose=verbose, optimize=optimize)
        _remembered[key] = result
        while len(_remembered) > REMEMBERED:
            _remembered.popitem(last=False)
        return result


fast_downward.pddl2sas = _pddl2sas  # TextWorld's PddlState calls it through the module


@contextmanager
def translating() -> Iterator[None]:
    """One PDDL translation at a time in this process, and the caller's sys.argv given back afterwards."""
    with _lock:
        argv = list(sys.argv)
        try:
            yield
        finally:
            sys.argv[:] = argv

"""A cache of generated games on disk, keyed by their parameters; safe across processes and crashes."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

DONE = ".complete"
KEY_FILE = "key.json"


def cache_root() -> Path:
    """`$GYMBOX_CACHE`, else `$XDG_CACHE_HOME/gymbox`, else `~/.cache/gymbox`."""
    if os.environ.get("GYMBOX_CACHE"):
        return Path(os.environ["GYMBOX_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gymbox"


@functools.cache
def source_digest(*modules: ModuleType) -> str:
    """A digest of the generator's own code, for cache keys: a changed generator must never reuse old games.

    Computed once per process: every reset builds a key, and the code does not change under a running server.
    """
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()[:12]


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes, also when the process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class GameCache:
    """Folders of generated games under `root/kind/<digest of the parameters>`.

    A game is built at most once per key, even by several server processes at once (a file lock per key), and
    into a temporary folder that is renamed when complete, so a crash mid-build never leaves half a game.
    """

    def __init__(self, kind: str, root: Path | None = None) -> None:
        self.folder = (root or cache_root()) / kind

    def path(self, key: dict[str, Any]) -> Path:
        return self.folder / key_digest(key)

    def cached(self, key: dict[str, Any]) -> Path | None:
        path = self.path(key)
        return path if (path / DONE).exists() else None

    def get(self, key: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """The game folder for `key`, made by `build(folder)` first when it is not cached."""
        if found := self.cached(key):
            return found
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the game cache {self.folder} ({exc.strerror}); point GYMBOX_CACHE at a "
                          "writable folder") from exc
        final = self.path(key)
        with _locked(self.folder / f"{final.name}.lock"):
            if (final / DONE).exists():
                return final  # another process built it while this one waited for the lock
            work = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=self.folder))
            try:
                build(work)
                (work / KEY_FILE).write_text(json.dumps(key, indent=1, sort_keys=True))
                (work / DONE).touch()
                shutil.rmtree(final, ignore_errors=True)  # an unfinished folder from an older version
                os.rename(work, final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        return final
